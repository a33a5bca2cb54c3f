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
                         const char *, const char *, size_t, const uint8_t *, size_t,
                         const char *, size_t, rt_result *);
typedef void (*free_fn)(ph_exchange *);

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
    Py_ssize_t size = PyList_Check(pair) ? PyList_GET_SIZE(pair)
                      : PyTuple_Check(pair) ? PyTuple_GET_SIZE(pair) : -1;
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
    if (memchr(PyBytes_AS_STRING(name), 0, nl) || memchr(PyBytes_AS_STRING(value), 0, vl))
      continue;
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
    PyObject *t = pair(f->items[i].name, f->items[i].name_len, f->items[i].value,
                       f->items[i].value_len);
    if (!t) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, t);
  }
  return list;
}

static PyObject *result_tuple(rt_result *out) {
  PyObject *headers = response_headers(out->ex);
  if (!headers) return NULL;
  PyObject *failure = Py_None;
  if (out->failure_len) {
    failure = Py_BuildValue("(s s#)", out->failure_label, out->failure,
                            (Py_ssize_t)out->failure_len);
    if (!failure) {
      Py_DECREF(headers);
      return NULL;
    }
  } else {
    Py_INCREF(Py_None);
  }
  PyObject *body = PyBytes_FromStringAndSize(out->body, (Py_ssize_t)out->body_len);
  PyObject *status = body ? PyLong_FromLong(out->status) : NULL;
  PyObject *t = status ? PyTuple_New(4) : NULL;
  if (!t) {
    Py_DECREF(headers);
    Py_DECREF(failure);
    Py_XDECREF(body);
    Py_XDECREF(status);
    return NULL;
  }
  PyTuple_SET_ITEM(t, 0, status);
  PyTuple_SET_ITEM(t, 1, headers);
  PyTuple_SET_ITEM(t, 2, body);
  PyTuple_SET_ITEM(t, 3, failure);
  return t;
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

/* serve(serve_fn, free_fn, host, chain, method, path, query, client, headers, body, params,
**       release_gil) -> (status, headers, body, failure) when the chain finished, or
**       (0, exchange, passed, None) when an upstream request must be performed first. */
static PyObject *fast_serve(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 12) {
    PyErr_SetString(PyExc_TypeError, "serve() takes 12 arguments");
    return NULL;
  }
  void *serve_p, *free_p, *host, *chain;
  if (!as_pointer(args[0], &serve_p) || !as_pointer(args[1], &free_p) ||
      !as_pointer(args[2], &host) || !as_pointer(args[3], &chain))
    return NULL;
  const char *method, *path, *query, *client, *body, *params;
  Py_ssize_t body_len, params_len;
  if (!as_bytes(args[4], &method, NULL, "method") || !as_bytes(args[5], &path, NULL, "path") ||
      !as_bytes(args[6], &query, NULL, "query") || !as_bytes(args[7], &client, NULL, "client") ||
      !as_bytes(args[9], &body, &body_len, "body") ||
      !as_bytes(args[10], &params, &params_len, "params"))
    return NULL;
  int release = PyObject_IsTrue(args[11]);
  char stack[2048], *packed = NULL;
  Py_ssize_t packed_len = pack_headers(args[8], stack, sizeof stack, &packed);
  if (packed_len < 0) return NULL;
  rt_result out;
  serve_fn serve = (serve_fn)serve_p;
  if (release) {
    Py_BEGIN_ALLOW_THREADS
    serve(host, chain, method, path, query, client, packed, (size_t)packed_len,
          (const uint8_t *)body, (size_t)body_len, params, (size_t)params_len, &out);
    Py_END_ALLOW_THREADS
  } else {
    serve(host, chain, method, path, query, client, packed, (size_t)packed_len,
          (const uint8_t *)body, (size_t)body_len, params, (size_t)params_len, &out);
  }
  if (packed != stack) free(packed);
  if (!out.ex) return PyErr_NoMemory(); /* rt_serve could not allocate the exchange */
  if (out.outcome == RT_UPSTREAM)
    return Py_BuildValue("(iNnO)", 0, PyLong_FromVoidPtr(out.ex), (Py_ssize_t)out.passed,
                         Py_None);
  PyObject *result = result_tuple(&out);
  ((free_fn)free_p)(out.ex);
  return result;
}

static PyMethodDef methods[] = {
    {"serve", (PyCFunction)(void (*)(void))fast_serve, METH_FASTCALL,
     "Runs one request through a chain; see the C source for the arguments."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "plughost._fastpath",
                                    "The ASGI hot path in C.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fastpath(void) { return PyModule_Create(&module); }
