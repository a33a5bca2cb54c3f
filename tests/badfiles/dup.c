/* A valid plugin declaring the middleware id plugins.dup.middlewares.Same. Built twice,
** as dup_a.so and dup_b.so (DUP_NAME), so two plugins declare the same id: the loader
** must refuse the second. */
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

PH_PLUGIN_DEFINE(.name = DUP_NAME, .version = "1.0.0", .middlewares = middlewares);
