/* A valid plugin (dup_a) declaring the middleware id plugins.dup.middlewares.Same, which
** dup_b.so declares too: the loader must refuse the duplicate. */
#include "plugin.h"

static ph_status same_create(const ph_config *config, void **self) {
  (void)config;
  *self = NULL;
  return PH_OK;
}

static const ph_middleware_type same = {
    .size = sizeof(ph_middleware_type),
    .id = "plugins.dup.middlewares.Same",
    .description = "declared by dup_a and dup_b",
    .create = same_create,
};

static const ph_middleware_type *const middlewares[] = {&same, NULL};

PH_PLUGIN_DEFINE(.name = "dup_a", .version = "1.0.0", .middlewares = middlewares);
