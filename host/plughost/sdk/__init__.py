"""For plugin authors: Python middlewares and actions, the Python view of an exchange, and
``plughost new``'s project scaffold (the C side is ``abi/plugin.h`` and the CMake package)."""
