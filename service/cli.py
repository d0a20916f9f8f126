"""The subcommands of ``python -m service``. Each is a small function that builds
``Settings`` from the environment and does one thing."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .commands import Command, discovered, missing_hint, with_store
from .failures import bind, close_all, report
from .settings import Settings, SettingsError, retired_settings

#: how often `serve` hands the interpreter between threads (see cmd_serve)
SWITCH_INTERVAL_SECONDS = 0.0005


def _setup_logging(settings: Settings) -> None:
    from .jsonlog import setup

    setup(settings.log_level)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from .app import create_app

    settings.check_auth()
    for warning in retired_settings():
        logging.getLogger("gatelog").warning(warning)
    host = args.host or settings.host
    port = args.port or settings.port
    # The port is taken before the engine is opened: a port in use is a one-line
    # refusal, not a traceback after start-up (service/failures.py).
    sockets = bind(host, port)
    # Hand the interpreter between threads every 0.5 ms instead of Python's 5: a caller's
    # heavy Python work on rows (an export window, on a worker thread) otherwise holds it
    # for up to 5 ms at every hand-over the event loop and the engine's result threads
    # wait for. Soak at 1M rows, one hostile user beside two polling dashboards (quiet
    # machine, docs/limits.md "Fairness measured"): their p50 with the hostile user went
    # from 2.9-3.2x their value without to 2.2-2.3x.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    try:
        app = create_app(settings)
        # run_app handles SIGTERM/SIGINT: stop accepting, let in-flight requests finish
        # (up to shutdown_timeout), then run the cleanup contexts (engine closed last).
        web.run_app(
            app,
            sock=sockets,
            access_log=None,
            shutdown_timeout=30.0,
            print=lambda msg: logging.getLogger("gatelog").info(msg),
        )
    finally:
        close_all(sockets)
    logging.getLogger("gatelog").info("stopped")
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from .migrate import migrate

    applied = with_store(
        settings, lambda store: migrate(store, cluster=settings.clickhouse_cluster)
    )
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0


#: the token command's default lifetime, in seconds (--help and the README say it)
TOKEN_TTL = 3600


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    """Refuses what the service would refuse: the token printed is one it accepts."""
    from .auth import Authenticator, issue_token, valid_user_id

    if not valid_user_id(args.sub):
        raise SettingsError(
            f"--sub must be the gateway's user id, a decimal integer from 0 to 2^63-1 "
            f"without sign or leading zeros, got {args.sub!r}"
        )
    if args.ttl <= 0:
        raise SettingsError(
            f"--ttl must be a positive number of seconds (default {TOKEN_TTL}), got {args.ttl}"
        )
    if args.ttl > MAX_TTL:
        raise SettingsError(f"--ttl must be at most {MAX_TTL} seconds (ten years), got {args.ttl}")
    if settings.jwt_secret:
        settings.check_auth()  # a secret serve would refuse; without one, issue_token says
    token = issue_token(
        settings,
        sub=args.sub,
        username=args.username,
        role=args.role,
        scope=args.scope,
        ttl=args.ttl,
    )
    Authenticator(settings).authenticate(f"Bearer {token}")  # what serve will check
    print(token)
    return 0


MAX_TTL = 10 * 365 * 86400


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="listen address (default GATELOG_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (default GATELOG_PORT or 8080)")


def _token_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sub", required=True, help="user id (the gateway's user id)")
    p.add_argument("--username", required=True)
    p.add_argument("--role", type=int, required=True, help="1 user, 10 admin, 100 root")
    p.add_argument("--scope", help="space-separated scopes, e.g. logs:write")
    p.add_argument(
        "--ttl",
        type=int,
        default=TOKEN_TTL,
        help=f"seconds until it expires (default {TOKEN_TTL}: one hour)",
    )


SERVE = Command("serve", "start the HTTP service", cmd_serve, _serve_args)
MIGRATE = Command("migrate", "apply schema/ and exit", cmd_migrate)
TOKEN = Command("token", "print a signed bearer token", cmd_token, _token_args)


def commands() -> dict[str, Command]:
    """The service's own subcommands, then those other packages register (generate, bench)."""
    from .attach import COMMAND as ATTACH
    from .importer import COMMAND as IMPORT
    from .retention import COMMAND as RETENTION
    from .rollup import COMMAND as ROLLUP

    found = {c.name: c for c in (SERVE, MIGRATE, TOKEN, RETENTION, IMPORT, ATTACH, ROLLUP)}
    for extra in discovered():
        found.setdefault(extra.name, extra)
    return found


class _Parser(argparse.ArgumentParser):
    """A usage error is one line too: what is wrong, and where the usage is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gatelog: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(table: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    table = commands() if table is None else table
    parser = _Parser(
        prog="python -m service",
        description="gatelog: the log backend of an LLM API gateway, on ClickHouse",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in table.items():
        command.configure(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    table = commands()
    parser = build_parser(table)
    args, rest = parser.parse_known_args(argv)
    if rest and not table[args.command].takes_any:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        settings = Settings.from_env()
        _setup_logging(settings)
        return table[args.command].run(args, settings)
    except ModuleNotFoundError as exc:
        hint = missing_hint(exc)
        if hint is None:
            return report(args.command, exc)
        print(f"gatelog: {args.command} needs {hint}", file=sys.stderr)
        return 2
    except Exception as exc:  # every failure: one line naming cause and fix (failures.py)
        return report(args.command, exc)
