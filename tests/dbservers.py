"""Private PostgreSQL and MariaDB servers for the import tests.

Each starts from Debian's binaries in a fresh temporary directory on a free loopback
port and is removed afterwards. PostgreSQL refuses to run as root, so as root it runs as
``nobody``. Without the binaries (a developer machine without root) the tests that need
a server are skipped with the reason, and fail under ``CI``; ``scripts/test.sh``
installs them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


@dataclass(frozen=True)
class Server:
    url: str
    host: str
    port: int
    user: str
    database: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def mariadb_bin() -> tuple[str, str] | None:
    server = shutil.which("mariadbd") or shutil.which("mysqld")
    for candidate in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld"):
        server = server or (candidate if os.access(candidate, os.X_OK) else None)
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if server and install:
        return server, install
    return None


def _as_service_user(command: list[str]) -> tuple[list[str], int | None]:
    """Run as ``nobody`` when we are root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return command, None
    nobody = pwd.getpwnam("nobody")
    return ["runuser", "-u", "nobody", "--", *command], nobody.pw_uid


@contextmanager
def postgres() -> Iterator[Server]:
    bindir = postgres_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="gatelog-pg-")
    _, uid = _as_service_user([])
    if uid is not None:
        os.chown(root, uid, -1)
    data = os.path.join(root, "data")
    port = free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def run(*args: str) -> None:
        command, _ = _as_service_user(list(args))
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=root, timeout=120)

    try:
        run(f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync")  # fmt: skip
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB"
        )
        run(f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start")
        wait_port(port)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        yield Server(url, "127.0.0.1", port, "postgres", "postgres")
    finally:
        with suppress(subprocess.SubprocessError, OSError):
            run(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def mariadb() -> Iterator[Server]:
    found = mariadb_bin()
    if found is None:
        raise FileNotFoundError("MariaDB is not installed (apt-get install mariadb-server)")
    server, install = found
    root = tempfile.mkdtemp(prefix="gatelog-maria-")
    data = os.path.join(root, "data")
    port = free_port()
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=normal", *user],
        check=True, capture_output=True, timeout=180, cwd=root,
    )  # fmt: skip
    process = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={data}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={root}/sock", f"--pid-file={root}/pid",
         "--skip-grant-tables", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
         "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
         f"--log-error={root}/err", *user],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, timeout=60)
        url = f"mysql://root@127.0.0.1:{port}/newapi"
        yield Server(url, "127.0.0.1", port, "root", "newapi")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
