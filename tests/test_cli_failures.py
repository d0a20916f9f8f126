"""Every start-up and command-line failure is one line on stderr naming the cause and the
fix, with a non-zero exit and no traceback (a traceback only at GATELOG_LOG_LEVEL=DEBUG).

Each case runs ``python -m service`` as a subprocess, as a user would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD_SECRET = "a-secret-of-more-than-thirty-two-bytes-for-hs256"
TOKEN = ["token", "--sub", "7", "--username", "bob", "--role", "1"]


def run(args: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATELOG_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("gatelog: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def held_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A data directory the real engine holds open in another process."""
    path = tmp_path_factory.mktemp("held")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, chdb
                conn = chdb.connect({str(path)!r})
                conn.query("SELECT 1")
                print("ready", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    yield path, holder.pid
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)
    assert holder.stdout is not None
    holder.stdout.close()


@pytest.mark.parametrize(
    "args",
    [
        ["migrate"],
        ["serve", "--host", "127.0.0.1", "--port", "{port}"],
        ["generate", "--rows", "10"],
    ],
    ids=lambda a: a[0],
)
def test_a_data_dir_held_by_another_process(held_dir: tuple[Path, int], args: list[str]) -> None:
    path, pid = held_dir
    args = [arg.format(port=free_port()) for arg in args]
    result = run(args, GATELOG_DATA_DIR=str(path), GATELOG_JWT_SECRET=GOOD_SECRET)
    line = one_line_failure(
        result, f"the data directory {path} is in use by another gatelog process (pid {pid})"
    )
    assert "stop it, or point GATELOG_DATA_DIR elsewhere" in line


def test_debug_level_adds_the_traceback(held_dir: tuple[Path, int]) -> None:
    path, _ = held_dir
    result = run(["migrate"], GATELOG_DATA_DIR=str(path), GATELOG_LOG_LEVEL="DEBUG")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "is in use by another gatelog process" in result.stderr.splitlines()[-1]


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "data"
    file.write_text("")
    result = run(["migrate"], GATELOG_DATA_DIR=str(file))
    one_line_failure(result, f"the data directory {file} is a file", "GATELOG_DATA_DIR")


def test_a_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    where = file / "data"  # below a file: no user, root included, can create it
    result = run(["migrate"], GATELOG_DATA_DIR=str(where))
    one_line_failure(result, f"the data directory {where} cannot be created", "GATELOG_DATA_DIR")


def test_a_data_dir_this_user_cannot_write(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        where = Path("/proc/1")  # a directory even root may not write (root skips modes)
    else:
        where = tmp_path / "read-only"
        where.mkdir(mode=0o500)
    result = run(["migrate"], GATELOG_DATA_DIR=str(where))
    one_line_failure(result, f"the data directory {where} is not writable", "GATELOG_DATA_DIR")


def test_an_unreachable_clickhouse_server() -> None:
    url = f"http://default:@127.0.0.1:{free_port()}/gatelog"
    result = run(["migrate"], GATELOG_CLICKHOUSE_URL=url)
    one_line_failure(result, "the log engine is unavailable", "GATELOG_CLICKHOUSE_URL")


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = run(
            ["serve", "--host", "127.0.0.1", "--port", str(port)],
            GATELOG_DATA_DIR=str(tmp_path / "data"),
            GATELOG_JWT_SECRET=GOOD_SECRET,
        )
    finally:
        taken.close()
    one_line_failure(result, f"port {port} on 127.0.0.1 is already in use", "--port")
    assert "stopping" not in result.stdout + result.stderr
    assert not (tmp_path / "data").exists()  # the engine was never opened


def test_an_unknown_listen_address(tmp_path: Path) -> None:
    result = run(
        ["serve", "--host", "no-such-host.invalid"],
        GATELOG_DATA_DIR=str(tmp_path / "data"),
        GATELOG_JWT_SECRET=GOOD_SECRET,
    )
    one_line_failure(result, "'no-such-host.invalid' is not an address", "GATELOG_HOST")


def test_serve_without_a_secret(tmp_path: Path) -> None:
    result = run(["serve"], GATELOG_DATA_DIR=str(tmp_path / "data"))
    one_line_failure(result, "no JWT key configured", "GATELOG_JWT_SECRET")


def test_serve_refuses_a_secret_shorter_than_pyjwt_allows(tmp_path: Path) -> None:
    result = run(["serve"], GATELOG_DATA_DIR=str(tmp_path / "data"), GATELOG_JWT_SECRET="abc")
    line = one_line_failure(result, "GATELOG_JWT_SECRET is 3 bytes")
    assert "openssl rand -hex 32" in line
    # pyjwt's own minimum for HS256 (RFC 7518 3.2: the hash's size) is what is named.
    with pytest.warns(jwt.InsecureKeyLengthWarning, match="32 bytes"):
        jwt.encode({"sub": "1"}, "abc", algorithm="HS256")
    assert "32 bytes" in line


def test_token_without_a_secret() -> None:
    one_line_failure(run(TOKEN), "token needs GATELOG_JWT_SECRET", ". ./.env")


def test_token_in_a_public_key_setup() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    result = run(TOKEN, GATELOG_JWT_PUBLIC_KEY=public)
    one_line_failure(result, "GATELOG_JWT_PUBLIC_KEY", "identity provider")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (["--sub", "abc"], "--sub must be the gateway's user id"),
        (["--sub", str(2**63)], "got '9223372036854775808'"),
        (["--ttl", "0"], "--ttl must be a positive number of seconds (default 3600)"),
        (["--ttl", "-100"], "got -100"),
        (["--role", "admin"], "argument --role: invalid int value: 'admin'"),
    ],
)
def test_token_refuses_what_serve_would_refuse(change: list[str], needle: str) -> None:
    options = {"--sub": "7", "--username": "bob", "--role": "1"}
    options.update(zip(change[::2], change[1::2], strict=True))
    args = ["token", *[part for option in options.items() for part in option]]
    one_line_failure(run(args, GATELOG_JWT_SECRET=GOOD_SECRET), needle)


def test_token_prints_one_the_service_accepts_with_an_hour_by_default() -> None:
    result = run([*TOKEN, "--scope", "logs:write"], GATELOG_JWT_SECRET=GOOD_SECRET)
    assert result.returncode == 0 and result.stderr == ""
    claims: dict[str, Any] = jwt.decode(result.stdout.strip(), GOOD_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3600
    assert (claims["sub"], claims["role"], claims["scope"]) == ("7", 1, "logs:write")
