"""Option schemas (ABI 1.2): a type declares its options, the host checks every config
against them before create, and reports every problem with file, line and key.

The real plugin tests/native_plugins/optiondemo (built by CMake) declares an option of every
kind and answers with what its create hook read through the host's getters; bad schemas are
real plugin files compiled here; a plugin built against the released 1.1 header (no schema)
is checked as before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from plughost import Gateway, Host
from plughost.config import ConfigErrors
from plughost.config.options import Option, check_options
from plughost.config.problems import Where
from plughost.errors import PluginLoadError
from build_support import ROOT, compile_plugin
from test_abi_compat import build_against

PLUGHOST = str(Path(sys.executable).with_name("plughost"))
ACTION = "plugins.optiondemo.actions.EchoOptionsAction"
VALID = """\
name: demo
count: 4
ratio: 0.25
enabled: false
timeout: 1m
limit: 1MiB
tags: a, b
mode: SAFE
retries: false
headers: {X-One: "1", X-Two: two}
auth: {user: ann, level: admin}
"""


def problems_of(text: str, options: tuple[Option, ...]) -> list[str]:
    """`line: key: message` of every problem of the YAML map ``text``."""
    node = yaml.compose(textwrap.dedent(text))
    found = check_options(node, options, Where("c.yaml", 1, "actions.A.config"), "T")
    return [f"{p.where.line}: {p.where.key}: {p.message}" for p in found]


@pytest.fixture(scope="module")
def demo(test_plugin_dir: Path) -> Path:
    return test_plugin_dir / "optiondemo.so"


@pytest.fixture(scope="module")
def schema(demo: Path) -> tuple[Option, ...]:
    with Host() as host:
        plugin = host.describe_plugin(demo)
        options = plugin.types[ACTION].options
    assert options is not None
    return options


def write_gateway(folder: Path, demo: Path, action_config: str, plugin_config: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "gateway.yaml"
    plugin_block = (
        f"\n    config:\n{textwrap.indent(plugin_config, '      ')}" if plugin_config else ""
    )
    config.write_text(
        f"plugins:\n  - path: {demo}{plugin_block}\n"
        "actions:\n  Echo:\n    use: "
        + ACTION
        + "\n    config:\n"
        + textwrap.indent(textwrap.dedent(action_config), "      ")
        + "routes:\n  Echo:\n    gatewayPath: /echo\n    methods: [GET]\n"
        "    action: Echo\n"
    )
    return config


# --- the schema as the host reads it ----------------------------------------------------------


def test_the_host_reads_every_kind_bound_and_nested_field(schema: tuple[Option, ...]) -> None:
    by_name = {o.name: o for o in schema}
    assert [o.name for o in schema] == [
        "name",
        "count",
        "ratio",
        "enabled",
        "timeout",
        "limit",
        "tags",
        "mode",
        "retries",
        "headers",
        "auth",
    ]
    assert by_name["name"].required and by_name["name"].kind == "string"
    assert (by_name["count"].minimum, by_name["count"].maximum, by_name["count"].default) == (
        1,
        10,
        "3",
    )
    assert by_name["timeout"].kind == "duration" and by_name["timeout"].maximum == 60
    assert by_name["limit"].kind == "size" and by_name["limit"].maximum == 1048576
    assert by_name["tags"].comma_list and by_name["tags"].items == "string"
    assert by_name["mode"].choices == ("fast", "safe")
    assert by_name["retries"].or_false
    assert by_name["headers"].items == "string" and by_name["headers"].fields is None
    auth = by_name["auth"].fields
    assert auth is not None and [f.name for f in auth] == ["user", "level"]
    assert auth[0].required and auth[1].choices == ("user", "admin")


def test_describe_prints_the_schema(demo: Path) -> None:
    out = subprocess.run(
        [PLUGHOST, "describe", str(demo)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert ["count", "int", "3", "[1..10]", "how", "many"] in lines
    assert ["auth.user", "string", "required", "who"] in lines
    assert ["greeting", "string", "hello", "the", "plugin's", "own", "option"] in lines
    doc = json.loads(
        subprocess.run(
            [PLUGHOST, "describe", "--json", str(demo)], capture_output=True, text=True, timeout=60
        ).stdout
    )
    (plugin,) = doc["plugins"]
    assert plugin["options"] == [
        {
            "name": "greeting",
            "kind": "string",
            "required": False,
            "default": "hello",
            "description": "the plugin's own option",
        }
    ]
    (action,) = plugin["types"]
    assert action["id"] == ACTION and action["kind"] == "action"
    mode = next(o for o in action["options"] if o["name"] == "mode")
    assert mode == {
        "name": "mode",
        "kind": "enum",
        "description": "how",
        "required": False,
        "default": "fast",
        "choices": ["fast", "safe"],
    }


# --- the check, value by value -----------------------------------------------------------------


def test_a_valid_config_has_no_problem(schema: tuple[Option, ...]) -> None:
    assert problems_of(VALID, schema) == []
    # What ${VAR} substitution makes of numbers: text that reads as the kind.
    assert (
        problems_of(
            "name: 7\ncount: '4'\nratio: '0.5'\nenabled: 'TRUE'\ntimeout: 30\n"
            "limit: 4096\nretries: 3\n",
            schema,
        )
        == []
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "name: x\ncount: 0",
            "2: actions.A.config.count: 'count' is the number 0: it must be at "
            "least 1 and at most 10",
        ),
        (
            "name: x\ncount: 11",
            "2: actions.A.config.count: 'count' is the number 11: it must be at "
            "least 1 and at most 10",
        ),
        (
            "name: x\ncount: 2.5",
            "2: actions.A.config.count: 'count' must be a whole number, not the number 2.5",
        ),
        (
            "name: x\ncount: many",
            "2: actions.A.config.count: 'count' must be a whole number, not 'many'",
        ),
        (
            "name: x\nratio: 2",
            "2: actions.A.config.ratio: 'ratio' is the number 2: it must be at "
            "least 0 and at most 1",
        ),
        (
            "name: x\nenabled: maybe",
            "2: actions.A.config.enabled: 'enabled' must be true or false, not 'maybe'",
        ),
        (
            "name: x\ntimeout: 2h",
            "2: actions.A.config.timeout: 'timeout' is '2h': it must be at "
            "least 100ms and at most 60s",
        ),
        (
            "name: x\ntimeout: soon",
            "2: actions.A.config.timeout: 'timeout' must be a duration "
            "such as 500ms, 60s or 1h30m, not 'soon'",
        ),
        ("name: x\ntimeout: -1s", "2: actions.A.config.timeout: 'timeout' cannot be negative"),
        (
            "name: x\nlimit: 2MiB",
            "2: actions.A.config.limit: 'limit' is '2MiB': it must be at most 1048576",
        ),
        (
            "name: x\nlimit: [1]",
            "2: actions.A.config.limit: 'limit' must be a size such as 4096, "
            "64KB or 4MiB, not a list",
        ),
        (
            "name: x\ntags: [a, b, c, d]",
            "2: actions.A.config.tags: 'tags' has 4 items: it must have at most 3",
        ),
        (
            "name: x\ntags: [a, [b]]",
            "2: actions.A.config.tags[1]: 'tags' must be a string, not a list",
        ),
        (
            "name: x\ntags: {a: 1}",
            "2: actions.A.config.tags: 'tags' must be a list of strings or "
            "one comma-separated string, not a map",
        ),
        (
            "name: x\nmode: fsat",
            "2: actions.A.config.mode: 'mode' is 'fsat', not one of 'fast' or "
            "'safe': did you mean 'fast'?",
        ),
        (
            "name: x\nretries: true",
            "2: actions.A.config.retries: 'retries' must be a whole number "
            "(or false to turn it off), not the boolean true",
        ),
        (
            "name: x\nheaders: {X-A: [1]}",
            "2: actions.A.config.headers.X-A: 'X-A' must be a string, not a list",
        ),
        (
            "name: x\nheaders: [a]",
            "2: actions.A.config.headers: 'headers' must be a map, not a list",
        ),
        (
            "name: x\nauth: {level: admin}",
            "2: actions.A.config.auth.user: 'user' is missing, and it is required here: who",
        ),
        (
            "name: x\nauth: {user: a, levle: admin}",
            "2: actions.A.config.auth.levle: 'auth' has no key 'levle': did you mean 'level'?",
        ),
        ("name: [x]", "1: actions.A.config.name: 'name' must be a string, not a list"),
        (
            "name: true",
            "1: actions.A.config.name: 'name' must be a string, not the boolean true: "
            "quote it if it is text",
        ),
        ("name:\ncount: 2", "1: actions.A.config.name: 'name' is empty: give it a string"),
        ("name: ''\ncount: 2", "1: actions.A.config.name: 'name' is empty: give it a string"),
        (
            "name: x\nauth: {}",
            "2: actions.A.config.auth.user: 'user' is missing, and it is required here: who",
        ),
        ("count: 2", "1: actions.A.config.name: 'name' is missing, and T needs it: a name"),
        (
            "name: x\ncuont: 2",
            "2: actions.A.config.cuont: T has no option 'cuont': did you mean 'count'?",
        ),
        (
            "name: x\nzzz: 2",
            "2: actions.A.config.zzz: T has no option 'zzz': its options are "
            "'name', 'count', 'ratio', 'enabled', 'timeout', 'limit', 'tags', "
            "'mode', ...",
        ),
        (
            "name: x\nCount: 2\ncount: 3",
            "3: actions.A.config.count: 'count' is written twice "
            "(also as 'Count'): keys match ignoring case, keep one",
        ),
    ],
    ids=lambda v: v if len(v) < 24 else None,
)
def test_each_kind_of_mistake_is_one_sentence_at_its_key(
    schema: tuple[Option, ...], text: str, expected: str
) -> None:
    found = problems_of(text, schema)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_keys_match_ignoring_case_and_null_is_absent(schema: tuple[Option, ...]) -> None:
    assert problems_of("NAME: x\nCOUNT: 2\nTimeOut: 1s\ntags:\n", schema) == []


# --- through the gateway: the getters read what the check let through ---------------------------


def test_create_reads_every_kind_through_the_getters(demo: Path, tmp_path: Path) -> None:
    config = write_gateway(
        tmp_path,
        demo,
        VALID.replace("name: demo", "Name: demo").replace("timeout: 1m", "TIMEOUT: 1m"),
        "GREETING: hi\n",
    )
    with Gateway.from_config(config) as gateway:
        response = gateway.handle("GET", "/echo")
    assert response.status == 200, response.body
    assert response.body.decode().splitlines() == [
        "name=demo",
        "count=4",
        "enabled=0",
        "timeout_ms=60000",
        "limit=1048576",
        "mode=SAFE",
        "user=ann",
        "level=admin",
    ]


def test_every_mistake_of_a_config_is_reported_at_once(demo: Path, tmp_path: Path) -> None:
    config = write_gateway(
        tmp_path,
        demo,
        """\
        count: 0
        ratio: -1
        enabled: maybe
        timeout: 0s
        limit: 2GiB
        tags: [a, b, c, d]
        mode: slow
        retries: lots
        auth: {levle: x}
        """,
        "greting: hi\n",
    )
    with pytest.raises(ConfigErrors) as exc:
        Gateway.from_config(config)
    got = sorted((p.where.line, p.where.key) for p in exc.value.problems)
    assert got == [
        (4, "plugins[0].config.greting"),
        (10, "actions.Echo.config.count"),
        (10, "actions.Echo.config.name"),
        (11, "actions.Echo.config.ratio"),
        (12, "actions.Echo.config.enabled"),
        (13, "actions.Echo.config.timeout"),
        (14, "actions.Echo.config.limit"),
        (15, "actions.Echo.config.tags"),
        (16, "actions.Echo.config.mode"),
        (17, "actions.Echo.config.retries"),
        (18, "actions.Echo.config.auth.levle"),
        (18, "actions.Echo.config.auth.user"),
    ], got
    assert all(p.where.file == str(config) for p in exc.value.problems)
    # check --config prints them all in one run, one line each, no traceback.
    res = subprocess.run(
        [PLUGHOST, "check", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 1
    assert (
        f"{config}:4: plugins[0].config.greting: plugin optiondemo has no option 'greting': "
        "did you mean 'greeting'?" in res.stdout
    )
    assert "12 problem(s)" in res.stdout and "Traceback" not in res.stdout + res.stderr


# --- schemas the host cannot use, and plugins without one ----------------------------------------

BAD_SCHEMA = r"""
#include "plugin.h"
static ph_status create(const ph_config *c, void **s) { (void)c; *s = 0; return PH_OK; }
static ph_next handle(void *self, ph_exchange *ex) { (void)self; (void)ex; return PH_NEXT_ERROR; }
static const char *const none[] = {NULL};
static const ph_option fields[] = {PH_OPTION(PH_OPTION_STRING, "f", NULL, ""), PH_OPTIONS_END};
static const ph_option options[] = {
  %s,
  PH_OPTIONS_END};
static const ph_action_type a = {.size = sizeof a, .id = "plugins.old.actions.A",
                                 .create = create, .handle = handle, .options = options};
static const ph_action_type *const actions[] = {&a, NULL};
PH_PLUGIN_DEFINE(.name = "old", .version = "1.0.0", .actions = actions);
"""


@pytest.mark.parametrize(
    "option, reason",
    [
        (
            'PH_OPTION(PH_OPTION_ENUM, "mode", NULL, "", .choices = none)',
            "option 'mode' is an enum without choices: set .choices",
        ),
        ('PH_OPTION(42, "odd", NULL, "")', "option 'odd' has kind 42, which is no ph_option_kind"),
        (
            'PH_OPTION(PH_OPTION_INT, "a", NULL, ""), PH_OPTION(PH_OPTION_INT, "A", NULL, "")',
            "option 'A' is declared twice (names match ignoring case)",
        ),
        (
            'PH_OPTION(PH_OPTION_STRING, "s", NULL, "", .fields = fields)',
            "option 's' has fields but is a string: only a map has fields",
        ),
        (
            '{.size = 8, .kind = PH_OPTION_INT, .name = "short"}',
            "declares ph_option size 8, less than ABI 1.2's",
        ),
        (
            'PH_OPTION(PH_OPTION_STRING, "two words", NULL, "")',
            "is not a key a configuration can hold",
        ),
    ],
)
def test_a_schema_the_host_cannot_use_refuses_the_plugin(
    tmp_path: Path, option: str, reason: str
) -> None:
    plugin = build_against_current(BAD_SCHEMA % option, tmp_path)
    with Host() as host, pytest.raises(PluginLoadError) as exc:
        host.load_plugin(plugin)
    assert "action type plugins.old.actions.A: " in str(exc.value) and reason in str(exc.value)


def build_against_current(source: str, tmp_path: Path) -> Path:
    return compile_plugin(source, ROOT / "abi", tmp_path, "-Wno-unused-variable")


OLD_WITHOUT_SCHEMA = r"""
#include "plugin.h"
static ph_status create(const ph_config *c, void **s) {
  const char *greeting;
  if (ph_config_string(c, "Greeting", "hi", &greeting) != PH_OK) return PH_ERROR;
  *s = (void *)greeting;
  return PH_OK;
}
static ph_next handle(void *self, ph_exchange *ex) {
  ph_status_set(ex, 200);
  ph_resp_body_set(ex, self, 5);
  return PH_NEXT_RESPOND;
}
static const ph_action_type a = {.size = sizeof a, .id = "plugins.old.actions.Hello",
                                 .create = create, .handle = handle};
static const ph_action_type *const actions[] = {&a, NULL};
PH_PLUGIN_DEFINE(.name = "old", .version = "1.0.0", .actions = actions);
"""


def test_a_1_1_plugin_without_schema_is_checked_as_before(tmp_path: Path) -> None:
    plugin = build_against("1.1", OLD_WITHOUT_SCHEMA, tmp_path)
    with Host() as host:
        loaded = host.load_plugin(plugin)
        assert loaded.abi == (1, 1) and loaded.options is None
        ptype = loaded.types["plugins.old.actions.Hello"]
        assert ptype.options is None
        # No schema: an unknown key is the plugin's business, as in 1.1; a key written in
        # another case than the plugin reads it is found, as the 1.2 host's getters do.
        instance = ptype.create({"greeting": "howdy", "whatever": 1}, name="Hello")
        exchange = host.exchange("GET", "/")
        instance.handle(exchange)
        assert exchange.response_body == b"howdy"


def test_a_bare_on_or_off_for_a_choice_spelt_so_is_caught() -> None:
    """YAML 1.1 reads a bare `off` as the boolean false; for an option whose choices hold
    "off" (helmet's X-DNS-Prefetch-Control) that would silently turn the header off."""
    options = (
        Option("dns", "enum", choices=("on", "off", ""), or_false=True),
        Option("mode", "enum", choices=("yes", "no")),
    )
    assert problems_of("dns: off", options) == [
        "1: actions.A.config.dns: 'dns' is off, which YAML reads as the boolean false: write "
        "'off' in quotes for the value off, or false to turn it off"
    ]
    assert problems_of("mode: yes", options) == [
        "1: actions.A.config.mode: 'mode' is yes, which YAML reads as the boolean true: write "
        "'yes' in quotes for the value yes"
    ]
    assert problems_of("dns: 'off'\nmode: 'no'", options) == []
    assert problems_of("dns: false", options) == []


# --- every first-party type -------------------------------------------------------------------


def _first_party_types(plugin_dir: Path) -> list[tuple[str, str]]:
    with Host() as host:
        return [
            (so.name, type_id)
            for so in sorted(plugin_dir.glob("*.so"))
            for type_id in host.describe_plugin(so).types
        ]


def _mistakes(options: tuple[Option, ...]) -> list[tuple[str, object, str]]:
    """(option, bad value, words of the problem): a wrong kind and, where an option has a
    lower bound, a value under it."""
    out: list[tuple[str, object, str]] = []
    wrong = next(
        (o for o in options if o.kind in ("int", "float", "bool", "duration", "size", "enum")), None
    )
    if wrong is not None:
        out.append((wrong.name, ["a", "list"], f"'{wrong.name}' must be "))
    low = next((o for o in options if o.minimum is not None and o.kind in ("int", "float")), None)
    if low is not None:
        out.append((low.name, low.minimum - 1, f"'{low.name}' is the number "))
    return out


@pytest.mark.parametrize(
    "so, type_id",
    [
        pytest.param(so, tid, id=tid.rsplit(".", 1)[-1])
        for so, tid in _first_party_types(
            Path(__file__).resolve().parent.parent / "build" / "plugins"
        )
    ],
)
def test_every_first_party_type_refuses_misspelt_wrong_and_out_of_range_options(
    plugin_dir: Path, tmp_path: Path, so: str, type_id: str
) -> None:
    with Host() as host:
        plugin = host.describe_plugin(plugin_dir / so)
        options = plugin.types[type_id].options
    assert options is not None, f"{type_id} declares no options"
    cases: list[tuple[str, object, str]] = []
    if options:
        first = options[0].name
        cases.append((first + "x", "1", f"has no option '{first}x': did you mean '{first}'?"))
    else:
        cases.append(("anything", "1", "has no option 'anything': it takes no options"))
    cases += _mistakes(options)
    kind = type_id.split(".")[2]
    for key, value, words in cases:
        config = tmp_path / f"{key}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "plugins": [{"path": str(plugin_dir / so)}],
                    f"{kind}": {"X": {"use": type_id, "config": {key: value}}},
                },
                sort_keys=False,
            )
        )
        with pytest.raises(ConfigErrors) as exc:
            Gateway.from_config(config)
        mine = [p for p in exc.value.problems if p.where.key == f"{kind}.X.config.{key}"]
        assert mine, "\n".join(map(str, exc.value.problems))
        assert words in mine[0].message and mine[0].where.line == 7, str(mine[0])
