/*
** libFuzzer harness for plughost's C runtime (host/plughost/_runtime): the configuration tree
** and its typed getters, and an exchange driven through rt_serve and rt_serve_upstream with
** fuzzed packed headers, route parameters, bodies and header operations run from inside a
** middleware. Built by fuzz/run.py with clang -fsanitize=fuzzer,address,undefined.
**
** The input is read as a little program: the first byte picks the part (configuration or
** exchange), then each step takes an operation byte and, where it needs them, strings
** (a length byte, then that many bytes; NUL bytes kept, so C strings may end early).
*/
#include "chain.h"
#include "runtime.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ the input reader */

typedef struct reader {
  const uint8_t *p, *end;
} reader;

static int left(const reader *r) {
  return r->p < r->end;
}

static uint8_t byte(reader *r) {
  return left(r) ? *r->p++ : 0;
}

/* A NUL-terminated copy of the next string (length byte, bytes); freed by the caller. */
static char *text(reader *r, size_t *len_out) {
  size_t n = byte(r);
  if (n > (size_t)(r->end - r->p)) n = (size_t)(r->end - r->p);
  char *s = malloc(n + 1);
  if (!s) abort();
  memcpy(s, r->p, n);
  s[n] = '\0';
  r->p += n;
  if (len_out) *len_out = n;
  return s;
}

static void quiet(int level, const char *label, const char *message) {
  (void)level, (void)label, (void)message;
}

/* ------------------------------------------------------------ the configuration tree */

static void fuzz_config(rt_host *host, reader *r) {
  ph_config *root = rt_config_new_root(host, "fuzz", "fuzz.yaml", "config", 1);
  if (!root) return;
  ph_config *nodes[32] = {root};
  size_t depth = 1;
  for (int steps = 0; left(r) && steps < 256; steps++) {
    ph_config *at = nodes[depth - 1];
    uint8_t op = byte(r);
    char *key = text(r, NULL);
    const char *k = (op & 0x80) ? NULL : key; /* NULL: the node itself */
    switch (op & 0x0f) {
      case 0: { /* a map or list below, entered */
        ph_config *child = rt_config_add(at, at->kind == PH_CONFIG_MAP ? key : NULL,
                                         (op & 0x10) ? PH_CONFIG_LIST : PH_CONFIG_MAP, steps);
        if (child && depth < 32) nodes[depth++] = child;
        break;
      }
      case 1: { /* a scalar below */
        ph_config *child =
            rt_config_add(at, at->kind == PH_CONFIG_MAP ? key : NULL, PH_CONFIG_NULL, steps);
        char *value = text(r, NULL);
        if (child) {
          switch (byte(r) % 4) {
            case 0:
              rt_config_set_string(child, value);
              break;
            case 1:
              rt_config_set_int(child, (int64_t)strtoll(value, NULL, 10), value);
              break;
            case 2:
              rt_config_set_float(child, strtod(value, NULL), value);
              break;
            default:
              rt_config_set_bool(child, value[0] & 1, value);
              break;
          }
        }
        free(value);
        break;
      }
      case 2: /* back up */
        if (depth > 1) depth--;
        break;
      case 3: {
        const char *s = NULL;
        char *dflt = text(r, NULL);
        rt_api_config_string(at, k, dflt, &s);
        if (s) (void)strlen(s);
        free(dflt);
        break;
      }
      case 4: {
        int64_t i;
        rt_api_config_int(at, k, 7, &i);
        break;
      }
      case 5: {
        double f;
        rt_api_config_float(at, k, 0.5, &f);
        break;
      }
      case 6: {
        int b;
        rt_api_config_bool(at, k, 1, &b);
        break;
      }
      case 7: {
        int64_t ms;
        rt_api_config_duration_ms(at, k, 1000, &ms);
        break;
      }
      case 8: {
        const ph_config *child = NULL;
        if (rt_api_config_child(at, k, &child) == PH_OK && child && depth < 32)
          nodes[depth++] = (ph_config *)child;
        break;
      }
      case 9: {
        const char *name = NULL;
        size_t n = rt_api_config_len(at);
        const ph_config *child = rt_api_config_at(at, n ? byte(r) % (n + 1) : 0, &name);
        if (name) (void)strlen(name);
        (void)rt_api_config_kind(child ? child : at, NULL);
        break;
      }
      case 10:
        rt_api_config_error(at, k, "fuzz %s %d", key, steps);
        rt_config_clear_error(root);
        break;
      case 11:
        rt_api_require_single_header(at, key);
        (void)strlen(rt_config_single_headers(root));
        break;
      default:
        (void)rt_api_config_kind(at, k);
        break;
    }
    free(key);
  }
  (void)rt_config_error(root);
  rt_config_free(root);
}

/* ------------------------------------------------------------------------ the exchange */

/* The middleware's program: header, local, body and status operations on the exchange. */
static void run_ops(ph_exchange *ex, reader *r) {
  for (int steps = 0; left(r) && steps < 128; steps++) {
    uint8_t op = byte(r);
    if (op == 0xff) return; /* the rest is for the action */
    ph_side side = (op & 0x80) ? PH_RESPONSE : PH_REQUEST;
    char *name = text(r, NULL);
    switch (op & 0x0f) {
      case 0: {
        char *value = text(r, NULL);
        rt_api_header_set(ex, side, name, value);
        free(value);
        break;
      }
      case 1: {
        char *value = text(r, NULL);
        rt_api_header_add(ex, side, name, value);
        free(value);
        break;
      }
      case 2:
        rt_api_header_remove(ex, side, name);
        break;
      case 3: {
        const char *v = rt_api_header_get(ex, side, name);
        if (v) (void)strlen(v);
        break;
      }
      case 4: {
        size_t n = rt_api_header_count(ex, side);
        const char *hn = NULL, *hv = NULL;
        rt_api_header_at(ex, side, n ? byte(r) % (n + 1) : 0, &hn, &hv);
        if (hn && hv) (void)(strlen(hn) + strlen(hv));
        break;
      }
      case 5: {
        size_t len;
        char *value = text(r, &len);
        rt_api_local_set(ex, name, value, len);
        free(value);
        break;
      }
      case 6: {
        size_t len = 0;
        const uint8_t *v = rt_api_local_get(ex, name, &len);
        if (v && len) (void)v[len - 1];
        break;
      }
      case 7: {
        size_t len;
        char *value = text(r, &len);
        rt_api_body_set(ex, side, value, len);
        free(value);
        break;
      }
      case 8:
        rt_api_status_set(ex, (int)byte(r) * 4);
        break;
      case 9: {
        const char *v = rt_api_route_param(ex, name);
        const char *raw = rt_api_route_param_raw(ex, name);
        if (v) (void)strlen(v);
        if (raw) (void)strlen(raw);
        break;
      }
      default: {
        size_t len = 0;
        const uint8_t *b = rt_api_body(ex, side, &len);
        if (b && len) (void)b[len - 1];
        break;
      }
    }
    free(name);
  }
}

static reader *program; /* the ops the hooks run (one input at a time) */

static ph_next fuzz_on_request(void *self, ph_exchange *ex) {
  (void)self;
  run_ops(ex, program);
  return (program->p < program->end && (*program->p & 1)) ? PH_NEXT_RESPOND : PH_NEXT_CONTINUE;
}

static ph_status fuzz_on_response(void *self, ph_exchange *ex) {
  (void)self;
  run_ops(ex, program);
  return PH_OK;
}

static ph_next fuzz_handle(void *self, ph_exchange *ex) {
  (void)self;
  run_ops(ex, program);
  if (byte(program) & 1) {
    ph_upstream_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.size = sizeof spec;
    char *url = text(program, NULL);
    spec.url = url;
    spec.method = "GET";
    ph_status st = rt_api_upstream(ex, &spec);
    free(url);
    return st == PH_OK ? PH_NEXT_UPSTREAM : PH_NEXT_ERROR;
  }
  return PH_NEXT_RESPOND;
}

static const ph_middleware_type fuzz_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.fuzz.middlewares.Ops",
    .on_request = fuzz_on_request,
    .on_response = fuzz_on_response,
};

static const ph_action_type fuzz_action = {
    .size = sizeof(ph_action_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.fuzz.actions.Ops",
    .handle = fuzz_handle,
};

static void fuzz_exchange(rt_host *host, reader *r) {
  rt_instance *mw = rt_instance_new(RT_MIDDLEWARE, &fuzz_middleware, NULL, "fuzz mw", 1, 0);
  rt_instance *act = rt_instance_new(RT_ACTION, &fuzz_action, NULL, "fuzz action", 1, 0);
  rt_chain *chain = mw && act ? rt_chain_new(&mw, 1, act) : NULL;
  if (!chain) abort();
  char *method = text(r, NULL), *path = text(r, NULL), *query = text(r, NULL);
  char *client = text(r, NULL);
  size_t headers_len, params_len, body_len;
  char *headers = text(r, &headers_len), *params = text(r, &params_len);
  char *body = text(r, &body_len);
  program = r;
  rt_result out;
  memset(&out, 0, sizeof out);
  rt_serve(host, chain, method, path, query, client, headers, headers_len, (const uint8_t *)body,
           body_len, params, params_len, &out);
  if (out.ex && out.outcome == RT_UPSTREAM) {
    size_t uh_len, ub_len;
    char *upstream_headers = text(r, &uh_len), *upstream_body = text(r, &ub_len);
    int status = 100 + byte(r) * 2;
    ph_exchange *ex = out.ex;
    size_t passed = out.passed;
    memset(&out, 0, sizeof out);
    if (byte(r) & 1)
      rt_serve_upstream(chain, ex, passed, status, upstream_headers, uh_len,
                        (const uint8_t *)upstream_body, ub_len, "fuzzed reason", &out);
    else
      rt_serve_upstream_head(chain, ex, passed, status, upstream_headers, uh_len, &out);
    free(upstream_headers);
    free(upstream_body);
  }
  if (out.ex) {
    if (out.outcome == RT_DONE) rt_result_pack(&out);
    rt_exchange_free(out.ex);
  }
  free(method), free(path), free(query), free(client), free(headers), free(params), free(body);
  rt_chain_free(chain);
  rt_instance_free(mw);
  rt_instance_free(act);
}

/* ---------------------------------------------------------------------------- entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static rt_host *host;
  if (!host) host = rt_host_new(quiet);
  reader r = {data, data + size};
  if (byte(&r) & 1)
    fuzz_exchange(host, &r);
  else
    fuzz_config(host, &r);
  return 0;
}
