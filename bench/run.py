"""``python -m bench.run [--rows N] [--fast] [--quick]``: the benchmark suite
(:mod:`tools.bench.run`) from the checkout's root, under the name the read-path issue
and docs/benchmarks.md use; ``python -m tools.bench.run`` and ``python -m service bench``
run the same."""

from __future__ import annotations

import sys

from tools.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
