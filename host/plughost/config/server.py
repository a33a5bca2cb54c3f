"""``server:`` — every key of Seam's server page, with Seam's defaults.

Key names are Seam's YAML keys (its ``ServerConfig`` tags: ``address``, ``tls``,
``certFile``, ``bodyLimit``, ``readTimeout``, ``healthCheckLiveRoute``, ``eTag``,
``getOnly`` ...). Defaults are Seam's: ``0.0.0.0:8090``, body limit 4194304 bytes,
concurrency 262144, buffers 4096, timeouts 0 (none), network ``tcp4``, certificate
``/certs/server.cert`` and key ``/certs/server.key`` when ``tls`` is true and none is given.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Callable

import yaml

from .addresses import parse_address
from .durations import MAX_SIZE, parse_duration, parse_size, shown
from .fields import Field, as_bool, as_int, as_str, as_str_list, describe, fields_of, scalar_value
from .model import ServerSpec
from .problems import Problems, Where
from .routes import check_path
from .yamlload import is_null, is_unresolved

DEFAULT_CERT_FILE = "/certs/server.cert"
DEFAULT_KEY_FILE = "/certs/server.key"
NETWORKS = ("tcp", "tcp4", "tcp6")

#: YAML key -> (ServerSpec attribute, kind of value)
SERVER_KEYS: dict[str, tuple[str, str]] = {
    "address": ("address", "address"),
    "tls": ("tls", "bool"),
    "certFile": ("cert_file", "file"),
    "keyFile": ("key_file", "file"),
    "appName": ("app_name", "str"),
    "disableHealthCheck": ("disable_health_check", "bool"),
    "healthCheckLiveRoute": ("health_live_route", "route"),
    "healthCheckReadyRoute": ("health_ready_route", "route"),
    "prefork": ("prefork", "bool"),
    "concurrency": ("concurrency", "posint"),
    "bodyLimit": ("body_limit", "size"),
    "reduceMemoryUsage": ("reduce_memory_usage", "bool"),
    "streamRequestBody": ("stream_request_body", "bool"),
    "compressedFileSuffix": ("compressed_file_suffix", "str"),
    "strictRouting": ("strict_routing", "bool"),
    "caseSensitive": ("case_sensitive", "bool"),
    "unescapePath": ("unescape_path", "bool"),
    "getOnly": ("get_only", "bool"),
    "enableTrustedProxyCheck": ("enable_trusted_proxy_check", "bool"),
    "trustedProxies": ("trusted_proxies", "ip_list"),
    "enableIPValidation": ("enable_ip_validation", "bool"),
    "proxyHeader": ("proxy_header", "str"),
    "readTimeout": ("read_timeout", "duration"),
    "writeTimeout": ("write_timeout", "duration"),
    "idleTimeout": ("idle_timeout", "duration"),
    "serverHeader": ("server_header", "str"),
    "eTag": ("etag", "bool"),
    "disableDefaultDate": ("disable_default_date", "bool"),
    "disableDefaultContentType": ("disable_default_content_type", "bool"),
    "disableHeaderNormalizing": ("disable_header_normalizing", "bool"),
    "disableStartupMessage": ("disable_startup_message", "bool"),
    "enablePrintRoutes": ("enable_print_routes", "bool"),
    "readBufferSize": ("read_buffer_size", "size"),
    "writeBufferSize": ("write_buffer_size", "size"),
    "disableKeepalive": ("disable_keepalive", "bool"),
    "disablePreParseMultipartForm": ("disable_pre_parse_multipart_form", "bool"),
    "enableSplittingOnParsers": ("enable_splitting_on_parsers", "bool"),
    "network": ("network", "network"),
    # plughost's own, where Seam has no key (limits on the request head; readBufferSize
    # bounds the whole head, as in Fiber):
    "uriLimit": ("uri_limit", "posint"),
    "headerCountLimit": ("header_count_limit", "posint"),
    # plughost's: the longest a chain element may run before its worker is replaced.
    "elementTimeout": ("element_timeout", "duration"),
    # plughost's: keep header fields whose names hold "_" (dropped by default, as nginx).
    "allowUnderscoresInHeaders": ("allow_underscores_in_headers", "bool"),
    # plughost's: the admin listener that serves Prometheus metrics (none: no metrics).
    "metricsAddress": ("metrics_address", "listen"),
}


def read_server(
    f: Field | None, base_dir: Path, problems: Problems, default_file: str
) -> ServerSpec:
    """The server settings; ``f`` is the ``server:`` field (None when absent)."""
    spec = ServerSpec(where=f.where if f is not None else Where(default_file, 0, "server"))
    if f is None or is_null(f.value):
        return spec
    if not isinstance(f.value, yaml.MappingNode):
        problems.add(
            f.value_where,
            f"server must be a map of settings such as 'address: "
            f"0.0.0.0:8090', not {describe(f.value)}",
        )
        return spec
    entry = fields_of(f.value, f.where, problems, "server", SERVER_KEYS)
    files: dict[str, str] = {}
    for key, fld in entry.items():
        attr, kind = SERVER_KEYS[key]
        if is_null(fld.value) or is_unresolved(fld.value):
            continue  # as in Seam, an empty value keeps the default (unset ${VAR}: reported)
        spec.key_where[key] = fld.value_where
        value = _READERS[kind](fld, problems, key)
        if value is None:
            continue
        if kind == "address":
            spec.host, spec.port = value
            spec.address = (
                f"[{spec.host}]:{spec.port}" if ":" in spec.host else f"{spec.host}:{spec.port}"
            )
        elif kind == "file":
            files[key] = value
        elif kind == "listen":
            setattr(spec, attr, value)  # (host, port)
        else:
            setattr(spec, attr, value)
    if spec.tls:
        for key, attr, default in (
            ("certFile", "cert_file", DEFAULT_CERT_FILE),
            ("keyFile", "key_file", DEFAULT_KEY_FILE),
        ):
            text = files.get(key)
            where = spec.key_where.get(key) or entry["tls"].value_where
            path = Path(os.path.abspath(base_dir / os.path.expanduser(text or default)))
            if not path.is_file():
                what = "certificate" if key == "certFile" else "private key"
                if text is None:
                    problems.add(
                        where,
                        f"tls is true but {key} is not set and Seam's default "
                        f"{default} does not exist: set {key} to the TLS "
                        f"{what} file",
                    )
                else:
                    why = "does not exist" if not path.exists() else "is not a file"
                    problems.add(
                        where, f"the TLS {what} file {path} {why}: fix {key} or create the file"
                    )
            setattr(spec, attr, path)
    else:
        for key, attr in (("certFile", "cert_file"), ("keyFile", "key_file")):
            if key in files:
                setattr(spec, attr, Path(os.path.abspath(base_dir / files[key])))
    return spec


def _str(f: Field, problems: Problems, key: str) -> str | None:
    return as_str(f, problems, key)


def _bool(f: Field, problems: Problems, key: str) -> bool | None:
    return as_bool(f, problems, key)


def _posint(f: Field, problems: Problems, key: str) -> int | None:
    value = as_int(f, problems, key)
    if value is not None and not 0 < value <= MAX_SIZE:
        problems.add(
            f.value_where,
            f"{key} must be a positive number of at most 2^62, not "
            f"{shown(value, str(f.value.value))}",
        )
        return None
    return value


def _size(f: Field, problems: Problems, key: str) -> int | None:
    raw = scalar_value(f.value)
    if isinstance(raw, yaml.Node) or raw is None or isinstance(raw, bool):
        problems.add(
            f.value_where,
            f"{key} must be a number of bytes or a size such as '4MB', not {describe(f.value)}",
        )
        return None
    try:
        value = parse_size(raw, _written(f))  # type: ignore[arg-type]
    except ValueError as exc:
        problems.add(f.value_where, str(exc))
        return None
    if value <= 0:
        problems.add(
            f.value_where,
            f"{key} must be a positive size, not {shown(raw, _written(f))}"
            ": write e.g. 4194304 or '4MiB'",
        )
        return None
    return value


def _duration(f: Field, problems: Problems, key: str) -> float | None:
    raw = scalar_value(f.value)
    if isinstance(raw, yaml.Node) or raw is None or isinstance(raw, bool):
        problems.add(
            f.value_where, f"{key} must be a duration such as '30s', not {describe(f.value)}"
        )
        return None
    try:
        value = parse_duration(raw, _written(f))  # type: ignore[arg-type]
    except ValueError as exc:
        problems.add(f.value_where, str(exc))
        return None
    if value < 0:
        problems.add(
            f.value_where,
            f"{key} must not be negative ({shown(raw, _written(f))}): "
            "write a duration such as '30s', or 0 for the default",
        )
        return None
    return value


def _written(f: Field) -> str | None:
    """The value of ``f`` as written in the file (for messages)."""
    return str(f.value.value) if isinstance(f.value, yaml.ScalarNode) else None


def _address(f: Field, problems: Problems, key: str) -> tuple[str, int] | None:
    raw = scalar_value(f.value)
    if isinstance(raw, yaml.Node) or raw is None or isinstance(raw, (bool, float)):
        problems.add(
            f.value_where,
            f"{key} must be host:port such as '0.0.0.0:8090', not {describe(f.value)}",
        )
        return None
    try:
        return parse_address(raw)  # type: ignore[arg-type]
    except ValueError as exc:
        problems.add(f.value_where, str(exc))
        return None


def _route(f: Field, problems: Problems, key: str) -> str | None:
    text = as_str(f, problems, key)
    if text is None:
        return None
    _params, errors = check_path(text, owner="server", label=key, wildcard=False, params=False)
    for e in errors:
        problems.add(f.value_where, e)
    return None if errors else text


def _network(f: Field, problems: Problems, key: str) -> str | None:
    text = as_str(f, problems, key)
    if text is not None and text not in NETWORKS:
        problems.add(
            f.value_where,
            f"network '{text}' is not supported: use tcp4 (IPv4, "
            "Seam's default), tcp6 (IPv6) or tcp (both)",
        )
        return None
    return text


def _ip_list(f: Field, problems: Problems, key: str) -> tuple[str, ...] | None:
    out = []
    for text, w in as_str_list(f, problems, key):
        try:
            if "/" in text:
                ipaddress.ip_network(text, strict=False)
            else:
                ipaddress.ip_address(text)
        except ValueError:
            problems.add(
                w,
                f"'{text}' in {key} is neither an IP address nor a CIDR block: "
                "write e.g. '10.0.0.1' or '10.0.0.0/8'",
            )
            continue
        out.append(text)
    return tuple(out)


_READERS: dict[str, Callable[[Field, Problems, str], Any]] = {
    "str": _str,
    "file": _str,
    "bool": _bool,
    "posint": _posint,
    "size": _size,
    "duration": _duration,
    "address": _address,
    "listen": _address,
    "route": _route,
    "network": _network,
    "ip_list": _ip_list,
}
