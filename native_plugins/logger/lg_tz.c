/*
** lg_tz: IANA time zones without the C library's process-wide TZ state.
**
** A zone's TZif file (RFC 8536, versions 1 to 4) is read once into an immutable lg_tz:
** the transitions of the file's 64-bit part (the 32-bit part of a version-1 file), then
** its footer, a POSIX TZ string such as "CET-1CEST,M3.5.0,M10.5.0/3", for the times after
** the last transition. lg_tz_at answers from that data alone: safe from any thread, no
** global state. The file is checked as it is read (sizes, counts, indexes, ascending
** transitions, offsets, the footer's syntax); a file that fails is refused with a reason.
*/
#include "lg_tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct lg_tz {
  size_t n_trans, n_types;
  int64_t *trans;   /* transition times, ascending */
  uint8_t *idx;     /* type of each transition */
  int32_t *utoff;   /* per type */
  uint8_t *abbrind; /* per type: index into abbrs */
  char *abbrs;
  size_t abbrs_len;
  int has_rule;
  lg_tzrule rule;
};

void lg_tz_free(lg_tz *z) {
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

void lg_tz_at(const lg_tz *z, int64_t t, int32_t *off, const char **abbr) {
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
int lg_tz_valid_name(const char *s) {
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
lg_tz *lg_tz_load(const char *path, const char **why) {
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
