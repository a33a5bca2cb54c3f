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
** evaluated here, by each hook, on immutable data.
**
** Thread-safe: hooks share only the queue, under its mutex.
*/
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* struct tm's tm_gmtoff and tm_zone */

#include "plugin.h"
#include "phu.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LG_DEFAULT_FORMAT \
  "${pid} | ${time} | ${status} | ${latency} | ${ip} | ${method} | ${path} | ${error}\n"
#define LG_DEFAULT_QUEUE 10000
#define LG_MAX_QUEUE 1000000
#define LG_MAX_VALUE 4096
#define LG_DEFAULT_FLUSH_MS 5000

/* ------------------------------------------------------------------ growable buffer */

typedef struct lg_buf {
  char *p;
  size_t len, cap;
  int oom;
} lg_buf;

static void lg_put(lg_buf *b, const void *data, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void lg_puts(lg_buf *b, const char *s) {
  lg_put(b, s, strlen(s));
}

static void lg_putf(lg_buf *b, const char *fmt, ...) PH__PRINTF(2, 3);
static void lg_putf(lg_buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) lg_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Appends a value made safe for the mode: JSON string content (without quotes), or text
** with control characters as \xNN; invalid UTF-8 becomes U+FFFD either way. */
static void lg_put_value(lg_buf *b, const void *data, size_t n, int json) {
  const uint8_t *s = data;
  int cut = n > LG_MAX_VALUE;
  if (cut) n = LG_MAX_VALUE;
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    /* a run of plain printable ASCII is copied at once */
    while (run < n && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '\\' && (!json || s[run] != '"'))
      run++;
    if (run > i) {
      lg_put(b, s + i, run - i);
      i = run;
      continue;
    }
    uint8_t c = s[i];
    if (c >= 0x80) {
      size_t len = phu_utf8_seq(s + i, n - i);
      if (len == 0) {
        lg_puts(b, json ? "\\ufffd" : "\xef\xbf\xbd");
        i++;
      } else {
        lg_put(b, s + i, len);
        i += len;
      }
      continue;
    }
    if (json) {
      switch (c) {
        case '"':
          lg_puts(b, "\\\"");
          break;
        case '\\':
          lg_puts(b, "\\\\");
          break;
        case '\n':
          lg_puts(b, "\\n");
          break;
        case '\r':
          lg_puts(b, "\\r");
          break;
        case '\t':
          lg_puts(b, "\\t");
          break;
        default:
          lg_putf(b, "\\u%04x", c);
          break;
      }
    } else if (c == '\\') {
      lg_puts(b, "\\\\");
    } else {
      lg_putf(b, "\\x%02x", c);
    }
    i++;
  }
  if (cut) lg_puts(b, "...");
}

/* --------------------------------------------------------------------- placeholders */

typedef enum lg_tag {
  LG_LITERAL,
  LG_PID,
  LG_TIME,
  LG_STATUS,
  LG_LATENCY,
  LG_IP,
  LG_IPS,
  LG_METHOD,
  LG_PATH,
  LG_URL,
  LG_ROUTE,
  LG_HOST,
  LG_UA,
  LG_REFERER,
  LG_QUERY_PARAMS,
  LG_BYTES_SENT,
  LG_BYTES_RECEIVED,
  LG_ERROR,
  LG_LOCALS,      /* arg: key */
  LG_REQ_HEADER,  /* arg: name */
  LG_RESP_HEADER, /* arg: name */
  LG_QUERY,       /* arg: name */
  LG_COOKIE,      /* arg: name */
  LG_COLOR        /* arg: escape sequence */
} lg_tag;

static const struct {
  const char *name;
  lg_tag tag;
} lg_simple[] = {
    {"pid", LG_PID},
    {"time", LG_TIME},
    {"status", LG_STATUS},
    {"latency", LG_LATENCY},
    {"ip", LG_IP},
    {"ips", LG_IPS},
    {"method", LG_METHOD},
    {"path", LG_PATH},
    {"url", LG_URL},
    {"route", LG_ROUTE},
    {"host", LG_HOST},
    {"ua", LG_UA},
    {"referer", LG_REFERER},
    {"queryParams", LG_QUERY_PARAMS},
    {"bytesSent", LG_BYTES_SENT},
    {"bytesReceived", LG_BYTES_RECEIVED},
    {"error", LG_ERROR},
};

static const struct {
  const char *prefix;
  lg_tag tag;
} lg_prefixed[] = {
    {"locals:", LG_LOCALS},          {"header:", LG_REQ_HEADER}, {"reqHeader:", LG_REQ_HEADER},
    {"respHeader:", LG_RESP_HEADER}, {"query:", LG_QUERY},       {"cookie:", LG_COOKIE},
};

static const struct {
  const char *name;
  const char *seq;
} lg_colors[] = {
    {"black", "\x1b[90m"},  {"red", "\x1b[91m"},   {"green", "\x1b[92m"},
    {"yellow", "\x1b[93m"}, {"blue", "\x1b[94m"},  {"magenta", "\x1b[95m"},
    {"cyan", "\x1b[96m"},   {"white", "\x1b[97m"}, {"reset", "\x1b[0m"},
};

typedef struct lg_token {
  lg_tag tag;
  char *text; /* literal text, or the placeholder as written (the JSON member name) */
  const char *arg; /* points into text: the part after "prefix:", or a colour sequence */
} lg_token;

/* ------------------------------------------------------------------------ time zones */

typedef enum lg_zone { LG_ZONE_UTC, LG_ZONE_LOCAL, LG_ZONE_FIXED, LG_ZONE_IANA } lg_zone;
typedef enum lg_timefmt {
  LG_TF_RFC3339,
  LG_TF_RFC3339_MILLI,
  LG_TF_RFC3339_NANO,
  LG_TF_UNIX,
  LG_TF_UNIX_MILLI,
  LG_TF_STRFTIME
} lg_timefmt;

/* IANA zones, read once at create from the zone's TZif file (RFC 8536) and evaluated
** here without the C library's process-wide TZ state: the transitions of the file's 64-bit
** part, then its footer (a POSIX TZ string such as "CET-1CEST,M3.5.0,M10.5.0/3") for times
** after the last transition. Immutable after create: safe from any thread. */

typedef struct lg_tzdate {
  char kind;    /* 'M' month.week.day, 'J' Julian day 1..365 (no Feb 29), 'n' day 0..365 */
  int m, w, d;  /* 'M' */
  int day;      /* 'J', 'n' */
  int32_t time; /* seconds after local midnight (may be negative or over 24h) */
} lg_tzdate;

typedef struct lg_tzrule {
  int32_t std_off, dst_off; /* seconds east of UTC */
  char std_abbr[16], dst_abbr[16];
  int has_dst;
  lg_tzdate start, end;
} lg_tzrule;

typedef struct lg_tz {
  size_t n_trans, n_types;
  int64_t *trans;   /* transition times, ascending */
  uint8_t *idx;     /* type of each transition */
  int32_t *utoff;   /* per type */
  uint8_t *abbrind; /* per type: index into abbrs */
  char *abbrs;
  size_t abbrs_len;
  int has_rule;
  lg_tzrule rule;
} lg_tz;

static void lg_tz_free(lg_tz *z) {
  if (z == NULL) return;
  free(z->trans);
  free(z->idx);
  free(z->utoff);
  free(z->abbrind);
  free(z->abbrs);
  free(z);
}

static int64_t lg_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  if (n == 4) return (int64_t)(int32_t)(uint32_t)v;
  return (int64_t)v;
}

/* "[+-]hh[:mm[:ss]]" (hours up to 167, as RFC 8536 allows); advances *s. */
static int lg_tz_hms(const char **s, int32_t *out) {
  const char *p = *s;
  int neg = 0;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  long parts[3] = {0, 0, 0};
  for (int i = 0; i < 3; i++) {
    if (i > 0) {
      if (*p != ':') break;
      p++;
    }
    if (*p < '0' || *p > '9') return -1;
    long v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 3) {
      v = v * 10 + (*p++ - '0');
      digits++;
    }
    parts[i] = v;
  }
  if (parts[0] > 167 || parts[1] > 59 || parts[2] > 59) return -1;
  long secs = parts[0] * 3600 + parts[1] * 60 + parts[2];
  *out = (int32_t)(neg ? -secs : secs);
  *s = p;
  return 0;
}

/* A zone abbreviation: 3+ letters, or <...> with letters, digits, '+' and '-'. */
static int lg_tz_abbr(const char **s, char *out, size_t cap) {
  const char *p = *s;
  size_t n = 0;
  if (*p == '<') {
    p++;
    while (*p != '>' && *p != '\0') {
      if (n + 1 >= cap) return -1;
      out[n++] = *p++;
    }
    if (*p != '>') return -1;
    p++;
  } else {
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
      if (n + 1 >= cap) return -1;
      out[n++] = *p++;
    }
  }
  if (n < 3) return -1;
  out[n] = '\0';
  *s = p;
  return 0;
}

static int lg_tz_num(const char **s, int lo, int hi, int *out) {
  const char *p = *s;
  if (*p < '0' || *p > '9') return -1;
  int v = 0;
  while (*p >= '0' && *p <= '9' && v <= hi) v = v * 10 + (*p++ - '0');
  if (v < lo || v > hi) return -1;
  *out = v;
  *s = p;
  return 0;
}

static int lg_tz_date(const char **s, lg_tzdate *d) {
  const char *p = *s;
  if (*p == 'M') {
    p++;
    d->kind = 'M';
    if (lg_tz_num(&p, 1, 12, &d->m) || *p++ != '.' || lg_tz_num(&p, 1, 5, &d->w) || *p++ != '.' ||
        lg_tz_num(&p, 0, 6, &d->d))
      return -1;
  } else if (*p == 'J') {
    p++;
    d->kind = 'J';
    if (lg_tz_num(&p, 1, 365, &d->day)) return -1;
  } else {
    d->kind = 'n';
    if (lg_tz_num(&p, 0, 365, &d->day)) return -1;
  }
  d->time = 7200;
  if (*p == '/') {
    p++;
    if (lg_tz_hms(&p, &d->time)) return -1;
  }
  *s = p;
  return 0;
}

/* A POSIX TZ string as in a TZif footer. Returns 0 when it parsed completely. */
static int lg_tz_parse_rule(const char *s, lg_tzrule *r) {
  int32_t off;
  memset(r, 0, sizeof *r);
  if (lg_tz_abbr(&s, r->std_abbr, sizeof r->std_abbr) || lg_tz_hms(&s, &off)) return -1;
  r->std_off = -off; /* POSIX counts west of UTC */
  if (*s == '\0') return 0;
  if (lg_tz_abbr(&s, r->dst_abbr, sizeof r->dst_abbr)) return -1;
  r->has_dst = 1;
  r->dst_off = r->std_off + 3600;
  if (*s != ',' && *s != '\0') {
    if (lg_tz_hms(&s, &off)) return -1;
    r->dst_off = -off;
  }
  if (*s != ',') return -1; /* a zone with DST but no rule: not in TZif footers */
  s++;
  if (lg_tz_date(&s, &r->start) || *s++ != ',' || lg_tz_date(&s, &r->end)) return -1;
  return *s == '\0' ? 0 : -1;
}

static int lg_leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's algorithm). */
static int64_t lg_days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* The UTC instant at which rule date `d` happens in year y, local time with offset off. */
static int64_t lg_tz_when(const lg_tzdate *d, int64_t y, int32_t off) {
  int64_t day; /* days since the epoch */
  if (d->kind == 'J') {
    day = lg_days_from_civil(y, 1, 1) + d->day - 1;
    if (lg_leap(y) && d->day >= 60) day++; /* Feb 29 is never counted */
  } else if (d->kind == 'n') {
    day = lg_days_from_civil(y, 1, 1) + d->day;
  } else {
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t first = lg_days_from_civil(y, d->m, 1);
    int wday_first = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
    int mday = 1 + (d->d - wday_first + 7) % 7 + (d->w - 1) * 7;
    int dim = mdays[d->m - 1] + (d->m == 2 && lg_leap(y));
    while (mday > dim) mday -= 7;
    day = first + mday - 1;
  }
  return day * 86400 + d->time - off;
}

/* Offset and abbreviation of the footer rule at t. */
static void lg_tz_rule_at(const lg_tzrule *r, int64_t t, int32_t *off, const char **abbr) {
  *off = r->std_off;
  *abbr = r->std_abbr;
  if (!r->has_dst) return;
  int64_t days = t / 86400 - (t % 86400 < 0);
  /* the UTC year of t (H. Hinnant's civil_from_days, as far as the year) */
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t y = yoe + era * 400 + (mp >= 10);
  /* check the years around t so that a transition near New Year is never missed */
  for (int64_t yy = y - 1; yy <= y + 1; yy++) {
    /* DST starts at local standard time and ends at local daylight time */
    int64_t start = lg_tz_when(&r->start, yy, r->std_off);
    int64_t end = lg_tz_when(&r->end, yy, r->dst_off);
    if (start >= end) /* southern hemisphere: DST spans the year's end */
      end = lg_tz_when(&r->end, yy + 1, r->dst_off);
    int in_dst = t >= start && t < end;
    if (in_dst) {
      *off = r->dst_off;
      *abbr = r->dst_abbr;
      return;
    }
  }
}

static void lg_tz_at(const lg_tz *z, int64_t t, int32_t *off, const char **abbr) {
  /* after the last transition (or without any), the footer's rule says */
  if (z->has_rule && (z->n_trans == 0 || t >= z->trans[z->n_trans - 1])) {
    lg_tz_rule_at(&z->rule, t, off, abbr);
    return;
  }
  size_t type = 0;
  if (z->n_trans > 0 && t >= z->trans[0]) {
    size_t lo = 0, hi = z->n_trans; /* last transition <= t */
    while (hi - lo > 1) {
      size_t mid = lo + (hi - lo) / 2;
      if (z->trans[mid] <= t)
        lo = mid;
      else
        hi = mid;
    }
    type = z->idx[lo];
  }
  *off = z->utoff[type];
  *abbr = z->abbrs + z->abbrind[type];
}

/* A zone name that can only name a file below the zone folder. */
static int lg_tz_valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 200 || s[0] == '/' || s[0] == '.' || strstr(s, "..") != NULL) return 0;
  for (; *s != '\0'; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
          c == '_' || c == '-' || c == '+'))
      return 0;
  }
  return 1;
}

/* Reads and checks the TZif file; NULL with *why set when it cannot. */
static lg_tz *lg_tz_load(const char *path, const char **why) {
  *why = "cannot be read";
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    *why = "is not a zone this system knows";
    return NULL;
  }
  uint8_t *data = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      if (cap >= (1u << 20)) break; /* zone files are a few KiB */
      cap = cap ? cap * 2 : 4096;
      uint8_t *p = realloc(data, cap);
      if (p == NULL) break;
      data = p;
    }
    size_t got = fread(data + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  fclose(f);
  lg_tz *z = calloc(1, sizeof *z);
  if (z == NULL || data == NULL) goto bad;
  *why = "is not a valid TZif zone file";
  const uint8_t *p = data, *end = data + len;
  if (len < 44 || memcmp(p, "TZif", 4) != 0) goto bad;
  int version = p[4];
  int64_t cnt[6];
  for (int i = 0; i < 6; i++) cnt[i] = lg_be(p + 20 + 4 * i, 4);
  int tsize = 4;
  if (version >= '2') { /* skip the 32-bit part: the 64-bit one follows */
    int64_t skip = cnt[3] * 5 + cnt[4] * 6 + cnt[5] + cnt[2] * 8 + cnt[1] + cnt[0];
    if (skip < 0 || skip > end - p - 44 || end - p - 44 - skip < 44) goto bad;
    p += 44 + skip;
    if (memcmp(p, "TZif", 4) != 0) goto bad;
    for (int i = 0; i < 6; i++) cnt[i] = lg_be(p + 20 + 4 * i, 4);
    tsize = 8;
  }
  for (int i = 0; i < 6; i++)
    if (cnt[i] < 0 || cnt[i] > 100000) goto bad;
  int64_t isut = cnt[0], isstd = cnt[1], leap = cnt[2], timecnt = cnt[3], typecnt = cnt[4],
          charcnt = cnt[5];
  int64_t body = timecnt * (tsize + 1) + typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isut;
  p += 44;
  if (typecnt < 1 || charcnt < 1 || body > end - p) goto bad;
  z->n_trans = (size_t)timecnt;
  z->n_types = (size_t)typecnt;
  z->trans = calloc(z->n_trans + 1, sizeof *z->trans);
  z->idx = calloc(z->n_trans + 1, 1);
  z->utoff = calloc(z->n_types, sizeof *z->utoff);
  z->abbrind = calloc(z->n_types, 1);
  z->abbrs = calloc((size_t)charcnt + 1, 1);
  if (!z->trans || !z->idx || !z->utoff || !z->abbrind || !z->abbrs) goto bad;
  for (size_t i = 0; i < z->n_trans; i++) {
    z->trans[i] = lg_be(p, tsize);
    p += tsize;
    if (i > 0 && z->trans[i] <= z->trans[i - 1]) goto bad;
  }
  for (size_t i = 0; i < z->n_trans; i++) {
    z->idx[i] = *p++;
    if (z->idx[i] >= z->n_types) goto bad;
  }
  for (size_t i = 0; i < z->n_types; i++) {
    z->utoff[i] = (int32_t)lg_be(p, 4);
    z->abbrind[i] = p[5];
    if (z->abbrind[i] >= charcnt || z->utoff[i] < -89999 || z->utoff[i] > 93599) goto bad;
    p += 6;
  }
  memcpy(z->abbrs, p, (size_t)charcnt);
  z->abbrs_len = (size_t)charcnt;
  p += charcnt + leap * (tsize + 4) + isstd + isut;
  if (tsize == 8 && p < end && *p == '\n') { /* the footer */
    const uint8_t *nl = memchr(p + 1, '\n', (size_t)(end - p - 1));
    if (nl != NULL && nl - p - 1 < 128) {
      char footer[128];
      memcpy(footer, p + 1, (size_t)(nl - p - 1));
      footer[nl - p - 1] = '\0';
      if (footer[0] != '\0') {
        if (lg_tz_parse_rule(footer, &z->rule) != 0) {
          *why = "has a TZ rule this logger cannot read";
          goto bad;
        }
        z->has_rule = 1;
      }
    }
  }
  free(data);
  return z;
bad:
  free(data);
  lg_tz_free(z);
  return NULL;
}

/* ------------------------------------------------------------------------- instance */

typedef struct lg_line {
  char *p;
  size_t n;
} lg_line;

typedef struct lg_logger {
  lg_token *tokens;
  size_t n_tokens;
  int json, colors, newline; /* newline: append '\n' to every text line */
  lg_zone zone;
  long offset_s; /* LG_ZONE_FIXED */
  lg_tz *tz;     /* LG_ZONE_IANA */
  lg_timefmt time_format;
  char *strftime_pattern;
  long pid;
  char local_key[64];

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
} lg_logger;

/* ---------------------------------------------------------------------- create/destroy */

static void lg_free_tokens(lg_logger *l) {
  for (size_t i = 0; i < l->n_tokens; i++) free(l->tokens[i].text);
  free(l->tokens);
  l->tokens = NULL;
  l->n_tokens = 0;
}

static ph_status lg_add_token(lg_logger *l, const ph_config *cfg, lg_tag tag, const char *s,
                              size_t n, size_t arg_off, const char *arg_static) {
  lg_token *t = realloc(l->tokens, (l->n_tokens + 1) * sizeof *t);
  if (t == NULL) return ph_config_error(cfg, NULL, "out of memory");
  l->tokens = t;
  char *text = malloc(n + 1);
  if (text == NULL) return ph_config_error(cfg, NULL, "out of memory");
  memcpy(text, s, n);
  text[n] = '\0';
  t[l->n_tokens].tag = tag;
  t[l->n_tokens].text = text;
  t[l->n_tokens].arg = arg_static != NULL ? arg_static : text + arg_off;
  l->n_tokens++;
  return PH_OK;
}

static ph_status lg_parse_format(lg_logger *l, const ph_config *cfg, const char *f) {
  const char *lit = f;
  const char *p = f;
  while (*p != '\0') {
    if (p[0] != '$' || p[1] != '{') {
      p++;
      continue;
    }
    if (p > lit && lg_add_token(l, cfg, LG_LITERAL, lit, (size_t)(p - lit), 0, NULL) != PH_OK)
      return PH_ERROR;
    const char *name = p + 2;
    const char *end = strchr(name, '}');
    if (end == NULL)
      return ph_config_error(cfg, "format",
                             "has a '${' without its '}' at \"%.20s\": write placeholders like "
                             "${status}",
                             p);
    size_t n = (size_t)(end - name);
    int found = 0;
    for (size_t i = 0; !found && i < sizeof lg_simple / sizeof lg_simple[0]; i++)
      if (strlen(lg_simple[i].name) == n && strncmp(name, lg_simple[i].name, n) == 0) {
        if (lg_add_token(l, cfg, lg_simple[i].tag, name, n, 0, NULL) != PH_OK) return PH_ERROR;
        found = 1;
      }
    for (size_t i = 0; !found && i < sizeof lg_prefixed / sizeof lg_prefixed[0]; i++) {
      size_t pl = strlen(lg_prefixed[i].prefix);
      if (n > pl && strncmp(name, lg_prefixed[i].prefix, pl) == 0) {
        if (lg_add_token(l, cfg, lg_prefixed[i].tag, name, n, pl, NULL) != PH_OK) return PH_ERROR;
        found = 1;
      }
    }
    for (size_t i = 0; !found && i < sizeof lg_colors / sizeof lg_colors[0]; i++)
      if (strlen(lg_colors[i].name) == n && strncmp(name, lg_colors[i].name, n) == 0) {
        if (lg_add_token(l, cfg, LG_COLOR, name, n, 0, lg_colors[i].seq) != PH_OK) return PH_ERROR;
        found = 1;
      }
    if (!found) {
      static const char *const refused[] = {"body",  "resBody",  "reqHeaders",
                                            "form:", "protocol", "port"};
      for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strncmp(name, refused[i], strlen(refused[i])) == 0 &&
            (refused[i][strlen(refused[i]) - 1] == ':' || strlen(refused[i]) == n))
          return ph_config_error(cfg, "format",
                                 "the placeholder ${%.*s} is not supported by plughost's "
                                 "logger (bodies and whole header sets would log secrets; "
                                 "the exchange has no protocol, port or parsed form): log "
                                 "single headers with ${header:<Name>} instead",
                                 (int)n, name);
      return ph_config_error(cfg, "format",
                             "unknown placeholder ${%.*s}: use pid, time, status, latency, "
                             "ip, ips, method, path, url, route, host, ua, referer, "
                             "queryParams, bytesSent, bytesReceived, error, locals:<key>, "
                             "header:<Name>, reqHeader:<Name>, respHeader:<Name>, "
                             "query:<name>, cookie:<name> or a colour",
                             (int)n, name);
    }
    p = end + 1;
    lit = p;
  }
  if (p > lit && lg_add_token(l, cfg, LG_LITERAL, lit, (size_t)(p - lit), 0, NULL) != PH_OK)
    return PH_ERROR;
  if (l->json) {
    /* JSON members: placeholders only, each name once. */
    size_t j = 0;
    for (size_t i = 0; i < l->n_tokens; i++) {
      lg_token t = l->tokens[i];
      int keep = t.tag != LG_LITERAL && t.tag != LG_COLOR;
      for (size_t k = 0; keep && k < j; k++)
        if (strcmp(l->tokens[k].text, t.text) == 0) keep = 0;
      if (keep)
        l->tokens[j++] = t;
      else
        free(t.text);
    }
    l->n_tokens = j;
    if (j == 0)
      return ph_config_error(cfg, "format",
                             "holds no placeholder: with json: true the line's members are "
                             "the format's placeholders, like \"${time} ${status}\"");
  } else {
    l->newline =
        !(l->n_tokens > 0 && l->tokens[l->n_tokens - 1].tag == LG_LITERAL &&
          l->tokens[l->n_tokens - 1].text[strlen(l->tokens[l->n_tokens - 1].text) - 1] == '\n');
  }
  return PH_OK;
}

/* "+HH:MM", "-HHMM", "+HH", optionally after "UTC"/"GMT". Returns 0 and the offset. */
static int lg_parse_offset(const char *s, long *out) {
  if (strncmp(s, "UTC", 3) == 0 || strncmp(s, "GMT", 3) == 0) s += 3;
  if (*s != '+' && *s != '-') return -1;
  int neg = *s == '-';
  s++;
  int d[4], nd = 0;
  for (; *s != '\0' && nd < 4; s++) {
    if (*s == ':' && nd == 2) continue;
    if (*s < '0' || *s > '9') return -1;
    d[nd++] = *s - '0';
  }
  if (*s != '\0' || (nd != 2 && nd != 4)) return -1;
  long h = d[0] * 10 + d[1], m = nd == 4 ? d[2] * 10 + d[3] : 0;
  if (h > 14 || m > 59) return -1;
  *out = (neg ? -1 : 1) * (h * 3600 + m * 60);
  return 0;
}

static void lg_stop_writer(lg_logger *l);

static void lg_destroy(void *self) {
  lg_logger *l = self;
  if (l == NULL) return;
  lg_stop_writer(l);
  for (size_t i = 0; i < l->count; i++) free(l->ring[(l->head + i) % l->cap].p);
  free(l->ring);
  free(l->batch);
  if (l->path != NULL && l->fd >= 0) close(l->fd);
  free(l->path);
  free(l->strftime_pattern);
  lg_tz_free(l->tz);
  lg_free_tokens(l);
  if (l->cv_ready) pthread_cond_destroy(&l->cv);
  if (l->mu_ready) pthread_mutex_destroy(&l->mu);
  free(l);
}

static void *lg_writer_main(void *arg);

/* Opens a file output without ever blocking: O_NONBLOCK (a FIFO without a reader gives
** ENXIO: the writer opens it later). Returns the fd, -1 for "later", -2 on error (errno). */
static int lg_open_output(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
  if (fd >= 0) return fd;
  if (errno == ENXIO) return -1;
  return -2;
}

static ph_status lg_create(const ph_config *cfg, void **self) {
  lg_logger *l = calloc(1, sizeof *l);
  if (l == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = l;
  l->fd = -1;

  const char *format, *zone, *tf, *output;
  int64_t interval = 0, queue = 0;
  int disable_colors = 0;
  if (ph_config_bool(cfg, "json", 0, &l->json) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "format", LG_DEFAULT_FORMAT, &format) != PH_OK) return PH_ERROR;
  if (format[0] == '\0')
    return ph_config_error(cfg, "format", "must not be empty (leave it out for the default \"%s\")",
                           "${pid} | ${time} | ${status} | ${latency} | ${ip} | ${method} | "
                           "${path} | ${error}");
  if (lg_parse_format(l, cfg, format) != PH_OK) return PH_ERROR;

  if (ph_config_string(cfg, "timeZone", "UTC", &zone) != PH_OK) return PH_ERROR;
  if (strcmp(zone, "UTC") == 0 || strcmp(zone, "GMT") == 0 || strcmp(zone, "Z") == 0 ||
      strcmp(zone, "Etc/UTC") == 0) {
    l->zone = LG_ZONE_UTC;
  } else if (strcmp(zone, "Local") == 0) {
    l->zone = LG_ZONE_LOCAL;
  } else if (lg_parse_offset(zone, &l->offset_s) == 0) {
    l->zone = l->offset_s == 0 ? LG_ZONE_UTC : LG_ZONE_FIXED;
  } else if (lg_tz_valid_name(zone)) {
    const char *dir = getenv("TZDIR"); /* read once, here: never during requests */
    if (dir == NULL || dir[0] == '\0') dir = "/usr/share/zoneinfo";
    size_t cap = strlen(dir) + strlen(zone) + 2;
    char *path = malloc(cap);
    if (path == NULL) return ph_config_error(cfg, NULL, "out of memory");
    snprintf(path, cap, "%s/%s", dir, zone);
    const char *why = NULL;
    l->tz = lg_tz_load(path, &why);
    if (l->tz == NULL) {
      ph_status st = ph_config_error(cfg, "timeZone",
                                     "'%s' %s (looked for %s): use an IANA zone name like "
                                     "\"Europe/Paris\" (Debian: package tzdata), \"UTC\", "
                                     "\"Local\" or a fixed offset like \"+01:00\"",
                                     zone, why, path);
      free(path);
      return st;
    }
    free(path);
    l->zone = LG_ZONE_IANA;
  } else {
    return ph_config_error(cfg, "timeZone",
                           "'%s' is not a time zone: use an IANA zone name like "
                           "\"Europe/Paris\", \"UTC\", \"Local\" (the process's own zone, "
                           "from TZ or /etc/localtime) or a fixed offset like \"+01:00\" or "
                           "\"-0530\"",
                           zone);
  }

  if (ph_config_string(cfg, "timeFormat", "RFC3339", &tf) != PH_OK) return PH_ERROR;
  if (strcmp(tf, "RFC3339") == 0)
    l->time_format = LG_TF_RFC3339;
  else if (strcmp(tf, "RFC3339Milli") == 0)
    l->time_format = LG_TF_RFC3339_MILLI;
  else if (strcmp(tf, "RFC3339Nano") == 0)
    l->time_format = LG_TF_RFC3339_NANO;
  else if (strcmp(tf, "Unix") == 0)
    l->time_format = LG_TF_UNIX;
  else if (strcmp(tf, "UnixMilli") == 0)
    l->time_format = LG_TF_UNIX_MILLI;
  else if (strchr(tf, '%') != NULL && strlen(tf) <= 200) {
    l->time_format = LG_TF_STRFTIME;
    l->strftime_pattern = phu_strdup(tf);
    if (l->strftime_pattern == NULL) return ph_config_error(cfg, NULL, "out of memory");
  } else {
    return ph_config_error(cfg, "timeFormat",
                           "'%s' is not a time format: use \"RFC3339\", \"RFC3339Milli\", "
                           "\"RFC3339Nano\", \"Unix\", \"UnixMilli\" or a strftime pattern "
                           "(up to 200 characters) like \"%%d/%%b/%%Y:%%H:%%M:%%S %%z\"",
                           tf);
  }

  if (ph_config_duration_ms(cfg, "timeInterval", 1, &interval) != PH_OK) return PH_ERROR;
  if (interval < 0) return ph_config_error(cfg, "timeInterval", "must not be negative");
  if (ph_config_bool(cfg, "disableColors", 0, &disable_colors) != PH_OK) return PH_ERROR;
  l->colors = !disable_colors && !l->json;
  if (ph_config_int(cfg, "queueSize", LG_DEFAULT_QUEUE, &queue) != PH_OK) return PH_ERROR;
  if (queue < 1 || queue > LG_MAX_QUEUE)
    return ph_config_error(cfg, "queueSize", "must be between 1 and %d lines, not %" PRId64,
                           LG_MAX_QUEUE, queue);
  if (ph_config_duration_ms(cfg, "flushTimeout", LG_DEFAULT_FLUSH_MS, &l->flush_timeout_ms) !=
      PH_OK)
    return PH_ERROR;
  if (l->flush_timeout_ms < 0) return ph_config_error(cfg, "flushTimeout", "must not be negative");

  if (ph_config_string(cfg, "output", "stdout", &output) != PH_OK) return PH_ERROR;
  if (strcmp(output, "stdout") == 0) {
    l->fd = STDOUT_FILENO;
    l->output_name = "stdout";
  } else if (strcmp(output, "stderr") == 0) {
    l->fd = STDERR_FILENO;
    l->output_name = "stderr";
  } else if (output[0] == '\0') {
    return ph_config_error(cfg, "output",
                           "must not be empty: \"stdout\", \"stderr\" or a file path");
  } else {
    l->path = phu_strdup(output);
    if (l->path == NULL) return ph_config_error(cfg, NULL, "out of memory");
    l->output_name = l->path;
    int fd = lg_open_output(l->path);
    if (fd == -2)
      return ph_config_error(cfg, "output", "cannot open '%s' for appending: %s", l->path,
                             strerror(errno));
    if (fd >= 0) {
      struct stat st;
      if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return ph_config_error(cfg, "output", "'%s' is a folder, not a file", l->path);
      }
    }
    l->fd = fd;
  }

  l->pid = (long)getpid();
  snprintf(l->local_key, sizeof l->local_key, "logger.%p", (void *)l);
  l->cap = (size_t)queue;
  l->ring = calloc(l->cap, sizeof *l->ring);
  l->batch = calloc(l->cap, sizeof *l->batch);
  if (l->ring == NULL || l->batch == NULL) return ph_config_error(cfg, NULL, "out of memory");
  if (pthread_mutex_init(&l->mu, NULL) != 0)
    return ph_config_error(cfg, NULL, "cannot create a mutex");
  l->mu_ready = 1;
  pthread_condattr_t cv_attr; /* the writer's batching wait counts monotonic time */
  int cv_failed = pthread_condattr_init(&cv_attr) != 0 ||
                  pthread_condattr_setclock(&cv_attr, CLOCK_MONOTONIC) != 0 ||
                  pthread_cond_init(&l->cv, &cv_attr) != 0;
  pthread_condattr_destroy(&cv_attr);
  if (cv_failed) return ph_config_error(cfg, NULL, "cannot create a condition variable");
  l->cv_ready = 1;
  /* The writer runs with every signal blocked: process signals go to the host's threads,
  ** and a FIFO whose reader left gives the writer EPIPE instead of killing the process
  ** with SIGPIPE (whatever the host did with SIGPIPE). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&l->writer, NULL, lg_writer_main, l);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0)
    return ph_config_error(cfg, NULL, "cannot start the writer thread: %s", strerror(err));
  l->thread_started = 1;
  return PH_OK;
}

/* --------------------------------------------------------------------- the writer */

static int64_t lg_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Last-resort report, straight to stderr (never the log output itself). */
static void lg_complain(const lg_logger *l, const char *what, uint64_t lost) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "logger: %" PRIu64 " line%s lost: %s (output %s)\n", lost,
                   lost == 1 ? "" : "s", what, l->output_name);
  if (n > 0) {
    ssize_t w = write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    (void)w;
  }
}

/* Whether destroy asked the writer to stop and its flushTimeout has passed. */
static int lg_past_deadline(lg_logger *l) {
  pthread_mutex_lock(&l->mu);
  int past = l->stopping && lg_mono_ms() >= l->stop_deadline_ms;
  pthread_mutex_unlock(&l->mu);
  return past;
}

/* Writes all of data; waits for a FIFO's reader or a full pipe without a time limit until
** destroy asks the writer to stop, then up to flushTimeout. Returns 0, or -1 (errno;
** ETIMEDOUT when the flushTimeout passed). Called without the queue's lock. */
static int lg_write_all(lg_logger *l, const char *data, size_t n) {
  size_t done = 0;
  while (done < n) {
    if (l->fd < 0) { /* a FIFO waiting for its reader */
      int fd = lg_open_output(l->path);
      if (fd == -2) return -1;
      if (fd == -1) {
        if (lg_past_deadline(l)) {
          errno = ETIMEDOUT;
          return -1;
        }
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL);
        continue;
      }
      l->fd = fd;
    }
    ssize_t w = write(l->fd, data + done, n - done);
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (lg_past_deadline(l)) {
        errno = ETIMEDOUT;
        return -1;
      }
      struct pollfd pfd = {.fd = l->fd, .events = POLLOUT};
      poll(&pfd, 1, 100);
      continue;
    }
    if (w < 0 && errno == EPIPE && l->path != NULL) {
      /* the FIFO's reader went away: wait for the next one */
      close(l->fd);
      l->fd = -1;
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
  lg_logger *l = arg;
  lg_buf out = {0};
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (l->count == 0 && l->dropped == 0 && !l->stopping) pthread_cond_wait(&l->cv, &l->mu);
    if (l->count == 0 && l->dropped == 0) break; /* stopping, all written */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += LG_BATCH_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    while (!l->stopping && l->count < l->cap / 2 &&
           pthread_cond_timedwait(&l->cv, &l->mu, &until) == 0) {}
    size_t n = l->count;
    for (size_t i = 0; i < n; i++) l->batch[i] = l->ring[(l->head + i) % l->cap];
    l->head = (l->head + n) % l->cap;
    l->count = 0;
    uint64_t dropped = l->dropped;
    l->dropped = 0;
    pthread_mutex_unlock(&l->mu);

    out.len = 0;
    for (size_t i = 0; i < n; i++) {
      lg_put(&out, l->batch[i].p, l->batch[i].n);
      free(l->batch[i].p);
    }
    if (dropped > 0) {
      if (l->json)
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
      lg_complain(l, "out of memory", (uint64_t)n);
      out.oom = 0;
    } else if (out.len > 0 && lg_write_all(l, out.p, out.len) != 0) {
      char why[256];
      snprintf(why, sizeof why, "%s",
               errno == ETIMEDOUT ? "not writable before the "
                                    "flushTimeout at shutdown"
                                  : strerror(errno));
      lg_complain(l, why, (uint64_t)n + dropped);
    }
    pthread_mutex_lock(&l->mu);
  }
  pthread_mutex_unlock(&l->mu);
  free(out.p);
  return NULL;
}

static void lg_stop_writer(lg_logger *l) {
  if (!l->thread_started) return;
  pthread_mutex_lock(&l->mu);
  l->stopping = 1;
  l->stop_deadline_ms = lg_mono_ms() + l->flush_timeout_ms;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->writer, NULL);
  l->thread_started = 0;
}

/* Never blocks: a full queue drops the line and counts it. Takes ownership of line. */
static void lg_enqueue(lg_logger *l, char *line, size_t n) {
  pthread_mutex_lock(&l->mu);
  if (l->count == l->cap) {
    l->dropped++;
    pthread_mutex_unlock(&l->mu);
    free(line);
    return;
  }
  l->ring[(l->head + l->count) % l->cap] = (lg_line){line, n};
  l->count++;
  /* Wake the writer only when it waits for a first line or the queue gets half full:
  ** while it gathers a batch, a signal per line would only cost a context switch. */
  if (l->count == 1 || l->count == l->cap / 2) pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* ----------------------------------------------------------------------- the hooks */

typedef struct lg_start {
  int64_t mono_ns;
  int64_t real_s;
  int64_t real_ns;
} lg_start;

static ph_next lg_on_request(void *self, ph_exchange *ex) {
  const lg_logger *l = self;
  struct timespec mono, real;
  clock_gettime(CLOCK_MONOTONIC, &mono);
  clock_gettime(CLOCK_REALTIME, &real);
  lg_start st = {(int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec, (int64_t)real.tv_sec,
                 (int64_t)real.tv_nsec};
  return ph_local_set(ex, l->local_key, &st, sizeof st) == PH_OK ? PH_NEXT_CONTINUE : PH_NEXT_ERROR;
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

/* Formats the time `s` seconds + `ns` in the instance's zone and format. */
static void lg_put_time(const lg_logger *l, lg_buf *b, int64_t s, int64_t ns) {
  if (l->time_format == LG_TF_UNIX) {
    lg_putf(b, "%" PRId64, s);
    return;
  }
  if (l->time_format == LG_TF_UNIX_MILLI) {
    lg_putf(b, "%" PRId64, s * 1000 + ns / 1000000);
    return;
  }
  struct tm tm;
  long off = 0;
  time_t t = (time_t)s;
  const char *abbr = "UTC";
  if (l->zone == LG_ZONE_LOCAL) {
    if (localtime_r(&t, &tm) == NULL) return;
    off = tm.tm_gmtoff;
    abbr = tm.tm_zone != NULL ? tm.tm_zone : "";
  } else {
    off = l->zone == LG_ZONE_FIXED ? l->offset_s : 0;
    if (l->zone == LG_ZONE_IANA) {
      int32_t o;
      lg_tz_at(l->tz, s, &o, &abbr);
      off = o;
    }
    time_t shifted = t + off;
    if (gmtime_r(&shifted, &tm) == NULL) return;
  }
  char sign = off < 0 ? '-' : '+';
  int hh = (int)(labs(off) / 3600 % 100), mm = (int)(labs(off) % 3600 / 60);
  char zone_colon[16], zone_plain[16];
  snprintf(zone_colon, sizeof zone_colon, "%c%02d:%02d", sign, hh, mm);
  snprintf(zone_plain, sizeof zone_plain, "%c%02d%02d", sign, hh, mm);
  if (l->zone == LG_ZONE_FIXED) abbr = zone_plain;
  if (abbr[0] == '\0') abbr = zone_plain;
  if (l->time_format != LG_TF_STRFTIME) {
    lg_putf(b, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
            tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (l->time_format == LG_TF_RFC3339_MILLI) lg_putf(b, ".%03d", (int)(ns / 1000000));
    if (l->time_format == LG_TF_RFC3339_NANO) lg_putf(b, ".%09d", (int)ns);
    lg_puts(b, off == 0 ? "Z" : zone_colon);
    return;
  }
  /* strftime, with the zone directives answered here (tm's zone fields belong to UTC for
  ** fixed offsets). */
  for (const char *p = l->strftime_pattern; *p != '\0'; p++) {
    if (*p != '%' || p[1] == '\0') {
      lg_put(b, p, 1);
      continue;
    }
    if (p[1] == 'z') {
      lg_puts(b, zone_plain);
      p++;
    } else if (p[1] == ':' && p[2] == 'z') {
      lg_puts(b, zone_colon);
      p += 2;
    } else if (p[1] == 'Z') {
      lg_puts(b, abbr);
      p++;
    } else if (p[1] == 'f') { /* microseconds, as Python's strftime */
      lg_putf(b, "%06d", (int)(ns / 1000));
      p++;
    } else {
      char spec[3] = {'%', p[1], '\0'};
      char tmp[128];
      size_t n = strftime(tmp, sizeof tmp, spec, &tm);
      lg_put(b, tmp, n);
      p++;
    }
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

/* A string value: quoted in JSON, null when s is NULL. */
static void lg_put_str(lg_buf *b, const void *s, size_t n, int json) {
  if (s == NULL) {
    if (json) lg_puts(b, "null");
    return;
  }
  if (json) lg_puts(b, "\"");
  lg_put_value(b, s, n, json);
  if (json) lg_puts(b, "\"");
}

static void lg_put_cstr(lg_buf *b, const char *s, int json) {
  lg_put_str(b, s, s != NULL ? strlen(s) : 0, json);
}

static ph_status lg_on_response(void *self, ph_exchange *ex) {
  lg_logger *l = self;
  struct timespec now_mono, now_real;
  clock_gettime(CLOCK_MONOTONIC, &now_mono);
  clock_gettime(CLOCK_REALTIME, &now_real);
  size_t st_len = 0;
  const uint8_t *st_raw = ph_local_get(ex, l->local_key, &st_len);
  lg_start st;
  int have_start = st_raw != NULL && st_len == sizeof st;
  if (have_start) {
    memcpy(&st, st_raw, sizeof st);
  } else { /* the request hook did not run (or its local was replaced) */
    st.mono_ns = -1;
    st.real_s = (int64_t)now_real.tv_sec;
    st.real_ns = (int64_t)now_real.tv_nsec;
  }
  int json = l->json;
  int status = ph_status_get(ex);
  lg_buf b = {0};
  if (json) lg_puts(&b, "{");
  for (size_t i = 0; i < l->n_tokens; i++) {
    const lg_token *t = &l->tokens[i];
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
        lg_put_time(l, &b, st.real_s, st.real_ns);
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
        PH_API(ex)->body(ex, t->tag == LG_BYTES_SENT ? PH_RESPONSE : PH_REQUEST, &n);
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
  else if (l->newline)
    lg_puts(&b, "\n");
  if (b.oom) {
    free(b.p);
    ph_error(ex, "logger: out of memory formatting the log line");
    return PH_ERROR;
  }
  lg_enqueue(l, b.p, b.len);
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
