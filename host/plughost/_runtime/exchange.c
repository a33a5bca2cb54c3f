/* Exchanges: one request and its response, as plugins see them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util.h"

void *rt_arena_alloc(ph_exchange *ex, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if ((size_t)(ex->arena_end - ex->arena_cur) < n) {
    size_t size = n > RT_INLINE_ARENA ? n : RT_INLINE_ARENA;
    rt_chunk *c = malloc(sizeof(rt_chunk) + size);
    if (!c) return NULL;
    c->next = ex->chunks;
    ex->chunks = c;
    ex->arena_cur = (char *)(c + 1);
    ex->arena_end = ex->arena_cur + size;
  }
  void *p = ex->arena_cur;
  ex->arena_cur += n;
  return p;
}

char *rt_arena_dup(ph_exchange *ex, const void *data, size_t n) {
  char *p = rt_arena_alloc(ex, n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, data, n);
  p[n] = 0;
  return p;
}

static char *arena_str(ph_exchange *ex, const char *s) {
  return rt_arena_dup(ex, s, strlen(s));
}

int rt_fields_push(ph_exchange *ex, rt_fields *f, const char *name, size_t name_len,
                   const void *value, size_t value_len) {
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 8;
    rt_field *items = rt_arena_alloc(ex, cap * sizeof *items);
    if (!items) return -1;
    if (f->n) memcpy(items, f->items, f->n * sizeof *items);
    f->items = items;
    f->cap = cap;
  }
  char *n = rt_arena_dup(ex, name, name_len);
  char *v = rt_arena_dup(ex, value, value_len);
  if (!n || !v) return -1;
  f->items[f->n++] = (rt_field){n, v, value_len, name_len};
  return 0;
}

ph_exchange *rt_exchange_new(rt_host *host, const char *method, const char *path, const char *query,
                             const char *client_ip) {
  ph_exchange *ex = malloc(sizeof *ex + RT_INLINE_ARENA);
  if (!ex) return NULL;
  memset(ex, 0, sizeof *ex);
  ex->arena_cur = (char *)(ex + 1);
  ex->arena_end = ex->arena_cur + RT_INLINE_ARENA;
  ex->ctx.kind = RT_CTX_EXCHANGE; /* label stays NULL: log lines say "request" */
  ex->ctx.host = host;
  ex->head.api = rt_host_api();
  ex->head.host_private = &ex->ctx;
  ex->method = arena_str(ex, method ? method : "GET");
  ex->path = arena_str(ex, path ? path : "/");
  ex->query = arena_str(ex, query ? query : "");
  ex->client_ip = arena_str(ex, client_ip ? client_ip : "");
  ex->route_name = "";
  if (!ex->method || !ex->path || !ex->query || !ex->client_ip) {
    rt_exchange_free(ex);
    return NULL;
  }
  return ex;
}

static int fields_push(ph_exchange *ex, rt_fields *f, const char *name, const void *value,
                       size_t len) {
  return rt_fields_push(ex, f, name, strlen(name), value, len);
}

void rt_exchange_free(ph_exchange *ex) {
  if (!ex) return;
  for (size_t i = 0; i < ex->n_slots; i++)
    if (ex->slots[i].release) ex->slots[i].release(ex->slots[i].value);
  free(ex->slots);
  rt_ctx_clear(&ex->ctx);
  for (rt_chunk *c = ex->chunks, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  free(ex->failure);
  free(ex->failure_label);
  free(ex->packed);
  free(ex);
}

void rt_exchange_set_route(ph_exchange *ex, const char *route_name) {
  char *copy = route_name ? arena_str(ex, route_name) : NULL;
  ex->route_name = copy ? copy : "";
}

void rt_exchange_add_param(ph_exchange *ex, const char *name, const char *value) {
  fields_push(ex, &ex->params, name, value, strlen(value));
}

const char *rt_exchange_error(const ph_exchange *ex) {
  return ex->ctx.error;
}

void rt_exchange_clear_error(ph_exchange *ex) {
  rt_ctx_set_error(&ex->ctx, NULL);
}

size_t rt_local_count(const ph_exchange *ex) {
  return ex->locals.n;
}

const char *rt_local_at(const ph_exchange *ex, size_t i, const uint8_t **value, size_t *len) {
  if (i >= ex->locals.n) return NULL;
  *value = (const uint8_t *)ex->locals.items[i].value;
  *len = ex->locals.items[i].value_len;
  return ex->locals.items[i].name;
}

const char *rt_api_method(const ph_exchange *ex) {
  return ex->method;
}
const char *rt_api_path(const ph_exchange *ex) {
  return ex->path;
}
const char *rt_api_query(const ph_exchange *ex) {
  return ex->query;
}
const char *rt_api_client_ip(const ph_exchange *ex) {
  return ex->client_ip;
}
const char *rt_api_route_name(const ph_exchange *ex) {
  return ex->route_name;
}

const char *rt_api_route_param(const ph_exchange *ex, const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < ex->params.n; i++)
    if (strcmp(ex->params.items[i].name, name) == 0) return ex->params.items[i].value;
  return NULL;
}

/* The host stores a parameter's raw form, when it differs from the decoded one, as a
** parameter named RT_RAW_PARAM followed by the name (no plugin can look that up: route
** parameter names never start with a control character). */
const char *rt_api_route_param_raw(const ph_exchange *ex, const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < ex->params.n; i++) {
    const char *n = ex->params.items[i].name;
    if (n[0] == RT_RAW_PARAM && strcmp(n + 1, name) == 0) return ex->params.items[i].value;
  }
  return rt_api_route_param(ex, name);
}

static int valid_side(ph_side side) {
  return side == PH_REQUEST || side == PH_RESPONSE;
}

/* Byte classes for header validation, one read per byte: bit 1 = RFC 9110 token character
** (header names), bit 2 = allowed in a header value (HTAB, SP..~, obs-text 0x80-0xFF). */
#define TCHAR 1
#define VCHAR 2
#define T (TCHAR | VCHAR)
#define V VCHAR
static const unsigned char header_bytes[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, V, 0, 0, 0, 0, 0, 0,  /* 0x00: only HTAB */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x10 */
    V, T, V, T, T, T, T, T, V, V, T, T, V, T, T, V,  /* SP ! " # $ % & ' ( ) * + , - . / */
    T, T, T, T, T, T, T, T, T, T, V, V, V, V, V, V,  /* 0-9 : ; < = > ? */
    V, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,  /* @ A-O */
    T, T, T, T, T, T, T, T, T, T, T, V, V, V, T, T,  /* P-Z [ \ ] ^ _ */
    T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,  /* ` a-o */
    T, T, T, T, T, T, T, T, T, T, T, V, T, V, T, 0,  /* p-z { | } ~ DEL */
    V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,  /* 0x80-0xFF: obs-text */
    V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
    V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
    V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
    V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
};
#undef T
#undef V

size_t rt_header_name_length(const char *name) {
  if (!name) return 0;
  const unsigned char *p = (const unsigned char *)name;
  while (header_bytes[*p] & TCHAR) p++;
  return *p ? 0 : (size_t)(p - (const unsigned char *)name);
}

/* Length of a valid header value, or (size_t)-1 if it holds a control character. */
static size_t value_length(const char *value) {
  if (!value) return (size_t)-1;
  const unsigned char *p = (const unsigned char *)value;
  while (header_bytes[*p] & VCHAR) p++;
  return *p ? (size_t)-1 : (size_t)(p - (const unsigned char *)value);
}

/* ASCII case-insensitive equality of two names of the same length n. */
static int same_name(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x == y) continue;
    x |= 0x20; /* differ only in case: both letters, equal once lower-cased */
    if (x != (y | 0x20) || x < 'a' || x > 'z') return 0;
  }
  return 1;
}

/* Index of the first header called name (n = its length) at or after start, or f->n. */
static size_t find_header(const rt_fields *f, const char *name, size_t n, size_t start) {
  for (size_t i = start; i < f->n; i++)
    if (f->items[i].name_len == n && same_name(f->items[i].name, name, n)) return i;
  return f->n;
}

int rt_fields_has(const rt_fields *f, const char *name, size_t n) {
  return find_header(f, name, n, 0) < f->n;
}

/* Validates a header for set/add; on success *name_len and *value_len hold their lengths. */
static ph_status check_header(ph_exchange *ex, ph_side side, const char *name, const char *value,
                              size_t *name_len, size_t *value_len) {
  if (!valid_side(side)) {
    rt_ctx_set_error(&ex->ctx,
                     rt_format("header function called with an unknown side %d", (int)side));
    return PH_ERROR;
  }
  if ((*name_len = rt_header_name_length(name)) == 0) {
    rt_ctx_set_error(&ex->ctx, rt_format("invalid header name '%s'", name ? name : "(null)"));
    return PH_ERROR;
  }
  if ((*value_len = value_length(value)) == (size_t)-1) {
    rt_ctx_set_error(&ex->ctx, rt_format("invalid value for header '%s': control characters "
                                         "such as CR or LF are not allowed",
                                         name));
    return PH_ERROR;
  }
  return PH_OK;
}

const char *rt_api_header_get(const ph_exchange *ex, ph_side side, const char *name) {
  if (!valid_side(side) || !name) return NULL;
  const rt_fields *f = &ex->headers[side];
  size_t i = find_header(f, name, strlen(name), 0);
  return i < f->n ? f->items[i].value : NULL;
}

size_t rt_api_header_remove(ph_exchange *ex, ph_side side, const char *name) {
  if (!valid_side(side) || !name) return 0;
  rt_fields *f = &ex->headers[side];
  size_t n = strlen(name), kept = 0, removed = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (f->items[i].name_len == n && same_name(f->items[i].name, name, n)) {
      removed++; /* its memory goes with the exchange's arena */
    } else {
      f->items[kept++] = f->items[i];
    }
  }
  f->n = kept;
  return removed;
}

static ph_status add_checked(ph_exchange *ex, ph_side side, const char *name, size_t name_len,
                             const char *value, size_t value_len) {
  if (rt_fields_push(ex, &ex->headers[side], name, name_len, value, value_len) != 0) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("out of memory adding a header"));
    return PH_ERROR;
  }
  return PH_OK;
}

ph_status rt_api_header_add(ph_exchange *ex, ph_side side, const char *name, const char *value) {
  size_t nl, vl;
  if (check_header(ex, side, name, value, &nl, &vl) != PH_OK) return PH_ERROR;
  return add_checked(ex, side, name, nl, value, vl);
}

ph_status rt_api_header_set(ph_exchange *ex, ph_side side, const char *name, const char *value) {
  size_t nl, len;
  if (check_header(ex, side, name, value, &nl, &len) != PH_OK) return PH_ERROR;
  rt_fields *f = &ex->headers[side];
  /* Replace the first occurrence in place (keeps order), drop the others. */
  size_t first = find_header(f, name, nl, 0);
  if (first == f->n) return add_checked(ex, side, name, nl, value, len);
  char *v = rt_arena_dup(ex, value, len);
  if (!v) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("out of memory setting a header"));
    return PH_ERROR;
  }
  f->items[first].value = v;
  f->items[first].value_len = len;
  size_t kept = first + 1;
  for (size_t i = first + 1; i < f->n; i++)
    if (!(f->items[i].name_len == nl && same_name(f->items[i].name, name, nl)))
      f->items[kept++] = f->items[i];
  f->n = kept;
  return PH_OK;
}

size_t rt_api_header_count(const ph_exchange *ex, ph_side side) {
  return valid_side(side) ? ex->headers[side].n : 0;
}

ph_status rt_api_header_at(const ph_exchange *ex, ph_side side, size_t i, const char **name,
                           const char **value) {
  if (!valid_side(side) || i >= ex->headers[side].n) return PH_NOT_FOUND;
  if (name) *name = ex->headers[side].items[i].name;
  if (value) *value = ex->headers[side].items[i].value;
  return PH_OK;
}

const uint8_t *rt_api_body(const ph_exchange *ex, ph_side side, size_t *len) {
  if (!valid_side(side)) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = ex->body_len[side];
  return ex->body[side] ? ex->body[side] : (const uint8_t *)"";
}

ph_status rt_api_body_set(ph_exchange *ex, ph_side side, const void *data, size_t len) {
  if (!valid_side(side) || (!data && len)) return PH_ERROR;
  uint8_t *copy = (uint8_t *)rt_arena_dup(ex, data, len);
  if (!copy) {
    rt_ctx_set_error(&ex->ctx, rt_format("out of memory setting a %zu-byte body", len));
    return PH_ERROR;
  }
  ex->body[side] = copy;
  ex->body_len[side] = len;
  return PH_OK;
}

int rt_api_status(const ph_exchange *ex) {
  return ex->status;
}

ph_status rt_api_status_set(ph_exchange *ex, int status) {
  if (status < 100 || status > 599) {
    rt_ctx_set_error(&ex->ctx, rt_format("invalid HTTP status %d (must be 100-599)", status));
    return PH_ERROR;
  }
  ex->status = status;
  return PH_OK;
}

const uint8_t *rt_api_local_get(const ph_exchange *ex, const char *key, size_t *len) {
  if (!key) return NULL;
  for (size_t i = 0; i < ex->locals.n; i++)
    if (strcmp(ex->locals.items[i].name, key) == 0) {
      if (len) *len = ex->locals.items[i].value_len;
      return (const uint8_t *)ex->locals.items[i].value;
    }
  if (len) *len = 0;
  return NULL;
}

ph_status rt_api_local_set(ph_exchange *ex, const char *key, const void *value, size_t len) {
  if (!key || (!value && len)) return PH_ERROR;
  rt_fields *f = &ex->locals;
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->items[i].name, key) == 0) {
      char *v = rt_arena_dup(ex, value, len);
      if (!v) return PH_ERROR;
      f->items[i].value = v;
      f->items[i].value_len = len;
      return PH_OK;
    }
  return fields_push(ex, f, key, value ? value : "", len) == 0 ? PH_OK : PH_ERROR;
}

ph_status rt_api_upstream(ph_exchange *ex, const ph_upstream_spec *spec) {
  if (!spec || spec->size < PH_UPSTREAM_SPEC_SIZE_1_0 || !spec->url || !*spec->url) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("ph_upstream() needs a ph_upstream_spec with its size "
                                         "set and a non-empty url"));
    return PH_ERROR;
  }
  /* Only the fields the plugin's size covers: a 1.0 plugin's spec ends at timeout_ms. */
  ph_upstream_spec s = {0};
  memcpy(&s, spec, spec->size < sizeof s ? spec->size : sizeof s);
  ex->upstream_url = arena_str(ex, s.url);
  ex->upstream_method = arena_str(ex, s.method ? s.method : ex->method);
  const char *protocols = s.ws_subprotocols ? arena_str(ex, s.ws_subprotocols) : NULL;
  if (!ex->upstream_url || !ex->upstream_method || (s.ws_subprotocols && !protocols)) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("out of memory in ph_upstream()"));
    return PH_ERROR;
  }
  s.size = sizeof s;
  s.url = ex->upstream_url;
  s.method = ex->upstream_method;
  s.ws_subprotocols = protocols;
  ex->upstream = s;
  ex->has_upstream = true;
  return PH_OK;
}

/* ------------------------------------------------------------ per-instance slots */

static rt_slot *find_slot(const ph_exchange *ex) {
  for (size_t i = 0; i < ex->n_slots; i++)
    if (ex->slots[i].owner == ex->current) return &ex->slots[i];
  return NULL;
}

ph_status rt_api_slot_set(ph_exchange *ex, void *value, void (*release)(void *value)) {
  if (!ex->current) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("ph_slot_set() was called outside a middleware's or "
                                         "action's hook: call it from on_request, handle or "
                                         "on_response"));
    return PH_ERROR;
  }
  rt_slot *slot = find_slot(ex);
  if (!slot) {
    if (ex->n_slots == ex->cap_slots) {
      size_t cap = ex->cap_slots ? ex->cap_slots * 2 : 4;
      rt_slot *grown = realloc(ex->slots, cap * sizeof *grown);
      if (!grown) {
        rt_ctx_set_error(&ex->ctx, rt_strdup("out of memory keeping a per-request slot"));
        return PH_ERROR;
      }
      ex->slots = grown;
      ex->cap_slots = cap;
    }
    slot = &ex->slots[ex->n_slots++];
    *slot = (rt_slot){.owner = ex->current};
  } else if (slot->value != value && slot->release) {
    slot->release(slot->value);
  }
  slot->value = value;
  slot->release = release;
  return PH_OK;
}

void *rt_api_slot_get(const ph_exchange *ex) {
  const rt_slot *slot = ex->current ? find_slot(ex) : NULL;
  return slot ? slot->value : NULL;
}

/* ------------------------------------------------------- answers and the request id */

/* A random UUIDv4: the id the host gives a request it answers with an error when no
** element gave it one. */
static void uuid4(char out[37]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t b[16] = {0};
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
  }
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  size_t j = 0;
  for (size_t i = 0; i < sizeof b; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
    out[j++] = hex[b[i] >> 4];
    out[j++] = hex[b[i] & 0x0f];
  }
  out[j] = 0;
}

/* Appends s as the inside of a JSON string to dst (which has room for 6 * strlen(s) + 1). */
static size_t json_escape(char *dst, const char *s) {
  static const char hex[] = "0123456789abcdef";
  size_t j = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    const char *shortform = c == '"'    ? "\\\""
                            : c == '\\' ? "\\\\"
                            : c == '\n' ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                                        : NULL;
    if (shortform) {
      dst[j++] = shortform[0];
      dst[j++] = shortform[1];
    } else if (c < 0x20 || c == 0x7f) {
      memcpy(dst + j, "\\u00", 4);
      dst[j + 4] = hex[c >> 4];
      dst[j + 5] = hex[c & 0xf];
      j += 6;
    } else {
      dst[j++] = (char)c;
    }
  }
  dst[j] = 0;
  return j;
}

/* The longest message of an error answer, in bytes. */
#define RT_ERROR_MESSAGE_MAX 1024

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static void cut_utf8(char *s, size_t max) {
  size_t n = strlen(s);
  if (n <= max) return;
  while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) max--;
  s[max] = 0;
}

static const char *status_phrase(int status) {
  switch (status) {
    case 500:
      return "internal error";
    case 502:
      return "bad gateway";
    case 503:
      return "service unavailable";
    case 504:
      return "gateway timeout";
    default:
      return "error";
  }
}

ph_status rt_exchange_error_answer(ph_exchange *ex, int status, const char *message) {
  if (!message) {
    /* the host's own answer: it always names the request, with an id of its own if need be */
    message = status_phrase(status);
    if (!ex->request_id[0]) uuid4(ex->request_id);
  }
  char msg[RT_ERROR_MESSAGE_MAX + 1];
  snprintf(msg, sizeof msg, "%s", message);
  cut_utf8(msg, RT_ERROR_MESSAGE_MAX);
  char body[6 * (RT_ERROR_MESSAGE_MAX + RT_REQUEST_ID_MAX) + 64];
  size_t n = (size_t)snprintf(body, sizeof body, "{\"error\":\"");
  n += json_escape(body + n, msg);
  n += (size_t)snprintf(body + n, sizeof body - n, "\",\"status\":%d", status);
  if (ex->request_id[0]) {
    n += (size_t)snprintf(body + n, sizeof body - n, ",\"requestId\":\"");
    n += json_escape(body + n, ex->request_id);
    n += (size_t)snprintf(body + n, sizeof body - n, "\"");
  }
  n += (size_t)snprintf(body + n, sizeof body - n, "}");
  return rt_api_respond(ex, status, "application/json", body, n);
}

ph_status rt_api_respond(ph_exchange *ex, int status, const char *content_type, const void *body,
                         size_t len) {
  if (rt_api_status_set(ex, status) != PH_OK) return PH_ERROR;
  if (content_type && rt_api_header_set(ex, PH_RESPONSE, "Content-Type", content_type) != PH_OK)
    return PH_ERROR;
  return rt_api_body_set(ex, PH_RESPONSE, body, len);
}

ph_status rt_api_respond_error(ph_exchange *ex, int status, const char *fmt, ...) {
  if (!fmt) fmt = "";
  char msg[RT_ERROR_MESSAGE_MAX + 1];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (status < 100 || status > 599) return rt_api_status_set(ex, status); /* records why */
  return rt_exchange_error_answer(ex, status, msg);
}

ph_status rt_api_request_id_set(ph_exchange *ex, const char *id) {
  size_t n = id ? strlen(id) : 0;
  int ok = n >= 1 && n <= RT_REQUEST_ID_MAX;
  for (size_t i = 0; ok && i < n; i++) ok = (unsigned char)id[i] >= 0x20 && id[i] != 0x7f;
  for (size_t i = 0; ok && i < n; i++) ok = (unsigned char)id[i] < 0x80;
  if (!ok) {
    rt_ctx_set_error(&ex->ctx, rt_format("ph_request_id_set() needs 1 to %d printable ASCII "
                                         "characters, not a %zu-byte value",
                                         RT_REQUEST_ID_MAX, n));
    return PH_ERROR;
  }
  memcpy(ex->request_id, id, n + 1);
  return PH_OK;
}

const char *rt_api_request_id(const ph_exchange *ex) {
  return ex->request_id[0] ? ex->request_id : NULL;
}
