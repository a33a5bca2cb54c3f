/* phu.h: small helpers shared by this repository's plugins (header-only, static inline).
** Not part of the ABI: out-of-tree plugins need only plugin.h. Include after plugin.h and
** after defining _POSIX_C_SOURCE. */
#ifndef PLUGHOST_PHU_H
#define PLUGHOST_PHU_H

#include <errno.h>
#include <time.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

/* strdup for C11 (NULL when out of memory). */
static inline char *phu_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p != NULL) memcpy(p, s, n);
  return p;
}

/* RFC 9110 token characters (header field names, cookie names). */
static inline int phu_is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A non-empty token: a valid header or cookie name. */
static inline int phu_valid_token(const char *s) {
  if (*s == '\0') return 0;
  for (; *s != '\0'; s++)
    if (!phu_is_tchar((unsigned char)*s)) return 0;
  return 1;
}

/* A cookie attribute value: printable ASCII without ';' (RFC 6265 av-octet). */
static inline int phu_valid_cookie_attr(const char *s) {
  for (; *s != '\0'; s++)
    if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e || *s == ';') return 0;
  return 1;
}

/* A cookie domain: letters, digits, '.' and '-'. */
static inline int phu_valid_domain(const char *s) {
  for (; *s != '\0'; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-'))
      return 0;
  }
  return 1;
}

/* Answers with the host's JSON error form ({"error":"<message>","status":N} and the request
** id) and says so to the chain: `return phu_refuse(ex, 401, "invalid token");`. */
static inline ph_next phu_refuse(ph_exchange *ex, int status, const char *message) {
  return ph_respond_error(ex, status, "%s", message) == PH_OK ? PH_NEXT_RESPOND : PH_NEXT_ERROR;
}

/* Declares a counter of the instance (or plugin) `cfg` belongs to, exposed as
** plughost_plugin_<plugin>_<name>_total{instance=...,<label>="<value>"} (label NULL: none).
** NULL, with the configuration error recorded, when the host refuses it. */
static inline ph_metric *phu_counter(const ph_config *cfg, const char *name, const char *help,
                                     const char *label, const char *value) {
  ph_metric_spec spec = {.size = sizeof spec,
                         .kind = PH_METRIC_COUNTER,
                         .name = name,
                         .help = help,
                         .label = label,
                         .label_value = value};
  return ph_metric_declare(cfg, &spec);
}

/* Keeps a copy of `len` bytes of `text` (a NUL added) on the calling instance's per-request
** slot, for its response hook to read with ph_slot_get(ex); the host frees it with the
** exchange. */
static inline ph_status phu_slot_keep_text(ph_exchange *ex, const char *text, size_t len) {
  char *copy = malloc(len + 1);
  if (copy == NULL) {
    ph_error(ex, "out of memory keeping %zu bytes for the response phase", len);
    return PH_ERROR;
  }
  memcpy(copy, text, len);
  copy[len] = '\0';
  if (ph_slot_set(ex, copy, free) != PH_OK) {
    free(copy);
    return PH_ERROR;
  }
  return PH_OK;
}

/* Random bytes from the kernel's CSPRNG, pooled per thread: no shared state, no lock, no
** system call for most requests; used bytes are wiped. Returns 0 or an errno value. */
static _Thread_local uint8_t phu_pool[4096];
static _Thread_local size_t phu_pool_left;

static inline int phu_random(uint8_t *out, size_t n) {
  if (n > sizeof phu_pool) return EINVAL;
  if (phu_pool_left < n) {
    size_t got = 0;
    while (got < sizeof phu_pool) {
      /* GRND_NONBLOCK: never wait for entropy (only possible very early after boot). */
      ssize_t r = getrandom(phu_pool + got, sizeof phu_pool - got, GRND_NONBLOCK);
      if (r < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      got += (size_t)r;
    }
    phu_pool_left = sizeof phu_pool;
  }
  uint8_t *from = phu_pool + (sizeof phu_pool - phu_pool_left);
  memcpy(out, from, n);
  memset(from, 0, n);
  phu_pool_left -= n;
  return 0;
}

/* ------------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s (n > 0 bytes left), or 0 when it is invalid:
** strict, no overlong forms, no surrogates, nothing above U+10FFFF. */
static inline size_t phu_utf8_seq(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t k = 1; k < len; k++) {
    if ((s[k] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[k] & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

/* Whether s[0..n) is valid UTF-8 (phu_utf8_seq's rules). */
static inline int phu_valid_utf8(const uint8_t *s, size_t n) {
  for (size_t i = 0, len; i < n; i += len)
    if ((len = phu_utf8_seq(s + i, n - i)) == 0) return 0;
  return 1;
}

/* ---------------------------------------------------------- comparing ignoring case
** (Option names need none of this: the host checks them against each type's schema and
** its getters look keys up ignoring case.) */

/* ASCII lower case, whatever the locale. */
static inline unsigned char phu_lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* ASCII case-insensitive equality of two NUL-terminated strings. */
static inline int phu_ieq(const char *a, const char *b) {
  for (;; a++, b++) {
    unsigned char x = phu_lower((unsigned char)*a), y = phu_lower((unsigned char)*b);
    if (x != y) return 0;
    if (x == '\0') return 1;
  }
}

/* ASCII case-insensitive equality of a[0..n) and the NUL-terminated b. */
static inline int phu_ieqn(const char *a, size_t n, const char *b) {
  for (size_t i = 0; i < n; i++, b++)
    if (*b == '\0' || phu_lower((unsigned char)a[i]) != phu_lower((unsigned char)*b)) return 0;
  return *b == '\0';
}

/* --------------------------------------------------------------- reading cookies */

/* The value of cookie `name` in one Cookie header value `h` (RFC 6265 cookie-string:
** "a=1; b=2"; blanks around pairs ignored, a value's surrounding quotes removed), or NULL.
** Points into `h`; *len gets its length. Names match exactly, as browsers send them. */
static inline const char *phu_cookie_in(const char *h, const char *name, size_t *len) {
  size_t nlen = strlen(name);
  const char *p = h;
  while (*p != '\0') {
    while (*p == ' ' || *p == '\t' || *p == ';') p++;
    const char *start = p;
    while (*p != '\0' && *p != ';') p++;
    const char *end = p;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
    const char *eq = memchr(start, '=', (size_t)(end - start));
    if (eq != NULL && (size_t)(eq - start) == nlen && memcmp(start, name, nlen) == 0) {
      const char *v = eq + 1;
      size_t vl = (size_t)(end - v);
      if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
        v++;
        vl -= 2;
      }
      *len = vl;
      return v;
    }
  }
  return NULL;
}

/* The value of cookie `name` the client sent, from the first of its Cookie headers that
** holds it, or NULL. Points into the request (valid during the hook); *len gets its length. */
static inline const char *phu_request_cookie(const ph_exchange *ex, const char *name, size_t *len) {
  size_t count = ph_header_count(ex);
  for (size_t i = 0; i < count; i++) {
    const char *hname, *value;
    if (ph_header_at(ex, i, &hname, &value) != PH_OK) break;
    if (!phu_ieq(hname, "Cookie")) continue;
    const char *found = phu_cookie_in(value, name, len);
    if (found != NULL) return found;
  }
  return NULL;
}

/* The schema entries of the shared cookie attributes below (ABI 1.2 option schemas), for a
** type's ph_option array; the choices of cookieSameSite come with them. */
static const char *const phu_same_site_choices[] = {"Strict", "Lax", "None", NULL};
#define PHU_COOKIE_OPTIONS                                                           \
  PH_OPTION(PH_OPTION_STRING, "cookieDomain", "",                                    \
            "the cookie's Domain attribute (left out when empty)"),                  \
      PH_OPTION(PH_OPTION_STRING, "cookiePath", "/", "the cookie's Path attribute"), \
      PH_OPTION(PH_OPTION_BOOL, "cookieSecure", "false",                             \
                "adds Secure: the browser sends the cookie over HTTPS only"),        \
      PH_OPTION(PH_OPTION_BOOL, "cookieHTTPOnly", "false",                           \
                "adds HttpOnly: page scripts cannot read the cookie"),               \
      PH_OPTION(PH_OPTION_ENUM, "cookieSameSite", "Lax",                             \
                "the cookie's SameSite attribute (None needs cookieSecure: true)",   \
                .choices = phu_same_site_choices),                                   \
      PH_OPTION(PH_OPTION_BOOL, "cookieSessionOnly", "false",                        \
                "no Max-Age/Expires: the browser forgets the cookie when it closes")

/* ---------------------------------------------------------------------- cookies
** The cookie attributes Seam's session and csrf plugins share: cookieDomain (""),
** cookiePath ("/"), cookieSecure, cookieHTTPOnly, cookieSessionOnly (false) and
** cookieSameSite ("Lax"; "None" needs cookieSecure). */
typedef struct phu_cookie {
  char *domain, *path;   /* owned: phu_cookie_free() */
  const char *same_site; /* static string */
  int secure, http_only, session_only;
} phu_cookie;

static inline void phu_cookie_free(phu_cookie *c) {
  free(c->domain);
  free(c->path);
  c->domain = c->path = NULL;
}

/* Reads the attributes from cfg; a config error naming the key when one is wrong. */
static inline ph_status phu_cookie_read(const ph_config *cfg, phu_cookie *c) {
  const char *domain, *path, *same_site;
  if (ph_config_string(cfg, "cookieDomain", "", &domain) != PH_OK) return PH_ERROR;
  if (!phu_valid_domain(domain))
    return ph_config_error(cfg, "cookieDomain", "'%s' is not a domain name like \"example.com\"",
                           domain);
  if (ph_config_string(cfg, "cookiePath", "/", &path) != PH_OK) return PH_ERROR;
  if (*path == '\0' || !phu_valid_cookie_attr(path))
    return ph_config_error(cfg, "cookiePath",
                           "must be a path like \"/\" without spaces, ';' or control "
                           "characters");
  c->domain = phu_strdup(domain);
  c->path = phu_strdup(path);
  if (c->domain == NULL || c->path == NULL) return ph_config_error(cfg, NULL, "out of memory");
  if (ph_config_bool(cfg, "cookieSecure", 0, &c->secure) != PH_OK) return PH_ERROR;
  if (ph_config_bool(cfg, "cookieHTTPOnly", 0, &c->http_only) != PH_OK) return PH_ERROR;
  if (ph_config_bool(cfg, "cookieSessionOnly", 0, &c->session_only) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "cookieSameSite", "Lax", &same_site) != PH_OK) return PH_ERROR;
  if (phu_ieq(same_site, "Strict")) {
    c->same_site = "Strict";
  } else if (phu_ieq(same_site, "Lax")) {
    c->same_site = "Lax";
  } else if (phu_ieq(same_site, "None")) {
    if (!c->secure)
      return ph_config_error(cfg, "cookieSameSite",
                             "\"None\" needs cookieSecure: true (browsers reject the cookie "
                             "otherwise)");
    c->same_site = "None";
  } else {
    return ph_config_error(cfg, "cookieSameSite",
                           "must be \"Strict\", \"Lax\" or \"None\", not '%s'", same_site);
  }
  return PH_OK;
}

/* Adds "Set-Cookie: name=value" with c's attributes and, unless session_only, Max-Age and
** Expires max_age_ms from now (at least one second). `who` prefixes the out-of-memory error. */
static inline ph_status phu_cookie_set(ph_exchange *ex, const phu_cookie *c, const char *name,
                                       const char *value, int64_t max_age_ms, const char *who) {
  char expires[128] = "";
  if (!c->session_only) {
    int64_t secs = max_age_ms / 1000;
    if (secs < 1) secs = 1;
    time_t at = time(NULL) + (time_t)secs;
    struct tm tm;
    char date[40];
    if (gmtime_r(&at, &tm) != NULL &&
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0)
      snprintf(expires, sizeof expires, "; Max-Age=%" PRId64 "; Expires=%s", secs, date);
    else
      snprintf(expires, sizeof expires, "; Max-Age=%" PRId64, secs);
  }
  size_t cap = strlen(name) + strlen(value) + strlen(c->domain) + strlen(c->path) + 200;
  char *cookie = malloc(cap);
  if (cookie == NULL) {
    ph_error(ex, "%s: out of memory", who);
    return PH_ERROR;
  }
  snprintf(cookie, cap, "%s=%s%s%s%s; Path=%s%s%s; SameSite=%s", name, value, expires,
           *c->domain ? "; Domain=" : "", c->domain, c->path, c->secure ? "; Secure" : "",
           c->http_only ? "; HttpOnly" : "", c->same_site);
  ph_status st = ph_resp_header_add(ex, "Set-Cookie", cookie);
  free(cookie);
  return st;
}

#endif
