"""Measure the raw table's layout choices on the embedded engine.

Builds the same synthetic rows into tables that differ only in sort key (and one with
a projection) and times the two hot list paths, the user count/sum and the keyword
search. Writes bench/results/sortkey-<rows>.json and prints a markdown table.

    python bench/sortkey.py --rows 3000000
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import clickhouse_connect

COLUMNS = Path(__file__).resolve().parent.parent / "schema" / "001_logs.sql"
LAYOUTS = {
    "created_at,id": "ORDER BY (created_at, id)",
    "user_id,created_at,id": "ORDER BY (user_id, created_at, id)",
}
DAYS = 30
END = 1_790_000_000


def ddl(name: str, order: str, projection: bool) -> str:
    text = COLUMNS.read_text()
    text = text[text.index("CREATE TABLE") :]
    body = text[text.index("(") : text.index("ENGINE")]
    if projection:
        body = body.rstrip().rstrip(")") + (
            ",\n    PROJECTION by_time (SELECT _part_offset ORDER BY created_at, id)\n)\n"
        )
    return (
        f"CREATE TABLE {name} {body} ENGINE = MergeTree PARTITION BY toDate(created_at) "
        f"{order} SETTINGS index_granularity = 8192"
    )


def fill(client: object, name: str, rows: int) -> None:
    client.command(  # type: ignore[attr-defined]
        f"""
        INSERT INTO {name} (id, user_id, created_at, type, content, username, token_name,
            model_name, quota, prompt_tokens, completion_tokens, token_id, channel_id)
        SELECT number + 1,
               toUInt64(pow(rand64(1) % 1000000 / 1000000.0, 3) * 5000),
               toDateTime({END} - intDiv(number * {DAYS * 86400}, {rows}), 'UTC'),
               if(number % 50 = 0, 5, 2),
               concat('call ', toString(number % 9973), if(number % 20011 = 0, ' Needle', '')),
               concat('user', toString(number % 5000)),
               concat('token', toString(number % 97)),
               concat('model-', toString(number % 40)),
               number % 5000, number % 3000, number % 1500, number % 20000, number % 60
        FROM numbers({rows})
        SETTINGS max_partitions_per_insert_block = 1000, max_insert_threads = 2
        """
    )
    client.command(f"OPTIMIZE TABLE {name} FINAL")  # type: ignore[attr-defined]


QUERIES = {
    "admin newest 20": "SELECT * FROM {t} ORDER BY created_at DESC, id DESC LIMIT 20",
    "admin newest 20, offset 10000": (
        "SELECT * FROM {t} ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 10000"
    ),
    "admin count, model filter": "SELECT count() FROM {t} WHERE model_name = 'model-7'",
    "user newest 20": (
        "SELECT * FROM {t} WHERE user_id = 3 ORDER BY created_at DESC, id DESC LIMIT 20"
    ),
    "user count": "SELECT count() FROM {t} WHERE user_id = 3",
    "user sum(quota) 10 days": (
        "SELECT sum(quota) FROM {t} WHERE user_id = 3 "
        f"AND created_at >= toDateTime({END - 10 * 86400}, 'UTC')"
    ),
    "token newest 100": (
        "SELECT * FROM {t} WHERE user_id = 3 AND token_id = 3 "
        "ORDER BY created_at DESC, id DESC LIMIT 100"
    ),
    "search keyword": (
        "SELECT id FROM {t} WHERE lowerUTF8(content) LIKE '%needle%' "
        "ORDER BY created_at DESC, id DESC LIMIT 100"
    ),
}


def timed(client: object, sql: str, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.query(sql)  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    path = tempfile.mkdtemp(prefix="gatelog-sortkey-")
    client = clickhouse_connect.get_client(interface="chdb", path=path)
    results: dict[str, dict[str, float]] = {}
    try:
        tables = {}
        for i, (label, order) in enumerate(LAYOUTS.items()):
            tables[label] = f"t{i}"
            client.command(ddl(f"t{i}", order, projection=False))
            fill(client, f"t{i}", args.rows)
        for label, table in tables.items():
            results[label] = {
                name: round(timed(client, sql.format(t=table), args.repeat), 2)
                for name, sql in QUERIES.items()
            }
    finally:
        client.close()
        shutil.rmtree(path, ignore_errors=True)
    out = {
        "rows": args.rows,
        "days": DAYS,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "median_ms": results,
    }
    target = Path(__file__).resolve().parent / "results" / f"sortkey-{args.rows}.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    labels = list(results)
    print(f"| query ({args.rows:,} rows, {DAYS} days) | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for name in QUERIES:
        print(f"| {name} | " + " | ".join(f"{results[x][name]} ms" for x in labels) + " |")


if __name__ == "__main__":
    main()
