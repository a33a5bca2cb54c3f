/*
** trace: test-only plugin for the gateway's end-to-end tests.
**
** TraceMiddleware {name, respond: status (0 = no), fail: "" | "request" | "response",
**                  fault: "" | "crash" | "spin", single: [header names]}
**   request phase: appends name to the request header X-Trace ("a,b,c"), may respond or fail;
**   fault (for the supervisor's tests): "crash" dereferences NULL, "spin" never returns;
**   single: names passed as they are to ph_require_single_header at create;
**   response phase: appends name to the response header X-Trace-Response, may fail.
** EchoAction: 200 with "method path query trace=<X-Trace> id=<:id> rest=<*> route=<name>
**   body=<request body> local=<locals 'requestId'> ip=<client address>".
** ForwardAction {url, timeoutMs}: asks the host to send the request to url + path.
*/
#define _POSIX_C_SOURCE 200809L
#include "plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct trace {
  char name[64];
  int64_t respond;
  int fail_request, fail_response;
  int crash, spin;
} trace;

static void trace_destroy(void *self) {
  free(self);
}

static ph_status trace_create(const ph_config *cfg, void **self) {
  const char *name, *fail;
  trace *t = calloc(1, sizeof *t);
  if (!t) return ph_config_error(cfg, NULL, "out of memory");
  *self = t;
  if (ph_config_string(cfg, "name", "trace", &name) != PH_OK) return PH_ERROR;
  if (strlen(name) >= sizeof t->name)
    return ph_config_error(cfg, "name", "must be shorter than %zu characters", sizeof t->name);
  strcpy(t->name, name);
  if (ph_config_int(cfg, "respond", 0, &t->respond) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "fail", "", &fail) != PH_OK) return PH_ERROR;
  t->fail_request = strcmp(fail, "request") == 0;
  t->fail_response = strcmp(fail, "response") == 0;
  if (*fail && !t->fail_request && !t->fail_response)
    return ph_config_error(cfg, "fail", "must be \"request\" or \"response\", not '%s'", fail);
  const char *fault;
  if (ph_config_string(cfg, "fault", "", &fault) != PH_OK) return PH_ERROR;
  t->crash = strcmp(fault, "crash") == 0;
  t->spin = strcmp(fault, "spin") == 0;
  if (*fault && !t->crash && !t->spin)
    return ph_config_error(cfg, "fault", "must be \"crash\" or \"spin\", not '%s'", fault);
  const ph_config *single = NULL;
  if (ph_config_child(cfg, "single", &single) != PH_OK) return PH_ERROR;
  for (size_t i = 0; single && i < ph_config_len(single); i++) {
    const char *header;
    if (ph_config_string(ph_config_at(single, i, NULL), NULL, "", &header) != PH_OK)
      return PH_ERROR;
    if (ph_require_single_header(cfg, header) != PH_OK) return PH_ERROR;
  }
  return PH_OK;
}

static ph_status append(ph_exchange *ex, ph_side side, const char *header, const char *name) {
  const char *old = PH_API(ex)->header_get(ex, side, header);
  if (!old) return PH_API(ex)->header_set(ex, side, header, name);
  char buf[1024];
  size_t ol = strlen(old), nl = strlen(name);
  if (ol + nl + 2 > sizeof buf) return PH_API(ex)->header_set(ex, side, header, old);
  memcpy(buf, old, ol);
  buf[ol] = ',';
  memcpy(buf + ol + 1, name, nl + 1);
  return PH_API(ex)->header_set(ex, side, header, buf);
}

/* Where the "crash" fault writes: NULL, read through a volatile so that the compiler keeps
** the store. */
static int *volatile nowhere;

static ph_next trace_request(void *self, ph_exchange *ex) {
  trace *t = self;
  if (t->crash) *nowhere = 1; /* SIGSEGV */
  if (t->spin) {
    volatile unsigned long turns = 0;
    for (;;) turns++; /* never returns: the watchdog ends the worker */
  }
  if (t->fail_request) {
    ph_error(ex, "trace %s was told to fail", t->name);
    return PH_NEXT_ERROR;
  }
  if (append(ex, PH_REQUEST, "X-Trace", t->name) != PH_OK) return PH_NEXT_ERROR;
  if (t->respond) {
    ph_status_set(ex, (int)t->respond);
    ph_resp_body_set(ex, t->name, strlen(t->name));
    return PH_NEXT_RESPOND;
  }
  return PH_NEXT_CONTINUE;
}

/* UnsafeTraceMiddleware: not thread-safe (the host serialises it), logs on every request
** (the log goes to Python) and holds on for 200 µs. */
static ph_next unsafe_request(void *self, ph_exchange *ex) {
  ph_log(ex, PH_LOG_DEBUG, "unsafe trace %s", ((trace *)self)->name);
  struct timespec pause = {0, 200000};
  nanosleep(&pause, NULL);
  return trace_request(self, ex);
}

static ph_status trace_response(void *self, ph_exchange *ex) {
  trace *t = self;
  if (t->fail_response) {
    ph_error(ex, "trace %s was told to fail in the response phase", t->name);
    return PH_ERROR;
  }
  return append(ex, PH_RESPONSE, "X-Trace-Response", t->name);
}

static ph_status echo_create(const ph_config *cfg, void **self) {
  (void)cfg;
  *self = NULL;
  return PH_OK;
}

static ph_next echo_handle(void *self, ph_exchange *ex) {
  (void)self;
  const char *trace = ph_header_get(ex, "X-Trace");
  const char *id = ph_route_param(ex, "id");
  const char *rest = ph_route_param(ex, "*");
  size_t body_len = 0, local_len = 0;
  const uint8_t *body = PH_API(ex)->body(ex, PH_REQUEST, &body_len);
  const uint8_t *local = ph_local_get(ex, "requestId", &local_len);
  char buf[4096];
  int n = snprintf(buf, sizeof buf,
                   "%s %s %s trace=%s id=%s rest=%s route=%s body=%.*s local=%.*s ip=%s",
                   ph_method(ex), ph_path(ex), ph_query(ex), trace ? trace : "", id ? id : "",
                   rest ? rest : "", ph_route_name(ex), (int)body_len, (const char *)body,
                   (int)local_len, local ? (const char *)local : "", ph_client_ip(ex));
  if (n < 0) return PH_NEXT_ERROR;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  ph_status_set(ex, 200);
  ph_resp_header_set(ex, "Content-Type", "text/plain");
  ph_resp_body_set(ex, buf, (size_t)n);
  return PH_NEXT_RESPOND;
}

typedef struct forward {
  char url[512];
  int64_t timeout_ms;
} forward;

static ph_status forward_create(const ph_config *cfg, void **self) {
  const char *url;
  forward *f = calloc(1, sizeof *f);
  if (!f) return ph_config_error(cfg, NULL, "out of memory");
  *self = f;
  if (ph_config_string(cfg, "url", NULL, &url) != PH_OK) return PH_ERROR;
  if (!url) return ph_config_error(cfg, "url", "is required: the upstream's base URL");
  if (strlen(url) >= sizeof f->url) return ph_config_error(cfg, "url", "is too long");
  strcpy(f->url, url);
  return ph_config_duration_ms(cfg, "timeout", 0, &f->timeout_ms);
}

static ph_next forward_handle(void *self, ph_exchange *ex) {
  forward *f = self;
  char url[2048];
  const char *q = ph_query(ex);
  snprintf(url, sizeof url, "%s%s%s%s", f->url, ph_path(ex), *q ? "?" : "", q);
  ph_upstream_spec spec = {.size = sizeof spec, .url = url, .timeout_ms = f->timeout_ms};
  if (ph_upstream(ex, &spec) != PH_OK) return PH_NEXT_ERROR;
  return PH_NEXT_UPSTREAM;
}

static const ph_middleware_type trace_mw = {.size = sizeof(ph_middleware_type),
                                            .flags = PH_TYPE_THREAD_SAFE,
                                            .id = "plugins.trace.middlewares.TraceMiddleware",
                                            .create = trace_create,
                                            .destroy = trace_destroy,
                                            .on_request = trace_request,
                                            .on_response = trace_response};
static const ph_middleware_type blocking_trace_mw = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_MAY_BLOCK,
    .id = "plugins.trace.middlewares.BlockingTraceMiddleware",
    .create = trace_create,
    .destroy = trace_destroy,
    .on_request = trace_request,
    .on_response = trace_response};
static const ph_middleware_type unsafe_trace_mw = {
    .size = sizeof(ph_middleware_type),
    .flags = 0,
    .id = "plugins.trace.middlewares.UnsafeTraceMiddleware",
    .create = trace_create,
    .destroy = trace_destroy,
    .on_request = unsafe_request,
    .on_response = trace_response};
static const ph_action_type echo_action = {.size = sizeof(ph_action_type),
                                           .flags = PH_TYPE_THREAD_SAFE,
                                           .id = "plugins.trace.actions.EchoAction",
                                           .create = echo_create,
                                           .handle = echo_handle};
static const ph_action_type forward_action = {.size = sizeof(ph_action_type),
                                              .flags = PH_TYPE_THREAD_SAFE,
                                              .id = "plugins.trace.actions.ForwardAction",
                                              .create = forward_create,
                                              .destroy = trace_destroy,
                                              .handle = forward_handle};

/* Plugin-level config {marker: path}: shutdown appends "shutdown" to that file, so tests
** can see the host shut plugins down on exit. */
static ph_status plugin_init(const ph_config *cfg, void **state) {
  const char *marker, *storage;
  if (ph_config_string(cfg, "marker", "", &marker) != PH_OK) return PH_ERROR;
  /* {storage: Name}: looked up at init, so the storage's plugin must be listed first. */
  if (ph_config_string(cfg, "storage", "", &storage) != PH_OK) return PH_ERROR;
  if (*storage && !ph_storage_lookup(cfg, "storage", storage)) return PH_ERROR;
  *state = *marker ? strdup(marker) : NULL;
  return PH_OK;
}

static void plugin_shutdown(void *state) {
  if (!state) return;
  FILE *f = fopen(state, "a");
  if (f) {
    fputs("shutdown\n", f);
    fclose(f);
  }
  free(state);
}

static const ph_middleware_type *const middlewares[] = {&trace_mw, &blocking_trace_mw,
                                                        &unsafe_trace_mw, NULL};
static const ph_action_type *const actions[] = {&echo_action, &forward_action, NULL};

PH_PLUGIN_DEFINE(.name = "trace", .version = "1.0.0",
                 .description = "test-only: tracing middlewares, echo and forward actions",
                 .init = plugin_init, .shutdown = plugin_shutdown, .middlewares = middlewares,
                 .actions = actions);
