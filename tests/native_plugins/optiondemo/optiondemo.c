/* optiondemo: a test-only plugin. Its action, plugins.optiondemo.actions.EchoOptionsAction,
** declares an option of every ph_option_kind and answers 200 with what create read through
** the host's getters, one "name=value" per line; the plugin's own config has a schema too.
** tests/test_option_schemas.py checks the host's schema checks and the getters with it. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef struct {
  char text[1024];
} demo_action;

static const char *const modes[] = {"fast", "safe", NULL};
static const char *const levels[] = {"user", "admin", NULL};

static const ph_option auth_fields[] = {
    PH_OPTION(PH_OPTION_STRING, "user", NULL, "who", .flags = PH_OPTION_REQUIRED),
    PH_OPTION(PH_OPTION_ENUM, "level", "user", "what they may do", .choices = levels),
    PH_OPTIONS_END};

static const ph_option demo_options[] = {
    PH_OPTION(PH_OPTION_STRING, "name", NULL, "a name", .flags = PH_OPTION_REQUIRED),
    PH_OPTION(PH_OPTION_INT, "count", "3", "how many", .flags = PH_OPTION_MIN | PH_OPTION_MAX,
              .min = 1, .max = 10),
    PH_OPTION(PH_OPTION_FLOAT, "ratio", "0.5", "a share", .flags = PH_OPTION_MIN | PH_OPTION_MAX,
              .min = 0, .max = 1),
    PH_OPTION(PH_OPTION_BOOL, "enabled", "true", "on or off"),
    PH_OPTION(PH_OPTION_DURATION, "timeout", "5s", "how long",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 0.1, .max = 60),
    PH_OPTION(PH_OPTION_SIZE, "limit", "64KiB", "how much", .flags = PH_OPTION_MAX, .max = 1048576),
    PH_OPTION(PH_OPTION_LIST, "tags", NULL, "labels, at most 3",
              .flags = PH_OPTION_COMMA_LIST | PH_OPTION_MAX, .max = 3, .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_ENUM, "mode", "fast", "how", .choices = modes),
    PH_OPTION(PH_OPTION_INT, "retries", "2", "tries, or false for none",
              .flags = PH_OPTION_OR_FALSE),
    PH_OPTION(PH_OPTION_MAP, "headers", NULL, "headers to send", .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_MAP, "auth", NULL, "who may call", .fields = auth_fields),
    PH_OPTIONS_END};

static const ph_option plugin_options[] = {
    PH_OPTION(PH_OPTION_STRING, "greeting", "hello", "the plugin's own option"), PH_OPTIONS_END};

static ph_status demo_create(const ph_config *cfg, void **self) {
  demo_action *a = calloc(1, sizeof *a);
  if (a == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = a;
  const char *name, *mode, *user = "", *level = "";
  int64_t count, limit, timeout_ms;
  int enabled;
  /* Looked up in another case than the schema's: the getters ignore case. */
  if (ph_config_string(cfg, "NAME", NULL, &name) != PH_OK ||
      ph_config_int(cfg, "count", 3, &count) != PH_OK ||
      ph_config_bool(cfg, "enabled", 1, &enabled) != PH_OK ||
      ph_config_duration_ms(cfg, "timeout", 5000, &timeout_ms) != PH_OK ||
      ph_config_size(cfg, "limit", 65536, &limit) != PH_OK ||
      ph_config_string(cfg, "mode", "fast", &mode) != PH_OK)
    return PH_ERROR;
  const ph_config *auth;
  if (ph_config_child(cfg, "auth", &auth) != PH_OK) return PH_ERROR;
  if (auth != NULL && (ph_config_string(auth, "user", "", &user) != PH_OK ||
                       ph_config_string(auth, "level", "user", &level) != PH_OK))
    return PH_ERROR;
  snprintf(a->text, sizeof a->text,
           "name=%s\ncount=%" PRId64 "\nenabled=%d\ntimeout_ms=%" PRId64 "\nlimit=%" PRId64
           "\nmode=%s\nuser=%s\nlevel=%s\n",
           name ? name : "", count, enabled, timeout_ms, limit, mode, user, level);
  return PH_OK;
}

static void demo_destroy(void *self) {
  free(self);
}

static ph_next demo_handle(void *self, ph_exchange *ex) {
  const demo_action *a = self;
  ph_status_set(ex, 200);
  ph_resp_header_set(ex, "Content-Type", "text/plain");
  ph_resp_body_set(ex, a->text, strlen(a->text));
  return PH_NEXT_RESPOND;
}

static const ph_action_type echo_options_action = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.optiondemo.actions.EchoOptionsAction",
    .description = "Answers with the options create read",
    .create = demo_create,
    .destroy = demo_destroy,
    .handle = demo_handle,
    .options = demo_options,
};

static const ph_action_type *const demo_actions[] = {&echo_options_action, NULL};

PH_PLUGIN_DEFINE(.name = "optiondemo", .version = "1.0.0",
                 .description = "Test plugin: an option of every kind", .actions = demo_actions,
                 .options = plugin_options);
