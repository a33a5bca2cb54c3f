/* What the runtime counts for the host's metrics (plughost.metrics reads it about once a
** second): the answers of each chain by method and status with their latency, the time spent
** in each element's hooks (every RT_TIMING_EVERY-th request, per thread), and the failed
** calls of each storage. Counting is lock-free: relaxed atomic additions, and a compare-and-swap
** the first time a chain answers a (method, status) pair. */
#ifndef PLUGHOST_STATS_H
#define PLUGHOST_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "runtime.h"

/* The methods answers are counted by: GET HEAD POST PUT DELETE PATCH OPTIONS, and the rest. */
#define RT_STAT_METHODS 8
/* The (method, status) pairs a chain counts apart; answers of pairs past them count in
** `overflow` (a chain that answers more than 64 different pairs is not a normal one). */
#define RT_STAT_PAIRS 64
/* Upper bounds of the latency buckets, in seconds (the last bucket is +Inf). */
#define RT_LATENCY_BOUNDS 14
/* One request in this many (per thread) has its elements' hooks timed. */
#define RT_TIMING_EVERY 8

typedef struct rt_answer_stats {
  _Atomic uint32_t pairs[RT_STAT_PAIRS]; /* (method + 1) << 16 | status; 0: unused */
  _Atomic uint64_t counts[RT_STAT_PAIRS];
  _Atomic uint64_t overflow;
  _Atomic uint64_t buckets[RT_LATENCY_BOUNDS + 1]; /* answers by latency (not cumulative) */
  _Atomic uint64_t latency_ns;                     /* their sum */
} rt_answer_stats;

/* An element's sampled time, by phase (0: request hook or action, 1: response hook). */
typedef struct rt_element_stats {
  _Atomic uint64_t calls[2];
  _Atomic uint64_t ns[2];
} rt_element_stats;

/* Turns the counting of answers and the timing of elements on or off (off at start). */
void rt_stats_enable(int on);
bool rt_stats_enabled(void);
/* Monotonic nanoseconds. */
uint64_t rt_now_ns(void);
/* Whether this thread's next request is timed (every RT_TIMING_EVERY-th). */
bool rt_stats_sample(void);
/* Counts one answer of `method` with `status`, `elapsed_ns` after the request came in. */
void rt_stats_answer(rt_answer_stats *s, const char *method, int status, uint64_t elapsed_ns);

/* Reading, from Python. The upper bounds of the latency buckets, in seconds. */
const double *rt_latency_bounds(void);
/* Copies up to `cap` counted pairs (method index, status, count); returns how many. */
size_t rt_stats_pairs(const rt_answer_stats *s, uint32_t *methods, uint32_t *statuses,
                      uint64_t *counts, size_t cap);
/* The latency buckets (RT_LATENCY_BOUNDS + 1 counts), their sum, and the overflow count. */
void rt_stats_latency(const rt_answer_stats *s, uint64_t *buckets, uint64_t *sum_ns,
                      uint64_t *overflow);
/* An element's timed calls and their nanoseconds, by phase: out[0..3] = calls request,
** ns request, calls response, ns response. */
void rt_element_times(const rt_element_stats *s, uint64_t *out);

#endif
