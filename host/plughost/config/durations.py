"""Go-style durations (``30s``, ``1m30s``, ``250ms``, ``1.5h``) and byte sizes (``4MB``).

Both refuse what no setting can mean: infinity and NaN (YAML's ``.inf`` and ``.nan``), and
values beyond :data:`MAX_DURATION` (a year) or :data:`MAX_SIZE` (2^62 bytes), which are
typos and would overflow the integers and timers they end up in.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation, localcontext

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

#: The longest duration accepted, in seconds: a year (8760h).
MAX_DURATION = 365 * 24 * 3600.0
#: The largest size accepted, in bytes: 2^62 (4 EiB), far beyond any real limit and within
#: a signed 64-bit integer.
MAX_SIZE = 2**62


def shown(value: object, written: str | None = None) -> str:
    """``value`` as the user wrote it, quoted, for messages: ``written`` when given (the
    YAML text), YAML's spelling of infinity and NaN, and a long number cut short."""
    if written is None:
        if isinstance(value, float) and not math.isfinite(value):
            written = ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
        elif isinstance(value, int) and value.bit_length() > 128:
            written = f"a {'negative ' if value < 0 else ''}{_digits(value)}-digit number"
            return written  # unquoted: not what was written, but what it is
        else:
            written = str(value)
    written = written.strip()
    if len(written) > 24:
        return f"'{written[:12]}…{written[-6:]}' ({len(written)} characters)"
    return f"'{written}'"


def _digits(value: int) -> int:
    """The number of decimal digits of ``value`` (without converting it to text, which
    Python refuses for more than 4300 digits)."""
    n = abs(value)
    digits = max(1, int(n.bit_length() * 0.30102999566398120))
    while n >= 10**digits:
        digits += 1
    return digits


def parse_duration(value: str | int | float, written: str | None = None) -> float:
    """Seconds in ``value``: a Go duration string (``"1m30s"``, ``"-2h"``, ``"0"``) or a
    number of seconds. Raises ValueError with a sentence saying what is accepted: also for
    infinity, NaN and anything longer than :data:`MAX_DURATION` (either sign).
    ``written`` is the text as the user wrote it, quoted in messages."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        if abs(value) > MAX_DURATION:
            raise _too_long(shown(value, written))
        return float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            what = "not a number" if math.isnan(value) else "infinity"
            raise ValueError(
                f"{shown(value, written)} ({what}) is not a duration: write a "
                "number of seconds or a text such as '30s' or '1m30s'"
            )
        if abs(value) > MAX_DURATION:
            raise _too_long(shown(value, written))
        return value
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
            raise ValueError(
                f"{shown(text, written)} is not a duration: write a number with "
                "a unit, such as '30s', '250ms', '1m30s' or '2h' (units ns, us, "
                "ms, s, m, h)"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError("an empty text is not a duration: write e.g. '30s'")
    if not total <= MAX_DURATION:  # also catches inf from a 400-digit number
        raise _too_long(shown(text, written))
    return sign * total


def _too_long(what: str) -> ValueError:
    return ValueError(
        f"{what} is out of range: a duration is at most a year (8760h); write e.g. '30s' or '2h'"
    )


def parse_size(value: str | int | float, written: str | None = None) -> int:
    """Bytes in ``value``: an int, or a text such as ``"4MB"`` (10^6), ``"10MiB"`` (2^20),
    ``"512KB"``, ``"100B"``. Raises ValueError with a sentence saying what is accepted: also
    for infinity, NaN and anything beyond :data:`MAX_SIZE` (either sign). ``written`` is the
    text as the user wrote it, quoted in messages."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, float):
        if not math.isfinite(value):
            what = "not a number" if math.isnan(value) else "infinity"
            raise ValueError(
                f"{shown(value, written)} ({what}) is not a size: write a number "
                "of bytes such as 4194304, or a size such as '4MiB'"
            )
        if value != int(value):
            raise ValueError(f"{shown(value, written)} is not a whole number of bytes")
        value = int(value)
    if isinstance(value, int):
        if abs(value) > MAX_SIZE:
            raise _too_large(shown(value, written))
        return value
    text = str(value).strip()
    m = _SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError(
            f"{shown(text, written)} is not a size: write a number of bytes, or "
            "a number with a unit such as '4MB', '512KB' (powers of 1000) or "
            "'10MiB', '64KiB' (powers of 1024)"
        )
    try:
        with localcontext() as ctx:
            ctx.prec = len(m.group(1)) + 20  # exact, so '0.1KB' is 100 bytes
            number = Decimal(m.group(1)) * _SIZE_UNITS[unit]
    except InvalidOperation:  # pragma: no cover - the pattern only lets digits through
        raise ValueError(f"{shown(text, written)} is not a size") from None
    if number > MAX_SIZE:
        raise _too_large(shown(text, written))
    if number != number.to_integral_value():
        raise ValueError(f"{shown(text, written)} is not a whole number of bytes")
    return int(number)


def _too_large(what: str) -> ValueError:
    return ValueError(
        f"{what} is out of range: a size is at most 2^62 bytes (4 EiB); write "
        "e.g. 4194304 or '4MiB'"
    )
