"""Whether a configuration's listener can be had on this host: its address and its TLS files.

The configuration layer checks what the files say; this checks what the host allows, the
way ``plughost serve`` will use it: that the address can be bound (not in use, an address of
this host, a port this user may take) and that the TLS certificate and key load as a pair.
``plughost check --config`` and ``plughost serve`` report the same sentences.
"""

from __future__ import annotations

import errno
import socket
import ssl

from ..config.model import ServerSpec
from ..config.problems import ConfigProblem, Where


def _where(server: ServerSpec, key: str) -> Where:
    where = server.key_where.get(key)
    if where is not None:
        return Where(where.file, where.line, f"server.{key}")
    return Where(server.where.file, server.where.line, f"server.{key}")


def address_problem(host: str, port: int, where: Where) -> ConfigProblem | None:
    """Why ``host:port`` cannot be listened on, or None when it can (bound, then let go)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return None
    except OSError as exc:
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        reason = {
            errno.EADDRINUSE: "is in use by another process (a gateway already serving on it, "
            "say): stop it or choose another port",
            errno.EADDRNOTAVAIL: "is not an address of this host: use one of its addresses, "
            "127.0.0.1 or 0.0.0.0",
            errno.EACCES: "needs privileges this user lacks (ports below 1024): choose a port "
            "from 1024 up",
        }.get(exc.errno or 0, f"cannot be listened on ({exc.strerror})")
        return ConfigProblem(where, f"{shown} {reason}")
    finally:
        probe.close()


def tls_problem(server: ServerSpec) -> ConfigProblem | None:
    """Why the TLS certificate and key cannot serve, or None (also when TLS is off or the
    files are missing: the configuration layer reported that)."""
    if not server.tls or server.cert_file is None or server.key_file is None:
        return None
    if not server.cert_file.is_file() or not server.key_file.is_file():
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(server.cert_file), str(server.key_file))
    except ssl.SSLError as exc:
        detail = exc.reason or exc.strerror or str(exc)
        return ConfigProblem(
            _where(server, "certFile"),
            (
                f"{server.cert_file} and {server.key_file} are not a usable TLS certificate and "
                f"private key ({str(detail).lower().replace('_', ' ')}): give PEM files of one "
                "certificate and its unencrypted key"
            ),
        )
    except OSError as exc:
        return ConfigProblem(
            _where(server, "certFile"),
            (
                f"{server.cert_file} or {server.key_file} cannot be read ({exc.strerror}): check "
                "the files' permissions"
            ),
        )
    return None


def listen_problems(server: ServerSpec, *, address: bool = True) -> list[ConfigProblem]:
    """Every reason ``server``'s listener cannot be had here (``address``: False when the
    command line gives another address, checked by the caller)."""
    problems = []
    if address:
        problem = address_problem(server.host, server.port, _where(server, "address"))
        if problem is not None:
            problems.append(problem)
    tls = tls_problem(server)
    if tls is not None:
        problems.append(tls)
    return problems
