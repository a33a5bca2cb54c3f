"""The plugin ABI constants the host implements, mirrored from ``abi/plugin.h``.

Everything here is a plain constant or a pure function; ``tests/test_abi_constants.py``
parses the header and checks that the two stay in step.
"""

from __future__ import annotations

#: ``PH_ABI_MAJOR``: the ABI major this host implements (changes only when incompatible).
ABI_MAJOR = 1
#: ``PH_ABI_MINOR``: the newest ABI minor this host implements.
ABI_MINOR = 2
#: ``PH_PLUGIN_MAGIC``: ``ph_plugin_header.magic`` (the bytes "PLGH" as a little-endian word).
PLUGIN_MAGIC = 0x48474C50
#: ``PH_ENTRY_SYMBOL``: the one symbol every plugin exports.
ENTRY_SYMBOL = "plughost_plugin_entry"
#: The ELF section ``PH_PLUGIN_DEFINE`` puts the plugin's note into.
NOTE_SECTION = ".note.plughost"
#: Owner name of the plughost ELF note (without its terminating NUL).
NOTE_OWNER = "plughost"
#: ``PH_NOTE_TYPE``: the note's type word.
NOTE_TYPE = 0x50480001
#: ``sizeof(ph_plugin_header)``: magic u32, abi_major u16, abi_minor u16, size u32, reserved u32.
HEADER_SIZE = 16

# ph_plugin after its header, ABI 1.0: name, version, description (3 data pointers),
# init, shutdown (2 function pointers), middlewares, actions, storages (3 data pointers).
_ENTRY_POINTERS_1_0 = 3 + 2 + 3


def min_entry_size(bits: int) -> int:
    """Return ``sizeof(ph_plugin)`` for ABI 1.0 on a ``bits``-bit (32 or 64) target.

    A plugin whose header ``size`` field is smaller than this was not built from a 1.x
    header (or its entry was written by hand) and cannot be read safely. On 64-bit
    targets this is 80 bytes, on 32-bit targets 48.
    """
    if bits not in (32, 64):
        raise ValueError(f"word size must be 32 or 64 bits, not {bits}")
    return HEADER_SIZE + _ENTRY_POINTERS_1_0 * (bits // 8)
