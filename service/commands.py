"""The registry of ``python -m service`` subcommands.

Modules that own a subcommand (retention here; import, generate and bench in ``tools``)
register it here; ``service.cli`` builds the parser from it. Kept apart from ``cli``
so that registering a command imports nothing of the app.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .settings import Settings

Command = Callable[[argparse.Namespace, Settings], int]
Configure = Callable[[argparse.ArgumentParser], None]

COMMANDS: dict[str, tuple[str, Command, Configure]] = {}


def command(name: str, help_text: str, configure: Configure) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = (help_text, fn, configure)
        return fn

    return register
