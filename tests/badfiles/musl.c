/* A valid plugin built with musl-gcc: loadable on the Alpine image, not on a glibc host. */
#include "plugin.h"

#include <string.h>

static char last_name[32];

static ph_status musl_init(const ph_config *config, void **state) {
  (void)config;
  strncpy(last_name, "musl", sizeof last_name - 1);
  *state = last_name;
  return PH_OK;
}

PH_PLUGIN_DEFINE(.name = "musl", .version = "1.0.0", .init = musl_init);
