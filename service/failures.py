"""Start-up and command-line failures: checked before they happen where that is
possible, and each said in one line on stderr that names the cause and the fix.

A traceback is for the developer: it is printed only with ``GATELOG_LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from pathlib import Path

from .errors import ApiError, EngineUnavailable
from .settings import SettingsError

DEBUG_HINT = "GATELOG_LOG_LEVEL=DEBUG shows the traceback"


class StartupError(SettingsError):
    """Something outside the settings keeps a command from starting (a locked data
    directory, a port in use); the message names it and the fix."""


def check_data_dir(path: str) -> None:
    """The embedded engine's directory exists (created if need be), is writable and is
    not held by another process: said here, before chDB would print its own error."""
    where = Path(path)
    try:
        where.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StartupError(
            f"the data directory {path} is a file, not a directory: "
            "point GATELOG_DATA_DIR at a directory"
        ) from None
    except OSError as exc:
        raise StartupError(
            f"the data directory {path} cannot be created ({(exc.strerror or str(exc)).lower()}): "
            "point GATELOG_DATA_DIR at a directory this user may write"
        ) from None
    if not where.is_dir():
        raise StartupError(
            f"the data directory {path} is not a directory: point GATELOG_DATA_DIR at one"
        )
    if not os.access(where, os.W_OK | os.X_OK):
        raise StartupError(
            f"the data directory {path} is not writable by this user: fix its permissions, "
            "or point GATELOG_DATA_DIR elsewhere"
        )
    pid = holder(where)
    if pid is not None:
        who = f" (pid {pid})" if pid > 0 else ""
        raise StartupError(
            f"the data directory {path} is in use by another gatelog process{who}: "
            "stop it, or point GATELOG_DATA_DIR elsewhere"
        )


def holder(directory: Path) -> int | None:
    """The pid of another process holding the engine's lock on ``directory`` (0 when
    its pid is unknown), else None. The engine locks ``status`` and writes its pid in."""
    import fcntl

    status = directory / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        pid = _pid_in(status)
        if pid == os.getpid():
            return None  # this process opened the engine already (tests, a second store)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return pid or 0
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _pid_in(status: Path) -> int | None:
    try:
        first = status.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    label, _, value = first.partition(":")
    value = value.strip()
    return int(value) if label.strip() == "PID" and value.isdigit() else None


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host:port``, bound before anything else starts, so a port
    in use is a one-line refusal and not a traceback after the engine was opened."""
    if not 0 < port < 65536:
        raise StartupError(f"port {port} is not a TCP port: use --port or GATELOG_PORT 1-65535")
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise StartupError(
            f"the listen address {host!r} is not an address of this host: "
            "use --host or GATELOG_HOST, e.g. 0.0.0.0 (every interface) or 127.0.0.1"
        ) from None
    sockets: list[socket.socket] = []
    seen = set()
    for family, kind, proto, _name, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        sock = socket.socket(family, kind, proto)
        sockets.append(sock)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            for opened in sockets:
                opened.close()
            raise _bind_error(host, port, exc) from None
    return sockets


def _bind_error(host: str, port: int, exc: OSError) -> StartupError:
    if exc.errno == errno.EADDRINUSE:
        return StartupError(
            f"port {port} on {host} is already in use by another process: stop it, or "
            "choose another port with --port or GATELOG_PORT"
        )
    if exc.errno == errno.EACCES:
        return StartupError(
            f"port {port} on {host} needs privileges this user lacks: use a port above "
            "1023 with --port or GATELOG_PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupError(
            f"{host} is not an address of this host: use --host or GATELOG_HOST, "
            "e.g. 0.0.0.0 or 127.0.0.1"
        )
    return StartupError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another")


def one_line(command: str, exc: BaseException) -> str:
    """The line a failed command prints: the cause, and what to do about it."""
    if isinstance(exc, SettingsError):
        return f"gatelog: {exc}"
    if isinstance(exc, EngineUnavailable) and os.environ.get("GATELOG_CLICKHOUSE_URL"):
        return (
            f"gatelog: {command}: {exc.message}: check that the ClickHouse server "
            f"GATELOG_CLICKHOUSE_URL names is running and reachable, and its user and "
            f"password ({DEBUG_HINT})"
        )
    if isinstance(exc, ApiError):
        return f"gatelog: {command}: {exc.message} ({DEBUG_HINT})"
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"gatelog: {command}: {exc.strerror}{where} ({DEBUG_HINT})"
    text = str(exc).splitlines()[0] if str(exc) else ""
    detail = f": {text}" if text else ""
    return f"gatelog: {command} failed: {type(exc).__name__}{detail} ({DEBUG_HINT})"


def debugging() -> bool:
    return os.environ.get("GATELOG_LOG_LEVEL", "").strip().upper() == "DEBUG"


def report(command: str, exc: BaseException) -> int:
    """Print the failure (a traceback too when debugging); the exit code."""
    if debugging():
        import traceback

        traceback.print_exception(exc)
    print(one_line(command, exc), file=sys.stderr)
    return 2 if isinstance(exc, SettingsError) else 1


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
