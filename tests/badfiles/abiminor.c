/* A plugin built against a newer minor of the header than the host implements: note and
** entry both say 1.<BAD_ABI_MINOR>; build.py passes -DBAD_ABI_MINOR=<host minor + 1>. */
#include "plugin.h"

#ifndef BAD_ABI_MINOR
#error "compile with -DBAD_ABI_MINOR=<PH_ABI_MINOR + 1>"
#endif
#undef PH_ABI_MINOR
#define PH_ABI_MINOR BAD_ABI_MINOR

PH_PLUGIN_DEFINE(.name = "abiminor", .version = "1.0.0");
