"""plughost's ASGI application.

``plughost.asgi:app`` builds its gateway at lifespan start-up from the configuration named
by $PLUGHOST_CONFIG (the embedded default when unset), so it runs under any ASGI server:
``uvicorn plughost.asgi:app``, gunicorn with uvicorn workers, granian. ``plughost serve``
starts it with uvicorn, uvloop and httptools.

It adapts ASGI to the gateway's request pipeline (plughost.serving.pipeline): a scope
becomes a Request, the body is read from ``receive`` when the chain needs it whole or
streamed to the upstream when it does not, and a response becomes ASGI messages.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from ..proxy.client import UpstreamPool
from ..proxy.direct import DirectUpstreamRequest
from ..proxy.pending import PendingUpstream
from ..proxy.relay import AsgiUpstreamRelay
from ..proxy.upstream import UpstreamClient
from .chain import Response
from ..config import ConfigErrors
from .gateway import Gateway
from .pipeline import (
    too_large,
    BodyTooLarge,
    ClientGone,
    Pipeline,
    Request,
    ServingRules,
    body_framing,
    drop_connection_options,
    for_method,
)
from .. import metrics
from . import logflood
from .generations import RETIRE_BOUND, Generation
from .supervisor import CONFIG_VARIABLE, under_supervisor, watch_worker
from .websocket import WebSocketProxy

log = logging.getLogger("plughost.asgi")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


#: Worker threads that run may-block chains (see GatewayApp).
BLOCKING_THREADS = max(16, 4 * (os.cpu_count() or 1))


class GatewayApp:
    """An ASGI application serving a :class:`Gateway`.

    ``factory`` builds the gateway (called at lifespan start-up, or on the first request
    when the server runs without lifespan).
    """

    def __init__(
        self, factory: Callable[[], Gateway] | None = None, *, gateway: Gateway | None = None
    ) -> None:
        self._factory = factory
        self.gateway = gateway
        self._client = UpstreamClient()
        self._websockets = WebSocketProxy(self._client.session)
        self._building = asyncio.Lock()
        # Worker threads for chains holding a may-block element (a storage on the network):
        # they spend their time in C with the GIL released, waiting on I/O, so there are
        # more of them than cores.
        self._blocking = ThreadPoolExecutor(
            max_workers=BLOCKING_THREADS, thread_name_prefix="plughost-blocking"
        )
        #: The gateway's pipeline, once the gateway is built.
        self.pipeline: Pipeline | None = None
        #: The generation serving new requests (plughost.serving.generations), and its number:
        #: plughost's protocol takes the pipeline anew when the number changes.
        self.current: Generation | None = None
        #: Plain requests on static routes take the pipeline's one C call for an ASGI scope
        #: (False: every request takes the general path; for comparing the two).
        self.scope_fast_path = True
        self.generation = 0
        self._retiring: set[asyncio.Task[Any]] = set()  # reloads and retirements under way
        self._old: set[Generation] = set()  # replaced generations not destroyed yet
        self._metrics = False  # copy the runtime's counters into metrics (plughost serve)
        if gateway is not None:
            self._configure(gateway)

    def _configure(self, gateway: Gateway) -> Generation:
        """Makes ``gateway`` the generation that serves new requests."""
        pipeline = gateway.pipeline
        pipeline.upstream = self._client
        pipeline.executor = self._blocking
        generation = Generation(gateway, self.generation + 1)
        if self._metrics:
            from ..metrics.gateway_stats import GatewayStats

            generation.stats = GatewayStats(gateway).start()
        self.gateway = gateway
        self.pipeline = pipeline
        self.current = generation
        self.generation = generation.number
        return generation

    async def reload(self) -> bool:
        """Builds the configuration again as a new generation beside the serving one (its
        plugins loaded anew, a replaced plugin file as its new version) and serves new
        requests with it; the old one is destroyed once nothing runs on it (see
        plughost.serving.generations). False, with every problem logged, when the new
        configuration cannot be built: the serving generation stays."""
        assert self._factory is not None
        async with self._building:
            try:
                gateway = await asyncio.to_thread(self._factory)
            except ConfigErrors as exc:
                for problem in exc.problems:
                    log.error("plughost: reload: %s", problem)
                log.error(
                    "plughost: reload refused (%d problem(s)); generation %d keeps serving",
                    len(exc.problems),
                    self.generation,
                )
                return False
            except Exception as exc:
                log.error(
                    "plughost: reload refused (%s); generation %d keeps serving",
                    exc,
                    self.generation,
                )
                return False
            old = self.current
            self._configure(gateway)
            if old is not None:
                self._old.add(old)
            log.info(
                "plughost: worker [%d] serves generation %d of the configuration",
                os.getpid(),
                self.generation,
            )
            if old is not None:
                old.retiring_since = time.monotonic()
                task = asyncio.create_task(self._retire(old))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            return True

    async def _retire(self, old: Generation) -> None:
        """Destroys ``old`` once nothing runs on it, or after RETIRE_BOUND seconds."""
        while not old.idle and not old.overdue():
            await asyncio.sleep(0.05)
        if not old.idle:
            log.warning(
                "plughost: generation %d still had %d request(s) or session(s) after %g s; "
                "destroyed anyway",
                old.number,
                old.serving.count + old.gateway.runner.held.count,
                RETIRE_BOUND,
            )
        if old.stats is not None:
            old.stats.stop()  # its last counts, while its chains exist
            old.stats = None
        self._old.discard(old)
        await asyncio.to_thread(old.gateway.close)
        log.info("plughost: generation %d destroyed", old.number)

    def raw_handler(self) -> Callable[..., Any] | None:
        """For plughost's HTTP protocol (plughost.serving.protocol): the pipeline's one C call
        for a plain request (``Pipeline.plain``); None until the gateway is built, or when a
        serving rule needs the Python steps."""
        return self.pipeline.plain if self.pipeline is not None else None

    def serving_rules(self) -> ServingRules | None:
        """For plughost's HTTP protocol: the serving rules (the limits on the request head
        among them); None until the gateway is built."""
        return self.pipeline.rules if self.pipeline is not None else None

    @property
    def upstream_pool(self) -> UpstreamPool:
        """The pooled upstream connections of this process."""
        return self._client.pool

    def direct_upstream(
        self, protocol: Any, pending: PendingUpstream, head: bool, keep_alive: bool
    ) -> DirectUpstreamRequest:
        """For plughost's HTTP protocol: the request that performs the upstream request a
        plain request left pending and answers on ``protocol``'s transport; the caller
        starts it."""
        assert self.pipeline is not None
        return DirectUpstreamRequest(protocol, self.pipeline.native, pending, head, keep_alive)

    async def _ensure_gateway(self) -> Gateway:
        if self.gateway is None:
            async with self._building:
                if self.gateway is None:
                    assert self._factory is not None
                    gateway = await asyncio.to_thread(self._factory)
                    self._configure(gateway)
        assert self.gateway is not None
        return self.gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            return await self._lifespan(receive, send)
        if self.current is None:
            await self._ensure_gateway()
        generation = self.current
        assert generation is not None
        generation.serving.enter()  # not destroyed by a reload while this runs on it
        try:
            pipeline = generation.gateway.pipeline
            if kind == "http":
                if pipeline.scope is not None and self.scope_fast_path:
                    # A plain request on a static or wildcard inline route, in one C call
                    # (None: the pipeline's Python steps take it).
                    out = pipeline.scope(scope)
                    if out is not None:
                        if type(out) is tuple:  # the two ASGI messages of the answer
                            await send(out[0])
                            await send(out[1])
                            return
                        return await self._upstream(pipeline, out, scope, receive, send)
                await self._http(pipeline, scope, receive, send)
            elif kind == "websocket":
                await self._websocket(pipeline, scope, receive, send)
        finally:
            generation.serving.leave()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._ensure_gateway()
                except Exception as exc:  # the problems were printed by the loader's caller
                    log.error("plughost could not start: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                assert self.gateway is not None and self.current is not None
                watch_worker(self.gateway.runtime)  # under plughost serve's supervisor
                if metrics.enabled():  # plughost serve with a metrics listener
                    from ..metrics.gateway_stats import GatewayStats

                    from ..metrics.upstreams import shared_upstream_stats

                    from ..metrics import host_answers

                    host_answers.enable()
                    self._metrics = True
                    self.current.stats = GatewayStats(self.gateway).start()
                    self._client.pool.stats = shared_upstream_stats(self.current.stats.bounds)
                if under_supervisor():  # SIGHUP reloads (plughost serve forwards its own)
                    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_hup)
                logflood.install()  # repeated failures: logged once, then summarised
                # Everything built at start-up lives until shutdown: keep it out of the
                # collector's way, so requests pay only for their own short-lived objects.
                gc.collect()
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _on_hup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def aclose(self) -> None:
        """Graceful shutdown: closes the upstream pool, destroys every instance of every
        generation, shuts the plugins down."""
        await self._client.close()
        self._blocking.shutdown(wait=True)  # no chain still running when instances go
        for task in list(self._retiring):
            task.cancel()
        generations = [self.current, *self._old]
        self._old.clear()
        for generation in generations:
            if generation is None:
                continue
            if generation.stats is not None:
                generation.stats.stop()  # a last copy of the counters, while the chains exist
                generation.stats = None
            generation.gateway.close()

    def _request(self, pipeline: Pipeline, scope: Scope) -> Request:
        """The pipeline's view of an ASGI scope."""
        client = scope.get("client")
        headers = drop_connection_options(scope["headers"])
        peer = client[0].encode() if client else b""
        return Request(
            scope.get("method", "GET"),
            scope["path"],
            headers,
            scope.get("query_string", b""),
            pipeline.rules.client_address(headers, peer),
            scope.get("raw_path"),
        )

    async def _http(self, pipeline: Pipeline, scope: Scope, receive: Receive, send: Send) -> None:
        if pipeline.rules.server_headers:
            send = _with_headers(send, pipeline.rules.server_headers)
        request = self._request(pipeline, scope)

        try:
            outcome = await pipeline.start(request, functools.partial(_read_body, receive))
        except ClientGone:
            return
        except Exception:
            outcome = pipeline.failed(request)
        if type(outcome) is Response:
            return await _send(send, for_method(outcome, request.method))
        await self._upstream(pipeline, outcome, scope, receive, send)  # type: ignore[arg-type]

    async def _upstream(
        self,
        pipeline: Pipeline,
        pending: PendingUpstream,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Step 4 on the ASGI path: streamed both ways when the chain streams bodies
        (plughost.proxy.relay), else held whole."""
        method = scope["method"]
        if pending.chain.streams:
            has_body, length = body_framing(scope["headers"])
            relay = AsgiUpstreamRelay(self._client.pool, pending, method == "HEAD")
            try:
                return await relay.run(receive, send, length, has_body, pipeline.rules.body_limit)
            except BodyTooLarge:
                return await _send(send, too_large(method))
        try:
            response = await pipeline.complete(pending)
        except Exception:
            response = pipeline.failed(self._request(pipeline, scope))
        await _send(send, for_method(response, method))

    async def _websocket(
        self, pipeline: Pipeline, scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            await self._websockets.serve(
                pipeline, self._request(pipeline, scope), scope, receive, send
            )
        except Exception:
            log.exception("unexpected error in the WebSocket session of %s", scope["path"])
            raise


def _with_headers(send: Send, extra: tuple[tuple[bytes, bytes], ...]) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *extra]}
        await send(message)

    return wrapped


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body: BodyTooLarge when it is larger than ``limit``, ClientGone when
    the client disconnects before it is complete (a truncated body is never passed on as if
    it were whole)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        if chunk:
            chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _send(send: Send, response: Response) -> None:
    # Every response carries content-length already: the C runtime adds it to chain
    # responses, json_response to the host's own.
    await send(
        {"type": "http.response.start", "status": response.status, "headers": response.headers}
    )
    await send({"type": "http.response.body", "body": response.body})


def _from_environment() -> Gateway:
    source = os.environ.get(CONFIG_VARIABLE)
    if source:
        return Gateway.from_config(source)
    from ..defaults import default_config

    return Gateway.from_config(default_config())


app = GatewayApp(_from_environment)
