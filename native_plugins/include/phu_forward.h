/* phu_forward.h: what the forwarding plugins (httpfw, wsfw) share: a growing string, upstream
** endpoint URLs, the upstream URL of a request (Seam's GetTargetUrl rule) and the
** X-Forwarded-* headers. Header-only, like phu.h; include after phu.h.
**
** Upstream URL: the endpoint's path, joined with what the route's trailing `*` matched
** (nothing for a route without `*`), then the request's query. Dot segments of the matched
** part are resolved inside it (never above the endpoint's path) and its characters
** percent-encoded again. */
#ifndef PLUGHOST_PHU_FORWARD_H
#define PLUGHOST_PHU_FORWARD_H

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ growing strings */

typedef struct phu_buf {
  char *p;
  size_t len, cap;
  int oom;
} phu_buf;

static void phu_put(phu_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void phu_puts(phu_buf *b, const char *s) {
  phu_put(b, s, strlen(s));
}

/* ------------------------------------------------------------------ upstream endpoints */

typedef struct phu_endpoint {
  char *base; /* scheme://authority[/path], no trailing '/': what URLs start with */
  char *host; /* for health checks: the host without IPv6 brackets */
  char port[8];
  int has_path; /* base ends with a path (not just the authority) */
} phu_endpoint;

static void phu_endpoint_free(phu_endpoint *e) {
  free(e->base);
  free(e->host);
  e->base = e->host = NULL;
}

static int phu_is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* RFC 3986 pchar without '%': may appear unescaped in a path segment. */
static int phu_unreserved_or_pchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || phu_is_digit((char)c)) return 1;
  return c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

/* Parses an absolute http(s) URL into e; on failure reports why about `key` of cfg
** (`what` names the entry, e.g. "" or "entry 2 "). */
static ph_status phu_endpoint_parse(const ph_config *cfg, const char *key, const char *what,
                                    const char *url, int websocket, phu_endpoint *e) {
  const char *plain = websocket ? "ws" : "http", *secure = websocket ? "wss" : "https";
  const char *scheme, *rest;
  const char *dflt_port;
  size_t slen = strcspn(url, ":");
  for (const char *c = url; *c; c++)
    if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
      return ph_config_error(cfg, key,
                             "%smust be an absolute %s:// or %s:// URL without spaces or "
                             "control characters, not '%s'",
                             what, plain, secure, url);
  if (phu_ieqn(url, slen, plain) && strncmp(url + slen, "://", 3) == 0) {
    scheme = websocket ? "ws://" : "http://", dflt_port = "80";
  } else if (phu_ieqn(url, slen, secure) && strncmp(url + slen, "://", 3) == 0) {
    scheme = websocket ? "wss://" : "https://", dflt_port = "443";
  } else {
    return ph_config_error(cfg, key,
                           "%smust be an absolute %s:// or %s:// URL such as "
                           "%s://localhost:8080, not '%s'",
                           what, plain, secure, plain, url);
  }
  rest = url + slen + 3;
  size_t alen = strcspn(rest, "/?#");
  const char *path = rest + alen;
  if (alen == 0) return ph_config_error(cfg, key, "%shas no host: '%s'", what, url);
  if (memchr(rest, '@', alen))
    return ph_config_error(cfg, key,
                           "%smust not hold credentials (user@host): '%s'; set an "
                           "Authorization header with a middleware instead",
                           what, url);
  if (strpbrk(path, "?#"))
    return ph_config_error(cfg, key,
                           "%smust not have a query or fragment: the request's own query is "
                           "forwarded ('%s')",
                           what, url);
  const char *host = rest, *host_end, *port = NULL;
  size_t port_len = 0;
  if (rest[0] == '[') {
    const char *close = memchr(rest, ']', alen);
    if (!close || close == rest + 1)
      return ph_config_error(cfg, key, "%shas a malformed IPv6 host: '%s'", what, url);
    host = rest + 1, host_end = close;
    if (close + 1 < rest + alen) {
      if (close[1] != ':')
        return ph_config_error(cfg, key, "%shas a malformed IPv6 host: '%s'", what, url);
      port = close + 2, port_len = (size_t)(rest + alen - port);
    }
  } else {
    const char *colon = memchr(rest, ':', alen);
    host_end = colon ? colon : rest + alen;
    if (colon) port = colon + 1, port_len = (size_t)(rest + alen - port);
    if (host_end == host) return ph_config_error(cfg, key, "%shas no host: '%s'", what, url);
    for (const char *c = host; c < host_end; c++)
      if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || phu_is_digit(*c) || *c == '.' ||
            *c == '-' || *c == '_'))
        return ph_config_error(cfg, key, "%shas an invalid host name: '%s'", what, url);
  }
  if (port) {
    long v = 0;
    if (port_len == 0 || port_len > 5)
      return ph_config_error(cfg, key, "%shas an invalid port (1-65535): '%s'", what, url);
    for (size_t i = 0; i < port_len; i++) {
      if (!phu_is_digit(port[i]))
        return ph_config_error(cfg, key, "%shas an invalid port (1-65535): '%s'", what, url);
      v = v * 10 + (port[i] - '0');
    }
    if (v < 1 || v > 65535)
      return ph_config_error(cfg, key, "%shas an invalid port (1-65535): '%s'", what, url);
    snprintf(e->port, sizeof e->port, "%ld", v);
  } else {
    snprintf(e->port, sizeof e->port, "%s", dflt_port);
  }
  for (const char *c = path; *c; c++) {
    int escape = *c == '%' && isxdigit((unsigned char)c[1]) && isxdigit((unsigned char)c[2]);
    if (*c != '/' && !escape && !phu_unreserved_or_pchar((unsigned char)*c))
      return ph_config_error(cfg, key,
                             "%shas '%c' in its path: percent-encode it (e.g. %%20 for a "
                             "space, %%25 for '%%'): '%s'",
                             what, *c, url);
  }
  size_t hlen = (size_t)(host_end - host), plen = strlen(path);
  while (plen > 0 && path[plen - 1] == '/') plen--;
  e->host = malloc(hlen + 1);
  e->base = malloc(strlen(scheme) + alen + plen + 1);
  if (!e->host || !e->base) return ph_config_error(cfg, key, "out of memory");
  memcpy(e->host, host, hlen);
  e->host[hlen] = '\0';
  sprintf(e->base, "%s%.*s%.*s", scheme, (int)alen, rest, (int)plen, path);
  e->has_path = plen > 0;
  return PH_OK;
}

/* ------------------------------------------------------------------ forwarding */

static int phu_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* How many dots the segment s (n bytes) is, when it is only dots ('.' or "%2E", with
** `raw`): 1 or 2 for the dot segments "." and "..", else 0. */
static int phu_dots(const char *s, size_t n, int raw) {
  int dots = 0;
  for (size_t i = 0; i < n; dots++) {
    if (s[i] == '.') {
      i++;
    } else if (raw && s[i] == '%' && i + 2 < n && s[i + 1] == '2' && (s[i + 2] | 0x20) == 'e') {
      i += 3;
    } else {
      return 0;
    }
  }
  return dots <= 2 ? dots : 0;
}

/* Appends the route's wildcard match to b: empty and "." segments dropped, ".." removes the
** previous segment of the match (never anything of the endpoint's path), every byte that is
** not a path character percent-encoded. `raw`: the match is the request's own text (1.2's
** ph_route_param_raw), whose valid %XX escapes are kept as they are ("%2F" stays inside its
** segment, "%00" and "%ff" reach the upstream unchanged; "%2E%2E" is a ".." all the same);
** otherwise it is decoded, and every segment is encoded afresh. */
static void phu_put_rest(phu_buf *b, const char *rest, int raw) {
  static const char hex[] = "0123456789ABCDEF";
  size_t most = 1, depth = 0;
  for (const char *c = rest; *c; c++) most += *c == '/';
  size_t *mark = malloc(most * sizeof *mark); /* where each kept segment starts in b */
  if (!mark) {
    b->oom = 1;
    return;
  }
  while (*rest) {
    size_t n = strcspn(rest, "/");
    int dots = phu_dots(rest, n, raw);
    if (dots == 2) {
      if (depth > 0 && !b->oom) {
        b->len = mark[--depth];
        b->p[b->len] = '\0';
      }
    } else if (n > 0 && dots != 1) {
      mark[depth++] = b->len;
      phu_put(b, "/", 1);
      for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)rest[i];
        if (phu_unreserved_or_pchar(c) ||
            (raw && c == '%' && i + 2 < n && phu_hex((unsigned char)rest[i + 1]) &&
             phu_hex((unsigned char)rest[i + 2]))) {
          phu_put(b, (const char *)&c, 1);
        } else {
          char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
          phu_put(b, esc, 3);
        }
      }
    }
    rest += n;
    if (*rest == '/') rest++;
  }
  free(mark);
}

/* Appends every value of request header `name`, comma-separated, to b; returns how many. */
static size_t phu_put_all(const ph_exchange *ex, phu_buf *b, const char *name) {
  size_t found = 0, count = ph_header_count(ex);
  for (size_t i = 0; i < count; i++) {
    const char *k, *v;
    if (ph_header_at(ex, i, &k, &v) != PH_OK) break;
    if (!phu_ieq(k, name)) continue;
    if (found++) phu_puts(b, ", ");
    phu_puts(b, v);
  }
  return found;
}

/* Sets X-Forwarded-For (the client's address appended), X-Forwarded-Proto (`proto`, the
** scheme clients use to reach the gateway) and X-Forwarded-Host (the Host header) on the
** request; with `trust`, Proto and Host a client sent are kept. */
static ph_status phu_forwarded(ph_exchange *ex, const char *proto, int trust) {
  phu_buf b = {0};
  const char *ip = ph_client_ip(ex);
  size_t had = phu_put_all(ex, &b, "X-Forwarded-For");
  if (ip && *ip) {
    if (had) phu_puts(&b, ", ");
    phu_puts(&b, ip);
  }
  ph_status r = PH_OK;
  if (b.oom) {
    ph_error(ex, "out of memory");
    r = PH_ERROR;
  } else if (b.len > 0) {
    r = ph_header_set(ex, "X-Forwarded-For", b.p);
  }
  free(b.p);
  if (r != PH_OK) return r;

  if (!(trust && ph_header_get(ex, "X-Forwarded-Proto")))
    if (ph_header_set(ex, "X-Forwarded-Proto", proto) != PH_OK) return PH_ERROR;
  if (!(trust && ph_header_get(ex, "X-Forwarded-Host"))) {
    const char *host = ph_header_get(ex, "Host");
    if (host && *host) {
      if (ph_header_set(ex, "X-Forwarded-Host", host) != PH_OK) return PH_ERROR;
    } else {
      ph_header_remove(ex, "X-Forwarded-Host");
    }
  }
  return PH_OK;
}

/* The upstream URL of the request into *url (a growing string the caller frees): the
** endpoint, the route's wildcard match, the query. PH_ERROR (recorded on ex) when out of
** memory. */
static ph_status phu_target_url(const phu_endpoint *e, ph_exchange *ex, phu_buf *url) {
  phu_puts(url, e->base);
  size_t base_len = url->len;
  int raw = PH_HOST_HAS(ex, route_param_raw);
  const char *rest = raw ? ph_route_param_raw(ex, "*") : ph_route_param(ex, "*");
  if (rest) phu_put_rest(url, rest, raw);
  if (!e->has_path && url->len == base_len) phu_put(url, "/", 1); /* the root path */
  const char *q = ph_query(ex);
  if (q && *q) {
    phu_put(url, "?", 1);
    phu_puts(url, q);
  }
  if (url->oom) {
    ph_error(ex, "out of memory");
    return PH_ERROR;
  }
  return PH_OK;
}

/* Reads the forwardedProto option `key` (NULL: absent) into *proto: "http" or "https". */
static ph_status phu_forwarded_proto(const ph_config *cfg, const char *key, const char **proto) {
  *proto = "http";
  if (!key) return PH_OK;
  if (ph_config_string(cfg, key, "http", proto) != PH_OK) return PH_ERROR;
  if (!phu_ieq(*proto, "http") && !phu_ieq(*proto, "https"))
    return ph_config_error(cfg, key,
                           "must be \"http\" or \"https\" (the scheme clients use to reach "
                           "the gateway), not '%s'",
                           *proto);
  *proto = phu_ieq(*proto, "http") ? "http" : "https";
  return PH_OK;
}

/* The schema entries (ABI 1.2) of the X-Forwarded-* options both forwarding plugins take. */
static const char *const phu_forwarded_protos[] = {"http", "https", NULL};
#define PHU_FORWARDED_OPTIONS                                                              \
  PH_OPTION(PH_OPTION_ENUM, "forwardedProto", "http",                                      \
            "the value of X-Forwarded-Proto: the scheme clients use to reach the gateway", \
            .choices = phu_forwarded_protos),                                              \
      PH_OPTION(PH_OPTION_BOOL, "trustForwardedHeaders", "false",                          \
                "keep the X-Forwarded-Proto and X-Forwarded-Host a request already carries")

#endif /* PLUGHOST_PHU_FORWARD_H */
