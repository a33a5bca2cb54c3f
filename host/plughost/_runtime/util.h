/* Small helpers shared by the runtime's source files. */
#ifndef PLUGHOST_RUNTIME_UTIL_H
#define PLUGHOST_RUNTIME_UTIL_H

#include <stdarg.h>
#include <stddef.h>

#include "runtime.h"

/* strdup that accepts NULL (returns NULL). */
char *rt_strdup(const char *s);
/* malloc'd vsnprintf. */
char *rt_vformat(const char *fmt, va_list ap);
char *rt_format(const char *fmt, ...) PH__PRINTF(1, 2);
/* The context behind any host handle. */
rt_ctx *rt_ctx_of(const void *handle);
/* Replaces ctx's recorded error with `message` (takes ownership). */
void rt_ctx_set_error(rt_ctx *ctx, char *message);
void rt_ctx_init(rt_ctx *ctx, rt_ctx_kind kind, rt_host *host, const char *label);
void rt_ctx_clear(rt_ctx *ctx);
/* Emits a log line through the host's sink. */
void rt_log_message(rt_host *host, int level, const char *label, const char *message);

/* The host functions, as wired into the table by host.c. */
void rt_api_log(const void *handle, ph_log_level level, const char *fmt, ...) PH__PRINTF(3, 4);
void rt_api_error(const void *handle, const char *fmt, ...) PH__PRINTF(2, 3);

ph_config_kind rt_api_config_kind(const ph_config *node, const char *key);
ph_status rt_api_config_string(const ph_config *node, const char *key, const char *dflt,
                               const char **out);
ph_status rt_api_config_int(const ph_config *node, const char *key, int64_t dflt, int64_t *out);
ph_status rt_api_config_float(const ph_config *node, const char *key, double dflt, double *out);
ph_status rt_api_config_bool(const ph_config *node, const char *key, int dflt, int *out);
ph_status rt_api_config_duration_ms(const ph_config *node, const char *key, int64_t dflt,
                                    int64_t *out);
ph_status rt_api_config_child(const ph_config *node, const char *key, const ph_config **out);
size_t rt_api_config_len(const ph_config *node);
const ph_config *rt_api_config_at(const ph_config *node, size_t i, const char **key);
ph_status rt_api_config_error(const ph_config *node, const char *key, const char *fmt, ...)
    PH__PRINTF(3, 4);
void *rt_api_plugin_state(const ph_config *node);
ph_storage *rt_api_storage_lookup(const ph_config *node, const char *key, const char *name);
ph_status rt_api_require_single_header(const ph_config *node, const char *name);
ph_status rt_api_config_size(const ph_config *node, const char *key, int64_t dflt, int64_t *out);
/* Length of a valid header name (an RFC 9110 token), 0 if empty or not one. */
size_t rt_header_name_length(const char *name);

ph_status rt_api_storage_get(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                             uint8_t **value, size_t *value_len);
ph_status rt_api_storage_set(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                             const uint8_t *value, size_t value_len, int64_t ttl_ms);
ph_status rt_api_storage_del(ph_storage *st, const void *who, const uint8_t *key, size_t key_len);
ph_status rt_api_storage_incr(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                              int64_t delta, int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms);
void rt_api_free_value(uint8_t *value);
ph_status rt_api_call_value(ph_call *call, const void *data, size_t len);

const char *rt_api_method(const ph_exchange *ex);
const char *rt_api_path(const ph_exchange *ex);
const char *rt_api_query(const ph_exchange *ex);
const char *rt_api_route_param(const ph_exchange *ex, const char *name);
/* Name prefix of the raw form of a route parameter among an exchange's parameters. */
#define RT_RAW_PARAM '\x01'
const char *rt_api_route_param_raw(const ph_exchange *ex, const char *name);
const char *rt_api_client_ip(const ph_exchange *ex);
const char *rt_api_route_name(const ph_exchange *ex);
const char *rt_api_header_get(const ph_exchange *ex, ph_side side, const char *name);
ph_status rt_api_header_set(ph_exchange *ex, ph_side side, const char *name, const char *value);
ph_status rt_api_header_add(ph_exchange *ex, ph_side side, const char *name, const char *value);
size_t rt_api_header_remove(ph_exchange *ex, ph_side side, const char *name);
size_t rt_api_header_count(const ph_exchange *ex, ph_side side);
ph_status rt_api_header_at(const ph_exchange *ex, ph_side side, size_t i, const char **name,
                           const char **value);
const uint8_t *rt_api_body(const ph_exchange *ex, ph_side side, size_t *len);
ph_status rt_api_body_set(ph_exchange *ex, ph_side side, const void *data, size_t len);
int rt_api_status(const ph_exchange *ex);
ph_status rt_api_status_set(ph_exchange *ex, int status);
const uint8_t *rt_api_local_get(const ph_exchange *ex, const char *key, size_t *len);
ph_status rt_api_local_set(ph_exchange *ex, const char *key, const void *value, size_t len);
ph_status rt_api_upstream(ph_exchange *ex, const ph_upstream_spec *spec);
ph_status rt_api_slot_set(ph_exchange *ex, void *value, void (*release)(void *value));
void *rt_api_slot_get(const ph_exchange *ex);
ph_status rt_api_respond(ph_exchange *ex, int status, const char *content_type, const void *body,
                         size_t len);
ph_status rt_api_respond_error(ph_exchange *ex, int status, const char *fmt, ...) PH__PRINTF(3, 4);
ph_status rt_api_request_id_set(ph_exchange *ex, const char *id);
const char *rt_api_request_id(const ph_exchange *ex);
/* The JSON error body {"error":...,"status":N[,"requestId":...]} as the response of ex, with
** Content-Type application/json; the message is escaped. */
ph_status rt_exchange_error_answer(ph_exchange *ex, int status, const char *message);

#endif
