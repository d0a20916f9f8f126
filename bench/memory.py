"""Memory under the worst rows the defaults allow: what the Deployment's limit must fit.

    python -m bench.memory [--rows 2000] [--seconds 60] [--clients 16]

The service runs as in the Kubernetes Deployment: its own process against a ClickHouse
server (here a ClickHouse HTTP interface over chDB in a third process), so the RSS
sampled is the service's alone. Rows are the largest ingest accepts with the default
bounds: ``content`` of 65,536 CJK characters (3 bytes each in UTF-8) and ``other`` a JSON
string of 65,536 characters. Then ``--clients`` concurrent clients, for ``--seconds``,
ask for the biggest answers there are: admin lists of 100 rows, searches of 1,000 rows,
the token lookup's 1,000 rows, a user's 100-row list, and exports of everything. RSS is
sampled every 0.2 s; the peak, the statuses (refusals by the bounds included) and the
load go to ``bench/results/memory-<date>.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.soak import _ENGINE_SERVER, ROOT, SECRET, free_port, load, rss_mib, token, uptime

CONTENT = "测" * 65_536
OTHER = json.dumps({"t": "x" * (65_536 - 10)})


async def main(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="memory-"))
    env = {**os.environ, "GATELOG_JWT_SECRET": SECRET, "GATELOG_TOKEN_LOOKUP_RATE": "0",
           "GATELOG_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}  # fmt: skip
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    engine_port, port = free_port(), free_port()
    engine = subprocess.Popen([sys.executable, "-c", _ENGINE_SERVER, str(data), str(engine_port)],
                              env=env, cwd=ROOT)  # fmt: skip
    env["GATELOG_CLICKHOUSE_URL"] = f"http://default:@127.0.0.1:{engine_port}/gatelog"
    await asyncio.sleep(3)
    service = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    writer = {"Authorization": "Bearer " + token(0, 100, "gw", "logs:write")}
    admin = {"Authorization": "Bearer " + token(1, 100, "root")}
    user = {"Authorization": "Bearer " + token(7, 1, "bob")}
    samples: list[float] = []
    statuses: dict[str, Counter[int]] = {}
    messages: dict[str, str] = {}
    result: dict[str, Any] = {"uptime_start": uptime(), "rows": args.rows, "env": args.env}
    try:
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _ in range(600):
                try:
                    async with session.get(base + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.25)
            result["rss_ready_mib"] = rss_mib(service.pid)
            now = int(time.time())
            await session.post(base + "/api/internal/tokens", headers=writer,
                               json=[{"id": 1, "key": "sk-" + "k" * 40, "name": "t",
                                      "user_id": 7, "status": 1}])  # fmt: skip
            for lo in range(0, args.rows, 20):
                rows = [
                    {"user_id": 7, "created_at": now - 600 + (i % 500), "type": 2,
                     "content": CONTENT, "username": "bob", "token_name": "t",
                     "model_name": "gpt-4o", "quota": 1, "prompt_tokens": 1,
                     "completion_tokens": 1, "use_time": 1, "is_stream": False,
                     "channel_id": 1, "channel_name": "c", "token_id": 1, "group": "default",
                     "ip": "10.0.0.1", "other": OTHER, "request_id": f"m{i}"}
                    for i in range(lo, min(lo + 20, args.rows))
                ]  # fmt: skip
                async with session.post(base + "/api/internal/logs", json=rows,
                                        headers=writer) as r:  # fmt: skip
                    assert r.status == 200, await r.text()
            result["rss_loaded_mib"] = rss_mib(service.pid)
            requests = [
                ("admin list 100", "/api/log/?p=1&page_size=100", admin),
                ("admin search 1000", "/api/log/search?keyword=测&page_size=1000", admin),
                ("user list 100", "/api/log/self?p=1&page_size=100", user),
                ("user search 40", "/api/log/self/search?keyword=gpt&page_size=40", user),
                ("token lookup 1000", f"/api/log/token?key=sk-{'k' * 40}&page_size=1000", {}),
                ("admin export", "/api/log/export?format=ndjson", admin),
                ("user export", "/api/log/self/export?format=csv", user),
            ]
            stop = time.time() + args.seconds

            async def client(number: int) -> None:
                rng = random.Random(number)
                while time.time() < stop:
                    name, url, headers = rng.choice(requests)
                    try:
                        async with session.get(base + url, headers=headers) as r:
                            head = b""
                            async for chunk in r.content.iter_chunked(1 << 16):
                                head = head or chunk[:300]
                            status = r.status
                            if status >= 400:
                                messages.setdefault(
                                    f"{name} {status}", head.decode("utf-8", "replace")
                                )
                    except (aiohttp.ClientError, TimeoutError):
                        status = 599
                    statuses.setdefault(name, Counter())[status] += 1

            async def sample() -> None:
                while True:
                    samples.append(rss_mib(service.pid))
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample())
            await asyncio.gather(*(client(i) for i in range(args.clients)))
            sampler.cancel()
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(60)
        engine.send_signal(signal.SIGTERM)
        engine.wait(30)
    result["uptime_end"] = uptime()
    result["load_end"] = load()
    result["rss_peak_mib"] = max(samples) if samples else 0
    result["rss_samples"] = len(samples)
    result["statuses"] = {k: {str(s): n for s, n in v.items()} for k, v in statuses.items()}
    result["messages"] = messages
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Service memory under the largest rows the defaults allow ({r['rows']:,} rows)",
        "",
        f"- start: `{r['uptime_start']}`",
        f"- end: `{r['uptime_end']}`",
        f"- settings: {r['env'] or 'defaults'}",
        f"- RSS: ready {r['rss_ready_mib']} MiB, after ingest {r['rss_loaded_mib']} MiB, "
        f"peak under load **{r['rss_peak_mib']} MiB** ({r['rss_samples']} samples, 0.2 s apart)",
        "",
        "| request | statuses |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(r["statuses"].items())]
    lines += ["", "First answer of each refusal:", ""]
    lines += [f"- {k}: `{v[:200]}`" for k, v in sorted(r["messages"].items())]
    return "\n".join(lines) + "\n"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--env", action="append", default=[], help="GATELOG_X=value")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    result = asyncio.run(main(args))
    stem = f"memory-{time.strftime('%Y-%m-%d-%H%M')}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    cli()
