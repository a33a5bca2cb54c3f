"""Route matching: static segments, ``:param`` segments and a trailing ``*`` wildcard.

Static segments win over parameters, parameters over the wildcard (as in Fiber, which
Seam uses). A path that matches with a method the route does not allow is a 405 with the
allowed methods, not a 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

ANY_METHOD = "*"


@dataclass
class _Node(Generic[T]):
    static: dict[str, "_Node[T]"] = field(default_factory=dict)
    params: dict[str, "_Node[T]"] = field(default_factory=dict)  # ":name" children
    wildcard: dict[str, T] | None = None  # method -> target, for "*"
    targets: dict[str, T] = field(default_factory=dict)  # method -> target


@dataclass
class Match(Generic[T]):
    target: T | None
    params: dict[str, str]
    allowed: tuple[str, ...] = ()  # set when the path matched but not the method


class RouteConflict(ValueError):
    """Two routes claim the same method and path pattern."""


def segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s != ""]


class Router(Generic[T]):
    """Maps (method, path) to a target (a chain) and its path parameters.

    ``case_sensitive=False`` (Seam's and Fiber's default) matches static segments without
    regard to case; parameters keep the case the client sent.
    """

    def __init__(self, *, case_sensitive: bool = False) -> None:
        self._root: _Node[T] = _Node()
        self._exact: dict[str, dict[str, T]] = {}  # static paths, fast path
        self.case_sensitive = case_sensitive

    def _fold(self, text: str) -> str:
        return text if self.case_sensitive else text.lower()

    def add(self, pattern: str, methods: tuple[str, ...], target: T) -> None:
        node = self._root
        parts = [p if p.startswith((":", "*")) else self._fold(p) for p in segments(pattern)]
        static = True
        for i, part in enumerate(parts):
            if part == "*" or part.startswith("*"):
                if i != len(parts) - 1:
                    raise ValueError(f"'*' must be the last segment of {pattern}")
                node.wildcard = node.wildcard if node.wildcard is not None else {}
                self._put(node.wildcard, methods, target, pattern)
                return
            if part.startswith(":"):
                static = False
                node = node.params.setdefault(part[1:], _Node())
            else:
                node = node.static.setdefault(part, _Node())
        self._put(node.targets, methods, target, pattern)
        if static:
            key = "/" + "/".join(parts)
            self._exact.setdefault(key, {})
            self._put(self._exact[key], methods, target, pattern)

    @staticmethod
    def _put(table: dict[str, T], methods: tuple[str, ...], target: T, pattern: str) -> None:
        for method in methods or (ANY_METHOD,):
            if method in table:
                raise RouteConflict(f"two routes answer {method} {pattern}")
            table[method] = target

    def match(self, method: str, path: str) -> Match[T]:
        key = path if path == "/" else path.rstrip("/")
        exact = self._exact.get(self._fold(key))
        if exact is not None:
            target = (
                exact.get(method)
                or exact.get(ANY_METHOD)
                or (exact.get("GET") if method == "HEAD" else None)
            )
            if target is not None:
                return Match(target, {})
        params: dict[str, str] = {}
        original = segments(path)
        table = self._find(self._root, [self._fold(p) for p in original], 0, params, original)
        if table is None:
            return Match(None, {})
        target = table.get(method) or table.get(ANY_METHOD)
        if target is None and method == "HEAD":
            target = table.get("GET")
        if target is None:
            allowed = set(table)
            if "GET" in allowed:
                allowed.add("HEAD")
            return Match(None, {}, tuple(sorted(allowed)))
        return Match(target, params)

    def _find(
        self, node: _Node[T], parts: list[str], i: int, params: dict[str, str], original: list[str]
    ) -> dict[str, T] | None:
        if i == len(parts):
            if node.targets:
                return node.targets
            if node.wildcard is not None:  # "/files/*" also matches "/files"
                params["*"] = ""
                return node.wildcard
            return None
        child = node.static.get(parts[i])
        if child is not None:
            found = self._find(child, parts, i + 1, params, original)
            if found is not None:
                return found
        for name, child in node.params.items():
            params[name] = original[i]
            found = self._find(child, parts, i + 1, params, original)
            if found is not None:
                return found
            params.pop(name, None)
        if node.wildcard is not None:
            params["*"] = "/".join(original[i:])
            return node.wildcard
        return None
