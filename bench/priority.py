"""Does the engine's ``priority`` (or ``max_threads``) protect a light query from heavy ones?

    python bench/priority.py bench/data/1M

On a bench data directory (``python -m tools.bench.run --rows 1000000`` leaves
``bench/data/1M``): a light query (one user's newest 20 rows) in a loop for 8 s, alone
and beside one or two heavy ones (a case-insensitive one-letter substring over every
row) run in a loop with ``priority`` 0 or 1 (on a ClickHouse server a query with a
higher value waits while lower ones run) or ``max_threads`` 1. Prints the light
query's p50 / p99 in each case and the machine's load; nothing is written (a probe for
docs/limits.md, run 2026-12-06 at load 3-6: priority made no difference in chDB).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.store import ChdbStore  # noqa: E402

HEAVY = (
    "SELECT count(), sum(length(content)) FROM logs "
    "WHERE lowerUTF8(content) LIKE '%a%' OR lowerUTF8(model_name) LIKE '%a%'"
)
LIGHT = (
    "SELECT id, created_at, content FROM logs WHERE user_id = {u:UInt64} "
    "ORDER BY created_at DESC LIMIT 20"
)
CASES = [
    ("alone", None, 0),
    ("heavy x2, priority 0", {}, 2),
    ("heavy x2, priority 1", {"priority": 1}, 2),
    ("heavy x2, max_threads 1", {"max_threads": 1}, 2),
    ("heavy x1, priority 0", {}, 1),
    ("heavy x1, max_threads 1", {"max_threads": 1}, 1),
]


async def main(path: str) -> None:
    store = ChdbStore(path, threads=6)
    users = [
        row[0]
        for row in (
            await store.query(
                "SELECT user_id FROM logs GROUP BY user_id ORDER BY count() DESC LIMIT 50"
            )
        ).rows
    ]

    async def light(seconds: float) -> list[float]:
        times, end, i = [], time.time() + seconds, 0
        while time.time() < end:
            begun = time.perf_counter()
            await store.query(LIGHT, {"u": users[i % len(users)]})
            times.append((time.perf_counter() - begun) * 1000)
            i += 1
        return sorted(times)

    async def heavy(stop: asyncio.Event, settings: dict[str, int] | None) -> int:
        done = 0
        while not stop.is_set():
            await store.query(HEAVY, settings=settings)
            done += 1
        return done

    try:
        for name, settings, n in CASES:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(heavy(stop, settings)) for _ in range(n)]
            times = await light(8)
            stop.set()
            counts = await asyncio.gather(*tasks)
            print(f"{name:26s} light p50 {statistics.median(times):6.1f} ms, "
                  f"p99 {times[int(len(times) * 0.99)]:6.1f} ms (n={len(times)}), "
                  f"heavy done {counts}, load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "bench/data/1M"))
