/*
** perrequest: test-only plugin for ABI 1.2's per-request conveniences.
**
** SlotMiddleware {name, twice: bool, respond: status, respondError: status, message}
**   request hook: hangs a state naming the instance on its slot (ph_slot_set); with twice,
**   hangs one and replaces it (the host releases the first); with respond, answers
**   "<name>" as text/plain (ph_respond); with respondError, answers the host's JSON error
**   form with `message` (ph_respond_error).
**   response hook: X-Slot-<name> = the name its slot holds ("none" without one), and
**   X-Request-Id-Seen = ph_request_id ("none" until an element set it).
** RequestIdAction {id}: ph_request_id_set(id), then answers 200 "id=<ph_request_id>" or the
**   JSON error form 400 naming why it was refused.
** SlotStatsAction: 200 {"allocated":N,"released":M}: states hung on slots, and released by
**   the host, since the plugin was loaded.
** MetricsAction: ph_metric_declare's three kinds (see below).
*/
#define _POSIX_C_SOURCE 200809L
#include "plugin.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_long allocated, released; /* states hung on slots, and released by the host */

typedef struct slot_mw {
  char name[32];
  int twice;
  int64_t respond, respond_error;
  char message[256];
} slot_mw;

typedef struct slot_state {
  char name[32];
} slot_state;

static void state_release(void *value) {
  free(value);
  atomic_fetch_add(&released, 1);
}

static slot_state *state_new(const char *name) {
  slot_state *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  snprintf(st->name, sizeof st->name, "%s", name);
  atomic_fetch_add(&allocated, 1);
  return st;
}

static void slot_destroy(void *self) {
  free(self);
}

static ph_status slot_create(const ph_config *cfg, void **self) {
  slot_mw *m = calloc(1, sizeof *m);
  if (!m) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;
  const char *name, *message;
  if (ph_config_string(cfg, "name", "slot", &name) != PH_OK) return PH_ERROR;
  snprintf(m->name, sizeof m->name, "%s", name);
  if (ph_config_bool(cfg, "twice", 0, &m->twice) != PH_OK) return PH_ERROR;
  if (ph_config_int(cfg, "respond", 0, &m->respond) != PH_OK) return PH_ERROR;
  if (ph_config_int(cfg, "respondError", 0, &m->respond_error) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "message", "", &message) != PH_OK) return PH_ERROR;
  snprintf(m->message, sizeof m->message, "%s", message);
  return PH_OK;
}

static ph_next slot_request(void *self, ph_exchange *ex) {
  const slot_mw *m = self;
  if (m->twice) {
    slot_state *first = state_new("first");
    if (!first || ph_slot_set(ex, first, state_release) != PH_OK) return PH_NEXT_ERROR;
  }
  slot_state *st = state_new(m->name);
  if (!st) return PH_NEXT_ERROR;
  if (ph_slot_set(ex, st, state_release) != PH_OK) {
    state_release(st);
    return PH_NEXT_ERROR;
  }
  if (m->respond)
    return ph_respond(ex, (int)m->respond, "text/plain; charset=utf-8", m->name, strlen(m->name)) ==
                   PH_OK
               ? PH_NEXT_RESPOND
               : PH_NEXT_ERROR;
  if (m->respond_error)
    return ph_respond_error(ex, (int)m->respond_error, "%s", m->message) == PH_OK ? PH_NEXT_RESPOND
                                                                                  : PH_NEXT_ERROR;
  return PH_NEXT_CONTINUE;
}

static ph_status slot_response(void *self, ph_exchange *ex) {
  const slot_mw *m = self;
  const slot_state *st = ph_slot_get(ex);
  char header[64];
  snprintf(header, sizeof header, "X-Slot-%s", m->name);
  if (ph_resp_header_set(ex, header, st ? st->name : "none") != PH_OK) return PH_ERROR;
  const char *id = ph_request_id(ex);
  return ph_resp_header_set(ex, "X-Request-Id-Seen", id ? id : "none");
}

static ph_status id_create(const ph_config *cfg, void **self) {
  const char *id;
  if (ph_config_string(cfg, "id", "", &id) != PH_OK) return PH_ERROR;
  *self = strdup(id);
  return *self ? PH_OK : ph_config_error(cfg, NULL, "out of memory");
}

static ph_next id_handle(void *self, ph_exchange *ex) {
  if (ph_request_id_set(ex, self) != PH_OK)
    return ph_respond_error(ex, 400, "refused: %s", "the id") == PH_OK ? PH_NEXT_RESPOND
                                                                       : PH_NEXT_ERROR;
  char body[256];
  int n = snprintf(body, sizeof body, "id=%s", ph_request_id(ex));
  return ph_respond(ex, 200, "text/plain", body, (size_t)n) == PH_OK ? PH_NEXT_RESPOND
                                                                     : PH_NEXT_ERROR;
}

static ph_status stats_create(const ph_config *cfg, void **self) {
  (void)cfg;
  *self = NULL;
  return PH_OK;
}

static ph_next stats_handle(void *self, ph_exchange *ex) {
  (void)self;
  char body[128];
  int n = snprintf(body, sizeof body, "{\"allocated\":%ld,\"released\":%ld}",
                   atomic_load(&allocated), atomic_load(&released));
  return ph_respond(ex, 200, "application/json", body, (size_t)n) == PH_OK ? PH_NEXT_RESPOND
                                                                           : PH_NEXT_ERROR;
}

/* MetricsAction {declare: "" | "badname" | "conflict"}: answers 200 "<body length>" after
** counting the request (counter "calls"), setting gauge "last_size" to the body's length and
** observing it in histogram "sizes" (buckets 1, 10, 100); "badname" and "conflict" declare a
** metric the host must refuse at create. */
typedef struct metrics_action {
  ph_metric *calls, *last_size, *sizes;
} metrics_action;

static ph_status metrics_create(const ph_config *cfg, void **self) {
  metrics_action *a = calloc(1, sizeof *a);
  if (!a) return ph_config_error(cfg, NULL, "out of memory");
  *self = a;
  const char *declare;
  if (ph_config_string(cfg, "declare", "", &declare) != PH_OK) return PH_ERROR;
  static const double bounds[] = {1, 10, 100};
  ph_metric_spec calls = {
      .size = sizeof calls,
      .kind = strcmp(declare, "conflict") == 0 ? PH_METRIC_GAUGE : PH_METRIC_COUNTER,
      .name = strcmp(declare, "badname") == 0 ? "Bad-Name" : "calls",
      .help = "Requests the action answered"};
  ph_metric_spec last = {.size = sizeof last,
                         .kind = PH_METRIC_GAUGE,
                         .name = "last_size",
                         .help = "The last request body's length"};
  ph_metric_spec sizes = {.size = sizeof sizes,
                          .kind = PH_METRIC_HISTOGRAM,
                          .name = "sizes",
                          .help = "Request body lengths",
                          .buckets = bounds,
                          .n_buckets = 3};
  if (!(a->calls = ph_metric_declare(cfg, &calls)) ||
      !(a->last_size = ph_metric_declare(cfg, &last)) ||
      !(a->sizes = ph_metric_declare(cfg, &sizes)))
    return PH_ERROR;
  return PH_OK;
}

static ph_next metrics_handle(void *self, ph_exchange *ex) {
  metrics_action *a = self;
  size_t len = 0;
  ph_body(ex, &len);
  ph_metric_add(a->calls, 1);
  ph_metric_set(a->last_size, (double)len);
  ph_metric_observe(a->sizes, (double)len);
  char body[32];
  int n = snprintf(body, sizeof body, "%zu", len);
  return ph_respond(ex, 200, "text/plain", body, (size_t)n) == PH_OK ? PH_NEXT_RESPOND
                                                                     : PH_NEXT_ERROR;
}

static const ph_action_type metrics_action_type = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.perrequest.actions.MetricsAction",
    .create = metrics_create,
    .destroy = free,
    .handle = metrics_handle,
};

static const ph_middleware_type slot_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.perrequest.middlewares.SlotMiddleware",
    .create = slot_create,
    .destroy = slot_destroy,
    .on_request = slot_request,
    .on_response = slot_response,
};

static const ph_action_type id_action = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.perrequest.actions.RequestIdAction",
    .create = id_create,
    .destroy = free,
    .handle = id_handle,
};

static const ph_action_type stats_action = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.perrequest.actions.SlotStatsAction",
    .create = stats_create,
    .handle = stats_handle,
};

static const ph_middleware_type *const perrequest_middlewares[] = {&slot_middleware, NULL};
static const ph_action_type *const perrequest_actions[] = {&id_action, &stats_action,
                                                           &metrics_action_type, NULL};

PH_PLUGIN_DEFINE(.name = "perrequest", .version = "1.0.0",
                 .description = "ABI 1.2 per-request slots, answers and request ids (tests)",
                 .middlewares = perrequest_middlewares, .actions = perrequest_actions);
