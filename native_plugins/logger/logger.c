/*
** logger: one access-log line per request, like Seam's logger plugin (Fiber's logger).
**
** Middleware plugins.logger.middlewares.LoggerMiddleware
**   format         string, default            the line, with ${placeholders} (below); a
**                  "${pid} | ${time} |        newline ends the line when the format has none
**                  ${status} | ${latency} |   at its end. With json: true only the
**                  ${ip} | ${method} |        placeholders count: each one is a member of the
**                  ${path} | ${error}\n"      line's JSON object, named as written
**   timeZone       string, default "UTC"      zone of ${time}: an IANA name ("Europe/Paris",
**                                             read from $TZDIR or /usr/share/zoneinfo at
**                                             create), "UTC", "Local" (the process's zone: TZ
**                                             or /etc/localtime) or a fixed offset "+HH:MM",
**                                             "-HHMM", "+HH", "UTC+HH:MM"
**   timeFormat     string, default "RFC3339"  "RFC3339" (2026-11-25T10:55:02Z),
**                                             "RFC3339Milli", "RFC3339Nano", "Unix",
**                                             "UnixMilli", or a strftime(3) pattern (holds a
**                                             '%'; %z, %:z and %Z follow timeZone)
**   timeInterval   duration, default 1ms      accepted for Seam compatibility (Fiber's time
**                                             cache); every line carries its own time
**   disableColors  bool, default false        true: the colour placeholders print nothing
**   json           bool, default false        true: every line is a JSON object
**   output         string, default "stdout"   "stdout", "stderr" or a file path (appended to,
**                                             created with mode 0640; a FIFO works too)
**   queueSize      int, default 10000         lines waiting for the writer (1..1000000)
**   flushTimeout   duration, default 5s       at shutdown, how long the writer may wait for a
**                                             file or FIFO that does not take the lines
** The options are declared in logger_options (ABI 1.2): the host refuses unknown or
** misspelt names and wrong kinds before create runs; names match ignoring case.
**
** Placeholders: pid, time (when the request reached this middleware), status, latency
** (request phase to response phase: "1.234ms" in text, milliseconds as a number in JSON),
** ip (client address), ips (X-Forwarded-For), method, path, url (path?query), route (name in
** routes.yaml), host, ua, referer, queryParams (raw query), bytesSent, bytesReceived (body
** lengths), error (the reason phrase of a status >= 400, else empty), locals:<key>,
** header:<Name> and reqHeader:<Name> (request), respHeader:<Name>, query:<name> (decoded),
** cookie:<name>, and the colours black red green yellow blue magenta cyan white reset. body,
** resBody, reqHeaders, form:, protocol and port are refused: bodies and all headers would
** log secrets; the exchange does not carry the others.
**
** Values are made safe: in text, control characters become \xNN and invalid UTF-8 U+FFFD;
** in JSON they are escaped as JSON requires. A value is cut at 4096 bytes ("...").
** A missing value is empty in text and null in JSON.
**
** Never blocks a request on I/O: the response hook formats the line and appends it to a
** bounded in-memory queue (a mutex held for a few instructions); a writer thread owned by
** the instance writes the queued lines in batches. When the queue is full the line is
** dropped and counted; the writer then writes "logger: N lines dropped ..." (a JSON object
** in json mode) after the lines it had. A file output is opened non-blocking (a FIFO without
** a reader is opened by the writer when one appears). destroy stops the writer after it
** wrote every queued line (waiting at most flushTimeout for a file or FIFO that does not take
** them; lines lost then are reported on stderr).
**
** Time zones: switching the C library to another zone needs its process-wide TZ state
** (setenv + tzset: not thread-safe in a multi-threaded host), so an IANA zone's TZif file is
** read once at create (transitions, then the footer's POSIX rule for later times) and
** evaluated by each hook on immutable data (lg_tz.c).
**
** Files: logger.c (this one: options, create/destroy, the hooks that format a line),
** lg_format.c (the format parsed into tokens), lg_time.c (${time}: zones and formats),
** lg_tz.c (TZif files and POSIX TZ rules), lg_writer.c (queue, writer thread, output) and
** lg_buf.c (the line's buffer, values made safe).
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include "lg_buf.h"
#include "lg_format.h"
#include "lg_time.h"
#include "lg_writer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LG_DEFAULT_FORMAT \
  "${pid} | ${time} | ${status} | ${latency} | ${ip} | ${method} | ${path} | ${error}\n"
#define LG_DEFAULT_QUEUE 10000
#define LG_MAX_QUEUE 1000000
#define LG_DEFAULT_FLUSH_MS 5000

typedef struct lg_logger {
  lg_format format;
  int json, colors;
  lg_time time;
  long pid;
  lg_writer *writer;
} lg_logger;

/* ---------------------------------------------------------------------- create/destroy */

static void lg_destroy(void *self) {
  lg_logger *l = self;
  if (l == NULL) return;
  lg_writer_stop(l->writer);
  lg_time_free(&l->time);
  lg_format_free(&l->format);
  free(l);
}

static ph_status lg_create(const ph_config *cfg, void **self) {
  lg_logger *l = calloc(1, sizeof *l);
  if (l == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = l;

  const char *format, *zone, *tf, *output;
  int64_t interval = 0, queue = 0, flush_timeout_ms = 0;
  int disable_colors = 0;
  if (ph_config_bool(cfg, "json", 0, &l->json) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "format", LG_DEFAULT_FORMAT, &format) != PH_OK) return PH_ERROR;
  if (format[0] == '\0')
    return ph_config_error(cfg, "format", "must not be empty (leave it out for the default \"%s\")",
                           "${pid} | ${time} | ${status} | ${latency} | ${ip} | ${method} | "
                           "${path} | ${error}");
  if (lg_format_parse(&l->format, cfg, format, l->json) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "timeZone", "UTC", &zone) != PH_OK) return PH_ERROR;
  if (lg_time_set_zone(&l->time, cfg, zone) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "timeFormat", "RFC3339", &tf) != PH_OK) return PH_ERROR;
  if (lg_time_set_format(&l->time, cfg, tf) != PH_OK) return PH_ERROR;

  if (ph_config_duration_ms(cfg, "timeInterval", 1, &interval) != PH_OK) return PH_ERROR;
  if (interval < 0) return ph_config_error(cfg, "timeInterval", "must not be negative");
  if (ph_config_bool(cfg, "disableColors", 0, &disable_colors) != PH_OK) return PH_ERROR;
  l->colors = !disable_colors && !l->json;
  if (ph_config_int(cfg, "queueSize", LG_DEFAULT_QUEUE, &queue) != PH_OK) return PH_ERROR;
  if (queue < 1 || queue > LG_MAX_QUEUE)
    return ph_config_error(cfg, "queueSize", "must be between 1 and %d lines, not %" PRId64,
                           LG_MAX_QUEUE, queue);
  if (ph_config_duration_ms(cfg, "flushTimeout", LG_DEFAULT_FLUSH_MS, &flush_timeout_ms) != PH_OK)
    return PH_ERROR;
  if (flush_timeout_ms < 0) return ph_config_error(cfg, "flushTimeout", "must not be negative");
  if (ph_config_string(cfg, "output", "stdout", &output) != PH_OK) return PH_ERROR;

  l->pid = (long)getpid();
  return lg_writer_start(&l->writer, cfg, output, (size_t)queue, flush_timeout_ms, l->json);
}

/* ----------------------------------------------------------------------- the hooks */

typedef struct lg_start {
  int64_t mono_ns;
  int64_t real_s;
  int64_t real_ns;
} lg_start;

static ph_next lg_on_request(void *self, ph_exchange *ex) {
  (void)self;
  struct timespec mono, real;
  clock_gettime(CLOCK_MONOTONIC, &mono);
  clock_gettime(CLOCK_REALTIME, &real);
  lg_start *st = malloc(sizeof *st); /* on the instance's slot, for the response hook */
  if (st == NULL) {
    ph_error(ex, "logger: out of memory");
    return PH_NEXT_ERROR;
  }
  *st = (lg_start){(int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec, (int64_t)real.tv_sec,
                   (int64_t)real.tv_nsec};
  if (ph_slot_set(ex, st, free) != PH_OK) {
    free(st);
    return PH_NEXT_ERROR;
  }
  return PH_NEXT_CONTINUE;
}

static const char *lg_reason(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 418:
      return "I'm a teapot";
    case 422:
      return "Unprocessable Content";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status >= 500 ? "Server Error" : "Client Error";
  }
}

/* Go's time.Duration.String() style: 950ns, 12.5µs, 1.234567ms, 2.5s. */
static void lg_put_latency(lg_buf *b, int64_t ns) {
  char tmp[48];
  if (ns < 1000) {
    snprintf(tmp, sizeof tmp, "%" PRId64 "ns", ns);
  } else {
    const char *unit;
    int64_t div;
    if (ns < 1000000) {
      unit = "\xc2\xb5s";
      div = 1000;
    } else if (ns < 1000000000) {
      unit = "ms";
      div = 1000000;
    } else {
      unit = "s";
      div = 1000000000;
    }
    int n = snprintf(tmp, sizeof tmp, "%" PRId64 ".%0*" PRId64, ns / div,
                     div == 1000      ? 3
                     : div == 1000000 ? 6
                                      : 9,
                     ns % div);
    /* trim trailing zeros and a lone '.' */
    while (n > 0 && tmp[n - 1] == '0') n--;
    if (n > 0 && tmp[n - 1] == '.') n--;
    snprintf(tmp + n, sizeof tmp - (size_t)n, "%s", unit);
  }
  lg_puts(b, tmp);
}

static int lg_hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The decoded value of the first `name` in an application/x-www-form-urlencoded string
** (a query), in out (malloc'd); NULL when absent. */
static char *lg_query_value(const char *q, const char *name, size_t *len) {
  size_t nl = strlen(name);
  while (*q != '\0') {
    const char *amp = strchr(q, '&');
    size_t seg = amp != NULL ? (size_t)(amp - q) : strlen(q);
    const char *eq = memchr(q, '=', seg);
    size_t kl = eq != NULL ? (size_t)(eq - q) : seg;
    if (kl == nl && strncmp(q, name, nl) == 0) {
      const char *v = eq != NULL ? eq + 1 : q + seg;
      size_t vl = eq != NULL ? seg - kl - 1 : 0;
      char *out = malloc(vl + 1);
      if (out == NULL) return NULL;
      size_t j = 0;
      for (size_t i = 0; i < vl; i++) {
        char c = v[i];
        int hi, lo;
        if (c == '+') {
          out[j++] = ' ';
        } else if (c == '%' && i + 2 < vl && (hi = lg_hex(v[i + 1])) >= 0 &&
                   (lo = lg_hex(v[i + 2])) >= 0) {
          out[j++] = (char)(hi * 16 + lo);
          i += 2;
        } else {
          out[j++] = c;
        }
      }
      out[j] = '\0';
      *len = j;
      return out;
    }
    if (amp == NULL) break;
    q = amp + 1;
  }
  return NULL;
}

static ph_status lg_on_response(void *self, ph_exchange *ex) {
  lg_logger *l = self;
  struct timespec now_mono, now_real;
  clock_gettime(CLOCK_MONOTONIC, &now_mono);
  clock_gettime(CLOCK_REALTIME, &now_real);
  const lg_start *kept = ph_slot_get(ex);
  lg_start st;
  int have_start = kept != NULL;
  if (have_start) {
    st = *kept;
  } else { /* the request hook did not run */
    st.mono_ns = -1;
    st.real_s = (int64_t)now_real.tv_sec;
    st.real_ns = (int64_t)now_real.tv_nsec;
  }
  int json = l->json;
  int status = ph_http_status(ex);
  lg_buf b = {0};
  if (json) lg_puts(&b, "{");
  for (size_t i = 0; i < l->format.n_tokens; i++) {
    const lg_token *t = &l->format.tokens[i];
    if (json) {
      if (i > 0) lg_puts(&b, ",");
      lg_put_str(&b, t->text, strlen(t->text), 1);
      lg_puts(&b, ":");
    }
    switch (t->tag) {
      case LG_LITERAL:
        lg_puts(&b, t->text);
        break;
      case LG_COLOR:
        if (l->colors) lg_puts(&b, t->arg);
        break;
      case LG_PID:
        lg_putf(&b, "%ld", l->pid);
        break;
      case LG_TIME:
        if (json) lg_puts(&b, "\"");
        lg_put_time(&l->time, &b, st.real_s, st.real_ns);
        if (json) lg_puts(&b, "\"");
        break;
      case LG_STATUS:
        lg_putf(&b, "%d", status);
        break;
      case LG_LATENCY: {
        int64_t ns = st.mono_ns < 0
                         ? -1
                         : ((int64_t)now_mono.tv_sec * 1000000000 + now_mono.tv_nsec) - st.mono_ns;
        if (ns < 0)
          lg_puts(&b, json ? "null" : "-");
        else if (json)
          lg_putf(&b, "%.3f", (double)ns / 1e6);
        else
          lg_put_latency(&b, ns);
        break;
      }
      case LG_IP:
        lg_put_cstr(&b, ph_client_ip(ex), json);
        break;
      case LG_IPS:
        lg_put_cstr(&b, ph_header_get(ex, "X-Forwarded-For"), json);
        break;
      case LG_METHOD:
        lg_put_cstr(&b, ph_method(ex), json);
        break;
      case LG_PATH:
        lg_put_cstr(&b, ph_path(ex), json);
        break;
      case LG_URL: {
        const char *path = ph_path(ex), *q = ph_query(ex);
        if (json) lg_puts(&b, "\"");
        lg_put_value(&b, path, strlen(path), json);
        if (q != NULL && *q != '\0') {
          lg_puts(&b, "?");
          lg_put_value(&b, q, strlen(q), json);
        }
        if (json) lg_puts(&b, "\"");
        break;
      }
      case LG_ROUTE:
        lg_put_cstr(&b, ph_route_name(ex), json);
        break;
      case LG_HOST:
        lg_put_cstr(&b, ph_header_get(ex, "Host"), json);
        break;
      case LG_UA:
        lg_put_cstr(&b, ph_header_get(ex, "User-Agent"), json);
        break;
      case LG_REFERER:
        lg_put_cstr(&b, ph_header_get(ex, "Referer"), json);
        break;
      case LG_QUERY_PARAMS:
        lg_put_cstr(&b, ph_query(ex), json);
        break;
      case LG_BYTES_SENT:
      case LG_BYTES_RECEIVED: {
        size_t n = 0;
        if (t->tag == LG_BYTES_SENT)
          ph_resp_body(ex, &n);
        else
          ph_body(ex, &n);
        lg_putf(&b, "%zu", n);
        break;
      }
      case LG_ERROR:
        if (status >= 400)
          lg_put_cstr(&b, lg_reason(status), json);
        else if (json)
          lg_puts(&b, "null");
        break;
      case LG_LOCALS: {
        size_t n = 0;
        const uint8_t *v = ph_local_get(ex, t->arg, &n);
        lg_put_str(&b, v, n, json);
        break;
      }
      case LG_REQ_HEADER:
        lg_put_cstr(&b, ph_header_get(ex, t->arg), json);
        break;
      case LG_RESP_HEADER:
        lg_put_cstr(&b, ph_resp_header_get(ex, t->arg), json);
        break;
      case LG_QUERY: {
        size_t n = 0;
        char *v = lg_query_value(ph_query(ex), t->arg, &n);
        lg_put_str(&b, v, n, json);
        free(v);
        break;
      }
      case LG_COOKIE: {
        const char *h = ph_header_get(ex, "Cookie");
        size_t n = 0;
        const char *v = h != NULL ? phu_cookie_in(h, t->arg, &n) : NULL;
        lg_put_str(&b, v, n, json);
        break;
      }
    }
  }
  if (json)
    lg_puts(&b, "}\n");
  else if (l->format.newline)
    lg_puts(&b, "\n");
  if (b.oom) {
    free(b.p);
    ph_error(ex, "logger: out of memory formatting the log line");
    return PH_ERROR;
  }
  lg_writer_enqueue(l->writer, b.p, b.len);
  return PH_OK;
}

/* The options of a LoggerMiddleware (Seam's names, and plughost's output, queueSize and
** flushTimeout); the host checks every config against them before lg_create runs, which
** keeps its own checks (placeholders, zones, time formats, the output file). */
static const ph_option logger_options[] = {
    PH_OPTION(PH_OPTION_STRING, "format",
              "${pid} | ${time} | ${status} | ${latency} | ${ip} | ${method} | ${path} | "
              "${error}",
              "the line: text with ${placeholders}; a line without a newline at its end gets "
              "one"),
    PH_OPTION(PH_OPTION_BOOL, "json", "false",
              "every line is a JSON object whose members are the format's placeholders"),
    PH_OPTION(PH_OPTION_STRING, "timeZone", "UTC",
              "the zone of ${time}: an IANA name, UTC, Local or a fixed offset like +01:00"),
    PH_OPTION(PH_OPTION_STRING, "timeFormat", "RFC3339",
              "RFC3339, RFC3339Milli, RFC3339Nano, Unix, UnixMilli or a strftime pattern"),
    PH_OPTION(PH_OPTION_DURATION, "timeInterval", "1ms",
              "accepted for Seam compatibility (Fiber's time cache); no effect"),
    PH_OPTION(PH_OPTION_BOOL, "disableColors", "false",
              "true: the colour placeholders print nothing"),
    PH_OPTION(PH_OPTION_STRING, "output", "stdout",
              "where lines go: stdout, stderr or a file path (appended to)"),
    PH_OPTION(PH_OPTION_INT, "queueSize", "10000",
              "lines that may wait for the writer; beyond it lines are dropped and counted",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 1, .max = LG_MAX_QUEUE),
    PH_OPTION(PH_OPTION_DURATION, "flushTimeout", "5s",
              "at shutdown, how long the writer may wait for a file or FIFO that does not "
              "take the lines"),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_middleware_type logger_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.logger.middlewares.LoggerMiddleware",
    .description =
        "One access-log line per request (text or JSON), written by a "
        "background thread",
    .create = lg_create,
    .destroy = lg_destroy,
    .on_request = lg_on_request,
    .on_response = lg_on_response,
    .options = logger_options,
};

static const ph_middleware_type *const logger_middlewares[] = {&logger_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "logger", .version = "1.0.0",
                 .description = "Access logging with ${placeholders} (Seam's logger)",
                 .middlewares = logger_middlewares, .options = no_options);
