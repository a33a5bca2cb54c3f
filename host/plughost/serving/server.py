"""``plughost serve``: validate the configuration, then run uvicorn on plughost.asgi:app."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from dataclasses import replace

from ..config import ConfigErrors, GatewayConfig, load_config
from ..config.problems import ConfigProblem, Where
from .listening import address_problem, listen_problems
from ..errors import PlughostError

log = logging.getLogger("plughost.serve")


class ServeError(Exception):
    """The gateway cannot start; ``lines`` say why (one problem a line)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load(config_path: str | None) -> GatewayConfig:
    """The configuration to serve: the given folder/file, else the embedded default."""
    if config_path:
        return load_config(Path(config_path))
    from ..defaults import default_config

    return default_config()


def validate(config_path: str | None) -> GatewayConfig:
    """Loads the configuration and builds the gateway once (plugins, instances, routes),
    then closes it: every problem is reported before a server starts."""
    from .gateway import Gateway

    try:
        config = load(config_path)
        Gateway.from_config(config).close()
    except ConfigErrors as exc:
        raise ServeError(
            [str(p) for p in exc.problems]
            + [
                f"plughost: {len(exc.problems)} problem(s) in the configuration; "
                "nothing was started"
            ]
        ) from None
    except PlughostError as exc:
        raise ServeError([f"plughost: {exc}"]) from None
    return config


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeError([f"plughost: --address {address!r} is not HOST:PORT (port 1-65535)"])
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(
    config_path: str | None,
    *,
    address: str | None = None,
    workers: int | None = None,
    log_level: str = "info",
    metrics_address: str | None = None,
    pid_file: str | None = None,
    direct_path: bool = True,
) -> None:
    """Validates, then serves until interrupted; shuts every plugin down on exit.

    ``workers``: worker processes (None: one per core with ``server.prefork``, else one).
    ``direct_path``: plughost's HTTP protocol answers plain requests on static inline routes
    without the ASGI round trip (plughost.serving.protocol); False serves everything through
    ASGI (under the same limits on the request head). ``metrics_address``: HOST:PORT of the
    admin listener serving Prometheus metrics (None: ``server.metricsAddress``, if set).
    ``pid_file``: where the supervisor writes its process id while it serves (for
    ``plughost reload``)."""
    import uvicorn

    config = validate(config_path)
    server = config.server
    if workers is None:
        workers = (os.cpu_count() or 1) if server.prefork else 1
    host, port = parse_address(address) if address else (server.host, server.port)
    problems = [str(p) for p in listen_problems(server, address=not address)]
    if address:
        taken = address_problem(host, port, Where("--address"))
        if taken is not None:
            problems.insert(0, f"plughost: --address: {taken.message}")
    metrics_at = parse_address(metrics_address) if metrics_address else server.metrics_address
    if metrics_at is not None:
        where = server.key_where.get("metricsAddress", server.where)
        problem = (
            ConfigProblem(
                where,
                f"the metrics listener needs a port of its own, not the gateway's {port}: "
                "pick another port",
            )
            if metrics_at[1] == port
            else address_problem(*metrics_at, where)
        )
        if problem is not None:
            problems.append(
                f"plughost: --metrics-address: {problem.message}"
                if metrics_address
                else str(replace(problem, message=f"metricsAddress {problem.message}"))
            )
    if problems:
        raise ServeError(
            problems
            + [f"plughost: {len(problems)} problem(s) with the listener; nothing was started"]
        )
    from .supervisor import CONFIG_VARIABLE

    if config_path:
        os.environ[CONFIG_VARIABLE] = str(Path(config_path).resolve())
    else:
        os.environ.pop(CONFIG_VARIABLE, None)
    options: dict[str, Any] = {}
    if server.tls:
        options.update(ssl_certfile=str(server.cert_file), ssl_keyfile=str(server.key_file))
    # As Fiber (Seam's server), no Server header unless server.serverHeader names one;
    # the app sends it then. uvicorn's own "server: uvicorn" is never sent.
    options["server_header"] = False
    if server.idle_timeout:
        options["timeout_keep_alive"] = max(1, int(server.idle_timeout))
    if server.disable_keepalive:
        options["timeout_keep_alive"] = 0
    options["limit_concurrency"] = server.concurrency  # over it: 503, as Fiber
    from .protocol import AsgiHttpProtocol, GatewayHttpProtocol
    from .supervisor import WATCH_VARIABLE, Supervisor

    http = GatewayHttpProtocol if direct_path else AsgiHttpProtocol
    # Every worker watches its plugins (plughost.serving.supervisor): a crash or an element
    # over elementTimeout is reported by name and the worker replaced.
    os.environ[WATCH_VARIABLE] = repr(server.element_timeout)
    uv_config = uvicorn.Config(
        "plughost.asgi:app",
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=http,
        lifespan="on",
        log_level=log_level,
        log_config=logging_config(log_level),
        access_log=False,
        proxy_headers=False,  # the client address follows server.proxyHeader only
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        **options,
    )
    sock = bind(
        uv_config, Where("--address") if address else server.key_where.get("address", server.where)
    )
    scheme = "https" if server.tls else "http"
    metrics = None
    if metrics_at is not None:
        from ..metrics.admin import MetricsListener

        metrics = MetricsListener(metrics_at)  # before the workers: they inherit its folder
        try:
            metrics.start()
        except OSError as exc:
            metrics.close()
            sock.close()
            raise ServeError(
                [
                    f"plughost: the metrics listener cannot bind {metrics_at[0]}:{metrics_at[1]}: "
                    f"{exc.strerror or exc}; pick another metricsAddress"
                ]
            ) from None
    print(f"plughost: serving on {scheme}://{host}:{port} with {workers} worker(s)", flush=True)
    if metrics is not None:
        mhost, mport = metrics.address
        print(f"plughost: metrics on http://{mhost}:{mport}/metrics", flush=True)
    if pid_file:
        Path(pid_file).write_text(f"{os.getpid()}\n")
    try:
        Supervisor(
            uv_config,
            [sock],
            grace=GRACEFUL_SHUTDOWN + 5,
            health_timeout=(server.element_timeout or 60.0) + 5,
            on_replaced=metrics.worker_replaced if metrics is not None else None,
        ).run()
    finally:
        sock.close()
        if metrics is not None:
            metrics.close()
        if pid_file:
            with contextlib.suppress(OSError):
                os.unlink(pid_file)


def signal_reload(pid: int | None, pid_file: str | None) -> int:
    """Sends SIGHUP to the ``plughost serve`` named by ``pid`` or ``pid_file``; its pid."""
    if pid is None and not pid_file:
        raise ServeError(["plughost reload: name the server with --pid PID or --pid-file FILE"])
    if pid is None:
        try:
            text = Path(pid_file).read_text().strip()  # type: ignore[arg-type]
        except OSError as exc:
            raise ServeError(
                [
                    f"plughost reload: cannot read {pid_file}: {exc.strerror}: is plughost serve "
                    "running with --pid-file?"
                ]
            ) from None
        if not text.isdigit():
            raise ServeError([f"plughost reload: {pid_file} holds no process id"])
        pid = int(text)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ServeError(
            [f"plughost reload: no process {pid}: is plughost serve running?"]
        ) from None
    except PermissionError:
        raise ServeError(
            [f"plughost reload: not allowed to signal process {pid}: run as its user"]
        ) from None
    return pid


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus plughost's loggers at ``level`` on the same
    handler: what plugins log at info (jwt's and csrf's refusal reasons, say) reaches the log
    at ``--log-level info``; Python's last-resort handler printed warnings and errors only."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["plughost"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


#: Seconds a worker has to finish its requests after SIGTERM (the supervisor kills it 5 s
#: later if it has not ended: a worker stuck in a plugin cannot handle the signal).
GRACEFUL_SHUTDOWN = 10


def bind(uv_config: Any, where: Any) -> Any:
    """The listening socket, or a ServeError saying in one sentence why it cannot be had."""
    try:
        return uv_config.bind_socket()
    except SystemExit:  # uvicorn logged the OSError and exits: say it our way instead
        pass
    problem = address_problem(uv_config.host, uv_config.port, where)
    raise ServeError(
        [
            f"plughost: {problem.where.file}: {problem.message}"
            if problem and problem.where.file == "--address"
            else f"plughost: {problem}"
            if problem
            else f"plughost: cannot listen on {uv_config.host}:{uv_config.port}"
        ]
    )
