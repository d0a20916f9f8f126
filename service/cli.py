"""The subcommands of ``python -m service``. Each is a small function that builds
``Settings`` from the environment and does one thing."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from .commands import COMMANDS, command
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


command("serve", "start the HTTP service", _serve_args)(cmd_serve)
command("migrate", "apply schema/ and exit", lambda p: None)(cmd_migrate)
command("token", "print a signed bearer token", _token_args)(cmd_token)


def _load_plugins() -> None:
    """Subcommands that live in their own modules register themselves on import."""
    import importlib

    for module in ("retention", "importer", "generate", "benchcli"):
        try:
            importlib.import_module(f"service.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"service.{module}":
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_plugins()
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="gatelog: the log backend of an LLM API gateway, on ClickHouse",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _fn, configure) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        _setup_logging(settings)
        return COMMANDS[args.command][1](args, settings)
    except SettingsError as exc:
        print(f"gatelog: {exc}", file=sys.stderr)
        return 2
