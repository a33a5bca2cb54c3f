/* A small valid plugin: one middleware that sets the response header "x-good: 1".
** Built for the host (good.so), with musl (good_musl.so), for aarch64 (aarch64.so),
** 32-bit (elf32.so) and big-endian (bigendian.so); truncated.so is good.so cut in half. */
#include "plugin.h"

static ph_next hello_on_request(void *self, ph_exchange *ex) {
  (void)self;
  (void)ex;
  return PH_NEXT_CONTINUE;
}

static ph_status hello_on_response(void *self, ph_exchange *ex) {
  (void)self;
  return ph_resp_header_set(ex, "x-good", "1");
}

static ph_status hello_create(const ph_config *config, void **self) {
  (void)config;
  *self = NULL;
  return PH_OK;
}

static const ph_middleware_type hello = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.good.middlewares.Hello",
    .description = "sets the response header x-good: 1",
    .create = hello_create,
    .on_request = hello_on_request,
    .on_response = hello_on_response,
};

static const ph_middleware_type *const middlewares[] = {&hello, NULL};

PH_PLUGIN_DEFINE(.name = "good", .version = "1.0.0",
                 .description = "a small valid plugin for the tests", .middlewares = middlewares);
