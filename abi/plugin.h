/*
** plughost plugin ABI, version 1.2                                   abi/plugin.h
**
** This header is the whole contract between the plughost host and a native plugin.
** A plugin is a shared object (.so) written in C, compiled against this file, that
** defines exactly one entry with PH_PLUGIN_DEFINE(). Nothing else is exported and the
** plugin links against no host symbol (-Wl,--no-undefined holds for it).
**
** Compatibility promise. Inside one major version the ABI only grows:
**   - fields are appended at the end of the size-prefixed structs below, never
**     removed, reordered or retyped;
**   - host functions are appended at the end of ph_host_api, each marked with the
**     minor version that added it;
**   - a plugin built against 1.x loads on every 1.y host with y >= x. A host refuses a
**     plugin whose minor is newer than its own, or whose major differs.
** Every struct that can grow starts with its own size (the cbSize pattern): the host
** reads only the fields a plugin's size covers, and a plugin tests whether a host
** function exists with PH_HOST_HAS(handle, fn) before calling one newer than 1.0.
**
** Naming. Everything declared here starts with one of three prefixes:
**   ph_  / PH_   types, constants and the inline wrappers plugins call;
**   ph_host_api  the function table the host provides (members are plain names);
**   hooks        the function pointers a plugin fills in its type tables
**                (init, create, on_request, get, ...), called by the host.
** Names starting with ph__ / PH__ are private to this header.
**
** Ownership and lifetime, in one rule: the host owns every pointer it hands to a
** plugin, and a plugin owns every pointer it hands to the host. A pointer received
** from the host is valid for the time stated where it is declared and must never be
** freed by the plugin; data the plugin passes to the host is copied by the host before
** the call returns (unless stated otherwise), so the plugin may free or reuse it.
**
** Threads. The host may call hooks of different instances concurrently. It calls the
** hooks of one instance concurrently only if its type has PH_TYPE_THREAD_SAFE;
** otherwise it serialises them. A type with PH_TYPE_MAY_BLOCK (network or disk I/O,
** locks held for long) is never called on the host's event loop thread.
*/
#ifndef PLUGHOST_PLUGIN_H
#define PLUGHOST_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <limits.h> /* pulls in the C library's feature macros (__GLIBC__ ...) */

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== versions === */

#define PH_ABI_MAJOR 1 /* changes only with an incompatible ABI */
#define PH_ABI_MINOR 2 /* grows with every compatible addition */

/* Value of ph_plugin_header.magic: the bytes "PLGH" read as a little-endian word. */
#define PH_PLUGIN_MAGIC 0x48474C50u

/* The one symbol every plugin exports (defined by PH_PLUGIN_DEFINE). Never changes. */
#define PH_ENTRY_SYMBOL "plughost_plugin_entry"

/* ======================================================================= types === */

/* Result of a hook or of a host function. Zero is success everywhere. */
typedef enum ph_status {
  PH_OK = 0,        /* done */
  PH_NOT_FOUND = 1, /* storage get/delete: no such key (or it expired) */
  PH_ERROR = -1     /* failed; the reason was reported with ph_error()/ph_config_error() */
} ph_status;

/* What a middleware's on_request or an action's handle asks the host to do next. */
typedef enum ph_next {
  PH_NEXT_CONTINUE = 0, /* middleware: go on with the next element of the chain */
  PH_NEXT_RESPOND = 1,  /* stop here and send the response set on the exchange; the
                           response phase still runs for the middlewares already passed */
  PH_NEXT_UPSTREAM = 2, /* action only: perform the request set with ph_upstream() */
  PH_NEXT_ERROR = -1    /* fail: the host answers 500 and logs the ph_error() message */
} ph_next;

/* Log levels for ph_log(). */
typedef enum ph_log_level {
  PH_LOG_DEBUG = 10,
  PH_LOG_INFO = 20,
  PH_LOG_WARNING = 30,
  PH_LOG_ERROR = 40
} ph_log_level;

/* Kinds of configuration node, as returned by ph_config_kind(). */
typedef enum ph_config_kind {
  PH_CONFIG_MISSING = 0, /* no such key */
  PH_CONFIG_NULL = 1,    /* key present with an empty or null value */
  PH_CONFIG_BOOL = 2,
  PH_CONFIG_INT = 3,
  PH_CONFIG_FLOAT = 4,
  PH_CONFIG_STRING = 5,
  PH_CONFIG_LIST = 6,
  PH_CONFIG_MAP = 7
} ph_config_kind;

/* Which message a header function works on. */
typedef enum ph_side { PH_REQUEST = 0, PH_RESPONSE = 1 } ph_side;

/* Flags of a middleware, action or storage type (ph_*_type.flags). */
#define PH_TYPE_THREAD_SAFE 0x1u /* hooks of one instance may run concurrently */
#define PH_TYPE_MAY_BLOCK 0x2u   /* hooks may block: never run on the event loop */
/* 1.1: the hooks block only inside calls to storages that the instance looked up with
** ph_storage_lookup() during create (a session or rate-limit middleware). A 1.1 host then
** treats the instance as may-block only when one of those storages' types is, and runs it
** on the event loop when they are all in-process (MemoryStorage). Set it together with
** PH_TYPE_MAY_BLOCK, which a 1.0 host goes by. */
#define PH_TYPE_BLOCKS_VIA_STORAGES 0x4u
/* 1.2: the type's hooks never read a request or response body (no ph_body() call). When
** every middleware and the action of a route carry it, the host streams bodies between the
** client and the upstream instead of holding them whole: the request phase and the action
** run once the request's headers are in (the request body is then empty to them, and the
** host sends the client's body on to the upstream as it arrives); the response phase runs
** once the upstream's headers are in, with an empty response body and the upstream's
** Content-Length header when it sent one, and the upstream's body follows as it arrives.
** A response hook that sets a body or an error status replaces the upstream's answer. An
** older host ignores the flag and holds bodies whole, as for types without it. */
#define PH_TYPE_STREAMS_BODIES 0x8u

/* Opaque handles the host gives to plugins. Each begins with a ph_handle_head, which
** is all a plugin may read of it; the rest belongs to the host.
**
**   ph_config    a node of the YAML configuration the user wrote for a plugin or an
**                instance; also the plugin's door to the host during init/create.
**                Valid until the matching shutdown/destroy hook returns.
**   ph_exchange  one HTTP request and its response, as it flows through a chain.
**                Valid only during the hook call that received it.
**   ph_call      one storage operation: where a storage hook returns a value or reports
**                an error. Valid only during the hook call that received it.
**   ph_storage   a configured storage instance, found by name with
**                ph_storage_lookup(); usable from any hook until the destroy hook of
**                the instance that looked it up returns. Thread-safe to use.
**   ph_metric    1.2: a metric the plugin declared with ph_metric_declare() during init or
**                create; usable from any hook, from any thread, until the plugin's
**                shutdown hook returns.
*/
typedef struct ph_config ph_config;
typedef struct ph_metric ph_metric;
typedef struct ph_exchange ph_exchange;
typedef struct ph_call ph_call;
typedef struct ph_storage ph_storage;
typedef struct ph_host_api ph_host_api;

typedef struct ph_handle_head {
  const ph_host_api *api; /* the host's function table; lives as long as the plugin */
  void *host_private;     /* reserved for the host: do not read or write */
} ph_handle_head;

/* The upstream request an action asks the host to perform (ph_upstream()).
** The host sends the exchange's request headers and body as they are when the action
** returns, to `url`, and puts the upstream's status, headers and body into the
** exchange's response before the response phase runs (1.2: bodies stream instead on
** routes whose elements all carry PH_TYPE_STREAMS_BODIES). The host copies every field
** during ph_upstream(). Fields after timeout_ms were added in 1.1: the host reads only
** those that `size` covers, and treats the others as 0 / NULL.
**
** WebSocket sessions (PH_UPSTREAM_WEBSOCKET, on a request the client sent as a WebSocket
** handshake). The host opens a WebSocket to `url` (ws:// or wss://) with the request's
** headers minus the hop-by-hop and Sec-WebSocket-* ones, within connect_timeout_ms (or
** timeout_ms). When the upstream accepts, the response phase runs with status 101 (the
** upstream's own handshake headers are not passed on); if the status is still 101
** afterwards, the host accepts the client's handshake with the response's headers and the
** subprotocol the upstream chose, then relays text and binary messages both ways, answers
** pings, and passes a close (code and reason) from either side to the other. When the
** upstream refuses or cannot be reached, the response phase runs with 502/504 (or the
** upstream's own HTTP error status) and the client gets that response instead of a
** WebSocket; a plain HTTP request gets 426. A session lasts until a side closes it or one
** of the ws_ limits below ends it. The client side is kept alive by the HTTP server's own
** pings. */
typedef struct ph_upstream_spec {
  uint32_t size;              /* sizeof(ph_upstream_spec) */
  uint32_t flags;             /* PH_UPSTREAM_* */
  const char *url;            /* absolute http(s):// or ws(s):// URL, path and query included */
  const char *method;         /* NULL: the request's method */
  int64_t connect_timeout_ms; /* 0: the host's default */
  int64_t timeout_ms;         /* whole exchange; 0: the host's default */

  /* --- 1.1: WebSocket sessions; 0 or NULL: off, or the host's default -------------- */
  int64_t ws_ping_interval_ms;  /* ping the upstream this often; 0: never */
  int64_t ws_pong_timeout_ms;   /* close the session (1011) when a pong takes longer than
                                   this after a ping; 0: no limit */
  int64_t ws_max_inactivity_ms; /* close the session (1001) after this long without a
                                   message in either direction; 0: no limit */
  int64_t ws_max_message_bytes; /* close the session (1009) on a larger message from
                                   either side; 0: the host's default, 16 MiB */
  const char *ws_subprotocols;  /* comma-separated subprotocols to offer the upstream;
                                   NULL: those the client offered */
} ph_upstream_spec;

#define PH_UPSTREAM_WEBSOCKET 0x1u /* proxy a WebSocket session instead of one request */

/* The size of a 1.0 ph_upstream_spec: what a host reads of a spec this small. */
#define PH_UPSTREAM_SPEC_SIZE_1_0 (offsetof(ph_upstream_spec, timeout_ms) + sizeof(int64_t))

/* Option schemas (1.2). A type, and a plugin for its own `config:`, may declare the
** options it takes. The host then checks every instance's config against the schema
** before create runs: an unknown key (with the closest known one), a value of the wrong
** kind, out of bounds or not among the choices, a required option left out, a key
** written twice in different case. Every problem is reported with its file, line and
** key, all at once, and create runs only on a config that passed. Keys match ignoring
** case, as in Seam, and the getters look keys up ignoring case too. A type without a
** schema (options == NULL, or a table built against 1.0 or 1.1) is checked as before: by
** its create hook alone. `plughost describe` and `plughost schema` print the schemas.
**
** A schema is an array of ph_option in static storage, ended by an element whose name is
** NULL (PH_OPTIONS_END). The host steps through the array by the `size` of its first
** element, so ph_option can grow. The host only checks: it never fills in defaults, so
** create reads an absent option with the getter's own default, which should be the one
** default_text shows. */
typedef enum ph_option_kind {
  PH_OPTION_STRING = 1,   /* text; a number is taken as the text it was written as */
  PH_OPTION_INT = 2,      /* a whole number (read with ph_config_int) */
  PH_OPTION_FLOAT = 3,    /* a number (ph_config_float) */
  PH_OPTION_BOOL = 4,     /* true or false (ph_config_bool) */
  PH_OPTION_DURATION = 5, /* "500ms", "60s", "1h30m", or seconds (ph_config_duration_ms);
                             bounds in seconds */
  PH_OPTION_SIZE = 6,     /* bytes, or "64KB", "4MiB" (ph_config_size); bounds in bytes */
  PH_OPTION_LIST = 7,     /* a list whose items are of kind `items` (0: any); bounds: how
                             many items */
  PH_OPTION_MAP = 8,      /* a map: the keys `fields` declares, or, with fields NULL, any
                             keys whose values are of kind `items` (0: any) */
  PH_OPTION_ENUM = 9      /* one of `choices`, matched ignoring case (ph_config_string) */
} ph_option_kind;

#define PH_OPTION_REQUIRED 0x1u   /* the key must be present, not null or empty */
#define PH_OPTION_MIN 0x2u        /* `min` bounds the value from below (inclusive) */
#define PH_OPTION_MAX 0x4u        /* `max` bounds the value from above (inclusive) */
#define PH_OPTION_COMMA_LIST 0x8u /* LIST: one string of comma-separated items will do */
#define PH_OPTION_OR_FALSE 0x10u  /* `false` is accepted as well: it turns the option off */

typedef struct ph_option {
  uint32_t size;             /* sizeof(ph_option) */
  uint32_t kind;             /* ph_option_kind */
  const char *name;          /* the key, spelt as documented; NULL ends the array */
  const char *description;   /* one line, for describe and editors */
  const char *default_text;  /* the default as a user would write it ("5", "60s", "Lax");
                                NULL: none (absent means off, or the option is required) */
  uint32_t flags;            /* PH_OPTION_* */
  uint32_t items;            /* LIST and free MAP: the kind of every item (0: any); an
                                ENUM item takes its values from `choices` */
  double min;                /* with PH_OPTION_MIN */
  double max;                /* with PH_OPTION_MAX */
  const char *const *choices;     /* ENUM: the allowed values, NULL-terminated */
  const struct ph_option *fields; /* MAP: the schema of its keys; NULL: any key */
} ph_option;

/* Writing a schema: PH_OPTION(kind, name, default_text, description, more fields...).
**   static const char *const same_site[] = {"Lax", "Strict", "None", NULL};
**   static const ph_option limiter_options[] = {
**       PH_OPTION(PH_OPTION_STRING, "storage", NULL, "the storage that counts",
**                 .flags = PH_OPTION_REQUIRED),
**       PH_OPTION(PH_OPTION_INT, "maxConnections", "5", "requests per window",
**                 .flags = PH_OPTION_MIN, .min = 1),
**       PH_OPTION(PH_OPTION_ENUM, "sameSite", "Lax", "the cookie's SameSite",
**                 .choices = same_site),
**       PH_OPTIONS_END};
** and point the type's (or PH_PLUGIN_DEFINE's) .options at the array. */
#define PH_OPTION(kind_, name_, default_, description_, ...) \
  {.size = sizeof(ph_option),                                \
   .kind = (kind_),                                          \
   .name = (name_),                                          \
   .default_text = (default_),                               \
   .description = (description_),                            \
   __VA_ARGS__}
#define PH_OPTIONS_END {.size = sizeof(ph_option), .name = NULL}

/* Metrics (1.2). A plugin publishes counters, gauges and histograms beside the host's own
** Prometheus metrics: it declares each during init or create with ph_metric_declare() and updates
** it from any hook with ph_metric_add() / ph_metric_set() / ph_metric_observe(), which are
** lock-free. The host exposes it as plughost_plugin_<plugin>_<name> (a counter with
** "_total"), labelled instance="<the instance's name>" (absent for the plugin's own
** metrics, declared during init) and, when `label` is set, <label>="<label_value>".
** One name is one family: every declaration of it in a plugin has the same kind, help,
** label name and buckets; declaring the same name, instance and label value again gives
** the same handle back (a counter keeps counting). */
typedef enum ph_metric_kind {
  PH_METRIC_COUNTER = 1,  /* only goes up: ph_metric_add() with values >= 0 */
  PH_METRIC_GAUGE = 2,    /* goes up and down: ph_metric_set(), ph_metric_add() */
  PH_METRIC_HISTOGRAM = 3 /* ph_metric_observe() into buckets */
} ph_metric_kind;

typedef struct ph_metric_spec {
  uint32_t size;           /* sizeof(ph_metric_spec) */
  uint32_t kind;           /* ph_metric_kind */
  const char *name;        /* [a-z][a-z0-9_]*, at most 64 characters */
  const char *help;        /* one line, at most 256 bytes */
  const char *label;       /* NULL, or one more label's name: [a-z][a-z0-9_]*, not
                              "instance", "le" or "quantile" */
  const char *label_value; /* with `label`: this handle's value, 1 to 128 printable bytes */
  const double *buckets;   /* HISTOGRAM: ascending upper bounds (+Inf is implied); NULL:
                              the host's (0.0005 s to 10 s) */
  size_t n_buckets;        /* how many, at most 32 */
} ph_metric_spec;

/* =================================================================== plugin hooks === */

/* A middleware type. Instances are created once per configured middleware (an entry of
** middlewares.yaml) and used for every request of every route that names it.
**
** create      Called once per configured instance with its `config:` subtree. Stores
**             the instance's state in *self (may stay NULL). Returns PH_OK, or
**             PH_ERROR after ph_config_error() said what is wrong. Required.
** destroy     Frees what create allocated. Called once, after the last hook call of the
**             instance, also when create failed (with *self as create left it). May be
**             NULL.
** on_request  Request phase, in chain order. Returns PH_NEXT_CONTINUE, PH_NEXT_RESPOND
**             (response already set on ex) or PH_NEXT_ERROR. May be NULL.
** on_response Response phase, in reverse chain order, for every middleware whose
**             on_request ran (or that has none), also after PH_NEXT_RESPOND and upstream
**             failures. May modify the response. Returns PH_OK or PH_ERROR. May be NULL.
*/
typedef struct ph_middleware_type {
  uint32_t size;           /* sizeof(ph_middleware_type) */
  uint32_t flags;          /* PH_TYPE_* */
  const char *id;          /* "plugins.<plugin>.middlewares.<Name>"; static storage */
  const char *description; /* one line, static storage; may be NULL */
  ph_status (*create)(const ph_config *config, void **self);
  void (*destroy)(void *self);
  ph_next (*on_request)(void *self, ph_exchange *ex);
  ph_status (*on_response)(void *self, ph_exchange *ex);
  const ph_option *options; /* 1.2: the schema of an instance's config; NULL: none */
} ph_middleware_type;

/* An action type: the end of a route's chain. `handle` either sets the response and
** returns PH_NEXT_RESPOND, or calls ph_upstream() and returns PH_NEXT_UPSTREAM, or
** returns PH_NEXT_ERROR. create/destroy as for middlewares. */
typedef struct ph_action_type {
  uint32_t size;           /* sizeof(ph_action_type) */
  uint32_t flags;          /* PH_TYPE_* */
  const char *id;          /* "plugins.<plugin>.actions.<Name>"; static storage */
  const char *description; /* one line, static storage; may be NULL */
  ph_status (*create)(const ph_config *config, void **self);
  void (*destroy)(void *self);
  ph_next (*handle)(void *self, ph_exchange *ex);
  const ph_option *options; /* 1.2: the schema of an instance's config; NULL: none */
} ph_action_type;

/* A storage type: a key-value store with expiry, shared by name between plugins.
** Keys and values are byte strings; `key`/`value` point to `key_len`/`value_len` bytes
** owned by the host, valid during the call only. `ttl_ms` is a time-to-live in
** milliseconds; 0 means no expiry; the host never passes a negative one. Every hook reports failures with ph_error(call, ...)
** and returns PH_ERROR; a storage never drops data silently.
**
** get    Found: hands the value to the host with ph_call_value() and returns PH_OK.
**        Absent or expired: PH_NOT_FOUND.
** set    Stores value under key, replacing any old value and its expiry.
** del    Removes key. PH_NOT_FOUND if it was absent.
** incr   Atomically adds `delta` to the integer stored under key and returns the new
**        value in *value. An absent or expired key starts from 0 and gets the expiry
**        ttl_ms from now; an existing key keeps its expiry. *ttl_left_ms receives the
**        remaining time to live (-1: none). Atomic across every caller of the same
**        backing store, including other host processes for shared stores.
** reset  Removes every key of this instance (its prefix, for shared stores).
** close  Closes connections and frees self. Called once; no hook runs afterwards.
*/
typedef struct ph_storage_type {
  uint32_t size;           /* sizeof(ph_storage_type) */
  uint32_t flags;          /* PH_TYPE_* */
  const char *id;          /* "plugins.<plugin>.storages.<Name>"; static storage */
  const char *description; /* one line, static storage; may be NULL */
  ph_status (*create)(const ph_config *config, void **self);
  void (*close)(void *self);
  ph_status (*get)(void *self, ph_call *call, const uint8_t *key, size_t key_len);
  ph_status (*set)(void *self, ph_call *call, const uint8_t *key, size_t key_len,
                   const uint8_t *value, size_t value_len, int64_t ttl_ms);
  ph_status (*del)(void *self, ph_call *call, const uint8_t *key, size_t key_len);
  ph_status (*incr)(void *self, ph_call *call, const uint8_t *key, size_t key_len, int64_t delta,
                    int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms);
  ph_status (*reset)(void *self, ph_call *call);
  const ph_option *options; /* 1.2: the schema of an instance's config; NULL: none */
} ph_storage_type;

/* The plugin's fixed header. Its layout never changes, in any ABI version: the host
** reads it before it trusts anything else in the file. */
typedef struct ph_plugin_header {
  uint32_t magic;     /* PH_PLUGIN_MAGIC */
  uint16_t abi_major; /* PH_ABI_MAJOR the plugin was compiled with */
  uint16_t abi_minor; /* PH_ABI_MINOR the plugin was compiled with */
  uint32_t size;      /* sizeof(ph_plugin) the plugin was compiled with */
  uint32_t reserved;  /* 0 */
} ph_plugin_header;

/* The plugin's entry (exported as PH_ENTRY_SYMBOL by PH_PLUGIN_DEFINE).
**
** name       The plugin's name: [a-z0-9_]+, the <plugin> part of its type ids.
** init       Called once after the host verified the entry, with the plugin's
**            `config:` from plugins.yaml (an empty map when there is none). May set
**            *state; every create hook can read it back with ph_plugin_state().
**            Returns PH_OK, or PH_ERROR after ph_config_error(). May be NULL.
** shutdown   Called once, after every instance of every type was destroyed, with the
**            state init set. May be NULL.
**            A reload (plughost serve) loads the plugin again and calls init again in the
**            same process, while the previous generation's instances may still serve until
**            they are destroyed and its shutdown runs: keep state in *state, not in globals.
** middlewares, actions, storages
**            NULL-terminated arrays of type tables in static storage (or NULL for
**            none). Every id is unique across all plugins a host loads.
** options    1.2: the schema of the plugin's `config:` (see ph_option); NULL: none.
*/
typedef struct ph_plugin {
  ph_plugin_header header;
  const char *name;
  const char *version;     /* the plugin's own version, free-form; may be NULL */
  const char *description; /* one line; may be NULL */
  ph_status (*init)(const ph_config *config, void **state);
  void (*shutdown)(void *state);
  const ph_middleware_type *const *middlewares;
  const ph_action_type *const *actions;
  const ph_storage_type *const *storages;
  const ph_option *options; /* 1.2: the schema of the plugin's own config; NULL: none */
} ph_plugin;

/* ============================================================== host functions === */

#if defined(__GNUC__) || defined(__clang__)
#define PH__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PH__PRINTF(f, a)
#endif

/* The host's function table. Every handle the host passes carries a pointer to it.
** Functions are only ever appended; each says the ABI minor that added it.
** Strings are NUL-terminated UTF-8 unless a length is given. Unless stated otherwise,
** a `const char *` returned by the host is owned by the host and valid until the handle
** it came from stops being valid, or (exchange headers, locals) until the same entry is
** changed, whichever comes first. A host function that fails (returns PH_ERROR) has
** already recorded why on the handle it was given; a plugin just passes the failure on. */
struct ph_host_api {
  uint32_t size;      /* sizeof(ph_host_api) as the host was compiled */
  uint16_t abi_major; /* the host's PH_ABI_MAJOR */
  uint16_t abi_minor; /* the host's PH_ABI_MINOR */

  /* --- 1.0: logging and errors ---------------------------------------------------- */

  /* Writes a log line attributed to the plugin, type and request the handle belongs
  ** to. `handle` is any host handle (ph_config, ph_exchange, ph_call, ph_storage). */
  void (*log)(const void *handle, ph_log_level level, const char *fmt, ...) PH__PRINTF(3, 4);
  /* Records why the current hook fails, for an exchange (logged with the request id,
  ** the client gets 500) or a storage call (raised to the caller). The last message
  ** recorded during a hook call wins. */
  void (*error)(const void *handle, const char *fmt, ...) PH__PRINTF(2, 3);

  /* --- 1.0: configuration ---------------------------------------------------------- */
  /* `key` names an entry of the map `node` (matched ignoring case since 1.2, as Seam
  ** reads keys); NULL means `node` itself. Getters return PH_OK and store the value,
  ** store `dflt` and return PH_OK when the key is missing or null, and return PH_ERROR
  ** when the value has the wrong type (the host has then recorded an error that names the
  ** file, line and key). config_string also takes a number, as the text it was written
  ** as ("7", "1.50"): a value that came from ${VAR} is typed after substitution; a
  ** boolean, list or map is the wrong type. Returned strings and nodes live as long as
  ** the ph_config they came from. */

  ph_config_kind (*config_kind)(const ph_config *node, const char *key);
  ph_status (*config_string)(const ph_config *node, const char *key, const char *dflt,
                             const char **out);
  ph_status (*config_int)(const ph_config *node, const char *key, int64_t dflt, int64_t *out);
  ph_status (*config_float)(const ph_config *node, const char *key, double dflt, double *out);
  ph_status (*config_bool)(const ph_config *node, const char *key, int dflt, int *out);
  /* A duration: an integer (seconds) or a string such as "250ms", "60s", "2m", "1h30m". */
  ph_status (*config_duration_ms)(const ph_config *node, const char *key, int64_t dflt,
                                  int64_t *out);
  /* The child node under key (a list or a map); *out = NULL when missing or null.
  ** PH_ERROR when the value is a scalar. */
  ph_status (*config_child)(const ph_config *node, const char *key, const ph_config **out);
  /* Entries of a list or map node (0 for scalars), and the i-th entry's node and, for a
  ** map, its key (NULL for a list). NULL when i is out of range. */
  size_t (*config_len)(const ph_config *node);
  const ph_config *(*config_at)(const ph_config *node, size_t i, const char **key);
  /* Records a configuration error about `key` of `node` (NULL: the node itself). The
  ** host prefixes the file, line and full key path; the plugin writes only what is wrong
  ** and what to do. Returns PH_ERROR so a hook can `return ph_config_error(...)`. */
  ph_status (*config_error)(const ph_config *node, const char *key, const char *fmt, ...)
      PH__PRINTF(3, 4);
  /* The state the plugin's init hook stored (NULL if none). */
  void *(*plugin_state)(const ph_config *node);
  /* A configured storage by its name in storages.yaml, or NULL (with a configuration
  ** error recorded about key) when there is none. Call during create only. An empty name
  ** ("") is the host's default storage: a MemoryStorage in this process's memory, not
  ** shared with other gateway processes, which the host creates once a plugin providing
  ** plugins.memory.storages.MemoryStorage is loaded (NULL and the error otherwise). */
  ph_storage *(*storage_lookup)(const ph_config *node, const char *key, const char *name);

  /* --- 1.0: storages used by other plugins ----------------------------------------- */
  /* Same contract as the storage hooks. storage_get stores the value into a buffer that
  ** the host allocates and the caller frees with free_value(). Errors are recorded on the
  ** exchange or config `who` (may be NULL) and PH_ERROR returned. */
  ph_status (*storage_get)(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                           uint8_t **value, size_t *value_len);
  ph_status (*storage_set)(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                           const uint8_t *value, size_t value_len, int64_t ttl_ms);
  ph_status (*storage_del)(ph_storage *st, const void *who, const uint8_t *key, size_t key_len);
  ph_status (*storage_incr)(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                            int64_t delta, int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms);
  void (*free_value)(uint8_t *value);
  /* Storage hook side: hands `len` bytes at `data` to the host as the result of get.
  ** The host only copies them (it never calls back into the storage), so a storage may
  ** call this while holding its own lock. */
  ph_status (*call_value)(ph_call *call, const void *data, size_t len);

  /* --- 1.0: the exchange (request, response, locals) ------------------------------- */

  const char *(*method)(const ph_exchange *ex);     /* "GET", ... */
  const char *(*path)(const ph_exchange *ex);       /* decoded path, no query */
  const char *(*query)(const ph_exchange *ex);      /* raw query string without '?', or "" */
  const char *(*route_param)(const ph_exchange *ex, const char *name); /* ":id" -> "id"; "*" */
  const char *(*client_ip)(const ph_exchange *ex);  /* peer address, "" if unknown */
  const char *(*route_name)(const ph_exchange *ex); /* name in routes.yaml, "" if none */
  /* Headers: names compare case-insensitively; values are NUL-free. get returns the first
  ** value or NULL; set replaces every value; add appends one; remove returns how many
  ** were removed; at returns the i-th (name, value) in order, PH_NOT_FOUND past the end. */
  const char *(*header_get)(const ph_exchange *ex, ph_side side, const char *name);
  ph_status (*header_set)(ph_exchange *ex, ph_side side, const char *name, const char *value);
  ph_status (*header_add)(ph_exchange *ex, ph_side side, const char *name, const char *value);
  size_t (*header_remove)(ph_exchange *ex, ph_side side, const char *name);
  size_t (*header_count)(const ph_exchange *ex, ph_side side);
  ph_status (*header_at)(const ph_exchange *ex, ph_side side, size_t i, const char **name,
                         const char **value);
  /* Bodies: pointer and length owned by the host, valid until the body is set again. */
  const uint8_t *(*body)(const ph_exchange *ex, ph_side side, size_t *len);
  ph_status (*body_set)(ph_exchange *ex, ph_side side, const void *data, size_t len);
  int (*status)(const ph_exchange *ex); /* response status; 0 until one is set */
  ph_status (*status_set)(ph_exchange *ex, int status);
  /* Per-request locals, shared by every element of the chain and visible to the host
  ** (logging, Python middlewares). Values are byte strings; get returns NULL if unset. */
  const uint8_t *(*local_get)(const ph_exchange *ex, const char *key, size_t *len);
  ph_status (*local_set)(ph_exchange *ex, const char *key, const void *value, size_t len);
  /* Asks the host to perform an upstream request; the action then returns
  ** PH_NEXT_UPSTREAM. */
  ph_status (*upstream)(ph_exchange *ex, const ph_upstream_spec *spec);

  /* --- 1.2: the request as the client wrote it ------------------------------------- */

  /* Route parameter `name` as it appears in the request target, percent-escapes kept
  ** ("%2F" stays "%2F", "%00" stays "%00"), where route_param gives it decoded. NULL when
  ** the route has no such parameter. Owned by the host; valid during the hook call.
  ** Build upstream paths from it, so that the upstream gets what the client sent. */
  const char *(*route_param_raw)(const ph_exchange *ex, const char *name);

  /* --- 1.2: configuration ------------------------------------------------------------ */

  /* Call during create only. Declares that this instance reads request header `name` as an
  ** identity: who the client is or what it may do (a token, an API key, a session id, a
  ** request id). The host then answers 400 to every request carrying that header more than
  ** once, before any plugin runs, so the value a plugin checked is the only one an upstream
  ** can read. Authorization, Proxy-Authorization, Host and Content-Length are always
  ** single. `name` is copied (compared ignoring case). PH_ERROR, with a configuration
  ** error recorded, when `name` is not a header name. */
  ph_status (*require_single_header)(const ph_config *node, const char *name);

  /* A size in bytes: a whole number, or a string such as "512", "64KB" (x1000), "64KiB"
  ** (x1024), "4MB", "4MiB", "1GB", "1GiB". Like the 1.0 getters; negative is PH_ERROR. */
  ph_status (*config_size)(const ph_config *node, const char *key, int64_t dflt, int64_t *out);

  /* --- 1.2: per-request state, answers and the request id ---------------------------- */

  /* The calling instance's per-request slot: one pointer for each (exchange, instance),
  ** where a middleware or action keeps its own state between its hooks (a counter key, a
  ** start time, a span) instead of formatting it into a local. slot_set stores `value` and
  ** `release`, which the host calls once with `value` when the exchange ends: after the
  ** last response hook, or when the request is abandoned (the client went away, an element
  ** failed). `release` runs on whichever thread ends the exchange, may be NULL (nothing to
  ** free), must not block and must not call the host. Setting again releases the previous
  ** value first, unless it is the same pointer. The host never reads or frees `value`
  ** itself. Call from a middleware's or action's hook only: PH_ERROR (with an error
  ** recorded) from anywhere else. */
  ph_status (*slot_set)(ph_exchange *ex, void *value, void (*release)(void *value));
  /* The calling instance's slot value for this exchange, NULL when none was set. */
  void *(*slot_get)(const ph_exchange *ex);

  /* Answers the request in one call: sets the status (100-599), the response's
  ** Content-Type (NULL: left as it is) and its body (`len` bytes at `body`, copied; NULL
  ** with 0 for none). The hook then returns PH_NEXT_RESPOND (a request hook or an action)
  ** or PH_OK (a response hook). */
  ph_status (*respond)(ph_exchange *ex, int status, const char *content_type, const void *body,
                       size_t len);
  /* Answers in the host's JSON error form, the one the host uses for its own errors:
  ** Content-Type application/json and {"error":"<message>","status":<status>}, followed by
  ** ,"requestId":"<id>" when the request has an id (request_id). The message is formatted
  ** printf-style, cut at 1,024 bytes (on a UTF-8 character boundary) and escaped by the
  ** host. Like respond, for statuses 100-599. */
  ph_status (*respond_error)(ph_exchange *ex, int status, const char *fmt, ...) PH__PRINTF(3, 4);

  /* The request's id: what the host names the request by in its own error answers
  ** ("requestId"), its failure log lines and crash reports. A request-id middleware sets it
  ** (the host has no header of its own for it); `id` is copied and must be 1 to 200
  ** printable ASCII characters (PH_ERROR otherwise). request_id returns NULL until it is set,
  ** or until the host gave the request an id of its own to answer an error. */
  ph_status (*request_id_set)(ph_exchange *ex, const char *id);
  const char *(*request_id)(const ph_exchange *ex);

  /* --- 1.2: metrics (see ph_metric_spec) ----------------------------------------------- */

  /* Declares a metric of the plugin (during init) or of the instance (during create) that
  ** `node` belongs to; the spec is copied. NULL, with a configuration error recorded, when
  ** the spec is invalid or disagrees with an earlier declaration of its name, or when the
  ** host's limit of 4,096 metrics is reached. The handle is owned by the host. */
  ph_metric *(*metric_declare)(const ph_config *node, const ph_metric_spec *spec);
  /* Adds `value` to a counter (a negative or non-finite value is ignored) or a gauge. */
  void (*metric_add)(ph_metric *m, double value);
  /* Sets a gauge (ignored for other kinds). */
  void (*metric_set)(ph_metric *m, double value);
  /* Counts `value` in a histogram's bucket and sum (ignored for other kinds). */
  void (*metric_observe)(ph_metric *m, double value);
};

/* The minimum sizes a 1.0 host accepts; later minors only grow them. */
#define PH_HOST_API_SIZE_1_0 (offsetof(ph_host_api, upstream) + sizeof(void *))

/* ==================================================== plugin-side conveniences === */

/* The host table reachable from any host handle. */
#define PH_API(handle) (((const ph_handle_head *)(const void *)(handle))->api)

/* Whether the host that gave `handle` provides function `fn` (one added after 1.0). */
#define PH_HOST_HAS(handle, fn) (offsetof(ph_host_api, fn) + sizeof(void *) <= PH_API(handle)->size)

/* Plain-call wrappers: ph_log(ex, PH_LOG_INFO, "x=%d", x) ... */
#define ph_log(h, level, ...) PH_API(h)->log((h), (level), __VA_ARGS__)
#define ph_error(h, ...) PH_API(h)->error((h), __VA_ARGS__)
#define ph_config_error(node, key, ...) PH_API(node)->config_error((node), (key), __VA_ARGS__)

#define ph_config_kind(n, k) PH_API(n)->config_kind((n), (k))
#define ph_config_string(n, k, d, o) PH_API(n)->config_string((n), (k), (d), (o))
#define ph_config_int(n, k, d, o) PH_API(n)->config_int((n), (k), (d), (o))
#define ph_config_float(n, k, d, o) PH_API(n)->config_float((n), (k), (d), (o))
#define ph_config_bool(n, k, d, o) PH_API(n)->config_bool((n), (k), (d), (o))
#define ph_config_duration_ms(n, k, d, o) PH_API(n)->config_duration_ms((n), (k), (d), (o))
#define ph_config_child(n, k, o) PH_API(n)->config_child((n), (k), (o))
#define ph_config_len(n) PH_API(n)->config_len((n))
#define ph_config_at(n, i, k) PH_API(n)->config_at((n), (i), (k))
#define ph_plugin_state(n) PH_API(n)->plugin_state((n))
#define ph_storage_lookup(n, k, name) PH_API(n)->storage_lookup((n), (k), (name))

#define ph_storage_get(st, who, k, kl, v, vl) \
  PH_API(st)->storage_get((st), (who), (k), (kl), (v), (vl))
#define ph_storage_set(st, who, k, kl, v, vl, ttl) \
  PH_API(st)->storage_set((st), (who), (k), (kl), (v), (vl), (ttl))
#define ph_storage_del(st, who, k, kl) PH_API(st)->storage_del((st), (who), (k), (kl))
#define ph_storage_incr(st, who, k, kl, d, ttl, v, left) \
  PH_API(st)->storage_incr((st), (who), (k), (kl), (d), (ttl), (v), (left))
#define ph_free_value(st, v) PH_API(st)->free_value((v))
#define ph_call_value(c, d, l) PH_API(c)->call_value((c), (d), (l))

#define ph_method(ex) PH_API(ex)->method((ex))
#define ph_path(ex) PH_API(ex)->path((ex))
#define ph_query(ex) PH_API(ex)->query((ex))
#define ph_route_param(ex, n) PH_API(ex)->route_param((ex), (n))
/* 1.2 (check with PH_HOST_HAS(ex, route_param_raw) when built for older hosts too). */
#define ph_route_param_raw(ex, n) PH_API(ex)->route_param_raw((ex), (n))
/* 1.2 (check with PH_HOST_HAS(cfg, require_single_header) when built for older hosts too). */
#define ph_require_single_header(cfg, name) PH_API(cfg)->require_single_header((cfg), (name))
/* 1.2 (check with PH_HOST_HAS(cfg, config_size) when built for older hosts too). */
#define ph_config_size(n, k, d, o) PH_API(n)->config_size((n), (k), (d), (o))
#define ph_client_ip(ex) PH_API(ex)->client_ip((ex))
#define ph_route_name(ex) PH_API(ex)->route_name((ex))
#define ph_header_get(ex, n) PH_API(ex)->header_get((ex), PH_REQUEST, (n))
#define ph_header_set(ex, n, v) PH_API(ex)->header_set((ex), PH_REQUEST, (n), (v))
#define ph_header_remove(ex, n) PH_API(ex)->header_remove((ex), PH_REQUEST, (n))
#define ph_resp_header_get(ex, n) PH_API(ex)->header_get((ex), PH_RESPONSE, (n))
#define ph_resp_header_set(ex, n, v) PH_API(ex)->header_set((ex), PH_RESPONSE, (n), (v))
#define ph_resp_header_add(ex, n, v) PH_API(ex)->header_add((ex), PH_RESPONSE, (n), (v))
#define ph_resp_header_remove(ex, n) PH_API(ex)->header_remove((ex), PH_RESPONSE, (n))
#define ph_status_get(ex) PH_API(ex)->status((ex))
#define ph_status_set(ex, s) PH_API(ex)->status_set((ex), (s))
#define ph_resp_body_set(ex, d, l) PH_API(ex)->body_set((ex), PH_RESPONSE, (d), (l))
#define ph_local_get(ex, k, l) PH_API(ex)->local_get((ex), (k), (l))
#define ph_local_set(ex, k, v, l) PH_API(ex)->local_set((ex), (k), (v), (l))
#define ph_upstream(ex, spec) PH_API(ex)->upstream((ex), (spec))
/* Every header in order, and the bodies (see header_count, header_at, body, body_set). */
#define ph_header_add(ex, n, v) PH_API(ex)->header_add((ex), PH_REQUEST, (n), (v))
#define ph_header_count(ex) PH_API(ex)->header_count((ex), PH_REQUEST)
#define ph_header_at(ex, i, n, v) PH_API(ex)->header_at((ex), PH_REQUEST, (i), (n), (v))
#define ph_resp_header_count(ex) PH_API(ex)->header_count((ex), PH_RESPONSE)
#define ph_resp_header_at(ex, i, n, v) PH_API(ex)->header_at((ex), PH_RESPONSE, (i), (n), (v))
#define ph_body(ex, l) PH_API(ex)->body((ex), PH_REQUEST, (l))
#define ph_body_set(ex, d, l) PH_API(ex)->body_set((ex), PH_REQUEST, (d), (l))
#define ph_resp_body(ex, l) PH_API(ex)->body((ex), PH_RESPONSE, (l))
/* The response status by a name that cannot be mistaken for the ph_status result type:
** ph_http_status(ex) is the HTTP status (0 until set), the same call as ph_status_get. */
#define ph_http_status(ex) PH_API(ex)->status((ex))
#define ph_http_status_set(ex, s) PH_API(ex)->status_set((ex), (s))
/* 1.2 (check with PH_HOST_HAS(ex, slot_set) etc. when built for older hosts too):
**   ph_slot_set(ex, state, free);  ...  my_state *st = ph_slot_get(ex);
**   return ph_respond_error(ex, 429, "too many requests") == PH_OK ? PH_NEXT_RESPOND
**                                                                  : PH_NEXT_ERROR; */
#define ph_slot_set(ex, v, release) PH_API(ex)->slot_set((ex), (v), (release))
#define ph_slot_get(ex) PH_API(ex)->slot_get((ex))
#define ph_respond(ex, s, ctype, d, l) PH_API(ex)->respond((ex), (s), (ctype), (d), (l))
#define ph_respond_error(ex, s, ...) PH_API(ex)->respond_error((ex), (s), __VA_ARGS__)
#define ph_request_id_set(ex, id) PH_API(ex)->request_id_set((ex), (id))
#define ph_request_id(ex) PH_API(ex)->request_id((ex))
/* 1.2 (check with PH_HOST_HAS(cfg, metric_declare) when built for older hosts too):
**   ph_metric *limited = ph_metric_declare(cfg, &(ph_metric_spec){.size = sizeof(ph_metric_spec),
**       .kind = PH_METRIC_COUNTER, .name = "requests", .help = "Requests by outcome",
**       .label = "result", .label_value = "limited"});
**   ... ph_metric_add(limited, 1); */
#define ph_metric_declare(cfg, spec) PH_API(cfg)->metric_declare((cfg), (spec))
#define ph_metric_add(m, v) PH_API(m)->metric_add((m), (v))
#define ph_metric_set(m, v) PH_API(m)->metric_set((m), (v))
#define ph_metric_observe(m, v) PH_API(m)->metric_observe((m), (v))

/* ================================================================== the entry === */

/* The platform this file is being compiled for, recorded in the ELF note. */
#define PH__STR2(x) #x
#define PH__STR(x) PH__STR2(x)
#if defined(__x86_64__)
#define PH__ARCH "x86_64"
#elif defined(__aarch64__)
#define PH__ARCH "aarch64"
#elif defined(__i386__)
#define PH__ARCH "i386"
#elif defined(__arm__)
#define PH__ARCH "arm"
#elif defined(__riscv) && __riscv_xlen == 64
#define PH__ARCH "riscv64"
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
#define PH__ARCH "ppc64le"
#elif defined(__powerpc64__)
#define PH__ARCH "ppc64"
#elif defined(__s390x__)
#define PH__ARCH "s390x"
#else
#define PH__ARCH "unknown"
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PH__ENDIAN "big"
#else
#define PH__ENDIAN "little"
#endif
#if defined(__GLIBC__)
#define PH__LIBC "gnu-" PH__STR(__GLIBC__) "." PH__STR(__GLIBC_MINOR__)
#elif defined(__BIONIC__)
#define PH__LIBC "bionic"
#elif defined(__linux__)
#define PH__LIBC "musl" /* musl defines no macro of its own, by design */
#else
#define PH__LIBC "none"
#endif
#if defined(__linux__)
#define PH__OS "linux"
#else
#define PH__OS "unknown"
#endif

/* The ELF note (section .note.plughost, owner "plughost", type PH_NOTE_TYPE): a text of
** space-separated key=value pairs, e.g. "abi=1.0 arch=x86_64 bits=64 endian=little
** libc=gnu-2.36 os=linux", readable by `plughost check` without running the plugin. */
#define PH_NOTE_TYPE 0x50480001u
#if __SIZEOF_POINTER__ == 8
#define PH__BITS "64"
#else
#define PH__BITS "32"
#endif
/* clang-format off */
#define PH__NOTE_TEXT                                                                      \
  "abi=" PH__STR(PH_ABI_MAJOR) "." PH__STR(PH_ABI_MINOR) " arch=" PH__ARCH " bits=" PH__BITS \
  " endian=" PH__ENDIAN " libc=" PH__LIBC " os=" PH__OS
/* clang-format on */
#if defined(__has_attribute)
#if __has_attribute(retain)
#define PH__RETAIN __attribute__((retain))
#endif
#endif
#ifndef PH__RETAIN
#define PH__RETAIN
#endif

struct ph__note {
  uint32_t namesz, descsz, type;
  char name[12];
  char desc[(sizeof(PH__NOTE_TEXT) + 3) & ~(size_t)3];
};

/* Defines the plugin's entry and its ELF note. Use once per plugin, at file scope, with
** designated initialisers for the ph_plugin fields after the header:
**
**   PH_PLUGIN_DEFINE(.name = "memory", .version = "1.0.0",
**                    .storages = memory_storages);
*/
/* clang-format off */
#define PH_PLUGIN_DEFINE(...)                                                              \
  __attribute__((section(".note.plughost"), aligned(4), used)) PH__RETAIN                 \
  static const struct ph__note ph__plugin_note = {9, sizeof(PH__NOTE_TEXT), PH_NOTE_TYPE,   \
                                                  "plughost", PH__NOTE_TEXT};              \
  __attribute__((visibility("default"))) extern const ph_plugin plughost_plugin_entry;     \
  __attribute__((visibility("default"))) const ph_plugin plughost_plugin_entry = {         \
      .header = {PH_PLUGIN_MAGIC, PH_ABI_MAJOR, PH_ABI_MINOR, sizeof(ph_plugin), 0},       \
      __VA_ARGS__}
/* clang-format on */

#ifdef __cplusplus
}
#endif
#endif /* PLUGHOST_PLUGIN_H */
