"""setuptools shim: compiles the host's C runtime through cffi (see pyproject.toml)."""

from setuptools import setup

setup(cffi_modules=["host/plughost/_build_runtime.py:ffibuilder"])
