/* Exchanges: one request and its response, as plugins see them. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

static char *arena_str(ph_exchange *ex, const char *s) { return rt_arena_dup(ex, s, strlen(s)); }

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
  f->items[f->n++] = (rt_field){n, v, value_len};
  return 0;
}

ph_exchange *rt_exchange_new(rt_host *host, const char *method, const char *path,
                             const char *query, const char *client_ip) {
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

const char *rt_exchange_error(const ph_exchange *ex) { return ex->ctx.error; }

void rt_exchange_clear_error(ph_exchange *ex) { rt_ctx_set_error(&ex->ctx, NULL); }

size_t rt_local_count(const ph_exchange *ex) { return ex->locals.n; }

const char *rt_local_at(const ph_exchange *ex, size_t i, const uint8_t **value, size_t *len) {
  if (i >= ex->locals.n) return NULL;
  *value = (const uint8_t *)ex->locals.items[i].value;
  *len = ex->locals.items[i].value_len;
  return ex->locals.items[i].name;
}

const char *rt_api_method(const ph_exchange *ex) { return ex->method; }
const char *rt_api_path(const ph_exchange *ex) { return ex->path; }
const char *rt_api_query(const ph_exchange *ex) { return ex->query; }
const char *rt_api_client_ip(const ph_exchange *ex) { return ex->client_ip; }
const char *rt_api_route_name(const ph_exchange *ex) { return ex->route_name; }

const char *rt_api_route_param(const ph_exchange *ex, const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < ex->params.n; i++)
    if (strcmp(ex->params.items[i].name, name) == 0) return ex->params.items[i].value;
  return NULL;
}

static int valid_side(ph_side side) { return side == PH_REQUEST || side == PH_RESPONSE; }

/* RFC 9110 token characters (header names), and the bytes a header value may hold. */
static int is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
  switch (c) {
  case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
  case '.': case '^': case '_': case '`': case '|': case '~': return 1;
  default: return 0;
  }
}

static int valid_name(const char *name) {
  if (!name || !*name) return 0;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    if (!is_tchar(*p)) return 0;
  return 1;
}

static int valid_value(const char *value) {
  if (!value) return 0;
  for (const unsigned char *p = (const unsigned char *)value; *p; p++)
    if (*p < 32 ? *p != '\t' : *p == 127) return 0;
  return 1;
}

static ph_status check_header(ph_exchange *ex, ph_side side, const char *name,
                              const char *value) {
  if (!valid_side(side)) {
    rt_ctx_set_error(&ex->ctx, rt_format("header function called with an unknown side %d", (int)side));
    return PH_ERROR;
  }
  if (!valid_name(name)) {
    rt_ctx_set_error(&ex->ctx, rt_format("invalid header name '%s'", name ? name : "(null)"));
    return PH_ERROR;
  }
  if (!valid_value(value)) {
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
  for (size_t i = 0; i < f->n; i++)
    if (strcasecmp(f->items[i].name, name) == 0) return f->items[i].value;
  return NULL;
}

size_t rt_api_header_remove(ph_exchange *ex, ph_side side, const char *name) {
  if (!valid_side(side) || !name) return 0;
  rt_fields *f = &ex->headers[side];
  size_t kept = 0, removed = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (strcasecmp(f->items[i].name, name) == 0) {
      removed++; /* its memory goes with the exchange's arena */
    } else {
      f->items[kept++] = f->items[i];
    }
  }
  f->n = kept;
  return removed;
}

ph_status rt_api_header_add(ph_exchange *ex, ph_side side, const char *name, const char *value) {
  if (check_header(ex, side, name, value) != PH_OK) return PH_ERROR;
  if (fields_push(ex, &ex->headers[side], name, value, strlen(value)) != 0) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("out of memory adding a header"));
    return PH_ERROR;
  }
  return PH_OK;
}

ph_status rt_api_header_set(ph_exchange *ex, ph_side side, const char *name, const char *value) {
  if (check_header(ex, side, name, value) != PH_OK) return PH_ERROR;
  rt_fields *f = &ex->headers[side];
  /* Replace the first occurrence in place (keeps order), drop the others. */
  size_t first = f->n;
  for (size_t i = 0; i < f->n; i++)
    if (strcasecmp(f->items[i].name, name) == 0) {
      first = i;
      break;
    }
  if (first == f->n) return rt_api_header_add(ex, side, name, value);
  size_t len = strlen(value);
  char *v = rt_arena_dup(ex, value, len);
  if (!v) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("out of memory setting a header"));
    return PH_ERROR;
  }
  f->items[first].value = v;
  f->items[first].value_len = len;
  size_t kept = first + 1;
  for (size_t i = first + 1; i < f->n; i++)
    if (strcasecmp(f->items[i].name, name) != 0) f->items[kept++] = f->items[i];
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

int rt_api_status(const ph_exchange *ex) { return ex->status; }

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
  if (!spec || spec->size < offsetof(ph_upstream_spec, timeout_ms) + sizeof(int64_t) ||
      !spec->url || !*spec->url) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("ph_upstream() needs a ph_upstream_spec with its size "
                                         "set and a non-empty url"));
    return PH_ERROR;
  }
  ex->upstream_url = arena_str(ex, spec->url);
  ex->upstream_method = arena_str(ex, spec->method ? spec->method : ex->method);
  if (!ex->upstream_url || !ex->upstream_method) {
    rt_ctx_set_error(&ex->ctx, rt_strdup("out of memory in ph_upstream()"));
    return PH_ERROR;
  }
  ex->upstream = (ph_upstream_spec){sizeof(ph_upstream_spec), spec->flags, ex->upstream_url,
                                    ex->upstream_method, spec->connect_timeout_ms,
                                    spec->timeout_ms};
  ex->has_upstream = true;
  return PH_OK;
}
