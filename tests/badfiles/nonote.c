/* An entry written by hand with a correct header, but without the .note.plughost that
** PH_PLUGIN_DEFINE adds. */
#include "plugin.h"

__attribute__((visibility("default"))) extern const ph_plugin plughost_plugin_entry;
__attribute__((visibility("default"))) const ph_plugin plughost_plugin_entry = {
    .header = {PH_PLUGIN_MAGIC, PH_ABI_MAJOR, PH_ABI_MINOR, sizeof(ph_plugin), 0},
    .name = "nonote",
};
