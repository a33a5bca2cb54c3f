/* The host's C runtime: its side of the plugin ABI (the ph_host_api table), the handles
** it gives plugins (configuration nodes, exchanges, storage calls, storages), and thin
** wrappers that call plugin hooks. Compiled into plughost._runtime through cffi's API
** mode; Python reaches the rt_* functions declared here. */
#ifndef PLUGHOST_RUNTIME_H
#define PLUGHOST_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "plugin.h"

/* What a host handle belongs to: the context shared by every handle of one plugin,
** instance, exchange or storage call. It labels log lines and collects errors. */
typedef enum rt_ctx_kind {
  RT_CTX_CONFIG = 1,
  RT_CTX_EXCHANGE,
  RT_CTX_CALL,
  RT_CTX_STORAGE
} rt_ctx_kind;

typedef struct rt_host rt_host;

typedef struct rt_ctx {
  rt_ctx_kind kind;
  rt_host *host;
  char *label;  /* "plugin memory", "MemoryStorage 'Sessions'"; owned */
  char *source; /* configuration file the config came from, or NULL; owned */
  char *error;  /* last error recorded, or NULL; owned */
  void *plugin_state; /* configuration trees: what the plugin's init stored */
  bool storage_may_block; /* configuration trees: a storage looked up through it may block */
  /* configuration trees: the header names its instance reads as an identity
  ** (ph_require_single_header), lower case, each followed by '\n'; owned, NULL if none */
  char *single_headers;
  /* configuration trees: the plugin's name, and the instance's ("" for the plugin's own
  ** config), that its metrics are labelled with; owned, NULL until set */
  char *plugin_name, *instance_name;
} rt_ctx;

/* ------------------------------------------------------------------ configuration */

struct ph_config {
  ph_handle_head head; /* head.host_private is the tree's rt_ctx */
  ph_config_kind kind;
  int line;   /* 1-based line in ctx->source, 0 if unknown */
  char *path; /* full key path for messages, e.g. "middlewares.Limiter.config.max"; owned */
  char *str;  /* STRING: the text; INT/FLOAT/BOOL: the text as written (may be NULL) */
  int64_t i;
  double f;
  int b;
  size_t n, cap;
  char **keys;              /* MAP: keys, owned */
  struct ph_config **items; /* LIST/MAP: children, owned */
};

/* Building a tree (from Python): the root owns the context and every node below it. */
ph_config *rt_config_new_root(rt_host *host, const char *label, const char *source,
                              const char *path, int line);
ph_config *rt_config_add(ph_config *parent, const char *key, ph_config_kind kind, int line);
void rt_config_set_string(ph_config *node, const char *value);
void rt_config_set_int(ph_config *node, int64_t value, const char *text);
void rt_config_set_float(ph_config *node, double value, const char *text);
void rt_config_set_bool(ph_config *node, int value, const char *text);
void rt_config_set_kind(ph_config *node, ph_config_kind kind);
void rt_config_set_plugin_state(ph_config *root, void *state);
/* Names the plugin and the instance ("" for the plugin's own config) the tree belongs to. */
void rt_config_set_owner(ph_config *root, const char *plugin, const char *instance);
/* Whether a storage looked up through this tree (ph_storage_lookup) has a may-block type. */
int rt_config_storage_may_block(const ph_config *root);
/* The names ph_require_single_header recorded on this tree: lower case, each followed by
** '\n' ("" if none). Owned by the tree. */
const char *rt_config_single_headers(const ph_config *root);
void rt_config_free(ph_config *root);
/* The error recorded on the tree (NULL if none) and clearing it. */
const char *rt_config_error(const ph_config *root);
void rt_config_clear_error(ph_config *root);

/* ----------------------------------------------------------------------- exchange */

/* The name the host registers its default storage under (ph_storage_lookup with ""). */
#define RT_DEFAULT_STORAGE "(default)"

typedef struct rt_field {
  char *name;
  char *value;
  size_t value_len; /* byte length of value (locals may hold any bytes) */
  size_t name_len;  /* strlen(name): lookups compare lengths before bytes */
} rt_field;

typedef struct rt_fields {
  rt_field *items;
  size_t n, cap;
} rt_fields;

/* Memory of one exchange comes from an arena: a block allocated with the exchange, then
** chunks as needed; everything is freed at once by rt_exchange_free. */
typedef struct rt_chunk {
  struct rt_chunk *next;
  size_t pad; /* keeps what follows 16-byte aligned */
} rt_chunk;

#define RT_INLINE_ARENA 4096

/* The longest request id (ph_request_id_set). */
#define RT_REQUEST_ID_MAX 200

/* One instance's per-request slot (ph_slot_set). */
typedef struct rt_slot {
  const void *owner; /* the rt_instance whose hook set it */
  void *value;
  void (*release)(void *value);
} rt_slot;

struct ph_exchange {
  ph_handle_head head; /* host_private = &ctx */
  char *arena_cur, *arena_end;
  rt_chunk *chunks;
  rt_ctx ctx;
  char *method, *path, *query, *client_ip; /* in the arena */
  const char *route_name;                  /* in the arena, or "" */
  rt_fields params;
  rt_fields headers[2]; /* PH_REQUEST, PH_RESPONSE */
  uint8_t *body[2];
  size_t body_len[2];
  int status;
  rt_fields locals;
  bool has_upstream;
  ph_upstream_spec upstream;
  char *upstream_url, *upstream_method;
  char *failure;       /* why the host answers with an error; owned */
  char *failure_label; /* which element failed; owned */
  char *packed;        /* rt_exchange_pack_response buffer; owned */
  size_t packed_cap;
  const void *current; /* the instance whose hook runs (slots), NULL between hooks */
  rt_slot *slots;      /* per-instance slots, released by rt_exchange_free; owned */
  size_t n_slots, cap_slots;
  char request_id[RT_REQUEST_ID_MAX + 1]; /* "" until set: read by crash reports, so inline */
  struct rt_answer_stats *answers;        /* the chain's counters (stats.h), or NULL */
  uint64_t started_ns;                    /* when the chain was given the request */
  bool timed;                             /* the elements' hooks are timed (sampled) */
  bool answered;                          /* counted in `answers` */
};

void *rt_arena_alloc(ph_exchange *ex, size_t n);
/* n bytes of data plus a NUL, in the exchange's arena (NULL when out of memory). */
char *rt_arena_dup(ph_exchange *ex, const void *data, size_t n);
/* Whether f holds a header called name (n = strlen(name)), compared case-insensitively. */
int rt_fields_has(const rt_fields *f, const char *name, size_t n);
int rt_fields_push(ph_exchange *ex, rt_fields *f, const char *name, size_t name_len,
                   const void *value, size_t value_len);

ph_exchange *rt_exchange_new(rt_host *host, const char *method, const char *path, const char *query,
                             const char *client_ip);
/* Releases the slots (their release functions run here) and frees the exchange. */
void rt_exchange_free(ph_exchange *ex);
void rt_exchange_set_route(ph_exchange *ex, const char *route_name);
void rt_exchange_add_param(ph_exchange *ex, const char *name, const char *value);
const char *rt_exchange_error(const ph_exchange *ex);
void rt_exchange_clear_error(ph_exchange *ex);
size_t rt_local_count(const ph_exchange *ex);
const char *rt_local_at(const ph_exchange *ex, size_t i, const uint8_t **value, size_t *len);

/* ---------------------------------------------------------------------- storages */

struct ph_storage {
  ph_handle_head head; /* host_private = &ctx */
  rt_ctx ctx;
  const ph_storage_type *type;
  void *self;
  bool serialise;       /* type is not thread-safe: calls hold lock */
  pthread_mutex_t lock;
  _Atomic uint64_t failures; /* calls that failed (PH_ERROR), for the host's metrics */
};

/* One storage call. */
struct ph_call {
  ph_handle_head head; /* host_private = &ctx */
  rt_ctx ctx;
  uint8_t *value;
  size_t value_len;
};

/* Registers a created storage instance under `name` (the host owns it from now on). */
ph_storage *rt_storage_register(rt_host *host, const char *name, const ph_storage_type *type,
                                void *self);
/* Calls the storage's close hook and frees the handle. */
void rt_storage_close(ph_storage *st);
/* Storage calls from Python. On PH_ERROR, *error receives a malloc'd message the caller
** frees with rt_free(); on get success, *value a malloc'd copy (free with rt_free()). */
ph_status rt_storage_get(ph_storage *st, const uint8_t *key, size_t key_len, uint8_t **value,
                         size_t *value_len, char **error);
ph_status rt_storage_set(ph_storage *st, const uint8_t *key, size_t key_len, const uint8_t *value,
                         size_t value_len, int64_t ttl_ms, char **error);
ph_status rt_storage_del(ph_storage *st, const uint8_t *key, size_t key_len, char **error);
ph_status rt_storage_incr(ph_storage *st, const uint8_t *key, size_t key_len, int64_t delta,
                          int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms, char **error);
ph_status rt_storage_reset(ph_storage *st, char **error);
void rt_free(void *p);
/* How many calls of this storage failed since it was registered. */
uint64_t rt_storage_failures(const ph_storage *st);

/* --------------------------------------------------------------------------- host */

/* Where log lines go: set by Python (an extern "Python" callback). */
typedef void (*rt_log_fn)(int level, const char *label, const char *message);

struct rt_host {
  const ph_host_api *api;
  rt_log_fn log;
  pthread_mutex_t lock; /* guards storages */
  ph_storage **storages;
  char **storage_names;
  size_t n_storages, cap_storages;
  pthread_mutex_t metrics_lock; /* guards the list of plugins' metrics (metrics.c) */
  struct ph_metric **metrics;
  size_t n_metrics, cap_metrics;
};

rt_host *rt_host_new(rt_log_fn log);
void rt_host_free(rt_host *host); /* does not close storages: Python closes them in order */
const ph_host_api *rt_host_api(void);
int rt_abi_major(void);
int rt_abi_minor(void);
size_t rt_host_api_size(void);

/* ------------------------------------------------------------ calling plugin hooks */

ph_status rt_call_init(const ph_plugin *p, ph_config *config, void **state);
void rt_call_shutdown(const ph_plugin *p, void *state);
ph_status rt_call_create(ph_status (*create)(const ph_config *, void **), ph_config *config,
                         void **self);
void rt_call_destroy(void (*destroy)(void *), void *self);
ph_next rt_middleware_request(const ph_middleware_type *t, void *self, ph_exchange *ex);
ph_status rt_middleware_response(const ph_middleware_type *t, void *self, ph_exchange *ex);
ph_next rt_action_handle(const ph_action_type *t, void *self, ph_exchange *ex);

#endif
