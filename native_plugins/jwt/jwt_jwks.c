/* jwt_jwks.c: the JWK sets named by jwkUrls. Fetched once while the instance is created,
** then refreshed by one thread per instance (started in create, stopped and joined in
** destroy): every refresh period, sooner (rate-limited) when a token names an unknown kid,
** and every min(period, 15s) while a URL keeps failing. A URL that fails keeps its last good
** keys; every failure is logged. Requests read the current set under a short mutex and
** hold a reference while they verify, so a refresh never waits for them nor they for it.
** See jwt.c for the plugin's reference. */
#define _POSIX_C_SOURCE 200809L

#include "jwt_internal.h"
#include "phu.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef JWT_HAVE_CURL
#include <curl/curl.h>
#endif

#define JWKS_MAX_BYTES (1024 * 1024) /* a JWK set bigger than this is refused */
#define JWKS_MAX_KEYS 256            /* keys kept per URL */
#define JWKS_FAIL_RETRY_MS 15000     /* retry a failing URL at least this often */
#define JWKS_WHY 512                 /* room for a failure's description */
#define JWKS_THREAD_STACK (512 * 1024)

struct jwt_jwks {
  const ph_config *cfg; /* for ph_log; valid until destroy returns (after the join) */
  char **urls;
  size_t n_urls;
  jwt_keyset **per_url; /* last good set of each URL; refresher thread only */
  jwt_jwks_options opt;

  pthread_mutex_t lock; /* guards current, stop, kick */
  pthread_cond_t cond;  /* CLOCK_MONOTONIC */
  jwt_keyset *current;  /* union of per_url; NULL before the first success */
  int stop, kick;
  atomic_int stopping; /* read by curl's progress callback without the lock */
  pthread_t thread;
  int thread_started, lock_ready, cond_ready;
};

int jwt_jwks_supported(void) {
#ifdef JWT_HAVE_CURL
  return 1;
#else
  return 0;
#endif
}

int jwt_jwks_global_init(void) {
#ifdef JWT_HAVE_CURL
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
#else
  return 0;
#endif
}

void jwt_jwks_global_cleanup(void) {
#ifdef JWT_HAVE_CURL
  curl_global_cleanup();
#endif
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------ parsing --- */

/* A JWK set document to a key set; NULL with why[] when the document is unusable. Keys
** that cannot be used are skipped, each logged once with its position and reason. */
static jwt_keyset *jwks_parse(jwt_jwks *j, const char *url, const char *text, size_t len, char *why,
                              size_t why_len) {
  if (!jwt_json_depth_ok(text, len, JWT_MAX_JSON_DEPTH)) {
    snprintf(why, why_len, "JSON nested more than %d deep", JWT_MAX_JSON_DEPTH);
    return NULL;
  }
  json_error_t err;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
  if (root == NULL) {
    snprintf(why, why_len, "not valid JSON (%s at line %d)", err.text, err.line);
    return NULL;
  }
  json_t *keys = json_object_get(root, "keys");
  if (!json_is_array(keys)) {
    snprintf(why, why_len, "not a JWK set: no \"keys\" array");
    json_decref(root);
    return NULL;
  }
  size_t n = json_array_size(keys);
  if (n > JWKS_MAX_KEYS) {
    ph_log(j->cfg, PH_LOG_WARNING, "jwt: %s holds %zu keys: only the first %d are used", url, n,
           JWKS_MAX_KEYS);
    n = JWKS_MAX_KEYS;
  }
  jwt_keyset *ks = calloc(1, sizeof *ks);
  if (ks == NULL || (n > 0 && (ks->keys = calloc(n, sizeof *ks->keys)) == NULL)) {
    free(ks);
    json_decref(root);
    snprintf(why, why_len, "out of memory");
    return NULL;
  }
  atomic_init(&ks->refs, 1);
  for (size_t i = 0; i < n; i++) {
    char reason[160];
    if (jwt_key_from_jwk(json_array_get(keys, i), &ks->keys[ks->count], reason, sizeof reason) == 0)
      ks->count++;
    else
      ph_log(j->cfg, PH_LOG_WARNING, "jwt: %s: key #%zu skipped: %s", url, i, reason);
  }
  json_decref(root);
  return ks;
}

/* A new set holding a reference to every key of every per-URL set. */
static jwt_keyset *jwks_union(jwt_jwks *j) {
  size_t total = 0;
  for (size_t u = 0; u < j->n_urls; u++)
    if (j->per_url[u] != NULL) total += j->per_url[u]->count;
  jwt_keyset *ks = calloc(1, sizeof *ks);
  if (ks == NULL) return NULL;
  atomic_init(&ks->refs, 1);
  if (total > 0 && (ks->keys = calloc(total, sizeof *ks->keys)) == NULL) {
    free(ks);
    return NULL;
  }
  for (size_t u = 0; u < j->n_urls; u++) {
    const jwt_keyset *src = j->per_url[u];
    for (size_t i = 0; src != NULL && i < src->count; i++) {
      jwt_key *dst = &ks->keys[ks->count];
      if (src->keys[i].kid != NULL && (dst->kid = phu_strdup(src->keys[i].kid)) == NULL) {
        jwt_keyset_release(ks);
        return NULL;
      }
      EVP_PKEY_up_ref(src->keys[i].pkey);
      dst->pkey = src->keys[i].pkey;
      dst->algs = src->keys[i].algs;
      ks->count++;
    }
  }
  return ks;
}

/* ----------------------------------------------------------------------- fetching --- */

#ifdef JWT_HAVE_CURL
typedef struct body_buf {
  char *data;
  size_t len, cap;
} body_buf;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
  body_buf *b = userdata;
  size_t n = size * nmemb;
  if (n > JWKS_MAX_BYTES - b->len) return 0; /* too big: abort the transfer */
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) return 0;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  const jwt_jwks *j = clientp;
  return atomic_load(&j->stopping) ? 1 : 0; /* non-zero aborts: destroy is waiting */
}

/* GETs url into *out (malloc'd, NUL-terminated). 0, or -1 with why[]. */
static int jwks_get(jwt_jwks *j, const char *url, body_buf *out, char *why, size_t why_len) {
  char errbuf[CURL_ERROR_SIZE + 1] = "";
  CURL *c = curl_easy_init();
  if (c == NULL) {
    snprintf(why, why_len, "could not start a transfer (out of memory)");
    return -1;
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, j);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)j->opt.timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)j->opt.timeout_ms);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* every encoding curl can decode */
  curl_easy_setopt(c, CURLOPT_USERAGENT, "plughost-jwt/1.0");
  struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) snprintf(why, why_len, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  return rc == CURLE_OK ? 0 : -1;
}
#endif

/* Fetches every URL once; a URL that fails keeps its last good set. Returns the number
** of URLs that failed, and publishes the new union when any succeeded. */
static size_t jwks_fetch_all(jwt_jwks *j) {
  size_t failed = 0, changed = 0;
  for (size_t u = 0; u < j->n_urls; u++) {
    char why[JWKS_WHY] = "";
    jwt_keyset *ks = NULL;
#ifdef JWT_HAVE_CURL
    body_buf body = {0};
    if (jwks_get(j, j->urls[u], &body, why, sizeof why) == 0)
      ks = jwks_parse(j, j->urls[u], body.data ? body.data : "", body.len, why, sizeof why);
    free(body.data);
#else
    snprintf(why, sizeof why, "this jwt.so was built without libcurl");
#endif
    if (atomic_load(&j->stopping)) {
      jwt_keyset_release(ks);
      return failed + 1;
    }
    if (ks == NULL) {
      failed++;
      ph_log(j->cfg, PH_LOG_ERROR, "jwt: fetching the JWK set %s failed: %s; %s", j->urls[u], why,
             j->per_url[u] ? "keeping its last good keys" : "no keys from it yet");
      continue;
    }
    ph_log(j->cfg, PH_LOG_DEBUG, "jwt: %s: %zu usable key(s)", j->urls[u], ks->count);
    jwt_keyset_release(j->per_url[u]);
    j->per_url[u] = ks;
    changed++;
  }
  if (changed) {
    jwt_keyset *all = jwks_union(j);
    if (all == NULL) {
      ph_log(j->cfg, PH_LOG_ERROR, "jwt: out of memory while publishing a JWK set");
      return failed + 1;
    }
    pthread_mutex_lock(&j->lock);
    jwt_keyset *old = j->current;
    j->current = all;
    pthread_mutex_unlock(&j->lock);
    jwt_keyset_release(old);
  }
  return failed;
}

/* ------------------------------------------------------------------------- thread --- */

static void *jwks_thread(void *arg) {
  jwt_jwks *j = arg;
  int64_t last = mono_ms();
  size_t failed = 0;
  for (;;) {
    pthread_mutex_lock(&j->lock);
    for (;;) {
      int64_t period = j->opt.refresh_ms;
      if (failed && period > JWKS_FAIL_RETRY_MS) period = JWKS_FAIL_RETRY_MS;
      int64_t due = last + period;
      if (j->kick) {
        int64_t early = last + j->opt.min_refresh_ms;
        if (early < due) due = early;
      }
      if (j->stop || mono_ms() >= due) break;
      struct timespec ts = {.tv_sec = (time_t)(due / 1000),
                            .tv_nsec = (long)(due % 1000) * 1000000L};
      int rc = pthread_cond_timedwait(&j->cond, &j->lock, &ts);
      if (rc != 0 && rc != ETIMEDOUT && rc != EINTR) break;
    }
    int stop = j->stop;
    j->kick = 0;
    pthread_mutex_unlock(&j->lock);
    if (stop) break;
    failed = jwks_fetch_all(j);
    last = mono_ms();
  }
  return NULL;
}

jwt_jwks *jwt_jwks_start(const ph_config *cfg, const char *const *urls, size_t n_urls,
                         const jwt_jwks_options *opt, char *why, size_t why_len) {
  jwt_jwks *j = calloc(1, sizeof *j);
  if (j == NULL) goto oom;
  j->cfg = cfg;
  j->opt = *opt;
  atomic_init(&j->stopping, 0);
  j->urls = calloc(n_urls, sizeof *j->urls);
  j->per_url = calloc(n_urls, sizeof *j->per_url);
  if (j->urls == NULL || j->per_url == NULL) goto oom;
  j->n_urls = n_urls;
  for (size_t i = 0; i < n_urls; i++)
    if ((j->urls[i] = phu_strdup(urls[i])) == NULL) goto oom;
  if (pthread_mutex_init(&j->lock, NULL) != 0) goto oom;
  j->lock_ready = 1;
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) goto oom;
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&j->cond, &attr);
  pthread_condattr_destroy(&attr);
  if (rc != 0) goto oom;
  j->cond_ready = 1;

  size_t failed = jwks_fetch_all(j);
  if (failed == n_urls)
    ph_log(
        cfg, PH_LOG_ERROR,
        "jwt: no JWK set could be loaded yet: tokens checked against jwkUrls are refused "
        "until a retry succeeds (every %lld ms)",
        (long long)(opt->refresh_ms < JWKS_FAIL_RETRY_MS ? opt->refresh_ms : JWKS_FAIL_RETRY_MS));
  /* A stack of our own size: musl's default (128 KiB) is small for TLS handshakes. */
  pthread_attr_t tattr;
  if (pthread_attr_init(&tattr) != 0) goto oom;
  pthread_attr_setstacksize(&tattr, JWKS_THREAD_STACK);
  rc = pthread_create(&j->thread, &tattr, jwks_thread, j);
  pthread_attr_destroy(&tattr);
  if (rc != 0) {
    snprintf(why, why_len, "could not start the JWK refresh thread");
    jwt_jwks_stop(j);
    return NULL;
  }
  j->thread_started = 1;
  return j;
oom:
  snprintf(why, why_len, "out of memory");
  jwt_jwks_stop(j);
  return NULL;
}

void jwt_jwks_stop(jwt_jwks *j) {
  if (j == NULL) return;
  if (j->thread_started) {
    atomic_store(&j->stopping, 1);
    pthread_mutex_lock(&j->lock);
    j->stop = 1;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    pthread_join(j->thread, NULL);
  }
  jwt_keyset_release(j->current);
  for (size_t i = 0; i < j->n_urls; i++) {
    free(j->urls[i]);
    jwt_keyset_release(j->per_url[i]);
  }
  free(j->urls);
  free(j->per_url);
  if (j->cond_ready) pthread_cond_destroy(&j->cond);
  if (j->lock_ready) pthread_mutex_destroy(&j->lock);
  free(j);
}

jwt_keyset *jwt_jwks_acquire(jwt_jwks *j) {
  pthread_mutex_lock(&j->lock);
  jwt_keyset *ks = j->current;
  if (ks != NULL) atomic_fetch_add(&ks->refs, 1);
  pthread_mutex_unlock(&j->lock);
  return ks;
}

void jwt_jwks_kick(jwt_jwks *j) {
  pthread_mutex_lock(&j->lock);
  if (!j->kick) {
    j->kick = 1;
    pthread_cond_signal(&j->cond);
  }
  pthread_mutex_unlock(&j->lock);
}
