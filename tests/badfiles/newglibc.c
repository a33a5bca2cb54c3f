/* A valid plugin that calls strlcpy, which glibc has only since 2.38 (GLIBC_2.38). */
#define _DEFAULT_SOURCE /* strlcpy is a BSD extension in glibc */
#include "plugin.h"

#include <string.h>

static char copy[16];

static ph_status newglibc_init(const ph_config *config, void **state) {
  (void)config;
  strlcpy(copy, "newglibc", sizeof copy);
  *state = copy;
  return PH_OK;
}

PH_PLUGIN_DEFINE(.name = "newglibc", .version = "1.0.0", .init = newglibc_init);
