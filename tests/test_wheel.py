"""The built wheel, installed outside the checkout, is a whole service: every module of
the checkout is in it, the migrator finds the schema in it, every subcommand answers
``--help`` and ``serve`` becomes ready on a fresh data directory.

The installed copy runs with ``python -S`` (no site directory, so no editable install of
the checkout) and ``PYTHONPATH`` = the install directory, then the test environment's
site-packages for the dependencies; the working directory is a temporary one, so
nothing is found in the checkout by accident."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SECRET
from tests.support import serve

ROOT = Path(__file__).resolve().parent.parent
#: the subcommands spec/contract.md names
CONTRACT_COMMANDS = {"serve", "migrate", "token", "import", "generate", "bench", "retention"}


def build_context() -> list[Path]:
    """What the image's build reads: the paths ``.dockerignore`` lets in (it excludes
    everything, then re-includes each ``!`` entry). The wheel is built from a copy of
    just these, so that a package the image's build would not see fails here, and no
    build/ left in the checkout by an earlier build puts stale modules in the wheel."""
    paths: list[Path] = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        if line.startswith("!"):
            paths.extend(sorted(ROOT.glob(line[1:].strip().rstrip("/"))))
    return paths


@dataclass(frozen=True)
class Installed:
    wheel: Path
    target: Path
    cwd: Path

    def env(self, **extra: str) -> dict[str, str]:
        paths = [str(self.target)]
        for key in ("purelib", "platlib"):
            site = sysconfig.get_paths()[key]
            if site not in paths:
                paths.append(site)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATELOG_")}
        return {**env, "PYTHONPATH": os.pathsep.join(paths), **extra}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", *args],
            cwd=self.cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    source, dist, target, cwd = (base / name for name in ("src", "dist", "target", "cwd"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    source.mkdir()
    for path in build_context():
        if path.is_dir():
            shutil.copytree(path, source / path.name, ignore=ignore)
        else:
            shutil.copy2(path, source / path.name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("gatelog-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    cwd.mkdir()
    yield Installed(wheel, target, cwd)


def test_the_wheel_holds_every_module_and_schema_file_of_the_checkout(
    installed: Installed,
) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for package in ("service", "tools"):
        for path in (ROOT / package).rglob("*.py"):
            assert path.relative_to(ROOT).as_posix() in names
    for path in (ROOT / "schema").glob("*.sql"):
        assert f"service/schema/{path.name}" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]


def test_the_installed_copy_is_the_one_that_runs(installed: Installed) -> None:
    done = installed.run("-c", "import service, tools; print(service.__file__, tools.__file__)")
    assert done.returncode == 0, done.stderr
    for file in done.stdout.split():
        assert Path(file).is_relative_to(installed.target), done.stdout


def test_help_lists_every_subcommand_and_each_answers_help(installed: Installed) -> None:
    done = installed.run("-m", "service", "--help")
    assert done.returncode == 0, done.stderr
    listed = set(re.findall(r"^ {4}([a-z][a-z-]*)\b", done.stdout, re.MULTILINE))
    assert listed >= CONTRACT_COMMANDS, done.stdout
    # every subcommand's --help in one interpreter: an import per command is the cost
    script = (
        "import contextlib, io, sys\n"
        "from service.cli import main\n"
        "for name in sys.argv[1:]:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main([name, '--help'])\n"
        "        except SystemExit as stop:\n"
        "            assert stop.code == 0, (name, stop.code)\n"
        "    print(name, out.getvalue().splitlines()[0])\n"
    )
    done = installed.run("-c", script, *sorted(listed))
    assert done.returncode == 0, done.stderr
    usages = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert set(usages) == listed
    for name, usage in usages.items():
        assert usage.startswith(f"usage: python -m service {name}"), usage


def test_migrate_and_serve_from_the_installed_copy(installed: Installed, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = {"GATELOG_DATA_DIR": str(data), "GATELOG_JWT_SECRET": SECRET}
    done = installed.run("-m", "service", "migrate", **settings)
    assert done.returncode == 0, done.stderr
    applied = done.stdout.strip().removeprefix("applied: ").split(", ")
    assert applied == sorted(path.stem for path in (ROOT / "schema").glob("*.sql"))

    port = serve.free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "service", "serve", "--host", "127.0.0.1"],
            cwd=installed.cwd,
            env=installed.env(**settings, GATELOG_PORT=str(port)),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        serve.wait_ready(base, proc, timeout=60)  # /readyz: the engine and a current schema
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        code = serve.stop(proc)
    assert code == 0, log.read_text()[-2000:]
