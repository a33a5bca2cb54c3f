"""setuptools shim: compiles the host's C parts (see pyproject.toml).

- plughost._runtime: the host's side of the plugin ABI and the chain runner, through
  cffi's API mode;
- plughost._fastpath: the ASGI hot path, a small CPython extension calling the runtime.
"""

from setuptools import Extension, setup

fastpath = Extension(
    "plughost._fastpath",
    sources=["host/plughost/_fast/fastpath.c"],
    include_dirs=["host/plughost/include", "host/plughost/_runtime"],  # plugin.h: in sdists too
    extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                        "-Wno-cast-function-type"],
)

setup(cffi_modules=["host/plughost/_build_runtime.py:ffibuilder"], ext_modules=[fastpath])
