/* Plugins' metrics (ABI 1.2, ph_metric_declare): the host's registry of them, and how Python
** reads it (plughost.metrics.gateway_stats copies them into Prometheus metrics). */
#ifndef PLUGHOST_METRICS_H
#define PLUGHOST_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "runtime.h"

/* The most metrics one host keeps (every plugin and instance together). */
#define RT_METRICS_MAX 4096
/* The most buckets a histogram has (besides +Inf). */
#define RT_METRIC_BUCKETS_MAX 32

struct ph_metric {
  ph_handle_head head; /* host_private: the rt_host */
  ph_metric_kind kind;
  char *family;      /* plughost_plugin_<plugin>_<name>; owned */
  char *help;        /* owned */
  char *instance;    /* the instance's name, "" for the plugin's own; owned */
  char *label;       /* the extra label's name, or NULL; owned */
  char *label_value; /* its value, or NULL; owned */
  size_t n_buckets;
  double *bounds;             /* owned */
  _Atomic uint64_t *buckets;  /* n_buckets + 1 counts (not cumulative); owned */
  _Atomic uint64_t value;     /* counter or gauge: a double's bits; histogram: the sum's */
};

/* What Python reads of the i-th metric (pointers owned by the host, valid until it is freed). */
typedef struct rt_metric_info {
  int kind;
  const char *family, *help, *instance, *label, *label_value;
  size_t n_buckets;
  const double *bounds;
} rt_metric_info;

size_t rt_metrics_count(rt_host *host);
/* Fills `out` for the i-th metric; 0, or -1 past the end. */
int rt_metric_info_at(rt_host *host, size_t i, rt_metric_info *out);
/* The i-th metric's value (a histogram's sum) and, for a histogram, its n_buckets + 1 counts
** into `buckets` (left alone for other kinds; may be NULL). */
double rt_metric_read(rt_host *host, size_t i, uint64_t *buckets);
/* Frees every metric of the host (when the host is freed). */
void rt_metrics_free(rt_host *host);

ph_metric *rt_api_metric_declare(const ph_config *node, const ph_metric_spec *spec);
void rt_api_metric_add(ph_metric *m, double value);
void rt_api_metric_set(ph_metric *m, double value);
void rt_api_metric_observe(ph_metric *m, double value);

#endif
