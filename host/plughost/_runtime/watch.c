/* Crash and hang reports: see watch.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "watch.h"
#include "util.h"

/* The slots of the threads that have run a hook. Shared between the threads that own them
** (the only writers of their slot), the watchdog thread and a crash handler (readers): every
** field is atomic, so this global state needs no lock. */
#define SLOTS 256

typedef struct {
  atomic_int claimed;                  /* 1 while a thread owns the slot */
  _Atomic(pthread_t) owner;
  _Atomic(const rt_instance *) inst;   /* the element running, NULL between hooks */
  _Atomic(const ph_exchange *) ex;     /* its exchange (may be NULL) */
  _Atomic(const char *) hook;          /* a plugin hook outside the chain (init, create,
                                          destroy, shutdown) running: what it is, else NULL */
  atomic_ulong seq;                    /* bumped at every enter: the watchdog's progress */
} slot;

static slot slots[SLOTS];
static _Thread_local slot *mine;
static pthread_key_t release_key;
static pthread_once_t release_once = PTHREAD_ONCE_INIT;
static atomic_int watchdog_started;
static long hang_limit_ms;             /* written once before the watchdog starts */

static void release_slot(void *p) {
  slot *s = p;
  atomic_store(&s->inst, NULL);
  atomic_store(&s->hook, NULL);
  atomic_store(&s->claimed, 0);
}

static void make_key(void) {
  pthread_key_create(&release_key, release_slot);
}

static slot *claim(void) {
  pthread_once(&release_once, make_key);
  for (size_t i = 0; i < SLOTS; i++) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&slots[i].claimed, &expected, 1)) {
      atomic_store(&slots[i].owner, pthread_self());
      pthread_setspecific(release_key, &slots[i]);
      return &slots[i];
    }
  }
  return NULL;
}

void *rt_watch_enter(const rt_instance *inst, const ph_exchange *ex) {
  slot *s = mine;
  if (!s && !(s = mine = claim())) return NULL;
  atomic_store_explicit(&s->ex, ex, memory_order_relaxed);
  atomic_store_explicit(&s->inst, inst, memory_order_release);
  /* one writer: a plain increment, no locked instruction */
  atomic_store_explicit(&s->seq, atomic_load_explicit(&s->seq, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  return s;
}

void rt_watch_leave(void *mark) {
  if (mark) atomic_store_explicit(&((slot *)mark)->inst, NULL, memory_order_relaxed);
}

void *rt_watch_enter_hook(const char *what) {
  slot *s = mine;
  if (!s && !(s = mine = claim())) return NULL;
  atomic_store_explicit(&s->hook, what, memory_order_release);
  return s;
}

void rt_watch_leave_hook(void *mark) {
  if (mark) atomic_store_explicit(&((slot *)mark)->hook, NULL, memory_order_relaxed);
}

void rt_instance_set_plugin(rt_instance *inst, const char *plugin) {
  char *copy = rt_strdup(plugin ? plugin : "");
  if (!copy) return;
  free(inst->plugin);
  inst->plugin = copy;
}

/* ------------------------------------------------- the report (async-signal-safe) */

typedef struct {
  char buf[1536];
  size_t n;
} line;

static void put(line *l, const char *s) {
  while (*s && l->n < sizeof l->buf - 2) l->buf[l->n++] = *s++;
}

/* At most `max` bytes of s, printable ASCII only (a hostile request id stays one line). */
static void put_clean(line *l, const char *s, size_t len, size_t max) {
  for (size_t i = 0; i < len && i < max && l->n < sizeof l->buf - 2; i++) {
    unsigned char c = (unsigned char)s[i];
    l->buf[l->n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
}

static void put_long(line *l, long v) {
  char digits[24];
  size_t k = 0;
  unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
  do digits[k++] = (char)('0' + u % 10);
  while ((u /= 10) && k < sizeof digits);
  if (v < 0) put(l, "-");
  while (k) {
    char c[2] = {digits[--k], 0};
    put(l, c);
  }
}

static const char *signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    default:
      return "a signal";
  }
}

/* " in <element> of plugin <name> on route '<route>' (request id <id>)" */
static void put_element(line *l, const slot *s) {
  const rt_instance *inst = s ? atomic_load(&s->inst) : NULL;
  const char *hook = s ? atomic_load(&s->hook) : NULL;
  if (!inst && hook) {
    put(l, " in ");
    put_clean(l, hook, strlen(hook), 300);
    return;
  }
  if (!inst) {
    put(l, " outside any plugin hook");
    return;
  }
  put(l, " in ");
  put(l, inst->label ? inst->label : "an element");
  if (inst->plugin && *inst->plugin) {
    put(l, " of plugin ");
    put(l, inst->plugin);
  }
  const ph_exchange *ex = atomic_load(&s->ex);
  if (!ex) return;
  if (ex->route_name && *ex->route_name) {
    put(l, " on route '");
    put_clean(l, ex->route_name, strlen(ex->route_name), 200);
    put(l, "'");
  }
  if (ex->request_id[0]) { /* set by an element (ph_request_id_set), inline in ex */
    put(l, " (request id ");
    put_clean(l, ex->request_id, strnlen(ex->request_id, RT_REQUEST_ID_MAX), 100);
    put(l, ")");
  }
}

static void put_worker(line *l) {
  put(l, "plughost: worker ");
  put_long(l, (long)getpid());
}

static void emit(line *l) {
  l->buf[l->n++] = '\n';
  for (size_t off = 0; off < l->n;) {
    ssize_t w = write(STDERR_FILENO, l->buf + off, l->n - off);
    if (w <= 0) break;
    off += (size_t)w;
  }
}

static const slot *slot_of(pthread_t thread) {
  for (size_t i = 0; i < SLOTS; i++)
    if (atomic_load(&slots[i].claimed) && pthread_equal(atomic_load(&slots[i].owner), thread))
      return &slots[i];
  return NULL;
}

static void on_crash(int sig, siginfo_t *info, void *context) {
  (void)info;
  (void)context;
  line l = {.n = 0};
  put_worker(&l);
  put(&l, " crashed with ");
  put(&l, signal_name(sig));
  put_element(&l, slot_of(pthread_self()));
  put(&l, ": the worker ends and its supervisor replaces it");
  emit(&l);
  /* SA_RESETHAND restored the default action: the signal now ends the process. */
  raise(sig);
}

int rt_watch_install_crash_report(void) {
  static char *alt; /* the main thread's alternate stack: lives as long as the process */
  if (!alt && (alt = malloc(64 * 1024))) {
    stack_t ss = {.ss_sp = alt, .ss_size = 64 * 1024, .ss_flags = 0};
    sigaltstack(&ss, NULL);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_crash;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  static const int signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
  for (size_t i = 0; i < sizeof signals / sizeof *signals; i++)
    if (sigaction(signals[i], &sa, NULL) != 0) return -1;
  return 0;
}

/* ------------------------------------------------------------------- the watchdog */

static long elapsed_ms(const struct timespec *from, const struct timespec *to) {
  return (long)(to->tv_sec - from->tv_sec) * 1000 + (to->tv_nsec - from->tv_nsec) / 1000000;
}

static void *watchdog(void *arg) {
  (void)arg;
  static unsigned long seen[SLOTS];
  static struct timespec since[SLOTS];
  static unsigned char tracked[SLOTS];
  long step = hang_limit_ms / 4 < 100 ? (hang_limit_ms / 4 > 10 ? hang_limit_ms / 4 : 10) : 100;
  struct timespec pause = {.tv_sec = step / 1000, .tv_nsec = (step % 1000) * 1000000};
  for (;;) {
    nanosleep(&pause, NULL);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (size_t i = 0; i < SLOTS; i++) {
      slot *s = &slots[i];
      if (!atomic_load(&s->claimed) || !atomic_load(&s->inst)) {
        tracked[i] = 0;
        continue;
      }
      unsigned long seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
      if (!tracked[i] || seq != seen[i]) {
        tracked[i] = 1, seen[i] = seq, since[i] = now;
        continue;
      }
      long ms = elapsed_ms(&since[i], &now);
      if (ms > hang_limit_ms) {
        line l = {.n = 0};
        put_worker(&l);
        put(&l, ":");
        put_element(&l, s);
        put(&l, " has run for ");
        put_long(&l, ms);
        put(&l, " ms, over elementTimeout (");
        put_long(&l, hang_limit_ms);
        put(&l, " ms): the worker ends and its supervisor replaces it");
        emit(&l);
        _exit(RT_WATCH_HANG_EXIT);
      }
    }
  }
  return NULL;
}

int rt_watch_start(long limit_ms) {
  if (limit_ms <= 0 || atomic_exchange(&watchdog_started, 1)) return -1;
  hang_limit_ms = limit_ms;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  /* The watchdog must not take signals meant for the process (SIGTERM, SIGINT). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int r = pthread_create(&thread, &attr, watchdog, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (r != 0) {
    atomic_store(&watchdog_started, 0);
    return -1;
  }
  return 0;
}
