"""The write bench: ``POST /api/internal/logs`` against the engine's own insert of the
same rows into the same schema, measured in one run.

    python bench/write.py [--rows 200000] [--batch 10000] [--quick]

On rows from the generator (one day, ending two hours ago, so ingest's clock and day
bounds take them), as NDJSON bodies of ``--batch`` rows:

1. **parse**: the service's columnar parse (msgspec + Arrow, ``service.ingest.parse_logs``)
   and the reference path (stdlib json + per-field validation) on the same bodies,
   in this process, no engine: rows/s of each;
2. **floor**: the engine's own ``INSERT INTO logs FROM INFILE ... FORMAT JSONEachRow`` of
   the same bodies into a fresh ``schema/`` (every view and index), with the same
   settings and deduplication tokens the service uses; run before and after the service,
   the floor is their mean;
3. **service**: ``python -m service serve`` (``tools/bench/serve.py``) on a fresh data
   directory, one client posting the bodies one after the other; rows/s, engine time
   inside the requests (``Server-Timing``), and the service's RSS sampled every 10 ms
   (idle before the first body, peak during the ingest);
4. **schema prices**: the same floor insert into ``logs`` alone (no views), without the
   content n-gram index, and without any skip index: what each costs on insert.

Each engine phase runs in its own process (chDB locks a data directory to one). Results
go to ``bench/results/write-<rows>.json`` and ``.md`` with ``uptime``'s load at the start
and end of each phase: on a shared machine, read the ratios (same run), not the absolute
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
DAY = 86400


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def make_bodies(rows: int, batch: int, seed: int) -> list[bytes]:
    """NDJSON bodies of ``batch`` generated rows (no ids: the service assigns them)."""
    from tools.generate import Spec, World

    end = (int(time.time()) - 7200) // 60 * 60
    world = World(Spec(rows, 1, seed, end))
    lines: list[bytes] = []
    for _, table in world.batches():
        for row in table.drop(["id"]).to_pylist():
            lines.append(json.dumps(row, ensure_ascii=False).encode())
    return [b"\n".join(lines[i : i + batch]) + b"\n" for i in range(0, len(lines), batch)]


# -- 1. parse, in this process ---------------------------------------------------------------


def parse_phase(bodies: list[bytes], max_rows: int) -> dict[str, Any]:
    from service.ingest import log_fields, log_table, parse_body, parse_logs, validate

    fields = log_fields()
    out: dict[str, Any] = {"load_start": load()}
    rows = 0
    for name, parse in (
        ("columnar", lambda b: parse_logs(b, "application/x-ndjson", fields, max_rows)),
        (
            "reference",
            lambda b: log_table(validate(parse_body(b, "application/x-ndjson"), fields, max_rows)),
        ),
    ):
        started = time.perf_counter()
        rows = sum(parse(body).num_rows for body in bodies)
        seconds = time.perf_counter() - started
        out[name] = {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}
    out["speedup"] = out["columnar"]["rows_per_s"] / out["reference"]["rows_per_s"]
    out["load_end"] = load()
    return out


# -- 2 and 4. the engine's own insert, in a subprocess ----------------------------------------

VARIANTS = {
    "schema": "every schema/ file (the service's schema)",
    "logs_only": "schema/001_logs.sql alone: no materialized views",
    "logs_no_ngram": "001 without the content n-gram index, no views",
    "logs_bare": "001 without any skip index, no views",
    "logs_tokenbf": "001 with a token bloom filter instead of the n-gram index, no views",
    "logs_text": "001 with the full-text `text` index instead of the n-gram index, no views",
}
NGRAM = "INDEX idx_content_ngram lowerUTF8(content) TYPE ngrambf_v1(3, 65536, 3, 0) GRANULARITY 1"
REPLACEMENT = {
    "logs_tokenbf": "INDEX idx_content_token lowerUTF8(content) TYPE tokenbf_v1(65536, 3, 0) "
    "GRANULARITY 1",
    "logs_text": "INDEX idx_content_text lowerUTF8(content) TYPE text(tokenizer = 'ngrams') "
    "GRANULARITY 1",
}
# search as the service does it (service/logs.py): a case-insensitive substring of content
SEARCH = (
    "SELECT id FROM logs WHERE lowerUTF8(content) LIKE lowerUTF8({pattern:String}) "
    "ORDER BY created_at DESC LIMIT 100"
)
KEYWORDS = {"rare": "上游渠道密钥无效", "absent": "zq-no-such-text"}


def variant_ddl(name: str) -> list[str]:
    text = (ROOT / "schema" / "001_logs.sql").read_text()
    lines = text.splitlines()
    if name == "logs_no_ngram":
        lines = [line for line in lines if "idx_content_ngram" not in line]
    elif name in REPLACEMENT:
        lines = [REPLACEMENT[name] + "," if NGRAM in line else line for line in lines]
    elif name == "logs_bare":
        lines = [line for line in lines if not line.strip().startswith("INDEX ")]
    ddl = "\n".join(lines)
    # the last column line may now end with a comma before ")"
    return [re.sub(r",\s*\n\)", "\n)", ddl)]


async def floor_insert(data_dir: str, files: list[str], variants: list[str]) -> dict[str, Any]:
    from service.migrate import migrate
    from service.store import SESSION_SETTINGS, ChdbStore

    store = ChdbStore(data_dir, threads=2)
    out: dict[str, Any] = {}
    try:
        for variant in variants:
            database = f"floor_{variant}"
            await store.command(f"CREATE DATABASE IF NOT EXISTS {database}")
            db_store = ChdbStore(data_dir, threads=2, database=database)
            if variant == "schema":
                await migrate(db_store)
            else:
                try:
                    for statement in variant_ddl(variant):
                        await db_store.command(
                            statement, settings={"allow_experimental_full_text_index": 1}
                        )
                except Exception as exc:  # an index type this engine lacks: say so, go on
                    out[variant] = {"error": str(exc)[:300]}
                    await db_store.close()
                    continue
            # The engine parses the file straight into the table's column types (as
            # INSERT ... FROM INFILE would; that one takes no query parameters).
            described = await db_store.query(
                "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                "AND table = 'logs' ORDER BY position"
            )
            structure = ", ".join(f"`{name}` {kind}" for name, kind in described.rows)
            started_load = load()
            idle = rss_kib(os.getpid())
            sampler = RssSampler(os.getpid())
            sampler.start()
            started = time.perf_counter()
            for number, path in enumerate(files):
                await db_store.command(
                    "INSERT INTO logs SELECT * FROM file({path:String}, 'JSONEachRow', "
                    "{structure:String})",
                    {"path": path, "structure": structure},
                    settings={
                        **SESSION_SETTINGS,
                        "insert_deduplication_token": f"floor-{number}:0",
                    },
                )
            seconds = time.perf_counter() - started
            sampler.stopped.set()
            sampler.join()
            count = int((await db_store.query("SELECT count() FROM logs")).scalar())
            search: dict[str, float] = {}
            for kind, keyword in KEYWORDS.items():
                times = []
                for _ in range(5):
                    begun = time.perf_counter()
                    await db_store.query(SEARCH, {"pattern": f"%{keyword}%"})
                    times.append((time.perf_counter() - begun) * 1000)
                search[f"{kind}_ms"] = sorted(times)[2]
            on_disk = await db_store.query(
                "SELECT sum(secondary_indices_compressed_bytes) FROM system.parts "
                "WHERE database = currentDatabase() AND table = 'logs' AND active"
            )
            out[variant] = {
                "search": search,
                "skip_index_bytes": int(on_disk.scalar() or 0),
                "rows": count,
                "seconds": seconds,
                "rows_per_s": count / seconds,
                "rss_idle_mib": idle / 1024,
                "rss_over_idle_mib": (sampler.peak - idle) / 1024,
                "load_start": started_load,
                "load_end": load(),
            }
            await db_store.close()
    finally:
        await store.close()
    return out


def run_floor(files: list[str], variants: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gatelog-write-floor-") as data_dir:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--floor-child", data_dir,
             "--variants", ",".join(variants), *files],
            cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- 3. the service over HTTP -----------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            time.sleep(0.01)


async def service_phase(bodies: list[bytes]) -> dict[str, Any]:
    import aiohttp

    from tools.bench.run import Context, Service, headers_for

    ctx = Context(0, 0, "", 0, "", 0, "", 0)
    headers = {**headers_for("writer", ctx), "Content-Type": "application/x-ndjson"}
    with tempfile.TemporaryDirectory(prefix="gatelog-write-service-") as data_dir:
        service = Service(data_dir)
        try:
            async with aiohttp.ClientSession() as session:
                await service.ready(session)
                await asyncio.sleep(2.0)  # start-up settles (schema applied, caches warm)
                idle = rss_kib(service.process.pid)
                sampler = RssSampler(service.process.pid)
                sampler.start()
                started_load = load()
                engine_ms = 0.0
                stored = 0
                started = time.perf_counter()
                for body in bodies:
                    async with session.post(
                        service.url + "/api/internal/logs", data=body, headers=headers
                    ) as response:
                        answer = await response.json()
                        if response.status != 200:
                            raise RuntimeError(f"ingest: HTTP {response.status}: {answer}")
                        stored += int(answer["data"])
                        timing = response.headers.get("Server-Timing", "")
                        found = re.search(r"engine;dur=([\d.]+)", timing)
                        engine_ms += float(found.group(1)) if found else 0.0
                seconds = time.perf_counter() - started
                sampler.stopped.set()
                sampler.join()
                ended_load = load()
        finally:
            service.stop()
    body_kib = max(len(b) for b in bodies) / 1024
    total_kib = sum(len(b) for b in bodies) / 1024
    return {
        "rows": stored,
        "seconds": seconds,
        "rows_per_s": stored / seconds,
        "engine_seconds": engine_ms / 1000,
        "engine_share": engine_ms / 1000 / seconds,
        "rss_idle_mib": idle / 1024,
        "rss_peak_mib": sampler.peak / 1024,
        "rss_over_idle_mib": (sampler.peak - idle) / 1024,
        "body_mib": body_kib / 1024,
        "bodies_mib": total_kib / 1024,
        "rss_over_idle_per_body": (sampler.peak - idle) / body_kib,
        "load_start": started_load,
        "load_end": ended_load,
    }


# -- 5. import and generate ------------------------------------------------------------------


def sqlite_source(path: Path, rows: int, seed: int) -> None:
    """A new-api SQLite database (the gateway's own DDL) with ``rows`` generated logs."""
    import sqlite3

    from tools.bench import newapi
    from tools.generate import Spec, World

    world = World(Spec(rows, 30, seed, int(time.time()) - 3 * DAY))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    newapi.create(
        conn, "sqlite", [s for s in newapi.SQL_DDL["sqlite"] if s.startswith("CREATE TABLE")]
    )
    for _, table in world.batches():
        newapi.insert(conn, "sqlite", "logs", newapi.LOG_COLUMNS, newapi.log_rows(table))
    conn.close()


def read_phase(path: Path) -> dict[str, Any]:
    """The import's reading alone (no engine): SQLite windows as Arrow through the ADBC
    driver against the standard library's rows, the same SQL."""
    from service.importer import DEFAULT_BATCH_IDS, open_reader, parse_source

    reader = open_reader(parse_source(f"sqlite:///{path}"))
    out: dict[str, Any] = {"load_start": load()}
    try:
        select, names = reader.log_select()
        top = int(reader.scalar('SELECT MAX("id") FROM "logs"') or 0)
        arrow = reader.arrow  # type: ignore[attr-defined]
        for name, columnar in (("adbc", True), ("sqlite3", False)):
            reader.arrow = arrow if columnar else None  # type: ignore[attr-defined]
            started = time.perf_counter()
            rows = sum(
                reader.logs_window(select, names, lo, lo + DEFAULT_BATCH_IDS).num_rows
                for lo in range(0, top, DEFAULT_BATCH_IDS)
            )
            seconds = time.perf_counter() - started
            out[name] = {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}
        reader.arrow = arrow  # type: ignore[attr-defined]
    finally:
        reader.close()
    out["load_end"] = load()
    return out


def cli_phase(command: list[str], pattern: str) -> dict[str, Any]:
    """``python -m service ...`` into a fresh data directory; its own rows/s line."""
    with tempfile.TemporaryDirectory(prefix="gatelog-write-cli-") as data_dir:
        env = {**os.environ, "GATELOG_DATA_DIR": data_dir, "GATELOG_LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        started_load = load()
        done = subprocess.run(
            [sys.executable, "-m", "service", *command, "--no-progress"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True,
        )  # fmt: skip
    found = re.search(pattern, done.stdout)
    if not found:
        raise RuntimeError(f"unexpected output: {done.stdout}")
    rows, seconds = int(found.group("rows")), float(found.group("seconds"))
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "load_start": started_load, "load_end": load()}  # fmt: skip


def generation_phase(rows: int, seed: int) -> dict[str, Any]:
    """The generator alone (no engine): rows/s of its Arrow tables."""
    from tools.generate import Spec, World

    started_load = load()
    started = time.perf_counter()
    made = sum(t.num_rows for _, t in World(Spec(rows, 30, seed, int(time.time()))).batches())
    seconds = time.perf_counter() - started
    return {"rows": made, "seconds": seconds, "rows_per_s": made / seconds,
            "load_start": started_load, "load_end": load()}  # fmt: skip


def other_paths(rows: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gatelog-write-sqlite-") as work:
        path = Path(work) / "one-api.db"
        sqlite_source(path, rows, seed)
        out["read"] = read_phase(path)
        print(f"read: {out['read']['adbc']['rows_per_s']:,.0f} vs "
              f"{out['read']['sqlite3']['rows_per_s']:,.0f} rows/s", flush=True)  # fmt: skip
        out["import"] = cli_phase(
            ["import", "--from", f"sqlite:///{path}"],
            r"imported (?P<rows>\d+) logs .* in (?P<seconds>[\d.]+) s",
        )
        print(f"import: {out['import']['rows_per_s']:,.0f} rows/s", flush=True)
    out["generation"] = generation_phase(rows, seed)
    out["generate"] = cli_phase(
        ["generate", "--rows", str(rows), "--seed", str(seed)],
        r"generated (?P<rows>\d+) logs .* in (?P<seconds>[\d.]+) s",
    )
    print(f"generate: {out['generate']['rows_per_s']:,.0f} rows/s", flush=True)
    return out


# -- the run ---------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    p, s, f = result["parse"], result["service"], result["floor"]
    lines = [
        f"# Write bench, {result['rows']:,} rows in NDJSON batches of {result['batch']:,}",
        "",
        f"{result['when']}; {result['cores']} cores; `uptime` load at start "
        f"{result['load_start']}, at end {result['load_end']}.",
        "",
        "| path | rows/s | load (start -> end) |",
        "|---|---|---|",
        f"| parse, columnar (msgspec + Arrow) | {p['columnar']['rows_per_s']:,.0f} "
        f"| {p['load_start']} -> {p['load_end']} |",
        f"| parse, reference (stdlib json + per-field checks) "
        f"| {p['reference']['rows_per_s']:,.0f} | |",
        f"| `POST /api/internal/logs`, one client | {s['rows_per_s']:,.0f} "
        f"| {s['load_start']} -> {s['load_end']} |",
    ]
    for i, run in enumerate(result["floor_runs"]):
        row = run["schema"]
        lines.append(
            f"| floor {i + 1}: engine `INSERT ... FORMAT JSONEachRow`, same schema "
            f"| {row['rows_per_s']:,.0f} | {row['load_start']} -> {row['load_end']} |"
        )
    for variant, what in VARIANTS.items():
        if variant != "schema" and variant in result["prices"]:
            row = result["prices"][variant]
            if "error" in row:
                lines.append(
                    f"| engine insert into {what} | not measured: {row['error'][:120]} | |"
                )
                continue
            lines.append(
                f"| engine insert into {what} | {row['rows_per_s']:,.0f} "
                f"| {row['load_start']} -> {row['load_end']} |"
            )
    lines += [
        "",
        f"- service / floor: **{s['rows_per_s'] / f:.2f}x** (floor = mean of the two "
        f"floor runs, {f:,.0f} rows/s); engine time inside the requests "
        f"{s['engine_share']:.0%} of the wall time",
        f"- columnar / reference parse: {p['speedup']:.1f}x",
        f"- service RSS: idle {s['rss_idle_mib']:.0f} MiB, peak {s['rss_peak_mib']:.0f} MiB, "
        f"peak over idle {s['rss_over_idle_mib']:.0f} MiB = "
        f"{s['rss_over_idle_per_body']:.1f}x one body ({s['body_mib']:.1f} MiB; "
        f"{s['bodies_mib']:.0f} MiB posted in all); the engine's own insert of the same "
        f"bodies (floor 1) grew its process by "
        f"{result['floor_runs'][0]['schema']['rss_over_idle_mib']:.0f} MiB over idle",
    ]
    priced = {k: v for k, v in result["prices"].items() if "search" in v}
    if priced:
        lines += [
            "",
            "| content index (no views) | insert rows/s | skip indexes on disk | search, "
            "rare keyword | search, absent keyword |",
            "|---|---|---|---|---|",
        ]
        for variant, row in priced.items():
            size = row["skip_index_bytes"] / 2**20
            lines.append(
                f"| {variant} | {row['rows_per_s']:,.0f} | {size:.1f} MiB "
                f"| {row['search']['rare_ms']:.1f} ms | {row['search']['absent_ms']:.1f} ms |"
            )
    o = result.get("others") or {}
    if o:
        r, i, gen, g = o["read"], o["import"], o["generation"], o["generate"]
        lines += [
            "",
            f"| other write path ({i['rows']:,} rows) | rows/s | load (start -> end) |",
            "|---|---|---|",
            f"| import's SQLite read, ADBC (Arrow) | {r['adbc']['rows_per_s']:,.0f} "
            f"| {r['load_start']} -> {r['load_end']} |",
            f"| import's SQLite read, sqlite3 rows | {r['sqlite3']['rows_per_s']:,.0f} | |",
            f"| `python -m service import --from sqlite:///...` | {i['rows_per_s']:,.0f} "
            f"| {i['load_start']} -> {i['load_end']} |",
            f"| generation alone (numpy/pyarrow) | {gen['rows_per_s']:,.0f} "
            f"| {gen['load_start']} -> {gen['load_end']} |",
            f"| `python -m service generate` | {g['rows_per_s']:,.0f} "
            f"| {g['load_start']} -> {g['load_end']} |",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, no schema prices")
    parser.add_argument("--no-prices", action="store_true", help="skip the schema prices")
    parser.add_argument(
        "--other-rows", type=int, default=0,
        help="also import and generate this many rows (import from new-api's SQLite; 0: not)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--variants", default="schema", help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_child:
        result = asyncio.run(floor_insert(args.floor_child, args.files, args.variants.split(",")))
        print(json.dumps(result))
        return 0
    rows = 20_000 if args.quick else args.rows
    started_load = load()
    bodies = make_bodies(rows, args.batch, args.seed)
    spool = tempfile.mkdtemp(prefix="gatelog-write-bodies-", dir="/dev/shm")
    try:
        files = []
        for i, body in enumerate(bodies):
            path = os.path.join(spool, f"{i:05d}.ndjson")
            Path(path).write_bytes(body)
            files.append(path)
        parse = parse_phase(bodies, max(args.batch, 1))
        print(f"parse: {parse['columnar']['rows_per_s']:,.0f} vs "
              f"{parse['reference']['rows_per_s']:,.0f} rows/s", flush=True)  # fmt: skip
        floors = [run_floor(files, ["schema"])]
        print(f"floor: {floors[0]['schema']['rows_per_s']:,.0f} rows/s", flush=True)
        service = asyncio.run(service_phase(bodies))
        print(f"service: {service['rows_per_s']:,.0f} rows/s", flush=True)
        floors.append(run_floor(files, ["schema"]))
        print(f"floor: {floors[1]['schema']['rows_per_s']:,.0f} rows/s", flush=True)
        prices: dict[str, Any] = {}
        if not (args.quick or args.no_prices):
            prices = run_floor(files, [v for v in VARIANTS if v != "schema"])
        others = other_paths(args.other_rows, args.seed) if args.other_rows else {}
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    floor = sum(run["schema"]["rows_per_s"] for run in floors) / len(floors)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "rows": sum(b.count(b"\n") for b in bodies),
        "batch": args.batch,
        "load_start": started_load,
        "load_end": load(),
        "parse": parse,
        "floor_runs": floors,
        "floor": floor,
        "service": service,
        "service_over_floor": service["rows_per_s"] / floor,
        "prices": prices,
        "others": others,
    }
    save(args.out, f"write-{result['rows']}", result, markdown(result))
    return 0


def save(out: Path, name: str, result: dict[str, Any], text: str) -> None:
    """A bench's result: ``out/<name>.json`` and ``.md``, the markdown also printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
