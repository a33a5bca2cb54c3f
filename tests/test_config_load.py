"""plughost.config: Seam's own example configurations and the loading features, on real files.

The examples under tests/data/seam/ are copied from Seam's documentation pages (each file
names its page). Their plugin paths are absolute (/plugins/x.so); ``install`` copies an
example into a temporary folder and points those paths at real files there.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from plughost.config import (
    ConfigErrors,
    GatewayConfig,
    config_from_text,
    load_config,
    parse_address,
    parse_duration,
    parse_size,
)

DATA = Path(__file__).parent / "data" / "seam"


def install(name: str, tmp_path: Path) -> Path:
    """The Seam example ``name`` copied to tmp_path/cfg, its /plugins/*.so made real files in
    tmp_path/plugins (mode 0644, folder 0755)."""
    cfg = tmp_path / "cfg"
    shutil.copytree(DATA / name, cfg)
    plugdir = tmp_path / "plugins"
    plugdir.mkdir(exist_ok=True)
    os.chmod(plugdir, 0o755)
    plugins = cfg / "plugins.yaml"
    if plugins.exists():
        text = plugins.read_text()
        for so in re.findall(r"/plugins/([\w.-]+\.so)", text):
            f = plugdir / so
            f.write_bytes(b"\x7fELF plugin placeholder " + so.encode())
            os.chmod(f, 0o644)
        plugins.write_text(text.replace("/plugins/", f"{plugdir}/"))
    return cfg


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return folder


def plugin_file(path: Path, content: bytes = b"\x7fELF test plugin", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


# --- Seam's examples ---------------------------------------------------------------------


def test_seam_sample_configuration(tmp_path: Path) -> None:
    cfg = install("sample", tmp_path)
    c = load_config(cfg, environ={})
    assert isinstance(c, GatewayConfig)
    assert [p.name for p in c.files] == [
        "plugins.yaml",
        "storages.yaml",
        "middlewares.yaml",
        "actions.yaml",
        "routes.yaml",
        "services.yaml",
        "server.yaml",
    ]
    assert [p.path for p in c.plugins] == [tmp_path / "plugins" / "httpfw.so"]
    assert c.plugins[0].where.key == "plugins[0].path" and c.plugins[0].where.line == 3
    assert c.storages == {} and c.middlewares == {} and c.global_middlewares == ()
    home = c.actions["HomeAction"]
    assert home.kind == "action" and home.use == "plugins.httpfw.actions.HttpAction"
    assert (home.use_where.file, home.use_where.line, home.use_where.key) == (
        str(cfg / "actions.yaml"),
        5,
        "actions.HomeAction.use",
    )
    assert isinstance(home.config, yaml.MappingNode)
    assert home.config.value[0][1].value == "https://seam.sauloalvarenga.dev.br"
    assert home.config_where.line == 6 and home.config_where.key == "actions.HomeAction.config"
    route = c.routes["HomeRoute"]
    assert (route.path, route.methods, route.middlewares, route.action) == (
        "/",
        ("GET",),
        (),
        "HomeAction",
    )
    assert route.where.line == 4 and route.where.key == "routes.HomeRoute"
    assert c.services["HelloWorldService"].routes == ("HomeRoute",)
    assert [(e.path, e.methods, e.route, e.service) for e in c.endpoints] == [
        ("/", ("GET",), "HomeRoute", "HelloWorldService")
    ]
    assert (c.server.host, c.server.port, c.server.address) == ("0.0.0.0", 8090, "0.0.0.0:8090")
    assert c.server.disable_startup_message is True
    assert c.server.key_where["address"].line == 3
    assert c.warnings == []


def test_seam_sample_as_shipped_only_lacks_the_plugin_file() -> None:
    with pytest.raises(ConfigErrors) as exc:
        load_config(DATA / "sample", environ={})
    [p] = exc.value.problems
    assert (p.where.file, p.where.line, p.where.key) == (
        str(DATA / "sample" / "plugins.yaml"),
        3,
        "plugins[0].path",
    )
    assert "/plugins/httpfw.so does not exist" in p.message


def test_seam_session_example_plugin_config_and_storage(tmp_path: Path) -> None:
    c = load_config(install("session", tmp_path), environ={})
    assert [p.path.name for p in c.plugins] == ["valkey.so", "session.so"]
    valkey, session = c.plugins
    assert valkey.config is None and valkey.config_where.key == "plugins[0]"
    assert isinstance(session.config, yaml.MappingNode)
    assert session.config_where.line == 5 and session.config_where.key == "plugins[1].config"
    conf = {k.value: v for k, v in session.config.value}
    assert conf["storage"].value == "ValkeySessionStorage"
    assert conf["cookieExpiration"].value == "2h"
    storage = c.storages["ValkeySessionStorage"]
    port = {k.value: v for k, v in storage.config.value}["port"]
    assert port.tag == "tag:yaml.org,2002:int" and port.start_mark.line + 1 == 8
    assert c.middlewares["SessionMiddleware"].config is None
    assert c.routes == {} and c.endpoints == ()


def test_seam_limiter_page_names_an_action_it_never_defines(tmp_path: Path) -> None:
    cfg = install("limiter", tmp_path)
    with pytest.raises(ConfigErrors) as exc:
        load_config(cfg, environ={})
    [p] = exc.value.problems
    assert (p.where.file, p.where.line, p.where.key) == (
        str(cfg / "routes.yaml"),
        8,
        "routes[0].action",
    )
    assert "action 'HttpForwardToInternalService'" in p.message and "not defined" in p.message
    write(
        cfg,
        {
            "actions.yaml": """
        actions:
          HttpForwardToInternalService:
            use: plugins.httpfw.actions.HttpAction
            config:
              upstreamEndpoint: http://internal:8080
        """
        },
    )
    c = load_config(cfg, environ={})
    route = c.routes["GET /api/resource"]
    assert route.middlewares == ("LimiterMiddleware",)
    assert route.middlewares_where[0].key == "routes[0].middlewares[0]"
    assert route.middlewares_where[0].line == 7
    assert [(e.path, e.methods) for e in c.endpoints] == [("/api/resource", ("GET",))]


@pytest.mark.parametrize(
    "name,path,method,action",
    [
        ("httpfw", "/api/resource", "GET", "ForwardToService"),
        ("httpfw-balancer", "/api/scale", "POST", "LoadBalancedForward"),
        ("wsfw", "/ws/chat", "GET", "ForwardWebSocket"),
    ],
)
def test_seam_plugin_pages_list_form_routes(
    tmp_path: Path, name: str, path: str, method: str, action: str
) -> None:
    c = load_config(install(name, tmp_path), environ={})
    [route] = c.routes.values()
    assert (route.name, route.path, route.methods, route.action) == (
        f"{method} {path}",
        path,
        (method,),
        action,
    )
    assert route.path_where.key == "routes[0].path" and route.path_where.line == 4
    assert route.methods_where.key == "routes[0].method"
    assert action in c.actions


def test_seam_wsfw_example_middleware_and_action_config(tmp_path: Path) -> None:
    c = load_config(install("wsfw", tmp_path), environ={})
    assert c.routes["GET /ws/chat"].middlewares == ("CheckWebSocketUpgrade",)
    conf = {k.value: v.value for k, v in c.actions["ForwardWebSocket"].config.value}
    assert conf == {
        "pongTimeout": "30s",
        "pingInterval": "10s",
        "maxInactivity": "60s",
        "upstreamEndpoint": "ws://localhost:8080/ws",
    }


def test_seam_routes_and_services_pages_map_form(tmp_path: Path) -> None:
    cfg = install("routes-page", tmp_path)
    c = load_config(cfg, environ={})
    route = c.routes["RouteName"]
    assert (route.path, route.methods, route.middlewares, route.action) == (
        "/api/v1/path",
        ("GET", "POST"),
        ("MiddlewareName",),
        "ActionName",
    )
    assert route.methods_where.line == 7
    assert route.methods_where.key == "routes.RouteName.methods"
    assert c.services["ServiceName"].routes_where[0].file == str(cfg / "routes.yaml")
    assert [(e.path, e.service, e.middlewares) for e in c.endpoints] == [
        ("/api/v1/path", "ServiceName", ("MiddlewareName",))
    ]
    assert [p.path.name for p in c.plugins] == ["jwt.so", "httpfw.so"]


def test_seam_actions_page_balancer_example_writes_action_for_actions(tmp_path: Path) -> None:
    cfg = install("actions-balancer", tmp_path)
    with pytest.raises(ConfigErrors) as exc:
        load_config(cfg, environ={})
    [p] = exc.value.problems
    assert (p.where.file, p.where.line, p.where.key) == (str(cfg / "actions.yaml"), 3, "action")
    assert p.message == "unknown key 'action' in the file's top level: did you mean 'actions'?"


def test_seam_logger_page_example_has_a_yaml_error(tmp_path: Path) -> None:
    cfg = install("logger", tmp_path)
    with pytest.raises(ConfigErrors) as exc:
        load_config(cfg, environ={})
    [p] = exc.value.problems
    assert (p.where.file, p.where.line) == (str(cfg / "middlewares.yaml"), 8)
    assert "YAML syntax error" in p.message and "remove the comma" in p.message
    assert "Traceback" not in str(exc.value)
    # Without the comma it loads; the logger's ${placeholders} are not environment variables.
    mw = cfg / "middlewares.yaml"
    mw.write_text(mw.read_text().replace('\\n",', '\\n"'))
    with pytest.raises(ConfigErrors) as exc:
        load_config(cfg, environ={})
    [p] = exc.value.problems  # the page lists RequestIdMiddleware, defined on another page
    assert (p.where.line, p.where.key) == (12, "globalMiddlewares[0]")
    assert "middleware 'RequestIdMiddleware'" in p.message
    text = mw.read_text().replace(
        "globalMiddlewares:\n  - RequestIdMiddleware\n", "globalMiddlewares:\n"
    )
    mw.write_text(text)
    c = load_config(cfg, environ={"pid": "1", "time": "2"})
    fmt = {k.value: v.value for k, v in c.middlewares["LoggerMiddleware"].config.value}["format"]
    assert fmt == (
        "${pid} | ${locals:requestid} | ${time} | ${status} | ${ip} | ${method} | "
        "${path} | ${error}\n"
    )
    assert c.global_middlewares == ("LoggerMiddleware",)


def test_seam_requestid_global_middleware(tmp_path: Path) -> None:
    c = load_config(install("requestid", tmp_path), environ={})
    assert c.global_middlewares == ("RequestIdMiddleware",)
    assert c.global_middlewares_where[0].line == 10


def test_seam_middlewares_page_any_request_runs_for_every_request(tmp_path: Path) -> None:
    c = load_config(install("middlewares-cors", tmp_path), environ={})
    assert c.middlewares["2_MiddlewareName"].any_request is True
    assert c.global_middlewares == ("2_MiddlewareName",)


def test_seam_server_page_http_example_and_defaults() -> None:
    c = load_config(DATA / "server-http", environ={})
    s = c.server
    assert (s.address, s.prefork) == ("0.0.0.0:8090", True)
    assert (s.tls, s.cert_file, s.key_file) == (False, None, None)
    assert s.body_limit == 4194304 and s.concurrency == 262144
    assert (s.read_timeout, s.write_timeout, s.idle_timeout) == (0.0, 0.0, 0.0)
    assert (s.health_live_route, s.health_ready_route) == ("/health/live", "/health/ready")
    assert (s.read_buffer_size, s.write_buffer_size, s.network) == (4096, 4096, "tcp4")
    assert s.compressed_file_suffix == ".seam.gz" and s.disable_health_check is False
    assert c.plugins == [] and c.routes == {}


def test_seam_server_page_https_example(tmp_path: Path) -> None:
    cfg = install("server-https", tmp_path)
    (cfg / "certs").mkdir()
    (cfg / "certs" / "server.crt").write_text("cert")
    (cfg / "certs" / "server.key").write_text("key")
    s = load_config(cfg, environ={}).server
    assert (s.host, s.port, s.tls) == ("0.0.0.0", 4433, True)
    assert s.cert_file == cfg / "certs" / "server.crt"
    assert s.key_file == cfg / "certs" / "server.key"


# --- forms ---------------------------------------------------------------------------------


SINGLE = """
    plugins:
      - path: ./plugins/requestid.so
    storages:
      Cache:
        use: plugins.memory.storages.MemoryStorage
    middlewares:
      RequestId:
        use: plugins.requestid.middlewares.RequestIdMiddleware
    globalMiddlewares: [RequestId]
    actions:
      Hello:
        use: plugins.static.actions.StaticAction
        config: {body: hello}
    routes:
      Home:
        gatewayPath: /
        methods: [GET, head]
        action: Hello
    server:
      address: 127.0.0.1:9000
      bodyLimit: 10MiB
      readTimeout: 1m30s
      writeTimeout: 250ms
      idleTimeout: 2
    """


def test_single_file_form(tmp_path: Path) -> None:
    plugin_file(tmp_path / "plugins" / "requestid.so")
    os.chmod(tmp_path / "plugins", 0o755)
    write(tmp_path, {"gateway.yaml": SINGLE})
    c = load_config(tmp_path / "gateway.yaml", environ={})
    assert c.files == [tmp_path / "gateway.yaml"]
    assert c.plugins[0].path == tmp_path / "plugins" / "requestid.so"
    assert c.routes["Home"].methods == ("GET", "HEAD")
    assert c.global_middlewares == ("RequestId",)
    s = c.server
    assert (s.host, s.port, s.body_limit) == ("127.0.0.1", 9000, 10 * 1024 * 1024)
    assert (s.read_timeout, s.write_timeout, s.idle_timeout) == (90.0, 0.25, 2.0)
    assert c.routes["Home"].where.file == str(tmp_path / "gateway.yaml")


def test_config_from_text_embedded(tmp_path: Path) -> None:
    plugin_file(tmp_path / "plugins" / "requestid.so")
    os.chmod(tmp_path / "plugins", 0o755)
    c = config_from_text(textwrap.dedent(SINGLE), name="<default>", base_dir=tmp_path, environ={})
    assert c.source == Path("<default>") and c.files == []
    assert c.actions["Hello"].where.file == "<default>"
    assert c.actions["Hello"].where.line == 12  # the text starts with a blank line


@pytest.mark.parametrize(
    "text,line,why",
    [("", 1, "only comments and white space"), ("# soon\n{}\n", 2, "only an empty map '{}'")],
)
def test_config_from_text_refuses_an_empty_text(
    tmp_path: Path, text: str, line: int, why: str
) -> None:
    with pytest.raises(ConfigErrors) as exc:
        config_from_text(text, name="<default>", base_dir=tmp_path, environ={})
    [p] = exc.value.problems
    assert str(p) == (
        f"<default>:{line}: the configuration is empty ({why}): write the "
        "gateway's plugins, actions and routes in it"
    )


def test_both_route_forms_in_one_configuration(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "actions.yaml": """
            actions:
              A: {use: plugins.static.actions.StaticAction}
            """,
            "routes.yaml": """
            routes:
              Users:
                gatewayPath: /users/:id
                methods: [GET, POST]
                action: A
            """,
            # a second file may hold more routes, here in the list form
            "services.yaml": """
            routes:
              - path: /files/*
                method: GET
                action: A
              - name: Health
                gatewayPath: /ping
                methods: ALL
                action: A
            """,
        },
    )
    c = load_config(tmp_path, environ={})
    assert list(c.routes) == ["Users", "GET /files/*", "Health"]
    assert c.routes["Users"].params == ("id",)
    assert c.routes["Health"].methods == ("ALL",)
    assert [e.path for e in c.endpoints] == ["/users/:id", "/files/*", "/ping"]


def test_yml_extension_and_absent_files(tmp_path: Path) -> None:
    write(tmp_path, {"server.yml": "server:\n  address: :8081\n"})
    c = load_config(tmp_path, environ={})
    assert (c.server.host, c.server.port) == ("0.0.0.0", 8081)
    assert c.files == [tmp_path / "server.yml"]


def test_services_base_path_and_middlewares(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "gateway.yaml": """
        middlewares:
          Auth: {use: plugins.jwt.middlewares.JWTValidationMiddleware}
          Log: {use: plugins.logger.middlewares.LoggerMiddleware}
        actions:
          A: {use: plugins.static.actions.StaticAction}
        routes:
          List: {gatewayPath: /, methods: [GET], middlewares: [Log], action: A}
          One: {gatewayPath: /:id, methods: [GET], action: A}
          Orphan: {gatewayPath: /orphan, methods: [GET], action: A}
        services:
          Users:
            gatewayBasePath: /api/users
            middlewares: [Auth]
            routes: [List, One]
        """
        },
    )
    c = load_config(tmp_path / "gateway.yaml", environ={})
    assert [(e.path, e.middlewares) for e in c.endpoints] == [
        ("/api/users", ("Auth", "Log")),
        ("/api/users/:id", ("Auth",)),
    ]
    assert c.services["Users"].base_path == "/api/users"
    [w] = c.warnings
    assert w.where.key == "routes.Orphan" and "not listed by any service" in w.message


def test_yaml_merge_keys_and_x_keys_for_anchors(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "gateway.yaml": """
        x-upstream: &upstream ${UPSTREAM:-http://c}
        actions:
          Third:
            use: plugins.httpfw.actions.HttpAction
            config: {upstreamEndpoint: *upstream}
          Base: &base
            use: plugins.httpfw.actions.HttpAction
            config: {upstreamEndpoint: http://a}
          Other:
            <<: *base
            config: {upstreamEndpoint: http://b}
        """
        },
    )
    c = load_config(tmp_path / "gateway.yaml", environ={})
    other = c.actions["Other"]
    assert other.use == "plugins.httpfw.actions.HttpAction"
    assert other.config.value[0][1].value == "http://b"
    assert c.actions["Third"].config.value[0][1].value == "http://c"


# --- environment variables -----------------------------------------------------------------


ENV_CONFIG = """
    storages:
      Valkey:
        use: plugins.valkey.storages.ValkeyStorage
        config:
          host: ${VALKEY_HOST}
          port: ${VALKEY_PORT:-6379}
          prefix: "${PREFIX:-gw}:"
          password: "${VALKEY_PASSWORD:-}"
          literal: $${NOT_A_VAR}
          tls: ${VALKEY_TLS:-false}
    server:
      address: ${ADDRESS:-0.0.0.0:8090}
    """


def _conf(c: GatewayConfig) -> dict[str, yaml.ScalarNode]:
    return {k.value: v for k, v in c.storages["Valkey"].config.value}


def test_env_substitution_set_and_defaults(tmp_path: Path) -> None:
    write(tmp_path, {"gateway.yaml": ENV_CONFIG})
    c = load_config(
        tmp_path / "gateway.yaml",
        environ={"VALKEY_HOST": "valkey.internal", "ADDRESS": "127.0.0.1:7000"},
    )
    conf = _conf(c)
    assert conf["host"].value == "valkey.internal" and conf["host"].start_mark.line + 1 == 5
    assert conf["port"].value == "6379" and conf["port"].tag == "tag:yaml.org,2002:int"
    assert conf["prefix"].value == "gw:" and conf["prefix"].tag == "tag:yaml.org,2002:str"
    assert conf["password"].value == ""
    assert conf["literal"].value == "${NOT_A_VAR}"
    assert conf["tls"].tag == "tag:yaml.org,2002:bool"
    assert (c.server.host, c.server.port) == ("127.0.0.1", 7000)


def test_env_substitution_set_value_wins_over_default(tmp_path: Path) -> None:
    write(tmp_path, {"gateway.yaml": ENV_CONFIG})
    c = load_config(
        tmp_path / "gateway.yaml",
        environ={"VALKEY_HOST": "h", "VALKEY_PORT": "6380", "PREFIX": "p"},
    )
    conf = _conf(c)
    assert (conf["port"].value, conf["prefix"].value) == ("6380", "p:")


def test_env_substitution_missing_variable(tmp_path: Path) -> None:
    write(tmp_path, {"gateway.yaml": ENV_CONFIG})
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path / "gateway.yaml", environ={})
    [p] = exc.value.problems
    assert (p.where.file, p.where.line, p.where.key) == (
        str(tmp_path / "gateway.yaml"),
        5,
        "storages.Valkey.config.host",
    )
    assert "environment variable 'VALKEY_HOST' is not set" in p.message


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PH_TEST_PORT", "9123")
    write(tmp_path, {"server.yaml": "server:\n  address: 127.0.0.1:${PH_TEST_PORT}\n"})
    assert load_config(tmp_path).server.port == 9123


# --- plugin registration -------------------------------------------------------------------


def test_krakend_folder_registration(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    for name in ("valkey.so", "cors.so", "limiter.so", "README.md", "old.so.bak"):
        plugin_file(plugins / name)
    os.chmod(plugins, 0o755)
    os.chmod(tmp_path, 0o755)
    cfg = write(
        tmp_path / "cfg",
        {
            "plugins.yaml": """
        plugin:
          folder: ../plugins
          pattern: ".so"
        """
        },
    )
    c = load_config(cfg, environ={})
    assert [p.path for p in c.plugins] == [
        plugins / "cors.so",
        plugins / "limiter.so",
        plugins / "valkey.so",
    ]
    assert all(p.origin == "folder" and p.config is None for p in c.plugins)
    assert c.plugins[0].where.key == "plugin.folder" and c.plugins[0].where.line == 2
    write(cfg, {"plugins.yaml": "plugin: {folder: ../plugins, pattern: 'l*.so'}\n"})
    assert [p.path.name for p in load_config(cfg, environ={}).plugins] == ["limiter.so"]


def test_krakend_folder_then_list(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    plugin_file(tmp_path / "plugins" / "valkey.so")
    plugin_file(tmp_path / "extra" / "session.so")
    os.chmod(tmp_path / "plugins", 0o755)
    os.chmod(tmp_path / "extra", 0o755)
    write(
        tmp_path,
        {
            "plugins.yaml": """
        plugin: {folder: plugins}
        plugins:
          - path: extra/session.so
            config: {storage: S}
        storages:
          S: {use: plugins.valkey.storages.ValkeyStorage}
        """
        },
    )
    c = load_config(tmp_path, environ={})
    assert [(p.path.name, p.origin) for p in c.plugins] == [
        ("valkey.so", "folder"),
        ("session.so", "list"),
    ]


def test_sha256_ok(tmp_path: Path) -> None:
    so = plugin_file(tmp_path / "p" / "a.so", b"plugin bytes")
    os.chmod(tmp_path / "p", 0o755)
    digest = hashlib.sha256(b"plugin bytes").hexdigest()
    write(tmp_path, {"plugins.yaml": f"plugins:\n  - path: p/a.so\n    sha256: {digest.upper()}\n"})
    c = load_config(tmp_path, environ={})
    assert c.plugins[0].sha256 == digest and c.plugins[0].path == so


def test_sha256_mismatch(tmp_path: Path) -> None:
    plugin_file(tmp_path / "p" / "a.so", b"rebuilt plugin bytes")
    os.chmod(tmp_path / "p", 0o755)
    stale = hashlib.sha256(b"plugin bytes").hexdigest()
    write(tmp_path, {"plugins.yaml": f"plugins:\n  - path: p/a.so\n    sha256: {stale}\n"})
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path, environ={})
    [p] = exc.value.problems
    assert (p.where.line, p.where.key) == (2, "plugins[0].path")
    actual = hashlib.sha256(b"rebuilt plugin bytes").hexdigest()
    assert actual in p.message and stale in p.message
    assert "rebuild the plugin or update the hash" in p.message


@pytest.mark.parametrize(
    "file_mode,dir_mode,what",
    [
        (0o666, 0o755, "plugin file"),
        (0o644, 0o777, "plugin folder"),
        (0o664, 0o755, "plugin file"),
    ],
)
def test_insecure_permissions_refused_then_allowed(
    tmp_path: Path, file_mode: int, dir_mode: int, what: str
) -> None:
    so = plugin_file(tmp_path / "p" / "a.so", mode=file_mode)
    os.chmod(tmp_path / "p", dir_mode)
    write(tmp_path, {"plugins.yaml": "plugins:\n  - path: p/a.so\n"})
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path, environ={})
    [p] = exc.value.problems
    target = so if what == "plugin file" else so.parent
    mode = file_mode if what == "plugin file" else dir_mode
    assert (p.where.line, p.where.key) == (2, "plugins[0].path")
    assert p.message.startswith(f"{what} {target} is writable by")
    assert f"mode {mode:04o}" in p.message and f"chmod go-w {target}" in p.message
    write(
        tmp_path, {"plugins.yaml": "allowInsecurePermissions: true\nplugins:\n  - path: p/a.so\n"}
    )
    c = load_config(tmp_path, environ={})
    assert c.allow_insecure_permissions is True and c.plugins[0].path == so


def test_insecure_folder_of_krakend_plugins(tmp_path: Path) -> None:
    plugin_file(tmp_path / "plugins" / "a.so")
    os.chmod(tmp_path / "plugins", 0o755)
    os.chmod(tmp_path, 0o757)
    write(tmp_path / "cfg", {"plugins.yaml": "plugin:\n  folder: ../plugins\n"})
    with pytest.raises(ConfigErrors) as exc:
        load_config(tmp_path / "cfg", environ={})
    [p] = exc.value.problems
    assert p.where.key == "plugin.folder"
    assert f"folder holding the plugin folder {tmp_path} is writable by others" in p.message
    os.chmod(tmp_path, 0o755)


# --- value helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("2h45m", 9900.0),
        ("10us", 1e-5),
        ("-1s", -1.0),
        (5, 5.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "1x", "s", "", "1m 30s", "1,5s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "value,words",
    [
        (float("inf"), "'.inf' (infinity) is not a duration"),
        (float("-inf"), "'-.inf' (infinity) is not a duration"),
        (float("nan"), "'.nan' (not a number) is not a duration"),
        (10**400, "a 401-digit number is out of range"),
        (31536001, "'31536001' is out of range: a duration is at most a year (8760h)"),
        ("8761h", "'8761h' is out of range"),
        ("9" * 400 + "s", "(401 characters) is out of range"),
    ],
    ids=lambda v: str(v)[:16],
)
def test_parse_duration_refuses_infinite_nan_and_absurd(value: object, words: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(value)  # type: ignore[arg-type]
    assert words in str(exc.value)


@pytest.mark.parametrize(
    "value,words",
    [
        (float("inf"), "'.inf' (infinity) is not a size"),
        (float("nan"), "'.nan' (not a number) is not a size"),
        (2**62 + 1, "'4611686018427387905' is out of range: a size is at most 2^62 bytes"),
        (-(10**400), "a negative 401-digit number is out of range"),
        ("4194305TiB", "'4194305TiB' is out of range"),
        ("9" * 400, "(400 characters) is out of range"),
    ],
    ids=lambda v: str(v)[:16],
)
def test_parse_size_refuses_infinite_nan_and_absurd(value: object, words: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_size(value)  # type: ignore[arg-type]
    assert words in str(exc.value)


def test_parse_size_and_duration_limits() -> None:
    assert parse_size(2**62) == parse_size("4194304TiB") == 2**62
    assert parse_size("0.1KB") == 100  # exact decimal arithmetic, no 100.00000000000001
    assert parse_duration("8760h") == parse_duration(31536000) == 31536000.0


@pytest.mark.parametrize(
    "text,size",
    [
        (4194304, 4194304),
        ("4MB", 4_000_000),
        ("10MiB", 10 * 2**20),
        ("512KB", 512_000),
        ("64 KiB", 65536),
        ("100B", 100),
        ("1.5GB", 1_500_000_000),
        ("123", 123),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text,expected",
    [
        ("0.0.0.0:8090", ("0.0.0.0", 8090)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:8443", ("::1", 8443)),
        (":9000", ("0.0.0.0", 9000)),
        (8080, ("0.0.0.0", 8080)),
        ("gw.example.com:443", ("gw.example.com", 443)),
    ],
)
def test_parse_address(text: str | int, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0.0",
        "0.0.0.0:0",
        "host:70000",
        "::1:80",
        "a b:80",
        "300.1.1.1:80",
        "[::1]80",
        "host:http",
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)
