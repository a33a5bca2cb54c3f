"""plughost.config: every kind of bad configuration, each reported with file, line and key.

Each test starts from a valid configuration folder written to a temporary directory,
replaces one file with a broken one, and asserts the one problem reported: its exact file,
line and key and the key words of its message. The last tests put several problems in
several files and check that one ConfigErrors reports them all.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path

import pytest

from plughost.config import ConfigErrors, ConfigProblem, load_config
from plughost.errors import ConfigError

BASE = {
    "plugins.yaml": """
        plugins:
          - path: ../plugins/ok.so
        """,
    "storages.yaml": """
        storages:
          Cache:
            use: plugins.memory.storages.MemoryStorage
        """,
    "middlewares.yaml": """
        middlewares:
          RequestId:
            use: plugins.requestid.middlewares.RequestIdMiddleware
          Limiter:
            use: plugins.limiter.middlewares.LimiterMiddleware
            config:
              storage: Cache
              maxConnections: 5
        globalMiddlewares:
          - RequestId
        """,
    "actions.yaml": """
        actions:
          Hello:
            use: plugins.static.actions.StaticAction
            config:
              body: hello
        """,
    "routes.yaml": """
        routes:
          Home:
            gatewayPath: /
            methods: [GET]
            action: Hello
          Users:
            gatewayPath: /users/:id
            methods: [GET, POST]
            middlewares: [Limiter]
            action: Hello
        """,
    "services.yaml": """
        services:
          Main:
            routes: [Home, Users]
        """,
    "server.yaml": """
        server:
          address: 127.0.0.1:8090
        """,
}


class Gateway:
    """A configuration folder in a temporary directory, BASE with some files replaced."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.cfg = tmp_path / "cfg"
        self.cfg.mkdir()
        plugins = tmp_path / "plugins"
        plugins.mkdir()
        (plugins / "ok.so").write_bytes(b"\x7fELF ok")
        os.chmod(plugins / "ok.so", 0o644)
        os.chmod(plugins, 0o755)
        os.chmod(tmp_path, 0o755)

    def file(self, name: str) -> str:
        return str(self.cfg / name)

    def write(self, **files: str | None) -> None:
        texts = {k: v for k, v in BASE.items()}
        texts.update({k.replace("_", ".", 1) if "." not in k else k: v for k, v in files.items()})
        for name in os.listdir(self.cfg):
            (self.cfg / name).unlink()
        for name, text in texts.items():
            if text is not None:
                (self.cfg / name).write_text(textwrap.dedent(text).lstrip("\n"))

    def problems(
        self, environ: dict[str, str] | None = None, **files: str | None
    ) -> list[ConfigProblem]:
        """The problems loading BASE with ``files`` replaced reports (routes_yaml=...)."""
        self.write(**{k.replace("_yaml", ".yaml"): v for k, v in files.items()})
        with pytest.raises(ConfigErrors) as exc:
            load_config(self.cfg, environ=environ or {})
        assert "Traceback" not in str(exc.value)
        return exc.value.problems

    def one(
        self,
        file: str,
        line: int,
        key: str,
        *words: str,
        environ: dict[str, str] | None = None,
        **files: str | None,
    ) -> ConfigProblem:
        """Asserts exactly one problem, at file:line key, whose message has ``words``."""
        problems = self.problems(environ, **files)
        assert len(problems) == 1, "\n".join(map(str, problems))
        p = problems[0]
        assert (p.where.file, p.where.line, p.where.key) == (self.file(file), line, key), str(p)
        for w in words:
            assert w in p.message, f"{w!r} not in {p.message!r}"
        return p


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


def test_base_configuration_is_valid(gw: Gateway) -> None:
    gw.write()
    c = load_config(gw.cfg, environ={})
    assert list(c.routes) == ["Home", "Users"] and c.global_middlewares == ("RequestId",)


# --- YAML ---------------------------------------------------------------------------------


def test_yaml_syntax_error(gw: Gateway) -> None:
    p = gw.one(
        "routes.yaml",
        4,
        "",
        "YAML syntax error",
        "column",
        routes_yaml="routes:\n  Home:\n    gatewayPath: /\n   methods: [GET]\n",
    )
    assert str(p).startswith(f"{gw.file('routes.yaml')}:4: YAML syntax error")


def test_yaml_tab_indentation(gw: Gateway) -> None:
    gw.one(
        "actions.yaml",
        3,
        "",
        "YAML syntax error",
        "indent with spaces",
        actions_yaml="actions:\n  Hello:\n\tuse: x\n",
    )


def test_yaml_unclosed_flow_list(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        5,
        "",
        "YAML syntax error",
        routes_yaml="routes:\n  Home:\n    gatewayPath: /\n    methods: [GET\n    action: Hello\n",
    )


def test_two_yaml_documents_in_one_file(gw: Gateway) -> None:
    gw.one(
        "server.yaml",
        3,
        "",
        "holds one YAML document",
        "remove the '---' line",
        server_yaml="server:\n  address: 127.0.0.1:8090\n---\nserver: {}\n",
    )


def test_top_level_not_a_map(gw: Gateway) -> None:
    gw.one(
        "storages.yaml",
        1,
        "",
        "must be a map of top-level keys",
        "not a list",
        storages_yaml="- Cache\n- Other\n",
    )


# --- unknown keys and types ----------------------------------------------------------------


def test_unknown_top_level_key(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        1,
        "rotues",
        "unknown key 'rotues'",
        "did you mean 'routes'?",
        # services.yaml names Home and Users: not reported again as undefined routes
        routes_yaml="rotues:\n  Home: {gatewayPath: /, methods: [GET], action: Hello}\n",
    )


def test_unknown_key_in_route(gw: Gateway) -> None:
    p = gw.one(
        "routes.yaml",
        3,
        "routes.Home.gatwayPath",
        routes_yaml="""
                   routes:
                     Home:
                       gatwayPath: /
                       gatewayPath: /home
                       methods: [GET]
                       action: Hello
                     Users: {gatewayPath: /u, methods: [GET], action: Hello}
                   """,
    )
    assert p.message == "unknown key 'gatwayPath' in route 'Home': did you mean 'gatewayPath'?"


def test_unknown_key_in_middleware_lists_the_keys(gw: Gateway) -> None:
    gw.one(
        "middlewares.yaml",
        4,
        "middlewares.RequestId.settings",
        "unknown key 'settings'",
        "'use', 'config', 'anyRequest'",
        middlewares_yaml="""
               middlewares:
                 RequestId:
                   use: plugins.requestid.middlewares.RequestIdMiddleware
                   settings: {headerName: X-Id}
                 Limiter: {use: plugins.limiter.middlewares.LimiterMiddleware}
               """,
    )


def test_unknown_server_key(gw: Gateway) -> None:
    gw.one(
        "server.yaml",
        3,
        "server.etag",
        "unknown key 'etag'",
        "did you mean 'eTag'?",
        server_yaml="server:\n  address: 127.0.0.1:8090\n  etag: true\n",
    )


def test_section_of_wrong_type(gw: Gateway) -> None:
    gw.one(
        "actions.yaml",
        1,
        "actions",
        "actions must be a map of names",
        "not a list",
        actions_yaml="actions: [Hello]\n",
        routes_yaml="routes:\n",
        services_yaml=None,
    )


def test_wrong_type_of_bool(gw: Gateway) -> None:
    gw.one(
        "server.yaml",
        3,
        "server.tls",
        "tls must be true or false",
        "the text 'yes please'",
        server_yaml="server:\n  address: 127.0.0.1:8090\n  tls: yes please\n",
    )


def test_wrong_type_of_methods(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        5,
        "routes.Home.methods",
        "must be a list",
        "not a map",
        routes_yaml="""
               routes:
                 Home:
                   gatewayPath: /
                   methods:
                     get: true
                   action: Hello
                 Users: {gatewayPath: /u, methods: [GET], action: Hello}
               """,
    )


def test_instance_without_use(gw: Gateway) -> None:
    gw.one(
        "storages.yaml",
        2,
        "storages.Cache",
        "storage 'Cache' has no 'use'",
        "plugins.valkey.storages.ValkeyStorage",
        storages_yaml="storages:\n  Cache:\n    config: {size: 10}\n",
    )


def test_config_not_a_map(gw: Gateway) -> None:
    gw.one(
        "actions.yaml",
        4,
        "actions.Hello.config",
        "config of action 'Hello' must be a map",
        "the text 'hello'",
        actions_yaml="actions:\n  Hello:\n    use: plugins.static.actions.StaticAction\n"
        "    config: hello\n",
    )


# --- duplicates ---------------------------------------------------------------------------


def test_duplicate_name_in_one_file(gw: Gateway) -> None:
    gw.one(
        "middlewares.yaml",
        8,
        "middlewares.Limiter",
        "'Limiter' is written twice",
        "first on line 4",
        middlewares_yaml="""
               middlewares:
                 RequestId:
                   use: plugins.requestid.middlewares.RequestIdMiddleware
                 Limiter:
                   use: plugins.limiter.middlewares.LimiterMiddleware
                   config:
                     storage: Cache
                 Limiter:
                   use: plugins.limiter.middlewares.LimiterMiddleware
               """,
    )


def test_duplicate_name_across_files(gw: Gateway) -> None:
    # storages.yaml is read before middlewares.yaml: the second definition is reported
    gw.one(
        "middlewares.yaml",
        4,
        "middlewares.Limiter",
        "middleware 'Limiter' is defined twice",
        f"first at {gw.file('storages.yaml')}:4",
        storages_yaml="""
               storages:
                 Cache: {use: plugins.memory.storages.MemoryStorage}
               middlewares:
                 Limiter: {use: plugins.limiter.middlewares.LimiterMiddleware}
               """,
    )


def test_duplicate_key_inside_plugin_config(gw: Gateway) -> None:
    gw.one(
        "actions.yaml",
        6,
        "actions.Hello.config.body",
        "'body' is written twice",
        actions_yaml="""
               actions:
                 Hello:
                   use: plugins.static.actions.StaticAction
                   config:
                     body: hello
                     body: bye
               """,
    )


def test_section_in_two_files(gw: Gateway) -> None:
    gw.one(
        "server.yaml",
        1,
        "server",
        "'server' is also written at",
        "services.yaml:4",
        "in one file only",
        services_yaml="services:\n  Main:\n    routes: [Home, Users]\nserver:\n"
        "  address: 127.0.0.1:9\n",
    )


def test_duplicate_global_middleware(gw: Gateway) -> None:
    gw.one(
        "middlewares.yaml",
        6,
        "globalMiddlewares[1]",
        "listed twice in globalMiddlewares",
        middlewares_yaml="""
               middlewares:
                 RequestId: {use: plugins.requestid.middlewares.RequestIdMiddleware}
                 Limiter: {use: plugins.limiter.middlewares.LimiterMiddleware}
               globalMiddlewares:
                 - RequestId
                 - RequestId
               """,
    )


def test_route_twice_in_a_service(gw: Gateway) -> None:
    gw.one(
        "services.yaml",
        3,
        "services.Main.routes[2]",
        "route 'Home' is listed twice",
        services_yaml="services:\n  Main:\n    routes: [Home, Users, Home]\n",
    )


# --- references ---------------------------------------------------------------------------


def test_undefined_middleware_in_route_with_suggestion(gw: Gateway) -> None:
    p = gw.one(
        "routes.yaml",
        9,
        "routes.Users.middlewares[0]",
        routes_yaml="""
                   routes:
                     Home:
                       gatewayPath: /
                       methods: [GET]
                       action: Hello
                     Users:
                       gatewayPath: /users/:id
                       methods: [GET]
                       middlewares: [Limitr]
                       action: Hello
                   """,
    )
    assert p.message == (
        "route 'Users' names the middleware 'Limitr', which is not defined: did you mean 'Limiter'?"
    )


def test_undefined_action_in_route(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        5,
        "routes.Home.action",
        "action 'Goodbye'",
        "not defined",
        "define it under 'actions:'",
        routes_yaml="""
               routes:
                 Home:
                   gatewayPath: /
                   methods: [GET]
                   action: Goodbye
                 Users: {gatewayPath: /u, methods: [GET], action: Hello}
               """,
    )


def test_undefined_global_middleware(gw: Gateway) -> None:
    gw.one(
        "middlewares.yaml",
        5,
        "globalMiddlewares[0]",
        "globalMiddlewares names the middleware 'Logger'",
        "not defined",
        middlewares_yaml="""
               middlewares:
                 RequestId: {use: plugins.requestid.middlewares.RequestIdMiddleware}
                 Limiter: {use: plugins.limiter.middlewares.LimiterMiddleware}
               globalMiddlewares:
                 - Logger
               """,
    )


def test_undefined_route_in_service(gw: Gateway) -> None:
    gw.one(
        "services.yaml",
        5,
        "services.Main.routes[1]",
        "service 'Main' names the route 'User'",
        "did you mean 'Users'?",
        services_yaml="""
               services:
                 Main:
                   routes:
                     - Home
                     - User
               """,
    )


def test_undefined_storage_in_middleware_config(gw: Gateway) -> None:
    gw.one(
        "middlewares.yaml",
        6,
        "middlewares.Limiter.config.storage",
        "the config of middleware 'Limiter' names the storage 'Valkey'",
        "not defined",
        middlewares_yaml="""
               middlewares:
                 RequestId: {use: plugins.requestid.middlewares.RequestIdMiddleware}
                 Limiter:
                   use: plugins.limiter.middlewares.LimiterMiddleware
                   config:
                     storage: Valkey
               """,
    )


def test_route_without_action(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        2,
        "routes.Home",
        "route 'Home' has no action",
        "add 'action:",
        routes_yaml="""
               routes:
                 Home:
                   gatewayPath: /
                   methods: [GET]
                 Users: {gatewayPath: /u, methods: [GET], action: Hello}
               """,
    )


def test_route_with_empty_action(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        5,
        "routes.Home.action",
        "the action of route 'Home' is empty",
        routes_yaml=_route("/").replace(
            "action: Hello\n          Users", "action: ''\n          Users"
        ),
    )


def test_route_without_path(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        2,
        "routes.Home",
        "route 'Home' has no path",
        "gatewayPath",
        routes_yaml="""
               routes:
                 Home:
                   methods: [GET]
                   action: Hello
                 Users: {gatewayPath: /u, methods: [GET], action: Hello}
               """,
    )


def test_route_with_both_spellings(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        3,
        "routes[0].gatewayPath",
        "has both 'gatewayPath' and 'path'",
        routes_yaml="""
               routes:
                 - path: /
                   gatewayPath: /home
                   method: GET
                   action: Hello
               """,
        services_yaml=None,
    )


# --- route paths and methods ----------------------------------------------------------------


def _route(path: str, methods: str = "[GET]") -> str:
    return f"""
        routes:
          Home:
            gatewayPath: {path}
            methods: {methods}
            action: Hello
          Users: {{gatewayPath: /users, methods: [GET], action: Hello}}
        """


@pytest.mark.parametrize(
    "path,words",
    [
        ("api/users", ["must start with '/'", "write '/api/users'"]),
        ("/users/:1st", ["parameter ':1st'", "is not a name", "':id'"]),
        ("'/users/:'", ["parameter ':'", "is not a name"]),
        ("/a/:id/b/:id", ["':id' appears twice", "its own name"]),
        ("/files/*/meta", ["only allowed as the last segment", "write '/files/*'"]),
        ("/files*", ["must be a whole segment", "write '/files/*'"]),
        ("/api//users", ["empty segment", "write '/api/users'"]),
        ("'/search?q=1'", ["query string", "'?'"]),
        ("''", ["is empty"]),
    ],
)
def test_bad_route_paths(gw: Gateway, path: str, words: list[str]) -> None:
    gw.one("routes.yaml", 3, "routes.Home.gatewayPath", *words, routes_yaml=_route(path))


@pytest.mark.parametrize(
    "methods,key,words",
    [
        ("[GET, FETCH]", "routes.Home.methods[1]", ["'FETCH'", "not an HTTP method"]),
        ("[GTE]", "routes.Home.methods[0]", ["did you mean 'GET'?"]),
        ("['*']", "routes.Home.methods[0]", ["write ALL"]),
        ("[]", "routes.Home.methods", ["are empty", "[GET]"]),
    ],
)
def test_bad_methods(gw: Gateway, methods: str, key: str, words: list[str]) -> None:
    gw.one("routes.yaml", 4, key, *words, routes_yaml=_route("/", methods))


def test_route_without_methods(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        2,
        "routes.Home",
        "route 'Home' has no methods",
        "[ALL]",
        routes_yaml="""
               routes:
                 Home:
                   gatewayPath: /
                   action: Hello
                 Users: {gatewayPath: /u, methods: [GET], action: Hello}
               """,
    )


def test_conflicting_routes(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        7,
        "routes.Users.gatewayPath",
        "route 'Users' of service 'Main' (GET /users/:name/)",
        "matches the same requests as route 'Home' of service 'Main' (/users/:id)",
        f"{gw.file('routes.yaml')}:2",
        "change the path or the methods",
        routes_yaml="""
               routes:
                 Home:
                   gatewayPath: /users/:id
                   methods: [GET, POST]
                   action: Hello
                 Users:
                   gatewayPath: /users/:name/
                   methods: [PUT, get]
                   action: Hello
               """,
    )


def test_conflicting_list_routes(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        5,
        "routes[1]",
        "route 'GET /users' is defined twice",
        f"first at {gw.file('routes.yaml')}:2",
        routes_yaml="""
               routes:
                 - path: /users
                   method: GET
                   action: Hello
                 - path: /users
                   method: GET
                   action: Hello
               """,
        services_yaml=None,
    )


def test_route_on_a_health_check_path(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        3,
        "routes.Home.gatewayPath",
        "health check route /health/live",
        "server.healthCheckLiveRoute",
        routes_yaml=_route("/health/live", "[ALL]"),
    )


# --- server -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line,key,value,words",
    [
        (2, "server.address", "127.0.0.1:70000", ["port 70000", "from 1 to 65535"]),
        (2, "server.address", "127.0.0.1", ["write host:port"]),
        (2, "server.address", "'::1:8090'", ["[::1]:8090"]),
        (3, "server.readTimeout", "30 seconds", ["not a duration", "'1m30s'"]),
        (3, "server.writeTimeout", "-5s", ["must not be negative"]),
        (3, "server.bodyLimit", "0", ["must be a positive size"]),
        (3, "server.bodyLimit", "4 megs", ["not a size", "'10MiB'"]),
        (3, "server.concurrency", "-1", ["must be a positive number"]),
        (3, "server.network", "udp", ["network 'udp' is not supported", "tcp4"]),
        (3, "server.healthCheckLiveRoute", "health", ["must start with '/'"]),
        (3, "server.trustedProxies", "[10.0.0.0/8, 10.0.0.300]", ["'10.0.0.300'", "CIDR"]),
    ],
)
def test_bad_server_values(gw: Gateway, line: int, key: str, value: str, words: list[str]) -> None:
    if key == "server.address":
        text = f"server:\n  address: {value}\n"
    else:
        name = key.split(".")[1]
        text = f"server:\n  address: 127.0.0.1:8090\n  {name}: {value}\n"
    if key == "server.trustedProxies":
        key, line = "server.trustedProxies[1]", 3
    gw.one("server.yaml", line, key, *words, server_yaml=text)


def test_tls_without_certificate_files(gw: Gateway) -> None:
    p = gw.problems(
        server_yaml="server:\n  address: 127.0.0.1:8443\n  tls: true\n"
        "  certFile: certs/missing.crt\n"
    )
    assert [(x.where.line, x.where.key) for x in p] == [(4, "server.certFile"), (3, "server.tls")]
    assert f"certificate file {gw.cfg / 'certs' / 'missing.crt'} does not exist" in p[0].message
    assert "keyFile is not set" in p[1].message and "/certs/server.key" in p[1].message


# --- environment ----------------------------------------------------------------------------


def test_unset_environment_variable(gw: Gateway) -> None:
    gw.one(
        "server.yaml",
        2,
        "server.address",
        "environment variable 'GW_PORT' is not set",
        "${GW_PORT:-default}",
        server_yaml="server:\n  address: 127.0.0.1:${GW_PORT}\n",
    )


# --- plugins ------------------------------------------------------------------------------


def test_missing_plugin_file(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        3,
        "plugins[1].path",
        f"plugin file {gw.root / 'plugins' / 'gone.so'} does not exist",
        plugins_yaml="plugins:\n  - path: ../plugins/ok.so\n  - path: ../plugins/gone.so\n",
    )


def test_plugins_not_a_list(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        2,
        "plugins",
        "plugins must be a list",
        "in load order",
        plugins_yaml="plugins:\n  path: ../plugins/ok.so\n",
    )


def test_plugin_entry_without_path(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        2,
        "plugins[0]",
        "plugin entry 1 has no 'path'",
        plugins_yaml="plugins:\n  - config: {a: 1}\n",
    )


def test_plugin_entry_written_as_text(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        2,
        "plugins[0]",
        "write '- path: ../plugins/ok.so'",
        plugins_yaml="plugins:\n  - ../plugins/ok.so\n",
    )


def test_bad_sha256(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        3,
        "plugins[0].sha256",
        "is not a SHA-256 digest",
        "sha256sum",
        plugins_yaml="plugins:\n  - path: ../plugins/ok.so\n    sha256: abc123\n",
    )


def test_sha256_mismatch(gw: Gateway) -> None:
    wrong = hashlib.sha256(b"other").hexdigest()
    right = hashlib.sha256(b"\x7fELF ok").hexdigest()
    gw.one(
        "plugins.yaml",
        2,
        "plugins[0].path",
        right,
        wrong,
        "rebuild the plugin or update the hash",
        plugins_yaml=f"plugins:\n  - path: ../plugins/ok.so\n    sha256: {wrong}\n",
    )


def test_plugin_registered_twice(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        3,
        "plugins[1].path",
        "is registered twice",
        plugins_yaml="plugins:\n  - path: ../plugins/ok.so\n  - path: ../plugins/./ok.so\n",
    )


def test_insecure_plugin_file(gw: Gateway) -> None:
    os.chmod(gw.root / "plugins" / "ok.so", 0o646)
    gw.one(
        "plugins.yaml",
        2,
        "plugins[0].path",
        "writable by others",
        "mode 0646",
        f"chmod go-w {gw.root / 'plugins' / 'ok.so'}",
        "allowInsecurePermissions",
    )


def test_krakend_folder_missing(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        2,
        "plugin.folder",
        f"plugin folder {gw.cfg / 'nowhere'} does not exist",
        plugins_yaml="plugin:\n  folder: nowhere\n  pattern: .so\n",
    )


def test_krakend_pattern_matches_nothing(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        2,
        "plugin.folder",
        "matches the pattern '.dylib'",
        plugins_yaml="plugin:\n  folder: ../plugins\n  pattern: .dylib\n",
    )


def test_krakend_without_folder(gw: Gateway) -> None:
    gw.one(
        "plugins.yaml",
        1,
        "plugin",
        "plugin has no 'folder'",
        plugins_yaml="plugin:\n  pattern: .so\n",
    )


# --- several problems at once ---------------------------------------------------------------


def test_all_problems_in_several_files_are_reported_together(gw: Gateway) -> None:
    problems = gw.problems(
        environ={},
        plugins_yaml="plugins:\n  - path: ../plugins/missing.so\n",
        middlewares_yaml="""
            middlewares:
              RequestId: {use: plugins.requestid.middlewares.RequestIdMiddleware}
              Limiter: {use: plugins.limiter.middlewares.LimiterMiddleware, confg: {}}
            globalMiddlewares: [RequestId, Logger]
            """,
        routes_yaml="""
            routes:
              Home:
                gatewayPath: home
                methods: [GET]
                action: Hello
              Users:
                gatewayPath: /users/:id
                methods: [GETS]
                middlewares: [Limiter]
              """,
        server_yaml="server:\n  address: 0.0.0.0:99999\n  readTimeout: 10 sec\n"
        "  appName: ${APP_NAME}\n",
    )
    got = sorted((Path(p.where.file).name, p.where.line, p.where.key) for p in problems)
    assert got == [
        ("middlewares.yaml", 3, "middlewares.Limiter.confg"),
        ("middlewares.yaml", 4, "globalMiddlewares[1]"),
        ("plugins.yaml", 2, "plugins[0].path"),
        ("routes.yaml", 3, "routes.Home.gatewayPath"),
        ("routes.yaml", 6, "routes.Users"),
        ("routes.yaml", 8, "routes.Users.methods[0]"),
        ("server.yaml", 2, "server.address"),
        ("server.yaml", 3, "server.readTimeout"),
        ("server.yaml", 4, "server.appName"),
    ], "\n".join(map(str, problems))
    assert all(isinstance(p, ConfigProblem) and p.message for p in problems)


def test_config_errors_message_lists_every_problem(gw: Gateway) -> None:
    gw.write(
        routes_yaml="routes:\n  Home: {gatewayPath: x, methods: [GET], action: Nope}\n",
        services_yaml=None,
    )
    with pytest.raises(ConfigError) as exc:  # ConfigErrors is a plughost ConfigError
        load_config(gw.cfg, environ={})
    text = str(exc.value)
    assert text.splitlines()[0] == "2 problems in the configuration:"
    assert (
        f"{gw.file('routes.yaml')}:2: routes.Home.gatewayPath: the path 'x' of route "
        "'Home' must start with '/'" in text
    )
    assert "routes.Home.action: route 'Home' names the action 'Nope'" in text


def test_missing_configuration_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path / "nope", environ={})
    [p] = exc.value.problems
    assert p.where.file == str(tmp_path / "nope") and "does not exist" in p.message


def test_empty_configuration_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path, environ={})
    [p] = exc.value.problems
    assert "holds no configuration file" in p.message and "routes.yaml" in p.message


def test_yaml_and_yml_side_by_side(gw: Gateway) -> None:
    gw.write()
    (gw.cfg / "server.yml").write_text("server: {}\n")
    with pytest.raises(ConfigErrors) as exc:
        load_config(gw.cfg, environ={})
    [p] = exc.value.problems
    assert p.where.file == gw.file("server.yml") and "keep only one" in p.message


# --- hardening: absurd numbers, empty configurations, repeated middlewares, permissions ----


@pytest.mark.parametrize(
    "name,value,words",
    [
        ("idleTimeout", ".inf", ["'.inf' (infinity) is not a duration", "'30s'"]),
        ("idleTimeout", ".nan", ["'.nan' (not a number) is not a duration"]),
        ("readTimeout", ".inf", ["'.inf' (infinity) is not a duration"]),
        ("writeTimeout", "-.inf", ["'-.inf' (infinity) is not a duration"]),
        ("readTimeout", "8761h", ["'8761h' is out of range", "at most a year (8760h)"]),
        ("writeTimeout", "9" * 400, ["(400 characters) is out of range", "at most a year"]),
        ("idleTimeout", "'" + "9" * 400 + "s'", ["(401 characters) is out of range"]),
        ("readTimeout", "-99999999999h", ["out of range"]),
        ("bodyLimit", ".inf", ["'.inf' (infinity) is not a size", "'4MiB'"]),
        ("bodyLimit", ".nan", ["'.nan' (not a number) is not a size"]),
        ("bodyLimit", "9" * 400, ["(400 characters) is out of range", "at most 2^62 bytes"]),
        ("bodyLimit", "9" * 5000, ["(5000 characters) is out of range"]),
        ("bodyLimit", "1.0e+30", ["'1.0e+30' is out of range"]),
        ("readBufferSize", "'" + "9" * 400 + "MB'", ["(402 characters) is out of range"]),
        ("writeBufferSize", str(2**62 + 1), ["is out of range", "2^62"]),
        ("concurrency", "9" * 5000, ["at most 2^62", "(5000 characters)"]),
    ],
)
def test_infinite_nan_and_absurd_durations_and_sizes(
    gw: Gateway, name: str, value: str, words: list[str]
) -> None:
    p = gw.one(
        "server.yaml",
        3,
        f"server.{name}",
        *words,
        server_yaml=f"server:\n  address: 127.0.0.1:8090\n  {name}: {value}\n",
    )
    assert len(str(p)) < 400  # a 5000-digit number is not repeated in full


def test_largest_duration_and_size_are_accepted(gw: Gateway) -> None:
    gw.write(
        server_yaml=f"server:\n  readTimeout: 8760h\n  bodyLimit: {2**62}\n"
        "  readBufferSize: 0.1KB\n"
    )
    server = load_config(gw.cfg, environ={}).server
    assert (server.read_timeout, server.body_limit, server.read_buffer_size) == (
        365 * 24 * 3600.0,
        2**62,
        100,
    )


EMPTY = [
    ("", "0 bytes"),
    ("# nothing yet\n\n   \n", "only comments and white space"),
    ("{}\n", "only an empty map '{}'"),
    ("# x\nnull\n", "only a null document ('null')"),
    ("~\n", "only a null document ('~')"),
]


@pytest.mark.parametrize("text,why", EMPTY)
def test_empty_configuration_file_is_refused(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as exc:
        load_config(path, environ={})
    [p] = exc.value.problems
    assert p.where.file == str(path) and p.where.line == (2 if text.startswith("# x") else 1)
    assert p.message == (
        f"the configuration file is empty ({why}): write the gateway's "
        "plugins, actions and routes in it, or give the path of the file or "
        "folder that holds them"
    )


@pytest.mark.parametrize("text,why", EMPTY)
def test_folder_whose_only_file_is_empty_is_refused(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "routes.yaml").write_text(text)
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path, environ={})
    [p] = exc.value.problems
    assert p.where.file == str(tmp_path / "routes.yaml")
    assert p.message.startswith(
        f"the configuration file is empty ({why}) and is the only one "
        f"in {tmp_path}: write the gateway's plugins, actions and routes"
    )


def test_folder_whose_files_are_all_empty_is_refused(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text("# later\n")
    (tmp_path / "server.yaml").write_text("")
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path, environ={})
    [p] = exc.value.problems
    assert p.where.file == str(tmp_path)
    assert (
        "the configuration in the folder is empty: its 2 files (routes.yaml, server.yaml)"
        in p.message
    )


def test_an_empty_file_beside_others_is_fine(gw: Gateway) -> None:
    gw.write(services_yaml="null\n", server_yaml="")
    assert list(load_config(gw.cfg, environ={}).routes) == ["Home", "Users"]


def test_folder_holding_another_yaml_file_says_to_give_its_path(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text("routes: {}\n")
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path, environ={})
    [p] = exc.value.problems
    assert "holds no configuration file" in p.message
    assert "gateway.yaml is not one of them: to use it, give its path" in p.message


def test_middleware_twice_in_a_route(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        9,
        "routes.Users.middlewares[1]",
        "middleware 'Limiter' is listed twice in the middlewares of route 'Users' "
        "(first on line 9): list it once",
        routes_yaml=BASE["routes.yaml"].replace("[Limiter]", "[Limiter, Limiter]"),
    )


def test_middleware_twice_in_a_list_route(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        6,
        "routes[0].middlewares[1]",
        "middleware 'Limiter' is listed twice in the middlewares of route 'Users' "
        "(first on line 5)",
        routes_yaml="""
               routes:
                 - name: Users
                   path: /users
                   middlewares:
                     - Limiter
                     - Limiter
                   method: GET
                   action: Hello
               """,
        services_yaml=None,
    )


def test_middleware_twice_in_a_service(gw: Gateway) -> None:
    gw.one(
        "services.yaml",
        4,
        "services.Main.middlewares[1]",
        "middleware 'Limiter' is listed twice in the middlewares of service 'Main' "
        "(first on line 4): list it once",
        routes_yaml=BASE["routes.yaml"].replace("            middlewares: [Limiter]\n", ""),
        services_yaml="services:\n  Main:\n    routes: [Home, Users]\n"
        "    middlewares: [Limiter, Limiter]\n",
    )


def test_route_repeating_a_global_middleware(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        9,
        "routes.Users.middlewares[0]",
        "middleware 'RequestId' is listed by route 'Users' but it is global "
        f"(globalMiddlewares at {gw.file('middlewares.yaml')}:10), so it would run twice: "
        "list it once, in globalMiddlewares or in the route",
        routes_yaml=BASE["routes.yaml"].replace("[Limiter]", "[RequestId, Limiter]"),
    )


def test_service_repeating_a_global_middleware(gw: Gateway) -> None:
    gw.one(
        "services.yaml",
        4,
        "services.Main.middlewares[0]",
        "middleware 'RequestId' is listed by service 'Main' but it is global",
        "list it once, in globalMiddlewares or in the service",
        services_yaml="services:\n  Main:\n    routes: [Home, Users]\n"
        "    middlewares: [RequestId]\n",
    )


def test_route_repeating_an_any_request_middleware(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        9,
        "routes.Users.middlewares[0]",
        "middleware 'Limiter' is listed by route 'Users' but it runs on every request "
        f"(anyRequest: true at {gw.file('middlewares.yaml')}:4)",
        middlewares_yaml=BASE["middlewares.yaml"].replace(
            "              maxConnections: 5\n",
            "              maxConnections: 5\n            anyRequest: true\n",
        ),
    )


def test_route_repeating_its_service_middleware(gw: Gateway) -> None:
    gw.one(
        "routes.yaml",
        9,
        "routes.Users.middlewares[0]",
        "middleware 'Limiter' is listed by route 'Users' but service 'Main' runs it "
        f"already ({gw.file('services.yaml')}:4), so it would run twice: list it once, in "
        "the service or in the route",
        services_yaml="services:\n  Main:\n    routes: [Home, Users]\n    middlewares: [Limiter]\n",
    )


def _plugin_at(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF ok")
    os.chmod(path, 0o644)
    return path


def test_insecure_folder_anywhere_above_the_plugin(gw: Gateway) -> None:
    so = _plugin_at(gw.root / "opt" / "deep" / "plugins" / "ok.so")
    for folder in (so.parent, so.parent.parent):
        os.chmod(folder, 0o755)
    os.chmod(gw.root / "opt", 0o777)
    gw.one(
        "plugins.yaml",
        2,
        "plugins[0].path",
        f"folder {gw.root / 'opt'} (on the path to plugin {so}) is writable by group and "
        "others (mode 0777)",
        f"run 'chmod go-w {gw.root / 'opt'}'",
        "or set 'allowInsecurePermissions: true' at the top level",
        plugins_yaml=f"plugins:\n  - path: {so}\n",
    )
    gw.write(plugins_yaml=f"allowInsecurePermissions: true\nplugins:\n  - path: {so}\n")
    assert load_config(gw.cfg, environ={}).plugins[0].path == so


def test_insecure_folder_holding_a_symlinked_plugin(gw: Gateway) -> None:
    links = gw.root / "links"
    links.mkdir()
    os.chmod(links, 0o775)
    (links / "ok.so").symlink_to(gw.root / "plugins" / "ok.so")
    gw.one(
        "plugins.yaml",
        2,
        "plugins[0].path",
        f"plugin folder {links} is writable by group (mode 0775)",
        f"chmod go-w {links}'",
        plugins_yaml="plugins:\n  - path: ../links/ok.so\n",
    )


def test_insecure_folder_of_a_symlink_target(gw: Gateway) -> None:
    links = gw.root / "links"
    links.mkdir()
    os.chmod(links, 0o755)
    (links / "plugins").symlink_to(gw.root / "plugins")
    os.chmod(gw.root / "plugins", 0o757)
    gw.one(
        "plugins.yaml",
        2,
        "plugins[0].path",
        f"folder {gw.root / 'plugins'} (on the path to plugin {links / 'plugins' / 'ok.so'}) "
        "is writable by others (mode 0757)",
        f"chmod go-w {gw.root / 'plugins'}'",
        plugins_yaml="plugins:\n  - path: ../links/plugins/ok.so\n",
    )


def test_insecure_symlink_target_file(gw: Gateway) -> None:
    os.chmod(gw.root / "plugins" / "ok.so", 0o664)
    (gw.root / "plugins" / "current.so").symlink_to("ok.so")
    gw.one(
        "plugins.yaml",
        2,
        "plugins[0].path",
        f"plugin file {gw.root / 'plugins' / 'ok.so'} (the target of "
        f"{gw.root / 'plugins' / 'current.so'}) is writable by group (mode 0664)",
        plugins_yaml="plugins:\n  - path: ../plugins/current.so\n",
    )


def test_sticky_folder_is_accepted_when_its_entry_is_ours(gw: Gateway) -> None:
    """As /tmp above every pytest tmp_path: the sticky bit lets no one else rename or
    remove an entry that root or this user owns, so nothing below it can be swapped."""
    sticky = gw.root / "shared"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    so = _plugin_at(sticky / "mine" / "ok.so")
    os.chmod(so.parent, 0o755)
    gw.write(plugins_yaml=f"plugins:\n  - path: {so}\n")
    assert load_config(gw.cfg, environ={}).plugins[0].path == so


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_sticky_folder_is_refused_when_its_entry_is_someone_elses(gw: Gateway) -> None:
    sticky = gw.root / "shared"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    so = _plugin_at(sticky / "theirs" / "ok.so")
    os.chmod(so.parent, 0o755)
    os.chown(so.parent, 4321, 4321)
    p = gw.one(
        "plugins.yaml",
        2,
        "plugins[0].path",
        f"folder holding the plugin folder {sticky} is writable by group and others "
        f"(mode 1777, sticky) and its entry {so.parent} belongs to uid 4321, who could "
        "replace the code the gateway runs: move the plugin to a folder that only root "
        "or the user running plughost can write",
        "allowInsecurePermissions: true",
        plugins_yaml=f"plugins:\n  - path: {so}\n",
    )
    assert "chmod" not in p.message  # chmod go-w /tmp would break the machine


def test_number_too_long_for_python_in_a_plugin_config(gw: Gateway) -> None:
    """Python reads no integer of more than 4300 digits: a plugin's config holding one is
    reported, where it used to raise ValueError while the gateway was built."""
    gw.one(
        "storages.yaml",
        7,
        "storages.Cache.config.sizes[1]",
        "'999999999999…999999' (5000 characters) is out of range: a number in a config "
        "has at most 4300 digits; write a smaller one, or quote it to pass it as text",
        storages_yaml=f"""
               storages:
                 Cache:
                   use: plugins.memory.storages.MemoryStorage
                   config:
                     sizes:
                       - 1
                       - {"9" * 5000}
               """,
    )
