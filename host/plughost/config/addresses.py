"""Listening addresses as Seam writes them: ``host:port``, ``[::1]:port``, ``:port``."""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def parse_address(value: str | int) -> tuple[str, int]:
    """(host, port) from ``"0.0.0.0:8090"``, ``"[::1]:8090"``, ``":8090"`` (all IPv4
    interfaces, as in Go) or a bare port ``8090``. Raises ValueError with a sentence."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an address: write host:port, e.g. '0.0.0.0:8090'")
    if isinstance(value, int):
        return "0.0.0.0", _port(str(value), str(value))
    text = str(value).strip()
    if text.isdigit():
        return "0.0.0.0", _port(text, text)
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"'{text}' is not an address: write an IPv6 address as '[::1]:8090'")
        host, port = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{host}' in '{text}' is not an IPv6 address") from None
        return host, _port(port, text)
    if text.count(":") != 1:
        if text.count(":") > 1:
            raise ValueError(
                f"'{text}' is not an address: write an IPv6 address in brackets, as '[::1]:8090'"
            )
        raise ValueError(f"'{text}' is not an address: write host:port, e.g. '0.0.0.0:8090'")
    host, port = text.split(":")
    if host and not _valid_host(host):
        raise ValueError(f"'{host}' in '{text}' is neither an IP address nor a host name")
    return host or "0.0.0.0", _port(port, text)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host):
        return False  # looks like an IPv4 address but is not one (e.g. 300.1.1.1)
    return bool(_HOSTNAME.fullmatch(host))


def _port(text: str, whole: str) -> int:
    if not text.isdigit():
        raise ValueError(
            f"'{whole}' has no valid port: write host:port with a port number from 1 to 65535"
        )
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} in '{whole}' is out of range: use a port from 1 to 65535")
    return port
