/* A valid plugin that calls a function no library defines (linked without
** -Wl,--no-undefined, so the linker let it through). */
#include "plugin.h"

extern int plughost_test_function_nobody_defines(int value);

static ph_status unresolved_init(const ph_config *config, void **state) {
  (void)config;
  (void)state;
  return plughost_test_function_nobody_defines(1) ? PH_OK : PH_ERROR;
}

PH_PLUGIN_DEFINE(.name = "unresolved", .version = "1.0.0", .init = unresolved_init);
