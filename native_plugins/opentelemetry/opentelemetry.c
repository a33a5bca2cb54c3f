/*
** opentelemetry: W3C Trace Context propagation and one SERVER span per request, exported
** over OTLP/HTTP with JSON encoding, like Seam's opentelemetry plugin.
**
** Plugin configuration (plugins.yaml `config:`), Seam's names; option names ignore case. The
** options of both are declared (ABI 1.2: ot_plugin_options, ot_middleware_options), so the
** host refuses unknown names and wrong kinds before init and create run:
**   provider          string, default ""           "" or "default": the only provider
**   contextTracerKey  string, default              locals key that receives the span's
**                     "openTelemetryTracer"        traceparent (Seam stores its tracer there)
**   providerConfig    map, default {}:
**     serviceName     string, default "plughost"  resource service.name ($OTEL_SERVICE_NAME
**                                                  when unset)
**     useOTLP         bool, default false          true: OTLP/HTTP to endpoint; false: each
**                     (true when endpoint is set)  batch is one OTLP JSON line on stdout
**     disableTraces   bool, default false          true: the middleware does nothing
**     disableMetrics  bool, default false          accepted (Seam); no metrics are exported
**     disableLogs     bool, default false          accepted (Seam); no logs are exported
**     endpoint        string, default              collector base URL; "/v1/traces" is added
**                     http://localhost:4318        unless the path already ends with it
**                     ($OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, or
**                      $OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, when unset)
**     headers         map name -> string           extra request headers (auth tokens)
**     timeout         duration, default 10s        one export POST, connecting included
**     batchSize       int, default 512             spans per export (1..queueSize)
**     exportInterval  duration, default 5s         a partial batch waits at most this long
**     queueSize       int, default 2048            spans waiting for export (1..1000000);
**                                                  beyond it spans are dropped and counted
**     samplingRatio   float, default 1.0           share of new traces recorded (0..1), by
**                                                  trace id; a parent's sampled flag wins
**     shutdownTimeout duration, default 5s         at the last destroy, how long queued spans
**                                                  may take to export
**
** Middleware plugins.opentelemetry.middlewares.OpenTelemetryMiddleware
**   tracerName        string, default "plughost"   the span's instrumentation scope name
**
** Request phase: a valid incoming traceparent (version 00, 32 lower-case hex trace id not all
** zero, 16 hex parent id not all zero, 2 hex flags; a later version but ff is read the same
** way, ignoring what follows its 55th character) is continued; otherwise a new trace
** starts (ids from the kernel CSPRNG) and an incoming tracestate is removed. The request
** header traceparent is replaced by the new span's context (so the upstream continues it);
** tracestate passes through. Locals: otel.traceId, otel.spanId, otel.traceFlags ("01"
** sampled, "00" not) and contextTracerKey (the new traceparent).
** Response phase: a sampled span is queued (never blocking; a full queue drops and counts).
** The span: name = route name (the method when no route matched), kind SERVER, start at the
** request phase, end = start + monotonic time to the response phase, status ERROR for 5xx;
** attributes http.request.method (+ _original), url.path, plughost.route,
** http.response.status_code, error.type, client.address, server.address/port (Host),
** user_agent.original, http.request/response.body.size. ABI 1.0 has no route template, so no
** http.route.
** Export: one thread per provider, started by the first middleware created and stopped,
** after a flush bounded by shutdownTimeout (a POST still running then is cut), by the last
** one destroyed; batches (OTLP JSON: resourceSpans -> scopeSpans per tracerName -> spans)
** are POSTed to <endpoint>/v1/traces with libcurl, every failure logged (ERROR) and counted;
** a failed batch is not retried.
**
** Thread-safe: hooks read immutable options and share only the queue, under its mutex.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OT_VERSION "1.0.0"
#define OT_DEFAULT_SERVICE "plughost"
#define OT_DEFAULT_SCOPE "plughost"
#define OT_DEFAULT_CTX_KEY "openTelemetryTracer"
#define OT_DEFAULT_ENDPOINT "http://localhost:4318"
#define OT_TRACES_PATH "/v1/traces"
#define OT_MAX_QUEUE 1000000
#define OT_THREAD_STACK (512 * 1024)
#define OT_KIND_SERVER 2
#define OT_STATUS_ERROR 2
#define OT_FLAG_HAS_IS_REMOTE 0x100u /* SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK */
#define OT_FLAG_IS_REMOTE 0x200u     /* SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK */

/* ------------------------------------------------------------------ the provider --- */

typedef struct ot_item {
  json_t *span;
  size_t scope;
} ot_item;

typedef struct ot_provider {
  const ph_config *cfg; /* the plugin's config: logging from the exporter thread */
  /* options, immutable after init */
  char *service_name;
  char *ctx_key;
  int use_otlp, disabled;
  char *url;
  struct curl_slist *headers;
  int64_t timeout_ms, interval_ms, shutdown_ms;
  size_t batch, cap;
  double ratio;
  uint64_t ratio_bound; /* root sampled when (trace id's low 8 bytes >> 1) < bound */

  pthread_mutex_t life; /* serialises create/destroy: users and starting/stopping */
  pthread_mutex_t mu;   /* guards everything below (the hot path's queue) */
  pthread_cond_t cv;  /* CLOCK_MONOTONIC */
  ot_item *ring;
  size_t head, count;
  char **scopes;
  size_t n_scopes;
  size_t users; /* live middleware instances; under life */
  int thread_started, stopping;
  int64_t stop_deadline_ms;
  uint64_t dropped, exported, failed;
  pthread_t thread;
  atomic_llong abort_at_ms; /* stopping: a transfer still running then is cut (0: none) */
  int life_ready, mu_ready, cv_ready;
} ot_provider;

static int64_t ot_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ot_hex(const uint8_t *b, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

/* A JSON string of s, with invalid UTF-8 bytes replaced by '?'. */
static json_t *ot_jstr(const char *s) {
  json_t *j = json_string(s);
  if (j != NULL) return j;
  char *copy = phu_strdup(s);
  if (copy == NULL) return NULL;
  for (char *p = copy; *p; p++)
    if ((unsigned char)*p >= 0x80) *p = '?';
  j = json_string(copy);
  free(copy);
  return j;
}

static void ot_attr(json_t *attrs, const char *key, json_t *value, const char *type) {
  if (value == NULL) return;
  json_t *v = json_object();
  json_t *a = json_object();
  if (v == NULL || a == NULL || json_object_set_new(v, type, value) != 0) {
    json_decref(v);
    json_decref(a);
    return;
  }
  json_object_set_new(a, "key", json_string(key));
  json_object_set_new(a, "value", v);
  json_array_append_new(attrs, a);
}

static void ot_attr_str(json_t *attrs, const char *key, const char *value) {
  if (value == NULL || *value == '\0') return;
  ot_attr(attrs, key, ot_jstr(value), "stringValue");
}

/* OTLP JSON: 64-bit integers as decimal strings (the protobuf JSON mapping). */
static void ot_attr_int(json_t *attrs, const char *key, int64_t value) {
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRId64, value);
  ot_attr(attrs, key, json_string(buf), "intValue");
}

/* The export document for items[0..n): resourceSpans -> scopeSpans (one per scope). */
static json_t *ot_document(ot_provider *p, ot_item *items, size_t n) {
  json_t *rattrs = json_array();
  ot_attr_str(rattrs, "service.name", p->service_name);
  ot_attr_str(rattrs, "telemetry.sdk.name", "plughost-opentelemetry");
  ot_attr_str(rattrs, "telemetry.sdk.version", OT_VERSION);
  json_t *scope_spans = json_array();
  size_t n_scopes;
  pthread_mutex_lock(&p->mu);
  n_scopes = p->n_scopes;
  pthread_mutex_unlock(&p->mu);
  for (size_t s = 0; s < n_scopes; s++) {
    json_t *spans = NULL;
    for (size_t i = 0; i < n; i++) {
      if (items[i].scope != s) continue;
      if (spans == NULL) spans = json_array();
      json_array_append(spans, items[i].span);
    }
    if (spans == NULL) continue;
    pthread_mutex_lock(&p->mu);
    const char *name = p->scopes[s]; /* scopes are only appended: the string stays */
    pthread_mutex_unlock(&p->mu);
    json_array_append_new(scope_spans, json_pack("{s:{s:s,s:s},s:o}", "scope", "name", name,
                                                 "version", OT_VERSION, "spans", spans));
  }
  return json_pack("{s:[{s:{s:o},s:o}]}", "resourceSpans", "resource", "attributes", rattrs,
                   "scopeSpans", scope_spans);
}

typedef struct ot_reply {
  char text[256];
  size_t len;
} ot_reply;

static size_t ot_on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
  ot_reply *r = userdata;
  size_t n = size * nmemb, room = sizeof r->text - 1 - r->len;
  memcpy(r->text + r->len, ptr, n < room ? n : room);
  r->len += n < room ? n : room;
  r->text[r->len] = '\0';
  return n;
}

/* Cuts a transfer that runs past the shutdown deadline (curl calls it several times a
** second, also while connecting). */
static int ot_on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                          curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  const ot_provider *p = clientp;
  long long at = atomic_load(&p->abort_at_ms);
  return at != 0 && ot_mono_ms() >= at ? 1 : 0;
}

/* Sends one document; 0, or -1 with why[]. */
static int ot_send(ot_provider *p, CURL *c, const char *body, int64_t timeout_ms, char *why,
                   size_t why_len) {
  if (!p->use_otlp) {
    flockfile(stdout);
    fputs(body, stdout);
    fputc('\n', stdout);
    int rc = fflush(stdout);
    funlockfile(stdout);
    if (rc != 0) snprintf(why, why_len, "writing to stdout: %s", strerror(errno));
    return rc == 0 ? 0 : -1;
  }
  char errbuf[CURL_ERROR_SIZE + 1] = "";
  ot_reply reply = {.len = 0};
  reply.text[0] = '\0';
  curl_easy_setopt(c, CURLOPT_URL, p->url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, p->headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ot_on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, "plughost-opentelemetry/" OT_VERSION);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, ot_on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_ABORTED_BY_CALLBACK) {
    snprintf(why, why_len, "shutdownTimeout passed while they were being sent");
    return -1;
  }
  if (rc != CURLE_OK) {
    snprintf(why, why_len, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    return -1;
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) {
    for (size_t i = 0; i < reply.len; i++)
      if ((unsigned char)reply.text[i] < 0x20) reply.text[i] = ' ';
    snprintf(why, why_len, "the collector answered %ld%s%.200s", status, reply.len ? ": " : "",
             reply.text);
    return -1;
  }
  return 0;
}

static void ot_export(ot_provider *p, CURL *c, ot_item *items, size_t n, int64_t timeout_ms) {
  char why[512] = "";
  int ok = -1;
  json_t *doc = ot_document(p, items, n);
  char *body = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
  if (body == NULL)
    snprintf(why, sizeof why, "out of memory building the export document");
  else if (timeout_ms <= 0)
    snprintf(why, sizeof why, "shutdownTimeout passed before they could be sent");
  else if (p->use_otlp && c == NULL)
    snprintf(why, sizeof why, "libcurl could not start a transfer");
  else
    ok = ot_send(p, c, body, timeout_ms, why, sizeof why);
  free(body);
  json_decref(doc);
  for (size_t i = 0; i < n; i++) json_decref(items[i].span);
  pthread_mutex_lock(&p->mu);
  if (ok == 0)
    p->exported += n;
  else
    p->failed += n;
  uint64_t failed = p->failed;
  pthread_mutex_unlock(&p->mu);
  if (ok != 0)
    ph_log(p->cfg, PH_LOG_ERROR,
           "opentelemetry: exporting %zu span%s to %s failed: %s (%" PRIu64
           " span%s lost so "
           "far)",
           n, n == 1 ? "" : "s", p->use_otlp ? p->url : "stdout", why, failed,
           failed == 1 ? "" : "s");
}

static void *ot_exporter_main(void *arg) {
  ot_provider *p = arg;
  CURL *c = p->use_otlp ? curl_easy_init() : NULL;
  ot_item *batch = calloc(p->batch, sizeof *batch);
  int64_t last = ot_mono_ms();
  uint64_t reported_drops = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    int64_t due = last + p->interval_ms;
    while (p->count < p->batch && !p->stopping && ot_mono_ms() < due) {
      struct timespec ts = {.tv_sec = (time_t)(due / 1000),
                            .tv_nsec = (long)(due % 1000) * 1000000L};
      int rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
      if (rc != 0 && rc != ETIMEDOUT && rc != EINTR) break;
    }
    uint64_t dropped = p->dropped;
    if (p->count == 0 && p->stopping) break;
    size_t n = p->count < p->batch ? p->count : p->batch;
    if (batch == NULL) n = 0; /* out of memory at start: spans are dropped below */
    for (size_t i = 0; i < n; i++) batch[i] = p->ring[(p->head + i) % p->cap];
    p->head = (p->head + n) % p->cap;
    p->count -= n;
    int64_t timeout = p->timeout_ms;
    if (p->stopping) {
      int64_t left = p->stop_deadline_ms - ot_mono_ms();
      if (left < timeout) timeout = left;
    }
    if (batch == NULL && p->count > 0) { /* cannot export at all: drop what waits */
      p->failed += p->count;
      for (; p->count > 0; p->count--, p->head = (p->head + 1) % p->cap)
        json_decref(p->ring[p->head].span);
    }
    pthread_mutex_unlock(&p->mu);
    if (dropped > reported_drops) {
      ph_log(p->cfg, PH_LOG_WARNING,
             "opentelemetry: %" PRIu64
             " span%s dropped so far: the export queue (queueSize "
             "%zu) was full",
             dropped, dropped == 1 ? "" : "s", p->cap);
      reported_drops = dropped;
    }
    if (n > 0) ot_export(p, c, batch, n, timeout);
    last = ot_mono_ms();
    pthread_mutex_lock(&p->mu);
  }
  uint64_t dropped = p->dropped;
  pthread_mutex_unlock(&p->mu);
  if (dropped > reported_drops)
    ph_log(p->cfg, PH_LOG_WARNING,
           "opentelemetry: %" PRIu64
           " span%s dropped in all: the export queue (queueSize "
           "%zu) was full",
           dropped, dropped == 1 ? "" : "s", p->cap);
  free(batch);
  if (c != NULL) curl_easy_cleanup(c);
  return NULL;
}

/* Stops the exporter after it exported what was queued (bounded by shutdownTimeout). Called
** with p->mu not held. */
static void ot_stop_exporter(ot_provider *p) {
  pthread_mutex_lock(&p->mu);
  if (!p->thread_started) {
    pthread_mutex_unlock(&p->mu);
    return;
  }
  p->stopping = 1;
  p->stop_deadline_ms = ot_mono_ms() + p->shutdown_ms;
  atomic_store(&p->abort_at_ms, (long long)(p->stop_deadline_ms > 0 ? p->stop_deadline_ms : 1));
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  pthread_mutex_lock(&p->mu);
  p->thread_started = 0;
  p->stopping = 0;
  atomic_store(&p->abort_at_ms, 0);
  uint64_t exported = p->exported, failed = p->failed, dropped = p->dropped;
  pthread_mutex_unlock(&p->mu);
  ph_log(p->cfg, PH_LOG_DEBUG,
         "opentelemetry: exporter stopped: %" PRIu64 " spans exported, %" PRIu64 " failed, %" PRIu64
         " dropped",
         exported, failed, dropped);
}

/* Starts the exporter thread; called with p->mu held. 0 or an errno value. */
static int ot_start_exporter(ot_provider *p) {
  pthread_attr_t attr;
  int rc = pthread_attr_init(&attr);
  if (rc != 0) return rc;
  pthread_attr_setstacksize(&attr, OT_THREAD_STACK); /* musl's default is small for TLS */
  rc = pthread_create(&p->thread, &attr, ot_exporter_main, p);
  pthread_attr_destroy(&attr);
  if (rc == 0) p->thread_started = 1;
  return rc;
}

/* Never blocks: a full queue drops the span and counts it. Takes the span's reference. */
static void ot_enqueue(ot_provider *p, json_t *span, size_t scope) {
  pthread_mutex_lock(&p->mu);
  if (p->count == p->cap || !p->thread_started) {
    p->dropped++;
    pthread_mutex_unlock(&p->mu);
    json_decref(span);
    return;
  }
  p->ring[(p->head + p->count) % p->cap] = (ot_item){span, scope};
  p->count++;
  if (p->count >= p->batch) pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* ----------------------------------------------------------------- configuration --- */

static const char *const PLUGIN_OPTIONS[] = {"provider", "providerConfig", "contextTracerKey"};
enum { PO_PROVIDER, PO_PROVIDER_CONFIG, PO_CTX_KEY, PO_COUNT };

static const char *const PROVIDER_OPTIONS[] = {
    "serviceName", "useOTLP",       "disableTraces",  "disableMetrics", "disableLogs",
    "endpoint",    "headers",       "timeout",        "batchSize",      "exportInterval",
    "queueSize",   "samplingRatio", "shutdownTimeout"};
enum {
  PC_SERVICE,
  PC_USE_OTLP,
  PC_DISABLE_TRACES,
  PC_DISABLE_METRICS,
  PC_DISABLE_LOGS,
  PC_ENDPOINT,
  PC_HEADERS,
  PC_TIMEOUT,
  PC_BATCH,
  PC_INTERVAL,
  PC_QUEUE,
  PC_RATIO,
  PC_SHUTDOWN,
  PC_COUNT
};

/* w[k] = names[k] when cfg (NULL: none) holds that option, written in any case (the getters
** look keys up ignoring case), else NULL. The schema has refused every other key. */
static void ot_present(const ph_config *cfg, const char *const *names, size_t count,
                       const char **w) {
  for (size_t k = 0; k < count; k++)
    w[k] = cfg != NULL && ph_config_kind(cfg, names[k]) != PH_CONFIG_MISSING ? names[k] : NULL;
}

static void ot_provider_free(ot_provider *p) {
  if (p == NULL) return;
  if (p->mu_ready && p->cv_ready) ot_stop_exporter(p);
  for (size_t i = 0; i < p->count; i++) json_decref(p->ring[(p->head + i) % p->cap].span);
  free(p->ring);
  for (size_t i = 0; i < p->n_scopes; i++) free(p->scopes[i]);
  free(p->scopes);
  free(p->service_name);
  free(p->ctx_key);
  free(p->url);
  curl_slist_free_all(p->headers);
  if (p->cv_ready) pthread_cond_destroy(&p->cv);
  if (p->mu_ready) pthread_mutex_destroy(&p->mu);
  if (p->life_ready) pthread_mutex_destroy(&p->life);
  free(p);
}

static int ot_url_ok(const char *url) {
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) return 0;
  const char *host = url + (url[4] == 's' ? 8 : 7);
  if (*host == '\0' || *host == '/') return 0;
  for (const char *c = url; *c; c++)
    if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) return 0;
  return 1;
}

/* base (trailing '/' removed) + "/v1/traces", unless base already ends with it. */
static char *ot_traces_url(const char *base) {
  size_t n = strlen(base), tl = strlen(OT_TRACES_PATH);
  while (n > 0 && base[n - 1] == '/') n--;
  size_t add = n >= tl && memcmp(base + n - tl, OT_TRACES_PATH, tl) == 0 ? 0 : tl;
  char *url = malloc(n + add + 1);
  if (url == NULL) return NULL;
  memcpy(url, base, n);
  memcpy(url + n, OT_TRACES_PATH, add);
  url[n + add] = '\0';
  return url;
}

static ph_status ot_duration(const ph_config *cfg, const char *key, int64_t dflt, int64_t min_ms,
                             int64_t *out) {
  if (key == NULL) {
    *out = dflt;
    return PH_OK;
  }
  if (ph_config_duration_ms(cfg, key, dflt, out) != PH_OK) return PH_ERROR;
  if (*out < min_ms) return ph_config_error(cfg, key, "must be at least %" PRId64 "ms", min_ms);
  return PH_OK;
}

static ph_status ot_count(const ph_config *cfg, const char *key, int64_t dflt, int64_t max,
                          size_t *out) {
  int64_t v = dflt;
  if (key != NULL && ph_config_int(cfg, key, dflt, &v) != PH_OK) return PH_ERROR;
  if (v < 1 || v > max)
    return ph_config_error(cfg, key, "must be between 1 and %" PRId64 ", not %" PRId64, max, v);
  *out = (size_t)v;
  return PH_OK;
}

static ph_status ot_headers(const ph_config *pc, const ph_config *at, const char *key,
                            ot_provider *p) {
  p->headers = curl_slist_append(NULL, "Content-Type: application/json");
  struct curl_slist *expect = p->headers ? curl_slist_append(p->headers, "Expect:") : NULL;
  if (expect == NULL) return ph_config_error(at, NULL, "out of memory");
  p->headers = expect; /* "Expect:" turns off curl's 100-continue wait on big batches */
  if (key == NULL) return PH_OK;
  const ph_config *map = NULL;
  if (ph_config_kind(pc, key) == PH_CONFIG_NULL) return PH_OK;
  if (ph_config_kind(pc, key) != PH_CONFIG_MAP)
    return ph_config_error(pc, key,
                           "must be a map of header name to value, like "
                           "{Authorization: \"Bearer ...\"}");
  if (ph_config_child(pc, key, &map) != PH_OK || map == NULL) return PH_ERROR;
  size_t n = ph_config_len(map);
  for (size_t i = 0; i < n; i++) {
    const char *name = NULL, *value = NULL;
    const ph_config *item = ph_config_at(map, i, &name);
    if (item == NULL || name == NULL) continue;
    if (!phu_valid_token(name)) return ph_config_error(map, name, "is not a valid header name");
    if (phu_ieq(name, "Content-Type") || phu_ieq(name, "Content-Length") || phu_ieq(name, "Host"))
      return ph_config_error(map, name, "is set by the exporter: remove it");
    if (ph_config_kind(map, name) != PH_CONFIG_STRING ||
        ph_config_string(map, name, NULL, &value) != PH_OK || value == NULL)
      return ph_config_error(map, name, "must be a string");
    for (const char *c = value; *c; c++)
      if ((unsigned char)*c < 0x20 && *c != '\t')
        return ph_config_error(map, name, "must not hold control characters");
    size_t len = strlen(name) + strlen(value) + 3;
    char *line = malloc(len);
    if (line == NULL) return ph_config_error(pc, NULL, "out of memory");
    snprintf(line, len, "%s: %s", name, value);
    struct curl_slist *more = curl_slist_append(p->headers, line);
    free(line);
    if (more == NULL) return ph_config_error(pc, NULL, "out of memory");
    p->headers = more;
  }
  return PH_OK;
}

/* pc: providerConfig (NULL when absent: every option takes its default); at: the node
** errors without a key are reported on. */
static ph_status ot_provider_config(const ph_config *pc, const ph_config *at, ot_provider *p) {
  const char *w[PC_COUNT];
  ot_present(pc, PROVIDER_OPTIONS, PC_COUNT, w);
  const char *service = NULL, *endpoint = NULL;
  int ignored = 0;
  if (w[PC_SERVICE] && ph_config_string(pc, w[PC_SERVICE], NULL, &service) != PH_OK)
    return PH_ERROR;
  if (service == NULL || *service == '\0') service = getenv("OTEL_SERVICE_NAME");
  if (service == NULL || *service == '\0') service = OT_DEFAULT_SERVICE;
  if ((p->service_name = phu_strdup(service)) == NULL)
    return ph_config_error(at, NULL, "out of memory");
  if (w[PC_ENDPOINT] && ph_config_string(pc, w[PC_ENDPOINT], NULL, &endpoint) != PH_OK)
    return PH_ERROR;
  if (endpoint != NULL && *endpoint == '\0') endpoint = NULL;
  p->use_otlp = endpoint != NULL;
  if (w[PC_USE_OTLP] && ph_config_bool(pc, w[PC_USE_OTLP], p->use_otlp, &p->use_otlp) != PH_OK)
    return PH_ERROR;
  if (endpoint != NULL && !p->use_otlp)
    return ph_config_error(pc, w[PC_ENDPOINT],
                           "is set but useOTLP is false (spans would go "
                           "to stdout): set useOTLP: true, or remove endpoint");
  if ((w[PC_DISABLE_TRACES] &&
       ph_config_bool(pc, w[PC_DISABLE_TRACES], 0, &p->disabled) != PH_OK) ||
      (w[PC_DISABLE_METRICS] && ph_config_bool(pc, w[PC_DISABLE_METRICS], 0, &ignored) != PH_OK) ||
      (w[PC_DISABLE_LOGS] && ph_config_bool(pc, w[PC_DISABLE_LOGS], 0, &ignored) != PH_OK))
    return PH_ERROR;
  if (p->use_otlp) {
    const char *env = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    const char *key = w[PC_ENDPOINT];
    if (endpoint == NULL && env != NULL && *env != '\0') {
      if (!ot_url_ok(env))
        return ph_config_error(at, NULL,
                               "$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, '%s', is not "
                               "an http(s):// URL",
                               env);
      p->url = phu_strdup(env); /* the signal's own variable is used as it is */
    } else {
      if (endpoint == NULL) {
        endpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
        if (endpoint != NULL && *endpoint != '\0' && !ot_url_ok(endpoint))
          return ph_config_error(at, NULL,
                                 "$OTEL_EXPORTER_OTLP_ENDPOINT, '%s', is not an "
                                 "http(s):// URL",
                                 endpoint);
      }
      if (endpoint == NULL || *endpoint == '\0') endpoint = OT_DEFAULT_ENDPOINT;
      if (!ot_url_ok(endpoint))
        return ph_config_error(at, key,
                               "'%s' is not an http(s):// URL, like "
                               "http://otel-collector:4318",
                               endpoint);
      p->url = ot_traces_url(endpoint);
    }
    if (p->url == NULL) return ph_config_error(at, NULL, "out of memory");
  }
  if (ot_headers(pc, at, w[PC_HEADERS], p) != PH_OK) return PH_ERROR;
  if (ot_duration(pc != NULL ? pc : at, w[PC_TIMEOUT], 10000, 1, &p->timeout_ms) != PH_OK ||
      ot_duration(pc != NULL ? pc : at, w[PC_INTERVAL], 5000, 1, &p->interval_ms) != PH_OK ||
      ot_duration(pc != NULL ? pc : at, w[PC_SHUTDOWN], 5000, 0, &p->shutdown_ms) != PH_OK ||
      ot_count(pc != NULL ? pc : at, w[PC_QUEUE], 2048, OT_MAX_QUEUE, &p->cap) != PH_OK)
    return PH_ERROR;
  if (ot_count(pc != NULL ? pc : at, w[PC_BATCH], p->cap < 512 ? (int64_t)p->cap : 512,
               (int64_t)p->cap, &p->batch) != PH_OK)
    return PH_ERROR;
  p->ratio = 1.0;
  if (w[PC_RATIO] && ph_config_float(pc, w[PC_RATIO], 1.0, &p->ratio) != PH_OK) return PH_ERROR;
  if (!(p->ratio >= 0.0 && p->ratio <= 1.0))
    return ph_config_error(pc, w[PC_RATIO], "must be between 0 and 1, like 0.25");
  p->ratio_bound = (uint64_t)(p->ratio * 9223372036854775808.0); /* ratio * 2^63 */
  return PH_OK;
}

static ph_status ot_configure(const ph_config *cfg, ot_provider *p) {
  p->cfg = cfg;
  atomic_init(&p->abort_at_ms, 0);
  if (pthread_mutex_init(&p->life, NULL) != 0) return ph_config_error(cfg, NULL, "no mutex");
  p->life_ready = 1;
  if (pthread_mutex_init(&p->mu, NULL) != 0) return ph_config_error(cfg, NULL, "no mutex");
  p->mu_ready = 1;
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) return ph_config_error(cfg, NULL, "no condition");
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&p->cv, &attr);
  pthread_condattr_destroy(&attr);
  if (rc != 0) return ph_config_error(cfg, NULL, "no condition variable");
  p->cv_ready = 1;

  const char *w[PO_COUNT];
  ot_present(cfg, PLUGIN_OPTIONS, PO_COUNT, w);
  const char *provider = NULL, *ctx_key = NULL;
  if (w[PO_PROVIDER] && ph_config_string(cfg, w[PO_PROVIDER], "", &provider) != PH_OK)
    return PH_ERROR;
  if (provider != NULL && *provider != '\0' && !phu_ieq(provider, "default"))
    return ph_config_error(cfg, w[PO_PROVIDER],
                           "'%s' is not a provider: only the default "
                           "one exists (leave provider empty, or write \"default\")",
                           provider);
  if (w[PO_CTX_KEY] && ph_config_string(cfg, w[PO_CTX_KEY], NULL, &ctx_key) != PH_OK)
    return PH_ERROR;
  if (ctx_key == NULL || *ctx_key == '\0') ctx_key = OT_DEFAULT_CTX_KEY;
  if ((p->ctx_key = phu_strdup(ctx_key)) == NULL)
    return ph_config_error(cfg, NULL, "out of memory");
  const ph_config *pc = NULL;
  if (w[PO_PROVIDER_CONFIG]) {
    ph_config_kind kind = ph_config_kind(cfg, w[PO_PROVIDER_CONFIG]);
    if (kind != PH_CONFIG_NULL && kind != PH_CONFIG_MAP)
      return ph_config_error(cfg, w[PO_PROVIDER_CONFIG],
                             "must be a map, like {serviceName: "
                             "my-gateway, useOTLP: true}");
    if (ph_config_child(cfg, w[PO_PROVIDER_CONFIG], &pc) != PH_OK) return PH_ERROR;
  }
  if (ot_provider_config(pc, pc != NULL ? pc : cfg, p) != PH_OK) return PH_ERROR;
  p->ring = calloc(p->cap, sizeof *p->ring);
  if (p->ring == NULL) return ph_config_error(cfg, NULL, "out of memory");
  return PH_OK;
}

/* The host calls shutdown only after a successful init: a failing init frees here. */
static ph_status ot_init(const ph_config *cfg, void **state) {
  json_object_seed(0); /* jansson's hash seed, once before any thread uses it */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return ph_config_error(cfg, NULL, "libcurl could not be initialised");
  ot_provider *p = calloc(1, sizeof *p);
  if (p == NULL || ot_configure(cfg, p) != PH_OK) {
    if (p == NULL) ph_config_error(cfg, NULL, "out of memory");
    ot_provider_free(p);
    curl_global_cleanup();
    return PH_ERROR;
  }
  *state = p;
  return PH_OK;
}

static void ot_shutdown(void *state) {
  ot_provider_free(state);
  curl_global_cleanup();
}

/* ---------------------------------------------------------------- the middleware --- */

typedef struct ot_mw {
  ot_provider *p;
  size_t scope;
  int registered; /* counted in p->users */
} ot_mw;

/* What the request phase leaves for the response phase, on the instance's per-request slot. */
typedef struct ot_start {
  uint8_t trace_id[16], span_id[8], parent_id[8];
  uint8_t has_parent, sampled, has_tracestate, pad[5];
  int64_t real_ns, mono_ns;
  char tracestate[]; /* the incoming tracestate (with has_tracestate), NUL-terminated */
} ot_start;

static const char *const MW_OPTIONS[] = {"tracerName"};

static void ot_mw_destroy(void *self) {
  ot_mw *m = self;
  if (m == NULL) return;
  if (m->registered) {
    ot_provider *p = m->p;
    pthread_mutex_lock(&p->life);
    if (--p->users == 0) ot_stop_exporter(p); /* flushes what is queued, bounded */
    pthread_mutex_unlock(&p->life);
  }
  free(m);
}

static ph_status ot_mw_create(const ph_config *cfg, void **self) {
  ot_provider *p = ph_plugin_state(cfg);
  if (p == NULL) return ph_config_error(cfg, NULL, "the opentelemetry plugin is not initialised");
  ot_mw *m = calloc(1, sizeof *m);
  *self = m;
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  m->p = p;
  const char *w[1];
  ot_present(cfg, MW_OPTIONS, 1, w);
  const char *name = NULL;
  if (w[0] && ph_config_string(cfg, w[0], NULL, &name) != PH_OK) return PH_ERROR;
  if (name == NULL || *name == '\0') name = OT_DEFAULT_SCOPE;
  if (p->disabled) return PH_OK;

  char *copy = phu_strdup(name);
  if (copy == NULL) return ph_config_error(cfg, NULL, "out of memory");
  pthread_mutex_lock(&p->life);
  pthread_mutex_lock(&p->mu);
  size_t s = 0;
  while (s < p->n_scopes && strcmp(p->scopes[s], name) != 0) s++;
  if (s == p->n_scopes) {
    char **more = realloc(p->scopes, (p->n_scopes + 1) * sizeof *more);
    if (more == NULL) {
      pthread_mutex_unlock(&p->mu);
      free(copy);
      return ph_config_error(cfg, NULL, "out of memory");
    }
    p->scopes = more;
    p->scopes[p->n_scopes++] = copy;
    copy = NULL;
  }
  int rc = p->thread_started ? 0 : ot_start_exporter(p);
  pthread_mutex_unlock(&p->mu);
  if (rc == 0) p->users++;
  pthread_mutex_unlock(&p->life);
  free(copy);
  if (rc != 0)
    return ph_config_error(cfg, NULL, "could not start the exporter thread: %s", strerror(rc));
  m->scope = s;
  m->registered = 1;
  return PH_OK;
}

static int ot_unhex(const char *s, size_t n, uint8_t *out) {
  int nonzero = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int v;
    if (c >= '0' && c <= '9')
      v = c - '0';
    else if (c >= 'a' && c <= 'f')
      v = c - 'a' + 10;
    else
      return -1; /* W3C: lower-case hex only */
    if (i % 2 == 0)
      out[i / 2] = (uint8_t)(v << 4);
    else
      out[i / 2] |= (uint8_t)v;
    nonzero |= v;
  }
  return nonzero ? 0 : -1; /* all zero ids are invalid */
}

/* W3C traceparent: "<version>-<32 hex>-<16 hex>-<2 hex>", lower-case hex. Version 00 is
** exactly 55 characters; a later version (not ff) is read as 00 when its first 55
** characters have that shape and are the whole value or followed by '-' (W3C, "versioning"). */
static int ot_parse_traceparent(const char *h, ot_start *st) {
  if (h == NULL) return -1;
  size_t len = strlen(h);
  uint8_t version[1] = {0};
  if (len < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return -1;
  if (!(h[0] == '0' && h[1] == '0') && ot_unhex(h, 2, version) != 0) return -1;
  if (version[0] == 0xff) return -1;
  if (version[0] == 0 ? len != 55 : len > 55 && h[55] != '-') return -1;
  uint8_t flags[1];
  if (ot_unhex(h + 3, 32, st->trace_id) != 0 || ot_unhex(h + 36, 16, st->parent_id) != 0) return -1;
  if (h[53] == '0' && h[54] == '0')
    flags[0] = 0; /* ot_unhex refuses all zero */
  else if (ot_unhex(h + 53, 2, flags) != 0)
    return -1;
  st->has_parent = 1;
  st->sampled = flags[0] & 1;
  return 0;
}

static ph_next ot_on_request(void *self, ph_exchange *ex) {
  ot_mw *m = self;
  ot_provider *p = m->p;
  if (p->disabled) return PH_NEXT_CONTINUE;
  ot_start st;
  memset(&st, 0, sizeof st);
  const char *incoming = ph_header_get(ex, "traceparent");
  const char *tracestate = NULL;
  if (ot_parse_traceparent(incoming, &st) == 0) {
    tracestate = ph_header_get(ex, "tracestate");
  } else {
    memset(&st, 0, sizeof st);
    int zero;
    do {
      if (phu_random(st.trace_id, sizeof st.trace_id) != 0) goto no_random;
      zero = 1;
      for (size_t i = 0; i < sizeof st.trace_id; i++) zero &= st.trace_id[i] == 0;
    } while (zero);
    uint64_t low = 0;
    for (int i = 8; i < 16; i++) low = (low << 8) | st.trace_id[i];
    st.sampled = p->ratio >= 1.0 || (low >> 1) < p->ratio_bound;
    if (incoming != NULL)
      ph_log(ex, PH_LOG_DEBUG,
             "opentelemetry: invalid traceparent "
             "ignored: a new trace starts");
    ph_header_remove(ex, "tracestate"); /* belongs to the context we could not parse */
  }
  do {
    if (phu_random(st.span_id, sizeof st.span_id) != 0) goto no_random;
  } while (memcmp(st.span_id, "\0\0\0\0\0\0\0\0", 8) == 0);
  struct timespec real, mono;
  clock_gettime(CLOCK_REALTIME, &real);
  clock_gettime(CLOCK_MONOTONIC, &mono);
  st.real_ns = (int64_t)real.tv_sec * 1000000000 + real.tv_nsec;
  st.mono_ns = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec;

  char trace_hex[33], span_hex[17], traceparent[56];
  ot_hex(st.trace_id, 16, trace_hex);
  ot_hex(st.span_id, 8, span_hex);
  snprintf(traceparent, sizeof traceparent, "00-%s-%s-%s", trace_hex, span_hex,
           st.sampled ? "01" : "00");
  size_t ts_len = tracestate != NULL ? strlen(tracestate) : 0;
  ot_start *kept = malloc(sizeof *kept + ts_len + 1);
  if (kept == NULL) {
    ph_error(ex, "opentelemetry: out of memory");
    return PH_NEXT_ERROR;
  }
  *kept = st;
  kept->has_tracestate = tracestate != NULL;
  memcpy(kept->tracestate, tracestate ? tracestate : "", ts_len + 1); /* before headers change */
  ph_status rc = ph_slot_set(ex, kept, free);
  if (rc != PH_OK) free(kept);
  if (rc == PH_OK) rc = ph_header_set(ex, "traceparent", traceparent);
  if (rc == PH_OK) rc = ph_local_set(ex, "otel.traceId", trace_hex, 32);
  if (rc == PH_OK) rc = ph_local_set(ex, "otel.spanId", span_hex, 16);
  if (rc == PH_OK) rc = ph_local_set(ex, "otel.traceFlags", st.sampled ? "01" : "00", 2);
  if (rc == PH_OK) rc = ph_local_set(ex, p->ctx_key, traceparent, 55);
  return rc == PH_OK ? PH_NEXT_CONTINUE : PH_NEXT_ERROR;
no_random:
  ph_error(ex, "opentelemetry: the kernel's random generator failed");
  return PH_NEXT_ERROR;
}

static const char *const KNOWN_METHODS[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                            "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"};

/* server.address and server.port from a Host header ("name", "name:port", "[v6]:port"). */
static void ot_host_attrs(json_t *attrs, const char *host) {
  if (host == NULL || *host == '\0' || strlen(host) > 255) return;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", host);
  char *port = NULL;
  if (buf[0] == '[') {
    char *end = strchr(buf, ']');
    if (end == NULL) return;
    *end = '\0';
    if (end[1] == ':') port = end + 2;
    memmove(buf, buf + 1, strlen(buf + 1) + 1);
  } else {
    char *colon = strchr(buf, ':');
    if (colon != NULL && strchr(colon + 1, ':') == NULL) {
      *colon = '\0';
      port = colon + 1;
    }
  }
  ot_attr_str(attrs, "server.address", buf);
  if (port != NULL && *port != '\0' && strlen(port) <= 5) {
    long v = 0;
    for (const char *c = port; *c; c++) {
      if (*c < '0' || *c > '9') return;
      v = v * 10 + (*c - '0');
    }
    if (v > 0 && v < 65536) ot_attr_int(attrs, "server.port", v);
  }
}

static ph_status ot_on_response(void *self, ph_exchange *ex) {
  ot_mw *m = self;
  ot_provider *p = m->p;
  if (p->disabled) return PH_OK;
  const ot_start *kept = ph_slot_get(ex);
  if (kept == NULL || !kept->sampled) return PH_OK; /* the request hook did not run */
  ot_start st = *kept;
  char *tracestate = kept->has_tracestate ? phu_strdup(kept->tracestate) : NULL;
  /* Used up (released now): the same instance twice in one chain must not export this span
  ** twice. */
  ph_slot_set(ex, NULL, NULL);
  struct timespec mono;
  clock_gettime(CLOCK_MONOTONIC, &mono);
  int64_t elapsed = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec - st.mono_ns;
  if (elapsed < 0) elapsed = 0;
  int64_t end_ns = st.real_ns + elapsed; /* monotonic duration: immune to clock steps */

  char trace_hex[33], span_hex[17], parent_hex[17], start_s[24], end_s[24];
  ot_hex(st.trace_id, 16, trace_hex);
  ot_hex(st.span_id, 8, span_hex);
  ot_hex(st.parent_id, 8, parent_hex);
  snprintf(start_s, sizeof start_s, "%" PRId64, st.real_ns);
  snprintf(end_s, sizeof end_s, "%" PRId64, end_ns);
  const char *method = ph_method(ex), *route = ph_route_name(ex);
  int status = ph_http_status(ex);
  int known = 0;
  for (size_t i = 0; i < sizeof KNOWN_METHODS / sizeof *KNOWN_METHODS; i++)
    known |= strcmp(method, KNOWN_METHODS[i]) == 0;
  const char *name = route != NULL && *route != '\0' ? route : known ? method : "HTTP";

  json_t *span = json_object(), *attrs = json_array();
  if (span == NULL || attrs == NULL) {
    json_decref(span);
    json_decref(attrs);
    free(tracestate);
    ph_error(ex, "opentelemetry: out of memory");
    return PH_ERROR;
  }
  ot_attr_str(attrs, "http.request.method", known ? method : "_OTHER");
  if (!known) ot_attr_str(attrs, "http.request.method_original", method);
  ot_attr_str(attrs, "url.path", ph_path(ex));
  ot_attr_str(attrs, "plughost.route", route);
  if (status > 0) ot_attr_int(attrs, "http.response.status_code", status);
  ot_attr_str(attrs, "client.address", ph_client_ip(ex));
  ot_host_attrs(attrs, ph_header_get(ex, "Host"));
  ot_attr_str(attrs, "user_agent.original", ph_header_get(ex, "User-Agent"));
  size_t body_len = 0;
  ph_body(ex, &body_len);
  if (body_len > 0) ot_attr_int(attrs, "http.request.body.size", (int64_t)body_len);
  ph_resp_body(ex, &body_len);
  ot_attr_int(attrs, "http.response.body.size", (int64_t)body_len);
  if (status >= 500 || status == 0) {
    char type[16];
    snprintf(type, sizeof type, "%d", status);
    ot_attr_str(attrs, "error.type", status == 0 ? "_OTHER" : type);
  }

  json_object_set_new(span, "traceId", json_string(trace_hex));
  json_object_set_new(span, "spanId", json_string(span_hex));
  if (tracestate != NULL) json_object_set_new(span, "traceState", ot_jstr(tracestate));
  if (st.has_parent) json_object_set_new(span, "parentSpanId", json_string(parent_hex));
  json_object_set_new(span, "flags",
                      json_integer((json_int_t)(st.sampled | OT_FLAG_HAS_IS_REMOTE |
                                                (st.has_parent ? OT_FLAG_IS_REMOTE : 0))));
  json_object_set_new(span, "name", ot_jstr(name));
  json_object_set_new(span, "kind", json_integer(OT_KIND_SERVER));
  json_object_set_new(span, "startTimeUnixNano", json_string(start_s));
  json_object_set_new(span, "endTimeUnixNano", json_string(end_s));
  json_object_set_new(span, "attributes", attrs);
  if (status >= 500 || status == 0)
    json_object_set_new(span, "status", json_pack("{s:i}", "code", OT_STATUS_ERROR));
  else
    json_object_set_new(span, "status", json_object());
  free(tracestate);
  ot_enqueue(p, span, m->scope);
  return PH_OK;
}

/* The options of the plugin's config and of an OpenTelemetryMiddleware (Seam's names); the
** host checks every config against them before ot_init and ot_mw_create run, which keep their
** own checks (URLs, header names, batchSize within queueSize, endpoint with useOTLP). */
static const char *const ot_providers[] = {"", "default", NULL};

static const ph_option ot_provider_options[] = {
    PH_OPTION(PH_OPTION_STRING, "serviceName", "plughost",
              "the resource's service.name ($OTEL_SERVICE_NAME when unset)"),
    PH_OPTION(PH_OPTION_BOOL, "useOTLP", "false",
              "true: spans are POSTed to the collector (the default when endpoint is set); "
              "false: one OTLP JSON line per batch on stdout"),
    PH_OPTION(PH_OPTION_BOOL, "disableTraces", "false", "true: the middleware does nothing"),
    PH_OPTION(PH_OPTION_BOOL, "disableMetrics", "false",
              "accepted for Seam compatibility; no metrics are exported"),
    PH_OPTION(PH_OPTION_BOOL, "disableLogs", "false",
              "accepted for Seam compatibility; no logs are exported"),
    PH_OPTION(PH_OPTION_STRING, "endpoint", OT_DEFAULT_ENDPOINT,
              "the collector's base http(s):// URL; /v1/traces is appended "
              "($OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT when unset)"),
    PH_OPTION(PH_OPTION_MAP, "headers", NULL,
              "extra headers on every export (header name -> value)", .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_DURATION, "timeout", "10s", "one export, connecting included",
              .flags = PH_OPTION_MIN, .min = 0.001),
    PH_OPTION(PH_OPTION_INT, "batchSize", "512",
              "spans sent in one request (at most queueSize; queueSize when smaller)",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 1, .max = OT_MAX_QUEUE),
    PH_OPTION(PH_OPTION_DURATION, "exportInterval", "5s",
              "how long a partial batch waits before it is sent", .flags = PH_OPTION_MIN,
              .min = 0.001),
    PH_OPTION(PH_OPTION_INT, "queueSize", "2048",
              "spans that may wait for the exporter; beyond it spans are dropped and counted",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 1, .max = OT_MAX_QUEUE),
    PH_OPTION(PH_OPTION_FLOAT, "samplingRatio", "1.0",
              "share of new traces recorded, decided from the trace id (a parent's sampled "
              "flag wins)",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 0, .max = 1),
    PH_OPTION(PH_OPTION_DURATION, "shutdownTimeout", "5s",
              "at shutdown, how long the queued spans may take to be exported"),
    PH_OPTIONS_END};

static const ph_option ot_plugin_options[] = {
    PH_OPTION(PH_OPTION_ENUM, "provider", "",
              "the tracer provider: only the default one exists (\"\" or default)",
              .choices = ot_providers),
    PH_OPTION(PH_OPTION_STRING, "contextTracerKey", OT_DEFAULT_CTX_KEY,
              "the per-request local that receives the request span's traceparent"),
    PH_OPTION(PH_OPTION_MAP, "providerConfig", "{}", "the default provider's options",
              .fields = ot_provider_options),
    PH_OPTIONS_END};

static const ph_option ot_middleware_options[] = {
    PH_OPTION(PH_OPTION_STRING, "tracerName", OT_DEFAULT_SCOPE,
              "the instrumentation scope name of this middleware's spans (the exporter's "
              "options go in the plugin's providerConfig)"),
    PH_OPTIONS_END};

static const ph_middleware_type ot_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.opentelemetry.middlewares.OpenTelemetryMiddleware",
    .description =
        "W3C traceparent propagation and one SERVER span per request, exported "
        "over OTLP/HTTP JSON by a background thread",
    .create = ot_mw_create,
    .destroy = ot_mw_destroy,
    .on_request = ot_on_request,
    .on_response = ot_on_response,
    .options = ot_middleware_options,
};

static const ph_middleware_type *const ot_middlewares[] = {&ot_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "opentelemetry", .version = OT_VERSION,
                 .description =
                     "OpenTelemetry tracing: W3C Trace Context and OTLP/HTTP "
                     "export (Seam's opentelemetry plugin)",
                 .init = ot_init, .shutdown = ot_shutdown, .middlewares = ot_middlewares,
                 .options = ot_plugin_options);
