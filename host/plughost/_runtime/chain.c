/* The chain runner: request phase in order, the action, response phase in reverse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "util.h"
#include "watch.h"

static rt_py_call_fn py_call; /* set once by Python at import, before any chain runs */

void rt_set_py_call(rt_py_call_fn fn) {
  py_call = fn;
}

rt_instance *rt_instance_new(rt_instance_kind kind, const void *type, void *self, const char *label,
                             int thread_safe, int may_block) {
  rt_instance *inst = calloc(1, sizeof *inst);
  if (!inst) return NULL;
  inst->kind = kind;
  inst->type = type;
  inst->self = self;
  inst->label = rt_strdup(label ? label : "");
  inst->serialise = !thread_safe;
  inst->may_block = may_block != 0;
  pthread_mutex_init(&inst->lock, NULL);
  return inst;
}

void rt_instance_free(rt_instance *inst) {
  if (!inst) return;
  pthread_mutex_destroy(&inst->lock);
  free(inst->label);
  free(inst->plugin);
  free(inst);
}

static int call_hook(rt_instance *inst, int phase, ph_exchange *ex) {
  int r;
  void *mark = rt_watch_enter(inst, ex); /* what a crash or hang report names */
  const void *caller = ex->current;      /* whose slot ph_slot_set/get reach */
  ex->current = inst;
  uint64_t began = ex->timed ? rt_now_ns() : 0;
  if (inst->serialise) pthread_mutex_lock(&inst->lock);
  switch (inst->kind) {
    case RT_MIDDLEWARE: {
      const ph_middleware_type *t = inst->type;
      if (phase == RT_PHASE_REQUEST)
        r = t->on_request ? (int)t->on_request(inst->self, ex) : PH_NEXT_CONTINUE;
      else
        r = t->on_response ? (int)t->on_response(inst->self, ex) : PH_OK;
      break;
    }
    case RT_ACTION:
      r = (int)((const ph_action_type *)inst->type)->handle(inst->self, ex);
      break;
    case RT_PY_MIDDLEWARE:
    case RT_PY_ACTION:
      r = py_call ? py_call(inst->self, phase, ex) : PH_NEXT_ERROR;
      break;
    default:
      r = PH_NEXT_ERROR;
  }
  if (inst->serialise) pthread_mutex_unlock(&inst->lock);
  ex->current = caller;
  if (began) {
    int p = phase == RT_PHASE_RESPONSE;
    atomic_fetch_add_explicit(&inst->times.calls[p], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&inst->times.ns[p], rt_now_ns() - began, memory_order_relaxed);
  }
  rt_watch_leave(mark);
  if (r >= 0 && ex->ctx.error) {
    /* The element reported an error (e.g. a storage call failed) yet carried on, say with
    ** its own 503: the reason would be lost with the exchange, so it is logged here. */
    char *line = rt_format("%s (the element went on: status %d)", ex->ctx.error,
                           ex->status ? ex->status : 200);
    rt_log_message(ex->ctx.host, PH_LOG_WARNING, inst->label, line ? line : ex->ctx.error);
    free(line);
    rt_ctx_set_error(&ex->ctx, NULL);
  }
  return r;
}

int rt_instance_request(rt_instance *inst, ph_exchange *ex) {
  return call_hook(inst, RT_PHASE_REQUEST, ex);
}
int rt_instance_response(rt_instance *inst, ph_exchange *ex) {
  return call_hook(inst, RT_PHASE_RESPONSE, ex);
}
int rt_instance_handle(rt_instance *inst, ph_exchange *ex) {
  return call_hook(inst, RT_PHASE_REQUEST, ex);
}

rt_chain *rt_chain_new(rt_instance **middlewares, size_t n, rt_instance *action) {
  rt_chain *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->middlewares = calloc(n ? n : 1, sizeof *c->middlewares);
  if (!c->middlewares) {
    free(c);
    return NULL;
  }
  c->answers = calloc(1, sizeof *c->answers);
  if (!c->answers) {
    free(c->middlewares);
    free(c);
    return NULL;
  }
  c->n = n;
  for (size_t i = 0; i < n; i++) {
    c->middlewares[i] = middlewares[i];
    c->may_block |= middlewares[i]->may_block;
    c->has_serialised |= middlewares[i]->serialise;
    c->has_python |= middlewares[i]->kind == RT_PY_MIDDLEWARE;
  }
  c->action = action;
  c->may_block |= action->may_block;
  c->has_serialised |= action->serialise;
  c->has_python |= action->kind == RT_PY_ACTION;
  return c;
}

void rt_chain_set_route(rt_chain *chain, const char *route_name) {
  free(chain->route_name);
  chain->route_name = rt_strdup(route_name);
}

void rt_chain_free(rt_chain *chain) {
  if (!chain) return;
  free(chain->route_name);
  free(chain->answers);
  free(chain->middlewares);
  free(chain);
}

const rt_answer_stats *rt_chain_answers(const rt_chain *chain) {
  return chain->answers;
}

const rt_element_stats *rt_instance_times(const rt_instance *inst) {
  return &inst->times;
}

int rt_chain_may_block(const rt_chain *chain) {
  return chain->may_block;
}

int rt_chain_release_gil(const rt_chain *chain) {
  return chain->may_block || chain->has_serialised;
}

void rt_exchange_fail(ph_exchange *ex, int status, const char *label, const char *reason) {
  /* The answer names the request by its id (one of the host's own when no element set one),
  ** and so does the failure the host logs: a client's report leads to the log line. */
  rt_exchange_error_answer(ex, status, NULL);
  if (!ex->failure) {
    const char *why = reason ? reason : (ex->ctx.error ? ex->ctx.error : "failed");
    ex->failure = rt_format("%s (request id %s)", why, ex->request_id);
    ex->failure_label = rt_strdup(label ? label : "");
  }
}

static void element_failed(ph_exchange *ex, rt_instance *inst, const char *what) {
  char *reason =
      ex->ctx.error ? rt_strdup(ex->ctx.error) : rt_format("%s without saying why", what);
  rt_ctx_set_error(&ex->ctx, NULL); /* consumed: the response hooks that still run must not
                                       inherit it (and have it logged under their name) */
  rt_exchange_fail(ex, 500, inst->label, reason);
  free(reason);
}

void rt_chain_finish(const rt_chain *chain, ph_exchange *ex, size_t passed) {
  for (size_t i = passed; i-- > 0;) {
    rt_instance *inst = chain->middlewares[i];
    if (call_hook(inst, RT_PHASE_RESPONSE, ex) != PH_OK)
      element_failed(ex, inst, "its response hook failed");
  }
}

int rt_chain_run(const rt_chain *chain, ph_exchange *ex, size_t *passed) {
  size_t i = 0;
  if (chain->route_name) ex->route_name = chain->route_name; /* the chain outlives ex */
  for (; i < chain->n; i++) {
    rt_instance *inst = chain->middlewares[i];
    int next = call_hook(inst, RT_PHASE_REQUEST, ex);
    if (next == PH_NEXT_CONTINUE) continue;
    if (next == PH_NEXT_RESPOND) {
      if (ex->status == 0) ex->status = 200;
      rt_chain_finish(chain, ex, i + 1);
      *passed = i + 1;
      return RT_DONE;
    }
    element_failed(ex, inst,
                   next == PH_NEXT_UPSTREAM ? "a middleware asked for an upstream "
                                              "(only actions may)"
                                            : "its request hook failed");
    rt_chain_finish(chain, ex, i);
    *passed = i;
    return RT_DONE;
  }
  *passed = chain->n;
  int next = call_hook(chain->action, RT_PHASE_REQUEST, ex);
  if (next == PH_NEXT_UPSTREAM && ex->has_upstream) return RT_UPSTREAM;
  if (next == PH_NEXT_RESPOND) {
    if (ex->status == 0) ex->status = 200;
  } else if (next == PH_NEXT_UPSTREAM) {
    rt_exchange_fail(ex, 500, chain->action->label,
                     "the action returned PH_NEXT_UPSTREAM without calling ph_upstream()");
  } else {
    element_failed(
        ex, chain->action,
        next == PH_NEXT_CONTINUE ? "the action returned without responding" : "it failed");
  }
  rt_chain_finish(chain, ex, chain->n);
  return RT_DONE;
}

/* ----------------------------------------------------------------- packed I/O */

static void add_packed(ph_exchange *ex, ph_side side, const char *headers, size_t len);

ph_exchange *rt_exchange_new_packed(rt_host *host, const char *method, const char *path,
                                    const char *query, const char *client_ip, const char *headers,
                                    size_t headers_len, const uint8_t *body, size_t body_len) {
  ph_exchange *ex = rt_exchange_new(host, method, path, query, client_ip);
  if (!ex) return NULL;
  add_packed(ex, PH_REQUEST, headers, headers_len);
  if (body_len) rt_api_body_set(ex, PH_REQUEST, body, body_len);
  return ex;
}

/* Packs one side's headers into ex->packed; returns the length (0 on failure). */
static size_t pack_headers(ph_exchange *ex, ph_side side, const char **headers) {
  const rt_fields *f = &ex->headers[side];
  size_t need = 1;
  for (size_t i = 0; i < f->n; i++) need += f->items[i].name_len + f->items[i].value_len + 2;
  if (need > ex->packed_cap) {
    char *buf = realloc(ex->packed, need);
    if (!buf) {
      *headers = "";
      return 0;
    }
    ex->packed = buf;
    ex->packed_cap = need;
  }
  size_t j = 0;
  for (size_t i = 0; i < f->n; i++) {
    size_t nl = f->items[i].name_len + 1, vl = f->items[i].value_len + 1;
    memcpy(ex->packed + j, f->items[i].name, nl);
    j += nl;
    memcpy(ex->packed + j, f->items[i].value, vl);
    j += vl;
  }
  ex->packed[j] = 0;
  *headers = ex->packed;
  return j;
}

size_t rt_exchange_pack_response(ph_exchange *ex, const char **headers, int *status,
                                 const uint8_t **body, size_t *body_len) {
  size_t n = pack_headers(ex, PH_RESPONSE, headers);
  *status = ex->status;
  *body = rt_api_body(ex, PH_RESPONSE, body_len);
  return n;
}

size_t rt_exchange_pack_request(ph_exchange *ex, const char **headers) {
  return pack_headers(ex, PH_REQUEST, headers);
}

/* Appends packed "name\0value\0" pairs to one side's headers, unvalidated (they come
** from the HTTP server or client, which validated them). */
static void add_packed(ph_exchange *ex, ph_side side, const char *headers, size_t len) {
  const char *p = headers, *end = headers + len;
  rt_fields *f = &ex->headers[side];
  while (p < end) {
    const char *name = p;
    size_t nl = strlen(p);
    p += nl + 1;
    if (p >= end) break;
    const char *value = p;
    size_t vl = strlen(p);
    p += vl + 1;
    if (rt_fields_push(ex, f, name, nl, value, vl) != 0) return;
  }
}

void rt_exchange_set_response_packed(ph_exchange *ex, int status, const char *headers,
                                     size_t headers_len, const uint8_t *body, size_t body_len) {
  ex->headers[PH_RESPONSE].n = 0; /* the old ones' memory goes with the arena */
  add_packed(ex, PH_RESPONSE, headers, headers_len);
  ex->status = status;
  rt_api_body_set(ex, PH_RESPONSE, body, body_len);
}

const char *rt_exchange_failure(const ph_exchange *ex, const char **label) {
  if (label) *label = ex->failure_label ? ex->failure_label : "";
  return ex->failure ? ex->failure : "";
}

/* ------------------------------------------------ the one-call path of a request */

/* Counts the exchange's answer once, for the host's metrics. */
static void count_answer(ph_exchange *ex, int status) {
  if (ex->answered || !ex->answers) return;
  ex->answered = true;
  rt_stats_answer(ex->answers, ex->method, status, rt_now_ns() - ex->started_ns);
}

static void fill_result(ph_exchange *ex, rt_result *out) {
  rt_fields *f = &ex->headers[PH_RESPONSE];
  if (!rt_fields_has(f, "content-length", 14)) {
    char digits[24], *d = digits + sizeof digits;
    size_t n = ex->body_len[PH_RESPONSE];
    *--d = 0;
    do {
      *--d = (char)('0' + n % 10);
      n /= 10;
    } while (n);
    rt_fields_push(ex, f, "content-length", 14, d, (size_t)(digits + sizeof digits - 1 - d));
  }
  out->headers = NULL; /* rt_result_pack() packs them for callers that want bytes */
  out->headers_len = 0;
  out->status = ex->status ? ex->status : 200;
  out->body = (const char *)rt_api_body(ex, PH_RESPONSE, &out->body_len);
  out->failure = ex->failure ? ex->failure : "";
  out->failure_len = strlen(out->failure);
  out->failure_label = ex->failure_label ? ex->failure_label : "";
  count_answer(ex, out->status);
}

void rt_serve(rt_host *host, const rt_chain *chain, const char *method, const char *path,
              const char *query, const char *client_ip, const char *headers, size_t headers_len,
              const uint8_t *body, size_t body_len, const char *params, size_t params_len,
              rt_result *out) {
  memset(out, 0, sizeof *out);
  ph_exchange *ex = rt_exchange_new_packed(host, method, path, query, client_ip, headers,
                                           headers_len, body, body_len);
  out->ex = ex;
  if (!ex) {
    out->status = 500;
    out->failure = "out of memory building the exchange";
    out->failure_len = strlen(out->failure);
    out->failure_label = "";
    out->headers = out->failure_label;
    out->body = "";
    return;
  }
  if (params_len) {
    const char *p = params, *end = params + params_len;
    while (p < end) {
      const char *name = p;
      p += strlen(p) + 1;
      if (p >= end) break;
      rt_exchange_add_param(ex, name, p);
      p += strlen(p) + 1;
    }
  }
  if (rt_stats_enabled()) {
    ex->answers = chain->answers;
    ex->started_ns = rt_now_ns();
    ex->timed = rt_stats_sample();
  }
  out->outcome = rt_chain_run(chain, ex, &out->passed);
  if (out->outcome == RT_DONE) fill_result(ex, out);
}

void rt_serve_upstream(const rt_chain *chain, ph_exchange *ex, size_t passed, int status,
                       const char *headers, size_t headers_len, const uint8_t *body,
                       size_t body_len, const char *reason, rt_result *out) {
  memset(out, 0, sizeof *out);
  out->ex = ex;
  if (reason && *reason) {
    rt_exchange_fail(ex, status, chain->action->label, reason);
  } else {
    rt_exchange_set_response_packed(ex, status, headers, headers_len, body, body_len);
  }
  rt_chain_finish(chain, ex, passed);
  out->outcome = RT_DONE;
  fill_result(ex, out);
}

void rt_serve_upstream_head(const rt_chain *chain, ph_exchange *ex, size_t passed, int status,
                            const char *headers, size_t headers_len, rt_result *out) {
  memset(out, 0, sizeof *out);
  out->ex = ex;
  ex->headers[PH_RESPONSE].n = 0;
  add_packed(ex, PH_RESPONSE, headers, headers_len);
  ex->status = status;
  ex->body[PH_RESPONSE] = NULL; /* a hook that sets one replaces the upstream's answer */
  ex->body_len[PH_RESPONSE] = 0;
  rt_chain_finish(chain, ex, passed);
  if (ex->body[PH_RESPONSE]) {
    out->outcome = RT_DONE;
    fill_result(ex, out);
    return;
  }
  out->outcome = RT_STREAM;
  out->status = ex->status ? ex->status : status;
  out->body = "";
  out->failure = ex->failure ? ex->failure : "";
  out->failure_len = strlen(out->failure);
  out->failure_label = ex->failure_label ? ex->failure_label : "";
  count_answer(ex, out->status);
}

void rt_result_pack(rt_result *out) {
  if (out->ex) out->headers_len = pack_headers(out->ex, PH_RESPONSE, &out->headers);
}
