/*
** lg_format: the logger's format option, "${pid} | ${time} | ${status}\n", parsed once at
** create into tokens (literal text and placeholders) that each response hook walks.
** Part of the logger plugin (private header).
*/
#ifndef LG_FORMAT_H
#define LG_FORMAT_H

#include "plugin.h"

#include <stddef.h>

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

typedef struct lg_token {
  lg_tag tag;
  char *text; /* literal text, or the placeholder as written (the JSON member name) */
  const char *arg; /* points into text: the part after "prefix:", or a colour sequence */
} lg_token;

typedef struct lg_format {
  lg_token *tokens;
  size_t n_tokens;
  int newline; /* text mode: append '\n' to every line (the format does not end with one) */
} lg_format;

/* Parses text into f (zero-initialised). With json, only the placeholders are kept, each
** name once (they are the members of the line's object). An unknown, refused or unclosed
** placeholder is a config error on "format" (through cfg). Call lg_format_free even when
** it fails. */
ph_status lg_format_parse(lg_format *f, const ph_config *cfg, const char *text, int json);
void lg_format_free(lg_format *f);

#endif
