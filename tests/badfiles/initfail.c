/* A valid plugin whose init hook reports a configuration error and fails. */
#include "plugin.h"

static ph_status initfail_init(const ph_config *config, void **state) {
  (void)state;
  ph_config_error(config, NULL, "cannot open /nonexistent/key.pem: No such file or directory");
  return PH_ERROR;
}

PH_PLUGIN_DEFINE(.name = "initfail", .version = "1.0.0", .init = initfail_init);
