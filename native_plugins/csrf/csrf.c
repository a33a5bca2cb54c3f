/*
** csrf: Cross-Site Request Forgery protection with tokens in a shared storage, like Seam's
** csrf plugin (double-submit cookie checked against the storage).
**
** Middleware plugins.csrf.middlewares.CSRFMiddleware
**   storage            string, required               name of a storage in storages.yaml that
**                                                     keeps the tokens (a MemoryStorage, or a
**                                                     ValkeyStorage shared by every gateway)
**   keyLookup          string, default                where an unsafe request carries the
**                      "header:X-Csrf-Token"          token besides the cookie:
**                                                     "header:<Name>", "query:<name>" or
**                                                     "cookie:<name>" (not cookieName itself);
**                                                     a header is required single (twice:
**                                                     400)
**   cookieName         string, default "csrf_token"   cookie that carries the token
**   cookieDomain       string, default ""             Domain attribute (omitted when empty)
**   cookiePath         string, default "/"            Path attribute
**   cookieSecure       bool, default false            Secure attribute
**   cookieHTTPOnly     bool, default false            HttpOnly attribute
**   cookieSameSite     string, default "Lax"          "Strict", "Lax" or "None" (None needs
**                                                     cookieSecure: true)
**   cookieSessionOnly  bool, default false            no Max-Age/Expires on the cookie
**   cookieExpiration   duration, default 0            token lifetime: the storage TTL and the
**                                                     cookie's Max-Age; 0 means 1h (the
**                                                     default of the Fiber csrf middleware
**                                                     Seam configures)
**   singleUseToken     bool, default false            true: a token is deleted once an unsafe
**                                                     request used it; a new one is issued
**   maxTokensPerClient int, default 1000              most tokens issued to one client address
**                                                     per cookieExpiration; 0: no limit.
**                                                     plughost's own option, Seam has none
**
** Request phase. Safe methods (GET, HEAD, OPTIONS, TRACE) always pass: a valid token from the
** cookie that is still in the storage is kept (its TTL refreshed), otherwise a new token (16
** bytes from the kernel's CSPRNG, 32 lowercase hex characters) is stored as "csrf:<token>"
** with the TTL cookieExpiration. Unsafe methods need the token both in the cookie and at
** keyLookup, equal (compared in constant time) and present in the storage; otherwise the
** answer is 403 with a JSON body. On success the TTL is refreshed, or with singleUseToken the
** token is deleted and a new one issued. Response phase: Set-Cookie carries the token kept or
** issued (not after a 403). A storage failure answers 503.
**
** Storage use by anonymous clients is bounded: every token expires after cookieExpiration,
** and tokens issued to safe requests without a usable cookie are counted per client address
** ("csrf:c:<address>", one atomic incr beside the token's set, expiring after
** cookieExpiration). A client over maxTokensPerClient gets its safe request through without a
** new token (nothing stored, a warning logged); its unsafe requests then fail as without a
** token, until the window ends. So a flood of cookieless requests from one address stores at
** most maxTokensPerClient + 1 entries per window, and clients holding a token are unaffected.
**
** No state changes after create: thread-safe. The storage may block (Valkey):
** PH_TYPE_MAY_BLOCK.
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

#define CSRF_TOKEN_BYTES 16
#define CSRF_TOKEN_HEX (2 * CSRF_TOKEN_BYTES)
#define CSRF_DEFAULT_EXPIRATION_MS (3600 * 1000)
#define CSRF_KEY_PREFIX "csrf:"
#define CSRF_COUNT_PREFIX "csrf:c:" /* + client address: tokens issued to it this window */
#define CSRF_DEFAULT_MAX_PER_CLIENT 1000
#define CSRF_MAX_ADDRESS 100 /* longer client addresses are counted by their first bytes */

enum csrf_source { CSRF_FROM_HEADER, CSRF_FROM_QUERY, CSRF_FROM_COOKIE };

typedef struct csrf_mw {
  ph_storage *storage;
  enum csrf_source source;
  char *lookup_name; /* header, query parameter or cookie name of keyLookup */
  char *cookie_name;
  phu_cookie cookie;     /* the cookie's attributes */
  int single_use;
  int64_t expiration_ms;
  int64_t max_per_client; /* 0: no limit */
} csrf_mw;

/* ------------------------------------------------------------------------- helpers */

static int csrf_valid_token(const char *s, size_t len) {
  if (s == NULL || len != CSRF_TOKEN_HEX) return 0;
  for (size_t i = 0; i < len; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

/* Constant-time comparison of two CSRF_TOKEN_HEX-byte tokens: the time taken does not depend
** on where they differ. */
static int csrf_tokens_equal(const char *a, const char *b) {
  volatile unsigned char diff = 0;
  for (size_t i = 0; i < CSRF_TOKEN_HEX; i++) diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}

static int csrf_new_token(char out[CSRF_TOKEN_HEX + 1]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t b[CSRF_TOKEN_BYTES];
  int err = phu_random(b, sizeof b);
  if (err != 0) return err;
  for (size_t i = 0; i < sizeof b; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 0x0f];
  }
  out[CSRF_TOKEN_HEX] = '\0';
  memset(b, 0, sizeof b);
  return 0;
}

static int csrf_safe_method(const char *method) {
  return method != NULL && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
                            strcmp(method, "OPTIONS") == 0 || strcmp(method, "TRACE") == 0);
}

/* ------------------------------------------------------------------------- create/destroy */

static void csrf_destroy(void *self) {
  csrf_mw *m = self;
  if (m == NULL) return;
  free(m->lookup_name);
  free(m->cookie_name);
  phu_cookie_free(&m->cookie);
  free(m);
}

static ph_status csrf_create(const ph_config *cfg, void **self) {
  csrf_mw *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;
  const char *storage, *lookup, *cookie_name;
  if (ph_config_string(cfg, "storage", NULL, &storage) != PH_OK) return PH_ERROR;
  if (storage == NULL || *storage == '\0')
    return ph_config_error(cfg, "storage",
                           "is required: name a storage of storages.yaml that keeps the CSRF "
                           "tokens, like a MemoryStorage or a ValkeyStorage shared by every "
                           "gateway");

  if (ph_config_string(cfg, "cookieName", "csrf_token", &cookie_name) != PH_OK) return PH_ERROR;
  if (!phu_valid_token(cookie_name))
    return ph_config_error(cfg, "cookieName", "'%s' is not a valid cookie name", cookie_name);
  m->cookie_name = phu_strdup(cookie_name);
  if (m->cookie_name == NULL) return ph_config_error(cfg, NULL, "out of memory");

  if (ph_config_string(cfg, "keyLookup", "header:X-Csrf-Token", &lookup) != PH_OK) return PH_ERROR;
  const char *name;
  if (strncmp(lookup, "header:", 7) == 0) {
    m->source = CSRF_FROM_HEADER;
    name = lookup + 7;
  } else if (strncmp(lookup, "query:", 6) == 0) {
    m->source = CSRF_FROM_QUERY;
    name = lookup + 6;
  } else if (strncmp(lookup, "cookie:", 7) == 0) {
    m->source = CSRF_FROM_COOKIE;
    name = lookup + 7;
  } else {
    return ph_config_error(cfg, "keyLookup",
                           "must be \"header:<Name>\", \"query:<name>\" or \"cookie:<name>\", "
                           "not '%s'",
                           lookup);
  }
  if (!phu_valid_token(name))
    return ph_config_error(cfg, "keyLookup",
                           "'%s' has no valid name after the colon, like "
                           "\"header:X-Csrf-Token\"",
                           lookup);
  if (m->source == CSRF_FROM_COOKIE && strcmp(name, m->cookie_name) == 0)
    return ph_config_error(cfg, "keyLookup",
                           "'%s' names the cookieName cookie itself: the token must come a "
                           "second way (a header like \"header:X-Csrf-Token\")",
                           lookup);
  m->lookup_name = phu_strdup(name);
  if (m->lookup_name == NULL) return ph_config_error(cfg, NULL, "out of memory");
  if (m->source == CSRF_FROM_HEADER && ph_require_single_header(cfg, name) != PH_OK)
    return PH_ERROR;

  if (phu_cookie_read(cfg, &m->cookie) != PH_OK) return PH_ERROR;

  if (ph_config_kind(cfg, "cookieExpiration") == PH_CONFIG_INT) {
    int64_t secs;
    if (ph_config_int(cfg, "cookieExpiration", 0, &secs) != PH_OK) return PH_ERROR;
    if (secs < 0)
      return ph_config_error(cfg, "cookieExpiration",
                             "must be a duration like \"1h\" (0: the default 1h), not %" PRId64,
                             secs);
  }
  if (ph_config_duration_ms(cfg, "cookieExpiration", 0, &m->expiration_ms) != PH_OK)
    return PH_ERROR;
  if (m->expiration_ms < 0)
    return ph_config_error(cfg, "cookieExpiration",
                           "must be a duration like \"1h\" or \"30m\" (0: the default 1h)");
  if (m->expiration_ms == 0) m->expiration_ms = CSRF_DEFAULT_EXPIRATION_MS;

  if (ph_config_bool(cfg, "singleUseToken", 0, &m->single_use) != PH_OK) return PH_ERROR;
  if (ph_config_int(cfg, "maxTokensPerClient", CSRF_DEFAULT_MAX_PER_CLIENT, &m->max_per_client) !=
      PH_OK)
    return PH_ERROR;
  if (m->max_per_client < 0)
    return ph_config_error(cfg, "maxTokensPerClient",
                           "must be a number of tokens (0: no limit), not %" PRId64,
                           m->max_per_client);
  m->storage = ph_storage_lookup(cfg, "storage", storage);
  if (m->storage == NULL) return PH_ERROR;
  return PH_OK;
}

/* ------------------------------------------------------------------------- request phase */

/* The raw value of query parameter <name> (first occurrence), or NULL. */
static const char *csrf_query_value(const ph_exchange *ex, const char *qname, size_t *len) {
  const char *q = ph_query(ex);
  if (q == NULL) return NULL;
  size_t nlen = strlen(qname);
  const char *p = q;
  while (*p != '\0') {
    const char *amp = strchr(p, '&');
    const char *stop = amp != NULL ? amp : p + strlen(p);
    const char *eq = memchr(p, '=', (size_t)(stop - p));
    if (eq != NULL && (size_t)(eq - p) == nlen && memcmp(p, qname, nlen) == 0) {
      *len = (size_t)(stop - eq - 1);
      return eq + 1;
    }
    if (amp == NULL) break;
    p = amp + 1;
  }
  return NULL;
}

static ph_next csrf_forbidden(ph_exchange *ex, const char *why) {
  ph_log(ex, PH_LOG_INFO, "csrf: request refused: %s", why);
  return phu_refuse(ex, 403, "forbidden: missing or invalid CSRF token");
}

static ph_next csrf_storage_failed(ph_exchange *ex) {
  ph_log(ex, PH_LOG_ERROR, "csrf: the token storage failed, answering 503");
  return phu_refuse(ex, 503, "csrf token storage unavailable");
}

static void csrf_key(char key[sizeof CSRF_KEY_PREFIX + CSRF_TOKEN_HEX], const char *token) {
  memcpy(key, CSRF_KEY_PREFIX, sizeof CSRF_KEY_PREFIX - 1);
  memcpy(key + sizeof CSRF_KEY_PREFIX - 1, token, CSRF_TOKEN_HEX);
  key[sizeof CSRF_KEY_PREFIX - 1 + CSRF_TOKEN_HEX] = '\0';
}

#define CSRF_KEY_LEN (sizeof CSRF_KEY_PREFIX - 1 + CSRF_TOKEN_HEX)

/* Stores (or refreshes) "csrf:<token>" and marks the token for the response's cookie. */
static ph_next csrf_keep(const csrf_mw *m, ph_exchange *ex, const char *token) {
  char key[sizeof CSRF_KEY_PREFIX + CSRF_TOKEN_HEX];
  csrf_key(key, token);
  if (ph_storage_set(m->storage, ex, (const uint8_t *)key, CSRF_KEY_LEN, (const uint8_t *)"1", 1,
                     m->expiration_ms) != PH_OK)
    return csrf_storage_failed(ex);
  if (phu_slot_keep_text(ex, token, CSRF_TOKEN_HEX) != PH_OK) return PH_NEXT_ERROR;
  return PH_NEXT_CONTINUE;
}

static ph_next csrf_issue(const csrf_mw *m, ph_exchange *ex) {
  char token[CSRF_TOKEN_HEX + 1];
  int err = csrf_new_token(token);
  if (err != 0) {
    ph_error(ex, "csrf: the kernel's random generator failed: %s", strerror(err));
    return PH_NEXT_ERROR;
  }
  return csrf_keep(m, ex, token);
}

/* Whether the client may be issued one more token this window (counts it when so). Sets
** *fail to the answer on a storage failure. */
static int csrf_client_may_have_one_more(const csrf_mw *m, ph_exchange *ex, ph_next *fail) {
  const char *client = ph_client_ip(ex);
  if (m->max_per_client == 0 || client == NULL || *client == '\0') return 1;
  char key[sizeof CSRF_COUNT_PREFIX + CSRF_MAX_ADDRESS];
  int n = snprintf(key, sizeof key, CSRF_COUNT_PREFIX "%.*s", CSRF_MAX_ADDRESS, client);
  int64_t count = 0, left = 0;
  if (ph_storage_incr(m->storage, ex, (const uint8_t *)key, (size_t)n, 1, m->expiration_ms, &count,
                      &left) != PH_OK) {
    *fail = csrf_storage_failed(ex);
    return 0;
  }
  if (count <= m->max_per_client) return 1;
  ph_log(ex, PH_LOG_WARNING,
         "csrf: %s was issued maxTokensPerClient (%" PRId64
         ") tokens within cookieExpiration; "
         "no new token until the window ends (raise maxTokensPerClient if many users share "
         "this address)",
         client, m->max_per_client);
  *fail = PH_NEXT_CONTINUE;
  return 0;
}

static ph_next csrf_on_request(void *self, ph_exchange *ex) {
  const csrf_mw *m = self;
  size_t clen = 0;
  const char *cookie = phu_request_cookie(ex, m->cookie_name, &clen);
  int cookie_ok = csrf_valid_token(cookie, clen);
  char key[sizeof CSRF_KEY_PREFIX + CSRF_TOKEN_HEX];

  if (csrf_safe_method(ph_method(ex))) {
    if (cookie_ok) {
      csrf_key(key, cookie);
      uint8_t *value = NULL;
      size_t value_len = 0;
      ph_status st =
          ph_storage_get(m->storage, ex, (const uint8_t *)key, CSRF_KEY_LEN, &value, &value_len);
      if (st == PH_ERROR) return csrf_storage_failed(ex);
      if (value != NULL) ph_free_value(m->storage, value);
      if (st == PH_OK) {
        char token[CSRF_TOKEN_HEX + 1];
        memcpy(token, cookie, CSRF_TOKEN_HEX);
        token[CSRF_TOKEN_HEX] = '\0';
        return csrf_keep(m, ex, token);
      }
    }
    ph_next over = PH_NEXT_CONTINUE;
    if (!csrf_client_may_have_one_more(m, ex, &over)) return over;
    return csrf_issue(m, ex);
  }

  if (!cookie_ok) return csrf_forbidden(ex, "no valid token cookie");
  size_t slen = 0;
  const char *sent = NULL;
  if (m->source == CSRF_FROM_HEADER) {
    sent = ph_header_get(ex, m->lookup_name);
    if (sent != NULL) slen = strlen(sent);
  } else if (m->source == CSRF_FROM_QUERY) {
    sent = csrf_query_value(ex, m->lookup_name, &slen);
  } else {
    sent = phu_request_cookie(ex, m->lookup_name, &slen);
  }
  if (!csrf_valid_token(sent, slen)) return csrf_forbidden(ex, "no valid token at keyLookup");
  if (!csrf_tokens_equal(cookie, sent))
    return csrf_forbidden(ex, "the token at keyLookup differs from the cookie's");

  csrf_key(key, cookie);
  if (m->single_use) {
    /* the delete decides: of two concurrent uses, only one finds the token */
    ph_status st = ph_storage_del(m->storage, ex, (const uint8_t *)key, CSRF_KEY_LEN);
    if (st == PH_ERROR) return csrf_storage_failed(ex);
    if (st == PH_NOT_FOUND) return csrf_forbidden(ex, "unknown, expired or used token");
    return csrf_issue(m, ex);
  }
  uint8_t *value = NULL;
  size_t value_len = 0;
  ph_status st =
      ph_storage_get(m->storage, ex, (const uint8_t *)key, CSRF_KEY_LEN, &value, &value_len);
  if (st == PH_ERROR) return csrf_storage_failed(ex);
  if (value != NULL) ph_free_value(m->storage, value);
  if (st != PH_OK) return csrf_forbidden(ex, "unknown or expired token");
  char token[CSRF_TOKEN_HEX + 1];
  memcpy(token, cookie, CSRF_TOKEN_HEX);
  token[CSRF_TOKEN_HEX] = '\0';
  return csrf_keep(m, ex, token);
}

/* ------------------------------------------------------------------------- response phase */

static ph_status csrf_on_response(void *self, ph_exchange *ex) {
  const csrf_mw *m = self;
  const char *token = ph_slot_get(ex); /* the token to send back, when there is one */
  if (token == NULL) return PH_OK;

  return phu_cookie_set(ex, &m->cookie, m->cookie_name, token, m->expiration_ms, "csrf");
}

/* ------------------------------------------------------------------------- the schema */

/* The options of a CSRFMiddleware (Seam's names, plus maxTokensPerClient); the host checks
** every config against them before csrf_create runs, which still checks what a schema cannot
** say (keyLookup's forms, cookie and header names, SameSite=None without Secure). */
static const ph_option csrf_options[] = {
    PH_OPTION(PH_OPTION_STRING, "storage", NULL,
              "the storage (a name in storages.yaml) that keeps the issued tokens",
              .flags = PH_OPTION_REQUIRED),
    PH_OPTION(PH_OPTION_STRING, "keyLookup", "header:X-Csrf-Token",
              "where unsafe requests carry the second copy of the token: 'header:<Name>', "
              "'query:<name>' or 'cookie:<name>'"),
    PH_OPTION(PH_OPTION_STRING, "cookieName", "csrf_token", "name of the cookie holding the token"),
    PHU_COOKIE_OPTIONS,
    PH_OPTION(PH_OPTION_DURATION, "cookieExpiration", "1h",
              "token lifetime: its TTL in the storage and the cookie's Max-Age (0 also means "
              "1h)"),
    PH_OPTION(PH_OPTION_BOOL, "singleUseToken", "false",
              "a token is deleted once an unsafe request used it, and a new one is issued"),
    PH_OPTION(PH_OPTION_INT, "maxTokensPerClient", "1000",
              "most tokens issued to one client address per cookieExpiration (0: no limit)",
              .flags = PH_OPTION_MIN, .min = 0),
    PH_OPTIONS_END};

/* The plugin's own config: it has no init, so it takes nothing. */
static const ph_option no_options[] = {PH_OPTIONS_END};

/* ------------------------------------------------------------------------- the entry */

static const ph_middleware_type csrf_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_MAY_BLOCK | PH_TYPE_BLOCKS_VIA_STORAGES |
             PH_TYPE_STREAMS_BODIES,
    .id = "plugins.csrf.middlewares.CSRFMiddleware",
    .description = "Refuses unsafe requests without a valid CSRF token (cookie + keyLookup)",
    .create = csrf_create,
    .destroy = csrf_destroy,
    .on_request = csrf_on_request,
    .on_response = csrf_on_response,
    .options = csrf_options,
};

static const ph_middleware_type *const csrf_middlewares[] = {&csrf_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "csrf", .version = "1.0.0",
                 .description = "CSRF protection with tokens in a storage (Seam's csrf plugin)",
                 .middlewares = csrf_middlewares, .options = no_options);
