"""Go-style durations (``30s``, ``1m30s``, ``250ms``, ``1.5h``) and byte sizes (``4MB``)."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: a Go duration string (``"1m30s"``, ``"-2h"``, ``"0"``) or a
    number of seconds. Raises ValueError with a sentence saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    sign = 1.0
    body = text
    if body[:1] in "+-" and body:
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None:
            raise ValueError(f"'{text}' is not a duration: write a number with a unit, such as "
                             "'30s', '250ms', '1m30s' or '2h' (units ns, us, ms, s, m, h)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError("an empty text is not a duration: write e.g. '30s'")
    return sign * total


def parse_size(value: str | int | float) -> int:
    """Bytes in ``value``: an int, or a text such as ``"4MB"`` (10^6), ``"10MiB"`` (2^20),
    ``"512KB"``, ``"100B"``. Raises ValueError with a sentence saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != int(value):
            raise ValueError(f"{value} is not a whole number of bytes")
        return int(value)
    text = str(value).strip()
    m = _SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError(f"'{text}' is not a size: write a number of bytes, or a number with "
                         "a unit such as '4MB', '512KB' (powers of 1000) or '10MiB', '64KiB' "
                         "(powers of 1024)")
    number = float(m.group(1)) * _SIZE_UNITS[unit]
    if number != int(number):
        raise ValueError(f"'{text}' is not a whole number of bytes")
    return int(number)
