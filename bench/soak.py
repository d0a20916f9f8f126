"""Soak: the service under steady ingest and many polling dashboards, for a set time.

    python -m bench.soak --rows 1000000 --minutes 10 [--backend embedded|http]

Runs ``python -m service serve`` in its own process on generated data (``service
generate``), then, one phase after the other, each with the same writers:

1. ``alone``: the writers only (ingest p99 alone), after a 3-second warm-up that is not
   reported (a process's first ingest waits about 2 s for its id lease);
2. ``soak``: the writers plus ``--readers`` dashboard clients polling the admin list,
   a user's list, stat, series and the token lookup (the main phase, ``--minutes``);
3. ``hostile``: the same plus one user firing ``--hostile`` concurrent pathological
   requests (one-letter searches of 1000 rows, exports of everything, minute series of
   the whole range) without pause.

Records per phase and route p50/p99 and counts by status, the intended refusals (503 /
429 with Retry-After) apart from errors, RSS of the service process every 5 s (with
``--backend http`` the engine runs in another process, a ClickHouse HTTP interface over
chDB, so the RSS is the service's own, as in the Kubernetes Deployment), the machine's
load, and after the run that every acknowledged row is stored (counted in the engine by
the writers' request ids). Writes ``bench/results/soak-<date>-<rows>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
SECRET = "soak-secret-" + "x" * 32
DAY = 86400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


@dataclass
class Phase:
    name: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    acked_rows: int = 0
    started: float = 0.0
    seconds: float = 0.0
    load_start: list[float] = field(default_factory=list)
    load_end: list[float] = field(default_factory=list)

    def record(self, route: str, status: int, seconds: float) -> None:
        self.statuses[route][status] += 1
        if status < 400:
            self.latencies[route].append(seconds)

    def summary(self) -> dict[str, Any]:
        routes = {}
        for route in sorted(self.statuses):
            counts = dict(self.statuses[route])
            ok = sum(n for s, n in counts.items() if s < 400)
            refused = sum(n for s, n in counts.items() if s in (429, 503))
            errors = sum(n for s, n in counts.items() if s >= 400 and s not in (429, 503))
            lat = self.latencies[route]
            routes[route] = {
                "ok": ok,
                "refused_503_429": refused,
                "errors": errors,
                "statuses": {str(k): v for k, v in sorted(counts.items())},
                "p50_ms": pct(lat, 0.5),
                "p99_ms": pct(lat, 0.99),
                "rps": round(ok / self.seconds, 2) if self.seconds else 0,
            }
        return {
            "seconds": round(self.seconds, 1),
            "load_start": self.load_start,
            "load_end": self.load_end,
            "acked_rows": self.acked_rows,
            "routes": routes,
        }


def token(sub: int, role: int, username: str, scope: str | None = None) -> str:
    from service.auth import issue_token
    from service.settings import Settings

    return issue_token(
        Settings(jwt_secret=SECRET), sub=sub, username=username, role=role, scope=scope,
        ttl=86400,
    )  # fmt: skip


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stop = asyncio.Event()
        self.phase = Phase("none")
        self.rss: list[tuple[float, str, float]] = []
        self.sent_prefix = f"soak-{int(time.time())}-"
        self.seq = 0
        self.writer_auth = {"Authorization": "Bearer " + token(0, 100, "gw", "logs:write")}
        self.admin = {"Authorization": "Bearer " + token(1, 100, "root")}

    # -- the clients -------------------------------------------------------------------

    async def _call(
        self, session: aiohttp.ClientSession, route: str, method: str, url: str, **kw: Any
    ) -> int:
        phase = self.phase
        started = time.perf_counter()
        try:
            async with session.request(method, self.base + url, **kw) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 599
        phase.record(route, status, time.perf_counter() - started)
        return status

    async def writer(self, session: aiohttp.ClientSession, number: int) -> None:
        rng = random.Random(number)
        pause = 1.0 / self.args.batches_per_second
        while not self.stop.is_set():
            now = int(time.time())
            rows = []
            for _ in range(self.args.batch_rows):
                self.seq += 1
                rows.append({
                    "user_id": rng.randint(1, 4000), "created_at": now - rng.randint(0, 30),
                    "type": 2, "content": "soak", "username": f"user{number}",
                    "token_name": "soak", "model_name": "gpt-4o", "quota": 100,
                    "prompt_tokens": 10, "completion_tokens": 20, "use_time": 1,
                    "is_stream": False, "channel_id": 1, "channel_name": "c", "token_id": 1,
                    "group": "default", "ip": "10.0.0.1", "other": "{}",
                    "request_id": f"{self.sent_prefix}{self.seq}",
                })  # fmt: skip
            phase = self.phase
            status = await self._call(
                session, "POST /api/internal/logs", "POST", "/api/internal/logs",
                json=rows, headers=self.writer_auth,
            )  # fmt: skip
            if status == 200:
                phase.acked_rows += len(rows)
                self.acked.update(r["request_id"] for r in rows)
            await asyncio.sleep(pause)

    async def reader(self, session: aiohttp.ClientSession, number: int) -> None:
        rng = random.Random(1000 + number)
        ctx = self.ctx
        user = {"Authorization": "Bearer " + token(ctx["typical_user"], 1, "u")}
        now = int(time.time())
        routes = [
            ("GET /api/log/", "/api/log/?p=1&page_size=20", self.admin),
            ("GET /api/log/self", "/api/log/self?p=1&page_size=20", user),
            ("GET /api/log/stat", f"/api/log/stat?start_timestamp={now - 7 * DAY}", self.admin),
            ("GET /api/log/series", f"/api/log/series?interval=hour&start_timestamp="
             f"{now - DAY}", self.admin),
            ("GET /api/log/token", f"/api/log/token?key=sk-{ctx['token_key']}", {}),
        ]  # fmt: skip
        while not self.stop.is_set():
            route, url, headers = rng.choice(routes)
            await self._call(session, route, "GET", url, headers=headers)
            await asyncio.sleep(self.args.reader_pause)

    async def hostile(self, session: aiohttp.ClientSession, number: int) -> None:
        heavy = {"Authorization": "Bearer " + token(self.ctx["heavy_user"], 1, "h")}
        urls = [
            ("hostile search", "/api/log/self/search?keyword=a&page_size=1000"),
            ("hostile export", "/api/log/self/export?format=ndjson"),
            ("hostile series", "/api/log/self/series?interval=minute&start_timestamp="
             f"{int(time.time()) - 6 * DAY}"),
        ]  # fmt: skip
        while not self.stop.is_set():
            route, url = urls[number % len(urls)]
            await self._call(session, route, "GET", url, headers=heavy)

    async def sample_rss(self) -> None:
        while True:
            self.rss.append((round(time.time() - self.t0, 1), self.phase.name, rss_mib(self.pid)))
            await asyncio.sleep(5)

    async def run_phase(self, name: str, seconds: float, readers: int, hostile: int) -> Phase:
        self.phase = Phase(name, started=time.time(), load_start=load())
        self.stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = [asyncio.create_task(self.writer(session, i)) for i in range(self.args.writers)]
            tasks += [asyncio.create_task(self.reader(session, i)) for i in range(readers)]
            tasks += [asyncio.create_task(self.hostile(session, i)) for i in range(hostile)]
            await asyncio.sleep(seconds)
            self.stop.set()
            await asyncio.gather(*tasks)
        phase = self.phase
        phase.seconds = time.time() - phase.started
        phase.load_end = load()
        print(f"phase {name}: {json.dumps(phase.summary()['routes'])[:400]}", flush=True)
        return phase

    # -- the service ---------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {**os.environ, "GATELOG_JWT_SECRET": SECRET, "GATELOG_TOKEN_LOOKUP_RATE": "0",
               "GATELOG_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}  # fmt: skip
        for item in self.args.env:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    async def main(self) -> dict[str, Any]:
        args = self.args
        data = Path(args.data_dir or tempfile.mkdtemp(prefix="soak-"))
        env = {**self.env(), "GATELOG_DATA_DIR": str(data / "engine")}
        end = int(time.time()) - 3600
        generated = time.time()
        if not (data / "generated").exists():
            subprocess.run(
                [sys.executable, "-m", "service", "generate", "--rows", str(args.rows),
                 "--days", str(args.days), "--end", str(end), "--no-progress"],
                env=env, check=True, cwd=ROOT,
            )  # fmt: skip
            (data / "generated").write_text(str(end))
        end = int((data / "generated").read_text())
        generated = time.time() - generated
        from tools.bench.run import Plan, context_of

        plan = Plan(args.rows, args.days, 1, end, str(data), 0, 0, 0, 0, 0, 0, 0, False)
        self.ctx = vars(context_of(plan))
        self.acked: set[str] = set()
        engine: subprocess.Popen[bytes] | None = None
        if args.backend == "http":
            engine_port = free_port()
            engine = subprocess.Popen(
                [sys.executable, "-c", _ENGINE_SERVER, env["GATELOG_DATA_DIR"], str(engine_port)],
                env=env, cwd=ROOT,
            )  # fmt: skip
            env["GATELOG_CLICKHOUSE_URL"] = f"http://default:@127.0.0.1:{engine_port}/gatelog"
            await self.wait_port(engine_port)
        service = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port",
             str(self.port)], env=env, cwd=ROOT,
        )  # fmt: skip
        self.pid = service.pid
        self.t0 = time.time()
        result: dict[str, Any] = {
            "rows": args.rows, "backend": args.backend, "writers": args.writers,
            "readers": args.readers, "hostile": args.hostile, "batch_rows": args.batch_rows,
            "batches_per_second_per_writer": args.batches_per_second,
            "reader_pause_s": args.reader_pause, "env": args.env, "generate_s": round(generated),
            "uptime_start": uptime(), "cpus": os.cpu_count(),
        }  # fmt: skip
        try:
            await self.ready()
            sampler = asyncio.create_task(self.sample_rss())
            # A warm-up, not reported: a process's first ingest without ids waits about
            # 2 s for its id lease (docs/ids.md), which made the first "alone" p99 2.3 s.
            await self.run_phase("warmup", 3, 0, 0)
            phases = [await self.run_phase("alone", args.alone_seconds, 0, 0)]
            phases.append(await self.run_phase("soak", args.minutes * 60, args.readers, 0))
            if args.hostile:
                phases.append(
                    await self.run_phase(
                        "hostile", args.hostile_seconds, args.readers, args.hostile
                    )
                )
            sampler.cancel()
            metrics = await self.metrics()
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(60)
            if engine is not None:
                engine.send_signal(signal.SIGTERM)
                engine.wait(30)
        result["uptime_end"] = uptime()
        result["phases"] = {p.name: p.summary() for p in phases}
        result["rss_mib"] = self.rss
        result["gate_metrics"] = metrics
        result["acked_rows"] = len(self.acked)
        result["stored_acked_rows"] = await asyncio.to_thread(
            count_stored, env["GATELOG_DATA_DIR"], self.sent_prefix
        )
        return result

    async def wait_port(self, port: int) -> None:
        for _ in range(600):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.2)
        raise RuntimeError(f"nothing listens on {port}")

    async def ready(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(1200):
                try:
                    async with session.get(self.base + "/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.25)
        raise RuntimeError("the service never became ready")

    async def metrics(self) -> dict[str, float]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.base + "/metrics") as response,
        ):
            text = await response.text()
        wanted = ("gatelog_engine_rejections_total", "gatelog_engine_queue_wait_seconds_count",
                  "gatelog_engine_queue_wait_seconds_sum")  # fmt: skip
        return {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith(wanted)
        }


def count_stored(data_dir: str, prefix: str) -> int:
    from service.store import ChdbStore

    async def count() -> int:
        store = ChdbStore(data_dir)
        try:
            rows = await store.query(
                "SELECT uniqExact(request_id) FROM logs WHERE startsWith(request_id, {p:String})",
                {"p": prefix},
            )
            return int(rows.scalar())
        finally:
            await store.close()

    return asyncio.run(count())


_ENGINE_SERVER = """
import asyncio, sys
from tests.support.chhttp import ClickHouseHTTPServer

async def main():
    server = ClickHouseHTTPServer(sys.argv[1])
    server._owned.query("CREATE DATABASE IF NOT EXISTS gatelog", "TabSeparated")
    await server.start(int(sys.argv[2]))
    await asyncio.Event().wait()

asyncio.run(main())
"""


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Soak: {result['rows']:,} rows, backend {result['backend']}",
        "",
        f"- start: `{result['uptime_start']}`",
        f"- end: `{result['uptime_end']}`",
        f"- {result['writers']} writers x {result['batch_rows']} rows x "
        f"{result['batches_per_second_per_writer']}/s, {result['readers']} polling readers "
        f"(pause {result['reader_pause_s']} s), {result['hostile']} hostile clients; "
        f"settings {result['env'] or 'defaults'}",
        f"- acknowledged rows {result['acked_rows']:,}, stored {result['stored_acked_rows']:,}",
        "",
        "| phase | route | ok | 503/429 | errors | p50 ms | p99 ms | req/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, phase in result["phases"].items():
        for route, r in phase["routes"].items():
            lines.append(
                f"| {name} ({phase['seconds']} s, load {phase['load_end'][0]}) | {route} | "
                f"{r['ok']} | {r['refused_503_429']} | {r['errors']} | {r['p50_ms']} | "
                f"{r['p99_ms']} | {r['rps']} |"
            )
    phases = result["phases"]
    ingest = "POST /api/internal/logs"
    if "alone" in phases and "soak" in phases:
        alone = phases["alone"]["routes"].get(ingest, {}).get("p99_ms") or 0
        soak = phases["soak"]["routes"].get(ingest, {}).get("p99_ms") or 0
        lines += ["", f"Ingest p99 under load / alone: {soak} / {alone} ms"
                  + (f" = {soak / alone:.2f}x (target <= 3x)" if alone else "")]  # fmt: skip
    if "hostile" in phases:
        for route in ("GET /api/log/self", "GET /api/log/"):
            a = phases["soak"]["routes"].get(route, {}).get("p99_ms") or 0
            b = phases["hostile"]["routes"].get(route, {}).get("p99_ms") or 0
            if a:
                lines.append(f"{route} p99 with a hostile user / without: {b} / {a} ms = "
                             f"{b / a:.2f}x (target <= 3x)")  # fmt: skip
    rss = [r for _, _, r in result["rss_mib"]]
    if rss:
        lines += ["", f"RSS MiB (every 5 s): min {min(rss)}, max {max(rss)}, first {rss[0]}, "
                  f"last {rss[-1]}", "", "```", " ".join(str(r) for r in rss), "```"]  # fmt: skip
    lines += ["", "Gate metrics at the end:", "", "```"]
    lines += [f"{k} {v}" for k, v in result["gate_metrics"].items() if v]
    lines += ["```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--alone-seconds", type=float, default=30)
    parser.add_argument("--hostile-seconds", type=float, default=60)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--batch-rows", type=int, default=50)
    parser.add_argument("--batches-per-second", type=float, default=2)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--reader-pause", type=float, default=0.2)
    parser.add_argument("--hostile", type=int, default=8)
    parser.add_argument("--backend", choices=("embedded", "http"), default="embedded")
    parser.add_argument("--data-dir", help="reuse generated data from an earlier run")
    parser.add_argument("--env", action="append", default=[], help="GATELOG_X=value")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    result = asyncio.run(Soak(args).main())
    stem = f"soak-{time.strftime('%Y-%m-%d-%H%M')}-{args.rows}-{args.backend}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
