/*
** session: server-side sessions in a shared storage, like Seam's session plugin.
** This comment is the plugin's reference (docs/plugins/session.md is the user's guide).
**
** Middleware plugins.session.middlewares.LoadSessionMiddleware
**   storage                string, default ""         name of a storage in storages.yaml that
**                                                     keeps the sessions (e.g. a ValkeyStorage
**                                                     shared by every gateway); empty: the
**                                                     host's default storage, this process's
**                                                     memory (as Seam), with a warning
**   keyLookup              string, default            where the session id travels:
**                          "cookie:session_id"        "cookie:<name>" or "header:<Name>"
**                                                     (a header is required single: twice
**                                                     in a request is 400)
**   cookieDomain           string, default ""         Domain attribute (omitted when empty)
**   cookiePath             string, default "/"        Path attribute
**   cookieSecure           bool, default false        Secure attribute
**   cookieHTTPOnly         bool, default false        HttpOnly attribute
**   cookieSameSite         string, default "Lax"      "Strict", "Lax" or "None" (None needs
**                                                     cookieSecure: true)
**   cookieSessionOnly      bool, default false        no Max-Age/Expires: the cookie ends with
**                                                     the browser session
**   cookieExpiration       duration, default 2h       lifetime of one session id, counted from
**                                                     when it was issued: the storage TTL and
**                                                     the cookie's Max-Age
**   disableAutoRenew       bool, default false        true: ids are never rotated, a session
**                                                     ends cookieExpiration after it began
**   autoRenewAfter         duration, default 30m      age of an id from which the next request
**                                                     rotates it; must be shorter than
**                                                     cookieExpiration (checked unless
**                                                     disableAutoRenew); when unset and 30m
**                                                     does not fit, half of cookieExpiration
**   autoRenewGracePeriod   duration, default 10s      how long a rotated-away id still leads to
**                                                     the session; 0 deletes it at once; must
**                                                     be shorter than autoRenewAfter (checked
**                                                     unless disableAutoRenew; when unset and
**                                                     10s does not fit, a quarter of
**                                                     autoRenewAfter). plughost's own option,
**                                                     Seam has none
**   disableSessionForward  bool, default false        true: session data is not put into the
**                                                     locals (only the id is)
**
** Stored data. Key "session:<id>", id = 32 lowercase hex characters (128 bits from the
** kernel's CSPRNG). Value: a URL-encoded map ("key=value&key2=value2", percent-escapes and '+'
** for space, as an HTML form). Two entry names are reserved by the plugin and never forwarded:
**   __issued=<ms>   when this id was issued (new session or rotation), in milliseconds since
**                   the Unix epoch. Wall-clock time, because gateways sharing a storage compare
**                   it: their clocks must agree to well within autoRenewAfter. The plugin
**                   writes it first. A value without it (written before rotation existed, or
**                   by an application that replaced the data), or with a malformed one or one
**                   more than cookieExpiration in the future, still loads and counts as due.
**   __movedTo=<id>  the whole value of a rotated-away id during the grace period (below).
** Every other entry goes into the locals as "session.<key>" (value bytes as decoded; malformed
** entries are skipped with a warning); the id in use goes into the local "sessionId".
** Applications writing session data themselves keep the __issued entry, or drop it to have
** the id rotated on the next request (useful right after a login).
**
** Request phase. The id is read from the cookie or header; then exactly one of:
**  - No id, or a malformed one: a new session. A fresh random id (never the client's value)
**    goes into the locals and back to the client, and nothing is written: a session is
**    stored only once the application puts data in it, so anonymous requests cost the
**    storage nothing. No storage operation at all.
**  - A well-formed id the storage does not hold (issued but never filled, expired, logged
**    out): an empty session under that id, again without a write and without Set-Cookie.
**    One get. Whoever writes data under such an id (the application at login) gets it
**    rotated on the next request (the data has no __issued; unless disableAutoRenew), so an
**    id known before the data existed leads to it for autoRenewGracePeriod at most.
**  - A known id younger than autoRenewAfter, or any known id with disableAutoRenew: its data
**    is loaded and that is all. One get, no write (so no update by anyone else can be lost),
**    no Set-Cookie. The TTL is not refreshed on use: the entry, the cookie and the id all end
**    cookieExpiration after the id was issued.
**  - A known id at least autoRenewAfter old: rotation. (1) A new id is stored with the same
**    entries, a new __issued and TTL cookieExpiration. (2) The old id's value is replaced by
**    "__movedTo=<new id>" with TTL autoRenewGracePeriod (with 0, the old id is deleted). (3)
**    The request goes on with the new id: locals, Set-Cookie or response header. One get, two
**    writes, once per autoRenewAfter. A session in use thus lives on with its id changing
**    every autoRenewAfter, and survives any idle gap shorter than cookieExpiration -
**    autoRenewAfter; an idle session ends cookieExpiration after its id was issued.
**  - A known id whose value is "__movedTo=<new id>": the request was sent with the old id
**    while another one rotated it (parallel requests of a page, or one in flight). The new
**    id's session is loaded (a second get, no write) without rotating again, and the new id
**    is sent back, so every response agrees. If the new id is gone (a logout deleted it, or
**    it expired), or is itself a marker, the request gets a new session as for no id.
**
** Why a grace period rather than deleting the old id at once: a browser often has several
** requests in flight. With the old id deleted, those that lose the race would each get a new
** empty session, and their Set-Cookie could replace the rotated id: the user would be logged
** out. The marker costs the same one write as a delete, holds no session data (deleting the
** new id ends the session for the old id too), and dies with the grace period, after which the
** old id is worth nothing. For that long the old id still leads to the session, so keep it
** short; it must be shorter than autoRenewAfter so that markers never chain.
**
** Response phase: with a cookie lookup, Set-Cookie carries the id when it is new, rotated or
** reached through a marker (Max-Age/Expires cookieExpiration from now unless
** cookieSessionOnly); with a header lookup, the response header <Name> carries it in the same
** cases. Otherwise the response is left alone.
**
** Failures. A storage error answers 503 {"error":"session storage unavailable","status":503}.
** Rotation never loses the session: if storing the new id fails, the old id is left untouched
** and stays valid (the next request tries again); if step (2) fails after the new id was
** stored, the answer is 503 as well and the old id is either unchanged (still valid) or, when
** the failed write did happen (a timeout after the server acted), a marker leading to the
** stored new id. The new id nobody learned just expires. Only with autoRenewGracePeriod 0 can
** that last case lose the session (a delete that timed out but happened): one more reason for
** the grace period.
**
** Limits, from the storage API having no compare-and-set, both confined to the one rotating
** request per autoRenewAfter: a write or delete of the old id by someone else between this
** request's get and step (2) is lost; and two requests reading a due id before either wrote
** the marker both rotate, the browser keeps the id of the last response and the other new id
** expires unused after cookieExpiration.
**
** Middleware plugins.session.middlewares.MapSessionToHeaderMiddleware
**   headers  map, required   {Header-Name: session_key}: sets request header Header-Name to the
**                            local "session.<session_key>" (for the upstream). When the session
**                            has no such key (or its value cannot be a header value), the
**                            header is removed, so a client cannot supply it itself; so is
**                            every other spelling of it with '_' (X_User_Id), which CGI-style
**                            upstreams read as the same header.
**
** No state changes after create: both thread-safe. LoadSession calls a storage that may block
** (Valkey): PH_TYPE_MAY_BLOCK.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SES_ID_BYTES 16
#define SES_ID_HEX (2 * SES_ID_BYTES)
#define SES_DEFAULT_EXPIRATION_MS (2 * 3600 * 1000)
#define SES_DEFAULT_RENEW_AFTER_MS (30 * 60 * 1000)
#define SES_DEFAULT_GRACE_MS (10 * 1000)
#define SES_KEY_PREFIX "session:"
#define SES_KEY_LEN (sizeof SES_KEY_PREFIX - 1 + SES_ID_HEX)
#define SES_LOCAL_PREFIX "session."
#define SES_LOCAL_ID "sessionId"
#define SES_ISSUED "__issued"  /* reserved entry: when the id was issued (Unix ms) */
#define SES_MOVED "__movedTo"  /* reserved entry: the id a rotated-away id leads to */
#define SES_MAX_MS_DIGITS 15   /* __issued values: up to year ~33000, no overflow anywhere */

typedef struct ses_load {
  ph_storage *storage;
  char *cookie_name; /* exactly one of cookie_name / header_name is set */
  char *header_name;
  phu_cookie cookie;     /* the cookie's attributes */
  int no_renew, no_forward;
  int64_t expiration_ms, renew_after_ms, grace_ms;
  ph_metric *created, *renewed; /* plughost_plugin_session_sessions_total{event=...} */
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

/* The storage key "session:<id>" of a valid id. */
static void ses_key(char out[SES_KEY_LEN + 1], const char *id) {
  memcpy(out, SES_KEY_PREFIX, sizeof SES_KEY_PREFIX - 1);
  memcpy(out + sizeof SES_KEY_PREFIX - 1, id, SES_ID_HEX);
  out[SES_KEY_LEN] = '\0';
}

/* Wall-clock milliseconds since the Unix epoch: __issued is compared by every gateway that
** shares the storage, so a per-host monotonic clock would not do. */
static int64_t ses_now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (int64_t)time(NULL) * 1000;
  return (int64_t)ts.tv_sec * 1000 + (int64_t)(ts.tv_nsec / 1000000);
}

/* "2h", "30m", "90s" or "1500ms", for configuration errors. */
static void ses_format_ms(char *out, size_t cap, int64_t ms) {
  if (ms % 3600000 == 0)
    snprintf(out, cap, "%" PRId64 "h", ms / 3600000);
  else if (ms % 60000 == 0)
    snprintf(out, cap, "%" PRId64 "m", ms / 60000);
  else if (ms % 1000 == 0)
    snprintf(out, cap, "%" PRId64 "s", ms / 1000);
  else
    snprintf(out, cap, "%" PRId64 "ms", ms);
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

/* ------------------------------------------------------------- the stored URL-encoded map */

/* One non-empty entry "key=value" (or "key") of a stored map: bytes [start, stop), the raw
** key [start, key_end) and, when key_end < stop, the raw value [key_end + 1, stop). */
typedef struct ses_entry {
  const char *start, *key_end, *stop;
} ses_entry;

/* The next non-empty entry of the map at [*p, end), advancing *p; 0 after the last. */
static int ses_next_entry(const char **p, const char *end, ses_entry *e) {
  while (*p < end) {
    const char *s = *p;
    const char *amp = memchr(s, '&', (size_t)(end - s));
    const char *stop = amp != NULL ? amp : end;
    *p = amp != NULL ? amp + 1 : end;
    if (stop == s) continue;
    const char *eq = memchr(s, '=', (size_t)(stop - s));
    e->start = s;
    e->key_end = eq != NULL ? eq : stop;
    e->stop = stop;
    return 1;
  }
  return 0;
}

static const char *ses_entry_value(const ses_entry *e, size_t *len) {
  const char *v = e->key_end < e->stop ? e->key_end + 1 : e->stop;
  *len = (size_t)(e->stop - v);
  return v;
}

enum { SES_ENTRY_USER, SES_ENTRY_ISSUED, SES_ENTRY_MOVED };

/* Whether a decoded key is one of the plugin's reserved entries. */
static int ses_reserved_name(const char *k, size_t n) {
  if (n == sizeof SES_ISSUED - 1 && memcmp(k, SES_ISSUED, n) == 0) return SES_ENTRY_ISSUED;
  if (n == sizeof SES_MOVED - 1 && memcmp(k, SES_MOVED, n) == 0) return SES_ENTRY_MOVED;
  return SES_ENTRY_USER;
}

/* The kind of an entry by its raw key (a reserved name may come percent-encoded). */
static int ses_entry_kind(const ses_entry *e) {
  char buf[3 * (sizeof SES_MOVED - 1)]; /* longest encoding of the longest reserved name */
  size_t len = (size_t)(e->key_end - e->start);
  if (len == 0 || len > sizeof buf) return SES_ENTRY_USER;
  long n = ses_url_decode(e->start, len, buf);
  return n > 0 ? ses_reserved_name(buf, (size_t)n) : SES_ENTRY_USER;
}

/* What the reserved entries of a stored value say. */
typedef struct ses_meta {
  int has_issued; /* a well-formed __issued */
  int64_t issued_ms;
  int moved; /* a well-formed __movedTo: the value is a rotation marker */
  char moved_to[SES_ID_HEX + 1];
} ses_meta;

static void ses_scan(const uint8_t *data, size_t len, ses_meta *meta) {
  memset(meta, 0, sizeof *meta);
  if (data == NULL || len == 0) return;
  const char *p = (const char *)data, *end = p + len;
  ses_entry e;
  while (ses_next_entry(&p, end, &e)) {
    int kind = ses_entry_kind(&e);
    size_t vl;
    const char *v = ses_entry_value(&e, &vl);
    if (kind == SES_ENTRY_ISSUED) {
      int ok = vl > 0 && vl <= SES_MAX_MS_DIGITS;
      int64_t ms = 0;
      for (size_t i = 0; ok && i < vl; i++) {
        if (v[i] < '0' || v[i] > '9')
          ok = 0;
        else
          ms = ms * 10 + (v[i] - '0');
      }
      meta->has_issued = ok;
      meta->issued_ms = ok ? ms : 0;
    } else if (kind == SES_ENTRY_MOVED && ses_valid_id(v, vl)) {
      memcpy(meta->moved_to, v, SES_ID_HEX);
      meta->moved_to[SES_ID_HEX] = '\0';
      meta->moved = 1;
    }
  }
}

/* The value of a freshly issued id: "__issued=<now>" followed by every user entry of `data`
** byte for byte (reserved entries dropped). malloc'd, the caller frees; NULL when out of
** memory. */
static char *ses_fresh_value(const uint8_t *data, size_t len, int64_t now_ms, size_t *out_len) {
  size_t cap = sizeof SES_ISSUED + 24 + len + 1;
  char *out = malloc(cap);
  if (out == NULL) return NULL;
  int n = snprintf(out, cap, SES_ISSUED "=%" PRId64, now_ms);
  size_t used = n > 0 ? (size_t)n : 0;
  if (data != NULL && len > 0) {
    const char *p = (const char *)data, *end = p + len;
    ses_entry e;
    while (ses_next_entry(&p, end, &e)) {
      if (ses_entry_kind(&e) != SES_ENTRY_USER) continue;
      size_t el = (size_t)(e.stop - e.start); /* entries + their '&' never exceed len + 1 */
      out[used++] = '&';
      memcpy(out + used, e.start, el);
      used += el;
    }
  }
  *out_len = used;
  return out;
}

/* ---------------------------------------------------------------- LoadSessionMiddleware */

static void ses_load_destroy(void *self) {
  ses_load *m = self;
  if (m == NULL) return;
  free(m->cookie_name);
  free(m->header_name);
  phu_cookie_free(&m->cookie);
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
  const char *storage, *lookup;
  static const char help[] = "Sessions given a new id: created, or renewed (rotated)";
  if ((m->created = phu_counter(cfg, "sessions", help, "event", "created")) == NULL ||
      (m->renewed = phu_counter(cfg, "sessions", help, "event", "renewed")) == NULL)
    return PH_ERROR;
  if (ph_config_string(cfg, "storage", "", &storage) != PH_OK) return PH_ERROR;
  if (*storage == '\0')
    ph_log(cfg, PH_LOG_WARNING,
           "no storage named: sessions are kept in this process's memory (the host's default "
           "storage), lost on restart and not shared with other gateway processes; name a "
           "ValkeyStorage for production");

  if (ph_config_string(cfg, "keyLookup", "cookie:session_id", &lookup) != PH_OK) return PH_ERROR;
  if (strncmp(lookup, "cookie:", 7) == 0) {
    if (!phu_valid_token(lookup + 7))
      return ph_config_error(cfg, "keyLookup",
                             "'%s' has no valid cookie name after \"cookie:\", like "
                             "\"cookie:session_id\"",
                             lookup);
    m->cookie_name = phu_strdup(lookup + 7);
    if (m->cookie_name == NULL) return ph_config_error(cfg, NULL, "out of memory");
  } else if (strncmp(lookup, "header:", 7) == 0) {
    if (!phu_valid_token(lookup + 7))
      return ph_config_error(cfg, "keyLookup",
                             "'%s' has no valid header name after \"header:\", like "
                             "\"header:X-Session-Id\"",
                             lookup);
    m->header_name = phu_strdup(lookup + 7);
    if (m->header_name == NULL) return ph_config_error(cfg, NULL, "out of memory");
    if (ph_require_single_header(cfg, m->header_name) != PH_OK) return PH_ERROR;
  } else {
    return ph_config_error(cfg, "keyLookup",
                           "must be \"cookie:<name>\" or \"header:<Name>\", not '%s'", lookup);
  }

  if (phu_cookie_read(cfg, &m->cookie) != PH_OK) return PH_ERROR;
  if (ses_positive_duration(cfg, "cookieExpiration", SES_DEFAULT_EXPIRATION_MS,
                            &m->expiration_ms) != PH_OK)
    return PH_ERROR;
  if (ph_config_bool(cfg, "disableAutoRenew", 0, &m->no_renew) != PH_OK) return PH_ERROR;
  if (ses_positive_duration(cfg, "autoRenewAfter", SES_DEFAULT_RENEW_AFTER_MS,
                            &m->renew_after_ms) != PH_OK)
    return PH_ERROR;
  if (ph_config_duration_ms(cfg, "autoRenewGracePeriod", SES_DEFAULT_GRACE_MS, &m->grace_ms) !=
      PH_OK)
    return PH_ERROR;
  if (!m->no_renew) {
    /* Only rotation reads these two, so disableAutoRenew: true leaves them unchecked. */
    char renew[32], life[32], grace[32];
    ses_format_ms(renew, sizeof renew, m->renew_after_ms);
    ses_format_ms(life, sizeof life, m->expiration_ms);
    ses_format_ms(grace, sizeof grace, m->grace_ms);
    int renew_default = ph_config_kind(cfg, "autoRenewAfter") == PH_CONFIG_MISSING;
    int grace_default = ph_config_kind(cfg, "autoRenewGracePeriod") == PH_CONFIG_MISSING;
    /* Unset options never make a Seam configuration invalid: with a short cookieExpiration
    ** the defaults shrink to fit (rotation at half the lifetime, a quarter of that as grace). */
    if (renew_default && m->renew_after_ms >= m->expiration_ms)
      m->renew_after_ms = m->expiration_ms / 2;
    if (grace_default && m->grace_ms >= m->renew_after_ms) m->grace_ms = m->renew_after_ms / 4;
    ses_format_ms(renew, sizeof renew, m->renew_after_ms);
    if (m->renew_after_ms >= m->expiration_ms)
      return ph_config_error(cfg, "autoRenewAfter",
                             "is %s%s but must be shorter than cookieExpiration (%s): set "
                             "autoRenewAfter below cookieExpiration, or set disableAutoRenew: "
                             "true to never rotate the session id",
                             renew, renew_default ? " (the default)" : "", life);
    if (m->grace_ms >= m->renew_after_ms)
      return ph_config_error(cfg, "autoRenewGracePeriod",
                             "is %s%s but must be shorter than autoRenewAfter (%s): set "
                             "autoRenewGracePeriod below it (a few seconds cover the requests "
                             "a browser has in flight)",
                             grace, grace_default ? " (the default)" : "", renew);
  }
  if (ph_config_bool(cfg, "disableSessionForward", 0, &m->no_forward) != PH_OK) return PH_ERROR;
  m->storage = ph_storage_lookup(cfg, "storage", storage);
  if (m->storage == NULL) return PH_ERROR;
  return PH_OK;
}

static ph_next ses_storage_failed(ph_exchange *ex) {
  ph_log(ex, PH_LOG_ERROR, "session: the session storage failed, answering 503");
  return phu_refuse(ex, 503, "session storage unavailable");
}

/* Puts every user entry of the URL-encoded map `data` into the locals as "session.<key>"
** (reserved entries stay out). Malformed entries are skipped with a warning. Returns PH_ERROR
** only when out of memory / locals fail. */
static ph_status ses_forward(ph_exchange *ex, const uint8_t *data, size_t len) {
  size_t plen = sizeof SES_LOCAL_PREFIX - 1;
  char *key = malloc(len + plen + 1);
  char *val = malloc(len + 1);
  if (key == NULL || val == NULL) {
    free(key);
    free(val);
    ph_error(ex, "session: out of memory");
    return PH_ERROR;
  }
  memcpy(key, SES_LOCAL_PREFIX, plen);
  const char *p = (const char *)data, *end = p + len;
  ses_entry e;
  ph_status rc = PH_OK;
  while (rc == PH_OK && ses_next_entry(&p, end, &e)) {
    long kl = ses_url_decode(e.start, (size_t)(e.key_end - e.start), key + plen);
    if (kl <= 0 || memchr(key + plen, '\0', (size_t)kl) != NULL) {
      ph_log(ex, PH_LOG_WARNING, "session: skipped a malformed entry of the session data");
      continue;
    }
    if (ses_reserved_name(key + plen, (size_t)kl) != SES_ENTRY_USER) continue;
    key[plen + (size_t)kl] = '\0';
    size_t vin;
    const char *v = ses_entry_value(&e, &vin);
    long vl = ses_url_decode(v, vin, val);
    if (vl < 0) {
      ph_log(ex, PH_LOG_WARNING, "session: skipped a malformed entry of the session data");
      continue;
    }
    if (ph_local_set(ex, key, val, (size_t)vl) != PH_OK) rc = PH_ERROR;
  }
  free(key);
  free(val);
  return rc;
}

/* Goes on with session `id` and its stored value: the data into the locals (unless
** disableSessionForward), the id into "sessionId" and, when `send`, onto this instance's
** per-request slot so that the response phase sends it back. */
static ph_next ses_use(const ses_load *m, ph_exchange *ex, const char *id, const uint8_t *data,
                       size_t len, int send) {
  if (!m->no_forward && data != NULL && len > 0 && ses_forward(ex, data, len) != PH_OK)
    return PH_NEXT_ERROR;
  if (ph_local_set(ex, SES_LOCAL_ID, id, SES_ID_HEX) != PH_OK) return PH_NEXT_ERROR;
  if (send && phu_slot_keep_text(ex, id, SES_ID_HEX) != PH_OK) return PH_NEXT_ERROR;
  return PH_NEXT_CONTINUE;
}

/* Stores `value` under a fresh random id with TTL cookieExpiration; the id into id_out.
** Returns PH_OK, or a ph_next to answer with (storage failure: 503; no randomness: error). */
static int ses_store_new(const ses_load *m, ph_exchange *ex, const char *value, size_t len,
                         char id_out[SES_ID_HEX + 1], ph_next *fail) {
  int err = ses_new_id(id_out);
  if (err != 0) {
    ph_error(ex, "session: the kernel's random generator failed: %s", strerror(err));
    *fail = PH_NEXT_ERROR;
    return 0;
  }
  char key[SES_KEY_LEN + 1];
  ses_key(key, id_out);
  if (ph_storage_set(m->storage, ex, (const uint8_t *)key, SES_KEY_LEN, (const uint8_t *)value, len,
                     m->expiration_ms) != PH_OK) {
    *fail = ses_storage_failed(ex);
    return 0;
  }
  return 1;
}

/* Rotation of the known id stored under old_key with value `data` (see the comment at the
** top): new id first, then the old one becomes a marker (or goes), then on with the new id.
** A failure at any step answers 503 with the session still reachable. */
static ph_next ses_rotate(const ses_load *m, ph_exchange *ex, const char *old_key,
                          const uint8_t *data, size_t len, int64_t now_ms) {
  size_t vlen = 0;
  char *value = ses_fresh_value(data, len, now_ms, &vlen);
  if (value == NULL) {
    ph_error(ex, "session: out of memory");
    return PH_NEXT_ERROR;
  }
  char id[SES_ID_HEX + 1];
  ph_next fail = PH_NEXT_ERROR;
  int stored = ses_store_new(m, ex, value, vlen, id, &fail);
  free(value);
  if (!stored) return fail; /* the old id is untouched and still valid */

  ph_status st;
  if (m->grace_ms > 0) {
    char marker[sizeof SES_MOVED + 1 + SES_ID_HEX]; /* "__movedTo=<id>" and its NUL */
    int n = snprintf(marker, sizeof marker, SES_MOVED "=%s", id);
    st = ph_storage_set(m->storage, ex, (const uint8_t *)old_key, SES_KEY_LEN,
                        (const uint8_t *)marker, (size_t)n, m->grace_ms);
  } else {
    st = ph_storage_del(m->storage, ex, (const uint8_t *)old_key, SES_KEY_LEN);
    if (st == PH_NOT_FOUND) st = PH_OK; /* already gone */
  }
  /* Failed: the old id is unchanged (still valid) or, if the write happened after all, a
  ** marker leading to the stored new id. Either way the session is still reachable. */
  if (st != PH_OK) return ses_storage_failed(ex);
  ph_metric_add(m->renewed, 1);
  return ses_use(m, ex, id, data, len, 1);
}

/* A known id whose stored value is `data`. Sets *next and returns 1, or returns 0 when the
** request should get a new session instead (a marker leading nowhere). */
static int ses_known(const ses_load *m, ph_exchange *ex, const char *id, const char *key,
                     const uint8_t *data, size_t len, ph_next *next) {
  ses_meta meta;
  ses_scan(data, len, &meta);
  if (meta.moved) {
    /* Rotated away by a concurrent request: go on with the id it leads to, one hop only
    ** (autoRenewGracePeriod < autoRenewAfter: markers do not chain). */
    char to_key[SES_KEY_LEN + 1];
    ses_key(to_key, meta.moved_to);
    uint8_t *to = NULL;
    size_t to_len = 0;
    ph_status st =
        ph_storage_get(m->storage, ex, (const uint8_t *)to_key, SES_KEY_LEN, &to, &to_len);
    if (st == PH_ERROR) {
      *next = ses_storage_failed(ex);
      return 1;
    }
    if (st != PH_OK) return 0;
    ses_meta to_meta;
    ses_scan(to, to_len, &to_meta);
    int found = !to_meta.moved;
    if (found) *next = ses_use(m, ex, meta.moved_to, to, to_len, 1);
    ph_free_value(m->storage, to);
    return found;
  }
  if (!m->no_renew) {
    int64_t now = ses_now_ms();
    int due = !meta.has_issued || now - meta.issued_ms >= m->renew_after_ms ||
              meta.issued_ms - now > m->expiration_ms;
    if (due) {
      *next = ses_rotate(m, ex, key, data, len, now);
      return 1;
    }
  }
  *next = ses_use(m, ex, id, data, len, 0); /* fresh: no write at all */
  return 1;
}

static ph_next ses_load_on_request(void *self, ph_exchange *ex) {
  const ses_load *m = self;
  const char *sent = NULL;
  size_t sent_len = 0;
  if (m->cookie_name != NULL) {
    sent = phu_request_cookie(ex, m->cookie_name, &sent_len);
  } else {
    sent = ph_header_get(ex, m->header_name);
    if (sent != NULL) sent_len = strlen(sent);
  }

  char id[SES_ID_HEX + 1];
  if (sent != NULL && ses_valid_id(sent, sent_len)) {
    char key[SES_KEY_LEN + 1];
    memcpy(id, sent, SES_ID_HEX);
    id[SES_ID_HEX] = '\0';
    ses_key(key, id);
    uint8_t *value = NULL;
    size_t value_len = 0;
    ph_status st =
        ph_storage_get(m->storage, ex, (const uint8_t *)key, SES_KEY_LEN, &value, &value_len);
    if (st == PH_ERROR) return ses_storage_failed(ex);
    if (st != PH_OK) /* nothing stored under it yet: an empty session, still not stored */
      return ses_use(m, ex, id, NULL, 0, 0);
    ph_next next = PH_NEXT_ERROR;
    int handled = ses_known(m, ex, id, key, value, value_len, &next);
    ph_free_value(m->storage, value);
    if (handled) return next;
    /* a marker leading nowhere: the id was rotated away, a fresh one follows */
  }

  /* A new session: a fresh random id, sent back, and nothing written. The application
  ** stores the session when it has something to keep in it. */
  int err = ses_new_id(id);
  if (err != 0) {
    ph_error(ex, "session: the kernel's random generator failed: %s", strerror(err));
    return PH_NEXT_ERROR;
  }
  ph_metric_add(m->created, 1);
  return ses_use(m, ex, id, NULL, 0, 1);
}

static ph_status ses_load_on_response(void *self, ph_exchange *ex) {
  const ses_load *m = self;
  const char *id = ph_slot_get(ex); /* the id to send back, when there is one */
  if (id == NULL) return PH_OK;
  if (m->header_name != NULL) return ph_resp_header_set(ex, m->header_name, id);

  return phu_cookie_set(ex, &m->cookie, m->cookie_name, id, m->expiration_ms, "session");
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

/* Whether header names a and b are the same once case is ignored and '_' is read as '-'
** (as CGI-style upstreams read them: X_User_Id is X-User-Id there). */
static int ses_same_spelling(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = *a == '_' ? '-' : (char)tolower((unsigned char)*a);
    char y = *b == '_' ? '-' : (char)tolower((unsigned char)*b);
    if (x != y) return 0;
  }
  return *a == *b;
}

/* Removes every request header that is `header` in another spelling (X_User_Id,
** x-user_id, ...): a client cannot hand the upstream an identity under a name the upstream
** reads as the one this middleware sets. */
static void ses_remove_spellings(ph_exchange *ex, const char *header) {
  for (size_t i = 0; i < ph_header_count(ex);) {
    const char *name = NULL, *value = NULL;
    if (ph_header_at(ex, i, &name, &value) != PH_OK || name == NULL) {
      i++;
      continue;
    }
    if (ses_same_spelling(name, header) && strchr(name, '_') != NULL) {
      char copy[256]; /* header_remove may free `name` */
      size_t n = strlen(name);
      if (n >= sizeof copy) {
        i++;
        continue;
      }
      memcpy(copy, name, n + 1);
      if (ph_header_remove(ex, copy) > 0) continue; /* the list moved down */
    }
    i++;
  }
}

static ph_next ses_map_on_request(void *self, ph_exchange *ex) {
  const ses_map *m = self;
  for (size_t i = 0; i < m->n; i++) {
    ses_remove_spellings(ex, m->entries[i].header);
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

/* ------------------------------------------------------------------------- the schemas */

/* The options of a LoadSessionMiddleware (Seam's names, plus autoRenewGracePeriod); the host
** checks every config against them before ses_load_create runs, which still checks what a
** schema cannot say (keyLookup's forms, the cookie attributes' characters, the durations'
** order). */
static const ph_option load_session_options[] = {
    PH_OPTION(PH_OPTION_STRING, "storage", "",
              "the storage (a name in storages.yaml) that keeps the sessions; empty: the "
              "host's default storage, this process's memory"),
    PH_OPTION(PH_OPTION_STRING, "keyLookup", "cookie:session_id",
              "where the session id travels: 'cookie:<name>' or 'header:<Name>'"),
    PHU_COOKIE_OPTIONS,
    PH_OPTION(PH_OPTION_DURATION, "cookieExpiration", "2h",
              "lifetime of one session id from when it was issued: the storage TTL and the "
              "cookie's Max-Age",
              .flags = PH_OPTION_MIN, .min = 0.001),
    PH_OPTION(PH_OPTION_BOOL, "disableAutoRenew", "false",
              "never rotate the session id: a session ends cookieExpiration after it began"),
    PH_OPTION(PH_OPTION_DURATION, "autoRenewAfter", "30m",
              "age of an id from which the next request rotates it (shorter than "
              "cookieExpiration)",
              .flags = PH_OPTION_MIN, .min = 0.001),
    PH_OPTION(PH_OPTION_DURATION, "autoRenewGracePeriod", "10s",
              "how long a rotated-away id still leads to the session (0: deleted at once; "
              "shorter than autoRenewAfter)"),
    PH_OPTION(PH_OPTION_BOOL, "disableSessionForward", "false",
              "do not put the session data into the locals (only sessionId)"),
    PH_OPTIONS_END};

/* The options of a MapSessionToHeaderMiddleware. */
static const ph_option map_session_options[] = {
    PH_OPTION(PH_OPTION_MAP, "headers", NULL,
              "{Header-Name: session_key}: request header Header-Name gets the local "
              "session.<session_key>",
              .flags = PH_OPTION_REQUIRED, .items = PH_OPTION_STRING),
    PH_OPTIONS_END};

/* The plugin's own config: it has no init, so it takes nothing. */
static const ph_option no_options[] = {PH_OPTIONS_END};

/* ------------------------------------------------------------------------- the entry */

static const ph_middleware_type load_session_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_MAY_BLOCK | PH_TYPE_BLOCKS_VIA_STORAGES |
             PH_TYPE_STREAMS_BODIES,
    .id = "plugins.session.middlewares.LoadSessionMiddleware",
    .description = "Loads the session named by a cookie or header from a storage into locals",
    .create = ses_load_create,
    .destroy = ses_load_destroy,
    .on_request = ses_load_on_request,
    .on_response = ses_load_on_response,
    .options = load_session_options,
};

static const ph_middleware_type map_session_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.session.middlewares.MapSessionToHeaderMiddleware",
    .description = "Copies session values from the locals into request headers",
    .create = ses_map_create,
    .destroy = ses_map_destroy,
    .on_request = ses_map_on_request,
    .on_response = NULL,
    .options = map_session_options,
};

static const ph_middleware_type *const session_middlewares[] = {&load_session_middleware,
                                                                &map_session_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "session", .version = "1.0.0",
                 .description = "Server-side sessions in a storage (Seam's session plugin)",
                 .middlewares = session_middlewares, .options = no_options);
