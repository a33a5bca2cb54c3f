/*
** session: server-side sessions in a shared storage, like Seam's session plugin.
**
** Middleware plugins.session.middlewares.LoadSessionMiddleware
**   storage                string, required           name of a storage in storages.yaml that
**                                                     keeps the sessions (Seam falls back to
**                                                     process memory; here name one, e.g. a
**                                                     MemoryStorage or a shared ValkeyStorage)
**   keyLookup              string, default            where the session id travels:
**                          "cookie:session_id"        "cookie:<name>" or "header:<Name>"
**   cookieDomain           string, default ""         Domain attribute (omitted when empty)
**   cookiePath             string, default "/"        Path attribute
**   cookieSecure           bool, default false        Secure attribute
**   cookieHTTPOnly         bool, default false        HttpOnly attribute
**   cookieSameSite         string, default "Lax"      "Strict", "Lax" or "None" (None needs
**                                                     cookieSecure: true)
**   cookieSessionOnly      bool, default false        no Max-Age/Expires: the cookie ends with
**                                                     the browser session
**   cookieExpiration       duration, default 2h       session lifetime: the storage TTL and
**                                                     the cookie's Max-Age
**   disableAutoRenew       bool, default false        true: the TTL is not refreshed on use
**   autoRenewAfter         duration, default 30m      accepted and validated for Seam
**                                                     compatibility; id rotation is not done
**   disableSessionForward  bool, default false        true: session data is not put into the
**                                                     locals (only the id is)
**
** Request phase: reads the id (32 lowercase hex characters, 128 bits) from the cookie or
** header. It loads "session:<id>" from the storage; the value is the session data as a
** URL-encoded map ("key=value&key2=value2", percent-escapes and '+' for space, as in an HTML
** form). Every entry goes into the locals as "session.<key>" (value bytes as decoded); the
** id goes into the local "sessionId". An absent, malformed or unknown id gets a new session
** (a fresh random id from getrandom, never the client's value: no session fixation), stored
** at once with empty data. A known session gets its TTL refreshed (a set of the same value)
** unless disableAutoRenew. Response phase: with a cookie lookup, Set-Cookie carries the id
** (on a new session, and on every renewal so the browser's expiry slides too); with a header
** lookup, the response header <Name> carries it. A storage failure answers 503.
**
** Middleware plugins.session.middlewares.MapSessionToHeaderMiddleware
**   headers  map, required   {Header-Name: session_key}: sets request header Header-Name to the
**                            local "session.<session_key>" (for the upstream). When the session
**                            has no such key (or its value cannot be a header value), the
**                            header is removed, so a client cannot supply it itself.
**
** No state changes after create: both thread-safe. LoadSession calls a storage that may block
** (Valkey): PH_TYPE_MAY_BLOCK.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define SES_ID_BYTES 16
#define SES_ID_HEX (2 * SES_ID_BYTES)
#define SES_DEFAULT_EXPIRATION_MS (2 * 3600 * 1000)
#define SES_DEFAULT_RENEW_AFTER_MS (30 * 60 * 1000)
#define SES_KEY_PREFIX "session:"
#define SES_LOCAL_PREFIX "session."
#define SES_LOCAL_ID "sessionId"

typedef struct ses_load {
  ph_storage *storage;
  char *cookie_name; /* exactly one of cookie_name / header_name is set */
  char *header_name;
  char *domain;
  char *path;
  const char *same_site; /* static */
  int secure, http_only, session_only, no_renew, no_forward;
  int64_t expiration_ms, renew_after_ms;
  char local_key[64]; /* per-instance local: the id to send back in the response phase */
} ses_load;

typedef struct ses_map_entry {
  char *header;
  char *local; /* "session.<key>" */
} ses_map_entry;

typedef struct ses_map {
  size_t n;
  ses_map_entry *entries;
} ses_map;

/* ------------------------------------------------------------------------- helpers */

static int ses_valid_id(const char *s, size_t len) {
  if (len != SES_ID_HEX) return 0;
  for (size_t i = 0; i < len; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}


static int ses_new_id(char out[SES_ID_HEX + 1]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t b[SES_ID_BYTES];
  int err = phu_random(b, sizeof b);
  if (err != 0) return err;
  for (size_t i = 0; i < sizeof b; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 0x0f];
  }
  out[SES_ID_HEX] = '\0';
  memset(b, 0, sizeof b);
  return 0;
}

static int ses_hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes (and '+' -> ' ') `len` bytes into out (at least len bytes). Returns the
** decoded length, or -1 for a malformed escape. */
static long ses_url_decode(const char *in, size_t len, char *out) {
  size_t j = 0;
  for (size_t i = 0; i < len; i++) {
    if (in[i] == '+') {
      out[j++] = ' ';
    } else if (in[i] == '%') {
      if (i + 2 >= len) return -1;
      int hi = ses_hexval((unsigned char)in[i + 1]), lo = ses_hexval((unsigned char)in[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      out[j++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[j++] = in[i];
    }
  }
  return (long)j;
}

/* ---------------------------------------------------------------- LoadSessionMiddleware */

static void ses_load_destroy(void *self) {
  ses_load *m = self;
  if (m == NULL) return;
  free(m->cookie_name);
  free(m->header_name);
  free(m->domain);
  free(m->path);
  free(m);
}

static ph_status ses_positive_duration(const ph_config *cfg, const char *key, int64_t dflt,
                                       int64_t *out) {
  if (ph_config_kind(cfg, key) == PH_CONFIG_INT) {
    int64_t secs;
    if (ph_config_int(cfg, key, 0, &secs) != PH_OK) return PH_ERROR;
    if (secs <= 0)
      return ph_config_error(cfg, key, "must be a positive duration like \"2h\", not %" PRId64,
                             secs);
  }
  if (ph_config_duration_ms(cfg, key, dflt, out) != PH_OK) return PH_ERROR;
  if (*out <= 0)
    return ph_config_error(cfg, key, "must be a positive duration like \"2h\" or \"30m\"");
  return PH_OK;
}

static ph_status ses_load_create(const ph_config *cfg, void **self) {
  ses_load *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;
  const char *storage, *lookup, *domain, *path, *same_site;
  if (ph_config_string(cfg, "storage", NULL, &storage) != PH_OK) return PH_ERROR;
  if (storage == NULL || *storage == '\0')
    return ph_config_error(cfg, "storage",
                           "is required: name a storage of storages.yaml that keeps the "
                           "sessions, like a MemoryStorage or a ValkeyStorage shared by every "
                           "gateway");

  if (ph_config_string(cfg, "keyLookup", "cookie:session_id", &lookup) != PH_OK)
    return PH_ERROR;
  if (strncmp(lookup, "cookie:", 7) == 0) {
    if (!phu_valid_token(lookup + 7))
      return ph_config_error(cfg, "keyLookup",
                             "'%s' has no valid cookie name after \"cookie:\", like "
                             "\"cookie:session_id\"", lookup);
    m->cookie_name = phu_strdup(lookup + 7);
    if (m->cookie_name == NULL) return ph_config_error(cfg, NULL, "out of memory");
  } else if (strncmp(lookup, "header:", 7) == 0) {
    if (!phu_valid_token(lookup + 7))
      return ph_config_error(cfg, "keyLookup",
                             "'%s' has no valid header name after \"header:\", like "
                             "\"header:X-Session-Id\"", lookup);
    m->header_name = phu_strdup(lookup + 7);
    if (m->header_name == NULL) return ph_config_error(cfg, NULL, "out of memory");
  } else {
    return ph_config_error(cfg, "keyLookup",
                           "must be \"cookie:<name>\" or \"header:<Name>\", not '%s'", lookup);
  }

  if (ph_config_string(cfg, "cookieDomain", "", &domain) != PH_OK) return PH_ERROR;
  if (!phu_valid_domain(domain))
    return ph_config_error(cfg, "cookieDomain",
                           "'%s' is not a domain name like \"example.com\"", domain);
  if (ph_config_string(cfg, "cookiePath", "/", &path) != PH_OK) return PH_ERROR;
  if (*path == '\0' || !phu_valid_cookie_attr(path))
    return ph_config_error(cfg, "cookiePath",
                           "must be a path like \"/\" without spaces, ';' or control "
                           "characters");
  m->domain = phu_strdup(domain);
  m->path = phu_strdup(path);
  if (m->domain == NULL || m->path == NULL) return ph_config_error(cfg, NULL, "out of memory");

  if (ph_config_bool(cfg, "cookieSecure", 0, &m->secure) != PH_OK) return PH_ERROR;
  if (ph_config_bool(cfg, "cookieHTTPOnly", 0, &m->http_only) != PH_OK) return PH_ERROR;
  if (ph_config_bool(cfg, "cookieSessionOnly", 0, &m->session_only) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "cookieSameSite", "Lax", &same_site) != PH_OK) return PH_ERROR;
  if (strcasecmp(same_site, "Strict") == 0) {
    m->same_site = "Strict";
  } else if (strcasecmp(same_site, "Lax") == 0) {
    m->same_site = "Lax";
  } else if (strcasecmp(same_site, "None") == 0) {
    if (!m->secure)
      return ph_config_error(cfg, "cookieSameSite",
                             "\"None\" needs cookieSecure: true (browsers reject the cookie "
                             "otherwise)");
    m->same_site = "None";
  } else {
    return ph_config_error(cfg, "cookieSameSite",
                           "must be \"Strict\", \"Lax\" or \"None\", not '%s'", same_site);
  }
  if (ses_positive_duration(cfg, "cookieExpiration", SES_DEFAULT_EXPIRATION_MS,
                            &m->expiration_ms) != PH_OK)
    return PH_ERROR;
  if (ph_config_bool(cfg, "disableAutoRenew", 0, &m->no_renew) != PH_OK) return PH_ERROR;
  if (ses_positive_duration(cfg, "autoRenewAfter", SES_DEFAULT_RENEW_AFTER_MS,
                            &m->renew_after_ms) != PH_OK)
    return PH_ERROR;
  if (ph_config_bool(cfg, "disableSessionForward", 0, &m->no_forward) != PH_OK)
    return PH_ERROR;
  snprintf(m->local_key, sizeof m->local_key, "session-mw.%p", (void *)m);
  m->storage = ph_storage_lookup(cfg, "storage", storage);
  if (m->storage == NULL) return PH_ERROR;
  return PH_OK;
}

/* The id the client sent in cookie <name> (any Cookie header), or NULL. *len gets its length. */
static const char *ses_cookie_value(const ses_load *m, const ph_exchange *ex, size_t *len) {
  size_t nlen = strlen(m->cookie_name);
  size_t count = PH_API(ex)->header_count(ex, PH_REQUEST);
  for (size_t i = 0; i < count; i++) {
    const char *name, *value;
    if (PH_API(ex)->header_at(ex, PH_REQUEST, i, &name, &value) != PH_OK) break;
    if (strcasecmp(name, "Cookie") != 0) continue;
    const char *p = value;
    while (*p != '\0') {
      while (*p == ' ' || *p == '\t' || *p == ';') p++;
      const char *start = p;
      while (*p != '\0' && *p != ';') p++;
      const char *end = p;
      while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
      const char *eq = memchr(start, '=', (size_t)(end - start));
      if (eq != NULL && (size_t)(eq - start) == nlen && memcmp(start, m->cookie_name, nlen) == 0) {
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
  }
  return NULL;
}

static ph_next ses_storage_failed(ph_exchange *ex) {
  ph_log(ex, PH_LOG_ERROR, "session: the session storage failed, answering 503");
  static const char body[] = "{\"error\":\"session storage unavailable\",\"status\":503}";
  ph_status_set(ex, 503);
  ph_resp_header_set(ex, "Content-Type", "application/json");
  ph_resp_body_set(ex, body, sizeof body - 1);
  return PH_NEXT_RESPOND;
}

/* Puts every entry of the URL-encoded map `data` into the locals as "session.<key>". Malformed
** entries are skipped with a warning. Returns PH_ERROR only when out of memory / locals fail. */
static ph_status ses_forward(ph_exchange *ex, const uint8_t *data, size_t len) {
  size_t plen = sizeof SES_LOCAL_PREFIX - 1;
  char *buf = malloc(len + plen + 1);
  if (buf == NULL) {
    ph_error(ex, "session: out of memory");
    return PH_ERROR;
  }
  const char *p = (const char *)data, *end = p + len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp != NULL ? amp : end;
    if (stop > p) {
      const char *eq = memchr(p, '=', (size_t)(stop - p));
      const char *kend = eq != NULL ? eq : stop;
      memcpy(buf, SES_LOCAL_PREFIX, plen);
      long kl = ses_url_decode(p, (size_t)(kend - p), buf + plen);
      if (kl <= 0 || memchr(buf + plen, '\0', (size_t)kl) != NULL) {
        ph_log(ex, PH_LOG_WARNING, "session: skipped a malformed entry of the session data");
      } else {
        buf[plen + (size_t)kl] = '\0';
        /* the value decodes into a buffer of its own: the key must stay intact */
        size_t vin = eq != NULL ? (size_t)(stop - eq - 1) : 0;
        char *val = malloc(vin + 1);
        if (val == NULL) {
          free(buf);
          ph_error(ex, "session: out of memory");
          return PH_ERROR;
        }
        long vl = eq != NULL ? ses_url_decode(eq + 1, vin, val) : 0;
        if (vl < 0) {
          ph_log(ex, PH_LOG_WARNING, "session: skipped a malformed entry of the session data");
        } else if (ph_local_set(ex, buf, val, (size_t)vl) != PH_OK) {
          free(val);
          free(buf);
          return PH_ERROR;
        }
        free(val);
      }
    }
    p = stop + 1;
  }
  free(buf);
  return PH_OK;
}

static ph_next ses_load_on_request(void *self, ph_exchange *ex) {
  const ses_load *m = self;
  const char *sent = NULL;
  size_t sent_len = 0;
  if (m->cookie_name != NULL) {
    sent = ses_cookie_value(m, ex, &sent_len);
  } else {
    sent = ph_header_get(ex, m->header_name);
    if (sent != NULL) sent_len = strlen(sent);
  }

  char key[sizeof SES_KEY_PREFIX + SES_ID_HEX];
  char id[SES_ID_HEX + 1];
  int send_id = 0;
  if (sent != NULL && ses_valid_id(sent, sent_len)) {
    memcpy(id, sent, SES_ID_HEX);
    id[SES_ID_HEX] = '\0';
    snprintf(key, sizeof key, SES_KEY_PREFIX "%s", id);
    uint8_t *value = NULL;
    size_t value_len = 0;
    ph_status st = ph_storage_get(m->storage, ex, (const uint8_t *)key, strlen(key), &value,
                                  &value_len);
    if (st == PH_ERROR) return ses_storage_failed(ex);
    if (st == PH_OK) {
      if (!m->no_renew) {
        /* refresh the TTL (a set of the same value: the host has no "expire") */
        if (ph_storage_set(m->storage, ex, (const uint8_t *)key, strlen(key),
                           value != NULL ? value : (const uint8_t *)"", value_len,
                           m->expiration_ms) != PH_OK) {
          ph_free_value(m->storage, value);
          return ses_storage_failed(ex);
        }
        send_id = m->cookie_name != NULL; /* slide the cookie's expiry too */
      }
      ph_status fw = PH_OK;
      if (!m->no_forward && value_len > 0) fw = ses_forward(ex, value, value_len);
      ph_free_value(m->storage, value);
      if (fw != PH_OK) return PH_NEXT_ERROR;
      if (ph_local_set(ex, SES_LOCAL_ID, id, SES_ID_HEX) != PH_OK) return PH_NEXT_ERROR;
      if (send_id && ph_local_set(ex, m->local_key, id, SES_ID_HEX) != PH_OK)
        return PH_NEXT_ERROR;
      return PH_NEXT_CONTINUE;
    }
    /* PH_NOT_FOUND: unknown or expired id, a new session follows */
  }

  int err = ses_new_id(id);
  if (err != 0) {
    ph_error(ex, "session: the kernel's random generator failed: %s", strerror(err));
    return PH_NEXT_ERROR;
  }
  snprintf(key, sizeof key, SES_KEY_PREFIX "%s", id);
  if (ph_storage_set(m->storage, ex, (const uint8_t *)key, strlen(key), (const uint8_t *)"", 0,
                     m->expiration_ms) != PH_OK)
    return ses_storage_failed(ex);
  if (ph_local_set(ex, SES_LOCAL_ID, id, SES_ID_HEX) != PH_OK) return PH_NEXT_ERROR;
  if (ph_local_set(ex, m->local_key, id, SES_ID_HEX) != PH_OK) return PH_NEXT_ERROR;
  return PH_NEXT_CONTINUE;
}

static ph_status ses_load_on_response(void *self, ph_exchange *ex) {
  const ses_load *m = self;
  size_t len = 0;
  const uint8_t *raw = ph_local_get(ex, m->local_key, &len);
  if (raw == NULL || !ses_valid_id((const char *)raw, len)) return PH_OK;
  char id[SES_ID_HEX + 1];
  memcpy(id, raw, SES_ID_HEX);
  id[SES_ID_HEX] = '\0';
  if (m->header_name != NULL) return ph_resp_header_set(ex, m->header_name, id);

  char expires[128] = "";
  if (!m->session_only) {
    int64_t secs = m->expiration_ms / 1000;
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
  size_t cap = strlen(m->cookie_name) + strlen(m->domain) + strlen(m->path) + 200;
  char *cookie = malloc(cap);
  if (cookie == NULL) {
    ph_error(ex, "session: out of memory");
    return PH_ERROR;
  }
  snprintf(cookie, cap, "%s=%s%s%s%s; Path=%s%s%s; SameSite=%s", m->cookie_name, id, expires,
           *m->domain ? "; Domain=" : "", m->domain, m->path, m->secure ? "; Secure" : "",
           m->http_only ? "; HttpOnly" : "", m->same_site);
  ph_status st = ph_resp_header_add(ex, "Set-Cookie", cookie);
  free(cookie);
  return st;
}

/* ---------------------------------------------------------- MapSessionToHeaderMiddleware */

static void ses_map_destroy(void *self) {
  ses_map *m = self;
  if (m == NULL) return;
  for (size_t i = 0; i < m->n; i++) {
    free(m->entries[i].header);
    free(m->entries[i].local);
  }
  free(m->entries);
  free(m);
}

static ph_status ses_map_create(const ph_config *cfg, void **self) {
  ses_map *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;
  const ph_config *headers;
  if (ph_config_child(cfg, "headers", &headers) != PH_OK) return PH_ERROR;
  if (headers == NULL || ph_config_kind(headers, NULL) != PH_CONFIG_MAP ||
      ph_config_len(headers) == 0)
    return ph_config_error(cfg, "headers",
                           "is required: a map of request header names to session keys, like "
                           "{X-User-Id: user_id}");
  size_t n = ph_config_len(headers);
  m->entries = calloc(n, sizeof *m->entries);
  if (m->entries == NULL) return ph_config_error(cfg, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const char *name = NULL, *skey;
    if (ph_config_at(headers, i, &name) == NULL || name == NULL) continue;
    if (!phu_valid_token(name))
      return ph_config_error(headers, name, "'%s' is not a valid header name", name);
    if (ph_config_kind(headers, name) != PH_CONFIG_STRING)
      return ph_config_error(headers, name,
                             "must be the name of a session key (a string), like user_id");
    if (ph_config_string(headers, name, "", &skey) != PH_OK) return PH_ERROR;
    if (*skey == '\0')
      return ph_config_error(headers, name, "must name a session key, like user_id");
    size_t cap = sizeof SES_LOCAL_PREFIX + strlen(skey);
    m->entries[m->n].header = phu_strdup(name);
    m->entries[m->n].local = malloc(cap);
    if (m->entries[m->n].local != NULL)
      snprintf(m->entries[m->n].local, cap, SES_LOCAL_PREFIX "%s", skey);
    m->n++;
    if (m->entries[m->n - 1].header == NULL || m->entries[m->n - 1].local == NULL)
      return ph_config_error(cfg, NULL, "out of memory");
  }
  return PH_OK;
}

/* A header value: no control characters but tab, no leading/trailing whitespace issues. */
static int ses_header_safe(const uint8_t *v, size_t len) {
  for (size_t i = 0; i < len; i++)
    if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f) return 0;
  return 1;
}

static ph_next ses_map_on_request(void *self, ph_exchange *ex) {
  const ses_map *m = self;
  for (size_t i = 0; i < m->n; i++) {
    size_t len = 0;
    const uint8_t *v = ph_local_get(ex, m->entries[i].local, &len);
    if (v == NULL || !ses_header_safe(v, len)) {
      if (v != NULL)
        ph_log(ex, PH_LOG_WARNING, "session: %s not forwarded in %s: control characters",
               m->entries[i].local, m->entries[i].header);
      ph_header_remove(ex, m->entries[i].header);
      continue;
    }
    char *value = malloc(len + 1);
    if (value == NULL) {
      ph_error(ex, "session: out of memory");
      return PH_NEXT_ERROR;
    }
    memcpy(value, v, len);
    value[len] = '\0';
    ph_status st = ph_header_set(ex, m->entries[i].header, value);
    free(value);
    if (st != PH_OK) return PH_NEXT_ERROR;
  }
  return PH_NEXT_CONTINUE;
}

/* ------------------------------------------------------------------------- the entry */

static const ph_middleware_type load_session_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_MAY_BLOCK,
    .id = "plugins.session.middlewares.LoadSessionMiddleware",
    .description = "Loads the session named by a cookie or header from a storage into locals",
    .create = ses_load_create,
    .destroy = ses_load_destroy,
    .on_request = ses_load_on_request,
    .on_response = ses_load_on_response,
};

static const ph_middleware_type map_session_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.session.middlewares.MapSessionToHeaderMiddleware",
    .description = "Copies session values from the locals into request headers",
    .create = ses_map_create,
    .destroy = ses_map_destroy,
    .on_request = ses_map_on_request,
    .on_response = NULL,
};

static const ph_middleware_type *const session_middlewares[] = {&load_session_middleware,
                                                                &map_session_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "session", .version = "1.0.0",
                 .description = "Server-side sessions in a storage (Seam's session plugin)",
                 .middlewares = session_middlewares);
