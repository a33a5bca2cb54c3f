/* A valid plugin whose init hook never returns. */
#define _POSIX_C_SOURCE 200809L
#include "plugin.h"

#include <unistd.h>

static ph_status hang_init(const ph_config *config, void **state) {
  (void)config;
  (void)state;
  for (;;) {
    sleep(1);
  }
  return PH_OK;
}

PH_PLUGIN_DEFINE(.name = "hang", .version = "1.0.0", .init = hang_init);
