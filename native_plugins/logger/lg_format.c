/* lg_format: the logger's format option parsed into tokens (see lg_format.h). */
#define _POSIX_C_SOURCE 200809L

#include "lg_format.h"

#include <stdlib.h>
#include <string.h>

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

void lg_format_free(lg_format *fm) {
  for (size_t i = 0; i < fm->n_tokens; i++) free(fm->tokens[i].text);
  free(fm->tokens);
  fm->tokens = NULL;
  fm->n_tokens = 0;
}

static ph_status lg_add_token(lg_format *fm, const ph_config *cfg, lg_tag tag, const char *s,
                              size_t n, size_t arg_off, const char *arg_static) {
  lg_token *t = realloc(fm->tokens, (fm->n_tokens + 1) * sizeof *t);
  if (t == NULL) return ph_config_error(cfg, NULL, "out of memory");
  fm->tokens = t;
  char *text = malloc(n + 1);
  if (text == NULL) return ph_config_error(cfg, NULL, "out of memory");
  memcpy(text, s, n);
  text[n] = '\0';
  t[fm->n_tokens].tag = tag;
  t[fm->n_tokens].text = text;
  t[fm->n_tokens].arg = arg_static != NULL ? arg_static : text + arg_off;
  fm->n_tokens++;
  return PH_OK;
}

ph_status lg_format_parse(lg_format *fm, const ph_config *cfg, const char *text, int json) {
  const char *lit = text;
  const char *p = text;
  while (*p != '\0') {
    if (p[0] != '$' || p[1] != '{') {
      p++;
      continue;
    }
    if (p > lit && lg_add_token(fm, cfg, LG_LITERAL, lit, (size_t)(p - lit), 0, NULL) != PH_OK)
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
        if (lg_add_token(fm, cfg, lg_simple[i].tag, name, n, 0, NULL) != PH_OK) return PH_ERROR;
        found = 1;
      }
    for (size_t i = 0; !found && i < sizeof lg_prefixed / sizeof lg_prefixed[0]; i++) {
      size_t pl = strlen(lg_prefixed[i].prefix);
      if (n > pl && strncmp(name, lg_prefixed[i].prefix, pl) == 0) {
        if (lg_add_token(fm, cfg, lg_prefixed[i].tag, name, n, pl, NULL) != PH_OK) return PH_ERROR;
        found = 1;
      }
    }
    for (size_t i = 0; !found && i < sizeof lg_colors / sizeof lg_colors[0]; i++)
      if (strlen(lg_colors[i].name) == n && strncmp(name, lg_colors[i].name, n) == 0) {
        if (lg_add_token(fm, cfg, LG_COLOR, name, n, 0, lg_colors[i].seq) != PH_OK) return PH_ERROR;
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
  if (p > lit && lg_add_token(fm, cfg, LG_LITERAL, lit, (size_t)(p - lit), 0, NULL) != PH_OK)
    return PH_ERROR;
  if (json) {
    /* JSON members: placeholders only, each name once. */
    size_t j = 0;
    for (size_t i = 0; i < fm->n_tokens; i++) {
      lg_token t = fm->tokens[i];
      int keep = t.tag != LG_LITERAL && t.tag != LG_COLOR;
      for (size_t k = 0; keep && k < j; k++)
        if (strcmp(fm->tokens[k].text, t.text) == 0) keep = 0;
      if (keep)
        fm->tokens[j++] = t;
      else
        free(t.text);
    }
    fm->n_tokens = j;
    if (j == 0)
      return ph_config_error(cfg, "format",
                             "holds no placeholder: with json: true the line's members are "
                             "the format's placeholders, like \"${time} ${status}\"");
  } else {
    fm->newline =
        !(fm->n_tokens > 0 && fm->tokens[fm->n_tokens - 1].tag == LG_LITERAL &&
          fm->tokens[fm->n_tokens - 1].text[strlen(fm->tokens[fm->n_tokens - 1].text) - 1] == '\n');
  }
  return PH_OK;
}
