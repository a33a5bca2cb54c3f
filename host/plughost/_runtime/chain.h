/* Configured instances and chains: the host's C chain runner. rt_chain_run() runs every
** request hook, the action and every response hook in one call, so a request crosses from
** Python into C once whatever the chain's length (rt_serve, through plughost._fastpath),
** and twice more when its action asks for an upstream request: see the docstring of
** host/plughost/serving/chain.py, which counts them. */
#ifndef PLUGHOST_CHAIN_H
#define PLUGHOST_CHAIN_H

#include "runtime.h"
#include "stats.h"

typedef enum rt_instance_kind {
  RT_MIDDLEWARE = 1,   /* native middleware: type is a ph_middleware_type */
  RT_ACTION = 2,       /* native action: type is a ph_action_type */
  RT_PY_MIDDLEWARE = 3, /* Python middleware: called back through rt_py_call */
  RT_PY_ACTION = 4     /* Python action */
} rt_instance_kind;

/* Phases passed to Python elements. */
#define RT_PHASE_REQUEST 0
#define RT_PHASE_RESPONSE 1

/* Calls a Python element; returns a ph_next (request/action) or ph_status (response). */
typedef int (*rt_py_call_fn)(void *handle, int phase, ph_exchange *ex);

typedef struct rt_instance {
  rt_instance_kind kind;
  const void *type;
  void *self;        /* native: the plugin's state; Python: a cffi handle */
  char *label;       /* "middleware 'ReqID' (plugins.requestid.middlewares...)"; owned */
  char *plugin;      /* the plugin that provides the type (crash reports); owned, or NULL */
  bool serialise;    /* not thread-safe: calls hold lock */
  bool may_block;
  pthread_mutex_t lock;
  rt_element_stats times; /* sampled time in its hooks, for the host's metrics */
} rt_instance;

rt_instance *rt_instance_new(rt_instance_kind kind, const void *type, void *self, const char *label,
                             int thread_safe, int may_block);
void rt_instance_free(rt_instance *inst); /* does not call destroy: Python does */
int rt_instance_request(rt_instance *inst, ph_exchange *ex);  /* one hook, locked */
int rt_instance_response(rt_instance *inst, ph_exchange *ex);
int rt_instance_handle(rt_instance *inst, ph_exchange *ex);
void rt_set_py_call(rt_py_call_fn fn);

typedef struct rt_chain {
  size_t n;                 /* middlewares */
  rt_instance **middlewares; /* owned array of borrowed instances */
  rt_instance *action;      /* borrowed */
  bool may_block;           /* some element may block: run off the event loop */
  bool has_python;          /* some element is written in Python */
  bool has_serialised;      /* some element is not thread-safe (its calls take a lock) */
  char *route_name;         /* given to every exchange the chain runs; owned */
  rt_answer_stats *answers; /* its answers by method and status, and their latency; owned */
} rt_chain;

rt_chain *rt_chain_new(rt_instance **middlewares, size_t n, rt_instance *action);
void rt_chain_free(rt_chain *chain);
void rt_chain_set_route(rt_chain *chain, const char *route_name);
int rt_chain_may_block(const rt_chain *chain);
/* Whether callers must let go of the GIL while the chain runs: it may block, or it takes a
** lock that another thread could hold while that thread waits for the GIL (a hook that
** logs, say). */
int rt_chain_release_gil(const rt_chain *chain);

/* Outcome of rt_chain_run. */
#define RT_DONE 0      /* response complete (the response phase has run) */
#define RT_UPSTREAM \
  1  /* perform ex's upstream request, set the response, then call
                          rt_chain_finish(chain, ex, *passed) */
#define RT_STREAM \
  2    /* rt_serve_upstream_head: the response phase kept the upstream's
                          answer; its body follows from the upstream */

/* Runs the request phase, the action and (unless an upstream is needed) the response
** phase. *passed receives how many middlewares the response phase must cover. */
int rt_chain_run(const rt_chain *chain, ph_exchange *ex, size_t *passed);
/* Runs the response phase for the first `passed` middlewares, in reverse. */
void rt_chain_finish(const rt_chain *chain, ph_exchange *ex, size_t passed);
/* Turns the exchange's response into an error answer: `status` with a JSON body holding
** the request id. Records `reason`/`label` for the host's log. */
void rt_exchange_fail(ph_exchange *ex, int status, const char *label, const char *reason);

/* ------------------------------------------------- one-call build and read-back */
/* Builds an exchange with its request headers packed as "name\0value\0name\0value\0". */
ph_exchange *rt_exchange_new_packed(rt_host *host, const char *method, const char *path,
                                    const char *query, const char *client_ip, const char *headers,
                                    size_t headers_len, const uint8_t *body, size_t body_len);
/* Packs the response headers the same way into a buffer owned by the exchange; returns
** its length. The body comes back in body and body_len. */
size_t rt_exchange_pack_response(ph_exchange *ex, const char **headers, int *status,
                                 const uint8_t **body, size_t *body_len);
/* Replaces the response with an upstream's answer (headers packed as above). */
void rt_exchange_set_response_packed(ph_exchange *ex, int status, const char *headers,
                                     size_t headers_len, const uint8_t *body, size_t body_len);
/* Packs the request headers (as modified by the chain) into the exchange's buffer. */
size_t rt_exchange_pack_request(ph_exchange *ex, const char **headers);
/* ------------------------------------------------ the one-call path of a request */

/* What rt_serve and rt_serve_upstream leave for Python to read. Pointers belong to `ex`
** and live until rt_exchange_free(ex). */
typedef struct rt_result {
  ph_exchange *ex;
  int outcome;        /* RT_DONE or RT_UPSTREAM */
  int status;
  size_t passed;      /* for rt_serve_upstream */
  const char *headers; /* packed response headers, content-length included: set by
                          rt_result_pack() (the response fields are in ex otherwise) */
  size_t headers_len;
  const char *body;    /* the response body (bytes, not NUL-terminated) */
  size_t body_len;
  const char *failure; /* why the host answered with an error ("" if it did not) */
  size_t failure_len;
  const char *failure_label;
} rt_result;

/* Builds the exchange (request headers and route params packed "name\0value\0..."), runs
** the chain and, unless an upstream is needed, fills `out` with the response. */
void rt_serve(rt_host *host, const rt_chain *chain, const char *method, const char *path,
              const char *query, const char *client_ip, const char *headers, size_t headers_len,
              const uint8_t *body, size_t body_len, const char *params, size_t params_len,
              rt_result *out);
/* Completes an RT_UPSTREAM run whose body streams (a chain of PH_TYPE_STREAMS_BODIES
** elements) with the upstream's status and headers alone: runs the response phase with an
** empty body. out->outcome is RT_STREAM when the hooks kept the upstream's answer (the
** response headers in ex, without any framing header of their own, go before the
** upstream's body), or RT_DONE, filled as rt_serve_upstream does, when a hook set a body
** (an error answer included): that response replaces the upstream's. */
void rt_serve_upstream_head(const rt_chain *chain, ph_exchange *ex, size_t passed, int status,
                            const char *headers, size_t headers_len, rt_result *out);
/* Packs the response headers of a finished run into out->headers. */
void rt_result_pack(rt_result *out);
/* Completes an RT_UPSTREAM run with the upstream's answer (status > 0) or with an error
** answer (status 502/504 and `reason`), runs the response phase and fills `out`. */
void rt_serve_upstream(const rt_chain *chain, ph_exchange *ex, size_t passed, int status,
                       const char *headers, size_t headers_len, const uint8_t *body,
                       size_t body_len, const char *reason, rt_result *out);

/* The counters of a chain's answers and of an element's time (read by plughost.metrics). */
const rt_answer_stats *rt_chain_answers(const rt_chain *chain);
const rt_element_stats *rt_instance_times(const rt_instance *inst);

/* The failure recorded by rt_exchange_fail or a failing element ("" if none). */
const char *rt_exchange_failure(const ph_exchange *ex, const char **label);

#endif
