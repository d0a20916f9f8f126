"""``python -m service generate``: deterministic, complete and shaped like a gateway's logs,
and stored in the engine exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.store import ChdbStore
from tests.expected import stored_hash
from tools.generate import BEIJING_OFFSET_HOURS, CHUNK_ROWS, Spec, World, token_key, write

END = 1_764_000_000


def rows_of(world: World) -> pa.Table:
    return pa.concat_tables(t for _, t in world.batches()).combine_chunks()


@pytest.fixture(scope="module")
def sample() -> tuple[World, list[dict[str, Any]]]:
    world = World(Spec(rows=60_000, days=7, seed=11, end=END))
    return world, rows_of(world).to_pylist()


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    spec = Spec(rows=5000, days=2, seed=3, end=END)
    first, second = rows_of(World(spec)), rows_of(World(spec))
    assert first.equals(second)
    other = rows_of(World(Spec(rows=5000, days=2, seed=4, end=END)))
    assert not first.equals(other)
    assert World(spec).token_keys() == World(spec).token_keys()


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 4000),
    days=st.integers(1, 6),
    seed=st.integers(0, 2**32),
    first_id=st.integers(1, 10**12),
)
def test_every_row_once_ids_in_time_order(rows: int, days: int, seed: int, first_id: int) -> None:
    spec = Spec(rows=rows, days=days, seed=seed, end=END, first_id=first_id)
    table = rows_of(World(spec))
    assert table.num_rows == rows
    ids = np.asarray(table.column("id"))
    assert (ids == np.arange(first_id, first_id + rows)).all()
    created = np.asarray(table.column("created_at")).astype(np.int64)
    assert (np.diff(created) >= 0).all(), "ids grow with time"
    assert created.min() >= END - days * 86400 and created.max() < END


def test_chunks_are_bounded_and_contiguous() -> None:
    world = World(Spec(rows=3 * CHUNK_ROWS + 5, days=30, seed=1, end=END))
    chunks = world.chunks()
    assert len(chunks) >= 3
    sizes = [int(world.minute_rows[lo:hi].sum()) for lo, hi, _ in chunks]
    assert sum(sizes) == world.spec.rows
    assert all(size <= CHUNK_ROWS + int(world.minute_rows.max()) for size in sizes)
    assert [c[2] for c in chunks] == list(np.cumsum([0, *sizes[:-1]]))


def test_log_types_and_catalogue_look_like_a_gateway(sample: Any) -> None:
    _world, rows = sample
    types = Counter(r["type"] for r in rows)
    n = len(rows)
    assert 0.85 < types[2] / n < 0.95, "mostly consume logs"
    assert 0.04 < types[5] / n < 0.10, "some errors"
    assert {1, 3, 4, 5, 6, 7} <= set(types), "top-ups, management, system, refund, login"
    consume = [r for r in rows if r["type"] == 2]
    assert len({r["model_name"] for r in consume}) >= 20
    assert len({r["channel_id"] for r in consume}) >= 20
    assert len({r["group"] for r in rows}) >= 3
    contents = {r["content"] for r in rows}
    assert any("倍率" in c for c in contents) and any("ratio" in c for c in contents)
    assert all(r["request_id"] for r in consume) and len({r["request_id"] for r in consume}) == len(
        consume
    )
    assert any(r["ip"] for r in rows) and any(not r["ip"] for r in rows)


def test_activity_is_skewed_and_follows_the_day(sample: Any) -> None:
    _world, rows = sample
    per_user = sorted(Counter(r["user_id"] for r in rows).values(), reverse=True)
    top = per_user[: max(1, len(per_user) // 10)]
    assert sum(top) > 0.5 * len(rows), "a tenth of the users send most requests"
    hours = Counter(((r["created_at"] // 3600) + BEIJING_OFFSET_HOURS) % 24 for r in rows)
    assert max(hours.values()) > 3 * min(hours.values()), "office hours against the night"


def test_tokens_channels_and_quota_are_consistent(sample: Any) -> None:
    world, rows = sample
    for r in rows:
        if r["token_id"]:
            assert int(world.token_user[r["token_id"] - 1]) == r["user_id"]
            assert world.token_names[r["token_id"] - 1] == r["token_name"]
        if r["channel_id"]:
            model = world.model_names.index(r["model_name"])
            served = world.channels_for_model[model, : world.channel_counts[model]]
            assert r["channel_id"] in served.tolist()
            assert world.channel_names[r["channel_id"] - 1] == r["channel_name"]
    for r in rows:
        if r["type"] != 2:
            continue
        other = json.loads(r["other"])
        assert list(other) == sorted(other), "Go writes map keys sorted"
        assert {"admin_info", "frt", "model_ratio", "group_ratio", "completion_ratio"} <= set(other)
        if other["model_price"] >= 0:
            want = other["model_price"] * 500_000 * other["group_ratio"]
        else:
            cached = other["cache_tokens"]
            billed = (
                r["prompt_tokens"] - cached + cached * other["cache_ratio"]
                + r["completion_tokens"] * other["completion_ratio"]
            )  # fmt: skip
            want = max(billed * other["model_ratio"] * other["group_ratio"], 1)
        assert r["quota"] == int(want), r
    errors = [json.loads(r["other"]) for r in rows if r["type"] == 5]
    assert errors and all(e["status_code"] >= 400 and "admin_info" in e for e in errors)


async def test_written_once_and_token_keys_work(store: ChdbStore, client: Any) -> None:
    spec = Spec(rows=20_000, days=3, seed=5, end=END, users=30)
    world = World(spec)
    expected = rows_of(world).to_pylist()
    rows, _seconds = await write(store, spec, progress=False)
    again, _ = await write(store, spec, progress=False)
    assert rows == again == len(expected)
    summary = (
        await store.query(
            "SELECT count(), sum(quota), sum(prompt_tokens), countIf(type = 5), uniqExact(id) "
            "FROM logs"
        )
    ).rows[0]
    assert summary == (
        len(expected),
        sum(r["quota"] for r in expected),
        sum(r["prompt_tokens"] for r in expected),
        sum(1 for r in expected if r["type"] == 5),
        len(expected),
    )
    tokens = (await store.query("SELECT count() FROM tokens FINAL")).scalar()
    assert tokens == len(world.token_ids)
    # the busiest enabled token answers the public lookup with its own newest logs
    use = Counter(r["token_id"] for r in expected if r["token_id"])
    enabled = [t for t, _ in use.most_common() if world.token_status[t - 1] == 1]
    token_id = enabled[0]
    key = token_key(spec.seed, token_id)
    stored = await store.query(
        "SELECT key_hash FROM tokens FINAL WHERE id = {id:UInt64}", {"id": token_id}
    )
    assert stored.scalar() == stored_hash(key)
    response = await client.get(f"/api/log/token?key=sk-{key}&page_size=50")
    body = await response.json()
    assert response.status == 200, body
    mine = sorted(
        (r for r in expected if r["token_id"] == token_id),
        key=lambda r: (r["created_at"], r["id"]),
        reverse=True,
    )
    assert [item["id"] for item in body["data"]] == [r["id"] for r in mine[:50]]


def test_command_line_generate(tmp_path: Path) -> None:
    env = {**os.environ, "GATELOG_DATA_DIR": str(tmp_path / "data"), "GATELOG_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "service", "generate", "--rows", "3000", "--days", "2",
               "--seed", "9", "--end", str(END), "--no-progress"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"generated 3000 logs over 2 days ending {END} (seed 9" in done.stdout
    bad = subprocess.run([*command[:4], "--rows", "0"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2
