/* lg_writer: the logger's bounded queue, writer thread and output (see lg_writer.h). */
#define _POSIX_C_SOURCE 200809L

#include "lg_writer.h"

#include "lg_buf.h"
#include "phu.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct lg_line {
  char *p;
  size_t n;
} lg_line;

struct lg_writer {
  int json; /* the dropped-lines report is a JSON object */

  /* output */
  char *path; /* NULL: fd is stdout or stderr */
  int fd;     /* -1: a FIFO not opened yet */
  const char *output_name;
  int64_t flush_timeout_ms;

  /* the queue */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  lg_line *ring;
  size_t cap, head, count;
  uint64_t dropped;
  int stopping;
  int64_t stop_deadline_ms; /* set with stopping: when the writer gives up */
  int thread_started, mu_ready, cv_ready;
  pthread_t writer;
  lg_line *batch; /* the writer's own copy of the lines it writes */
};

/* Opens a file output without ever blocking: O_NONBLOCK (a FIFO without a reader gives
** ENXIO: the writer opens it later). Returns the fd, -1 for "later", -2 on error (errno). */
static int lg_open_output(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
  if (fd >= 0) return fd;
  if (errno == ENXIO) return -1;
  return -2;
}

static int64_t lg_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Last-resort report, straight to stderr (never the log output itself). */
static void lg_complain(const lg_writer *w, const char *what, uint64_t lost) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "logger: %" PRIu64 " line%s lost: %s (output %s)\n", lost,
                   lost == 1 ? "" : "s", what, w->output_name);
  if (n > 0) {
    ssize_t wrote = write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    (void)wrote;
  }
}

/* Whether destroy asked the writer to stop and its flushTimeout has passed. */
static int lg_past_deadline(lg_writer *w) {
  pthread_mutex_lock(&w->mu);
  int past = w->stopping && lg_mono_ms() >= w->stop_deadline_ms;
  pthread_mutex_unlock(&w->mu);
  return past;
}

/* Writes all of data; waits for a FIFO's reader or a full pipe without a time limit until
** destroy asks the writer to stop, then up to flushTimeout. Returns 0, or -1 (errno;
** ETIMEDOUT when the flushTimeout passed). Called without the queue's lock. */
static int lg_write_all(lg_writer *w, const char *data, size_t n) {
  size_t done = 0;
  while (done < n) {
    if (w->fd < 0) { /* a FIFO waiting for its reader */
      int fd = lg_open_output(w->path);
      if (fd == -2) return -1;
      if (fd == -1) {
        if (lg_past_deadline(w)) {
          errno = ETIMEDOUT;
          return -1;
        }
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL);
        continue;
      }
      w->fd = fd;
    }
    ssize_t wrote = write(w->fd, data + done, n - done);
    if (wrote > 0) {
      done += (size_t)wrote;
      continue;
    }
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (lg_past_deadline(w)) {
        errno = ETIMEDOUT;
        return -1;
      }
      struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
      poll(&pfd, 1, 100);
      continue;
    }
    if (wrote < 0 && errno == EPIPE && w->path != NULL) {
      /* the FIFO's reader went away: wait for the next one */
      close(w->fd);
      w->fd = -1;
      continue;
    }
    return -1;
  }
  return 0;
}

/* Lines are gathered for up to LG_BATCH_MS after the first one arrives (or until the queue
** is half full, or shutdown), then written with one write(): under load the writer wakes
** about 1000 / LG_BATCH_MS times a second instead of once per request, which would cost
** the request's thread two context switches each on a busy core. */
#define LG_BATCH_MS 10

static void *lg_writer_main(void *arg) {
  lg_writer *w = arg;
  lg_buf out = {0};
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (w->count == 0 && w->dropped == 0 && !w->stopping) pthread_cond_wait(&w->cv, &w->mu);
    if (w->count == 0 && w->dropped == 0) break; /* stopping, all written */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += LG_BATCH_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    while (!w->stopping && w->count < w->cap / 2 &&
           pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {}
    size_t n = w->count;
    for (size_t i = 0; i < n; i++) w->batch[i] = w->ring[(w->head + i) % w->cap];
    w->head = (w->head + n) % w->cap;
    w->count = 0;
    uint64_t dropped = w->dropped;
    w->dropped = 0;
    pthread_mutex_unlock(&w->mu);

    out.len = 0;
    for (size_t i = 0; i < n; i++) {
      lg_put(&out, w->batch[i].p, w->batch[i].n);
      free(w->batch[i].p);
    }
    if (dropped > 0) {
      if (w->json)
        lg_putf(&out,
                "{\"logger\":\"%" PRIu64
                " line%s dropped: the output did not keep up\","
                "\"dropped\":%" PRIu64 "}\n",
                dropped, dropped == 1 ? "" : "s", dropped);
      else
        lg_putf(&out, "logger: %" PRIu64 " line%s dropped: the output did not keep up\n", dropped,
                dropped == 1 ? "" : "s");
    }
    if (out.oom) {
      lg_complain(w, "out of memory", (uint64_t)n);
      out.oom = 0;
    } else if (out.len > 0 && lg_write_all(w, out.p, out.len) != 0) {
      char why[256];
      snprintf(why, sizeof why, "%s",
               errno == ETIMEDOUT ? "not writable before the "
                                    "flushTimeout at shutdown"
                                  : strerror(errno));
      lg_complain(w, why, (uint64_t)n + dropped);
    }
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  free(out.p);
  return NULL;
}

static void lg_stop_thread(lg_writer *w) {
  if (!w->thread_started) return;
  pthread_mutex_lock(&w->mu);
  w->stopping = 1;
  w->stop_deadline_ms = lg_mono_ms() + w->flush_timeout_ms;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->writer, NULL);
  w->thread_started = 0;
}

void lg_writer_enqueue(lg_writer *w, char *line, size_t n) {
  pthread_mutex_lock(&w->mu);
  if (w->count == w->cap) {
    w->dropped++;
    pthread_mutex_unlock(&w->mu);
    free(line);
    return;
  }
  w->ring[(w->head + w->count) % w->cap] = (lg_line){line, n};
  w->count++;
  /* Wake the writer only when it waits for a first line or the queue gets half full:
  ** while it gathers a batch, a signal per line would only cost a context switch. */
  if (w->count == 1 || w->count == w->cap / 2) pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

ph_status lg_writer_start(lg_writer **out, const ph_config *cfg, const char *output, size_t queue,
                          int64_t flush_timeout_ms, int json) {
  lg_writer *w = calloc(1, sizeof *w);
  *out = w;
  if (w == NULL) return ph_config_error(cfg, NULL, "out of memory");
  w->fd = -1;
  w->json = json;
  w->flush_timeout_ms = flush_timeout_ms;
  if (strcmp(output, "stdout") == 0) {
    w->fd = STDOUT_FILENO;
    w->output_name = "stdout";
  } else if (strcmp(output, "stderr") == 0) {
    w->fd = STDERR_FILENO;
    w->output_name = "stderr";
  } else if (output[0] == '\0') {
    return ph_config_error(cfg, "output",
                           "must not be empty: \"stdout\", \"stderr\" or a file path");
  } else {
    w->path = phu_strdup(output);
    if (w->path == NULL) return ph_config_error(cfg, NULL, "out of memory");
    w->output_name = w->path;
    int fd = lg_open_output(w->path);
    if (fd == -2)
      return ph_config_error(cfg, "output", "cannot open '%s' for appending: %s", w->path,
                             strerror(errno));
    if (fd >= 0) {
      struct stat st;
      if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return ph_config_error(cfg, "output", "'%s' is a folder, not a file", w->path);
      }
    }
    w->fd = fd;
  }

  w->cap = queue;
  w->ring = calloc(w->cap, sizeof *w->ring);
  w->batch = calloc(w->cap, sizeof *w->batch);
  if (w->ring == NULL || w->batch == NULL) return ph_config_error(cfg, NULL, "out of memory");
  if (pthread_mutex_init(&w->mu, NULL) != 0)
    return ph_config_error(cfg, NULL, "cannot create a mutex");
  w->mu_ready = 1;
  pthread_condattr_t cv_attr; /* the writer's batching wait counts monotonic time */
  int cv_failed = pthread_condattr_init(&cv_attr) != 0 ||
                  pthread_condattr_setclock(&cv_attr, CLOCK_MONOTONIC) != 0 ||
                  pthread_cond_init(&w->cv, &cv_attr) != 0;
  pthread_condattr_destroy(&cv_attr);
  if (cv_failed) return ph_config_error(cfg, NULL, "cannot create a condition variable");
  w->cv_ready = 1;
  /* The writer runs with every signal blocked: process signals go to the host's threads,
  ** and a FIFO whose reader left gives the writer EPIPE instead of killing the process
  ** with SIGPIPE (whatever the host did with SIGPIPE). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&w->writer, NULL, lg_writer_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0)
    return ph_config_error(cfg, NULL, "cannot start the writer thread: %s", strerror(err));
  w->thread_started = 1;
  return PH_OK;
}

void lg_writer_stop(lg_writer *w) {
  if (w == NULL) return;
  lg_stop_thread(w);
  for (size_t i = 0; i < w->count; i++) free(w->ring[(w->head + i) % w->cap].p);
  free(w->ring);
  free(w->batch);
  if (w->path != NULL && w->fd >= 0) close(w->fd);
  free(w->path);
  if (w->cv_ready) pthread_cond_destroy(&w->cv);
  if (w->mu_ready) pthread_mutex_destroy(&w->mu);
  free(w);
}
