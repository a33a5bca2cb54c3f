"""The typed configuration getters of the host table (what plugins call in create), driven
directly through the compiled runtime, on trees built from real YAML text."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import yaml

import plughost
from plughost.loading.cconfig import ConfigTree

YAML = """\
middlewares:
  Limiter:
    use: plugins.limiter.middlewares.LimiterMiddleware
    config:
      maxConnections: 10
      ratio: 0.5
      name: limiter
      port: "6379"
      enabled: yes
      flag: "false"
      bad: ten
      expiration: 1h30m
      short: 250ms
      fraction: 1.5s
      seconds: 60
      negative: -5s
      nonsense: 5 parsecs
      empty:
      headers:
        X-User: user_id
        X-Role: role
      list: [a, b, 3]
      infinite: .inf
      notanumber: .nan
      huge: "1e300"
"""


@pytest.fixture
def tree(host: plughost.Host) -> Iterator[ConfigTree]:
    root = yaml.compose(YAML)
    middlewares = dict((k.value, v) for k, v in root.value)["middlewares"]
    limiter = dict((k.value, v) for k, v in middlewares.value)["Limiter"]
    config = dict((k.value, v) for k, v in limiter.value)["config"]
    t = ConfigTree(
        host.runtime,
        host.ptr,
        config,
        label="test",
        path="middlewares.Limiter.config",
        source="middlewares.yaml",
    )
    yield t
    t.close()


def get(host: plughost.Host, tree: ConfigTree, kind: str, key: str, default: Any) -> Any:
    ffi, lib = host.runtime.ffi, host.runtime.lib
    ctype = {
        "int": "int64_t *",
        "float": "double *",
        "bool": "int *",
        "duration_ms": "int64_t *",
        "string": "const char **",
    }[kind]
    out = ffi.new(ctype)
    if kind == "string":
        default = default.encode() if default is not None else ffi.NULL
    status = getattr(lib, f"rt_api_config_{kind}")(tree.ptr, key.encode(), default, out)
    if status != lib.PH_OK:
        return ("error", tree.error)
    value = out[0]
    return host.runtime.string(value) if kind == "string" else value


@pytest.mark.parametrize(
    "kind, key, default, expected",
    [
        ("int", "maxConnections", 0, 10),
        ("int", "port", 0, 6379),  # a quoted number (or ${VAR}) still reads as an int
        ("int", "missing", 7, 7),
        ("int", "empty", 7, 7),  # a key with no value gets the default
        ("float", "ratio", 0.0, 0.5),
        ("float", "maxConnections", 0.0, 10.0),
        ("string", "name", None, "limiter"),
        ("string", "maxConnections", None, "10"),
        ("string", "missing", "dflt", "dflt"),
        ("bool", "enabled", 0, 1),
        ("bool", "flag", 1, 0),
        ("duration_ms", "expiration", 0, 5_400_000),
        ("duration_ms", "short", 0, 250),
        ("duration_ms", "fraction", 0, 1500),
        ("duration_ms", "seconds", 0, 60_000),
        ("duration_ms", "missing", 42, 42),
    ],
)
def test_typed_getters(
    host: plughost.Host, tree: ConfigTree, kind: str, key: str, default: Any, expected: Any
) -> None:
    assert get(host, tree, kind, key, default) == expected


@pytest.mark.parametrize(
    "kind, key, message",
    [
        (
            "int",
            "bad",
            "middlewares.yaml:11: middlewares.Limiter.config.bad: expected an integer, "
            "got the string 'ten'",
        ),
        (
            "int",
            "ratio",
            "middlewares.yaml:6: middlewares.Limiter.config.ratio: expected an integer, got 0.5",
        ),
        (
            "bool",
            "name",
            "middlewares.yaml:7: middlewares.Limiter.config.name: expected true or false",
        ),
        (
            "string",
            "headers",
            "middlewares.yaml:19: middlewares.Limiter.config.headers: expected a string, got a map",
        ),
        (
            "duration_ms",
            "negative",
            "middlewares.yaml:16: middlewares.Limiter.config.negative: a duration cannot be negative",
        ),
        (
            "duration_ms",
            "nonsense",
            "middlewares.yaml:17: middlewares.Limiter.config.nonsense: expected a duration such as 500ms",
        ),
        (
            "duration_ms",
            "infinite",
            "middlewares.yaml:23: middlewares.Limiter.config.infinite: an infinite or huge number is not a duration",
        ),
        (
            "duration_ms",
            "notanumber",
            "middlewares.yaml:24: middlewares.Limiter.config.notanumber: NaN is not a duration",
        ),
        (
            "duration_ms",
            "huge",
            "middlewares.yaml:25: middlewares.Limiter.config.huge: expected a duration such as 500ms",
        ),
    ],
)
def test_wrong_types_name_file_line_and_key(
    host: plughost.Host, tree: ConfigTree, kind: str, key: str, message: str
) -> None:
    default = None if kind == "string" else 0
    result = get(host, tree, kind, key, default)
    assert result[0] == "error"
    assert result[1].startswith(message), result[1]


def test_maps_and_lists(host: plughost.Host, tree: ConfigTree) -> None:
    ffi, lib = host.runtime.ffi, host.runtime.lib
    child = ffi.new("const ph_config **")
    assert lib.rt_api_config_child(tree.ptr, b"headers", child) == lib.PH_OK
    assert lib.rt_api_config_kind(tree.ptr, b"headers") == lib.PH_CONFIG_MAP
    key = ffi.new("const char **")
    pairs = []
    for i in range(lib.rt_api_config_len(child[0])):
        node = lib.rt_api_config_at(child[0], i, key)
        out = ffi.new("const char **")
        lib.rt_api_config_string(node, ffi.NULL, ffi.NULL, out)
        pairs.append((ffi.string(key[0]).decode(), ffi.string(out[0]).decode()))
    assert pairs == [("X-User", "user_id"), ("X-Role", "role")]

    assert lib.rt_api_config_child(tree.ptr, b"list", child) == lib.PH_OK
    assert lib.rt_api_config_len(child[0]) == 3
    assert lib.rt_api_config_at(child[0], 3, key) == ffi.NULL
    third = lib.rt_api_config_at(child[0], 2, key)
    assert key[0] == ffi.NULL  # list entries have no key
    value = ffi.new("int64_t *")
    assert lib.rt_api_config_int(third, ffi.NULL, 0, value) == lib.PH_OK and value[0] == 3

    assert lib.rt_api_config_child(tree.ptr, b"missing", child) == lib.PH_OK
    assert child[0] == ffi.NULL
    assert lib.rt_api_config_child(tree.ptr, b"name", child) == lib.PH_ERROR
    assert "expected a list or a map" in tree.error


def test_plain_python_values_build_the_same_tree(host: plughost.Host) -> None:
    tree = ConfigTree(
        host.runtime,
        host.ptr,
        {"n": 3, "b": True, "s": "x", "f": 2.5, "l": [1]},
        label="t",
        path="config",
    )
    ffi, lib = host.runtime.ffi, host.runtime.lib
    kinds = [lib.rt_api_config_kind(tree.ptr, k.encode()) for k in ("n", "b", "s", "f", "l", "zz")]
    assert kinds == [
        lib.PH_CONFIG_INT,
        lib.PH_CONFIG_BOOL,
        lib.PH_CONFIG_STRING,
        lib.PH_CONFIG_FLOAT,
        lib.PH_CONFIG_LIST,
        lib.PH_CONFIG_MISSING,
    ]
    out = ffi.new("int64_t *")
    assert lib.rt_api_config_int(tree.ptr, b"b", 0, out) == lib.PH_ERROR
    assert tree.error == "config.b: expected an integer, got true"
    tree.close()


def test_a_config_that_is_not_a_map_is_refused(host: plughost.Host) -> None:
    with pytest.raises(TypeError, match="must be a map"):
        ConfigTree(host.runtime, host.ptr, ["a"], label="t", path="plugins[0].config")
