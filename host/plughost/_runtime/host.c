/* The host function table, handle contexts, logging and the hook-call wrappers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "util.h"
#include "watch.h"

static const ph_host_api host_api = {
    .size = sizeof(ph_host_api),
    .abi_major = PH_ABI_MAJOR,
    .abi_minor = PH_ABI_MINOR,
    .log = rt_api_log,
    .error = rt_api_error,
    .config_kind = rt_api_config_kind,
    .config_string = rt_api_config_string,
    .config_int = rt_api_config_int,
    .config_float = rt_api_config_float,
    .config_bool = rt_api_config_bool,
    .config_duration_ms = rt_api_config_duration_ms,
    .config_child = rt_api_config_child,
    .config_len = rt_api_config_len,
    .config_at = rt_api_config_at,
    .config_error = rt_api_config_error,
    .plugin_state = rt_api_plugin_state,
    .storage_lookup = rt_api_storage_lookup,
    .storage_get = rt_api_storage_get,
    .storage_set = rt_api_storage_set,
    .storage_del = rt_api_storage_del,
    .storage_incr = rt_api_storage_incr,
    .free_value = rt_api_free_value,
    .call_value = rt_api_call_value,
    .method = rt_api_method,
    .path = rt_api_path,
    .query = rt_api_query,
    .route_param = rt_api_route_param,
    .client_ip = rt_api_client_ip,
    .route_name = rt_api_route_name,
    .header_get = rt_api_header_get,
    .header_set = rt_api_header_set,
    .header_add = rt_api_header_add,
    .header_remove = rt_api_header_remove,
    .header_count = rt_api_header_count,
    .header_at = rt_api_header_at,
    .body = rt_api_body,
    .body_set = rt_api_body_set,
    .status = rt_api_status,
    .status_set = rt_api_status_set,
    .local_get = rt_api_local_get,
    .local_set = rt_api_local_set,
    .upstream = rt_api_upstream,
    .route_param_raw = rt_api_route_param_raw,
    .require_single_header = rt_api_require_single_header,
    .config_size = rt_api_config_size,
    .slot_set = rt_api_slot_set,
    .slot_get = rt_api_slot_get,
    .respond = rt_api_respond,
    .respond_error = rt_api_respond_error,
    .request_id_set = rt_api_request_id_set,
    .request_id = rt_api_request_id,
    .metric_declare = rt_api_metric_declare,
    .metric_add = rt_api_metric_add,
    .metric_set = rt_api_metric_set,
    .metric_observe = rt_api_metric_observe,
};

const ph_host_api *rt_host_api(void) {
  return &host_api;
}
int rt_abi_major(void) {
  return PH_ABI_MAJOR;
}
int rt_abi_minor(void) {
  return PH_ABI_MINOR;
}
size_t rt_host_api_size(void) {
  return sizeof(ph_host_api);
}

char *rt_strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

char *rt_vformat(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return rt_strdup(fmt);
  char *out = malloc((size_t)n + 1);
  if (out) vsnprintf(out, (size_t)n + 1, fmt, ap);
  return out;
}

char *rt_format(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = rt_vformat(fmt, ap);
  va_end(ap);
  return s;
}

void rt_free(void *p) {
  free(p);
}

rt_ctx *rt_ctx_of(const void *handle) {
  return (rt_ctx *)((const ph_handle_head *)handle)->host_private;
}

void rt_ctx_init(rt_ctx *ctx, rt_ctx_kind kind, rt_host *host, const char *label) {
  ctx->kind = kind;
  ctx->host = host;
  ctx->label = rt_strdup(label ? label : "");
  ctx->source = NULL;
  ctx->error = NULL;
}

void rt_ctx_clear(rt_ctx *ctx) {
  free(ctx->label);
  free(ctx->source);
  free(ctx->error);
  free(ctx->single_headers);
  free(ctx->plugin_name);
  free(ctx->instance_name);
  ctx->label = ctx->source = ctx->error = ctx->single_headers = NULL;
  ctx->plugin_name = ctx->instance_name = NULL;
}

void rt_ctx_set_error(rt_ctx *ctx, char *message) {
  free(ctx->error);
  ctx->error = message;
}

void rt_log_message(rt_host *host, int level, const char *label, const char *message) {
  if (host && host->log)
    host->log(level, label ? label : "", message ? message : "");
  else
    fprintf(stderr, "plughost [%s] %s\n", label ? label : "", message ? message : "");
}

void rt_api_log(const void *handle, ph_log_level level, const char *fmt, ...) {
  if (!handle || !fmt) return;
  rt_ctx *ctx = rt_ctx_of(handle);
  va_list ap;
  va_start(ap, fmt);
  char *msg = rt_vformat(fmt, ap);
  va_end(ap);
  rt_log_message(ctx->host, (int)level, ctx->label ? ctx->label : "request", msg);
  free(msg);
}

void rt_api_error(const void *handle, const char *fmt, ...) {
  if (!handle || !fmt) return;
  va_list ap;
  va_start(ap, fmt);
  rt_ctx_set_error(rt_ctx_of(handle), rt_vformat(fmt, ap));
  va_end(ap);
}

rt_host *rt_host_new(rt_log_fn log) {
  rt_host *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->api = &host_api;
  h->log = log;
  pthread_mutex_init(&h->lock, NULL);
  pthread_mutex_init(&h->metrics_lock, NULL);
  return h;
}

void rt_host_free(rt_host *host) {
  if (!host) return;
  for (size_t i = 0; i < host->n_storages; i++) free(host->storage_names[i]);
  free(host->storage_names);
  free(host->storages);
  rt_metrics_free(host);
  pthread_mutex_destroy(&host->metrics_lock);
  pthread_mutex_destroy(&host->lock);
  free(host);
}

/* The plugin hooks outside the chain are marked for the crash report (watch.h), which then
** names them instead of blaming plughost's own code. */

ph_status rt_call_init(const ph_plugin *p, ph_config *config, void **state) {
  *state = NULL;
  if (!p->init) return PH_OK;
  char what[160];
  snprintf(what, sizeof what, "the init hook of plugin %.100s", p->name ? p->name : "?");
  void *mark = rt_watch_enter_hook(what);
  ph_status st = p->init(config, state);
  rt_watch_leave_hook(mark);
  return st;
}

void rt_call_shutdown(const ph_plugin *p, void *state) {
  if (!p->shutdown) return;
  char what[160];
  snprintf(what, sizeof what, "the shutdown hook of plugin %.100s", p->name ? p->name : "?");
  void *mark = rt_watch_enter_hook(what);
  p->shutdown(state);
  rt_watch_leave_hook(mark);
}

ph_status rt_call_create(ph_status (*create)(const ph_config *, void **), ph_config *config,
                         void **self) {
  *self = NULL;
  const char *label = config ? rt_ctx_of(config)->label : NULL;
  char what[320];
  snprintf(what, sizeof what, "the create hook of %.280s", label ? label : "an instance");
  void *mark = rt_watch_enter_hook(what);
  ph_status st = create(config, self);
  rt_watch_leave_hook(mark);
  return st;
}

void rt_call_destroy(void (*destroy)(void *), void *self) {
  if (!destroy) return;
  void *mark = rt_watch_enter_hook("a destroy hook");
  destroy(self);
  rt_watch_leave_hook(mark);
}

ph_next rt_middleware_request(const ph_middleware_type *t, void *self, ph_exchange *ex) {
  return t->on_request ? t->on_request(self, ex) : PH_NEXT_CONTINUE;
}

ph_status rt_middleware_response(const ph_middleware_type *t, void *self, ph_exchange *ex) {
  return t->on_response ? t->on_response(self, ex) : PH_OK;
}

ph_next rt_action_handle(const ph_action_type *t, void *self, ph_exchange *ex) {
  return t->handle(self, ex);
}
