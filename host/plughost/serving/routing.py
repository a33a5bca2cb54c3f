"""Where a request goes: the route table of a configured gateway.

Built once per configuration by the gateway: every route's chain by method and path, a
dictionary of the static paths for the one-call paths (``static``, which ``_fastpath``
reads), the router for ``:param`` and ``*`` paths, and the chain of the global middlewares
for requests no route takes. Fiber's (and so Seam's) rules: ``caseSensitive`` off, a
trailing slash does not matter unless ``strictRouting``, static segments before parameters
before the wildcard, 405 with ``Allow`` when only the method is wrong.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from ..sdk.exchange import Exchange
from ..sdk.pyelements import PythonAction
from .chain import Chain, Response, json_response, pack
from .router import ANY_METHOD, Match, Router, segments

#: Name prefix of a route parameter's raw form (the runtime's RT_RAW_PARAM).
RAW_PARAM = b"\x01"
#: The 405's Allow value, passed to the unrouted chain as a route parameter.
ALLOW_PARAM = b"plughost.allow"
_NOT_FOUND = b'{"error":"not found","status":404}'
_NOT_ALLOWED = b'{"error":"method not allowed","status":405}'


class RouteEntry(NamedTuple):
    """A static or "/prefix/*" route's entry for one method, as the one-call C paths read
    it (by position: plughost/_fast/fastpath.c)."""

    chain: Chain
    #: The chain's rt_chain (Chain.address).
    address: int
    release_gil: bool
    may_block: bool


class RouteTable:
    """The routes of one configuration."""

    def __init__(self, *, case_sensitive: bool = False, strict_routing: bool = False) -> None:
        self.case_sensitive = case_sensitive
        self.strict_routing = strict_routing
        self.router: Router[Chain] = Router(case_sensitive=case_sensitive)
        #: (method, path folded as configured) -> RouteEntry, for static routes
        self.static: dict[tuple[str, str], RouteEntry] = {}
        #: global middlewares + 404/405, for requests no route takes (None: no globals)
        self.unrouted: Chain | None = None
        #: folded prefix -> {method: RouteEntry}, of the "/prefix/*" routes, for the
        #: one-call paths: the longest prefix of a path is the route the router would find,
        #: as long as no ":param" route exists (then it stays empty).
        self.prefixes: dict[str, dict[str, RouteEntry]] = {}
        self._has_params = False

    def add(self, pattern: str, methods: Sequence[str], chain: Chain) -> None:
        """Adds a route; RouteConflict or ValueError (with a sentence) when it cannot be."""
        self.router.add(pattern, tuple(methods), chain)
        parts = segments(pattern)
        entry = RouteEntry(chain, chain.address, chain.release_gil, chain.may_block)
        if any(part.startswith(":") for part in parts):
            self._has_params = True
            self.prefixes.clear()
        elif parts and parts[-1] == "*" and not self._has_params:
            prefix = "/" + "/".join(parts[:-1]) if len(parts) > 1 else ""
            table = self.prefixes.setdefault(prefix if self.case_sensitive else prefix.lower(), {})
            for method in methods:
                table.setdefault(method, entry)
        if ":" in pattern or "*" in pattern or ANY_METHOD in methods:
            return
        variants = (
            {pattern}
            if self.strict_routing
            else {pattern, pattern.rstrip("/") or "/", (pattern.rstrip("/") or "") + "/"}
        )
        for variant in variants:
            key = variant if self.case_sensitive else variant.lower()
            for method in methods:
                self.static.setdefault((method, key), entry)
            if "GET" in methods and "HEAD" not in methods:
                self.static.setdefault(("HEAD", key), entry)

    def route(
        self, method: str, path: str, raw_path: bytes | None = None
    ) -> tuple[Chain, bytes] | Response:
        """The chain for a request and its packed route parameters, or a ready 404/405.
        ``raw_path`` (the path as the client wrote it) gives the parameters their raw form
        too, for ph_route_param_raw, when it holds percent-escapes."""
        hit = self.static.get((method, path if self.case_sensitive else path.lower()))
        if hit is not None:
            return hit.chain, b""
        match = self.router.match(method, path)
        if (
            match.target is not None
            and self.strict_routing
            and path != "/"
            and path.endswith("/") != match.target.pattern.endswith("/")
        ):
            match = Match(None, {})  # strictRouting: "/users/" is not "/users"
        if match.target is None:
            allow = ", ".join(match.allowed).encode()
            if self.unrouted is not None:
                return self.unrouted, pack([(ALLOW_PARAM, allow)]) if allow else b""
            if allow:
                return _json_response(405, "method not allowed", [(b"allow", allow)])
            return _json_response(404, "not found")
        if not match.params:
            return match.target, b""
        pairs = [(k.encode(), v.encode()) for k, v in match.params.items()]
        if raw_path is not None and b"%" in raw_path:
            # A decoded "%00" ends the value where C reads it; the raw form keeps it all.
            pairs = [(k, v.split(b"\0", 1)[0]) for k, v in pairs]
            pairs += raw_params(match.target.pattern, raw_path)
        return match.target, pack(pairs)

    def inline_route(self, method: str, path: str) -> tuple[Chain, bytes] | None:
        """For the one-call C path (``_fastpath.serve_raw``, when its own tables miss): the
        chain and packed route parameters of a route whose chain runs inline, or None when
        the Python steps must answer (404, 405, no route but the global chain, may-block)."""
        routed = self.route(method, path)
        if type(routed) is Response:
            return None
        chain = routed[0]  # type: ignore[index]
        if chain.may_block or chain is self.unrouted:
            return None
        return routed  # type: ignore[return-value]


def raw_params(pattern: str, raw_path: bytes) -> list[tuple[bytes, bytes]]:
    """The raw forms of a route's parameters, read off the path as the client wrote it:
    the segment at each ``:name``, everything from the ``*`` on (empty segments dropped,
    as the router drops them)."""
    raw = [s for s in raw_path.split(b"/") if s]
    out = []
    for i, part in enumerate(segments(pattern)):
        if part.startswith("*"):
            out.append((RAW_PARAM + b"*", b"/".join(raw[i:])))
            break
        if part.startswith(":") and i < len(raw):
            out.append((RAW_PARAM + part[1:].encode(), raw[i]))
    return out


class Unrouted(PythonAction):
    """The action ending the chain of a request that no route takes: 404, or 405 with the
    Allow header the router found (passed as the route parameter ALLOW_PARAM)."""

    def handle(self, ex: Exchange) -> None:
        allow = ex.route_param(ALLOW_PARAM.decode())
        if allow:
            ex.respond(405, _NOT_ALLOWED, "application/json")
            ex.set_response_header("Allow", allow)
        else:
            ex.respond(404, _NOT_FOUND, "application/json")


def _json_response(
    status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> Response:
    return json_response(
        status, b'{"error":"%s","status":%d}' % (message.encode(), status), extra or ()
    )
