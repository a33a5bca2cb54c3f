/* plughost._fastpath: the ASGI hot path in C, through CPython's API.
**
** One call packs the request headers straight from the ASGI scope's list, runs the chain
** through the runtime's rt_serve (whose address the cffi module gives us), and builds the
** response (status, [(name, value), ...], body) as Python objects: no cffi struct reads and
** no byte-string splitting in Python. The runtime stays plain C; this file is the only one
** that knows Python. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"

typedef void (*serve_fn)(rt_host *, const rt_chain *, const char *, const char *, const char *,
                         const char *, const char *, size_t, const uint8_t *, size_t, const char *,
                         size_t, rt_result *);
typedef void (*free_fn)(ph_exchange *);
typedef void (*serve_upstream_fn)(const rt_chain *, ph_exchange *, size_t, int, const char *,
                                  size_t, const uint8_t *, size_t, const char *, rt_result *);
typedef void (*serve_head_fn)(const rt_chain *, ph_exchange *, size_t, int, const char *, size_t,
                              rt_result *);

/* Packs [[name, value], ...] (lists or tuples of bytes) as "name\0value\0..." into buf
** (grown with malloc when the stack buffer is too small). Returns the length, -1 on error. */
static Py_ssize_t pack_headers(PyObject *headers, char *stack, size_t stack_cap, char **out) {
  PyObject *seq = PySequence_Fast(headers, "headers must be a sequence of pairs");
  if (!seq) return -1;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  PyObject **items = PySequence_Fast_ITEMS(seq);
  size_t need = 0;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *pair = items[i];
    Py_ssize_t size = PyList_Check(pair)    ? PyList_GET_SIZE(pair)
                      : PyTuple_Check(pair) ? PyTuple_GET_SIZE(pair)
                                            : -1;
    if (size != 2) {
      PyErr_SetString(PyExc_TypeError, "each header must be a (name, value) pair of bytes");
      Py_DECREF(seq);
      return -1;
    }
    PyObject *name = PySequence_Fast_GET_ITEM(pair, 0), *value = PySequence_Fast_GET_ITEM(pair, 1);
    if (!PyBytes_Check(name) || !PyBytes_Check(value)) {
      PyErr_SetString(PyExc_TypeError, "header names and values must be bytes");
      Py_DECREF(seq);
      return -1;
    }
    need += (size_t)PyBytes_GET_SIZE(name) + (size_t)PyBytes_GET_SIZE(value) + 2;
  }
  char *buf = stack;
  if (need > stack_cap) {
    buf = malloc(need);
    if (!buf) {
      Py_DECREF(seq);
      PyErr_NoMemory();
      return -1;
    }
  }
  size_t j = 0;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *pair = items[i];
    PyObject *name = PySequence_Fast_GET_ITEM(pair, 0), *value = PySequence_Fast_GET_ITEM(pair, 1);
    size_t nl = (size_t)PyBytes_GET_SIZE(name), vl = (size_t)PyBytes_GET_SIZE(value);
    /* A NUL inside a header would split it: HTTP servers never pass one; drop the header. */
    if (memchr(PyBytes_AS_STRING(name), 0, nl) || memchr(PyBytes_AS_STRING(value), 0, vl)) continue;
    memcpy(buf + j, PyBytes_AS_STRING(name), nl);
    j += nl;
    buf[j++] = 0;
    memcpy(buf + j, PyBytes_AS_STRING(value), vl);
    j += vl;
    buf[j++] = 0;
  }
  Py_DECREF(seq);
  *out = buf;
  return (Py_ssize_t)j;
}

/* A (name, value) tuple of bytes. */
static PyObject *pair(const char *name, size_t nl, const char *value, size_t vl) {
  PyObject *t = PyTuple_New(2);
  if (!t) return NULL;
  PyObject *n = PyBytes_FromStringAndSize(name, (Py_ssize_t)nl);
  PyObject *v = n ? PyBytes_FromStringAndSize(value, (Py_ssize_t)vl) : NULL;
  if (!v) {
    Py_XDECREF(n);
    Py_DECREF(t);
    return NULL;
  }
  PyTuple_SET_ITEM(t, 0, n);
  PyTuple_SET_ITEM(t, 1, v);
  return t;
}

/* [(name, value), ...] from the exchange's response headers. */
static PyObject *response_headers(const ph_exchange *ex) {
  const rt_fields *f = &ex->headers[PH_RESPONSE];
  PyObject *list = PyList_New((Py_ssize_t)f->n);
  if (!list) return NULL;
  for (size_t i = 0; i < f->n; i++) {
    PyObject *t =
        pair(f->items[i].name, f->items[i].name_len, f->items[i].value, f->items[i].value_len);
    if (!t) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, t);
  }
  return list;
}

/* The status, headers and body of a finished run, as new references; -1 with an
** exception (and nothing to release) when one cannot be made. */
static int answer_parts(const rt_result *out, PyObject **status, PyObject **headers,
                        PyObject **body) {
  *headers = response_headers(out->ex);
  *body = *headers ? PyBytes_FromStringAndSize(out->body, (Py_ssize_t)out->body_len) : NULL;
  *status = *body ? PyLong_FromLong(out->status) : NULL;
  if (*status) return 0;
  Py_XDECREF(*headers);
  Py_XDECREF(*body);
  return -1;
}

static int as_pointer(PyObject *o, void **p) {
  *p = PyLong_AsVoidPtr(o);
  return !(*p == NULL && PyErr_Occurred());
}

static int as_bytes(PyObject *o, const char **s, Py_ssize_t *n, const char *what) {
  if (!PyBytes_Check(o)) {
    PyErr_Format(PyExc_TypeError, "%s must be bytes", what);
    return 0;
  }
  *s = PyBytes_AS_STRING(o);
  if (n) *n = PyBytes_GET_SIZE(o);
  return 1;
}

/* Packs `headers` and runs the chain through the runtime's rt_serve into *out, with the GIL
** released when `release` (a chain without Python elements). -1 with an exception when the
** headers cannot be packed; out->ex NULL means rt_serve could not allocate the exchange. */
static int run_chain(void *serve_p, void *host, void *chain, int release, const char *method,
                     const char *path, const char *query, const char *client, PyObject *headers,
                     const char *body, size_t body_len, const char *params, size_t params_len,
                     rt_result *out) {
  char stack[2048], *packed = NULL;
  Py_ssize_t packed_len = pack_headers(headers, stack, sizeof stack, &packed);
  if (packed_len < 0) return -1;
  serve_fn serve = (serve_fn)serve_p;
  if (release) {
    Py_BEGIN_ALLOW_THREADS serve(host, chain, method, path, query, client, packed,
                                 (size_t)packed_len, (const uint8_t *)body, body_len, params,
                                 params_len, out);
    Py_END_ALLOW_THREADS
  } else {
    serve(host, chain, method, path, query, client, packed, (size_t)packed_len,
          (const uint8_t *)body, body_len, params, params_len, out);
  }
  if (packed != stack) free(packed);
  return 0;
}

/* Whether a request must leave the one-call paths for the Python steps: it has a body
** (Content-Length, Transfer-Encoding), a header that is not a (bytes, bytes) pair, or a
** second field of a name it may carry once (`single`, a tuple of lower-case bytes:
** plughost.serving.pipeline.SINGLE_FIELDS and the names the gateway's plugins read as an
** identity; the Python steps answer 400). Names arrive in lower case. */
static int has_body_or_odd_headers(PyObject *headers, PyObject *single) {
  uint64_t seen = 0;
  Py_ssize_t nh = PyList_GET_SIZE(headers), ns = PyTuple_GET_SIZE(single);
  for (Py_ssize_t i = 0; i < nh; i++) {
    PyObject *pair = PyList_GET_ITEM(headers, i);
    PyObject *name =
        PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2 ? PyTuple_GET_ITEM(pair, 0) : NULL;
    if (!name || !PyBytes_Check(name)) return 1;
    Py_ssize_t len = PyBytes_GET_SIZE(name);
    const char *s = PyBytes_AS_STRING(name);
    if ((len == 14 && !memcmp(s, "content-length", 14)) ||
        (len == 17 && !memcmp(s, "transfer-encoding", 17)))
      return 1;
    for (Py_ssize_t k = 0; k < ns; k++) {
      PyObject *one = PyTuple_GET_ITEM(single, k);
      if (PyBytes_GET_SIZE(one) == len && !memcmp(s, PyBytes_AS_STRING(one), (size_t)len)) {
        if (k >= 64 || (seen & ((uint64_t)1 << k))) return 1; /* past 64 names: Python's */
        seen |= (uint64_t)1 << k;
        break;
      }
    }
  }
  return 0;
}

/* What the one-call paths need of a configured gateway, built once when it is configured
** (GatewayApp): the runtime's entry points, the host, the route tables and the answers'
** fixed parts. Immutable after construction. */
typedef struct {
  PyObject_HEAD serve_fn serve;               /* rt_serve */
  free_fn free;                 /* rt_exchange_free */
  serve_upstream_fn finish;     /* rt_serve_upstream */
  void *finish_head;            /* rt_serve_upstream_head (a serve_head_fn) */
  void *host;                   /* the rt_host */
  PyObject *static_routes;      /* {(method, folded path): RouteEntry} */
  int case_sensitive;           /* server.caseSensitive */
  PyObject *live, *ready;       /* the health routes (str or None) */
  PyObject *status_lines;       /* tuple of status lines by code */
  PyObject *prefixes;           /* {folded prefix: {method: RouteEntry}} */
  PyObject *response;           /* Response(status, headers, body): a finished run's answer */
  PyObject *pending;            /* pending(chain, exchange, passed): a PendingUpstream */
  PyObject *failed;             /* failed(chain, (label, reason)): logs an element's failure */
  PyObject *route;              /* route(method, path) -> (chain, params) of an inline route,
                                ** or None (plughost.serving.routing.RouteTable.inline_route) */
  PyObject *single;             /* tuple of the lower-case header names a request carries once */
} Native;

/* The PendingUpstream that owns out->ex from now on: the chain ran and its action waits for
** an upstream request. Frees the exchange when it cannot be made. */
static PyObject *pending_upstream(const Native *nat, const rt_result *out, PyObject *chain_obj) {
  PyObject *ret = PyObject_CallFunction(nat->pending, "(ONn)", chain_obj,
                                        PyLong_FromVoidPtr(out->ex), (Py_ssize_t)out->passed);
  if (!ret) nat->free(out->ex);
  return ret;
}

/* Hands an element's failure (the client got a JSON error naming the request id) to the
** host's log. A failure to log is reported as unraisable, never to the client. */
static void report_failure(const Native *nat, const rt_result *out, PyObject *chain_obj) {
  if (!out->failure_len) return;
  PyObject *r = PyObject_CallFunction(nat->failed, "(O(ss#))", chain_obj, out->failure_label,
                                      out->failure, (Py_ssize_t)out->failure_len);
  if (r)
    Py_DECREF(r);
  else
    PyErr_WriteUnraisable(nat->failed);
}

/* Native is tracked by the cycle collector: its callables reach back to the Runner and
** the host that own it. */
static int native_traverse(Native *self, visitproc visit, void *arg) {
  Py_VISIT(self->static_routes);
  Py_VISIT(self->live);
  Py_VISIT(self->ready);
  Py_VISIT(self->status_lines);
  Py_VISIT(self->prefixes);
  Py_VISIT(self->response);
  Py_VISIT(self->pending);
  Py_VISIT(self->failed);
  Py_VISIT(self->route);
  Py_VISIT(self->single);
  return 0;
}

static int native_clear(Native *self) {
  Py_CLEAR(self->static_routes);
  Py_CLEAR(self->live);
  Py_CLEAR(self->ready);
  Py_CLEAR(self->status_lines);
  Py_CLEAR(self->prefixes);
  Py_CLEAR(self->response);
  Py_CLEAR(self->pending);
  Py_CLEAR(self->failed);
  Py_CLEAR(self->route);
  Py_CLEAR(self->single);
  return 0;
}

static void native_dealloc(Native *self) {
  PyObject_GC_UnTrack(self);
  native_clear(self);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Native(serve, free, finish, finish_head, host, static_routes, case_sensitive, live, ready,
**        status_lines, prefixes, response, pending, failed, route, single): the first five
** are addresses (ints) from the runtime's cffi module, read once here; response, pending,
** failed and route are callables; single is a tuple of bytes. */
static int native_init(Native *self, PyObject *args, PyObject *kwargs) {
  PyObject *serve, *free_, *finish, *finish_head, *host, *live, *ready;
  PyObject *static_routes, *status_lines, *prefixes, *response, *pending, *failed, *route;
  PyObject *single;
  int case_sensitive;
  if (kwargs && PyDict_GET_SIZE(kwargs)) {
    PyErr_SetString(PyExc_TypeError, "Native() takes positional arguments only");
    return -1;
  }
  if (!PyArg_ParseTuple(args, "OOOOOO!pOOO!O!OOOOO!", &serve, &free_, &finish, &finish_head, &host,
                        &PyDict_Type, &static_routes, &case_sensitive, &live, &ready, &PyTuple_Type,
                        &status_lines, &PyDict_Type, &prefixes, &response, &pending, &failed,
                        &route, &PyTuple_Type, &single))
    return -1;
  for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(single); k++)
    if (!PyBytes_Check(PyTuple_GET_ITEM(single, k))) {
      PyErr_SetString(PyExc_TypeError, "Native(): single must be a tuple of bytes");
      return -1;
    }
  if (!PyCallable_Check(response) || !PyCallable_Check(pending) || !PyCallable_Check(failed) ||
      !PyCallable_Check(route)) {
    PyErr_SetString(PyExc_TypeError,
                    "Native(): response, pending, failed and route must be callable");
    return -1;
  }
  void *p[5];
  PyObject *addresses[5] = {serve, free_, finish, finish_head, host};
  for (int i = 0; i < 5; i++)
    if (!as_pointer(addresses[i], &p[i])) return -1;
  self->serve = (serve_fn)p[0];
  self->free = (free_fn)p[1];
  self->finish = (serve_upstream_fn)p[2];
  self->finish_head = p[3];
  self->host = p[4];
  self->case_sensitive = case_sensitive;
  Py_XSETREF(self->static_routes, Py_NewRef(static_routes));
  Py_XSETREF(self->live, Py_NewRef(live));
  Py_XSETREF(self->ready, Py_NewRef(ready));
  Py_XSETREF(self->status_lines, Py_NewRef(status_lines));
  Py_XSETREF(self->prefixes, Py_NewRef(prefixes));
  Py_XSETREF(self->response, Py_NewRef(response));
  Py_XSETREF(self->pending, Py_NewRef(pending));
  Py_XSETREF(self->failed, Py_NewRef(failed));
  Py_XSETREF(self->route, Py_NewRef(route));
  Py_XSETREF(self->single, Py_NewRef(single));
  return 0;
}

static PyTypeObject NativeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "plughost._fastpath.Native",
    .tp_basicsize = sizeof(Native),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "What the one-call paths need of a configured gateway (see fastpath.c).",
    .tp_traverse = (traverseproc)native_traverse,
    .tp_clear = (inquiry)native_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)native_init,
    .tp_dealloc = (destructor)native_dealloc,
};

/* The Native an entry point was given as its first argument, or NULL with a TypeError. */
static Native *native_arg(PyObject *o, const char *signature) {
  if (!PyObject_TypeCheck(o, &NativeType)) {
    PyErr_Format(PyExc_TypeError, "%s: the first argument must be a plughost._fastpath.Native",
                 signature);
    return NULL;
  }
  return (Native *)o;
}

/* Names, keys and values the entry points use (ASGI message keys among them): interned once at import and
** never changed afterwards (read-only module state). */
static PyObject *k_type, *k_status, *k_headers, *k_body, *v_start, *v_body, *k_path, *k_method,
    *k_query, *k_client, *s_lower, *s_head, *s_address, *s_release_gil, *empty_bytes;

/* The rt_chain of a plughost Chain (its `address`), or NULL with an exception. */
static void *chain_address(PyObject *chain_obj) {
  PyObject *address = PyObject_GetAttr(chain_obj, s_address);
  void *chain = NULL;
  if (address && !as_pointer(address, &chain)) chain = NULL;
  Py_XDECREF(address);
  return chain;
}

/* serve(native, chain, method, path, query, client, headers, body, params, release_gil)
**   -> Response when the chain finished (an element's failure is logged through
**      native.failed), or the PendingUpstream (native.pending) that owns the exchange when
**      its action asked for an upstream request.
** chain is the plughost Chain; the other arguments are bytes, headers [(name, value)]. */
static PyObject *fast_serve(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 10) {
    PyErr_SetString(PyExc_TypeError, "serve() takes 10 arguments");
    return NULL;
  }
  const Native *nat = native_arg(args[0], "serve(native, chain, ...)");
  void *chain = nat ? chain_address(args[1]) : NULL;
  if (!chain) return NULL;
  const char *method, *path, *query, *client, *body, *params;
  Py_ssize_t body_len, params_len;
  if (!as_bytes(args[2], &method, NULL, "method") || !as_bytes(args[3], &path, NULL, "path") ||
      !as_bytes(args[4], &query, NULL, "query") || !as_bytes(args[5], &client, NULL, "client") ||
      !as_bytes(args[7], &body, &body_len, "body") ||
      !as_bytes(args[8], &params, &params_len, "params"))
    return NULL;
  rt_result out;
  if (run_chain((void *)nat->serve, nat->host, chain, PyObject_IsTrue(args[9]), method, path, query,
                client, args[6], body, (size_t)body_len, params, (size_t)params_len, &out) < 0)
    return NULL;
  if (!out.ex) return PyErr_NoMemory(); /* rt_serve could not allocate the exchange */
  if (out.outcome == RT_UPSTREAM) return pending_upstream(nat, &out, args[1]);
  report_failure(nat, &out, args[1]);
  PyObject *status, *headers, *answer_body, *ret = NULL;
  if (answer_parts(&out, &status, &headers, &answer_body) == 0) {
    ret = PyObject_CallFunctionObjArgs(nat->response, status, headers, answer_body, NULL);
    Py_DECREF(status);
    Py_DECREF(headers);
    Py_DECREF(answer_body);
  }
  nat->free(out.ex);
  return ret;
}

/* A str's UTF-8 (cached by CPython), or NULL with an exception. */
static const char *utf8(PyObject *o) {
  return PyUnicode_Check(o) ? PyUnicode_AsUTF8(o) : NULL;
}

/* The static-route entry (chain, chain address, release_gil, may_block) for method and path
** (str), from the Native's static routes, unless path is a health route. NULL without an
** exception when there is none; NULL with one on error. Borrowed. A may-block entry is
** returned too (a static route takes precedence over wildcards): the caller leaves it to the
** worker-thread path. */
static int is_health(const Native *nat, PyObject *path);

static PyObject *static_hit(const Native *nat, PyObject *method, PyObject *path) {
  if (is_health(nat, path)) return NULL; /* the health routes answer in Python */
  PyObject *lookup = path;
  Py_INCREF(lookup);
  if (!nat->case_sensitive) {
    Py_DECREF(lookup);
    if (!(lookup = PyObject_CallMethodNoArgs(path, s_lower))) return NULL;
  }
  PyObject *key = PyTuple_Pack(2, method, lookup);
  Py_DECREF(lookup);
  if (!key) return NULL;
  PyObject *hit = PyDict_GetItemWithError(nat->static_routes, key);
  Py_DECREF(key);
  if (!hit || !PyTuple_Check(hit) || PyTuple_GET_SIZE(hit) != 4) return NULL;
  return hit;
}

/* serve_scope(native, scope) -> None when the request needs the Python path; else
**   (start message, body message) when the chain answered (an element's failure is logged
**   through native.failed), or
**   the PendingUpstream (native.pending) owning the exchange when the action asked for an
**   upstream request.
** Only the common case runs here: a static, inline route, no request body
** (no Content-Length / Transfer-Encoding), not a health route. */
static PyObject *serve_scope(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 2 || !PyDict_Check(args[1])) {
    PyErr_SetString(PyExc_TypeError, "serve_scope(native, scope)");
    return NULL;
  }
  const Native *nat = native_arg(args[0], "serve_scope(native, scope)");
  if (!nat) return NULL;
  PyObject *scope = args[1];
  PyObject *path = PyDict_GetItemWithError(scope, k_path);
  PyObject *method = path ? PyDict_GetItemWithError(scope, k_method) : NULL;
  PyObject *headers = method ? PyDict_GetItemWithError(scope, k_headers) : NULL;
  if (!headers || !PyUnicode_Check(path) || !PyUnicode_Check(method) || !PyList_Check(headers)) {
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
  }
  if (has_body_or_odd_headers(headers, nat->single)) Py_RETURN_NONE;
  PyObject *hit = static_hit(nat, method, path);
  if (!hit || PyObject_IsTrue(PyTuple_GET_ITEM(hit, 3))) { /* none, or may-block */
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
  }

  void *chain;
  if (!as_pointer(PyTuple_GET_ITEM(hit, 1), &chain)) return NULL;
  const char *method_s = utf8(method), *path_s = utf8(path), *query_s = "", *client_s = "";
  if (!method_s || !path_s) return NULL;
  PyObject *query = PyDict_GetItemWithError(scope, k_query);
  if (query && PyBytes_Check(query)) query_s = PyBytes_AS_STRING(query);
  PyObject *client = query || !PyErr_Occurred() ? PyDict_GetItemWithError(scope, k_client) : NULL;
  if (PyErr_Occurred()) return NULL;
  if (client && PyTuple_Check(client) && PyTuple_GET_SIZE(client) >= 1 &&
      PyUnicode_Check(PyTuple_GET_ITEM(client, 0))) {
    client_s = utf8(PyTuple_GET_ITEM(client, 0));
    if (!client_s) return NULL;
  }
  rt_result out;
  if (run_chain((void *)nat->serve, nat->host, chain, PyObject_IsTrue(PyTuple_GET_ITEM(hit, 2)),
                method_s, path_s, query_s, client_s, headers, NULL, 0, "", 0, &out) < 0)
    return NULL;
  if (!out.ex) return PyErr_NoMemory();
  PyObject *chain_obj = PyTuple_GET_ITEM(hit, 0);
  if (out.outcome == RT_UPSTREAM) return pending_upstream(nat, &out, chain_obj);
  report_failure(nat, &out, chain_obj);
  PyObject *status, *answer_headers, *answer_body;
  int failed = answer_parts(&out, &status, &answer_headers, &answer_body);
  nat->free(out.ex);
  if (failed) return NULL;
  PyObject *start = PyDict_New(), *body = PyDict_New();
  PyObject *ret = NULL;
  if (start && body && !PyDict_SetItem(start, k_type, v_start) &&
      !PyDict_SetItem(start, k_status, status) &&
      !PyDict_SetItem(start, k_headers, answer_headers) && !PyDict_SetItem(body, k_type, v_body) &&
      !PyDict_SetItem(body, k_body,
                      PyUnicode_Compare(method, s_head) == 0 ? empty_bytes : answer_body))
    ret = PyTuple_Pack(2, start, body);
  Py_XDECREF(start);
  Py_XDECREF(body);
  Py_DECREF(status);
  Py_DECREF(answer_headers);
  Py_DECREF(answer_body);
  return ret;
}

static int ieqn(const char *a, const char *b, size_t n);

/* Whether response header `name` frames the body: the host writes those itself. */
static int is_framing(const char *name, size_t n) {
  return (n == 14 && ieqn(name, "content-length", 14)) ||
         (n == 17 && ieqn(name, "transfer-encoding", 17));
}

/* The whole HTTP/1.1 response of a finished exchange as one bytes object: status line
** (from `lines`, a tuple of status lines indexed by status code, as the ASGI path's server
** writes them), `date_line` (the server's Date header, "date: ...\r\n"), the response
** headers with their names in lower case (the runtime validated every name and value when
** it was set: no CR, LF or NUL), the blank line, and the body unless `head`.
** With `framing` (a streamed response's head): the exchange's own framing headers are left
** out, `framing` (header lines) goes last, and no body follows. */
static PyObject *raw_response(const rt_result *out, PyObject *lines, const char *date_line,
                              Py_ssize_t date_len, int head, const char *framing,
                              Py_ssize_t framing_len) {
  const rt_fields *f = &out->ex->headers[PH_RESPONSE];
  char fallback[32];
  const char *status_line = fallback;
  int sl;
  PyObject *line = out->status >= 0 && out->status < PyTuple_GET_SIZE(lines)
                       ? PyTuple_GET_ITEM(lines, out->status)
                       : NULL;
  if (line && PyBytes_Check(line)) {
    status_line = PyBytes_AS_STRING(line);
    sl = (int)PyBytes_GET_SIZE(line);
  } else {
    sl = snprintf(fallback, sizeof fallback, "HTTP/1.1 %d \r\n", out->status);
  }
  if (framing) head = 1;
  size_t size = (size_t)sl + (size_t)date_len + 2 + (head ? 0 : out->body_len);
  if (framing) size += (size_t)framing_len;
  for (size_t i = 0; i < f->n; i++)
    if (!framing || !is_framing(f->items[i].name, f->items[i].name_len))
      size += f->items[i].name_len + f->items[i].value_len + 4;
  PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
  if (!bytes) return NULL;
  char *w = PyBytes_AS_STRING(bytes);
  memcpy(w, status_line, (size_t)sl), w += sl;
  memcpy(w, date_line, (size_t)date_len), w += date_len;
  for (size_t i = 0; i < f->n; i++) {
    const char *name = f->items[i].name;
    if (framing && is_framing(name, f->items[i].name_len)) continue;
    for (size_t j = 0; j < f->items[i].name_len; j++) {
      char c = name[j];
      *w++ = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    *w++ = ':', *w++ = ' ';
    memcpy(w, f->items[i].value, f->items[i].value_len), w += f->items[i].value_len;
    *w++ = '\r', *w++ = '\n';
  }
  if (framing) memcpy(w, framing, (size_t)framing_len), w += framing_len;
  *w++ = '\r', *w++ = '\n';
  if (!head && out->body_len) memcpy(w, out->body, out->body_len);
  return bytes;
}

/* serve_raw(native, method, target, headers, client, date_line) -> None when the request
** needs the ASGI path; else
**   the response bytes when the chain answered: the complete HTTP/1.1 response (see
**   raw_response; an element's failure is logged through native.failed), or
**   the PendingUpstream (native.pending) owning the exchange when the action asked for an
**   upstream request.
** For an HTTP server's own protocol (plughost.protocol): method and target (the request
** line's) are bytes as received, headers the [(lower-case name, value)] list, client the
** peer's address (str or None), date_line the server's default header lines. Only a plain
** request is served here: a path without '%' (decoding is the ASGI path's) shorter than
** 1 KiB, no body, not a health route, on an inline route: static, "/prefix/*" (prefix_hit),
** or one the Python router finds (native.route: routes with ":param"). */
/* Runs `chain` for a plain request and answers as serve_raw does (the whole response, or
** the pending upstream). method: bytes; path_s: the decoded path; query: `ql` bytes (not
** NUL-terminated); client: str or None; date: bytes; params: packed route parameters. */
static PyObject *run_raw(const Native *nat, PyObject *chain_obj, void *chain, int release_gil,
                         PyObject *method, const char *path_s, const char *query, Py_ssize_t ql,
                         PyObject *headers, PyObject *client, PyObject *date, const char *params,
                         Py_ssize_t params_len, int head) {
  const char *client_s = "";
  if (client != Py_None && !(client_s = utf8(client))) return NULL;
  char method_s[16];
  Py_ssize_t ml = PyBytes_GET_SIZE(method);
  if (ml <= 0 || ml >= (Py_ssize_t)sizeof method_s) Py_RETURN_NONE;
  memcpy(method_s, PyBytes_AS_STRING(method), (size_t)ml);
  method_s[ml] = '\0';
  char query_stack[1024], *query_s = query_stack;
  if (ql >= (Py_ssize_t)sizeof query_stack && !(query_s = malloc((size_t)ql + 1)))
    return PyErr_NoMemory();
  if (ql) memcpy(query_s, query, (size_t)ql);
  query_s[ql] = '\0';
  rt_result out;
  int failed = run_chain((void *)nat->serve, nat->host, chain, release_gil, method_s, path_s,
                         query_s, client_s, headers, NULL, 0, params, (size_t)params_len, &out);
  if (query_s != query_stack) free(query_s);
  if (failed) return NULL;
  if (!out.ex) return PyErr_NoMemory();
  if (out.outcome == RT_UPSTREAM) return pending_upstream(nat, &out, chain_obj);
  report_failure(nat, &out, chain_obj);
  PyObject *data = raw_response(&out, nat->status_lines, PyBytes_AS_STRING(date),
                                PyBytes_GET_SIZE(date), head, NULL, 0);
  nat->free(out.ex);
  return data;
}

/* Whether `path` (str) is one of the health routes, which answer in Python. */
static int is_health(const Native *nat, PyObject *path) {
  return (nat->live != Py_None && PyUnicode_Compare(path, nat->live) == 0) ||
         (nat->ready != Py_None && PyUnicode_Compare(path, nat->ready) == 0);
}

/* The table of the method among a wildcard route's methods, as the router picks it: the
** method, then any method ("*"), then GET for a HEAD. Borrowed; NULL without an exception
** when the route does not take the method (the router's 405). */
static PyObject *method_entry(PyObject *table, PyObject *method) {
  PyObject *entry = PyDict_GetItemWithError(table, method);
  if (!entry && !PyErr_Occurred()) entry = PyDict_GetItemString(table, "*");
  if (!entry && !PyErr_Occurred() && PyUnicode_Compare(method, s_head) == 0)
    entry = PyDict_GetItemString(table, "GET");
  return entry;
}

/* The "/prefix/*" route a plain path (n bytes: no empty segment, no trailing '/') goes to:
** the longest prefix with a wildcard route in the Native's prefixes, what the router finds
** while no ":param" route exists (the gateway leaves the table empty otherwise). Its entry
** (chain, address, release_gil, may_block) for `method`, and in *rest_at where the rest of
** the path starts (at its '/', or n). Borrowed; NULL without an exception when there is
** none, the route does not take the method, or it may block: the caller's caller routes. */
static PyObject *prefix_hit(const Native *nat, PyObject *method, const char *path, Py_ssize_t n,
                            Py_ssize_t *rest_at) {
  PyObject *prefixes = nat->prefixes;
  if (PyDict_GET_SIZE(prefixes) == 0) return NULL;
  if (n > 1 && path[n - 1] == '/') return NULL;
  for (Py_ssize_t i = 1; i < n; i++)
    if (path[i] == '/' && path[i - 1] == '/') return NULL;
  char folded[1024];
  if (n >= (Py_ssize_t)sizeof folded) return NULL;
  int fold = !nat->case_sensitive;
  for (Py_ssize_t i = 0; i < n; i++) {
    char c = path[i];
    folded[i] = (char)(fold && c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  Py_ssize_t cut = n == 1 ? 0 : n; /* "/" has only the root prefix "" */
  for (;;) {
    PyObject *key = PyUnicode_DecodeASCII(folded, cut, NULL);
    if (!key) return NULL;
    PyObject *table = PyDict_GetItemWithError(prefixes, key);
    Py_DECREF(key);
    if (table) {
      PyObject *entry = method_entry(table, method);
      if (!entry || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 4 ||
          PyObject_IsTrue(PyTuple_GET_ITEM(entry, 3)))
        return NULL;
      *rest_at = cut;
      return entry;
    }
    if (PyErr_Occurred() || cut == 0) return NULL;
    do cut--;
    while (cut > 0 && folded[cut] != '/');
  }
}

static PyObject *serve_raw(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 6 || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2]) || !PyList_Check(args[3]) ||
      !PyBytes_Check(args[5])) {
    PyErr_SetString(PyExc_TypeError, "serve_raw(native, method, target, headers, client, date)");
    return NULL;
  }
  const Native *nat = native_arg(args[0], "serve_raw(native, ...)");
  if (!nat) return NULL;
  PyObject *headers = args[3];
  const char *target = PyBytes_AS_STRING(args[2]);
  Py_ssize_t target_len = PyBytes_GET_SIZE(args[2]);
  const char *qmark = memchr(target, '?', (size_t)target_len);
  Py_ssize_t path_len = qmark ? qmark - target : target_len;
  char path_s[1024]; /* the path as the client wrote it, NUL-terminated */
  if (path_len == 0 || target[0] != '/' || path_len >= (Py_ssize_t)sizeof path_s ||
      memchr(target, '%', (size_t)path_len) || memchr(target, '#', (size_t)target_len))
    Py_RETURN_NONE;
  if (has_body_or_odd_headers(headers, nat->single)) Py_RETURN_NONE;
  memcpy(path_s, target, (size_t)path_len);
  path_s[path_len] = '\0';
  PyObject *path = PyUnicode_DecodeASCII(target, path_len, NULL);
  if (!path) {
    PyErr_Clear(); /* not ASCII: the ASGI path decides */
    Py_RETURN_NONE;
  }
  PyObject *method =
      PyUnicode_DecodeASCII(PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]), NULL);
  if (!method) {
    Py_DECREF(path);
    return NULL;
  }
  /* The route, as the router would find it: a static route, else a "/prefix/<anything>"
  ** route (while no route has a ":param"), else the Python router (native.route). */
  PyObject *chain_obj = NULL, *routed = NULL, *ret = NULL;
  void *chain = NULL;
  int release_gil = 0;
  const char *params = "";
  Py_ssize_t params_len = 0;
  char params_stack[1032];
  PyObject *hit = is_health(nat, path) ? NULL : static_hit(nat, method, path);
  if (hit) {
    if (!PyObject_IsTrue(PyTuple_GET_ITEM(hit, 3)) &&
        as_pointer(PyTuple_GET_ITEM(hit, 1), &chain)) {
      chain_obj = PyTuple_GET_ITEM(hit, 0);
      release_gil = PyObject_IsTrue(PyTuple_GET_ITEM(hit, 2));
    }
  } else if (!PyErr_Occurred() && !is_health(nat, path)) {
    Py_ssize_t rest_at;
    PyObject *entry = prefix_hit(nat, method, target, path_len, &rest_at);
    if (entry) {
      Py_ssize_t rest_len = rest_at < path_len ? path_len - rest_at - 1 : 0;
      if (as_pointer(PyTuple_GET_ITEM(entry, 1), &chain)) {
        /* the packed route parameter "*": the rest of the path */
        params_stack[0] = '*', params_stack[1] = '\0';
        memcpy(params_stack + 2, target + path_len - rest_len, (size_t)rest_len);
        params_stack[2 + rest_len] = '\0';
        params = params_stack, params_len = rest_len + 3;
        chain_obj = PyTuple_GET_ITEM(entry, 0);
        release_gil = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 2));
      }
    } else if (!PyErr_Occurred() &&
               (routed = PyObject_CallFunctionObjArgs(nat->route, method, path, NULL)) &&
               routed != Py_None) {
      /* (chain, packed params) of an inline route */
      if (!PyTuple_Check(routed) || PyTuple_GET_SIZE(routed) != 2 ||
          !PyBytes_Check(PyTuple_GET_ITEM(routed, 1))) {
        PyErr_SetString(PyExc_TypeError, "native.route must answer (chain, params) or None");
      } else if ((chain = chain_address(PyTuple_GET_ITEM(routed, 0)))) {
        chain_obj = PyTuple_GET_ITEM(routed, 0);
        PyObject *flag = PyObject_GetAttr(chain_obj, s_release_gil);
        release_gil = flag ? PyObject_IsTrue(flag) : 0;
        Py_XDECREF(flag);
        params = PyBytes_AS_STRING(PyTuple_GET_ITEM(routed, 1));
        params_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(routed, 1));
      }
    }
  }
  if (chain_obj && !PyErr_Occurred()) {
    int head = PyUnicode_Compare(method, s_head) == 0;
    Py_ssize_t ql = qmark ? target_len - path_len - 1 : 0;
    ret = run_raw(nat, chain_obj, chain, release_gil, args[1], path_s, qmark ? qmark + 1 : "", ql,
                  headers, args[4], args[5], params, params_len, head);
  } else if (!PyErr_Occurred()) {
    ret = Py_NewRef(Py_None); /* not served here: the ASGI path */
  }
  Py_XDECREF(routed);
  Py_DECREF(path);
  Py_DECREF(method);
  return ret;
}

/* What finish_raw and finish_head share: the Native (args[0]), the Chain (args[1]), the
** exchange's address (args[2]), passed and status (args 3, 4). NULL with an exception when one is
** not what it should be. */
static const Native *pending_args(PyObject *const *args, const char *signature, void **chain,
                                  void **ex, Py_ssize_t *passed, long *status) {
  const Native *nat = native_arg(args[0], signature);
  if (!nat || !(*chain = chain_address(args[1])) || !as_pointer(args[2], ex)) return NULL;
  *passed = PyLong_AsSsize_t(args[3]);
  *status = PyLong_AsLong(args[4]);
  if ((*passed == -1 || *status == -1) && PyErr_Occurred()) return NULL;
  return nat;
}

/* The raw_response bytes of a completed run, its failure logged; frees its exchange either
** way. `framing` as for raw_response. */
static PyObject *answer_bytes(const Native *nat, rt_result *out, PyObject *chain_obj,
                              PyObject *date, int head, const char *framing,
                              Py_ssize_t framing_len) {
  report_failure(nat, out, chain_obj);
  PyObject *data = raw_response(out, nat->status_lines, PyBytes_AS_STRING(date),
                                PyBytes_GET_SIZE(date), head, framing, framing_len);
  nat->free(out->ex);
  return data;
}

/* finish_raw(native, chain, exchange, passed, status, headers, body, reason, date, head)
**   -> response bytes (an element's failure logged through native.failed)
** Completes a run that serve_raw left pending on an upstream: puts the upstream's answer
** (status, [(name, value)] bytes pairs, body) or, with a non-empty `reason`, the host's
** error answer `status` into the exchange, runs the response phase through the runtime's
** rt_serve_upstream, writes the whole HTTP/1.1 response as serve_raw does (no body when
** `head`) and frees the exchange. chain is the Chain, exchange the address PendingUpstream.take
** gave. */
static PyObject *finish_raw(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  static const char signature[] =
      "finish_raw(native, chain, exchange, passed, status, "
      "headers, body, reason, date, head)";
  if (nargs != 10 || !PyBytes_Check(args[8])) {
    PyErr_SetString(PyExc_TypeError, signature);
    return NULL;
  }
  void *chain, *ex;
  Py_ssize_t passed, body_len;
  long status;
  const char *body, *reason;
  const Native *nat = pending_args(args, signature, &chain, &ex, &passed, &status);
  if (!nat || !as_bytes(args[6], &body, &body_len, "body") ||
      !as_bytes(args[7], &reason, NULL, "reason"))
    return NULL;
  char stack[2048], *packed = NULL;
  Py_ssize_t packed_len = pack_headers(args[5], stack, sizeof stack, &packed);
  if (packed_len < 0) return NULL;
  rt_result out;
  nat->finish(chain, ex, (size_t)passed, (int)status, packed, (size_t)packed_len,
              (const uint8_t *)body, (size_t)body_len, reason, &out);
  if (packed != stack) free(packed);
  return answer_bytes(nat, &out, args[1], args[8], PyObject_IsTrue(args[9]), NULL, 0);
}

/* Request headers that never go upstream as the client sent them: hop-by-hop ones (RFC 9110
** section 7.6.1) and those the host writes itself (Host, the body's framing, Expect). Keep in
** step with plughost/proxy/message.py. */
static const char *const not_forwarded[] = {"connection",
                                            "keep-alive",
                                            "proxy-connection",
                                            "te",
                                            "trailer",
                                            "transfer-encoding",
                                            "upgrade",
                                            "proxy-authenticate",
                                            "proxy-authorization",
                                            "host",
                                            "content-length",
                                            "expect",
                                            NULL};

/* Whether a (n bytes) equals the lower-case NUL-terminated b, ignoring ASCII case. */
static int ieq(const char *a, size_t n, const char *b) {
  size_t i = 0;
  for (; i < n && b[i]; i++) {
    char c = a[i];
    if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != b[i]) return 0;
  }
  return i == n && !b[i];
}

/* Whether a and b (both of length n) are equal ignoring ASCII case. */
static int ieqn(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char x = a[i], y = b[i];
    if ((x >= 'A' && x <= 'Z' ? x + 32 : x) != (y >= 'A' && y <= 'Z' ? y + 32 : y)) return 0;
  }
  return 1;
}

/* Whether a request header goes upstream: not hop-by-hop, not one the host writes itself.
** The fields the client's Connection header named were dropped when the request arrived
** (plughost.serving.pipeline.drop_connection_options), so what an action added stays. */
static int forwarded(const rt_fields *f, const rt_field *h) {
  (void)f;
  for (const char *const *d = not_forwarded; *d; d++)
    if (ieq(h->name, h->name_len, *d)) return 0;
  return 1;
}

/* A byte that a request line cannot carry as is: sent percent-encoded. */
static int needs_escape(unsigned char c) {
  return c <= 0x20 || c >= 0x7f;
}

/* upstream_request(pending) -> (origin, target, method, header lines, body,
**                               connect_timeout_ms, timeout_ms, websocket, url)
** What the host sends for the upstream directive an action set on the exchange a
** PendingUpstream owns (read through its `address`; it keeps the exchange): origin is the URL's "scheme://authority" as written (b"" when the URL has no
** "://"), target its origin-form request target (path and query, never decoded; the
** fragment dropped; bytes a request line cannot carry percent-encoded; "/" when empty),
** header lines the request headers as "name: value\r\n" without the hop-by-hop ones, those
** a Connection header names, Host, Content-Length and Expect. Mirrors what
** plughost.proxy.message does for the general path. */
static PyObject *upstream_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "upstream_request(pending)");
    return NULL;
  }
  PyObject *address = PyObject_GetAttr(args[0], s_address);
  void *p = NULL;
  int ok = address && as_pointer(address, &p);
  Py_XDECREF(address);
  if (!ok) return NULL;
  const ph_exchange *ex = p;
  if (!ex->has_upstream) {
    PyErr_SetString(PyExc_ValueError, "the exchange holds no upstream directive");
    return NULL;
  }
  const char *url = ex->upstream_url;
  size_t url_len = strlen(url);
  const char *sep = strstr(url, "://");
  const char *origin_end = url, *rest = url;
  if (sep) {
    rest = origin_end = sep + 3;
    while (*origin_end && *origin_end != '/' && *origin_end != '?' && *origin_end != '#')
      origin_end++;
    rest = origin_end;
  }
  size_t path_len = strcspn(rest, "#"), need = (path_len == 0 || rest[0] == '?') ? 1 : 0;
  for (size_t i = 0; i < path_len; i++) need += needs_escape((unsigned char)rest[i]) ? 3 : 1;
  PyObject *target = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)need);
  if (!target) return NULL;
  char *w = PyBytes_AS_STRING(target);
  static const char hex[] = "0123456789ABCDEF";
  if (path_len == 0 || rest[0] == '?') *w++ = '/';
  for (size_t i = 0; i < path_len; i++) {
    unsigned char c = (unsigned char)rest[i];
    if (needs_escape(c)) {
      *w++ = '%', *w++ = hex[c >> 4], *w++ = hex[c & 15];
    } else {
      *w++ = (char)c;
    }
  }
  const rt_fields *f = &ex->headers[PH_REQUEST];
  size_t lines_len = 0;
  for (size_t i = 0; i < f->n; i++)
    if (forwarded(f, &f->items[i])) lines_len += f->items[i].name_len + f->items[i].value_len + 4;
  PyObject *lines = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)lines_len);
  if (!lines) {
    Py_DECREF(target);
    return NULL;
  }
  w = PyBytes_AS_STRING(lines);
  for (size_t i = 0; i < f->n; i++) {
    const rt_field *h = &f->items[i];
    if (!forwarded(f, h)) continue;
    memcpy(w, h->name, h->name_len), w += h->name_len;
    *w++ = ':', *w++ = ' ';
    memcpy(w, h->value, h->value_len), w += h->value_len;
    *w++ = '\r', *w++ = '\n';
  }
  return Py_BuildValue(
      "(y#NyNy#LLOy#)", url, (Py_ssize_t)(sep ? origin_end - url : 0), target, ex->upstream_method,
      lines, ex->body[PH_REQUEST] ? (const char *)ex->body[PH_REQUEST] : "",
      (Py_ssize_t)ex->body_len[PH_REQUEST], (long long)ex->upstream.connect_timeout_ms,
      (long long)ex->upstream.timeout_ms,
      (ex->upstream.flags & PH_UPSTREAM_WEBSOCKET) ? Py_True : Py_False, url, (Py_ssize_t)url_len);
}

/* finish_head(native, chain, exchange, passed, status, headers, framing, date, head)
**   -> (streaming, bytes)
** Like finish_raw for a chain whose bodies stream: runs the response phase on the
** upstream's status and headers alone (rt_serve_upstream_head) and frees the
** exchange. streaming True: `bytes` is the response head, with the host's `framing` header
** lines in place of any framing header the exchange holds; the upstream's body is to
** follow. streaming False: a hook set a body (or failed): `bytes` is that whole response,
** which replaces the upstream's. */
static PyObject *finish_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  static const char signature[] =
      "finish_head(native, chain, exchange, passed, status, "
      "headers, framing, date, head)";
  if (nargs != 9 || !PyBytes_Check(args[6]) || !PyBytes_Check(args[7])) {
    PyErr_SetString(PyExc_TypeError, signature);
    return NULL;
  }
  void *chain, *ex;
  Py_ssize_t passed;
  long status;
  const Native *nat = pending_args(args, signature, &chain, &ex, &passed, &status);
  if (!nat) return NULL;
  char stack[2048], *packed = NULL;
  Py_ssize_t packed_len = pack_headers(args[5], stack, sizeof stack, &packed);
  if (packed_len < 0) return NULL;
  rt_result out;
  ((serve_head_fn)nat->finish_head)(chain, ex, (size_t)passed, (int)status, packed,
                                    (size_t)packed_len, &out);
  if (packed != stack) free(packed);
  int streaming = out.outcome == RT_STREAM;
  PyObject *data =
      answer_bytes(nat, &out, args[1], args[7], PyObject_IsTrue(args[8]),
                   streaming ? PyBytes_AS_STRING(args[6]) : NULL, PyBytes_GET_SIZE(args[6]));
  if (!data) return NULL;
  return Py_BuildValue("(ON)", streaming ? Py_True : Py_False, data);
}

static PyMethodDef methods[] = {
    {"finish_head", (PyCFunction)(void (*)(void))finish_head, METH_FASTCALL,
     "Runs the response phase of a streamed upstream answer; the response head."},
    {"upstream_request", (PyCFunction)(void (*)(void))upstream_request, METH_FASTCALL,
     "What the host sends for an exchange's upstream directive; see the C source."},
    {"finish_raw", (PyCFunction)(void (*)(void))finish_raw, METH_FASTCALL,
     "Completes a pending upstream run with its answer; the whole HTTP/1.1 response."},
    {"serve", (PyCFunction)(void (*)(void))fast_serve, METH_FASTCALL,
     "Runs one request through a chain; see the C source for the arguments."},
    {"serve_scope", (PyCFunction)(void (*)(void))serve_scope, METH_FASTCALL,
     "Runs a plain request of an ASGI scope on a static inline route; None when it cannot."},
    {"serve_raw", (PyCFunction)(void (*)(void))serve_raw, METH_FASTCALL,
     "Runs a plain request as an HTTP protocol received it; the whole HTTP/1.1 response."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT,
                                    "plughost._fastpath",
                                    "The ASGI hot path in C.",
                                    -1,
                                    methods,
                                    NULL,
                                    NULL,
                                    NULL,
                                    NULL};

static PyObject *intern(const char *s) {
  return PyUnicode_InternFromString(s);
}

PyMODINIT_FUNC PyInit__fastpath(void) {
  if (!(k_type = intern("type")) || !(k_status = intern("status")) ||
      !(k_headers = intern("headers")) || !(k_body = intern("body")) ||
      !(v_start = intern("http.response.start")) || !(v_body = intern("http.response.body")) ||
      !(k_path = intern("path")) || !(k_method = intern("method")) ||
      !(k_query = intern("query_string")) || !(k_client = intern("client")) ||
      !(s_lower = intern("lower")) || !(s_head = intern("HEAD")) ||
      !(s_address = intern("address")) || !(s_release_gil = intern("release_gil")) ||
      !(empty_bytes = PyBytes_FromStringAndSize("", 0)))
    return NULL;
  if (PyType_Ready(&NativeType) < 0) return NULL;
  PyObject *m = PyModule_Create(&module);
  if (!m) return NULL;
  Py_INCREF(&NativeType);
  if (PyModule_AddObject(m, "Native", (PyObject *)&NativeType) < 0) {
    Py_DECREF(&NativeType);
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
