/* Plugins' metrics (see metrics.h and ph_metric_spec in plugin.h). Declaring takes the
** host's metrics lock (during init and create only); updating is lock-free: doubles are kept
** as their bits in atomic 64-bit words, added to with compare-and-swap. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "util.h"

static const double default_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

static uint64_t bits_of(double v) {
  uint64_t b;
  memcpy(&b, &v, sizeof b);
  return b;
}

static double double_of(uint64_t b) {
  double v;
  memcpy(&v, &b, sizeof v);
  return v;
}

static void add_double(_Atomic uint64_t *word, double delta) {
  uint64_t old = atomic_load_explicit(word, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(word, &old, bits_of(double_of(old) + delta),
                                                memory_order_relaxed, memory_order_relaxed)) {}
}

/* [a-z][a-z0-9_]*, 1 to max characters. */
static int valid_name(const char *s, size_t max) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > max || !(s[0] >= 'a' && s[0] <= 'z')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
  return 1;
}

static int printable(const char *s, size_t min, size_t max) {
  size_t n = s ? strlen(s) : 0;
  if (n < min || n > max) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
  return 1;
}

static int same(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void metric_free(ph_metric *m) {
  if (!m) return;
  free(m->family);
  free(m->help);
  free(m->instance);
  free(m->label);
  free(m->label_value);
  free(m->bounds);
  free((void *)m->buckets);
  free(m);
}

/* Why `spec` cannot be declared as it is, or NULL. */
static const char *spec_problem(const ph_metric_spec *spec, const double *bounds, size_t n) {
  if (!spec || spec->size < offsetof(ph_metric_spec, n_buckets) + sizeof(size_t))
    return "needs a ph_metric_spec with its size set";
  if (spec->kind < PH_METRIC_COUNTER || spec->kind > PH_METRIC_HISTOGRAM)
    return "has an unknown kind: use PH_METRIC_COUNTER, PH_METRIC_GAUGE or PH_METRIC_HISTOGRAM";
  if (!valid_name(spec->name, 64))
    return "needs a name of 1 to 64 characters from [a-z0-9_], starting with a letter";
  if (!printable(spec->help, 1, 256)) return "needs a help text of 1 to 256 printable bytes";
  if (spec->label) {
    if (!valid_name(spec->label, 64) || strcmp(spec->label, "instance") == 0 ||
        strcmp(spec->label, "le") == 0 || strcmp(spec->label, "quantile") == 0)
      return "has a label name that is not [a-z][a-z0-9_]* or is one the host uses "
             "(instance, le, quantile)";
    if (!printable(spec->label_value, 1, 128))
      return "needs a label_value of 1 to 128 printable bytes with its label";
  } else if (spec->label_value) {
    return "has a label_value without a label";
  }
  if (spec->kind == PH_METRIC_HISTOGRAM) {
    if (n == 0 || n > RT_METRIC_BUCKETS_MAX) return "needs 1 to 32 buckets";
    for (size_t i = 0; i < n; i++)
      if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
        return "needs finite buckets in ascending order";
  }
  return NULL;
}

ph_metric *rt_api_metric_declare(const ph_config *node, const ph_metric_spec *spec) {
  rt_ctx *ctx = rt_ctx_of(node);
  rt_host *host = ctx->host;
  const char *name = spec && spec->size >= offsetof(ph_metric_spec, label) ? spec->name : NULL;
  const double *bounds = default_bounds;
  size_t n = sizeof default_bounds / sizeof *default_bounds;
  if (spec && spec->kind == PH_METRIC_HISTOGRAM && spec->buckets) {
    bounds = spec->buckets;
    n = spec->n_buckets;
  }
  const char *why = spec_problem(spec, bounds, n);
  if (why) {
    rt_api_config_error(node, NULL, "metric '%s' %s", name && printable(name, 1, 64) ? name : "?",
                        why);
    return NULL;
  }
  const char *plugin = ctx->plugin_name ? ctx->plugin_name : "plugin";
  const char *instance = ctx->instance_name ? ctx->instance_name : "";
  char *family = rt_format("plughost_plugin_%s_%s", plugin, spec->name);
  if (!family) {
    rt_api_config_error(node, NULL, "out of memory declaring metric '%s'", spec->name);
    return NULL;
  }
  const char *label = spec->label, *label_value = spec->label_value;
  pthread_mutex_lock(&host->metrics_lock);
  ph_metric *found = NULL;
  const char *conflict = NULL;
  for (size_t i = 0; i < host->n_metrics && !found && !conflict; i++) {
    ph_metric *m = host->metrics[i];
    if (strcmp(m->family, family) != 0) continue;
    if ((int)m->kind != (int)spec->kind || strcmp(m->help, spec->help) != 0 ||
        !same(m->label, label) || m->n_buckets != (spec->kind == PH_METRIC_HISTOGRAM ? n : 0) ||
        (m->n_buckets && memcmp(m->bounds, bounds, n * sizeof *bounds) != 0))
      conflict =
          "was declared before with another kind, help, label name or buckets: one "
          "name is one metric";
    else if (strcmp(m->instance, instance) == 0 && same(m->label_value, label_value))
      found = m;
  }
  if (!found && !conflict && host->n_metrics >= RT_METRICS_MAX)
    conflict = "is one too many: a host keeps at most 4096 metrics";
  if (!found && !conflict && host->n_metrics == host->cap_metrics) {
    size_t cap = host->cap_metrics ? 2 * host->cap_metrics : 16;
    ph_metric **grown = realloc(host->metrics, cap * sizeof *grown);
    if (grown) {
      host->metrics = grown;
      host->cap_metrics = cap;
    } else {
      conflict = "cannot be kept: out of memory";
    }
  }
  if (!found && !conflict) {
    ph_metric *m = calloc(1, sizeof *m);
    if (m) {
      m->head.api = rt_host_api();
      m->head.host_private = host;
      m->kind = (ph_metric_kind)spec->kind;
      m->family = family;
      family = NULL;
      m->help = rt_strdup(spec->help);
      m->instance = rt_strdup(instance);
      m->label = rt_strdup(label);
      m->label_value = rt_strdup(label_value);
      if (spec->kind == PH_METRIC_HISTOGRAM) {
        m->n_buckets = n;
        m->bounds = malloc(n * sizeof *m->bounds);
        m->buckets = calloc(n + 1, sizeof *m->buckets);
        if (m->bounds) memcpy(m->bounds, bounds, n * sizeof *bounds);
      }
    }
    if (!m || !m->help || !m->instance || (label && (!m->label || !m->label_value)) ||
        (m->n_buckets && (!m->bounds || !m->buckets))) {
      metric_free(m);
      conflict = "cannot be kept: out of memory";
    } else {
      host->metrics[host->n_metrics++] = m;
      found = m;
    }
  }
  pthread_mutex_unlock(&host->metrics_lock);
  if (conflict) rt_api_config_error(node, NULL, "metric '%s' %s", spec->name, conflict);
  free(family);
  return conflict ? NULL : found;
}

void rt_api_metric_add(ph_metric *m, double value) {
  if (!m || !isfinite(value)) return;
  if (m->kind == PH_METRIC_COUNTER && value >= 0) add_double(&m->value, value);
  if (m->kind == PH_METRIC_GAUGE) add_double(&m->value, value);
}

void rt_api_metric_set(ph_metric *m, double value) {
  if (m && m->kind == PH_METRIC_GAUGE && isfinite(value))
    atomic_store_explicit(&m->value, bits_of(value), memory_order_relaxed);
}

void rt_api_metric_observe(ph_metric *m, double value) {
  if (!m || m->kind != PH_METRIC_HISTOGRAM || isnan(value)) return;
  size_t b = 0;
  while (b < m->n_buckets && value > m->bounds[b]) b++;
  atomic_fetch_add_explicit(&m->buckets[b], 1, memory_order_relaxed);
  add_double(&m->value, value);
}

size_t rt_metrics_count(rt_host *host) {
  pthread_mutex_lock(&host->metrics_lock);
  size_t n = host->n_metrics;
  pthread_mutex_unlock(&host->metrics_lock);
  return n;
}

static ph_metric *metric_at(rt_host *host, size_t i) {
  pthread_mutex_lock(&host->metrics_lock);
  ph_metric *m = i < host->n_metrics ? host->metrics[i] : NULL;
  pthread_mutex_unlock(&host->metrics_lock);
  return m;
}

int rt_metric_info_at(rt_host *host, size_t i, rt_metric_info *out) {
  const ph_metric *m = metric_at(host, i);
  if (!m) return -1;
  *out = (rt_metric_info){.kind = (int)m->kind,
                          .family = m->family,
                          .help = m->help,
                          .instance = m->instance,
                          .label = m->label,
                          .label_value = m->label_value,
                          .n_buckets = m->n_buckets,
                          .bounds = m->bounds};
  return 0;
}

double rt_metric_read(rt_host *host, size_t i, uint64_t *buckets) {
  ph_metric *m = metric_at(host, i);
  if (!m) return 0;
  for (size_t b = 0; buckets && m->buckets && b < m->n_buckets + 1; b++)
    buckets[b] = atomic_load_explicit(&m->buckets[b], memory_order_relaxed);
  return double_of(atomic_load_explicit(&m->value, memory_order_relaxed));
}

void rt_metrics_free(rt_host *host) {
  for (size_t i = 0; i < host->n_metrics; i++) metric_free(host->metrics[i]);
  free(host->metrics);
  host->metrics = NULL;
  host->n_metrics = host->cap_metrics = 0;
}
