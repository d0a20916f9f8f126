"""Does the public token lookup's time tell a disabled key from an unknown one?

Method (SECURITY.md, "Token lookup timing"): the real app on the embedded engine, in
this process, with ``--tokens`` tokens (half of them disabled) ingested through
``POST /api/internal/tokens``. Each round sends ``--lookups`` requests to ``GET
/api/log/token``, alternating a disabled key and an unknown key (so drift and load hit
both alike), one request at a time over one keep-alive connection, and records each
answer's wall time on the client. Rounds: ``--rounds``. For each kind it reports the
p10/p25/p50/p75/p90 of every round and of all rounds, and the gap (disabled - unknown)
at each quantile. In the same run the engine-side statement alone is timed the same
way, for the lookup the service used before (``ORDER BY id LIMIT 1`` with the bloom
filter on ``key_hash``) and for the current one, so the before/after ratios share the
machine's load. The load average is recorded with the figures.

    python bench/token_timing.py --tokens 10000 --lookups 200 --rounds 3

Writes bench/results/token-timing.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from service.app import create_app  # noqa: E402
from service.auth import ROLE_USER, issue_token  # noqa: E402
from service.logs import TOKEN_LOOKUP, TOKEN_LOOKUP_SETTINGS  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store import ChdbStore  # noqa: E402
from service.tokenhash import hash_key  # noqa: E402

OLD_LOOKUP = (
    "SELECT id, user_id, status, name FROM tokens FINAL "
    "WHERE key_hash = {key_hash:String} ORDER BY id LIMIT 1"
)
QUANTILES = (10, 25, 50, 75, 90)


def quantiles(ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {f"p{q}": round(cuts[q - 1], 4) for q in QUANTILES}


def gaps(disabled: dict[str, float], unknown: dict[str, float]) -> dict[str, float]:
    return {q: round(disabled[q] - unknown[q], 4) for q in disabled}


async def timed(fn: Any, keys: list[tuple[str, str]], n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {kind: [] for kind, _ in keys}
    for i in range(n):
        kind, key = keys[i % len(keys)]
        started = time.perf_counter()
        await fn(key)
        out[kind].append((time.perf_counter() - started) * 1000)
    return out


def summary(rounds: list[dict[str, list[float]]]) -> dict[str, Any]:
    per_round = []
    for r in rounds:
        d, u = quantiles(r["disabled"]), quantiles(r["unknown"])
        per_round.append({"disabled_ms": d, "unknown_ms": u, "gap_ms": gaps(d, u)})
    d = quantiles([x for r in rounds for x in r["disabled"]])
    u = quantiles([x for r in rounds for x in r["unknown"]])
    return {"rounds": per_round, "all": {"disabled_ms": d, "unknown_ms": u, "gap_ms": gaps(d, u)}}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    data = tempfile.mkdtemp(prefix="gatelog-token-timing-")
    store = ChdbStore(data)
    secret = "bench-secret-that-is-long-enough-for-hs256"
    settings = Settings(data_dir=data, jwt_secret=secret, token_lookup_rate=0)
    writer = issue_token(settings, sub=0, username="gw", role=ROLE_USER, scope="logs:write")
    app = create_app(settings, store=store)
    disabled_key, unknown_key = "D" * 48, "U" * 48
    async with TestClient(TestServer(app)) as client:
        batch = []
        for i in range(args.tokens):
            status = 2 if i % 2 else 1
            batch.append({"id": i + 1, "key": f"k{i:047d}", "name": f"t{i}", "user_id": 1 + i % 500,
                          "status": status})  # fmt: skip
        batch.append({"id": args.tokens + 1, "key": disabled_key, "name": "d", "user_id": 1,
                      "status": 2})  # fmt: skip
        for start in range(0, len(batch), 5000):
            response = await client.post(
                "/api/internal/tokens",
                json=batch[start : start + 5000],
                headers={"Authorization": f"Bearer {writer}"},
            )
            assert response.status == 200, await response.text()
        keys = [("disabled", disabled_key), ("unknown", unknown_key)]

        async def http(key: str) -> None:
            response = await client.get("/api/log/token", params={"key": key})
            await response.read()
            assert response.status == 404

        def engine(sql: str, settings: dict[str, Any]) -> Any:
            async def call(key: str) -> None:
                await store.query(sql, {"key_hash": hash_key(key)}, settings)

            return call

        for fn in (http, engine(OLD_LOOKUP, {}), engine(TOKEN_LOOKUP, TOKEN_LOOKUP_SETTINGS)):
            await timed(fn, keys, 40)  # warm-up
        results: dict[str, Any] = {}
        cases = {
            "http_current": http,
            "engine_before": engine(OLD_LOOKUP, {}),
            "engine_current": engine(TOKEN_LOOKUP, TOKEN_LOOKUP_SETTINGS),
        }
        rounds: dict[str, list[dict[str, list[float]]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():  # interleaved: every case sees the same load
                rounds[name].append(await timed(fn, keys, args.lookups))
        for name in cases:
            results[name] = summary(rounds[name])
    await store.close()
    return {
        "bench": "token_timing",
        "tokens": args.tokens,
        "lookups_per_round": args.lookups,
        "rounds": args.rounds,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "token-timing.json")
    )
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    Path(arguments.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, figures in result["results"].items():
        print(name, "all rounds:", json.dumps(figures["all"]))
    print("load average", result["load_average"])
