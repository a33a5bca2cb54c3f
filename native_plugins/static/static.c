/*
** static: an action that answers every request with a fixed response.
**
** Action plugins.static.actions.StaticAction
**   status       int, default 200, 100..599
**   headers      map of header name -> value (string or integer), default none
**   body         string, default ""
**   contentType  string, default "text/plain; charset=utf-8"; sent as Content-Type
**                unless `headers` has a Content-Type of its own
**
** Everything is validated and copied at create; handle only reads it (thread-safe).
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"

typedef struct st_header {
  char *name;
  char *value;
} st_header;

typedef struct st_action {
  int status;
  size_t nheaders;
  st_header *headers;
  char *body;
  size_t body_len;
} st_action;

static char *st_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p != NULL) memcpy(p, s, n);
  return p;
}

/* ASCII case-insensitive equality (strcasecmp depends on the process locale). */
/* A header value: no CR, LF or other control character (horizontal tab allowed). */
static int st_valid_value(const char *s) {
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
  }
  return 1;
}

static void st_destroy(void *self) {
  st_action *a = self;
  if (a == NULL) return;
  for (size_t i = 0; i < a->nheaders; i++) {
    free(a->headers[i].name);
    free(a->headers[i].value);
  }
  free(a->headers);
  free(a->body);
  free(a);
}

/* Appends (name, value) to a->headers, which has room. Returns 0 when out of memory. */
static int st_push(st_action *a, const char *name, const char *value) {
  st_header *h = &a->headers[a->nheaders];
  h->name = st_strdup(name);
  h->value = st_strdup(value);
  a->nheaders++; /* counted even on failure, so st_destroy frees what was allocated */
  return h->name != NULL && h->value != NULL;
}

static ph_status st_read_headers(const ph_config *cfg, st_action *a, int *has_content_type) {
  const ph_config *headers = NULL;
  ph_config_kind kind = ph_config_kind(cfg, "headers");
  *has_content_type = 0;
  if (kind == PH_CONFIG_MISSING || kind == PH_CONFIG_NULL) return PH_OK;
  if (kind != PH_CONFIG_MAP)
    return ph_config_error(cfg, "headers",
                           "must be a map of header name to value, like "
                           "{Cache-Control: \"no-store\"}");
  if (ph_config_child(cfg, "headers", &headers) != PH_OK) return PH_ERROR;
  size_t n = headers != NULL ? ph_config_len(headers) : 0;

  /* Room for every configured header plus Content-Type. */
  a->headers = calloc(n + 1, sizeof *a->headers);
  if (a->headers == NULL) return ph_config_error(cfg, "headers", "out of memory");

  for (size_t i = 0; i < n; i++) {
    const char *name = NULL, *value = NULL;
    char number[32];
    const ph_config *node = ph_config_at(headers, i, &name);
    if (node == NULL || name == NULL)
      return ph_config_error(cfg, "headers", "must be a map of header name to value");
    if (!phu_valid_token(name))
      return ph_config_error(headers, name,
                             "'%s' is not a valid HTTP header name: use letters, digits and "
                             "!#$%%&'*+-.^_`|~ only",
                             name);
    for (size_t j = 0; j < a->nheaders; j++)
      if (phu_ieq(a->headers[j].name, name))
        return ph_config_error(headers, name,
                               "header '%s' is given twice (as '%s'); header names are "
                               "case-insensitive, keep one",
                               name, a->headers[j].name);
    switch (ph_config_kind(headers, name)) {
      case PH_CONFIG_STRING:
        if (ph_config_string(node, NULL, "", &value) != PH_OK) return PH_ERROR;
        break;
      case PH_CONFIG_INT: {
        int64_t v;
        if (ph_config_int(node, NULL, 0, &v) != PH_OK) return PH_ERROR;
        snprintf(number, sizeof number, "%" PRId64, v);
        value = number;
        break;
      }
      case PH_CONFIG_NULL:
        value = "";
        break;
      default:
        return ph_config_error(
            headers, name, "the value of header '%s' must be a string (quote it in YAML)", name);
    }
    if (!st_valid_value(value))
      return ph_config_error(headers, name,
                             "the value of header '%s' must not contain CR, LF or other "
                             "control characters",
                             name);
    if (phu_ieq(name, "Content-Type")) *has_content_type = 1;
    if (!st_push(a, name, value)) return ph_config_error(cfg, "headers", "out of memory");
  }
  return PH_OK;
}

static ph_status st_create(const ph_config *cfg, void **self) {
  int64_t status;
  const char *body, *content_type;
  int has_content_type = 0;

  if (ph_config_int(cfg, "status", 200, &status) != PH_OK) return PH_ERROR;
  if (status < 100 || status > 599)
    return ph_config_error(cfg, "status",
                           "must be an HTTP status code from 100 to 599, got %" PRId64, status);
  if (ph_config_string(cfg, "body", "", &body) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "contentType", ST_DEFAULT_CONTENT_TYPE, &content_type) != PH_OK)
    return PH_ERROR;
  if (!st_valid_value(content_type))
    return ph_config_error(cfg, "contentType",
                           "must not contain CR, LF or other control characters");

  st_action *a = calloc(1, sizeof *a);
  if (a == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = a; /* destroy runs even if create fails, and frees what is built so far */
  a->status = (int)status;
  if (st_read_headers(cfg, a, &has_content_type) != PH_OK) return PH_ERROR;
  if (a->headers == NULL) {
    a->headers = calloc(1, sizeof *a->headers);
    if (a->headers == NULL) return ph_config_error(cfg, NULL, "out of memory");
  }
  if (!has_content_type && content_type[0] != '\0' && !st_push(a, "Content-Type", content_type))
    return ph_config_error(cfg, NULL, "out of memory");
  a->body_len = strlen(body);
  a->body = st_strdup(body);
  if (a->body == NULL) return ph_config_error(cfg, "body", "out of memory");
  return PH_OK;
}

static ph_next st_handle(void *self, ph_exchange *ex) {
  const st_action *a = self;
  if (ph_http_status_set(ex, a->status) != PH_OK) return PH_NEXT_ERROR;
  for (size_t i = 0; i < a->nheaders; i++)
    if (ph_resp_header_set(ex, a->headers[i].name, a->headers[i].value) != PH_OK)
      return PH_NEXT_ERROR;
  if (ph_resp_body_set(ex, a->body, a->body_len) != PH_OK) return PH_NEXT_ERROR;
  return PH_NEXT_RESPOND;
}

/* The options of a StaticAction; the host checks every config against them before
** st_create runs (which keeps its own checks of the values and header names). */
static const ph_option static_options[] = {
    PH_OPTION(PH_OPTION_INT, "status", "200", "the response's HTTP status code",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 100, .max = 599),
    PH_OPTION(PH_OPTION_MAP, "headers", NULL,
              "response headers: header name -> value (a string or a whole number)",
              .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_STRING, "body", "", "the response body"),
    PH_OPTION(PH_OPTION_STRING, "contentType", "text/plain; charset=utf-8",
              "sent as Content-Type unless headers has one; empty: none"),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_action_type static_action = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.static.actions.StaticAction",
    .description = "Answers with a fixed status, headers and body",
    .create = st_create,
    .destroy = st_destroy,
    .handle = st_handle,
    .options = static_options,
};

static const ph_action_type *const static_actions[] = {&static_action, NULL};

PH_PLUGIN_DEFINE(.name = "static", .version = "1.0.0",
                 .description = "A fixed response: status, headers and body from the config",
                 .actions = static_actions, .options = no_options);
