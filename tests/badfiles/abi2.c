/* A plugin built against a (future) major version 2 of the header: note and entry both
** say 2.0. */
#include "plugin.h"

#undef PH_ABI_MAJOR
#define PH_ABI_MAJOR 2
#undef PH_ABI_MINOR
#define PH_ABI_MINOR 0

PH_PLUGIN_DEFINE(.name = "abi2", .version = "1.0.0");
