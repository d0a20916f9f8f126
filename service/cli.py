"""The subcommands of ``python -m service``. Each is a small function that builds
``Settings`` from the environment and does one thing."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from .commands import Command, discovered, missing_hint
from .settings import Settings, SettingsError


def _setup_logging(settings: Settings) -> None:
    from .jsonlog import setup

    setup(settings.log_level)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from .app import create_app

    settings.check_auth()
    app = create_app(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    # run_app handles SIGTERM/SIGINT: stop accepting, let in-flight requests finish
    # (up to shutdown_timeout), then run the cleanup contexts (engine closed last).
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        shutdown_timeout=30.0,
        print=lambda msg: logging.getLogger("gatelog").info(msg),
    )
    logging.getLogger("gatelog").info("stopped")
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from .migrate import migrate
    from .store import open_store

    async def run() -> list[str]:
        store = open_store(settings)
        try:
            return await migrate(store, cluster=settings.clickhouse_cluster)
        finally:
            await store.close()

    applied = asyncio.run(run())
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from .auth import issue_token

    print(
        issue_token(
            settings,
            sub=args.sub,
            username=args.username,
            role=args.role,
            scope=args.scope,
            ttl=args.ttl,
        )
    )
    return 0


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="listen address (default GATELOG_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (default GATELOG_PORT or 8080)")


def _token_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sub", required=True, help="user id (the gateway's user id)")
    p.add_argument("--username", required=True)
    p.add_argument("--role", type=int, required=True, help="1 user, 10 admin, 100 root")
    p.add_argument("--scope", help="space-separated scopes, e.g. logs:write")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")


SERVE = Command("serve", "start the HTTP service", cmd_serve, _serve_args)
MIGRATE = Command("migrate", "apply schema/ and exit", cmd_migrate)
TOKEN = Command("token", "print a signed bearer token", cmd_token, _token_args)


def commands() -> dict[str, Command]:
    """The service's own subcommands, then those other packages register (generate, bench)."""
    from .importer import COMMAND as IMPORT
    from .retention import COMMAND as RETENTION
    from .rollup import COMMAND as ROLLUP

    found = {c.name: c for c in (SERVE, MIGRATE, TOKEN, RETENTION, IMPORT, ROLLUP)}
    for extra in discovered():
        found.setdefault(extra.name, extra)
    return found


def build_parser(table: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    table = commands() if table is None else table
    parser = argparse.ArgumentParser(
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
    except SettingsError as exc:
        print(f"gatelog: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        hint = missing_hint(exc)
        if hint is None:
            raise
        print(f"gatelog: {args.command} needs {hint}", file=sys.stderr)
        return 2
