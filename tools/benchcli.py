"""``python -m service bench``: the benchmark suite (``tools/bench/run.py``)."""

from __future__ import annotations

import argparse

from service.commands import Command
from service.settings import Settings


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of tools/bench/run.py")


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from tools.bench.run import main

    return main([a for a in args.bench_args if a != "--"])


COMMAND = Command(
    "bench", "run the benchmark suite (python -m service bench -- --rows 1000000)", cmd_bench, _args
)
