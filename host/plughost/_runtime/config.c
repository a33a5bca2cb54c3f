/* Configuration trees: built from Python, read by plugins through typed getters. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

ph_config *rt_config_new_root(rt_host *host, const char *label, const char *source,
                              const char *path, int line) {
  ph_config *root = calloc(1, sizeof *root);
  rt_ctx *ctx = calloc(1, sizeof *ctx);
  if (!root || !ctx) {
    free(root);
    free(ctx);
    return NULL;
  }
  rt_ctx_init(ctx, RT_CTX_CONFIG, host, label);
  ctx->source = rt_strdup(source);
  root->head.api = rt_host_api();
  root->head.host_private = ctx;
  root->kind = PH_CONFIG_MAP;
  root->line = line;
  root->path = rt_strdup(path ? path : "config");
  if (!root->path) { /* out of memory */
    rt_config_free(root);
    return NULL;
  }
  return root;
}

ph_config *rt_config_add(ph_config *parent, const char *key, ph_config_kind kind, int line) {
  if (!parent) return NULL; /* a failed add above: never dereferenced */
  if (parent->n == parent->cap) {
    size_t cap = parent->cap ? parent->cap * 2 : 4;
    ph_config **items = realloc(parent->items, cap * sizeof *items);
    if (!items) return NULL;
    parent->items = items;
    char **keys = realloc(parent->keys, cap * sizeof *keys);
    if (!keys) return NULL;
    parent->keys = keys;
    parent->cap = cap;
  }
  ph_config *node = calloc(1, sizeof *node);
  char *copy = key ? rt_strdup(key) : NULL;
  const char *above = parent->path ? parent->path : "config";
  if (node)
    node->path = key ? rt_format("%s.%s", above, key) : rt_format("%s[%zu]", above, parent->n);
  if (!node || !node->path || (key && !copy)) { /* out of memory: nothing added */
    if (node) free(node->path);
    free(node);
    free(copy);
    return NULL;
  }
  node->head = parent->head;
  node->kind = kind;
  node->line = line;
  parent->keys[parent->n] = copy;
  parent->items[parent->n++] = node;
  return node;
}

void rt_config_set_string(ph_config *node, const char *value) {
  free(node->str);
  node->kind = PH_CONFIG_STRING;
  node->str = rt_strdup(value);
}

void rt_config_set_int(ph_config *node, int64_t value, const char *text) {
  free(node->str);
  node->kind = PH_CONFIG_INT;
  node->i = value;
  node->f = (double)value;
  node->str = rt_strdup(text);
}

void rt_config_set_float(ph_config *node, double value, const char *text) {
  free(node->str);
  node->kind = PH_CONFIG_FLOAT;
  node->f = value;
  node->str = rt_strdup(text);
}

void rt_config_set_bool(ph_config *node, int value, const char *text) {
  free(node->str);
  node->kind = PH_CONFIG_BOOL;
  node->b = value ? 1 : 0;
  node->str = rt_strdup(text);
}

void rt_config_set_kind(ph_config *node, ph_config_kind kind) {
  node->kind = kind;
}

static void free_node(ph_config *node) {
  for (size_t i = 0; i < node->n; i++) {
    free(node->keys[i]);
    free_node(node->items[i]);
  }
  free(node->keys);
  free(node->items);
  free(node->str);
  free(node->path);
  free(node);
}

void rt_config_free(ph_config *root) {
  if (!root) return;
  rt_ctx *ctx = rt_ctx_of(root);
  free_node(root);
  rt_ctx_clear(ctx);
  free(ctx);
}

const char *rt_config_error(const ph_config *root) {
  return rt_ctx_of(root)->error;
}

void rt_config_clear_error(ph_config *root) {
  rt_ctx_set_error(rt_ctx_of(root), NULL);
}

/* ------------------------------------------------------------------------ reading */

static const ph_config *lookup(const ph_config *node, const char *key) {
  if (!node) return NULL;
  if (!key) return node;
  if (node->kind != PH_CONFIG_MAP) return NULL;
  for (size_t i = 0; i < node->n; i++)
    if (node->keys[i] && strcmp(node->keys[i], key) == 0) return node->items[i];
  /* Keys match ignoring case, as Seam reads them (an exact spelling wins). */
  for (size_t i = 0; i < node->n; i++)
    if (node->keys[i] && strcasecmp(node->keys[i], key) == 0) return node->items[i];
  return NULL;
}

static int absent(const ph_config *v) {
  return !v || v->kind == PH_CONFIG_NULL;
}

/* Records "<source>:<line>: <path>: <message>" on the tree. */
static ph_status record(const ph_config *node, const char *key, char *message) {
  rt_ctx *ctx = rt_ctx_of(node);
  const ph_config *target = lookup(node, key);
  int line = target && target->line ? target->line : node->line;
  const char *at = node->path ? node->path : "config";
  char *path = key && !target ? rt_format("%s.%s", at, key)
                              : rt_strdup(target && target->path ? target->path : at);
  /* out of memory: a shorter message rather than a NULL one */
  const char *where = path ? path : at, *what = message ? message : "(out of memory)";
  char *full;
  if (ctx->source && line)
    full = rt_format("%s:%d: %s: %s", ctx->source, line, where, what);
  else if (ctx->source)
    full = rt_format("%s: %s: %s", ctx->source, where, what);
  else
    full = rt_format("%s: %s", where, what);
  free(path);
  free(message);
  rt_ctx_set_error(ctx, full);
  return PH_ERROR;
}

/* "the string 'ten'", "a list", "true" ... for type errors. */
static char *describe(const ph_config *v) {
  switch (v->kind) {
    case PH_CONFIG_STRING:
      return rt_format("the string '%s'", v->str ? v->str : "");
    case PH_CONFIG_INT:
    case PH_CONFIG_FLOAT:
    case PH_CONFIG_BOOL:
      return rt_format("%s", v->str ? v->str : "a scalar");
    case PH_CONFIG_LIST:
      return rt_strdup("a list");
    case PH_CONFIG_MAP:
      return rt_strdup("a map");
    default:
      return rt_strdup("nothing");
  }
}

static ph_status type_error(const ph_config *node, const char *key, const ph_config *v,
                            const char *expected) {
  char *got = describe(v);
  char *msg = rt_format("expected %s, got %s", expected, got);
  free(got);
  return record(node, key, msg);
}

ph_config_kind rt_api_config_kind(const ph_config *node, const char *key) {
  const ph_config *v = lookup(node, key);
  return v ? v->kind : PH_CONFIG_MISSING;
}

ph_status rt_api_config_string(const ph_config *node, const char *key, const char *dflt,
                               const char **out) {
  const ph_config *v = lookup(node, key);
  if (absent(v)) {
    *out = dflt;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_STRING || v->kind == PH_CONFIG_INT || v->kind == PH_CONFIG_FLOAT) {
    *out = v->str ? v->str : "";
    return PH_OK;
  }
  return type_error(node, key, v, "a string");
}

/* Parses all of s as a base-10 integer. */
static int parse_int(const char *s, int64_t *out) {
  if (!s || !*s) return 0;
  errno = 0;
  char *end;
  long long x = strtoll(s, &end, 10);
  if (errno || *end) return 0;
  *out = (int64_t)x;
  return 1;
}

static int parse_float(const char *s, double *out) {
  if (!s || !*s) return 0;
  errno = 0;
  char *end;
  double x = strtod(s, &end);
  if (errno || *end || !isfinite(x)) return 0;
  *out = x;
  return 1;
}

ph_status rt_api_config_int(const ph_config *node, const char *key, int64_t dflt, int64_t *out) {
  const ph_config *v = lookup(node, key);
  if (absent(v)) {
    *out = dflt;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_INT) {
    *out = v->i;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_FLOAT && v->f == floor(v->f) && fabs(v->f) < 9.2e18) {
    *out = (int64_t)v->f;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_STRING && parse_int(v->str, out)) return PH_OK;
  return type_error(node, key, v, "an integer");
}

ph_status rt_api_config_float(const ph_config *node, const char *key, double dflt, double *out) {
  const ph_config *v = lookup(node, key);
  if (absent(v)) {
    *out = dflt;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_INT || v->kind == PH_CONFIG_FLOAT) {
    *out = v->f;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_STRING && parse_float(v->str, out)) return PH_OK;
  return type_error(node, key, v, "a number");
}

ph_status rt_api_config_bool(const ph_config *node, const char *key, int dflt, int *out) {
  const ph_config *v = lookup(node, key);
  if (absent(v)) {
    *out = dflt;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_BOOL) {
    *out = v->b;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_STRING && v->str) {
    if (strcasecmp(v->str, "true") == 0) return *out = 1, PH_OK;
    if (strcasecmp(v->str, "false") == 0) return *out = 0, PH_OK;
  }
  return type_error(node, key, v, "true or false");
}

/* Go-style durations: "300ms", "1.5s", "2m", "1h30m"; units ns us µs ms s m h d. A bare
** number means seconds. Returns 0 on a malformed text, -1 on a negative one. */
static int parse_duration_ms(const char *s, int64_t *out) {
  double seconds;
  if (parse_float(s, &seconds)) {
    if (seconds < 0) return -1;
    if (!isfinite(seconds) || seconds * 1000.0 > 9.2e18) return 0;
    *out = (int64_t)llround(seconds * 1000.0);
    return 1;
  }
  const char *p = s;
  if (*p == '-') return -1;
  if (*p == '+') p++;
  if (!*p) return 0;
  double total_ms = 0;
  while (*p) {
    char *end;
    if (!(isdigit((unsigned char)*p) || *p == '.')) return 0;
    double x = strtod(p, &end);
    if (end == p) return 0;
    p = end;
    double unit;
    if (strncmp(p, "ns", 2) == 0)
      unit = 1e-6, p += 2;
    else if (strncmp(p, "us", 2) == 0)
      unit = 1e-3, p += 2;
    else if (strncmp(p, "\xc2\xb5s", 3) == 0)
      unit = 1e-3, p += 3;
    else if (strncmp(p, "ms", 2) == 0)
      unit = 1, p += 2;
    else if (*p == 's')
      unit = 1000, p += 1;
    else if (*p == 'm')
      unit = 60000, p += 1;
    else if (*p == 'h')
      unit = 3600000, p += 1;
    else if (*p == 'd')
      unit = 86400000, p += 1;
    else
      return 0;
    total_ms += x * unit;
  }
  if (!isfinite(total_ms) || total_ms > 9.2e18) return 0;
  *out = (int64_t)llround(total_ms);
  return 1;
}

ph_status rt_api_config_duration_ms(const ph_config *node, const char *key, int64_t dflt,
                                    int64_t *out) {
  const ph_config *v = lookup(node, key);
  if (absent(v)) {
    *out = dflt;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_INT || v->kind == PH_CONFIG_FLOAT) {
    if (v->f < 0) return record(node, key, rt_strdup("a duration cannot be negative"));
    if (!isfinite(v->f) || v->f * 1000.0 > 9.2e18)
      return record(node, key,
                    rt_format("%s is not a duration a plugin can use: write a "
                              "number of seconds or a text such as '30s'",
                              isnan(v->f) ? "NaN" : "an infinite or huge number"));
    *out = (int64_t)llround(v->f * 1000.0);
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_STRING) {
    int r = parse_duration_ms(v->str, out);
    if (r == 1) return PH_OK;
    if (r == -1) return record(node, key, rt_strdup("a duration cannot be negative"));
  }
  return type_error(node, key, v, "a duration such as 500ms, 60s, 2m or 1h30m");
}

/* The largest size accepted, as the Python side's MAX_SIZE (2^62 bytes). */
#define RT_MAX_SIZE 4611686018427387904.0

/* "512", "64KB", "4 MiB", "1.5GB": 1 on success, 0 on a malformed or fractional text or
** one beyond RT_MAX_SIZE. */
static int parse_size(const char *s, int64_t *out) {
  static const struct {
    const char *unit;
    double factor;
  } units[] = {{"", 1},
               {"b", 1},
               {"kb", 1e3},
               {"mb", 1e6},
               {"gb", 1e9},
               {"tb", 1e12},
               {"kib", 1024.0},
               {"mib", 1048576.0},
               {"gib", 1073741824.0},
               {"tib", 1099511627776.0}};
  if (!s) return 0;
  const char *p = s;
  while (*p == ' ') p++;
  if (!isdigit((unsigned char)*p)) return 0;
  char *end;
  errno = 0;
  double x = strtod(p, &end);
  if (errno || end == p) return 0;
  while (*end == ' ') end++;
  char unit[4] = {0};
  size_t n = 0;
  for (; end[n] && n < 3; n++) unit[n] = (char)tolower((unsigned char)end[n]);
  if (end[n]) return 0;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcmp(unit, units[i].unit) != 0) continue;
    double bytes = x * units[i].factor;
    if (!isfinite(bytes) || bytes > RT_MAX_SIZE || bytes != floor(bytes)) return 0;
    *out = (int64_t)bytes;
    return 1;
  }
  return 0;
}

ph_status rt_api_config_size(const ph_config *node, const char *key, int64_t dflt, int64_t *out) {
  const ph_config *v = lookup(node, key);
  if (absent(v)) {
    *out = dflt;
    return PH_OK;
  }
  if (v->kind == PH_CONFIG_INT || v->kind == PH_CONFIG_FLOAT) {
    if (v->f < 0) return record(node, key, rt_strdup("a size cannot be negative"));
    if (v->f == floor(v->f) && v->f <= RT_MAX_SIZE) {
      *out = v->kind == PH_CONFIG_INT ? v->i : (int64_t)v->f;
      return PH_OK;
    }
  }
  if (v->kind == PH_CONFIG_STRING) {
    if (v->str && v->str[0] == '-')
      return record(node, key, rt_strdup("a size cannot be negative"));
    if (parse_size(v->str, out)) return PH_OK;
  }
  return type_error(node, key, v, "a size such as 4096, 64KB or 4MiB (whole bytes)");
}

ph_status rt_api_config_child(const ph_config *node, const char *key, const ph_config **out) {
  const ph_config *v = lookup(node, key);
  *out = NULL;
  if (absent(v)) return PH_OK;
  if (v->kind == PH_CONFIG_LIST || v->kind == PH_CONFIG_MAP) {
    *out = v;
    return PH_OK;
  }
  return type_error(node, key, v, "a list or a map");
}

size_t rt_api_config_len(const ph_config *node) {
  return node && (node->kind == PH_CONFIG_LIST || node->kind == PH_CONFIG_MAP) ? node->n : 0;
}

const ph_config *rt_api_config_at(const ph_config *node, size_t i, const char **key) {
  if (key) *key = NULL;
  if (!node || i >= rt_api_config_len(node)) return NULL;
  if (key) *key = node->keys[i];
  return node->items[i];
}

ph_status rt_api_config_error(const ph_config *node, const char *key, const char *fmt, ...) {
  if (!node) return PH_ERROR;
  va_list ap;
  va_start(ap, fmt);
  char *msg = rt_vformat(fmt, ap);
  va_end(ap);
  return record(node, key, msg);
}

void rt_config_set_plugin_state(ph_config *root, void *state) {
  rt_ctx_of(root)->plugin_state = state;
}

void rt_config_set_owner(ph_config *root, const char *plugin, const char *instance) {
  rt_ctx *ctx = rt_ctx_of(root);
  free(ctx->plugin_name);
  free(ctx->instance_name);
  ctx->plugin_name = rt_strdup(plugin);
  ctx->instance_name = rt_strdup(instance);
}

int rt_config_storage_may_block(const ph_config *root) {
  return rt_ctx_of(root)->storage_may_block;
}

/* Longest name ph_require_single_header takes (names of real identity headers are short). */
#define RT_SINGLE_HEADER_MAX 128

ph_status rt_api_require_single_header(const ph_config *node, const char *name) {
  if (!node || rt_ctx_of(node)->kind != RT_CTX_CONFIG) return PH_ERROR;
  rt_ctx *ctx = rt_ctx_of(node);
  size_t len = rt_header_name_length(name);
  if (len == 0 || len > RT_SINGLE_HEADER_MAX)
    return rt_api_config_error(node, NULL,
                               "'%.*s' is not a header name (up to %d letters, digits and "
                               "!#$%%&'*+-.^_`|~), so it cannot be required once",
                               RT_SINGLE_HEADER_MAX, name ? name : "(null)", RT_SINGLE_HEADER_MAX);
  char line[RT_SINGLE_HEADER_MAX + 2];
  for (size_t i = 0; i < len; i++) line[i] = (char)tolower((unsigned char)name[i]);
  line[len] = '\n';
  line[len + 1] = '\0';
  size_t have = ctx->single_headers ? strlen(ctx->single_headers) : 0;
  for (const char *p = ctx->single_headers; p && *p; p = strchr(p, '\n') + 1)
    if (strncmp(p, line, len + 1) == 0) return PH_OK; /* already required */
  char *grown = realloc(ctx->single_headers, have + len + 2);
  if (!grown) return rt_api_config_error(node, NULL, "out of memory");
  memcpy(grown + have, line, len + 2);
  ctx->single_headers = grown;
  return PH_OK;
}

const char *rt_config_single_headers(const ph_config *root) {
  const char *s = rt_ctx_of(root)->single_headers;
  return s ? s : "";
}

void *rt_api_plugin_state(const ph_config *node) {
  return node ? rt_ctx_of(node)->plugin_state : NULL;
}
