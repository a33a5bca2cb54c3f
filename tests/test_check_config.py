"""`plughost check --config` on real configuration folders: every kind of mistake comes
back as one line with file, line and key, all at once, exit 1, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from gateway_support import free_port, private_plugins, write_config

PLUGHOST = str(Path(sys.executable).with_name("plughost"))


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [PLUGHOST, "check", "--config", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def edit(name: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / name
        text = path.read_text()
        assert old in text, (old, text)
        path.write_text(text.replace(old, new, 1))

    return apply


def write(name: str, text: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / name).write_text(text)

    return apply


# (id, change to a good configuration, file, line, key, words of the message)
CASES = [
    (
        "yaml-syntax",
        edit("routes.yaml", "  Hello:\n", "  Hello\n"),
        "routes.yaml",
        None,
        None,
        "YAML syntax error",
    ),
    (
        "unknown-use-id",
        edit("middlewares.yaml", "RequestIdMiddleware", "RequestIDMiddleware"),
        "middlewares.yaml",
        3,
        "middlewares.RequestID.use",
        "did you mean 'plugins.requestid.middlewares.RequestIdMiddleware'",
    ),
    (
        "use-of-wrong-kind",
        edit(
            "actions.yaml",
            "plugins.trace.actions.EchoAction",
            "plugins.trace.middlewares.TraceMiddleware",
        ),
        "actions.yaml",
        3,
        "actions.Echo.use",
        "is a middleware, not a action",
    ),
    (
        "plugin-config-error",
        edit("middlewares.yaml", "config: {name: B}", "config: {name: B, fail: sometimes}"),
        "middlewares.yaml",
        9,
        "middlewares.B.config.fail",
        'must be "request" or "response"',
    ),
    (
        "plugin-config-type",
        edit("actions.yaml", "timeout: 1s", "timeout: soon"),
        "actions.yaml",
        12,
        "actions.Forward.config.timeout",
        "expected a duration",
    ),
    (
        "storage-config-type",
        write(
            "storages.yaml",
            "storages:\n  Memory:\n    use: plugins.memory."
            "storages.MemoryStorage\n    config:\n      maxEntries: lots\n",
        ),
        "storages.yaml",
        5,
        "storages.Memory.config.maxEntries",
        "'maxEntries' must be a whole number, not 'lots'",
    ),
    (
        "required-option-missing",
        edit("actions.yaml", "      url: http://127.0.0.1:9\n", ""),
        "actions.yaml",
        None,
        "actions.Forward.config.url",
        "is required",
    ),
    (
        "undefined-middleware",
        edit("routes.yaml", "middlewares: [A, B]", "middlewares: [A, Bee]"),
        "routes.yaml",
        None,
        "routes.Traced.middlewares[1]",
        "'Bee', which is not defined",
    ),
    (
        "undefined-action",
        edit("routes.yaml", "action: Hello", "action: Helo"),
        "routes.yaml",
        5,
        "routes.Hello.action",
        "did you mean 'Hello'",
    ),
    (
        "undefined-global",
        edit("middlewares.yaml", "  - RequestID", "  - RequestId"),
        "middlewares.yaml",
        None,
        "globalMiddlewares[0]",
        "not defined",
    ),
    (
        "duplicate-name",
        edit("middlewares.yaml", "  B:\n", "  A:\n"),
        "middlewares.yaml",
        None,
        "middlewares.A",
        "twice",
    ),
    (
        "path-without-slash",
        edit("routes.yaml", "gatewayPath: /traced", "gatewayPath: traced"),
        "routes.yaml",
        None,
        "routes.Traced.gatewayPath",
        "must start with '/'",
    ),
    (
        "wildcard-not-last",
        edit("routes.yaml", "/files/*", "/files/*/meta"),
        "routes.yaml",
        None,
        "routes.Files.gatewayPath",
        "last segment",
    ),
    (
        "bad-param",
        edit("routes.yaml", "/users/:id", "/users/:1st"),
        "routes.yaml",
        None,
        "routes.User.gatewayPath",
        "not a name",
    ),
    (
        "bad-method",
        edit("routes.yaml", "methods: [GET, POST]", "methods: [GET, FETCH]"),
        "routes.yaml",
        8,
        "routes.Traced.methods[1]",
        "not an HTTP method",
    ),
    (
        "route-conflict",
        edit("routes.yaml", "gatewayPath: /early", "gatewayPath: /traced"),
        "routes.yaml",
        None,
        None,
        "matches the same requests",
    ),
    (
        "no-action",
        edit(
            "routes.yaml",
            "    middlewares: [A, Teapot, B]\n    action: Echo\n",
            "    middlewares: [A, Teapot, B]\n",
        ),
        "routes.yaml",
        None,
        "routes.Early",
        "has no action",
    ),
    (
        "bad-address",
        write("server.yaml", "server:\n  address: 127.0.0.1:70000\n"),
        "server.yaml",
        2,
        "server.address",
        "out of range",
    ),
    (
        "bad-duration",
        write("server.yaml", "server:\n  readTimeout: 30 seconds\n"),
        "server.yaml",
        2,
        "server.readTimeout",
        "not a duration",
    ),
    (
        "bad-body-limit",
        write("server.yaml", "server:\n  bodyLimit: 0\n"),
        "server.yaml",
        2,
        "server.bodyLimit",
        "positive",
    ),
    (
        "tls-without-files",
        write(
            "server.yaml",
            "server:\n  tls: true\n  certFile: /nonexistent/c.pem\n  keyFile: /nonexistent/k.pem\n",
        ),
        "server.yaml",
        None,
        None,
        "does not exist",
    ),
    (
        "unknown-key",
        edit("routes.yaml", "gatewayPath: /users/:id", "gatwayPath: /users/:id"),
        "routes.yaml",
        None,
        None,
        "did you mean 'gatewayPath'",
    ),
    (
        "unset-variable",
        edit("actions.yaml", "http://127.0.0.1:9", "${PLUGHOST_TEST_UNSET_VAR}"),
        "actions.yaml",
        11,
        None,
        "'PLUGHOST_TEST_UNSET_VAR' is not set",
    ),
    (
        "missing-plugin-file",
        edit("plugins.yaml", "static.so", "statik.so"),
        "plugins.yaml",
        None,
        None,
        "does not exist",
    ),
    ("plugin-refused", None, "plugins.yaml", None, None, "built for aarch64"),
    (
        "plugin-init-fails",
        None,
        "plugins.yaml",
        None,
        None,
        "cannot open /nonexistent/key.pem: No such file or directory",
    ),
    (
        "plugin-order",
        None,
        "plugins.yaml",
        6,
        "plugins[2].config.storage",
        "move memory.so before trace.so",
    ),
    (
        "sha256-mismatch",
        edit("plugins.yaml", "static.so\n", "static.so\n    sha256: " + "0" * 64 + "\n"),
        "plugins.yaml",
        None,
        None,
        "update the hash",
    ),
    ("insecure-permissions", None, "plugins.yaml", None, None, "chmod go-w"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_bad_configuration_gets_one_clear_line(
    case: tuple, tmp_path: Path, test_plugin_dir: Path, badfiles: dict[str, Path]
) -> None:
    name, change, file, line, key, words = case
    plugins = private_plugins(test_plugin_dir, tmp_path / "plugins")
    folder = write_config(tmp_path / "config", plugins)
    if name == "plugin-refused":
        (plugins / "static.so").write_bytes(badfiles["aarch64"].read_bytes())
    elif name == "plugin-init-fails":
        (plugins / "static.so").write_bytes(badfiles["initfail"].read_bytes())
    elif name == "plugin-order":
        text = (folder / "plugins.yaml").read_text()
        text = text.replace(f"  - path: {plugins}/memory.so\n", "")
        text = text.replace(
            "trace.so\n",
            f"trace.so\n    config:\n      storage: Memory\n  - path: {plugins}/memory.so\n",
        )
        (folder / "plugins.yaml").write_text(text)
    elif name == "insecure-permissions":
        (plugins / "static.so").chmod(0o777)
    else:
        change(folder)
    proc = check(folder)
    assert proc.returncode == 1, proc.stdout
    lines = [l for l in proc.stdout.splitlines() if l and not l[0].isdigit()]
    matching = [l for l in lines if words in l]
    assert matching, proc.stdout
    found = matching[0]
    prefix = str(folder / file)
    if line is not None:
        prefix += f":{line}:"
    assert found.startswith(prefix), (found, prefix)
    if key is not None:
        assert f": {key}: " in found, (found, key)


def test_several_problems_in_several_files_are_reported_together(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir)
    edit("middlewares.yaml", "RequestIdMiddleware", "RequestIDMiddleware")(folder)
    edit("actions.yaml", "timeout: 1s", "timeout: soon")(folder)
    proc = check(folder)
    assert proc.returncode == 1
    assert "middlewares.RequestID.use" in proc.stdout
    assert "actions.Forward.config.timeout" in proc.stdout
    assert "2 problem(s) in" in proc.stdout


def test_a_good_configuration_passes(tmp_path: Path, test_plugin_dir: Path) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir)
    proc = check(folder)
    assert proc.returncode == 0, proc.stdout
    assert "the gateway builds with this configuration" in proc.stdout


def test_plugin_order_right_way_round_works(tmp_path: Path, test_plugin_dir: Path) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir)
    edit("plugins.yaml", "trace.so\n", "trace.so\n    config:\n      storage: Memory\n")(folder)
    assert check(folder).returncode == 0


def test_embedded_default_checks_clean() -> None:
    from plughost.defaults import DEFAULT_CONFIG

    # Its plugins are named: they resolve to the bundle (build/plugins/ in a checkout).
    proc = subprocess.run(
        [PLUGHOST, "check", "--config", str(DEFAULT_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_usage_errors(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PLUGHOST, "check", "--config", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr
    proc = subprocess.run(
        [PLUGHOST, "check", "--config", str(tmp_path), "x.so"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "not both" in proc.stderr


def _empty_file(folder: Path) -> Path:
    """A --config FILE holding only comments (the folder is left aside)."""
    path = folder.parent / "gateway.yaml"
    path.write_text("# the gateway, some day\n")
    return path


def _only_empty_routes(folder: Path) -> Path:
    for f in folder.iterdir():
        f.unlink()
    (folder / "routes.yaml").write_text("{}\n")
    return folder


def _open_folder_above_plugins(folder: Path) -> Path:
    folder.parent.chmod(0o777)  # tmp_path, above tmp_path/deep/plugins
    return folder


# (id, change -> the --config path, the sentence both commands print)
HARDENING: list[tuple[str, Callable[[Path], Path | None], str]] = [
    (
        "idle-timeout-inf",
        write("server.yaml", "server:\n  idleTimeout: .inf\n"),
        "server.yaml:2: server.idleTimeout: '.inf' (infinity) is not a duration: write a number "
        "of seconds or a text such as '30s' or '1m30s'",
    ),
    (
        "body-limit-nan",
        write("server.yaml", "server:\n  bodyLimit: .nan\n"),
        "server.yaml:2: server.bodyLimit: '.nan' (not a number) is not a size: write a number "
        "of bytes such as 4194304, or a size such as '4MiB'",
    ),
    (
        "read-timeout-400-digits",
        write("server.yaml", "server:\n  readTimeout: " + "9" * 400 + "\n"),
        "server.yaml:2: server.readTimeout: '999999999999…999999' (400 characters) is out of "
        "range: a duration is at most a year (8760h); write e.g. '30s' or '2h'",
    ),
    (
        "empty-file",
        _empty_file,
        "gateway.yaml:1: the configuration file is empty (only comments and white space): write "
        "the gateway's plugins, actions and routes in it, or give the path of the file or folder "
        "that holds them",
    ),
    (
        "only-file-empty",
        _only_empty_routes,
        "routes.yaml:1: the configuration file is empty (only an empty map '{}') and is the only "
        "one in ",
    ),
    (
        "middleware-twice",
        edit("routes.yaml", "middlewares: [A, B]", "middlewares: [A, B, A]"),
        "routes.yaml:9: routes.Traced.middlewares[2]: middleware 'A' is listed twice in the "
        "middlewares of route 'Traced' (first on line 9): list it once",
    ),
    (
        "route-repeats-global",
        edit("routes.yaml", "middlewares: [A, B]", "middlewares: [RequestID, A, B]"),
        "routes.yaml:9: routes.Traced.middlewares[0]: middleware 'RequestID' is listed by route "
        "'Traced' but it is global (globalMiddlewares at ",
    ),
    ("insecure-folder-above", _open_folder_above_plugins, "(on the path to plugin "),
]


@pytest.mark.parametrize("case", HARDENING, ids=[c[0] for c in HARDENING])
def test_check_and_serve_refuse_in_one_sentence(
    case: tuple, tmp_path: Path, test_plugin_dir: Path
) -> None:
    name, change, sentence = case
    plugins = private_plugins(test_plugin_dir, tmp_path / "deep" / "plugins")
    (tmp_path / "deep").chmod(0o755)
    folder = write_config(tmp_path / "config", plugins)
    config = change(folder) or folder
    proc = check(config)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    problems = [l for l in proc.stdout.splitlines() if l and not l[0].isdigit()]
    assert len(problems) == 1 and sentence in problems[0], proc.stdout
    assert proc.stdout.splitlines()[-1] == f"1 problem(s) in {config}"
    serve = subprocess.run(
        [PLUGHOST, "serve", "--config", str(config), "--address", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode == 1, serve.stdout + serve.stderr
    assert "Traceback" not in serve.stdout + serve.stderr
    assert serve.stderr.splitlines() == [
        problems[0],
        "plughost: 1 problem(s) in the configuration; nothing was started",
    ]


def test_an_address_in_use_or_not_of_this_host_is_one_sentence(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    import socket

    folder = write_config(tmp_path / "config", test_plugin_dir)
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        (folder / "server.yaml").write_text(f"server:\n  address: 127.0.0.1:{port}\n")
        proc = check(folder)
        assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
        assert (
            f"server.yaml:2: server.address: 127.0.0.1:{port} is in use by another "
            "process" in proc.stdout
        ), proc.stdout
        serve = subprocess.run(
            [PLUGHOST, "serve", "--config", str(folder)], capture_output=True, text=True, timeout=60
        )
        assert serve.returncode == 1 and "Traceback" not in serve.stderr
        assert f"127.0.0.1:{port} is in use by another process" in serve.stderr
        serve = subprocess.run(
            [PLUGHOST, "serve", "--config", str(folder), "--address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert serve.returncode == 1 and f"--address: 127.0.0.1:{port} is in use" in serve.stderr
    finally:
        taken.close()
    (folder / "server.yaml").write_text("server:\n  address: 192.0.2.1:8090\n")  # TEST-NET-1
    proc = check(folder)
    assert proc.returncode == 1
    assert "server.address: 192.0.2.1:8090 is not an address of this host" in proc.stdout


def test_a_garbage_tls_certificate_is_one_sentence(tmp_path: Path, test_plugin_dir: Path) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir)
    (folder / "cert.pem").write_text(
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"
    )
    (folder / "key.pem").write_text("not a key\n")
    (folder / "server.yaml").write_text(
        "server:\n  tls: true\n  certFile: cert.pem\n  keyFile: key.pem\n"
    )
    proc = check(folder)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "server.yaml:3: server.certFile: " in proc.stdout, proc.stdout
    assert "are not a usable TLS certificate and private key" in proc.stdout
    serve = subprocess.run(
        [PLUGHOST, "serve", "--config", str(folder), "--address", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode == 1 and "Traceback" not in serve.stderr + serve.stdout
    assert "are not a usable TLS certificate and private key" in serve.stderr
    assert "serving on https" not in serve.stdout


def test_a_crash_while_the_gateway_is_built_names_where_it_happened(
    tmp_path: Path, test_plugin_dir: Path, badfiles: dict[str, Path]
) -> None:
    """A plugin whose init hook crashes is named; a crash outside any plugin hook is said to
    be plughost's own (a 10^8-leaf configuration once crashed the host's runtime, and the
    message blamed a plugin)."""
    from plughost.checking.check import _crash_sentence

    plugins = private_plugins(test_plugin_dir, tmp_path / "plugins")
    folder = write_config(tmp_path / "config", plugins)
    (plugins / "static.so").write_bytes(badfiles["segv"].read_bytes())
    proc = check(folder)
    assert proc.returncode == 1, proc.stdout
    first = proc.stdout.splitlines()[0]
    assert first == (
        f"{folder}: a plugin crashed with SIGSEGV while the gateway was built, in "
        "the init hook of plugin segv: fix or remove that plugin, or check it with "
        "`plughost check --load`"
    ), proc.stdout
    # the sentence for a crash report that names no hook
    report = "plughost: worker 7 crashed with SIGSEGV outside any plugin hook: the worker ends"
    sentence = _crash_sentence("cfg", 11, report)
    assert (
        sentence.startswith("cfg: plughost itself crashed with SIGSEGV")
        and "no plugin hook was running" in sentence
    )


NINE_MISTAKES = """\
plugins:
  - path: {plugins}/memory.so
  - path: {plugins}/limiter.so
    config:
      foo: 1
  - path: {plugins}/static.so
storages:
  Mem:
    use: plugins.memory.storages.MemoryStorage
middlewares:
  Limit:
    use: plugins.limiter.middlewares.LimiterMiddlewar
  Limit2:
    use: plugins.limiter.middlewares.LimiterMiddleware
    config:
      storage: Mem
      maxConnection: 10
      expiration: -5s
globalMiddlewares: [Limt]
actions:
  Hello:
    use: plugins.static.actions.StaticAction
routes:
  Home:
    gatewayPath: /
    methods: [GETT]
    middlewares: [Nope]
    action: Helo
server:
  adress: 127.0.0.1:8090
"""


def test_nine_mistakes_in_one_run(tmp_path: Path, plugin_dir: Path) -> None:
    """Structural mistakes (names, methods, server keys) and those only the plugins can
    judge (their own config, type ids, every instance's options) in one run: check goes on
    past the first kind with whatever can still be checked."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        NINE_MISTAKES.format(plugins=private_plugins(plugin_dir, tmp_path / "plugins"))
    )
    res = check(config)
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert lines[-1] == f"9 problem(s) in {config}", res.stdout
    where = [line.split(": ", 2)[:2] for line in lines[:-1]]
    assert where == [
        [f"{config}:5", "plugins[1].config.foo"],
        [f"{config}:12", "middlewares.Limit.use"],
        [f"{config}:17", "middlewares.Limit2.config.maxConnection"],
        [f"{config}:18", "middlewares.Limit2.config.expiration"],
        [f"{config}:19", "globalMiddlewares[0]"],
        [f"{config}:26", "routes.Home.methods[0]"],
        [f"{config}:27", "routes.Home.middlewares[0]"],
        [f"{config}:28", "routes.Home.action"],
        [f"{config}:30", "server.adress"],
    ], res.stdout
    assert "did you mean 'plugins.limiter.middlewares.LimiterMiddleware'?" in lines[1]
    assert "did you mean 'maxConnections'?" in lines[2]
