/* An entry whose header says it is 8 bytes long, smaller than any ph_plugin. The note is
** the one PH_PLUGIN_DEFINE writes; only the size field is wrong. */
#include "plugin.h"

__attribute__((section(".note.plughost"), aligned(4),
               used)) PH__RETAIN static const struct ph__note smallsize_note = {
    9, sizeof(PH__NOTE_TEXT), PH_NOTE_TYPE, "plughost", PH__NOTE_TEXT};

__attribute__((visibility("default"))) extern const ph_plugin plughost_plugin_entry;
__attribute__((visibility("default"))) const ph_plugin plughost_plugin_entry = {
    .header = {PH_PLUGIN_MAGIC, PH_ABI_MAJOR, PH_ABI_MINOR, 8, 0},
    .name = "smallsize",
};
