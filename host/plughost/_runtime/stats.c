/* The runtime's counters for the host's metrics (see stats.h). */
#include <string.h>
#include <time.h>

#include "stats.h"

static const double latency_bounds[RT_LATENCY_BOUNDS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

/* Whether requests are counted: off until the host turns metrics on (written once at start,
** read by every request: an atomic, relaxed). */
static atomic_bool enabled;

void rt_stats_enable(int on) {
  atomic_store_explicit(&enabled, on != 0, memory_order_relaxed);
}

bool rt_stats_enabled(void) {
  return atomic_load_explicit(&enabled, memory_order_relaxed);
}

uint64_t rt_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

bool rt_stats_sample(void) {
  static _Thread_local unsigned turn; /* per thread: no shared state */
  return turn++ % RT_TIMING_EVERY == 0;
}

static uint32_t method_index(const char *m) {
  static const char *const known[RT_STAT_METHODS - 1] = {"GET",    "HEAD",  "POST",   "PUT",
                                                         "DELETE", "PATCH", "OPTIONS"};
  for (uint32_t i = 0; i < RT_STAT_METHODS - 1; i++)
    if (strcmp(m, known[i]) == 0) return i;
  return RT_STAT_METHODS - 1;
}

void rt_stats_answer(rt_answer_stats *s, const char *method, int status, uint64_t elapsed_ns) {
  if (!s) return;
  uint32_t key = (method_index(method ? method : "") + 1) << 16 | (uint32_t)(status & 0xffff);
  size_t start = (key * 2654435761u) % RT_STAT_PAIRS, i = start;
  for (;;) {
    uint32_t seen = atomic_load_explicit(&s->pairs[i], memory_order_acquire);
    if (seen == 0) {
      uint32_t empty = 0;
      if (atomic_compare_exchange_strong(&s->pairs[i], &empty, key))
        seen = key;
      else
        seen = empty; /* another thread took the slot first: it holds `empty` now */
    }
    if (seen == key) {
      atomic_fetch_add_explicit(&s->counts[i], 1, memory_order_relaxed);
      break;
    }
    i = (i + 1) % RT_STAT_PAIRS;
    if (i == start) {
      atomic_fetch_add_explicit(&s->overflow, 1, memory_order_relaxed);
      break;
    }
  }
  double seconds = (double)elapsed_ns / 1e9;
  size_t b = 0;
  while (b < RT_LATENCY_BOUNDS && seconds > latency_bounds[b]) b++;
  atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->latency_ns, elapsed_ns, memory_order_relaxed);
}

const double *rt_latency_bounds(void) {
  return latency_bounds;
}

size_t rt_stats_pairs(const rt_answer_stats *s, uint32_t *methods, uint32_t *statuses,
                      uint64_t *counts, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < RT_STAT_PAIRS && n < cap; i++) {
    uint32_t key = atomic_load_explicit(&s->pairs[i], memory_order_acquire);
    if (key == 0) continue;
    methods[n] = (key >> 16) - 1;
    statuses[n] = key & 0xffff;
    counts[n] = atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    n++;
  }
  return n;
}

void rt_stats_latency(const rt_answer_stats *s, uint64_t *buckets, uint64_t *sum_ns,
                      uint64_t *overflow) {
  for (size_t b = 0; b <= RT_LATENCY_BOUNDS; b++)
    buckets[b] = atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
  *sum_ns = atomic_load_explicit(&s->latency_ns, memory_order_relaxed);
  *overflow = atomic_load_explicit(&s->overflow, memory_order_relaxed);
}

void rt_element_times(const rt_element_stats *s, uint64_t *out) {
  for (int p = 0; p < 2; p++) {
    out[2 * p] = atomic_load_explicit(&s->calls[p], memory_order_relaxed);
    out[2 * p + 1] = atomic_load_explicit(&s->ns[p], memory_order_relaxed);
  }
}
