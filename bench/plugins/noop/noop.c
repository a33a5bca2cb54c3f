/*
** noop: benchmark-only plugin (bench/chain_cost.py).
**
** NoopMiddleware: the request phase continues, the response phase succeeds; it touches
**   nothing, so a chain of N of them measures the host's chain runner alone.
** HeaderMiddleware {op: get | set}: one host-table call per phase and nothing else:
**   "get" looks up the request header X-Bench-Missing (absent: a full scan) in the request
**   phase and the response header X-Bench-Missing in the response phase; "set" sets the
**   request header X-Bench to "1" and the response header X-Bench to "1". Chains of them
**   price one ph_header_get / ph_header_set as the trace middleware uses them.
*/
#define _POSIX_C_SOURCE 200809L
#include "plugin.h"

#include <stdlib.h>
#include <string.h>

static ph_status noop_create(const ph_config *cfg, void **self) {
  (void)cfg;
  *self = NULL;
  return PH_OK;
}

static ph_next noop_request(void *self, ph_exchange *ex) {
  (void)self;
  (void)ex;
  return PH_NEXT_CONTINUE;
}

static ph_status noop_response(void *self, ph_exchange *ex) {
  (void)self;
  (void)ex;
  return PH_OK;
}

typedef struct header_mw {
  int set;
} header_mw;

static void header_destroy(void *self) {
  free(self);
}

static ph_status header_create(const ph_config *cfg, void **self) {
  const char *op;
  header_mw *h = calloc(1, sizeof *h);
  if (!h) return ph_config_error(cfg, NULL, "out of memory");
  *self = h;
  if (ph_config_string(cfg, "op", "get", &op) != PH_OK) return PH_ERROR;
  if (strcmp(op, "get") != 0 && strcmp(op, "set") != 0)
    return ph_config_error(cfg, "op", "must be \"get\" or \"set\", not '%s'", op);
  h->set = strcmp(op, "set") == 0;
  return PH_OK;
}

static ph_next header_request(void *self, ph_exchange *ex) {
  header_mw *h = self;
  if (h->set)
    return PH_API(ex)->header_set(ex, PH_REQUEST, "X-Bench", "1") == PH_OK ? PH_NEXT_CONTINUE
                                                                           : PH_NEXT_ERROR;
  return PH_API(ex)->header_get(ex, PH_REQUEST, "X-Bench-Missing") ? PH_NEXT_ERROR
                                                                   : PH_NEXT_CONTINUE;
}

static ph_status header_response(void *self, ph_exchange *ex) {
  header_mw *h = self;
  if (h->set) return PH_API(ex)->header_set(ex, PH_RESPONSE, "X-Bench", "1");
  return PH_API(ex)->header_get(ex, PH_RESPONSE, "X-Bench-Missing") ? PH_ERROR : PH_OK;
}

static const ph_middleware_type noop_mw = {.size = sizeof(ph_middleware_type),
                                           .flags = PH_TYPE_THREAD_SAFE,
                                           .id = "plugins.noop.middlewares.NoopMiddleware",
                                           .create = noop_create,
                                           .on_request = noop_request,
                                           .on_response = noop_response};
static const ph_middleware_type header_mw_type = {.size = sizeof(ph_middleware_type),
                                                  .flags = PH_TYPE_THREAD_SAFE,
                                                  .id = "plugins.noop.middlewares.HeaderMiddleware",
                                                  .create = header_create,
                                                  .destroy = header_destroy,
                                                  .on_request = header_request,
                                                  .on_response = header_response};

static const ph_middleware_type *const middlewares[] = {&noop_mw, &header_mw_type, NULL};

PH_PLUGIN_DEFINE(.name = "noop", .version = "1.0.0",
                 .description =
                     "benchmark-only: a middleware that does nothing, and one that "
                     "makes one header call per phase",
                 .middlewares = middlewares);
