"""The logger's time-zone code (native_plugins/logger/lg_tz.c) on its own, through a small C
driver (tests/tzcheck/tzcheck.c) built here with the system compiler, ASan and UBSan.

Real zones from /usr/share/zoneinfo (Debian package tzdata) are compared with Python's
zoneinfo reading the same files: at every transition the file lists, one second before and
after it, and at every transition of far-future years, which only the file's POSIX TZ footer
rule describes. Crafted zone files hold POSIX rules alone; those are compared with the C
library's own TZ parser (glibc's, in a child process: TZ is process-wide). Malformed files
must be refused with a reason, and zone names that could leave the zone folder rejected.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOGGER = ROOT / "native_plugins" / "logger"
DRIVER = ROOT / "tests" / "tzcheck" / "tzcheck.c"
ZONEINFO = Path("/usr/share/zoneinfo")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]

# Northern and southern DST, 30- and 45-minute offsets, negative DST (Dublin), DST of two
# hours (Troll), rule times of 24h and over (Santiago, Jerusalem) or negative (Nuuk), the
# date line (Apia, Kiritimati), Ramadan transitions until 2087 (Casablanca).
ZONES = [
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Dublin",
    "America/New_York",
    "America/St_Johns",
    "America/Sao_Paulo",
    "America/Santiago",
    "America/Nuuk",
    "America/Havana",
    "America/Asuncion",
    "Australia/Lord_Howe",
    "Australia/Adelaide",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tehran",
    "Asia/Jerusalem",
    "Asia/Gaza",
    "Pacific/Chatham",
    "Pacific/Auckland",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Africa/Casablanca",
    "Africa/Cairo",
    "Antarctica/Troll",
]
# Years whose transitions come from the footer rule only (2038: past 32-bit time; 2100: a
# century that is not a leap year; 2400: one that is).
FUTURE_YEARS = [2038, 2041, 2100, 2400, 2401, 5000]

# POSIX TZ rules, each alone in a crafted TZif file.
RULES = [
    "UTC0",
    "EST5EDT,M3.2.0,M11.1.0",
    "<+0330>-3:30",
    "IST-1GMT0,M10.5.0,M3.5.0/1",  # negative DST: the "daylight" offset is the smaller one
    "CET-1CEST,M3.5.0,M10.5.0/3",
    "<-03>3<-02>,M10.1.0/0,M3.3.0/0",
    "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
    "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
    "IST-2IDT,M3.4.4/26,M10.5.0",
    "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",
    "<+00>0<+02>-2,M3.5.0/1,M10.5.0/3",
    "AAA3BBB,J60/2,J300/2",  # Julian days: Feb 29 never counts, J60 is always March 1
    "JJJ4KKK,J59/2,J60/2",  # J59 is Feb 28: DST for a day, or two in a leap year
    "CCC-5DDD,59/2,300/2",  # zero-based days: 59 is Feb 29 in a leap year
    "EEE-10FFF,M12.1.0,M1.3.0",  # DST across New Year, northern-style dates
    "<-0330>3:30<-0230>2:30,M4.5.0/2:30:45,M9.5.1/167",
    "GGG+11:45:30HHH+10:45:30,M1.1.0/0,M12.5.6/-167",
]
RULE_YEARS = [1970, 1972, 2024, 2025, 2100, 2400, 3001]


# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def tzcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")  # gcc: the sanitizers' runtime comes with it
    assert cc, "no C compiler: install gcc"
    out = tmp_path_factory.mktemp("tzcheck") / "tzcheck"
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g", *SANITIZE]
    cmd += ["-I", str(LOGGER), str(DRIVER), str(LOGGER / "lg_tz.c"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def ask(tzcheck: Path, commands: list[str]) -> list[str]:
    """The driver's answer to each command, one line each."""
    proc = subprocess.run(
        [str(tzcheck)],
        input="".join(f"{c}\n" for c in commands),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1:exitcode=86"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(commands), proc.stdout[-2000:]
    return lines


def offsets(tzcheck: Path, path: Path, times: list[int]) -> list[tuple[int, str]]:
    """(offset, abbreviation) at each time in the zone file at path, from lg_tz."""
    first, *rest = ask(tzcheck, [f"load {path}", *(f"at {t}" for t in times)])
    assert first == "ok", (path, first)
    return [(int(o), a) for o, a in (line.split(" ", 1) for line in rest)]


def zoneinfo_at(zone: ZoneInfo, t: int) -> tuple[int, str]:
    local = (EPOCH + timedelta(seconds=t)).astimezone(zone)
    offset = local.utcoffset()
    assert offset is not None
    return int(offset.total_seconds()), str(local.tzname())


def file_transitions(data: bytes) -> list[int]:
    """The transition times a TZif file lists (its 64-bit part when it has one): only where
    to look; the answers come from zoneinfo."""
    counts = struct.unpack(">6l", data[20:44])
    isut, isstd, leap, timecnt, typecnt, charcnt = counts
    if data[4:5] < b"2":
        return list(struct.unpack(f">{timecnt}l", data[44 : 44 + 4 * timecnt]))
    start = 44 + timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut
    timecnt = struct.unpack(">6l", data[start + 20 : start + 44])[3]
    body = start + 44
    return list(struct.unpack(f">{timecnt}q", data[body : body + 8 * timecnt]))


def year_start(year: int) -> int:
    return int((datetime(year, 1, 1, tzinfo=timezone.utc) - EPOCH).total_seconds())


def changes(at: Callable[[int], object], lo: int, hi: int, step: int) -> list[int]:
    """The instants in [lo, hi) where at(t) changes, found by sampling every step seconds
    and bisecting to the second."""
    found = []
    prev_t, prev = lo, at(lo)
    for t in range(lo + step, hi + 1, step):
        cur = at(t)
        if cur != prev:
            a, b = prev_t, t  # at(a) == prev != at(b)
            while b - a > 1:
                mid = (a + b) // 2
                if at(mid) == prev:
                    a = mid
                else:
                    b = mid
            found.append(b)
        prev_t, prev = t, cur
    return found


def around(instants: list[int]) -> list[int]:
    return sorted({t + d for t in instants for d in (-1, 0, 1)})


def tzif_block(
    tsize: int,
    transitions: list[tuple[int, int]],
    types: list[tuple[int, int, int]],
    chars: bytes,
    version: bytes = b"2",
    counts: tuple[int, ...] | None = None,
) -> bytes:
    """One TZif header and data block: transitions (time, type), types (utoff, isdst,
    abbreviation index); counts overrides the header's six counts."""
    real = (0, 0, 0, len(transitions), len(types), len(chars))
    header = b"TZif" + version + b"\0" * 15 + struct.pack(">6l", *(counts or real))
    fmt = ">q" if tsize == 8 else ">l"
    body = b"".join(struct.pack(fmt, t) for t, _ in transitions)
    body += bytes(i for _, i in transitions)
    body += b"".join(struct.pack(">lBB", *ty) for ty in types)
    return header + body + chars


def tzif(
    transitions: list[tuple[int, int]],
    types: list[tuple[int, int, int]],
    chars: bytes,
    footer: str | None = "",
    version: bytes = b"2",
) -> bytes:
    """A whole TZif file: version 1 (one 32-bit block), or 2+ (an empty 32-bit block, the
    64-bit block, then the footer)."""
    if version == b"\0":
        return tzif_block(4, transitions, types, chars, version)
    v1 = tzif_block(4, [], [(0, 0, 0)], b"UTC\0", version)
    data = v1 + tzif_block(8, transitions, types, chars, version)
    return data if footer is None else data + b"\n" + footer.encode() + b"\n"


def rule_zone(footer: str) -> bytes:
    """A zone whose only description is the footer rule."""
    return tzif([], [(0, 0, 0)], b"UTC\0", footer)


# ------------------------------------------------------------------------- real zones


Expected = list[tuple[int, tuple[int, str]]]  # (time, (offset, abbreviation)) in one zone


def differences(
    tzcheck: Path, zones: list[tuple[str, Path, Expected]], reference: str
) -> list[str]:
    """Each zone file (label, path, expected answers) loaded in the driver and asked at each
    time: the answers that differ from the reference's, described."""
    commands = []
    for _, path, expected in zones:
        commands.append(f"load {path}")
        commands += [f"at {t}" for t, _ in expected]
    answers = iter(ask(tzcheck, commands))
    wrong = []
    for label, path, expected in zones:
        assert next(answers) == "ok", (label, path)
        for t, want in expected:
            offset, abbr = next(answers).split(" ", 1)
            if (int(offset), abbr) != want:
                when = (EPOCH + timedelta(seconds=t)).isoformat()
                wrong.append(f"{label} at {t} ({when}): lg_tz {offset} {abbr}, {reference} {want}")
    return wrong


def test_real_zones_match_zoneinfo(tzcheck: Path) -> None:
    zones = []
    for name in ZONES:
        path = ZONEINFO / name
        assert path.is_file(), f"{path} is missing: install Debian's tzdata (./dev setup does)"
        with path.open("rb") as f:
            zone = ZoneInfo.from_file(f, key=name)
        listed = [
            t for t in file_transitions(path.read_bytes()) if year_start(2) < t < year_start(9998)
        ]
        future = []
        for year in FUTURE_YEARS:
            future += changes(
                partial(zoneinfo_at, zone), year_start(year), year_start(year + 1), 86400
            )
        assert name == "UTC" or listed or future, f"{name}: no transition found"
        fixed = [year_start(y) for y in (2, 1800, 1900, 1969, 1970, 2000, 2040, 9998)]
        fixed += [-(2**31), 2**31 - 1, 2**31, 0, 1_000_000_000]
        times = around(listed + future) + fixed
        zones.append((name, path, [(t, zoneinfo_at(zone, t)) for t in times]))
    assert sum(len(expected) for _, _, expected in zones) > 10000  # the sweep found them
    wrong = differences(tzcheck, zones, "zoneinfo")
    assert not wrong, f"{len(wrong)} differences:\n" + "\n".join(wrong[:40])


def test_far_future_comes_from_the_footer_rule(tzcheck: Path) -> None:
    """Past the last listed transition, DST still switches: the rule, not the last type."""
    path = ZONEINFO / "America/New_York"
    summer, winter = year_start(3000) + 200 * 86400, year_start(3000) + 20 * 86400
    assert max(file_transitions(path.read_bytes())) < winter
    assert offsets(tzcheck, path, [summer, winter]) == [(-4 * 3600, "EDT"), (-5 * 3600, "EST")]


# ------------------------------------------------------------------------ POSIX rules


# Run in a child process (TZ is process-wide): for each rule, samples every `step` seconds of
# each year, each switch bisected to the second, and the C library's answer at the samples
# and one second around each switch.
GLIBC_SCRIPT = """
import json, os, sys, time
req = json.loads(sys.stdin.read())
out = {}
for rule in req["rules"]:
    os.environ["TZ"] = rule
    time.tzset()
    def at(t):
        lt = time.localtime(t)
        return [lt.tm_gmtoff, lt.tm_zone]
    points, switches = set(), []
    for lo, hi in req["years"]:
        prev_t, prev = lo, at(lo)
        points.add(lo)
        for t in range(lo + req["step"], hi, req["step"]):
            points.add(t)
            cur = at(t)
            if cur != prev:
                a, b = prev_t, t
                while b - a > 1:
                    mid = (a + b) // 2
                    a, b = (mid, b) if at(mid) == prev else (a, mid)
                switches.append(b)
            prev_t, prev = t, cur
    points |= {s + d for s in switches for d in (-1, 0, 1)}
    out[rule] = {"switches": switches, "points": [[t, *at(t)] for t in sorted(points)]}
print(json.dumps(out))
"""


def test_posix_rules_match_the_c_library(tzcheck: Path, tmp_path: Path) -> None:
    request = {
        "rules": RULES,
        "years": [(year_start(y), year_start(y + 1)) for y in RULE_YEARS],
        "step": 5 * 3600 + 59 * 60,
    }
    proc = subprocess.run(
        [sys.executable, "-c", GLIBC_SCRIPT],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    reference = json.loads(proc.stdout)
    # the sweep finds what it should: two switches a year, or none without DST
    assert len(reference["EST5EDT,M3.2.0,M11.1.0"]["switches"]) == 2 * len(RULE_YEARS)
    assert not reference["<+0330>-3:30"]["switches"]
    zones = []
    for i, rule in enumerate(RULES):
        path = tmp_path / f"rule{i}"
        path.write_bytes(rule_zone(rule))
        points = reference[rule]["points"]
        zones.append((repr(rule), path, [(t, (offset, abbr)) for t, offset, abbr in points]))
    wrong = differences(tzcheck, zones, "C library")
    assert not wrong, f"{len(wrong)} differences:\n" + "\n".join(wrong[:40])


# -------------------------------------------------------------------- crafted files


def test_version_1_files_and_the_64_bit_part(tzcheck: Path, tmp_path: Path) -> None:
    types = [(3600, 0, 0), (7200, 1, 4)]
    chars = b"AAA\0BBB\0"
    v1 = tmp_path / "v1"
    v1.write_bytes(tzif([(1000, 1), (2000, 0)], types, chars, version=b"\0"))
    assert offsets(tzcheck, v1, [-(2**40), 999, 1000, 1999, 2000, 2**40]) == [
        (3600, "AAA"),
        (3600, "AAA"),
        (7200, "BBB"),
        (7200, "BBB"),
        (3600, "AAA"),
        (3600, "AAA"),
    ]
    # version 2+: the 64-bit part is read (its times beyond 32 bits), not the 32-bit one
    for version in (b"2", b"3", b"4"):
        v2 = tmp_path / f"v{version.decode()}"
        v2.write_bytes(tzif([(-(2**35), 1), (2**35, 0)], types, chars, footer=""))
        assert offsets(tzcheck, v2, [-(2**35) - 1, -(2**35), 0, 2**35 - 1, 2**35]) == [
            (3600, "AAA"),
            (7200, "BBB"),
            (7200, "BBB"),
            (7200, "BBB"),
            (3600, "AAA"),
        ]
    # without a footer rule, the last transition's type goes on
    nofooter = tmp_path / "nofooter"
    nofooter.write_bytes(tzif([(0, 1)], types, chars, footer=None))
    assert offsets(tzcheck, nofooter, [-1, 0, 2**50]) == [
        (3600, "AAA"),
        (7200, "BBB"),
        (7200, "BBB"),
    ]


NOT_TZIF = "refused is not a valid TZif zone file"
BAD_RULE = "refused has a TZ rule this logger cannot read"
GOOD_TYPES = [(3600, 0, 0)]


def bad_files() -> dict[str, tuple[bytes, str]]:
    """Malformed zone files and the answer each must get."""
    good = tzif([(0, 0)], GOOD_TYPES, b"AAA\0", "AAA-1")
    huge = 0x7FFFFFFF
    second = good.index(b"TZif", 4)
    files = {
        "empty": (b"", NOT_TZIF),
        "short header": (good[:43], NOT_TZIF),
        "wrong magic": (b"TZjf" + good[4:], NOT_TZIF),
        "second header's magic": (good[:second] + b"TZjf" + good[second + 4 :], NOT_TZIF),
        "huge transition count": (
            tzif_block(8, [], GOOD_TYPES, b"AAA\0", b"\0", counts=(0, 0, 0, huge, 1, 4)),
            NOT_TZIF,
        ),
        "huge counts everywhere": (
            tzif_block(4, [], GOOD_TYPES, b"AAA\0", b"2", counts=(huge,) * 6) + good,
            NOT_TZIF,
        ),
        "negative count": (
            tzif_block(4, [], GOOD_TYPES, b"AAA\0", b"\0", counts=(0, 0, 0, 0, 1, -4)),
            NOT_TZIF,
        ),
        "count over the limit": (
            tzif_block(4, [], GOOD_TYPES, b"AAA\0" + b"\0" * 100_001, b"\0", (0,) * 5 + (100_001,)),
            NOT_TZIF,
        ),
        "counts past the end": (
            tzif_block(4, [(0, 0)], GOOD_TYPES, b"AAA\0", b"\0", counts=(0, 0, 0, 2, 1, 4)),
            NOT_TZIF,
        ),
        "no type": (tzif_block(4, [], [], b"AAA\0", b"\0"), NOT_TZIF),
        "no abbreviation": (tzif_block(4, [], GOOD_TYPES, b"", b"\0"), NOT_TZIF),
        "type index out of range": (
            tzif_block(4, [(0, 1)], GOOD_TYPES, b"AAA\0", b"\0"),
            NOT_TZIF,
        ),
        "transitions not ascending": (
            tzif_block(4, [(10, 0), (10, 0)], GOOD_TYPES, b"AAA\0", b"\0"),
            NOT_TZIF,
        ),
        "abbreviation index out of range": (
            tzif_block(4, [], [(3600, 0, 4)], b"AAA\0", b"\0"),
            NOT_TZIF,
        ),
        "offset out of range": (
            tzif_block(4, [], [(93600, 0, 0)], b"AAA\0", b"\0"),
            NOT_TZIF,
        ),
        "v1 part longer than the file": (
            tzif_block(4, [], GOOD_TYPES, b"AAA\0", b"2", counts=(0, 0, 0, 1000, 1, 4)) + good,
            NOT_TZIF,
        ),
    }
    for footer in (
        "EST5EDT",  # DST without its rule
        "EE5",  # an abbreviation of fewer than 3 letters
        "<EST5",  # an unclosed <...>
        "EST",  # no offset
        "EST168",  # more than 167 hours
        "EST5EDT,M13.1.0,M11.1.0",  # month 13
        "EST5EDT,M3.6.0,M11.1.0",  # week 6
        "EST5EDT,M3.2.7,M11.1.0",  # weekday 7
        "EST5EDT,J0,J100",  # Julian day 0
        "EST5EDT,0,366",  # day 366
        "EST5EDT,M3.2.0",  # no end
        "EST5EDT,M3.2.0,M11.1.0/",  # a time without digits
        "EST5EDT,M3.2.0,M11.1.0 ",  # something after the rule
        "EST5:60",  # 60 minutes
    ):
        files[f"footer {footer!r}"] = (tzif([], GOOD_TYPES, b"AAA\0", footer), BAD_RULE)
    return files


def test_bad_files_are_refused_with_a_reason(tzcheck: Path, tmp_path: Path) -> None:
    files = bad_files()
    commands = []
    for i, (data, _) in enumerate(files.values()):
        path = tmp_path / f"bad{i}"
        path.write_bytes(data)
        commands.append(f"load {path}")
    commands.append(f"load {tmp_path / 'missing'}")
    commands.append(f"load {tmp_path}")  # a folder
    answers = ask(tzcheck, commands)
    want = [reason for _, reason in files.values()]
    want += ["refused is not a zone this system knows", NOT_TZIF]
    wrong = [
        f"{name}: {got!r}, not {exp!r}"
        for name, got, exp in zip([*files, "missing", "folder"], answers, want)
        if got != exp
    ]
    assert not wrong, "\n".join(wrong)


def test_truncated_files_are_refused(tzcheck: Path, tmp_path: Path) -> None:
    """A real zone file cut anywhere before its footer: every cut is refused."""
    data = (ZONEINFO / "Europe/Berlin").read_bytes()
    footer_at = data.rindex(b"\n", 0, len(data) - 1)
    cuts = sorted(set(range(0, 200)) | set(range(200, footer_at, 7)) | {footer_at - 1})
    commands = []
    for cut in cuts:
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        commands.append(f"load {path}")
    commands.append(f"load {ZONEINFO / 'Europe/Berlin'}")
    answers = ask(tzcheck, commands)
    assert answers[-1] == "ok"
    accepted = [cut for cut, answer in zip(cuts, answers) if answer != NOT_TZIF]
    assert not accepted, f"files cut at {accepted[:10]} bytes were not refused"


@pytest.mark.parametrize(
    "name, valid",
    [
        ("Europe/Paris", True),
        ("America/Argentina/Buenos_Aires", True),
        ("Etc/GMT+5", True),
        ("Etc/GMT-14", True),
        ("UTC", True),
        ("../etc/passwd", False),
        ("Europe/../../etc/passwd", False),
        ("/etc/passwd", False),
        (".hidden", False),
        ("Europe/Paris ", False),
        ("Europe\\Paris", False),
        ("Europe/Par:is", False),
        ("", False),
        ("A" * 200, True),
        ("A" * 201, False),
    ],
)
def test_zone_names_stay_in_the_zone_folder(tzcheck: Path, name: str, valid: bool) -> None:
    assert ask(tzcheck, [f"name {name}"]) == ["valid" if valid else "invalid"]
