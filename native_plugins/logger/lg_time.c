/* lg_time: the logger's ${time}, in the timeZone and timeFormat options (see lg_time.h). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* struct tm's tm_gmtoff and tm_zone */

#include "lg_time.h"

#include "phu.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

ph_status lg_time_set_zone(lg_time *t, const ph_config *cfg, const char *zone) {
  if (strcmp(zone, "UTC") == 0 || strcmp(zone, "GMT") == 0 || strcmp(zone, "Z") == 0 ||
      strcmp(zone, "Etc/UTC") == 0) {
    t->zone = LG_ZONE_UTC;
  } else if (strcmp(zone, "Local") == 0) {
    t->zone = LG_ZONE_LOCAL;
  } else if (lg_parse_offset(zone, &t->offset_s) == 0) {
    t->zone = t->offset_s == 0 ? LG_ZONE_UTC : LG_ZONE_FIXED;
  } else if (lg_tz_valid_name(zone)) {
    const char *dir = getenv("TZDIR"); /* read once, here: never during requests */
    if (dir == NULL || dir[0] == '\0') dir = "/usr/share/zoneinfo";
    size_t cap = strlen(dir) + strlen(zone) + 2;
    char *path = malloc(cap);
    if (path == NULL) return ph_config_error(cfg, NULL, "out of memory");
    snprintf(path, cap, "%s/%s", dir, zone);
    const char *why = NULL;
    t->tz = lg_tz_load(path, &why);
    if (t->tz == NULL) {
      ph_status st = ph_config_error(cfg, "timeZone",
                                     "'%s' %s (looked for %s): use an IANA zone name like "
                                     "\"Europe/Paris\" (Debian: package tzdata), \"UTC\", "
                                     "\"Local\" or a fixed offset like \"+01:00\"",
                                     zone, why, path);
      free(path);
      return st;
    }
    free(path);
    t->zone = LG_ZONE_IANA;
  } else {
    return ph_config_error(cfg, "timeZone",
                           "'%s' is not a time zone: use an IANA zone name like "
                           "\"Europe/Paris\", \"UTC\", \"Local\" (the process's own zone, "
                           "from TZ or /etc/localtime) or a fixed offset like \"+01:00\" or "
                           "\"-0530\"",
                           zone);
  }
  return PH_OK;
}

ph_status lg_time_set_format(lg_time *t, const ph_config *cfg, const char *tf) {
  if (strcmp(tf, "RFC3339") == 0)
    t->format = LG_TF_RFC3339;
  else if (strcmp(tf, "RFC3339Milli") == 0)
    t->format = LG_TF_RFC3339_MILLI;
  else if (strcmp(tf, "RFC3339Nano") == 0)
    t->format = LG_TF_RFC3339_NANO;
  else if (strcmp(tf, "Unix") == 0)
    t->format = LG_TF_UNIX;
  else if (strcmp(tf, "UnixMilli") == 0)
    t->format = LG_TF_UNIX_MILLI;
  else if (strchr(tf, '%') != NULL && strlen(tf) <= 200) {
    t->format = LG_TF_STRFTIME;
    t->strftime_pattern = phu_strdup(tf);
    if (t->strftime_pattern == NULL) return ph_config_error(cfg, NULL, "out of memory");
  } else {
    return ph_config_error(cfg, "timeFormat",
                           "'%s' is not a time format: use \"RFC3339\", \"RFC3339Milli\", "
                           "\"RFC3339Nano\", \"Unix\", \"UnixMilli\" or a strftime pattern "
                           "(up to 200 characters) like \"%%d/%%b/%%Y:%%H:%%M:%%S %%z\"",
                           tf);
  }
  return PH_OK;
}

void lg_time_free(lg_time *t) {
  lg_tz_free(t->tz);
  t->tz = NULL;
  free(t->strftime_pattern);
  t->strftime_pattern = NULL;
}

void lg_put_time(const lg_time *t, lg_buf *b, int64_t s, int64_t ns) {
  if (t->format == LG_TF_UNIX) {
    lg_putf(b, "%" PRId64, s);
    return;
  }
  if (t->format == LG_TF_UNIX_MILLI) {
    lg_putf(b, "%" PRId64, s * 1000 + ns / 1000000);
    return;
  }
  struct tm tm;
  long off = 0;
  time_t when = (time_t)s;
  const char *abbr = "UTC";
  if (t->zone == LG_ZONE_LOCAL) {
    if (localtime_r(&when, &tm) == NULL) return;
    off = tm.tm_gmtoff;
    abbr = tm.tm_zone != NULL ? tm.tm_zone : "";
  } else {
    off = t->zone == LG_ZONE_FIXED ? t->offset_s : 0;
    if (t->zone == LG_ZONE_IANA) {
      int32_t o;
      lg_tz_at(t->tz, s, &o, &abbr);
      off = o;
    }
    time_t shifted = when + off;
    if (gmtime_r(&shifted, &tm) == NULL) return;
  }
  char sign = off < 0 ? '-' : '+';
  int hh = (int)(labs(off) / 3600 % 100), mm = (int)(labs(off) % 3600 / 60);
  char zone_colon[16], zone_plain[16];
  snprintf(zone_colon, sizeof zone_colon, "%c%02d:%02d", sign, hh, mm);
  snprintf(zone_plain, sizeof zone_plain, "%c%02d%02d", sign, hh, mm);
  if (t->zone == LG_ZONE_FIXED) abbr = zone_plain;
  if (abbr[0] == '\0') abbr = zone_plain;
  if (t->format != LG_TF_STRFTIME) {
    lg_putf(b, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
            tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (t->format == LG_TF_RFC3339_MILLI) lg_putf(b, ".%03d", (int)(ns / 1000000));
    if (t->format == LG_TF_RFC3339_NANO) lg_putf(b, ".%09d", (int)ns);
    lg_puts(b, off == 0 ? "Z" : zone_colon);
    return;
  }
  /* strftime, with the zone directives answered here (tm's zone fields belong to UTC for
  ** fixed offsets). */
  for (const char *p = t->strftime_pattern; *p != '\0'; p++) {
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
