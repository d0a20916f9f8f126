"""The rollup levels and the level choosing: the cover of a range by days, hours, minutes
and raw seconds (pure), which rollup each filter reads, and stats and series over rows
spread across several days equal brute force for every level (ranges starting and ending
inside days, hours and minutes; filters on site-wide and per-user dimensions)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from service.params import LogFilter
from service.stats import (
    DAY,
    HOUR,
    MINUTE,
    ROLLUPS,
    cover,
    filter_dimensions,
    levels,
    plan_pieces,
    zone_grain,
)
from tests.conftest import ADMIN, log_row, user_headers
from tests.test_stats import (
    GROUPS,
    HYPOTHESIS,
    MODELS,
    NAMES,
    TOKENS,
    USERS,
    assert_stats_exact,
    check_series,
    get_data,
    post_rows,
    run,
    with_clock,
    with_clock_async,
)

BASE = 1_790_000_000 // DAY * DAY  # a UTC midnight; the rows span the 3 days before it
NOW = BASE + 0.5
NEXT = [-1, 0, 1]


def edge_second() -> st.SearchStrategy[int]:
    """Seconds on and next to day, hour and minute boundaries of the span, and anywhere."""
    return st.one_of(
        st.builds(lambda d, k: BASE - d * DAY + k, st.integers(0, 3), st.sampled_from(NEXT)),
        st.builds(lambda h, k: BASE - h * HOUR + k, st.integers(0, 72), st.sampled_from(NEXT)),
        st.builds(
            lambda m, k: BASE - m * MINUTE + k,
            st.integers(0, 4320),
            st.sampled_from([-1, 0, 1, 30]),
        ),  # fmt: skip
        st.integers(BASE - 3 * DAY - 10, BASE - 1),
    )


def bound() -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), edge_second())


@given(lo=bound(), hi=bound(), chosen=st.sets(st.sampled_from(ROLLUPS)))
def test_cover_tiles_the_range_coarsest_first(lo: Any, hi: Any, chosen: Any) -> None:
    used = tuple(sorted({r.grain: r for r in chosen}.values(), key=lambda r: -r.grain))
    pieces = cover(lo, hi, used)
    if lo is not None and hi is not None and lo >= hi:
        assert pieces == []
        return
    # contiguous, in order, from lo to hi, each piece non-empty
    assert pieces[0][1] == lo and pieces[-1][2] == hi
    for (_, _, a_hi), (_, b_lo, _) in zip(pieces, pieces[1:], strict=False):
        assert a_hi == b_lo
    finest = min((r.grain for r in used), default=None)  # (raw pieces: see the end)
    for rollup, p_lo, p_hi in pieces:
        assert p_lo is None or p_hi is None or p_lo < p_hi
        if rollup is None and finest is not None:  # raw seconds only at the edges
            assert p_lo is not None and p_hi is not None
        elif rollup is not None:  # whole buckets of its level
            assert all(b is None or b % rollup.grain == 0 for b in (p_lo, p_hi))
    # the coarsest level that fits takes the middle: no piece of a finer level (nor of
    # raw seconds) holds a whole bucket of a coarser one
    for rollup, p_lo, p_hi in pieces:
        for coarser in used:
            if rollup is not None and coarser.grain <= rollup.grain:
                continue
            if p_lo is None or p_hi is None:
                continue
            g = coarser.grain
            assert -(-p_lo // g) * g + g > p_hi, (rollup, p_lo, p_hi, coarser)


def test_levels_choose_the_smallest_rollup_covering_the_filter() -> None:
    site = levels(filter_dimensions(LogFilter(type=2, model_name="gpt-4")))
    assert [r.table for r in site] == ["logs_day_site_m", "logs_hour_site", "logs_minute"]
    user = levels(filter_dimensions(LogFilter(type=2, user_id=7)))
    assert [r.table for r in user] == ["logs_day_m", "logs_minute"]
    by_name = levels(filter_dimensions(LogFilter(type=2), "username"))
    assert [r.table for r in by_name] == ["logs_day_m", "logs_minute"]
    hourly = levels(filter_dimensions(LogFilter(type=2)), HOUR)
    assert [r.table for r in hourly] == ["logs_hour_site", "logs_minute"]
    assert levels(filter_dimensions(LogFilter(type=2)), MINUTE)[0].table == "logs_minute"
    # a filter on no rollup's dimension reads raw rows only
    assert plan_pieces(LogFilter(type=2, request_id="r"), 0, 10 * DAY) == [(None, 0, 10 * DAY)]
    assert plan_pieces(LogFilter(type=2, token_id=3), None, None) == [(None, None, None)]


def spread_row() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(USERS),
            "created_at": edge_second(),
            "type": st.sampled_from([1, 2, 2, 2, 5]),
            "username": st.sampled_from(NAMES),
            "token_name": st.sampled_from(TOKENS),
            "model_name": st.sampled_from(MODELS),
            "quota": st.integers(-(10**6), 10**9),
            "prompt_tokens": st.integers(0, 10**6),
            "completion_tokens": st.integers(0, 10**6),
            "channel_id": st.sampled_from([1, 2]),
            "group": st.sampled_from(GROUPS),
        }
    ).map(lambda fields: log_row(**fields))


FILTERS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from([0, 1, 2, 5]),
    "username": st.sampled_from(NAMES),
    "token_name": st.sampled_from(TOKENS),
    "model_name": st.sampled_from([*MODELS, "gpt-4%"]),
    "channel": st.sampled_from([1, 2]),
    "group": st.sampled_from(GROUPS),
}


@st.composite
def ranged_queries(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        q: dict[str, Any] = {}
        for name in ("start_timestamp", "end_timestamp"):
            if draw(st.integers(0, 4)):
                q[name] = max(1, draw(edge_second()))
        if q.get("start_timestamp", 0) > q.get("end_timestamp", 2**32):
            q["start_timestamp"], q["end_timestamp"] = q["end_timestamp"], q["start_timestamp"]
        for name in draw(st.lists(st.sampled_from(sorted(FILTERS)), max_size=2, unique=True)):
            q[name] = draw(FILTERS[name])
        out.append(q)
    return out


@HYPOTHESIS
@given(rows=st.lists(spread_row(), min_size=1, max_size=40), queries=ranged_queries())
def test_stats_over_days_equal_brute_force(
    engine: Any, settings: Any, rows: Any, queries: Any
) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        await post_rows(client, rows)
        await assert_stats_exact(client, rows, queries, NOW)

    run(with_clock(engine, settings, NOW, body))


@HYPOTHESIS
@given(
    rows=st.lists(spread_row(), min_size=1, max_size=40),
    queries=ranged_queries(),
    interval=st.sampled_from(["hour", "day"]),
    group_by=st.sampled_from([None, "model_name", "group", "username", "channel"]),
)
def test_series_over_days_equal_brute_force(
    engine: Any, settings: Any, rows: Any, queries: Any, interval: str, group_by: Any
) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        await post_rows(client, rows)
        for q in queries:
            q = {"start_timestamp": int(BASE - 3 * DAY), "end_timestamp": int(NOW), **q,
                 "interval": interval}  # fmt: skip
            if q["start_timestamp"] > q["end_timestamp"]:
                q["start_timestamp"], q["end_timestamp"] = q["end_timestamp"], q["start_timestamp"]
            if group_by:
                q["group_by"] = group_by
            data = await get_data(client, "/api/log/series", q, ADMIN)
            check_series(data, rows, q, None, NOW)
            mine = {k: v for k, v in q.items() if k not in ("username", "channel")}
            if mine.get("group_by") in ("username", "channel"):
                del mine["group_by"]
            data = await get_data(client, "/api/log/self/series", mine, user_headers(USERS[0]))
            check_series(data, rows, mine, USERS[0], NOW)

    run(with_clock(engine, settings, NOW, body))


def test_zone_grain_hours_for_whole_hour_offsets_quarter_hours_otherwise() -> None:
    year = 1_767_225_600  # 2026-01-01 UTC; the range crosses both DST changes of 2026
    assert zone_grain("UTC", year, year + 365 * DAY) == HOUR
    assert zone_grain("Europe/Berlin", year, year + 365 * DAY) == HOUR
    assert zone_grain("America/New_York", year, year + 365 * DAY) == HOUR
    assert zone_grain("Asia/Kolkata", year, year + DAY) == 15 * MINUTE  # +5:30
    assert zone_grain("Asia/Kathmandu", year, year + DAY) == 15 * MINUTE  # +5:45
    # Lord Howe: +11 in (southern) summer, +10:30 from April: whole hours in January only
    assert zone_grain("Australia/Lord_Howe", year, year + 20 * DAY) == HOUR
    assert zone_grain("Australia/Lord_Howe", year, year + 200 * DAY) == 15 * MINUTE
    # local mean time (Kolkata +5:53:28 in 1850) is on no quarter hour: minutes
    assert zone_grain("Asia/Kolkata", -3_800_000_000, -3_800_000_000 + DAY) == MINUTE
    # the levels a local-day series may read then: no UTC day level
    assert [
        r.grain for r in levels(frozenset({"type"}), zone_grain("Asia/Kolkata", year, year + DAY))
    ] == [MINUTE]


async def test_an_upgrade_copies_the_day_history_into_the_month_partitioned_levels(
    store: Any, settings: Any
) -> None:
    """A deployment that has rows from before the month-partitioned day levels existed
    (schema/019-022): applying them copies the day-partitioned levels' history once, the
    retired levels are dropped after (080-083), and applying the schema again changes
    nothing."""
    from service.migrate import FILLS, load, migrate

    # the deployment as it was before 019-022: the day-partitioned levels (012-015) and
    # their views fed by every insert
    old = {m.version: m.sql for m in load()}
    for version in ("012_logs_day_site", "013_logs_day_site_mv", "014_logs_day",
                    "015_logs_day_mv"):  # fmt: skip
        await store.command(old[version])
    cells = [(1, 1, 5, "gpt-4", 10), (2, 2, 70, "gpt-4o", 20), (1, 2, 4000, "gpt-4o", 30),
             (3, 0, 60, "gpt-4", 40)]  # fmt: skip
    rows = [log_row(user_id=u, created_at=BASE - d * DAY - s, model_name=m, quota=q)
            for u, d, s, m, q in cells]  # fmt: skip

    async def body(client: TestClient[Any, Any]) -> None:
        await post_rows(client, rows)

    await with_clock_async(store, settings, NOW, body)
    # ... without the month-partitioned levels, nor anything recorded after them
    versions = ["019_logs_day_site_m", "020_logs_day_site_m_mv", "021_logs_day_m",
                "022_logs_day_m_mv"]  # fmt: skip
    assert set(FILLS) <= set(versions)
    # the later files that alter those tables (their wide sums) apply again too, or the
    # session's engine keeps Int64 cells there for every test after this one; and the
    # files that drop the retired levels
    versions += ["057_logs_day_site_m_wide_sums", "058_logs_day_m_wide_sums",
                 "080_logs_day_site_mv_drop", "081_logs_day_mv_drop",
                 "082_logs_day_site_drop", "083_logs_day_drop"]  # fmt: skip
    for table in ("logs_day_site_m", "logs_day_m"):
        await store.command(f"DROP VIEW IF EXISTS {table}_mv")
        await store.command(f"DROP TABLE IF EXISTS {table}")
    await store.command(
        "DELETE FROM schema_migrations WHERE version IN {v:Array(String)}", {"v": versions}
    )
    assert await migrate(store) == versions
    assert await migrate(store) == []
    left = await store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN "
        "('logs_day_site', 'logs_day', 'logs_day_site_mv', 'logs_day_mv')"
    )
    assert left.rows == []
    # the copied history equals the raw rows (a brute-force count of each day's cells)
    for new, dims in [("logs_day_site_m", "type, model_name"),
                      ("logs_day_m", "user_id, type, model_name")]:  # fmt: skip
        expected = (await store.query(
            f"SELECT toUInt32(toStartOfDay(created_at)), {dims}, count(), sum(quota) "
            "FROM logs GROUP BY ALL ORDER BY ALL"
        )).rows  # fmt: skip
        assert len(expected) >= 3
        query = (f"SELECT toUInt32(day), {dims}, sum(requests), sum(quota) FROM {new} "
                 "GROUP BY ALL ORDER BY ALL")  # fmt: skip
        assert (await store.query(query)).rows == expected, new
