"""The service as an operator runs it: ``python -m service serve`` in its own process, on
the embedded engine in a data directory of its own, on a free local port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data_dir: Path, port: int, log: Path, **settings: str | int) -> subprocess.Popen[bytes]:
    """Start the service; ``settings`` become ``GATELOG_<NAME>`` variables."""
    env = {
        **os.environ,
        "GATELOG_DATA_DIR": str(data_dir),
        "GATELOG_JWT_SECRET": SECRET,
        "GATELOG_HOST": "127.0.0.1",
        "GATELOG_PORT": str(port),
    }
    env.pop("GATELOG_CLICKHOUSE_URL", None)
    env.update({f"GATELOG_{name.upper()}": str(value) for name, value in settings.items()})
    with log.open("ab") as stderr:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Block until ``/readyz`` answers 200 (blocking: for sync tests and fixtures)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service exited during start"
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError("the service did not become ready")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM, then wait; a process that does not stop in time is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
