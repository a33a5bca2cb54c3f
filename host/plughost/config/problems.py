"""Problems found in a configuration, each pinned to the file, line and key that caused it.

Loading never stops at the first mistake: every check adds to a :class:`Problems`
collector, and :class:`ConfigErrors` carries all of them at the end.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from ..errors import ConfigError


@dataclass(frozen=True)
class Where:
    """Where something was written.

    ``file`` is the path as the user gave it (``configs/middlewares.yaml``), ``line`` is
    1-based (0 when unknown) and ``key`` the dotted key path
    (``middlewares.Limiter.config.maxConnections``; list items as ``routes[0].path``).
    """

    file: str
    line: int = 0
    key: str = ""

    def child(self, key: str | int, line: int | None = None) -> "Where":
        """The Where of ``key`` (a map key, or a list index) below this one."""
        if isinstance(key, int):
            path = f"{self.key}[{key}]"
        else:
            path = f"{self.key}.{key}" if self.key else key
        return Where(self.file, self.line if line is None else line, path)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}" if self.key else f"{self.file}:{self.line}"


@dataclass
class ConfigProblem:
    """One thing wrong in a configuration; ``message`` says what and what to do."""

    where: Where
    message: str

    def __str__(self) -> str:
        w = self.where
        if w.key:
            return f"{w.file}:{w.line}: {w.key}: {self.message}"
        return f"{w.file}:{w.line}: {self.message}"


class ConfigErrors(ConfigError):
    """A configuration cannot be used; ``problems`` lists every problem found, in order."""

    def __init__(self, problems: Iterable[ConfigProblem], partial: Any = None) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        #: The configuration as far as it could be read (a GatewayConfig whose entries
        #: with problems are left out), when the problems are in the files themselves.
        self.partial = partial
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the configuration"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))

    def __iter__(self) -> Iterator[ConfigProblem]:
        return iter(self.problems)

    def __len__(self) -> int:
        return len(self.problems)


@dataclass
class Problems:
    """Collects problems while a configuration is read and checked."""

    items: list[ConfigProblem] = field(default_factory=list)

    def add(self, where: Where, message: str) -> None:
        """Records that ``message`` applies to ``where``."""
        self.items.append(ConfigProblem(where, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def raise_if_any(self) -> None:
        """Raises :class:`ConfigErrors` holding every problem collected so far, if any."""
        if self.items:
            raise ConfigErrors(self.items)


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)``-style hint for ``word`` among ``choices``, or ``""``."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f": did you mean '{close[0]}'?" if close else ""


def quoted_list(names: Iterable[str], limit: int = 8) -> str:
    """``'a', 'b', 'c'`` (at most ``limit`` names, then ``...``)."""
    names = list(names)
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (", ..." if len(names) > limit else "")
