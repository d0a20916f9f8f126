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


#: where subcommands beside the core ones live: the service's own (retention) and the
#: tools package's, whose optional dependencies may be missing in a serving install
_PLUGINS = ("service.retention", "tools.importer", "tools.generate", "tools.benchcli")
#: the tools extra: what import, generate and bench need beyond the server
TOOLS_EXTRA = ("numpy", "tqdm")
TOOLS_HINT = "pip install 'gatelog[tools]'"


def _missing_tool(name: str) -> str | None:
    """The tools-extra package an ImportError is about, if it is one."""
    root = (name or "").split(".")[0]
    return root if root in TOOLS_EXTRA else None


def _load_plugins() -> None:
    """Subcommands that live in their own modules register themselves on import. A tool
    whose extra is not installed still gets its name in ``--help``, and says how to fix it."""
    import importlib

    for module in _PLUGINS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            missing = _missing_tool(exc.name or "")
            if missing is None:
                raise
            _unavailable(module.rsplit(".", 1)[1], missing)


def _unavailable(module: str, missing: str) -> None:
    name = {"importer": "import", "benchcli": "bench"}.get(module, module)

    def run(args: argparse.Namespace, settings: Settings) -> int:
        print(f"gatelog: {name} needs {missing} (the tools extra): {TOOLS_HINT}", file=sys.stderr)
        return 2

    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("args", nargs=argparse.REMAINDER, help=f"needs {TOOLS_HINT}")

    command(name, f"(needs {TOOLS_HINT})", configure)(run)


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
    except ModuleNotFoundError as exc:
        missing = _missing_tool(exc.name or "")
        if missing is None:
            raise
        print(
            f"gatelog: {args.command} needs {missing} (the tools extra): {TOOLS_HINT}",
            file=sys.stderr,
        )
        return 2
