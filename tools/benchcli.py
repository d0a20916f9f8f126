"""``python -m service bench``: the benchmark suite (``bench/run.py`` in a checkout)."""

from __future__ import annotations

import argparse
import sys

from .commands import command
from .settings import Settings


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of bench/run.py")


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from bench.run import main
    except ModuleNotFoundError:
        print(
            "gatelog: the benchmark suite runs from a checkout: python -m bench.run",
            file=sys.stderr,
        )
        return 2
    return main([a for a in args.bench_args if a != "--"])


command("bench", "run the benchmark suite (python -m service bench -- --rows 1000000)", _args)(
    cmd_bench
)
