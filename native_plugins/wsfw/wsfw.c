/*
** wsfw: WebSocket forwarding (Seam's wsfw plugin, in C).
**
** plugins.wsfw.middlewares.CheckWebSocketUpgradeMiddleware
**     lets only WebSocket handshakes through: a GET whose Connection lists "upgrade" and
**     whose Upgrade lists "websocket", with Sec-WebSocket-Version 13 and a well-formed
**     Sec-WebSocket-Key. Anything else gets 426 Upgrade Required (400 for a malformed
**     key); a handshake that passes sets the local "wsAllowed" to "true", as Seam does.
** plugins.wsfw.actions.WebSocketAction
**     asks the host (ABI 1.1, PH_UPSTREAM_WEBSOCKET) to open a WebSocket to
**     upstreamEndpoint and relay the session, with the ping, pong and inactivity limits of
**     its configuration. No network I/O happens in the plugin: the host performs the
**     handshake asynchronously and relays frames.
**
** Options, the upstream URL rule (the same as httpfw's) and the close codes are described
** in docs/plugins/wsfw.md; the options are declared below (ABI 1.2: websocket_options, and
** no_options for the check), so the host refuses unknown names and wrong kinds before create.
*/
#define _POSIX_C_SOURCE 200809L
#include "plugin.h"
#include "phu.h"
#include "phu_forward.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WS_DEFAULT_HANDSHAKE_TIMEOUT_MS 5000

/* ------------------------------------------------------ CheckWebSocketUpgradeMiddleware */

/* Whether some value of request header `name` holds `token` in its comma-separated list
** (ignoring case and spaces). */
static int ws_has_token(const ph_exchange *ex, const char *name, const char *token) {
  size_t count = ph_header_count(ex), want = strlen(token);
  for (size_t i = 0; i < count; i++) {
    const char *k, *v;
    if (ph_header_at(ex, i, &k, &v) != PH_OK) break;
    if (!phu_ieq(k, name)) continue;
    while (*v) {
      size_t n = strcspn(v, ",");
      const char *s = v, *e = v + n;
      while (s < e && (*s == ' ' || *s == '\t')) s++;
      while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
      if ((size_t)(e - s) == want && phu_ieqn(s, want, token)) return 1;
      v += n + (v[n] == ',');
    }
  }
  return 0;
}

/* A Sec-WebSocket-Key: base64 of 16 bytes, i.e. 22 base64 characters and "==". */
static int ws_valid_key(const char *key) {
  if (!key || strlen(key) != 24 || strcmp(key + 22, "==") != 0) return 0;
  for (int i = 0; i < 22; i++) {
    char c = key[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
          c == '/'))
      return 0;
  }
  return strchr("AQgw", key[21]) != NULL; /* the last 4 bits of 16 bytes are zero */
}

/* It takes no options: its empty schema (no_options) has the host refuse any. */
static ph_status check_create(const ph_config *cfg, void **self) {
  (void)cfg;
  *self = NULL;
  return PH_OK;
}

static ph_next check_on_request(void *self, ph_exchange *ex) {
  (void)self;
  if (strcmp(ph_method(ex), "GET") != 0 || !ws_has_token(ex, "Connection", "upgrade") ||
      !ws_has_token(ex, "Upgrade", "websocket")) {
    if (ph_resp_header_set(ex, "Upgrade", "websocket") != PH_OK ||
        ph_resp_header_set(ex, "Connection", "Upgrade") != PH_OK)
      return PH_NEXT_ERROR;
    return phu_refuse(ex, 426, "upgrade required");
  }
  const char *version = ph_header_get(ex, "Sec-WebSocket-Version");
  if (!version || strcmp(version, "13") != 0) { /* RFC 6455 section 4.4 */
    if (ph_resp_header_set(ex, "Sec-WebSocket-Version", "13") != PH_OK) return PH_NEXT_ERROR;
    return phu_refuse(ex, 426, "upgrade required");
  }
  if (!ws_valid_key(ph_header_get(ex, "Sec-WebSocket-Key")))
    return phu_refuse(ex, 400, "malformed WebSocket handshake");
  return ph_local_set(ex, "wsAllowed", "true", 4) == PH_OK ? PH_NEXT_CONTINUE : PH_NEXT_ERROR;
}

/* ------------------------------------------------------------------ WebSocketAction */

enum {
  O_ENDPOINT,
  O_PING,
  O_PING_SEAM, /* "pongInterval": the key Seam's own code reads for the ping interval */
  O_PONG,
  O_INACTIVITY,
  O_HANDSHAKE,
  O_SUBPROTOCOLS,
  O_ORIGINS,
  O_MAX_MESSAGE,
  O_PROTO,
  O_TRUST,
  O_READ_BUFFER,
  O_WRITE_BUFFER,
  O_COMPRESSION,
  O_COUNT
};
static const char *const ws_names[O_COUNT] = {
    "upstreamEndpoint", "pingInterval",     "pongInterval",          "pongTimeout",
    "maxInactivity",    "handshakeTimeout", "subprotocols",          "origins",
    "maxMessageSize",   "forwardedProto",   "trustForwardedHeaders", "readBufferSize",
    "writeBufferSize",  "enableCompression"};

typedef struct ws_action {
  phu_endpoint endpoint;
  int64_t ping_ms, pong_ms, inactivity_ms, handshake_ms, max_message;
  char *subprotocols; /* comma-separated, or NULL: the client's */
  char **origins;     /* NULL: every origin */
  size_t n_origins;
  int any_origin;
  const char *proto; /* forwardedProto: host-owned, lives until destroy */
  int trust;
} ws_action;

static void action_destroy(void *self) {
  ws_action *a = self;
  if (!a) return;
  phu_endpoint_free(&a->endpoint);
  free(a->subprotocols);
  for (size_t i = 0; i < a->n_origins; i++) free(a->origins[i]);
  free(a->origins);
  free(a);
}

/* A duration option that may be 0 (off) but not negative. */
static ph_status ws_duration(const ph_config *cfg, const char *key, int64_t dflt, int positive,
                             int64_t *out) {
  *out = dflt;
  if (!key) return PH_OK;
  if (ph_config_duration_ms(cfg, key, dflt, out) != PH_OK) return PH_ERROR;
  if (*out < 0 || (positive && *out == 0))
    return ph_config_error(cfg, key, "must be a %s duration such as 10s or 500ms",
                           positive ? "positive" : "non-negative (0: off)");
  return PH_OK;
}

/* Reads a list of strings into a comma-separated string (subprotocols: tokens). */
static ph_status ws_subprotocols(const ph_config *cfg, const char *key, char **out) {
  const ph_config *list = NULL;
  if (ph_config_kind(cfg, key) != PH_CONFIG_LIST)
    return ph_config_error(cfg, key, "must be a list of subprotocol names, e.g. [chat, json]");
  if (ph_config_child(cfg, key, &list) != PH_OK) return PH_ERROR;
  phu_buf b = {0};
  for (size_t i = 0; i < ph_config_len(list); i++) {
    const char *name = NULL;
    if (ph_config_string(ph_config_at(list, i, NULL), NULL, NULL, &name) != PH_OK) {
      free(b.p);
      return PH_ERROR;
    }
    if (!name || !phu_valid_token(name)) {
      free(b.p);
      return ph_config_error(cfg, key,
                             "entry %zu must be a subprotocol name (a token: letters, digits, "
                             "'.', '-', '_' ...), not '%s'",
                             i + 1, name ? name : "");
    }
    if (b.len) phu_put(&b, ",", 1);
    phu_puts(&b, name);
  }
  if (b.oom) {
    free(b.p);
    return ph_config_error(cfg, key, "out of memory");
  }
  *out = b.p; /* NULL for an empty list: then the client's offer is passed on */
  return PH_OK;
}

static ph_status ws_origins(const ph_config *cfg, const char *key, ws_action *a) {
  const ph_config *list = NULL;
  if (ph_config_kind(cfg, key) != PH_CONFIG_LIST)
    return ph_config_error(cfg, key,
                           "must be a list of origins, e.g. [\"https://app.example.com\"]");
  if (ph_config_child(cfg, key, &list) != PH_OK) return PH_ERROR;
  size_t n = ph_config_len(list);
  a->origins = calloc(n ? n : 1, sizeof *a->origins);
  if (!a->origins) return ph_config_error(cfg, key, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const char *origin = NULL;
    if (ph_config_string(ph_config_at(list, i, NULL), NULL, NULL, &origin) != PH_OK)
      return PH_ERROR;
    if (!origin || !*origin)
      return ph_config_error(cfg, key,
                             "entry %zu is empty: write an origin such as "
                             "https://app.example.com, or \"*\"",
                             i + 1);
    if (strcmp(origin, "*") == 0) a->any_origin = 1;
    if (!(a->origins[a->n_origins] = phu_strdup(origin)))
      return ph_config_error(cfg, key, "out of memory");
    a->n_origins++;
  }
  if (n == 0) a->any_origin = 1;
  return PH_OK;
}

static ph_status action_create(const ph_config *cfg, void **self) {
  const char *w[O_COUNT], *url = NULL;
  ws_action *a = calloc(1, sizeof *a);
  if (!a) return ph_config_error(cfg, NULL, "out of memory");
  *self = a;
  a->any_origin = 1;
  /* w[k] = ws_names[k] when the config holds that option, written in any case (the getters
  ** look keys up ignoring case, as Seam does); the schema has refused every other key. */
  for (size_t k = 0; k < O_COUNT; k++)
    w[k] = ph_config_kind(cfg, ws_names[k]) != PH_CONFIG_MISSING ? ws_names[k] : NULL;
  if (w[O_PING] && w[O_PING_SEAM])
    return ph_config_error(cfg, w[O_PING_SEAM],
                           "and pingInterval both set the ping interval: keep pingInterval");
  if (w[O_ENDPOINT] && ph_config_string(cfg, w[O_ENDPOINT], NULL, &url) != PH_OK) return PH_ERROR;
  if (!url || !*url)
    return ph_config_error(cfg, w[O_ENDPOINT] ? w[O_ENDPOINT] : "upstreamEndpoint",
                           "is required: the upstream WebSocket's URL, e.g. "
                           "ws://localhost:8080/ws");
  if (phu_endpoint_parse(cfg, w[O_ENDPOINT], "", url, 1, &a->endpoint) != PH_OK ||
      ws_duration(cfg, w[O_PING] ? w[O_PING] : w[O_PING_SEAM], 0, 0, &a->ping_ms) != PH_OK ||
      ws_duration(cfg, w[O_PONG], 0, 0, &a->pong_ms) != PH_OK ||
      ws_duration(cfg, w[O_INACTIVITY], 0, 0, &a->inactivity_ms) != PH_OK ||
      ws_duration(cfg, w[O_HANDSHAKE], WS_DEFAULT_HANDSHAKE_TIMEOUT_MS, 1, &a->handshake_ms) !=
          PH_OK)
    return PH_ERROR;
  if (a->pong_ms > 0 && a->ping_ms == 0)
    return ph_config_error(cfg, w[O_PONG],
                           "needs pingInterval: the gateway waits for a pong only after it "
                           "sent a ping");
  if (w[O_MAX_MESSAGE]) {
    if (ph_config_int(cfg, w[O_MAX_MESSAGE], 0, &a->max_message) != PH_OK) return PH_ERROR;
    if (a->max_message <= 0)
      return ph_config_error(cfg, w[O_MAX_MESSAGE],
                             "must be a positive number of bytes, e.g. 1048576");
  }
  if (w[O_SUBPROTOCOLS] && ws_subprotocols(cfg, w[O_SUBPROTOCOLS], &a->subprotocols) != PH_OK)
    return PH_ERROR;
  if (w[O_ORIGINS]) {
    a->any_origin = 0;
    if (ws_origins(cfg, w[O_ORIGINS], a) != PH_OK) return PH_ERROR;
  }
  if (phu_forwarded_proto(cfg, w[O_PROTO], &a->proto) != PH_OK) return PH_ERROR;
  if (w[O_TRUST] && ph_config_bool(cfg, w[O_TRUST], 0, &a->trust) != PH_OK) return PH_ERROR;
  /* Seam's buffer and compression settings: read (so a wrong type is still reported) but
  ** without effect here; the host sizes its buffers and uvicorn negotiates compression. */
  int64_t ignored_size;
  int ignored_flag;
  if ((w[O_READ_BUFFER] && ph_config_int(cfg, w[O_READ_BUFFER], 0, &ignored_size) != PH_OK) ||
      (w[O_WRITE_BUFFER] && ph_config_int(cfg, w[O_WRITE_BUFFER], 0, &ignored_size) != PH_OK) ||
      (w[O_COMPRESSION] && ph_config_bool(cfg, w[O_COMPRESSION], 0, &ignored_flag) != PH_OK))
    return PH_ERROR;
  return PH_OK;
}

static int ws_origin_allowed(const ws_action *a, const ph_exchange *ex) {
  if (a->any_origin) return 1;
  const char *origin = ph_header_get(ex, "Origin");
  if (!origin) return 0;
  for (size_t i = 0; i < a->n_origins; i++)
    if (phu_ieq(origin, a->origins[i])) return 1;
  return 0;
}

static ph_next action_handle(void *self, ph_exchange *ex) {
  ws_action *a = self;
  if (!ws_origin_allowed(a, ex)) return phu_refuse(ex, 403, "origin not allowed");
  if (phu_forwarded(ex, a->proto, a->trust) != PH_OK) return PH_NEXT_ERROR;
  phu_buf url = {0};
  if (phu_target_url(&a->endpoint, ex, &url) != PH_OK) {
    free(url.p);
    return PH_NEXT_ERROR;
  }
  ph_upstream_spec spec = {.size = sizeof spec,
                           .flags = PH_UPSTREAM_WEBSOCKET,
                           .url = url.p,
                           .connect_timeout_ms = a->handshake_ms,
                           .timeout_ms = a->handshake_ms,
                           .ws_ping_interval_ms = a->ping_ms,
                           .ws_pong_timeout_ms = a->pong_ms,
                           .ws_max_inactivity_ms = a->inactivity_ms,
                           .ws_max_message_bytes = a->max_message,
                           .ws_subprotocols = a->subprotocols};
  ph_status r = ph_upstream(ex, &spec); /* the host copies the spec */
  free(url.p);
  return r == PH_OK ? PH_NEXT_UPSTREAM : PH_NEXT_ERROR;
}

/* ------------------------------------------------------------------ the plugin */

/* The options of a WebSocketAction (Seam's names, its code's pongInterval too, and
** plughost's maxMessageSize); the host checks every config against them before
** action_create runs, which keeps its own checks (the URL rule, tokens, pongTimeout needing
** pingInterval, not both ping keys). */

static const ph_option websocket_options[] = {
    PH_OPTION(PH_OPTION_STRING, "upstreamEndpoint", NULL,
              "the upstream's absolute ws:// or wss:// URL", .flags = PH_OPTION_REQUIRED),
    PH_OPTION(PH_OPTION_DURATION, "pingInterval", "0",
              "how often the gateway pings the upstream (0: no pings)"),
    PH_OPTION(PH_OPTION_DURATION, "pongInterval", "0",
              "the key Seam's code reads for pingInterval (not both)"),
    PH_OPTION(PH_OPTION_DURATION, "pongTimeout", "0",
              "how long the gateway waits for the upstream's pong after a ping (0: no limit)"),
    PH_OPTION(PH_OPTION_DURATION, "maxInactivity", "0",
              "the session is closed after this long without a message (0: no limit)"),
    PH_OPTION(PH_OPTION_DURATION, "handshakeTimeout", "5s",
              "the longest the upstream's TCP connection and handshake may take",
              .flags = PH_OPTION_MIN, .min = 0.001),
    PH_OPTION(PH_OPTION_LIST, "subprotocols", NULL,
              "the subprotocols to offer the upstream (absent: the client's offer)",
              .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_LIST, "origins", NULL,
              "when set, only handshakes whose Origin is one of these (\"*\": every origin)",
              .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_INT, "maxMessageSize", "16777216",
              "the largest message accepted from either side, in bytes", .flags = PH_OPTION_MIN,
              .min = 1),
    PHU_FORWARDED_OPTIONS,
    PH_OPTION(PH_OPTION_INT, "readBufferSize", NULL,
              "Seam's option for its WebSocket library: accepted, no effect"),
    PH_OPTION(PH_OPTION_INT, "writeBufferSize", NULL,
              "Seam's option for its WebSocket library: accepted, no effect"),
    PH_OPTION(PH_OPTION_BOOL, "enableCompression", NULL,
              "Seam's option for its WebSocket library: accepted, no effect"),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_middleware_type check_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.wsfw.middlewares.CheckWebSocketUpgradeMiddleware",
    .description = "lets only WebSocket handshakes through (426 Upgrade Required otherwise)",
    .create = check_create,
    .on_request = check_on_request,
    .options = no_options};

static const ph_action_type websocket_action = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.wsfw.actions.WebSocketAction",
    .description = "relays a WebSocket session to upstreamEndpoint",
    .create = action_create,
    .destroy = action_destroy,
    .handle = action_handle,
    .options = websocket_options};

static const ph_middleware_type *const ws_middlewares[] = {&check_middleware, NULL};
static const ph_action_type *const ws_actions[] = {&websocket_action, NULL};

PH_PLUGIN_DEFINE(.name = "wsfw", .version = "1.0.0",
                 .description = "WebSocket forwarding: upgrade check and WebSocketAction",
                 .middlewares = ws_middlewares, .actions = ws_actions, .options = no_options);
