/*
** httpfw: forwards requests to upstream HTTP services (Seam's httpfw plugin, in C).
**
** plugins.httpfw.actions.HttpAction          one upstream: upstreamEndpoint
** plugins.httpfw.actions.BalancerHttpAction  round-robin over upstreamEndpoints, skipping
**                                            endpoints that the instance's health-check
**                                            thread found refusing connections
**
** Neither action does network I/O on a request: each builds the upstream URL, adds the
** X-Forwarded-* headers and hands the request to the host with ph_upstream(); the host
** performs it asynchronously (502 when the upstream cannot be reached, 504 on timeout) and
** drops hop-by-hop headers both ways. Options, the URL rule and the health checks are
** described in docs/plugins/httpfw.md and declared below (http_options, balancer_options;
** ABI 1.2): the host refuses unknown options and wrong kinds before create runs.
**
** Upstream URL: Seam's rule (libs/helpers GetTargetUrl), in phu_forward.h.
*/
#define _POSIX_C_SOURCE 200809L
#include "plugin.h"
#include "phu.h"
#include "phu_forward.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FW_MAX_ENDPOINTS 64 /* one bit each in the balancer's health mask */
#define FW_DEFAULT_TIMEOUT_MS 30000
#define FW_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define FW_DEFAULT_HC_INTERVAL_MS 1000
#define FW_DEFAULT_HC_TIMEOUT_MS 500

/* ------------------------------------------------------------------ options */

typedef struct fw_common {
  int64_t timeout_ms, connect_timeout_ms;
  const char *proto; /* forwardedProto: host-owned, lives until destroy */
  int trust;         /* trustForwardedHeaders */
} fw_common;

enum {
  O_ENDPOINT,
  O_ENDPOINTS,
  O_TIMEOUT,
  O_CONNECT_TIMEOUT,
  O_PROTO,
  O_TRUST,
  O_HC_INTERVAL,
  O_HC_TIMEOUT,
  O_COUNT
};
static const char *const fw_names[O_COUNT] = {
    "upstreamEndpoint",    "upstreamEndpoints", "timeout",
    "connectTimeout",      "forwardedProto",    "trustForwardedHeaders",
    "healthCheckInterval", "healthCheckTimeout"};

/* w[k] = fw_names[k] when the instance's config holds that option, written in any case (the
** getters look keys up ignoring case, as Seam does), else NULL. Unknown options, and options
** of the other action, never get here: each type's schema (http_options, balancer_options)
** has refused them. */
static void fw_options(const ph_config *cfg, const char *w[O_COUNT]) {
  for (size_t k = 0; k < O_COUNT; k++)
    w[k] = ph_config_kind(cfg, fw_names[k]) != PH_CONFIG_MISSING ? fw_names[k] : NULL;
}

static ph_status fw_positive_duration(const ph_config *cfg, const char *key, int64_t dflt,
                                      int64_t *out) {
  if (!key) {
    *out = dflt;
    return PH_OK;
  }
  if (ph_config_duration_ms(cfg, key, dflt, out) != PH_OK) return PH_ERROR;
  if (*out <= 0)
    return ph_config_error(cfg, key, "must be a positive duration such as 500ms or 30s");
  return PH_OK;
}

static ph_status fw_common_parse(const ph_config *cfg, const char *w[O_COUNT], fw_common *c) {
  if (fw_positive_duration(cfg, w[O_TIMEOUT], FW_DEFAULT_TIMEOUT_MS, &c->timeout_ms) != PH_OK ||
      fw_positive_duration(cfg, w[O_CONNECT_TIMEOUT], FW_DEFAULT_CONNECT_TIMEOUT_MS,
                           &c->connect_timeout_ms) != PH_OK)
    return PH_ERROR;
  if (phu_forwarded_proto(cfg, w[O_PROTO], &c->proto) != PH_OK) return PH_ERROR;
  c->trust = 0;
  if (w[O_TRUST] && ph_config_bool(cfg, w[O_TRUST], 0, &c->trust) != PH_OK) return PH_ERROR;
  return PH_OK;
}

/* ------------------------------------------------------------------ forwarding */

static ph_next fw_forward(const fw_common *c, const phu_endpoint *e, ph_exchange *ex) {
  if (phu_forwarded(ex, c->proto, c->trust) != PH_OK) return PH_NEXT_ERROR;
  phu_buf url = {0};
  if (phu_target_url(e, ex, &url) != PH_OK) {
    free(url.p);
    return PH_NEXT_ERROR;
  }
  ph_upstream_spec spec = {.size = sizeof spec,
                           .url = url.p,
                           .connect_timeout_ms = c->connect_timeout_ms,
                           .timeout_ms = c->timeout_ms};
  ph_status r = ph_upstream(ex, &spec); /* the host copies the spec */
  free(url.p);
  return r == PH_OK ? PH_NEXT_UPSTREAM : PH_NEXT_ERROR;
}

/* ------------------------------------------------------------------ HttpAction */

#define FW_FORWARDED_HELP "Requests sent on to an upstream endpoint"

typedef struct fw_http {
  fw_common c;
  phu_endpoint e;
  ph_metric *forwarded; /* plughost_plugin_httpfw_forwarded_total{endpoint=...} */
} fw_http;

static void http_destroy(void *self) {
  fw_http *h = self;
  if (!h) return;
  phu_endpoint_free(&h->e);
  free(h);
}

static ph_status http_create(const ph_config *cfg, void **self) {
  const char *w[O_COUNT], *url = NULL;
  fw_http *h = calloc(1, sizeof *h);
  if (!h) return ph_config_error(cfg, NULL, "out of memory");
  *self = h;
  fw_options(cfg, w);
  if (fw_common_parse(cfg, w, &h->c) != PH_OK) return PH_ERROR;
  if (w[O_ENDPOINT] && ph_config_string(cfg, w[O_ENDPOINT], NULL, &url) != PH_OK) return PH_ERROR;
  if (!url || !*url)
    return ph_config_error(cfg, w[O_ENDPOINT] ? w[O_ENDPOINT] : "upstreamEndpoint",
                           "is required: the upstream's URL, e.g. http://localhost:8080");
  if (phu_endpoint_parse(cfg, w[O_ENDPOINT], "", url, 0, &h->e) != PH_OK) return PH_ERROR;
  h->forwarded = phu_counter(cfg, "forwarded", FW_FORWARDED_HELP, "endpoint", h->e.base);
  return h->forwarded ? PH_OK : PH_ERROR;
}

static ph_next http_handle(void *self, ph_exchange *ex) {
  fw_http *h = self;
  ph_metric_add(h->forwarded, 1);
  return fw_forward(&h->c, &h->e, ex);
}

/* ------------------------------------------------------------ BalancerHttpAction */

typedef struct fw_balancer {
  fw_common c;
  size_t n;
  phu_endpoint *e;
  _Atomic uint64_t healthy;  /* bit i: endpoint i accepted a TCP connection at its last check */
  _Atomic uint64_t reported; /* the mask as last logged (on a request's exchange) */
  atomic_uint_fast64_t next; /* round-robin counter */
  int64_t interval_ms, hc_timeout_ms;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stopping, mu_ready, cv_ready, thread_started;
  atomic_int halt; /* set with stopping: read between probes, without the lock */
  pthread_t checker;
  ph_metric **forwarded; /* per endpoint: requests sent to it */
  ph_metric **up;        /* per endpoint: 1 when its last health check passed, else 0 */
} fw_balancer;

/* Whether host:port accepts a TCP connection within timeout_ms (any resolved address). */
static int fw_probe(const phu_endpoint *e, int64_t timeout_ms) {
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (getaddrinfo(e->host, e->port, &hints, &res) != 0) return 0;
  int ok = 0;
  for (struct addrinfo *a = res; a && !ok; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
      close(fd);
      continue;
    }
    int r = connect(fd, a->ai_addr, a->ai_addrlen);
    if (r == 0) {
      ok = 1;
    } else if (errno == EINPROGRESS) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      int pr;
      do pr = poll(&p, 1, (int)timeout_ms);
      while (pr < 0 && errno == EINTR);
      if (pr == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ok = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
      }
    }
    close(fd);
  }
  freeaddrinfo(res);
  return ok;
}

static void fw_deadline(struct timespec *ts, int64_t ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += (time_t)(ms / 1000);
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
}

static void *fw_checker_main(void *arg) {
  fw_balancer *b = arg;
  pthread_mutex_lock(&b->mu);
  while (!b->stopping) {
    pthread_mutex_unlock(&b->mu);
    uint64_t mask = 0;
    size_t i = 0;
    for (; i < b->n && !atomic_load(&b->halt); i++)
      if (fw_probe(&b->e[i], b->hc_timeout_ms)) mask |= (uint64_t)1 << i;
    if (i == b->n) { /* a full round only */
      atomic_store(&b->healthy, mask);
      for (size_t j = 0; j < b->n; j++) ph_metric_set(b->up[j], (mask >> j) & 1 ? 1.0 : 0.0);
    }
    struct timespec until;
    fw_deadline(&until, b->interval_ms);
    pthread_mutex_lock(&b->mu);
    while (!b->stopping && pthread_cond_timedwait(&b->cv, &b->mu, &until) != ETIMEDOUT) {}
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

static void balancer_destroy(void *self) {
  fw_balancer *b = self;
  if (!b) return;
  if (b->thread_started) {
    atomic_store(&b->halt, 1);
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->checker, NULL);
  }
  if (b->cv_ready) pthread_cond_destroy(&b->cv);
  if (b->mu_ready) pthread_mutex_destroy(&b->mu);
  for (size_t i = 0; i < b->n; i++) phu_endpoint_free(&b->e[i]);
  free(b->e);
  free(b->forwarded);
  free(b->up);
  free(b);
}

static ph_status balancer_create(const ph_config *cfg, void **self) {
  const char *w[O_COUNT];
  const ph_config *list = NULL;
  fw_balancer *b = calloc(1, sizeof *b);
  if (!b) return ph_config_error(cfg, NULL, "out of memory");
  *self = b;
  fw_options(cfg, w);
  if (fw_common_parse(cfg, w, &b->c) != PH_OK) return PH_ERROR;
  const char *key = w[O_ENDPOINTS] ? w[O_ENDPOINTS] : "upstreamEndpoints";
  if (w[O_ENDPOINTS] && ph_config_kind(cfg, key) != PH_CONFIG_NULL &&
      ph_config_kind(cfg, key) != PH_CONFIG_LIST)
    return ph_config_error(cfg, key,
                           "must be a list of URLs, e.g. [http://a:8080, "
                           "http://b:8080]");
  if (w[O_ENDPOINTS] && ph_config_child(cfg, key, &list) != PH_OK) return PH_ERROR;
  size_t n = list ? ph_config_len(list) : 0;
  if (n == 0)
    return ph_config_error(cfg, key,
                           "is required and must list at least one upstream URL, e.g. "
                           "[http://localhost:8081, http://localhost:8082]");
  if (n > FW_MAX_ENDPOINTS)
    return ph_config_error(cfg, key, "lists %zu endpoints: at most %d are supported", n,
                           FW_MAX_ENDPOINTS);
  b->e = calloc(n, sizeof *b->e);
  b->forwarded = calloc(n, sizeof *b->forwarded);
  b->up = calloc(n, sizeof *b->up);
  if (!b->e || !b->forwarded || !b->up) return ph_config_error(cfg, key, "out of memory");
  b->n = n;
  for (size_t i = 0; i < n; i++) {
    const ph_config *item = ph_config_at(list, i, NULL);
    const char *url = NULL;
    char what[48];
    snprintf(what, sizeof what, "entry %zu ", i + 1);
    if (!item || ph_config_kind(item, NULL) != PH_CONFIG_STRING ||
        ph_config_string(item, NULL, NULL, &url) != PH_OK || !url || !*url)
      return ph_config_error(cfg, key, "entry %zu must be a URL string", i + 1);
    if (phu_endpoint_parse(cfg, key, what, url, 0, &b->e[i]) != PH_OK) return PH_ERROR;
    ph_metric_spec up = {.size = sizeof up,
                         .kind = PH_METRIC_GAUGE,
                         .name = "endpoint_up",
                         .help = "1 when the endpoint passed its last health check, else 0",
                         .label = "endpoint",
                         .label_value = b->e[i].base};
    b->forwarded[i] = phu_counter(cfg, "forwarded", FW_FORWARDED_HELP, "endpoint", b->e[i].base);
    b->up[i] = ph_metric_declare(cfg, &up);
    if (!b->forwarded[i] || !b->up[i]) return PH_ERROR;
    ph_metric_set(b->up[i], 1.0); /* optimistic until the first check, as `healthy` */
  }
  if (w[O_HC_INTERVAL]) {
    if (ph_config_duration_ms(cfg, w[O_HC_INTERVAL], FW_DEFAULT_HC_INTERVAL_MS, &b->interval_ms) !=
        PH_OK)
      return PH_ERROR;
  } else {
    b->interval_ms = FW_DEFAULT_HC_INTERVAL_MS;
  }
  if (fw_positive_duration(cfg, w[O_HC_TIMEOUT], FW_DEFAULT_HC_TIMEOUT_MS, &b->hc_timeout_ms) !=
      PH_OK)
    return PH_ERROR;
  if (b->hc_timeout_ms > INT32_MAX) b->hc_timeout_ms = INT32_MAX;
  uint64_t all = n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1);
  atomic_init(&b->healthy, all); /* optimistic until the first check */
  atomic_init(&b->reported, all);
  atomic_init(&b->next, 0);
  atomic_init(&b->halt, 0);
  if (b->interval_ms == 0) return PH_OK; /* health checks disabled */

  pthread_condattr_t ca;
  if (pthread_mutex_init(&b->mu, NULL) != 0)
    return ph_config_error(cfg, NULL, "cannot create a mutex");
  b->mu_ready = 1;
  if (pthread_condattr_init(&ca) != 0) return ph_config_error(cfg, NULL, "out of memory");
  int err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (err == 0) err = pthread_cond_init(&b->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (err != 0) return ph_config_error(cfg, NULL, "cannot create a condition variable");
  b->cv_ready = 1;
  /* The checker runs with every signal blocked: signals go to the host's threads. */
  sigset_t all_signals, old;
  sigfillset(&all_signals);
  pthread_sigmask(SIG_SETMASK, &all_signals, &old);
  err = pthread_create(&b->checker, NULL, fw_checker_main, b);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0)
    return ph_config_error(cfg, NULL, "cannot start the health-check thread: %s", strerror(err));
  b->thread_started = 1;
  return PH_OK;
}

/* Logs endpoints whose health changed since the last report (once, on one request). */
static void balancer_report(fw_balancer *b, ph_exchange *ex, uint64_t now) {
  uint64_t before = atomic_load(&b->reported);
  if (before == now || !atomic_compare_exchange_strong(&b->reported, &before, now)) return;
  for (size_t i = 0; i < b->n; i++) {
    uint64_t bit = (uint64_t)1 << i;
    if ((before ^ now) & bit)
      ph_log(ex, (now & bit) ? PH_LOG_INFO : PH_LOG_WARNING,
             "upstream %s %s (health check: TCP connect to %s:%s)", b->e[i].base,
             (now & bit) ? "is up again" : "is down, skipped", b->e[i].host, b->e[i].port);
  }
  if (now == 0)
    ph_log(ex, PH_LOG_WARNING,
           "every upstream endpoint failed its health check: trying all "
           "of them in turn");
}

static ph_next balancer_handle(void *self, ph_exchange *ex) {
  fw_balancer *b = self;
  uint64_t mask = atomic_load(&b->healthy);
  balancer_report(b, ex, mask);
  uint64_t turn = atomic_fetch_add(&b->next, 1);
  size_t pick;
  int up = 0;
  for (uint64_t m = mask; m; m &= m - 1) up++;
  if (up == 0) {
    pick = (size_t)(turn % b->n); /* all down: never refuse, try each in turn */
  } else {
    uint64_t k = turn % (uint64_t)up, m = mask;
    while (k--) m &= m - 1;
    pick = 0;
    while (!(m & ((uint64_t)1 << pick))) pick++;
  }
  ph_metric_add(b->forwarded[pick], 1);
  return fw_forward(&b->c, &b->e[pick], ex);
}

/* ------------------------------------------------------------------ the plugin */

/* The options of each action (Seam's names, and plughost's timeouts and health checks); the
** host checks every config against them before create runs, which keeps its own checks (the
** URL rule, positive timeouts, at most 64 endpoints). */
#define FW_COMMON_OPTIONS                                                            \
  PH_OPTION(PH_OPTION_DURATION, "timeout", "30s",                                    \
            "the longest the whole upstream exchange may take (504 past it)",        \
            .flags = PH_OPTION_MIN, .min = 0.001),                                   \
      PH_OPTION(PH_OPTION_DURATION, "connectTimeout", "5s",                          \
                "the longest the TCP (and TLS) connection to the upstream may take", \
                .flags = PH_OPTION_MIN, .min = 0.001),                               \
      PHU_FORWARDED_OPTIONS

static const ph_option http_options[] = {
    PH_OPTION(PH_OPTION_STRING, "upstreamEndpoint", NULL,
              "the upstream's absolute http:// or https:// URL", .flags = PH_OPTION_REQUIRED),
    FW_COMMON_OPTIONS, PH_OPTIONS_END};

static const ph_option balancer_options[] = {
    PH_OPTION(PH_OPTION_LIST, "upstreamEndpoints", NULL,
              "the upstreams' URLs, each following upstreamEndpoint's rules",
              .flags = PH_OPTION_REQUIRED | PH_OPTION_MIN | PH_OPTION_MAX, .min = 1,
              .max = FW_MAX_ENDPOINTS, .items = PH_OPTION_STRING),
    FW_COMMON_OPTIONS,
    PH_OPTION(PH_OPTION_DURATION, "healthCheckInterval", "1s",
              "how often the health-check thread probes every endpoint (0: no checks)"),
    PH_OPTION(PH_OPTION_DURATION, "healthCheckTimeout", "500ms",
              "how long one probe waits for a TCP connection before it marks the endpoint "
              "down",
              .flags = PH_OPTION_MIN, .min = 0.001),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_action_type http_action = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.httpfw.actions.HttpAction",
    .description = "forwards the request to upstreamEndpoint",
    .create = http_create,
    .destroy = http_destroy,
    .handle = http_handle,
    .options = http_options};
static const ph_action_type balancer_action = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.httpfw.actions.BalancerHttpAction",
    .description = "round-robin over the healthy upstreamEndpoints",
    .create = balancer_create,
    .destroy = balancer_destroy,
    .handle = balancer_handle,
    .options = balancer_options};
static const ph_action_type *const fw_actions[] = {&http_action, &balancer_action, NULL};

PH_PLUGIN_DEFINE(.name = "httpfw", .version = "1.0.0",
                 .description = "HTTP forwarding: HttpAction and BalancerHttpAction",
                 .actions = fw_actions, .options = no_options);
