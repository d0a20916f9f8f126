"""What the content search index costs on insert and buys on search, at scale.

    python bench/index_price.py [--source bench/data/10M] [--rows N]

Issue 11 asks for the content n-gram index (``idx_content_ngram`` in
``schema/001_logs.sql``) priced at 10M rows against the engine's full-text ``text``
index and a token bloom filter. This takes the rows of a bench data directory
(``python -m tools.bench.run --rows 10000000`` makes ``bench/data/10M``), copies
them once to a Parquet file, and for each variant of ``logs`` (the table of
``schema/001`` as it is, without the n-gram index, without any skip index, with a token
bloom filter or a ``text`` index in its place: ``bench/write.py``'s variants):

1. inserts every row from the Parquet file in one statement (rows/s: the index's price on
   a bulk insert), then merges the table to one part per partition (``OPTIMIZE ... FINAL``,
   as a user's server would have it after a while; its seconds are a price too);
2. reads the skip index's and the column data's size on disk;
3. runs the service's keyword search as ``service/logs.py`` sends it (a case-insensitive
   substring of ``content`` or ``model_name``: the total ``count()`` and the newest page
   of 20) over the last day (the default range of a search) and over every day, for a
   needle (a request id quoted in one row of a million, added to the copied rows), a
   rare keyword (an error text on about 1 row in 170), a common one, and one that
   matches nothing: the first run (a new keyword) and the median of 4 repeats (caches
   on: the engine's query condition cache then knows where the condition was false).

Each variant gets its own database in one fresh data directory (dropped after its turn).
Results: ``bench/results/index-price-<rows>.json`` and ``.md``, with ``uptime``'s load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from write import VARIANTS as DESCRIPTION  # noqa: E402
from write import save, variant_ddl  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DAY = 86400
VARIANTS = ("logs_only", "logs_no_ngram", "logs_bare", "logs_tokenbf", "logs_text")
NEEDLE = "req-7f3a9c0d"
KEYWORDS = {
    # a request id quoted in about one row in a million (added to the copied rows)
    "needle": NEEDLE,
    "rare": "上游渠道密钥无效",  # one error text of twelve, on failed requests only
    "common": "group ratio",  # in the English text of about half the consume logs
    "absent": "zq-no-such-text",
}
# the keyword condition of service.logs.keyword_filter, verbatim
MATCH = (
    "(lowerUTF8(content) LIKE lowerUTF8({kw_pattern:String})"
    " OR lowerUTF8(model_name) LIKE lowerUTF8({kw_pattern:String}))"
)
TIME = (
    "created_at >= toDateTime({lo:UInt32}, 'UTC') AND created_at < toDateTime({hi:UInt32}, 'UTC')"
)
COUNT = f"SELECT count() FROM logs WHERE {TIME} AND {MATCH}"
PAGE = (
    f"SELECT id, created_at, content FROM logs WHERE {TIME} AND {MATCH} "
    "ORDER BY created_at DESC, id DESC LIMIT 20"
)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def export(source: str, parquet: str, rows: int) -> dict[str, Any]:
    from service.store import ChdbStore

    store = ChdbStore(source, threads=2)
    try:
        limit = f" ORDER BY created_at DESC LIMIT {int(rows)}" if rows else ""
        await store.command(
            "INSERT INTO FUNCTION file({path:String}, 'Parquet') SELECT * FROM logs" + limit,
            {"path": parquet},
        )
        span = await store.query(
            "SELECT count(), toUInt32(min(created_at)), toUInt32(max(created_at)) "
            "FROM file({path:String}, 'Parquet')",
            {"path": parquet},
        )
        count, lo, hi = (int(x) for x in span.rows[0])
        # the needle: one row in about a million quotes a request id in its content
        await store.command(
            "INSERT INTO FUNCTION file({path:String}, 'Parquet') SELECT * REPLACE "
            "(concat(content, ' (', {needle:String}, ')') AS content, id + 1 AS id) "
            "FROM file({source:String}, 'Parquet') WHERE id % 1000003 = 0",
            {"path": parquet + ".needles", "source": parquet, "needle": NEEDLE},
        )
    finally:
        await store.close()
    return {"rows": count, "lo": lo, "hi": hi}


async def timed(store: Any, sql: str, params: dict[str, Any], times: int = 5) -> dict[str, Any]:
    """The first run (a keyword not searched before: no cache of the engine knows it) and
    the median of the repeats (the engine's query condition cache then skips granules
    where the condition was false)."""
    seconds = []
    answer: Any = None
    for _ in range(times):
        begun = time.perf_counter()
        answer = (await store.query(sql, params)).rows
        seconds.append(time.perf_counter() - begun)
    return {"first_ms": seconds[0] * 1000, "ms": statistics.median(seconds[1:]) * 1000,
            "rows": len(answer), "first": answer[0][0]
            if answer and sql.startswith("SELECT count()") else None}  # fmt: skip


async def price(data_dir: str, parquet: str, span: dict[str, Any], variant: str) -> dict[str, Any]:
    from service.store import ChdbStore

    root = ChdbStore(data_dir, threads=2)
    database = f"price_{variant}"
    await root.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    store = ChdbStore(data_dir, threads=2, database=database)
    out: dict[str, Any] = {"variant": variant, "description": DESCRIPTION[variant]}
    try:
        try:
            for statement in variant_ddl(variant):
                await store.command(statement, settings={"allow_experimental_full_text_index": 1})
        except Exception as exc:  # an index type this engine lacks: say so, go on
            out["error"] = str(exc)[:300]
            return out
        columns = await store.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() "
            "AND table = 'logs' ORDER BY position"
        )
        names = ", ".join(f"`{name}`" for (name,) in columns.rows)
        out["load_start"] = load()
        begun = time.perf_counter()
        await store.command(
            f"INSERT INTO logs ({names}) SELECT {names} FROM file({{path:String}}, 'Parquet')",
            {"path": parquet},
        )
        out["insert_seconds"] = time.perf_counter() - begun
        out["insert_rows_per_s"] = span["rows"] / out["insert_seconds"]
        await store.command(
            f"INSERT INTO logs ({names}) SELECT {names} FROM file({{path:String}}, 'Parquet')",
            {"path": parquet + ".needles"},
        )
        begun = time.perf_counter()
        await store.command("OPTIMIZE TABLE logs FINAL")
        out["optimize_seconds"] = time.perf_counter() - begun
        sizes = await store.query(
            "SELECT sum(secondary_indices_compressed_bytes), sum(data_compressed_bytes), "
            "count(), sum(rows) FROM system.parts "
            "WHERE database = currentDatabase() AND table = 'logs' AND active"
        )
        index_bytes, data_bytes, parts, rows = (int(x or 0) for x in sizes.rows[0])
        out.update(index_mib=index_bytes / 2**20, data_mib=data_bytes / 2**20, parts=parts,
                   rows=rows)  # fmt: skip
        searches: dict[str, Any] = {}
        for range_name, lo in (("day", span["hi"] + 1 - DAY), ("all", span["lo"])):
            for kind, keyword in KEYWORDS.items():
                params = {"kw_pattern": f"%{keyword}%", "lo": lo, "hi": span["hi"] + 1}
                searches[f"{range_name}_{kind}"] = {
                    "count": await timed(store, COUNT, params),
                    "page": await timed(store, PAGE, params),
                }
        out["searches"] = searches
        out["load_end"] = load()
        return out
    finally:
        await store.close()
        await root.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        await root.close()


def child(argv: list[str]) -> None:
    what, *rest = argv
    if what == "export":
        source, parquet, rows = rest
        print(json.dumps(asyncio.run(export(source, parquet, int(rows)))))
    else:
        data_dir, parquet, span, variant = rest
        print(json.dumps(asyncio.run(price(data_dir, parquet, json.loads(span), variant))))


def run_child(*args: str) -> Any:
    done = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, check=True,
                          stdout=subprocess.PIPE, text=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(result: dict[str, Any]) -> str:
    span = result["span"]
    lines = [
        f"# The content search index priced at {span['rows']:,} rows",
        "",
        f"{result['when']}; {result['cores']} cores; chDB {result['engine']}; rows from "
        f"`{result['source']}` ({(span['hi'] - span['lo']) / DAY:.1f} days); `uptime` load "
        f"at start {result['load_start']}, at end {result['load_end']}. Insert: every row "
        "in one `INSERT ... SELECT` from Parquet; then `OPTIMIZE TABLE logs FINAL`. Search: "
        "the service's keyword condition, `count()` / the newest page of 20 in ms, first run "
        "(and the median of 4 repeats).",
        "",
        "| variant | insert rows/s | optimize s | skip index MiB | data MiB "
        + "".join(f"| {r} {k} count / page " for r in ("day", "all") for k in KEYWORDS)
        + "| load |",
        "|---|---|---|---|---" + "|---" * (2 * len(KEYWORDS)) + "|---|",
    ]
    for v in result["variants"]:
        if "error" in v:
            lines.append(f"| {v['variant']}: {v['description']} | not available: "
                         f"{v['error'][:120]} |")  # fmt: skip
            continue
        cells = "".join(
            f"| {s['count']['first_ms']:.0f} / {s['page']['first_ms']:.0f} "
            f"({s['count']['ms']:.0f} / {s['page']['ms']:.0f}) "
            for s in v["searches"].values()
        )
        lines.append(
            f"| {v['variant']}: {v['description']} | {v['insert_rows_per_s']:,.0f} "
            f"| {v['optimize_seconds']:.1f} | {v['index_mib']:.1f} | {v['data_mib']:.0f} "
            f"{cells}| {v['load_start']} -> {v['load_end']} |"
        )
    found = result["variants"][0].get("searches", {})
    if found:
        lines += ["", "Rows each keyword matches (the same in every variant): " + ", ".join(
            f"{name} {s['count']['first']:,}" for name, s in found.items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=str(ROOT / "bench" / "data" / "10M"))
    parser.add_argument("--rows", type=int, default=0, help="only the newest N rows (0: all)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not (Path(args.source) / "metadata").is_dir():
        print(f"index_price: no bench data at {args.source}: make it with "
              "`python -m tools.bench.run --rows 10000000`", file=sys.stderr)  # fmt: skip
        return 2
    import chdb

    started = load()
    work = tempfile.mkdtemp(prefix="gatelog-index-price-")
    try:
        parquet = os.path.join(work, "logs.parquet")
        span = run_child("export", args.source, parquet, str(args.rows))
        print(f"exported {span['rows']:,} rows", flush=True)
        variants = []
        data_dir = os.path.join(work, "data")
        for variant in args.variants.split(","):
            result = run_child("price", data_dir, parquet, json.dumps(span), variant)
            variants.append(result)
            print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "engine": getattr(chdb, "engine_version", getattr(chdb, "__version__", "?")),
        "source": os.path.relpath(args.source, ROOT),
        "span": span,
        "load_start": started,
        "load_end": load(),
        "variants": variants,
    }
    save(args.out, f"index-price-{span['rows']}", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
