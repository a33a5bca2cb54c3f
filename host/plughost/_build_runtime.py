"""Builds ``plughost._runtime``: the host's C runtime, compiled through cffi's API mode.

Run by setuptools at install time (``cffi_modules`` in setup.py). ``make_builder`` can also
build the same runtime against another copy of the ABI header, which the tests use to
simulate a newer host.
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

PACKAGE_DIR = Path(__file__).resolve().parent
RUNTIME_DIR = PACKAGE_DIR / "_runtime"
RUNTIME_SOURCES = [
    "host.c",
    "config.c",
    "exchange.c",
    "storage.c",
    "chain.c",
    "watch.c",
    "stats.c",
    "metrics.c",
]

# What Python sees of the ABI and the runtime. `...;` lets the C compiler fill in layouts,
# so these declarations never drift from abi/plugin.h.
CDEF = """
typedef enum { PH_OK = 0, PH_NOT_FOUND = 1, PH_ERROR = -1 } ph_status;
typedef enum { PH_NEXT_CONTINUE = 0, PH_NEXT_RESPOND = 1, PH_NEXT_UPSTREAM = 2,
               PH_NEXT_ERROR = -1 } ph_next;
typedef enum { PH_CONFIG_MISSING = 0, PH_CONFIG_NULL = 1, PH_CONFIG_BOOL = 2, PH_CONFIG_INT = 3,
               PH_CONFIG_FLOAT = 4, PH_CONFIG_STRING = 5, PH_CONFIG_LIST = 6,
               PH_CONFIG_MAP = 7 } ph_config_kind;
typedef enum { PH_REQUEST = 0, PH_RESPONSE = 1 } ph_side;
#define PH_TYPE_THREAD_SAFE ...
#define PH_TYPE_MAY_BLOCK ...
#define PH_TYPE_BLOCKS_VIA_STORAGES ...
#define PH_UPSTREAM_WEBSOCKET ...

typedef struct ph_config ph_config;
typedef struct ph_exchange ph_exchange;
typedef struct ph_storage ph_storage;
typedef struct ph_call ph_call;
typedef struct rt_host rt_host;
typedef struct ph_host_api { uint32_t size; uint16_t abi_major; uint16_t abi_minor; ...; }
    ph_host_api;

typedef struct { uint32_t magic; uint16_t abi_major; uint16_t abi_minor; uint32_t size;
                 uint32_t reserved; } ph_plugin_header;

typedef struct {
  uint32_t size; uint32_t flags; const char *url; const char *method;
  int64_t connect_timeout_ms; int64_t timeout_ms;
  int64_t ws_ping_interval_ms; int64_t ws_pong_timeout_ms; int64_t ws_max_inactivity_ms;
  int64_t ws_max_message_bytes; const char *ws_subprotocols; ...;
} ph_upstream_spec;

typedef struct ph_option {
  uint32_t size; uint32_t kind; const char *name; const char *description;
  const char *default_text; uint32_t flags; uint32_t items; double min; double max;
  const char *const *choices; const struct ph_option *fields;
  ...;
} ph_option;

typedef struct {
  uint32_t size; uint32_t flags; const char *id; const char *description;
  ph_status (*create)(const ph_config *, void **);
  void (*destroy)(void *);
  ph_next (*on_request)(void *, ph_exchange *);
  ph_status (*on_response)(void *, ph_exchange *);
  const ph_option *options;
  ...;
} ph_middleware_type;

typedef struct {
  uint32_t size; uint32_t flags; const char *id; const char *description;
  ph_status (*create)(const ph_config *, void **);
  void (*destroy)(void *);
  ph_next (*handle)(void *, ph_exchange *);
  const ph_option *options;
  ...;
} ph_action_type;

typedef struct {
  uint32_t size; uint32_t flags; const char *id; const char *description;
  ph_status (*create)(const ph_config *, void **);
  void (*close)(void *);
  ph_status (*get)(void *, ph_call *, const uint8_t *, size_t);
  ph_status (*set)(void *, ph_call *, const uint8_t *, size_t, const uint8_t *, size_t, int64_t);
  ph_status (*del)(void *, ph_call *, const uint8_t *, size_t);
  ph_status (*incr)(void *, ph_call *, const uint8_t *, size_t, int64_t, int64_t, int64_t *,
                    int64_t *);
  ph_status (*reset)(void *, ph_call *);
  const ph_option *options;
  ...;
} ph_storage_type;

typedef struct {
  ph_plugin_header header;
  const char *name; const char *version; const char *description;
  ph_status (*init)(const ph_config *, void **);
  void (*shutdown)(void *);
  const ph_middleware_type *const *middlewares;
  const ph_action_type *const *actions;
  const ph_storage_type *const *storages;
  const ph_option *options;
  ...;
} ph_plugin;

size_t rt_offsetof_plugin_storages(void);
size_t rt_sizeof_plugin(void);
size_t rt_sizeof_middleware_type(void);
size_t rt_sizeof_action_type(void);
size_t rt_sizeof_storage_type(void);

ph_config *rt_config_new_root(rt_host *host, const char *label, const char *source,
                              const char *path, int line);
ph_config *rt_config_add(ph_config *parent, const char *key, ph_config_kind kind, int line);
void rt_config_set_string(ph_config *node, const char *value);
void rt_config_set_int(ph_config *node, int64_t value, const char *text);
void rt_config_set_float(ph_config *node, double value, const char *text);
void rt_config_set_bool(ph_config *node, int value, const char *text);
void rt_config_set_kind(ph_config *node, ph_config_kind kind);
void rt_config_set_plugin_state(ph_config *root, void *state);
int rt_config_storage_may_block(const ph_config *root);
const char *rt_config_single_headers(const ph_config *root);
void rt_config_free(ph_config *root);
const char *rt_config_error(const ph_config *root);
void rt_config_clear_error(ph_config *root);

ph_exchange *rt_exchange_new(rt_host *host, const char *method, const char *path,
                             const char *query, const char *client_ip);
void rt_exchange_free(ph_exchange *ex);
void rt_exchange_set_route(ph_exchange *ex, const char *route_name);
void rt_exchange_add_param(ph_exchange *ex, const char *name, const char *value);
const char *rt_exchange_error(const ph_exchange *ex);
void rt_exchange_clear_error(ph_exchange *ex);
size_t rt_local_count(const ph_exchange *ex);
const char *rt_local_at(const ph_exchange *ex, size_t i, const uint8_t **value, size_t *len);
const ph_upstream_spec *rt_exchange_upstream(const ph_exchange *ex);

const char *rt_api_method(const ph_exchange *ex);
const char *rt_api_path(const ph_exchange *ex);
const char *rt_api_query(const ph_exchange *ex);
const char *rt_api_client_ip(const ph_exchange *ex);
const char *rt_api_route_param(const ph_exchange *ex, const char *name);
const char *rt_api_route_param_raw(const ph_exchange *ex, const char *name);
size_t rt_api_header_remove(ph_exchange *ex, ph_side side, const char *name);
const char *rt_api_header_get(const ph_exchange *ex, ph_side side, const char *name);
ph_status rt_api_header_set(ph_exchange *ex, ph_side side, const char *name, const char *value);
ph_status rt_api_header_add(ph_exchange *ex, ph_side side, const char *name, const char *value);
size_t rt_api_header_count(const ph_exchange *ex, ph_side side);
ph_status rt_api_header_at(const ph_exchange *ex, ph_side side, size_t i, const char **name,
                           const char **value);
const uint8_t *rt_api_body(const ph_exchange *ex, ph_side side, size_t *len);
ph_status rt_api_body_set(ph_exchange *ex, ph_side side, const void *data, size_t len);
int rt_api_status(const ph_exchange *ex);
ph_status rt_api_status_set(ph_exchange *ex, int status);
const uint8_t *rt_api_local_get(const ph_exchange *ex, const char *key, size_t *len);
ph_status rt_api_local_set(ph_exchange *ex, const char *key, const void *value, size_t len);

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

ph_storage *rt_storage_register(rt_host *host, const char *name, const ph_storage_type *type,
                                void *self);
void rt_storage_close(ph_storage *st);
ph_status rt_storage_get(ph_storage *st, const uint8_t *key, size_t key_len, uint8_t **value,
                         size_t *value_len, char **error);
ph_status rt_storage_set(ph_storage *st, const uint8_t *key, size_t key_len,
                         const uint8_t *value, size_t value_len, int64_t ttl_ms, char **error);
ph_status rt_storage_del(ph_storage *st, const uint8_t *key, size_t key_len, char **error);
ph_status rt_storage_incr(ph_storage *st, const uint8_t *key, size_t key_len, int64_t delta,
                          int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms, char **error);
ph_status rt_storage_reset(ph_storage *st, char **error);
void rt_free(void *p);

typedef void (*rt_log_fn)(int level, const char *label, const char *message);
extern "Python" void plughost_log_sink(int, const char *, const char *);
rt_host *rt_host_new(rt_log_fn log);
void rt_host_free(rt_host *host);
const ph_host_api *rt_host_api(void);
int rt_abi_major(void);
int rt_abi_minor(void);
size_t rt_host_api_size(void);

typedef struct rt_instance rt_instance;
typedef struct rt_chain rt_chain;
typedef int (*rt_py_call_fn)(void *handle, int phase, ph_exchange *ex);
extern "Python" int plughost_py_call(void *, int, ph_exchange *);
#define RT_MIDDLEWARE ...
#define RT_ACTION ...
#define RT_PY_MIDDLEWARE ...
#define RT_PY_ACTION ...
#define RT_PHASE_REQUEST ...
#define RT_PHASE_RESPONSE ...
#define RT_DONE ...
#define RT_UPSTREAM ...
#define RT_STREAM ...
rt_instance *rt_instance_new(int kind, const void *type, void *self, const char *label,
                             int thread_safe, int may_block);
void rt_instance_free(rt_instance *inst);
int rt_instance_request(rt_instance *inst, ph_exchange *ex);
int rt_instance_response(rt_instance *inst, ph_exchange *ex);
int rt_instance_handle(rt_instance *inst, ph_exchange *ex);
void rt_set_py_call(rt_py_call_fn fn);
#define RT_WATCH_HANG_EXIT ...
int rt_watch_install_crash_report(void);
int rt_watch_start(long limit_ms);
void rt_instance_set_plugin(rt_instance *inst, const char *plugin);
rt_chain *rt_chain_new(rt_instance **middlewares, size_t n, rt_instance *action);
void rt_chain_free(rt_chain *chain);
void rt_chain_set_route(rt_chain *chain, const char *route_name);
void rt_exchange_set_response_packed(ph_exchange *ex, int status, const char *headers,
                                     size_t headers_len, const uint8_t *body, size_t body_len);
size_t rt_exchange_pack_request(ph_exchange *ex, const char **headers);
int rt_chain_may_block(const rt_chain *chain);
int rt_chain_release_gil(const rt_chain *chain);
int rt_chain_run(const rt_chain *chain, ph_exchange *ex, size_t *passed);
void rt_chain_finish(const rt_chain *chain, ph_exchange *ex, size_t passed);
void rt_exchange_fail(ph_exchange *ex, int status, const char *label, const char *reason);
ph_exchange *rt_exchange_new_packed(rt_host *host, const char *method, const char *path,
                                    const char *query, const char *client_ip,
                                    const char *headers, size_t headers_len,
                                    const uint8_t *body, size_t body_len);
size_t rt_exchange_pack_response(ph_exchange *ex, const char **headers, int *status,
                                 const uint8_t **body, size_t *body_len);
const char *rt_exchange_failure(const ph_exchange *ex, const char **label);
typedef struct {
  ph_exchange *ex; int outcome; int status; size_t passed;
  const char *headers; size_t headers_len; const char *body; size_t body_len;
  const char *failure; size_t failure_len; const char *failure_label;
  ...;
} rt_result;
void rt_serve(rt_host *host, const rt_chain *chain, const char *method, const char *path,
              const char *query, const char *client_ip, const char *headers,
              size_t headers_len, const uint8_t *body, size_t body_len, const char *params,
              size_t params_len, rt_result *out);
void rt_result_pack(rt_result *out);
void rt_serve_upstream(const rt_chain *chain, ph_exchange *ex, size_t passed, int status,
                       const char *headers, size_t headers_len, const uint8_t *body,
                       size_t body_len, const char *reason, rt_result *out);
void rt_serve_upstream_head(const rt_chain *chain, ph_exchange *ex, size_t passed,
                            int status, const char *headers, size_t headers_len,
                            rt_result *out);

typedef struct rt_answer_stats rt_answer_stats;
typedef struct rt_element_stats rt_element_stats;
#define RT_STAT_PAIRS ...
#define RT_LATENCY_BOUNDS ...
void rt_stats_enable(int on);
typedef struct {
  int kind; const char *family; const char *help; const char *instance; const char *label;
  const char *label_value; size_t n_buckets; const double *bounds;
} rt_metric_info;
#define RT_METRIC_BUCKETS_MAX ...
size_t rt_metrics_count(rt_host *host);
int rt_metric_info_at(rt_host *host, size_t i, rt_metric_info *out);
double rt_metric_read(rt_host *host, size_t i, uint64_t *buckets);
void rt_config_set_owner(ph_config *root, const char *plugin, const char *instance);
const rt_answer_stats *rt_chain_answers(const rt_chain *chain);
const rt_element_stats *rt_instance_times(const rt_instance *inst);
const double *rt_latency_bounds(void);
size_t rt_stats_pairs(const rt_answer_stats *s, uint32_t *methods, uint32_t *statuses,
                      uint64_t *counts, size_t cap);
void rt_stats_latency(const rt_answer_stats *s, uint64_t *buckets, uint64_t *sum_ns,
                      uint64_t *overflow);
void rt_element_times(const rt_element_stats *s, uint64_t *out);
uint64_t rt_storage_failures(const ph_storage *st);

ph_status rt_call_init(const ph_plugin *p, ph_config *config, void **state);
void rt_call_shutdown(const ph_plugin *p, void *state);
ph_status rt_call_create(ph_status (*create)(const ph_config *, void **), ph_config *config,
                         void **self);
void rt_call_destroy(void (*destroy)(void *), void *self);
ph_next rt_middleware_request(const ph_middleware_type *t, void *self, ph_exchange *ex);
ph_status rt_middleware_response(const ph_middleware_type *t, void *self, ph_exchange *ex);
ph_next rt_action_handle(const ph_action_type *t, void *self, ph_exchange *ex);
"""

SOURCE_PRELUDE = """
#include "runtime.h"
#include "util.h"
#include "chain.h"
#include "metrics.h"
#include "watch.h"
size_t rt_offsetof_plugin_storages(void) { return offsetof(ph_plugin, storages); }
size_t rt_sizeof_plugin(void) { return sizeof(ph_plugin); }
size_t rt_sizeof_middleware_type(void) { return sizeof(ph_middleware_type); }
size_t rt_sizeof_action_type(void) { return sizeof(ph_action_type); }
size_t rt_sizeof_storage_type(void) { return sizeof(ph_storage_type); }
const ph_upstream_spec *rt_exchange_upstream(const ph_exchange *ex) {
  return ex->has_upstream ? &ex->upstream : NULL;
}
"""


def _relative(path: Path) -> str:
    """``path`` relative to the working directory when below it (setuptools insists)."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def find_abi_include() -> Path:
    """The directory holding plugin.h: the package's copy, else the source tree's abi/."""
    for candidate in (PACKAGE_DIR / "include", PACKAGE_DIR.parent.parent / "abi"):
        if (candidate / "plugin.h").is_file():
            return candidate
    raise FileNotFoundError("plugin.h not found next to the plughost package or in abi/")


def make_builder(
    module_name: str = "plughost._runtime",
    abi_include: Path | None = None,
    extra_cflags: list[str] | None = None,
    relative_paths: bool = False,
    extra_ldflags: list[str] | None = None,
) -> FFI:
    """An FFI builder for the runtime, against the header in ``abi_include``.

    setuptools wants source paths relative to setup.py (``relative_paths``); a builder
    compiled elsewhere with ``FFI.compile(tmpdir=...)`` needs absolute ones.
    """
    include = abi_include or find_abi_include()
    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(
        module_name,
        SOURCE_PRELUDE,
        sources=[
            _relative(RUNTIME_DIR / name) if relative_paths else str(RUNTIME_DIR / name)
            for name in RUNTIME_SOURCES
        ],
        include_dirs=[str(include), str(RUNTIME_DIR)],
        define_macros=[("_GNU_SOURCE", "1")],
        extra_compile_args=[
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Wno-unused-parameter",
            "-Werror=implicit-function-declaration",
            *(extra_cflags or []),
        ],
        libraries=["pthread", "m"],
        extra_link_args=list(extra_ldflags or []),
    )
    return builder


ffibuilder = make_builder(relative_paths=True)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
