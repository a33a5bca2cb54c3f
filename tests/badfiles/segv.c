/* A valid plugin whose init hook crashes (SIGSEGV) by writing through a NULL pointer. */
#include "plugin.h"

static ph_status segv_init(const ph_config *config, void **state) {
  (void)config;
  (void)state;
  volatile int *volatile nowhere = NULL;
  *nowhere = 42;
  return PH_OK;
}

PH_PLUGIN_DEFINE(.name = "segv", .version = "1.0.0", .init = segv_init);
