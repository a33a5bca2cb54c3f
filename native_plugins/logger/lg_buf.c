/* lg_buf: the logger's growable output buffer, and values made safe for a log line. */
#define _POSIX_C_SOURCE 200809L

#include "lg_buf.h"

#include "phu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lg_put(lg_buf *b, const void *data, size_t n) {
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

void lg_puts(lg_buf *b, const char *s) {
  lg_put(b, s, strlen(s));
}

void lg_putf(lg_buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) lg_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Made safe for the mode: JSON string content (without quotes), or text
** with control characters as \xNN; invalid UTF-8 becomes U+FFFD either way. */
void lg_put_value(lg_buf *b, const void *data, size_t n, int json) {
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

/* A string value: quoted in JSON, null when s is NULL. */
void lg_put_str(lg_buf *b, const void *s, size_t n, int json) {
  if (s == NULL) {
    if (json) lg_puts(b, "null");
    return;
  }
  if (json) lg_puts(b, "\"");
  lg_put_value(b, s, n, json);
  if (json) lg_puts(b, "\"");
}

void lg_put_cstr(lg_buf *b, const char *s, int json) {
  lg_put_str(b, s, s != NULL ? strlen(s) : 0, json);
}
