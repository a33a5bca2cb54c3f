"""setuptools shim: compiles the host's C parts and bundles the first-party plugins.

- plughost._runtime: the host's side of the plugin ABI and the chain runner, through
  cffi's API mode;
- plughost._fastpath: the ASGI hot path, a small CPython extension calling the runtime;
- plughost/plugins/*.so: every plugin of native_plugins/, built by CMake (build_plugins.py)
  while the wheel is built, so that ``pip install plughost`` serves its default
  configuration. An editable install (``pip install -e .``, what ``./dev`` does) leaves them
  out: there build_plugins.py keeps build/plugins/ current, and plughost finds them there.

The sdist carries what that build needs (MANIFEST.in), including the hiredis C sources the
valkey plugin compiles in (tools/fetch_hiredis.py), so a wheel builds from it offline.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent

fastpath = Extension(
    "plughost._fastpath",
    sources=["host/plughost/_fast/fastpath.c"],
    include_dirs=["host/plughost/include", "host/plughost/_runtime"],  # plugin.h: in sdists too
    extra_compile_args=[
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Wno-missing-field-initializers",
        "-Wno-cast-function-type",
    ],
)


class BuildPyWithPlugins(build_py):
    """build_py, then every native plugin built with CMake into the package's plugins/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        out = Path(self.build_lib) / "plughost" / "plugins"
        build_temp = Path(self.get_finalized_command("build").build_temp)
        command = [
            sys.executable,
            str(ROOT / "build_plugins.py"),
            "--quiet",
            "--build-type",
            "Release",
            "--build-dir",
            str(build_temp / "plugins-cmake"),
            "--out",
            str(out),
        ]
        self.announce("building the bundled plugins: " + " ".join(command), level=2)
        result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PLUGHOST_SANITIZE": "0"})
        if result.returncode != 0:
            raise SystemExit(
                "plughost: building the bundled plugins failed (see CMake's output above); "
                "the wheel needs CMake >= 3.16, a C compiler and the development files of "
                "OpenSSL, jansson, libcurl and libxcrypt (Debian: cmake libssl-dev "
                "libjansson-dev libcurl4-openssl-dev libcrypt-dev)"
            )
        (out / ".build_plugins-out.json").unlink(missing_ok=True)  # build_plugins.py's own record


class SdistWithHiredis(sdist):
    """sdist, plus the hiredis sources in third_party/ (fetched first if need be)."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        spec = importlib.util.spec_from_file_location(
            "fetch_hiredis", ROOT / "tools" / "fetch_hiredis.py"
        )
        assert spec is not None and spec.loader is not None
        fetch = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fetch)
        try:
            sources = fetch.ensure()
        except fetch.FetchError as exc:
            raise SystemExit(f"plughost: the sdist needs the hiredis sources: {exc}") from None
        shutil.copytree(sources, Path(base_dir) / "third_party" / sources.name)


setup(
    cffi_modules=["host/plughost/_build_runtime.py:ffibuilder"],
    ext_modules=[fastpath],
    cmdclass={"build_py": BuildPyWithPlugins, "sdist": SdistWithHiredis},
)
