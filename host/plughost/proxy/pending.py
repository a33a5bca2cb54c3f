"""A chain run waiting on its upstream: one object that owns the exchange until it is done.

When a route's action asks for an upstream request, the C runner stops after the request
phase and leaves the exchange (the request as the chain changed it, and the action's
directive) for the host. :class:`PendingUpstream` holds it from then on. Exactly one of its
endings frees the exchange: the response phase run on the upstream's answer (:meth:`finish`,
or :meth:`finish_head` when the body streams), a C call that finishes it itself
(:meth:`take`), or giving up (:meth:`discard`, when the client left or something failed).
Whoever has the object has the exchange; nobody else frees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..serving.chain import Response, Upstream, UpstreamAnswer, log_failure

if TYPE_CHECKING:
    from ..serving.chain import Chain, Runner

Header = tuple[bytes, bytes]


class PendingUpstream:
    """The exchange of ``chain`` (at ``address``), whose response phase covers ``passed``
    middlewares, waiting for an upstream answer."""

    __slots__ = ("runner", "chain", "passed", "_address")

    def __init__(self, runner: "Runner", chain: "Chain", address: int, passed: int) -> None:
        self.runner = runner
        self.chain = chain
        self.passed = passed
        self._address: int | None = address
        runner.held.enter()  # its gateway is not destroyed while this holds an exchange

    def _release(self) -> None:
        self._address = None
        self.runner.held.leave()

    @property
    def open(self) -> bool:
        """Whether this object still owns its exchange."""
        return self._address is not None

    @property
    def address(self) -> int:
        """The exchange's address, for a C call that reads it (this object keeps it)."""
        if self._address is None:
            self._exchange()  # raises
        return self._address  # type: ignore[return-value]

    def _exchange(self) -> Any:
        if self._address is None:
            raise RuntimeError(
                f"the exchange of route {self.chain.route_name!r} was already finished or discarded"
            )
        return self.runner.exchange(self._address)

    def directive(self) -> Upstream:
        """The upstream request the action asked for (the exchange stays pending)."""
        return self.runner.upstream_of(self._exchange())

    def finish(self, answer: UpstreamAnswer) -> Response:
        """Runs the response phase on the upstream's answer (or on the host's 502/504 when
        ``answer.error`` says why there is none) and frees the exchange."""
        out = self.runner.finish_upstream(self.chain, self._exchange(), self.passed, answer)
        self._release()
        response, failure = self.runner.read(out)
        if failure is not None:
            log_failure(self.chain, failure)
        return response

    def finish_head(self, status: int, headers: Sequence[Header]) -> tuple[bool, Response]:
        """For a streamed answer: the response phase on the upstream's status and headers
        alone, then frees the exchange. (True, the head to send before the upstream's
        body), or (False, the whole response a hook set instead); see Runner.finish_head."""
        streaming, response, failure = self.runner.finish_head(
            self.chain, self._exchange(), self.passed, status, headers
        )
        self._release()
        if failure is not None:
            log_failure(self.chain, failure)
        return streaming, response

    def take(self) -> int:
        """Hands the exchange to a C call that finishes and frees it (the direct path's
        ``_fastpath.finish_raw`` and ``finish_head``); returns its address."""
        address = self._address
        if address is None:
            self._exchange()  # raises
        self._release()  # (the C call that takes it runs right away, before any reload)
        return address  # type: ignore[return-value]

    def discard(self) -> None:
        """Gives up: frees the exchange without a response phase. Does nothing when it is
        no longer this object's to free."""
        if self._address is not None:
            address = self._address
            self._release()
            self.runner.discard(self.runner.exchange(address))

    def __repr__(self) -> str:
        state = "open" if self.open else "done"
        return f"<PendingUpstream route={self.chain.route_name!r} {state}>"
