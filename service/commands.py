"""What a subcommand of ``python -m service`` is, and where the ones beside the service's
own come from.

A command is a :class:`Command` value declared in the module that owns it; ``service.cli``
lists the service's own. Packages beside the service (``tools``: generate, bench) add
theirs through the ``gatelog.commands`` entry-point group of their distribution's
metadata (``pyproject.toml``), so the service finds them in an installed wheel as in a
checkout's editable install without naming, or importing, any module of theirs. A command
whose module cannot be imported for want of an optional dependency still appears in
``--help`` and says in one line which extra installs it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, TypeVar

from .settings import Settings

if TYPE_CHECKING:
    from .store import Store

T = TypeVar("T")

#: the entry-point group where other packages register their subcommands
GROUP = "gatelog.commands"
#: the distribution whose extras name the optional dependencies of the service's own commands
DISTRIBUTION = "gatelog"

Run = Callable[[argparse.Namespace, Settings], int]
Configure = Callable[[argparse.ArgumentParser], None]


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command without options of its own."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Run
    configure: Configure = no_arguments
    #: a stand-in for a command that cannot load: it takes any arguments, to refuse them all
    takes_any: bool = False


def with_store(
    settings: Settings, work: Callable[[Store], Awaitable[T]], *, migrate: bool = False
) -> T:
    """Run ``work`` on the engine ``settings`` name (the schema applied first when
    ``migrate``), closing it whatever happens: the body of a command that uses the engine."""
    from .migrate import migrate as apply
    from .store import open_store

    async def run() -> T:
        store = open_store(settings)
        try:
            if migrate:
                await apply(store, cluster=settings.clickhouse_cluster)
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def discovered() -> Iterator[Command]:
    """The commands registered in :data:`GROUP`, each once (a checkout can hold the same
    distribution's metadata twice: the editable install's and the build's egg-info)."""
    seen: set[str] = set()
    for entry in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        if entry.name in seen:
            continue
        seen.add(entry.name)
        try:
            found = entry.load()
        except ModuleNotFoundError as exc:
            dist = entry.dist.name if entry.dist is not None else DISTRIBUTION
            yield unavailable(entry.name, exc, dist)
            continue
        if not isinstance(found, Command):
            raise TypeError(f"entry point {entry.value} of {GROUP} is not a Command")
        yield found


def missing_hint(exc: ModuleNotFoundError, dist: str = DISTRIBUTION) -> str | None:
    """``"numpy (the tools extra): pip install 'gatelog[tools]'"`` when ``exc`` is about a
    package that an extra of ``dist`` installs; None when no extra does (a real bug)."""
    module = (exc.name or "").split(".")[0]
    extra = _extra_for(module, dist)
    if extra is None:
        return None
    return f"{module} (the {extra} extra): pip install '{dist}[{extra}]'"


def _extra_for(module: str, dist: str) -> str | None:
    """The smallest extra of ``dist`` that requires the package ``module``."""
    try:
        requires = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return None
    extras: dict[str, list[str]] = {}
    for requirement in requires:
        found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if found is None:
            continue
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        extras.setdefault(found.group(1), []).append(name.lower().replace("-", "_"))
    fitting = [extra for extra, names in extras.items() if module.lower() in names]
    return min(fitting, key=lambda extra: len(extras[extra]), default=None)


def unavailable(name: str, exc: ModuleNotFoundError, dist: str) -> Command:
    """A stand-in for a command whose optional dependency is not installed."""
    hint = missing_hint(exc, dist)
    if hint is None:
        raise exc
    install = hint.split(": ", 1)[1]

    def run(args: argparse.Namespace, settings: Settings) -> int:
        print(f"gatelog: {name} needs {hint}", file=sys.stderr)
        return 2

    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("args", nargs=argparse.REMAINDER, help=f"needs {install}")

    return Command(name, f"(needs {install})", run, configure, takes_any=True)
