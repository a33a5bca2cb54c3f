/*
** cors: Cross-Origin Resource Sharing, like Seam's cors plugin (which configures Fiber's cors
** middleware). The gateway answers preflights itself and owns the Access-Control-* headers of
** the responses it sends.
**
** Middleware plugins.cors.middlewares.CORSMiddleware
**   allowOrigins         comma-separated string or list, default "*"
**                        origins ("scheme://host[:port]", compared without regard to case; a
**                        trailing "/" is ignored) allowed to read responses. "*" (alone or
**                        anywhere in the list) allows every origin. An entry whose host
**                        starts with "*." (the scheme, "://", then "*.example.com") allows
**                        every subdomain of example.com (not example.com itself) on that
**                        scheme and port. "null" is refused: any page can produce it.
**   allowMethods         comma-separated string or list, default
**                        "GET,POST,HEAD,PUT,DELETE,PATCH"
**                        methods a preflight may ask for (compared without regard to case);
**                        "*" allows every method (the requested one is echoed back).
**   allowHeaders         comma-separated string or list, default "" (empty)
**                        request headers a preflight may ask for, compared without regard to
**                        case. Empty or "*": every requested header is allowed and echoed
**                        back (Fiber's behaviour when none are configured).
**   allowCredentials     bool, default false
**                        send Access-Control-Allow-Credentials: true (cookies, HTTP
**                        authentication). A configuration error with allowOrigins "*".
**   exposeHeaders        comma-separated string or list, default "" (none)
**                        response headers scripts may read (Access-Control-Expose-Headers);
**                        "*" means every header, only without allowCredentials.
**   maxAge               int seconds or duration ("10m"), default 0
**                        Access-Control-Max-Age on preflight answers: 0 sends none, a
**                        negative integer sends 0 (no caching); durations must be whole seconds.
**   allowPrivateNetwork  bool, default false (Fiber's AllowPrivateNetwork)
**                        answer a preflight carrying Access-Control-Request-Private-Network:
**                        true with Access-Control-Allow-Private-Network: true.
**   The type declares these options (cors_options, ABI 1.2): the host checks every config
**   against them before create runs. Option names are matched without regard to case, as
**   Seam's configuration decoder does (AllowOrigins works like allowOrigins), and unknown
**   options are configuration errors with the closest option (a misspelt allowOrigins must
**   not silently mean "*"; Fiber's allowOriginsFunc, a Go function, is one too).
**
** Request phase. A preflight (OPTIONS with a non-empty Origin and a non-empty
** Access-Control-Request-Method) is answered here with 204 and never reaches the action. It
** is allowed when the origin is allowed, the requested method is in allowMethods and every
** name in Access-Control-Request-Headers is in allowHeaders; then the answer carries
** Access-Control-Allow-Origin ("*" with allowOrigins "*", else the request's Origin),
** -Allow-Credentials, -Allow-Methods, -Allow-Headers, -Max-Age and -Allow-Private-Network as
** configured. A refused preflight gets 204 without any of them (the browser then blocks the
** request). Every preflight answer carries Vary: Origin, Access-Control-Request-Method,
** Access-Control-Request-Headers. Other requests go on unchanged.
**
** Response phase (every other request, also after an upstream answered or an element failed):
** with an allowed Origin, Access-Control-Allow-Origin ("*" for allowOrigins "*", else the
** Origin as sent), -Allow-Credentials: true (with allowCredentials) and -Expose-Headers replace
** whatever the action or upstream set; with a refused Origin those three are removed, so an
** upstream cannot grant what the gateway refused. The request itself always proceeds: the
** browser enforces the answer. Unless allowOrigins is "*", every response gets "Origin" added
** to Vary (also without an Origin header), because the answer depends on it. Requests without
** Origin are not CORS requests and keep the upstream's headers.
**
** Robustness: an Origin longer than 512 bytes, malformed, or holding non-ASCII bytes is never
** allowed by a list or pattern (with "*", the answer is "*" and echoes nothing).
** Everything is validated and copied at create; the hooks only read it: thread-safe, never
** blocks.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CORS_DEFAULT_METHODS "GET,POST,HEAD,PUT,DELETE,PATCH"
#define CORS_MAX_ORIGIN 512

/* ---------------------------------------------------------------------- lists */

typedef struct cors_list {
  char **items;
  size_t n, cap;
  char *joined; /* "A, B, C" for a response header; NULL when the list is empty */
  int any;      /* "*" was listed */
} cors_list;

static void cors_list_free(cors_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->items[i]);
  free(l->items);
  free(l->joined);
  memset(l, 0, sizeof *l);
}

/* Appends s[0..len). Returns 0 when out of memory. */
static int cors_list_push(cors_list *l, const char *s, size_t len) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 8;
    char **items = realloc(l->items, cap * sizeof *items);
    if (items == NULL) return 0;
    l->items = items;
    l->cap = cap;
  }
  char *copy = malloc(len + 1);
  if (copy == NULL) return 0;
  memcpy(copy, s, len);
  copy[len] = '\0';
  l->items[l->n++] = copy;
  if (len == 1 && s[0] == '*') l->any = 1;
  return 1;
}

/* Splits text on commas into l, trimming spaces and tabs and skipping empty parts. */
static int cors_split(cors_list *l, const char *text) {
  const char *p = text;
  while (*p != '\0') {
    while (*p == ' ' || *p == '\t') p++;
    const char *start = p;
    while (*p != '\0' && *p != ',') p++;
    const char *end = p;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
    if (end > start && !cors_list_push(l, start, (size_t)(end - start))) return 0;
    if (*p == ',') p++;
  }
  return 1;
}

/* Fills l from option `key`, a comma-separated string or a list of them; an absent or empty
** option gives the list of `dflt`. */
static ph_status cors_read_list(const ph_config *cfg, const char *key, const char *dflt,
                                cors_list *l) {
  ph_config_kind kind = ph_config_kind(cfg, key);
  if (kind == PH_CONFIG_LIST) {
    const ph_config *list = NULL;
    if (ph_config_child(cfg, key, &list) != PH_OK) return PH_ERROR;
    size_t n = list != NULL ? ph_config_len(list) : 0;
    for (size_t i = 0; i < n; i++) {
      const ph_config *item = ph_config_at(list, i, NULL);
      ph_config_kind ik = item != NULL ? ph_config_kind(item, NULL) : PH_CONFIG_MISSING;
      if (ik == PH_CONFIG_NULL) continue;
      if (ik != PH_CONFIG_STRING && ik != PH_CONFIG_INT)
        return ph_config_error(cfg, key,
                               "item %zu must be a string, not a %s: write a list of strings "
                               "or one comma-separated string",
                               i + 1,
                               ik == PH_CONFIG_LIST   ? "list"
                               : ik == PH_CONFIG_MAP  ? "map"
                               : ik == PH_CONFIG_BOOL ? "boolean"
                                                      : "number");
      const char *text = NULL;
      if (ph_config_string(item, NULL, "", &text) != PH_OK) return PH_ERROR;
      if (!cors_split(l, text)) return ph_config_error(cfg, NULL, "out of memory");
    }
  } else if (kind != PH_CONFIG_MISSING && kind != PH_CONFIG_NULL) {
    const char *text = NULL;
    if (ph_config_string(cfg, key, "", &text) != PH_OK) return PH_ERROR;
    if (!cors_split(l, text)) return ph_config_error(cfg, NULL, "out of memory");
  }
  if (l->n == 0 && dflt != NULL && !cors_split(l, dflt))
    return ph_config_error(cfg, NULL, "out of memory");
  return PH_OK;
}

/* Every item is "*" or an HTTP token (a method or header name); joined gets "A, B". */
static ph_status cors_check_tokens(const ph_config *cfg, const char *key, cors_list *l,
                                   const char *what) {
  size_t total = 1;
  for (size_t i = 0; i < l->n; i++) {
    const char *s = l->items[i];
    if (strcmp(s, "*") != 0 && !phu_valid_token(s))
      return ph_config_error(cfg, key,
                             "'%s' is not %s: use letters, digits and !#$%%&'*+-.^_`|~ "
                             "only, separated by commas",
                             s, what);
    total += strlen(s) + 2;
  }
  if (l->n == 0) return PH_OK;
  l->joined = malloc(total);
  if (l->joined == NULL) return ph_config_error(cfg, NULL, "out of memory");
  size_t at = 0;
  for (size_t i = 0; i < l->n; i++) {
    size_t len = strlen(l->items[i]);
    if (i > 0) {
      memcpy(l->joined + at, ", ", 2);
      at += 2;
    }
    memcpy(l->joined + at, l->items[i], len);
    at += len;
  }
  l->joined[at] = '\0';
  return PH_OK;
}

/* Whether the n-byte token s is in l (case-insensitive). */
static int cors_list_has_n(const cors_list *l, const char *s, size_t n) {
  for (size_t i = 0; i < l->n; i++)
    if (phu_ieqn(s, n, l->items[i])) return 1;
  return 0;
}

/* -------------------------------------------------------------------- origins */

static int cors_is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int cors_is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
static int cors_is_hex(unsigned char c) {
  return cors_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* If s[0..len) is a serialised origin "scheme://host[:port]" (host: letters, digits, '-'
** and '.' without empty labels, or a bracketed IPv6 address; port 0..65535), writes it
** lower-cased with its NUL into out (cap bytes) and returns its length; else returns 0. */
static size_t cors_origin_canon(const char *s, size_t len, char *out, size_t cap) {
  if (len == 0 || len >= cap || !cors_is_alpha((unsigned char)s[0])) return 0;
  size_t i = 0;
  while (i < len && (cors_is_alpha((unsigned char)s[i]) || cors_is_digit((unsigned char)s[i]) ||
                     s[i] == '+' || s[i] == '-' || s[i] == '.'))
    i++;
  if (i + 3 > len || memcmp(s + i, "://", 3) != 0) return 0;
  size_t host = i + 3, j = host;
  if (j < len && s[j] == '[') {
    j++;
    while (j < len && (cors_is_hex((unsigned char)s[j]) || s[j] == ':' || s[j] == '.')) j++;
    if (j >= len || s[j] != ']' || j == host + 1) return 0;
    j++;
  } else {
    while (j < len && (cors_is_alpha((unsigned char)s[j]) || cors_is_digit((unsigned char)s[j]) ||
                       s[j] == '-' || s[j] == '.')) {
      if (s[j] == '.' && (j == host || s[j - 1] == '.')) return 0; /* empty label */
      j++;
    }
    if (j == host || s[j - 1] == '.') return 0;
  }
  if (j < len && s[j] == ':') {
    size_t start = ++j;
    unsigned port = 0;
    while (j < len && cors_is_digit((unsigned char)s[j]) && j - start < 5)
      port = port * 10 + (unsigned)(s[j++] - '0');
    if (j == start || port > 65535) return 0;
  }
  if (j != len) return 0;
  for (size_t k = 0; k < len; k++) out[k] = (char)phu_lower((unsigned char)s[k]);
  out[len] = '\0';
  return len;
}

typedef struct cors_pattern {
  char *prefix; /* "https://" */
  char *suffix; /* ".example.com" or ".example.com:8443" */
  size_t prefix_len, suffix_len;
} cors_pattern;

typedef struct cors_mw {
  int any_origin;
  char **origins; /* canonical (lower-case) origins */
  size_t *origin_lens;
  size_t norigins;
  cors_pattern *patterns;
  size_t npatterns;
  cors_list methods, headers, expose;
  int reflect_headers; /* allowHeaders empty or "*" */
  int credentials, private_network;
  char max_age[24]; /* "" = not sent */
} cors_mw;

static void cors_destroy(void *self) {
  cors_mw *m = self;
  if (m == NULL) return;
  for (size_t i = 0; i < m->norigins; i++) free(m->origins[i]);
  free(m->origins);
  free(m->origin_lens);
  for (size_t i = 0; i < m->npatterns; i++) {
    free(m->patterns[i].prefix);
    free(m->patterns[i].suffix);
  }
  free(m->patterns);
  cors_list_free(&m->methods);
  cors_list_free(&m->headers);
  cors_list_free(&m->expose);
  free(m);
}

/* Turns the allowOrigins list into exact origins and subdomain patterns. */
static ph_status cors_build_origins(const ph_config *cfg, const char *key, cors_mw *m,
                                    const cors_list *l) {
  m->origins = calloc(l->n + 1, sizeof *m->origins);
  m->origin_lens = calloc(l->n + 1, sizeof *m->origin_lens);
  m->patterns = calloc(l->n + 1, sizeof *m->patterns);
  if (m->origins == NULL || m->origin_lens == NULL || m->patterns == NULL)
    return ph_config_error(cfg, NULL, "out of memory");
  for (size_t i = 0; i < l->n; i++) {
    const char *s = l->items[i];
    size_t len = strlen(s);
    if (strcmp(s, "*") == 0) {
      m->any_origin = 1;
      continue;
    }
    if (phu_ieq(s, "null"))
      return ph_config_error(cfg, key,
                             "'null' must not be allowed: sandboxed frames and local files of "
                             "any site send it, so it would let every page in; list real "
                             "origins like https://app.example.com");
    if (len > 0 && s[len - 1] == '/') len--; /* "https://example.com/" */
    char canon[CORS_MAX_ORIGIN + 1];
    const char *star = memchr(s, '*', len);
    if (star != NULL) {
      const char *sep = strstr(s, "://");
      /* only the scheme, "://", "*." and the rest */
      if (sep == NULL || star != sep + 3 || star[1] != '.' ||
          memchr(star + 1, '*', len - (size_t)(star + 1 - s)) != NULL)
        return ph_config_error(cfg, key,
                               "'%s' has a '*' that is neither the whole entry nor a leading "
                               "subdomain wildcard: write \"*\" for every origin or a pattern "
                               "like \"https://*.example.com\"",
                               s);
      /* validate "scheme://rest" without the "*." */
      char plain[CORS_MAX_ORIGIN + 1];
      size_t head = (size_t)(star - s), tail = len - head - 2;
      if (head + tail >= sizeof plain)
        return ph_config_error(cfg, key, "'%s' is longer than %d bytes", s, CORS_MAX_ORIGIN);
      memcpy(plain, s, head);
      memcpy(plain + head, star + 2, tail);
      size_t n = cors_origin_canon(plain, head + tail, canon, sizeof canon);
      if (n == 0)
        return ph_config_error(cfg, key,
                               "'%s' is not an origin pattern: write scheme://*.domain[:port] "
                               "without a path, like https://*.example.com",
                               s);
      cors_pattern *p = &m->patterns[m->npatterns++];
      p->prefix_len = head;
      p->suffix_len = n - head + 1;
      p->prefix = malloc(p->prefix_len + 1);
      p->suffix = malloc(p->suffix_len + 1);
      if (p->prefix == NULL || p->suffix == NULL)
        return ph_config_error(cfg, NULL, "out of memory");
      memcpy(p->prefix, canon, head);
      p->prefix[head] = '\0';
      p->suffix[0] = '.';
      memcpy(p->suffix + 1, canon + head, n - head + 1);
      continue;
    }
    size_t n = cors_origin_canon(s, len, canon, sizeof canon);
    if (n == 0)
      return ph_config_error(cfg, key,
                             "'%s' is not an origin: write scheme://host[:port] without a path, "
                             "like https://app.example.com, or \"*\" for every origin",
                             s);
    m->origins[m->norigins] = phu_strdup(canon);
    if (m->origins[m->norigins] == NULL) return ph_config_error(cfg, NULL, "out of memory");
    m->origin_lens[m->norigins++] = n;
  }
  return PH_OK;
}

/* Whether the request's Origin is allowed by the list or a pattern (not by "*"). */
static int cors_origin_listed(const cors_mw *m, const char *origin) {
  size_t len = strlen(origin);
  if (len == 0 || len > CORS_MAX_ORIGIN) return 0;
  for (size_t i = 0; i < m->norigins; i++)
    if (m->origin_lens[i] == len && phu_ieqn(origin, len, m->origins[i])) return 1;
  if (m->npatterns == 0) return 0;
  char canon[CORS_MAX_ORIGIN + 1];
  if (cors_origin_canon(origin, len, canon, sizeof canon) == 0) return 0;
  for (size_t i = 0; i < m->npatterns; i++) {
    const cors_pattern *p = &m->patterns[i];
    if (len > p->prefix_len + p->suffix_len && memcmp(canon, p->prefix, p->prefix_len) == 0 &&
        memcmp(canon + len - p->suffix_len, p->suffix, p->suffix_len) == 0 &&
        canon[p->prefix_len] != '[' &&
        memchr(canon + p->prefix_len, ':', len - p->prefix_len - p->suffix_len) == NULL)
      return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------------- create */

static ph_status cors_read_max_age(const ph_config *cfg, const char *key, cors_mw *m) {
  m->max_age[0] = '\0';
  ph_config_kind kind = ph_config_kind(cfg, key);
  if (kind == PH_CONFIG_MISSING || kind == PH_CONFIG_NULL) return PH_OK;
  int64_t seconds;
  if (kind == PH_CONFIG_INT) {
    if (ph_config_int(cfg, key, 0, &seconds) != PH_OK) return PH_ERROR;
    if (seconds != 0) /* negative: "0", no caching (Fiber's rule) */
      snprintf(m->max_age, sizeof m->max_age, "%" PRId64, seconds < 0 ? 0 : seconds);
    return PH_OK;
  }
  int64_t ms;
  if (ph_config_duration_ms(cfg, key, 0, &ms) != PH_OK) return PH_ERROR;
  if (ms % 1000 != 0)
    return ph_config_error(cfg, key,
                           "must be a whole number of seconds (browsers cache preflights by the "
                           "second), like 600 or \"10m\"");
  if (ms > 0) snprintf(m->max_age, sizeof m->max_age, "%" PRId64, ms / 1000);
  return PH_OK;
}

static ph_status cors_create(const ph_config *cfg, void **self) {
  cors_mw *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;
  /* Option names: the host checked them against cors_options, and the getters find a key
  ** written in any case. */
  cors_list origins = {0};
  ph_status st = cors_read_list(cfg, "allowOrigins", "*", &origins);
  if (st == PH_OK) st = cors_build_origins(cfg, "allowOrigins", m, &origins);
  cors_list_free(&origins);
  if (st != PH_OK) return PH_ERROR;

  if (cors_read_list(cfg, "allowMethods", CORS_DEFAULT_METHODS, &m->methods) != PH_OK ||
      cors_check_tokens(cfg, "allowMethods", &m->methods, "an HTTP method") != PH_OK)
    return PH_ERROR;
  if (cors_read_list(cfg, "allowHeaders", NULL, &m->headers) != PH_OK ||
      cors_check_tokens(cfg, "allowHeaders", &m->headers, "a header name") != PH_OK)
    return PH_ERROR;
  m->reflect_headers = m->headers.n == 0 || m->headers.any;
  if (cors_read_list(cfg, "exposeHeaders", NULL, &m->expose) != PH_OK ||
      cors_check_tokens(cfg, "exposeHeaders", &m->expose, "a header name") != PH_OK)
    return PH_ERROR;
  if (ph_config_bool(cfg, "allowCredentials", 0, &m->credentials) != PH_OK) return PH_ERROR;
  if (ph_config_bool(cfg, "allowPrivateNetwork", 0, &m->private_network) != PH_OK) return PH_ERROR;
  if (cors_read_max_age(cfg, "maxAge", m) != PH_OK) return PH_ERROR;

  if (m->credentials && m->any_origin)
    return ph_config_error(
        cfg, "allowCredentials",
        "true cannot be combined with allowOrigins \"*\"%s, because browsers "
        "refuse credentials for a wildcard origin: list the exact origins "
        "allowed to send cookies in allowOrigins, or set allowCredentials: "
        "false",
        ph_config_kind(cfg, "allowOrigins") == PH_CONFIG_MISSING ? " (its default)" : "");
  if (m->credentials && m->expose.any)
    return ph_config_error(cfg, "exposeHeaders",
                           "\"*\" exposes nothing when allowCredentials is true (browsers then "
                           "read it as a header named '*'): list the headers to expose");
  return PH_OK;
}

/* ------------------------------------------------------------------------ hooks */

/* Whether the comma-separated list `value` holds `token` or "*" (case-insensitive). */
static int cors_value_has(const char *value, const char *token) {
  const char *p = value;
  while (*p != '\0') {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    const char *start = p;
    while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t') p++;
    size_t n = (size_t)(p - start);
    if (n > 0 && (phu_ieqn(start, n, token) || (n == 1 && *start == '*'))) return 1;
    while (*p != '\0' && *p != ',') p++;
  }
  return 0;
}

/* Adds token to the response's Vary unless it (or "*") is there: one Vary line is extended,
** none or several get a line of their own. */
static ph_status cors_vary(ph_exchange *ex, const char *token) {
  size_t count = ph_resp_header_count(ex), lines = 0;
  const char *only = NULL;
  for (size_t i = 0; i < count; i++) {
    const char *name = NULL, *value = NULL;
    if (ph_resp_header_at(ex, i, &name, &value) != PH_OK) break;
    if (!phu_ieq(name, "Vary")) continue;
    if (cors_value_has(value, token)) return PH_OK;
    lines++;
    only = value;
  }
  if (lines != 1) return ph_resp_header_add(ex, "Vary", token);
  if (only[strspn(only, " \t")] == '\0') return ph_resp_header_set(ex, "Vary", token);
  size_t a = strlen(only), b = strlen(token);
  char stack[256];
  char *buf = a + b + 3 <= sizeof stack ? stack : malloc(a + b + 3);
  if (buf == NULL) {
    ph_error(ex, "cors: out of memory");
    return PH_ERROR;
  }
  memcpy(buf, only, a); /* `only` lives in the host's header store: copy before set */
  memcpy(buf + a, ", ", 2);
  memcpy(buf + a + 2, token, b + 1);
  ph_status st = ph_resp_header_set(ex, "Vary", buf);
  if (buf != stack) free(buf);
  return st;
}

static int cors_is_preflight(const ph_exchange *ex) {
  const char *method = ph_method(ex);
  if (method == NULL || strcmp(method, "OPTIONS") != 0) return 0;
  const char *origin = ph_header_get(ex, "Origin");
  const char *requested = ph_header_get(ex, "Access-Control-Request-Method");
  return origin != NULL && *origin != '\0' && requested != NULL && *requested != '\0';
}

/* Whether every name of an Access-Control-Request-Headers value is allowed; a value that is
** not a comma-separated list of header names never is. */
static int cors_headers_allowed(const cors_mw *m, const char *requested) {
  const char *p = requested;
  for (;;) {
    while (*p == ' ' || *p == '\t') p++;
    const char *start = p;
    while (phu_is_tchar((unsigned char)*p)) p++;
    size_t n = (size_t)(p - start);
    while (*p == ' ' || *p == '\t') p++;
    if (n == 0) {
      if (*p == ',') { /* an empty element, as in "a,,b" */
        p++;
        continue;
      }
      return *p == '\0';
    }
    if (*p != ',' && *p != '\0') return 0;
    if (!m->reflect_headers && !cors_list_has_n(&m->headers, start, n)) return 0;
    if (*p == '\0') return 1;
    p++;
  }
}

static ph_next cors_on_request(void *self, ph_exchange *ex) {
  const cors_mw *m = self;
  if (!cors_is_preflight(ex)) return PH_NEXT_CONTINUE;
  const char *origin = ph_header_get(ex, "Origin");
  const char *method = ph_header_get(ex, "Access-Control-Request-Method");
  const char *requested = ph_header_get(ex, "Access-Control-Request-Headers");
  if (requested != NULL && requested[strspn(requested, " \t")] == '\0') requested = NULL;

  int allowed = (m->any_origin || cors_origin_listed(m, origin)) && phu_valid_token(method) &&
                (m->methods.any || cors_list_has_n(&m->methods, method, strlen(method))) &&
                (requested == NULL || cors_headers_allowed(m, requested));

  if (ph_http_status_set(ex, 204) != PH_OK) return PH_NEXT_ERROR; /* the host recorded why */
  if (cors_vary(ex, "Origin") != PH_OK || cors_vary(ex, "Access-Control-Request-Method") != PH_OK ||
      cors_vary(ex, "Access-Control-Request-Headers") != PH_OK)
    return PH_NEXT_ERROR; /* the host recorded why */
  if (m->private_network && cors_vary(ex, "Access-Control-Request-Private-Network") != PH_OK)
    return PH_NEXT_ERROR; /* the host recorded why */
  if (!allowed) return PH_NEXT_RESPOND; /* no CORS headers: the browser blocks the request */

  if (ph_resp_header_set(ex, "Access-Control-Allow-Origin", m->any_origin ? "*" : origin) != PH_OK)
    return PH_NEXT_ERROR; /* the host recorded why */
  if (m->credentials && ph_resp_header_set(ex, "Access-Control-Allow-Credentials", "true") != PH_OK)
    return PH_NEXT_ERROR; /* the host recorded why */
  if (ph_resp_header_set(ex, "Access-Control-Allow-Methods",
                         m->methods.any ? method : m->methods.joined) != PH_OK)
    return PH_NEXT_ERROR; /* the host recorded why */
  const char *allow_headers = m->reflect_headers ? requested : m->headers.joined;
  if (allow_headers != NULL &&
      ph_resp_header_set(ex, "Access-Control-Allow-Headers", allow_headers) != PH_OK)
    return PH_NEXT_ERROR; /* the host recorded why */
  if (m->max_age[0] != '\0' &&
      ph_resp_header_set(ex, "Access-Control-Max-Age", m->max_age) != PH_OK)
    return PH_NEXT_ERROR; /* the host recorded why */
  if (m->private_network) {
    const char *pna = ph_header_get(ex, "Access-Control-Request-Private-Network");
    if (pna != NULL && phu_ieq(pna, "true") &&
        ph_resp_header_set(ex, "Access-Control-Allow-Private-Network", "true") != PH_OK)
      return PH_NEXT_ERROR; /* the host recorded why */
  }
  return PH_NEXT_RESPOND;
}

static ph_status cors_on_response(void *self, ph_exchange *ex) {
  const cors_mw *m = self;
  if (cors_is_preflight(ex)) return PH_OK; /* answered by the request phase */
  if (!m->any_origin && cors_vary(ex, "Origin") != PH_OK) return PH_ERROR;
  const char *origin = ph_header_get(ex, "Origin");
  if (origin == NULL || *origin == '\0') return PH_OK; /* not a CORS request */

  if (m->any_origin || cors_origin_listed(m, origin)) {
    if (ph_resp_header_set(ex, "Access-Control-Allow-Origin", m->any_origin ? "*" : origin) !=
        PH_OK)
      return PH_ERROR;
    if (m->credentials) {
      if (ph_resp_header_set(ex, "Access-Control-Allow-Credentials", "true") != PH_OK)
        return PH_ERROR;
    } else {
      ph_resp_header_remove(ex, "Access-Control-Allow-Credentials");
    }
    if (m->expose.joined != NULL) {
      if (ph_resp_header_set(ex, "Access-Control-Expose-Headers", m->expose.joined) != PH_OK)
        return PH_ERROR;
    } else {
      ph_resp_header_remove(ex, "Access-Control-Expose-Headers");
    }
    return PH_OK;
  }
  ph_resp_header_remove(ex, "Access-Control-Allow-Origin");
  ph_resp_header_remove(ex, "Access-Control-Allow-Credentials");
  ph_resp_header_remove(ex, "Access-Control-Expose-Headers");
  return PH_OK;
}

/* The options of a CORSMiddleware (Seam's names, as Fiber's cors middleware takes them). */
static const ph_option cors_options[] = {
    PH_OPTION(PH_OPTION_LIST, "allowOrigins", "*",
              "origins allowed to read responses (scheme://host[:port], "
              "https://*.example.com for subdomains, \"*\" for every origin)",
              .flags = PH_OPTION_COMMA_LIST, .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_LIST, "allowMethods", CORS_DEFAULT_METHODS,
              "methods a preflight may ask for (\"*\": every method)",
              .flags = PH_OPTION_COMMA_LIST, .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_LIST, "allowHeaders", "",
              "request headers a preflight may ask for (empty or \"*\": every requested "
              "header)",
              .flags = PH_OPTION_COMMA_LIST, .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_BOOL, "allowCredentials", "false",
              "let cookies and HTTP authentication go along "
              "(Access-Control-Allow-Credentials: true; needs explicit origins)"),
    PH_OPTION(PH_OPTION_LIST, "exposeHeaders", "",
              "response headers, beyond the basic ones, that scripts may read "
              "(Access-Control-Expose-Headers)",
              .flags = PH_OPTION_COMMA_LIST, .items = PH_OPTION_STRING),
    /* A string, not a duration: a negative integer is Fiber's "no caching" (sends 0), which
    ** the duration kind refuses; cors_read_max_age checks the value. */
    PH_OPTION(PH_OPTION_STRING, "maxAge", "0",
              "how long browsers may cache a preflight answer: seconds or a duration like "
              "\"10m\" (0: no Access-Control-Max-Age; negative: 0, no caching)"),
    PH_OPTION(PH_OPTION_BOOL, "allowPrivateNetwork", "false",
              "answer Private Network Access preflights with "
              "Access-Control-Allow-Private-Network: true"),
    PH_OPTIONS_END};

/* The plugin's own config: it has no init, so it takes nothing. */
static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_middleware_type cors_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.cors.middlewares.CORSMiddleware",
    .description =
        "Cross-Origin Resource Sharing: preflight answers and Access-Control-* "
        "headers",
    .create = cors_create,
    .destroy = cors_destroy,
    .on_request = cors_on_request,
    .on_response = cors_on_response,
    .options = cors_options,
};

static const ph_middleware_type *const cors_middlewares[] = {&cors_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "cors", .version = "1.0.0",
                 .description = "CORS preflights and response headers (Seam's cors)",
                 .middlewares = cors_middlewares, .options = no_options);
