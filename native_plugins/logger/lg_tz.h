/*
** lg_tz: IANA time zones read from TZif files (RFC 8536) and evaluated without the C
** library's process-wide TZ state (setenv + tzset are not thread-safe in a multi-threaded
** host). Part of the logger plugin; no global state: a loaded zone is immutable and may be
** used from any thread.
*/
#ifndef LG_TZ_H
#define LG_TZ_H

#include <stdint.h>

typedef struct lg_tz lg_tz;

/* Reads and checks the TZif file at path: its transitions, then the POSIX TZ rule of its
** footer (version 2+) for later times. NULL with *why set to a phrase that completes
** "'<zone>' ..." (e.g. "is not a valid TZif zone file") when the file cannot be used. */
lg_tz *lg_tz_load(const char *path, const char **why);

/* The zone's offset east of UTC (seconds) and abbreviation ("CEST", "+0530") at the
** instant t (seconds since 1970-01-01 UTC, any int64_t). The abbreviation lives as long
** as z. */
void lg_tz_at(const lg_tz *z, int64_t t, int32_t *utc_offset, const char **abbreviation);

void lg_tz_free(lg_tz *z);

/* Whether name can only name a file below a zone folder: letters, digits, '/', '_', '-'
** and '+', no leading '/' or '.', no "..", at most 200 characters. */
int lg_tz_valid_name(const char *name);

#endif
