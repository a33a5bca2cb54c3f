"""The tests' real Valkey server starts on a free port, answers, survives a kill/restart on
the same port, and is stopped by PID."""

from __future__ import annotations

from pathlib import Path

import pytest

from valkey_support import ValkeyServer, command


def test_real_valkey_server_lifecycle(tmp_path: Path) -> None:
    with ValkeyServer(tmp_path / "valkey") as server:
        assert command(server.port, b"SET", b"k", b"v") == b"+OK\r\n"
        assert command(server.port, b"GET", b"k") == b"$1\r\nv\r\n"
        assert command(server.port, b"INCR", b"n") == b":1\r\n"
        server.kill()
        with pytest.raises(OSError):
            command(server.port, b"PING", timeout=1)
        server.start()  # the same port again: what a fault test needs
        assert command(server.port, b"PING") == b"+PONG\r\n"
        assert command(server.port, b"GET", b"k") == b"$-1\r\n"  # persistence is off
        pid = server.proc.pid if server.proc else 0
    assert server.proc is not None and server.proc.poll() is not None  # stopped, by PID
    assert pid > 0
