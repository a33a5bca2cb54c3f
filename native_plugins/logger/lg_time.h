/*
** lg_time: how the logger writes ${time}: the timeZone option (UTC, Local, a fixed offset or
** an IANA zone read through lg_tz) and the timeFormat option (RFC 3339 variants, Unix
** seconds or milliseconds, or a strftime pattern). Part of the logger plugin (private
** header).
*/
#ifndef LG_TIME_H
#define LG_TIME_H

#include "lg_buf.h"
#include "lg_tz.h"
#include "plugin.h"

#include <stdint.h>

typedef enum lg_zone { LG_ZONE_UTC, LG_ZONE_LOCAL, LG_ZONE_FIXED, LG_ZONE_IANA } lg_zone;
typedef enum lg_timefmt {
  LG_TF_RFC3339,
  LG_TF_RFC3339_MILLI,
  LG_TF_RFC3339_NANO,
  LG_TF_UNIX,
  LG_TF_UNIX_MILLI,
  LG_TF_STRFTIME
} lg_timefmt;

/* Zero-initialised: UTC, RFC 3339. Immutable after create: safe from any thread. */
typedef struct lg_time {
  lg_zone zone;
  long offset_s; /* LG_ZONE_FIXED */
  lg_tz *tz;     /* LG_ZONE_IANA */
  lg_timefmt format;
  char *strftime_pattern; /* LG_TF_STRFTIME */
} lg_time;

/* The timeZone option's value; an IANA zone's file is read here, from $TZDIR or
** /usr/share/zoneinfo. A bad zone is a config error on "timeZone" (through cfg). */
ph_status lg_time_set_zone(lg_time *t, const ph_config *cfg, const char *zone);

/* The timeFormat option's value; a bad one is a config error on "timeFormat". */
ph_status lg_time_set_format(lg_time *t, const ph_config *cfg, const char *format);

void lg_time_free(lg_time *t);

/* Appends the instant s seconds + ns nanoseconds (since 1970-01-01 UTC) in t's zone and
** format. */
void lg_put_time(const lg_time *t, lg_buf *b, int64_t s, int64_t ns);

#endif
