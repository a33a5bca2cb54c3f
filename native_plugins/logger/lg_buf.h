/*
** lg_buf: the logger's growable output buffer, and values made safe for a log line.
** Part of the logger plugin (private header).
*/
#ifndef LG_BUF_H
#define LG_BUF_H

#include "plugin.h"

#include <stddef.h>

#define LG_MAX_VALUE 4096 /* a longer value is cut ("...") */

/* A NUL-terminated, growable buffer; oom is set (and the text stops growing) when an
** allocation fails. Zero-initialise it; free(b.p) when done. */
typedef struct lg_buf {
  char *p;
  size_t len, cap;
  int oom;
} lg_buf;

void lg_put(lg_buf *b, const void *data, size_t n);
void lg_puts(lg_buf *b, const char *s);
void lg_putf(lg_buf *b, const char *fmt, ...) PH__PRINTF(2, 3);

/* Appends a value made safe for the mode: JSON string content (without quotes), or text
** with control characters as \xNN; invalid UTF-8 becomes U+FFFD either way. */
void lg_put_value(lg_buf *b, const void *data, size_t n, int json);

/* A string value: quoted in JSON, null (JSON) or nothing (text) when s is NULL. */
void lg_put_str(lg_buf *b, const void *s, size_t n, int json);
void lg_put_cstr(lg_buf *b, const char *s, int json);

#endif
