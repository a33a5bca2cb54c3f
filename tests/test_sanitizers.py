"""The host's C runtime and every native plugin, built with -fsanitize=address,undefined
(`PLUGHOST_SANITIZE=1 python build_plugins.py`), exercised together with leak checking:
storages and middlewares one by one, then whole chains through the gateway, and the valkey
storage against a real Valkey server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plughost._build_runtime import make_builder
from valkey_support import ValkeyServer

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
# Allocations that live until exit and are not ours: CPython's objects, OpenSSL's tables
# (loaded by the ssl module) and the type objects of cryptography's Rust extension (PyJWT's
# keys in exercise_jwt). Stacks are cut to 4 frames (malloc_context_size) so that a
# frame of the interpreter deep below one of our allocations can never hide it.
LSAN_SUPPRESSIONS = "\n".join(
    [
        "leak:_PyObject_Malloc",
        "leak:_PyMem_RawMalloc",
        "leak:_PyObject_Realloc",
        "leak:PyMem_RawRealloc",
        "leak:_PyMem_RawRealloc",
        "leak:PyMem_Realloc",
        "leak:list_resize",
        "leak:_PyList_AppendTakeRef",
        "leak:resize_compact",
        "leak:_PyBytes_Resize",
        "leak:PyThread_allocate_lock",
        "leak:libcrypto.so",
        "leak:libssl.so",
        "leak:_rust.abi3.so",
        "",
    ]
)


def sanitizer_library(name: str) -> str:
    path = subprocess.run(
        ["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert os.path.isabs(path), f"{name} not found: install gcc's sanitizer runtime"
    return path


@pytest.fixture(scope="module")
def sanitized_plugins() -> Path:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_plugins.py"),
            "--sanitize",
            "--quiet",
            "--plugins-dir",
            str(ROOT / "tests" / "native_plugins"),
        ],
        check=True,
        cwd=ROOT,
    )
    return ROOT / "build" / "plugins-sanitize"


def test_runtime_and_plugins_are_asan_ubsan_clean(tmp_path: Path, sanitized_plugins: Path) -> None:
    builder = make_builder("plughost_runtime_asan", extra_cflags=SANITIZE, extra_ldflags=SANITIZE)
    runtime = builder.compile(tmpdir=str(tmp_path))
    (tmp_path / "lsan.supp").write_text(LSAN_SUPPRESSIONS)
    env = dict(
        os.environ,
        LD_PRELOAD=f"{sanitizer_library('libasan.so')} {sanitizer_library('libubsan.so')}",
        ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86:malloc_context_size=4",
        LSAN_OPTIONS=f"suppressions={tmp_path / 'lsan.supp'}:exitcode=86",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87",
    )
    with ValkeyServer(tmp_path / "valkey") as valkey:  # started without the preload
        assert valkey.proc is not None
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests" / "sanitize" / "exercise.py"),
                runtime,
                str(sanitized_plugins),
                str(valkey.port),
                str(valkey.proc.pid),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "sanitizers: clean" in proc.stdout
    assert "ERROR: AddressSanitizer" not in report and "runtime error:" not in report
