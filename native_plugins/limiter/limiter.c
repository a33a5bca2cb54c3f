/*
** limiter: rate limiting on a shared storage, like Seam's limiter plugin.
**
** Middleware plugins.limiter.middlewares.LimiterMiddleware
**   storage                 string, required      name of a storage in storages.yaml
**   maxConnections          int, default 5        requests allowed per window (>= 1)
**   expiration              duration, default 60s the window's length (> 0)
**   skipFailedRequests      bool, default false   responses with status >= 400 do not count
**   skipSuccessfulRequests  bool, default false   responses with status < 400 do not count
**   slidingWindow           bool, default false   weighted previous + current fixed windows
**   key                     string, default "ip"  "ip" or "header:<Name>" (falls back to
**                                                 the client address when the header is absent;
**                                                 <Name> is required single: twice is 400)
**   prefix                  string, default ""    put into every counter key, to keep several
**                                                 limiters on one storage apart
**   failOpen                bool, default false   storage failure: false answers 503, true
**                                                 lets the request through (both log an error)
**
** Fixed window: windows are aligned on the wall clock (CLOCK_REALTIME), so every gateway
** process sharing a storage agrees on them. Counter key
** "limiter:<prefix>:<ip|h>:<client key>:<window index>" ("h": the key header's value), one atomic storage incr per request with
** ttl = expiration (2 x expiration for the sliding window, whose previous counter must
** survive the next window). The request is refused with 429, Retry-After (seconds until the
** window ends, rounded up) and a JSON body when the counter passes maxConnections; refused
** requests count too, except with slidingWindow, where they are taken back at once.
** Sliding window: estimate = previous * (1 - elapsed/expiration) + current.
** Every response gets X-RateLimit-Limit, -Remaining and -Reset (seconds), set in the
** response phase from the instance's per-request slot. Skip options take the count back (incr -1) in
** the response phase.
**
** No state changes after create: thread-safe. It calls a storage that may block (Valkey):
** PH_TYPE_MAY_BLOCK.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIM_DEFAULT_MAX 5
#define LIM_DEFAULT_EXPIRATION_MS 60000

typedef struct lim_middleware {
  ph_storage *storage;
  int64_t max;
  int64_t expiration_ms;
  int skip_failed, skip_successful, sliding, fail_open;
  char *header; /* NULL: key by client address */
  char *prefix;
  ph_metric *allowed, *limited; /* plughost_plugin_limiter_requests_total{result=...} */
} lim_middleware;

/* What the response phase needs of a request, on the instance's slot (ph_slot_set). */
typedef struct lim_request {
  int counted;
  int64_t remaining, reset_s;
  size_t key_len;
  char key[]; /* the counter's key, NUL-terminated */
} lim_request;

static void lim_destroy(void *self) {
  lim_middleware *m = self;
  if (m == NULL) return;
  free(m->header);
  free(m->prefix);
  free(m);
}

static ph_status lim_create(const ph_config *cfg, void **self) {
  lim_middleware *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;
  const char *storage, *key, *prefix;
  if (ph_config_string(cfg, "storage", NULL, &storage) != PH_OK) return PH_ERROR;
  if (storage == NULL || *storage == '\0')
    return ph_config_error(cfg, "storage",
                           "is required: name a storage of storages.yaml that keeps the "
                           "counters, like a ValkeyStorage shared by every gateway");
  if (ph_config_int(cfg, "maxConnections", LIM_DEFAULT_MAX, &m->max) != PH_OK) return PH_ERROR;
  if (m->max < 1)
    return ph_config_error(cfg, "maxConnections",
                           "must be at least 1, not %" PRId64
                           ": the requests allowed per "
                           "window",
                           m->max);
  if (ph_config_kind(cfg, "expiration") == PH_CONFIG_INT) {
    int64_t secs;
    if (ph_config_int(cfg, "expiration", 0, &secs) != PH_OK) return PH_ERROR;
    if (secs <= 0)
      return ph_config_error(cfg, "expiration",
                             "must be a positive duration like \"60s\", not %" PRId64, secs);
  }
  if (ph_config_duration_ms(cfg, "expiration", LIM_DEFAULT_EXPIRATION_MS, &m->expiration_ms) !=
      PH_OK)
    return PH_ERROR;
  if (m->expiration_ms <= 0)
    return ph_config_error(cfg, "expiration",
                           "must be a positive duration like \"60s\" or \"500ms\"");
  if (ph_config_bool(cfg, "skipFailedRequests", 0, &m->skip_failed) != PH_OK) return PH_ERROR;
  if (ph_config_bool(cfg, "skipSuccessfulRequests", 0, &m->skip_successful) != PH_OK)
    return PH_ERROR;
  if (ph_config_bool(cfg, "slidingWindow", 0, &m->sliding) != PH_OK) return PH_ERROR;
  if (ph_config_bool(cfg, "failOpen", 0, &m->fail_open) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "key", "ip", &key) != PH_OK) return PH_ERROR;
  if (strncmp(key, "header:", 7) == 0) {
    const char *name = key + 7;
    if (!phu_valid_token(name))
      return ph_config_error(cfg, "key",
                             "'%s' has no valid header name after \"header:\", like "
                             "\"header:X-API-Key\"",
                             key);
    m->header = phu_strdup(name);
    if (m->header == NULL) return ph_config_error(cfg, NULL, "out of memory");
    /* the key names whose budget a request spends: one value per request */
    if (ph_require_single_header(cfg, name) != PH_OK) return PH_ERROR;
  } else if (strcmp(key, "ip") != 0) {
    return ph_config_error(cfg, "key", "must be \"ip\" or \"header:<Name>\", not '%s'", key);
  }
  if (ph_config_string(cfg, "prefix", "", &prefix) != PH_OK) return PH_ERROR;
  static const char help[] = "Requests the limiter let through or refused with 429";
  if ((m->allowed = phu_counter(cfg, "requests", help, "result", "allowed")) == NULL ||
      (m->limited = phu_counter(cfg, "requests", help, "result", "limited")) == NULL)
    return PH_ERROR;
  m->prefix = phu_strdup(prefix);
  if (m->prefix == NULL) return ph_config_error(cfg, NULL, "out of memory");
  m->storage = ph_storage_lookup(cfg, "storage", storage);
  if (m->storage == NULL) return PH_ERROR;
  return PH_OK;
}

static int64_t lim_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "limiter:<prefix>:<kind>:<client>:<window>" in a malloc'd buffer (NULL: out of memory).
** kind is "ip" for a client address, "h" for a header's value: a client cannot spend another
** client's budget by sending its address as the header. */
static char *lim_key(const lim_middleware *m, const char *kind, const char *client, int64_t window,
                     size_t *len) {
  int n = snprintf(NULL, 0, "limiter:%s:%s:%s:%" PRId64, m->prefix, kind, client, window);
  if (n < 0) return NULL;
  char *k = malloc((size_t)n + 1);
  if (k == NULL) return NULL;
  snprintf(k, (size_t)n + 1, "limiter:%s:%s:%s:%" PRId64, m->prefix, kind, client, window);
  *len = (size_t)n;
  return k;
}

static ph_next lim_storage_failed(const lim_middleware *m, ph_exchange *ex) {
  if (m->fail_open) {
    ph_log(ex, PH_LOG_ERROR,
           "limiter: the storage failed; failOpen is true, so the request goes through "
           "without rate limiting");
    return PH_NEXT_CONTINUE;
  }
  ph_log(ex, PH_LOG_ERROR,
         "limiter: the storage failed, answering 503 (set failOpen: true to let requests "
         "through while the storage is down)");
  return phu_refuse(ex, 503, "rate limiter unavailable");
}

static ph_next lim_on_request(void *self, ph_exchange *ex) {
  const lim_middleware *m = self;
  const char *client = NULL, *kind = "h";
  if (m->header != NULL) client = ph_header_get(ex, m->header);
  if (client == NULL || *client == '\0') client = ph_client_ip(ex), kind = "ip";

  int64_t now = lim_now_ms();
  int64_t window = now / m->expiration_ms;
  int64_t elapsed = now - window * m->expiration_ms;
  int64_t reset_ms = m->expiration_ms - elapsed;
  int64_t ttl = m->sliding ? 2 * m->expiration_ms : m->expiration_ms;

  size_t klen = 0;
  char *key = lim_key(m, kind, client, window, &klen);
  if (key == NULL) {
    ph_error(ex, "limiter: out of memory");
    return PH_NEXT_ERROR;
  }
  int64_t value = 0, left = 0;
  if (ph_storage_incr(m->storage, ex, (const uint8_t *)key, klen, 1, ttl, &value, &left) != PH_OK) {
    free(key);
    return lim_storage_failed(m, ex);
  }
  int64_t used = value;
  if (m->sliding) {
    size_t plen = 0;
    char *prev_key = lim_key(m, kind, client, window - 1, &plen);
    int64_t prev = 0, pleft = 0;
    if (prev_key == NULL) {
      free(key);
      ph_error(ex, "limiter: out of memory");
      return PH_NEXT_ERROR;
    }
    /* incr by 0 reads the counter whatever the storage's representation. */
    ph_status st =
        ph_storage_incr(m->storage, ex, (const uint8_t *)prev_key, plen, 0, ttl, &prev, &pleft);
    free(prev_key);
    if (st != PH_OK) {
      free(key);
      return lim_storage_failed(m, ex);
    }
    double weight = (double)(m->expiration_ms - elapsed) / (double)m->expiration_ms;
    used = (int64_t)((double)prev * weight) + value;
  }

  int refused = used > m->max;
  int counted = 1;
  if (refused && m->sliding) {
    int64_t v2, l2;
    /* a refused request does not count in the sliding window (best effort). */
    if (ph_storage_incr(m->storage, ex, (const uint8_t *)key, klen, -1, ttl, &v2, &l2) == PH_OK)
      counted = 0;
  }
  int64_t remaining = refused ? 0 : m->max - used;
  int64_t reset_s = (reset_ms + 999) / 1000;
  if (reset_s < 1) reset_s = 1;

  lim_request *r = malloc(sizeof *r + klen + 1);
  if (r == NULL) {
    free(key);
    ph_error(ex, "limiter: out of memory");
    return PH_NEXT_ERROR;
  }
  *r = (lim_request){
      .counted = counted, .remaining = remaining, .reset_s = reset_s, .key_len = klen};
  memcpy(r->key, key, klen + 1);
  free(key);
  if (ph_slot_set(ex, r, free) != PH_OK) {
    free(r);
    return PH_NEXT_ERROR;
  }

  ph_metric_add(refused ? m->limited : m->allowed, 1);
  if (refused) {
    char retry[32];
    snprintf(retry, sizeof retry, "%" PRId64, reset_s);
    if (ph_resp_header_set(ex, "Retry-After", retry) != PH_OK) return PH_NEXT_ERROR;
    return phu_refuse(ex, 429, "too many requests");
  }
  return PH_NEXT_CONTINUE;
}

static ph_status lim_on_response(void *self, ph_exchange *ex) {
  const lim_middleware *m = self;
  const lim_request *r = ph_slot_get(ex);
  if (r == NULL) return PH_OK; /* storage failed with failOpen, or 503 */
  int64_t remaining = r->remaining;
  int status = ph_http_status(ex);
  if (r->counted && ((m->skip_failed && status >= 400) || (m->skip_successful && status < 400))) {
    int64_t v, l;
    int64_t ttl = m->sliding ? 2 * m->expiration_ms : m->expiration_ms;
    if (ph_storage_incr(m->storage, ex, (const uint8_t *)r->key, r->key_len, -1, ttl, &v, &l) !=
        PH_OK)
      ph_log(ex, PH_LOG_ERROR, "limiter: could not take a skipped request back from the count");
    else if (remaining < m->max && status != 429)
      remaining++;
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRId64, m->max);
  ph_resp_header_set(ex, "X-RateLimit-Limit", buf);
  snprintf(buf, sizeof buf, "%" PRId64, remaining);
  ph_resp_header_set(ex, "X-RateLimit-Remaining", buf);
  snprintf(buf, sizeof buf, "%" PRId64, r->reset_s);
  ph_resp_header_set(ex, "X-RateLimit-Reset", buf);
  return PH_OK;
}

/* The options of a LimiterMiddleware (Seam's names); the host checks every config
** against them before lim_create runs. */
static const ph_option limiter_options[] = {
    PH_OPTION(PH_OPTION_STRING, "storage", NULL,
              "the storage that keeps the counters (a name in storages.yaml)",
              .flags = PH_OPTION_REQUIRED),
    PH_OPTION(PH_OPTION_INT, "maxConnections", "5", "requests allowed per window and key",
              .flags = PH_OPTION_MIN, .min = 1),
    PH_OPTION(PH_OPTION_DURATION, "expiration", "60s", "the window's length",
              .flags = PH_OPTION_MIN, .min = 0.001),
    PH_OPTION(PH_OPTION_BOOL, "skipFailedRequests", "false",
              "answers with status >= 400 do not count"),
    PH_OPTION(PH_OPTION_BOOL, "skipSuccessfulRequests", "false",
              "answers with status < 400 do not count"),
    PH_OPTION(PH_OPTION_BOOL, "slidingWindow", "false",
              "weigh the previous window in (a sliding window) instead of fixed windows"),
    PH_OPTION(PH_OPTION_STRING, "key", "ip",
              "what a client is: 'ip', or 'header:<Name>' for a header's value"),
    PH_OPTION(PH_OPTION_STRING, "prefix", "", "prefix of the counters' keys in the storage"),
    PH_OPTION(PH_OPTION_BOOL, "failOpen", "false",
              "let requests through when the storage fails (else 503)"),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_middleware_type limiter_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_MAY_BLOCK | PH_TYPE_BLOCKS_VIA_STORAGES |
             PH_TYPE_STREAMS_BODIES,
    .id = "plugins.limiter.middlewares.LimiterMiddleware",
    .description = "Rate limiting per client over fixed or sliding windows in a storage",
    .create = lim_create,
    .destroy = lim_destroy,
    .on_request = lim_on_request,
    .on_response = lim_on_response,
    .options = limiter_options,
};

static const ph_middleware_type *const limiter_middlewares[] = {&limiter_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "limiter", .version = "1.0.0",
                 .description = "Rate limiting with 429 and Retry-After (Seam's limiter)",
                 .middlewares = limiter_middlewares, .options = no_options);
