"""Latency and error insights (``/api/log/performance``), served from the per-minute
histogram rollup ``logs_perf_minute`` (schema/030, fed by the view in schema/031).

Whole minutes of a range are read from the rollup, the partial edge minutes from the raw
rows of those seconds only (the split of :mod:`service.stats`); a filter the rollup
cannot serve (``request_id``) reads the raw rows. Both sides produce the same histogram
cells: ``use_time`` as exact values, the first-token time ``frt`` (ms, from ``other``)
as logarithmic buckets (:data:`FRT_BUCKET_SQL`, the expression of the view).

Percentiles are by nearest rank: the smallest value ``v`` with at least p% of the
values ``<= v``. ``use_time`` percentiles are exact; ``frt_ms`` percentiles are the
representative of the bucket holding the exact answer, within
``(FRT_RATIO - 1) / (FRT_RATIO + 1)`` (1.48%) of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .params import LogFilter
from .stats import Bound, _range_sql, half_open, rollup_serves, split_range
from .store import Store

PERF_ROLLUP = "logs_perf_minute"
CONSUME, ERROR = 2, 5
PERCENTILES = (50, 95, 99)
FRT_RATIO = 1.03
NO_FRT = -32768
#: the histogram cells of a raw row; schema/031 computes exactly the same expressions
USE_TIME_SQL = "if(type = 2, use_time, 0)"
FRT_BUCKET_SQL = (
    "if(type = 2 AND JSONExtractFloat(other, 'frt') > 0, "
    "toInt16(floor(log(JSONExtractFloat(other, 'frt')) / log(1.03))), toInt16(-32768))"
)


def frt_representative(bucket: int) -> float:
    """The value reported for bucket ``k`` = [r^k, r^(k+1)): the harmonic mean of its
    bounds, the point of equal relative error to both ends."""
    lo = FRT_RATIO**bucket
    hi = lo * FRT_RATIO
    return 2 * lo * hi / (lo + hi)


def nearest_rank(histogram: Mapping[int, int], p: int) -> int | None:
    """The smallest value with at least ``p``% of the counted values ``<=`` it."""
    total = sum(n for n in histogram.values() if n > 0)
    if total <= 0:
        return None
    rank = -(-p * total // 100)  # ceil(p * total / 100), at least 1 for p > 0
    seen = 0
    for value in sorted(histogram):
        if histogram[value] > 0:
            seen += histogram[value]
            if seen >= rank:
                return value
    return None  # pragma: no cover - seen reaches total


def figures(
    counts: Mapping[int, int], use_time: Mapping[int, int], frt: Mapping[int, int]
) -> dict[str, Any]:
    requests = counts.get(CONSUME, 0)
    errors = counts.get(ERROR, 0)
    attempts = requests + errors
    frt_ms: dict[str, float | None] = {}
    for p in PERCENTILES:
        bucket = nearest_rank(frt, p)
        frt_ms[f"p{p}"] = None if bucket is None else float(f"{frt_representative(bucket):.6g}")
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / attempts if attempts > 0 else None,
        "use_time": {f"p{p}": nearest_rank(use_time, p) for p in PERCENTILES},
        "frt_ms": frt_ms,
    }


def _sql(flt: LogFilter, key: str, lo: Bound, hi: Bound) -> tuple[str, dict[str, Any]] | None:
    split = split_range(lo, hi, rollup_serves(flt))
    if split.empty:
        return None
    where, params = flt.where(time=False)
    where += f" AND type IN ({CONSUME}, {ERROR})"
    selects = []
    cells = "GROUP BY key, type, ut, fb"
    if split.whole is not None:
        cond = _range_sql("minute", *split.whole, "whole", params)
        selects.append(
            f"SELECT {key} AS key, type, use_time AS ut, frt_bucket AS fb, sum(n) AS n "
            f"FROM {PERF_ROLLUP} WHERE {where} AND {cond} {cells}"
        )
    if split.edges:
        cond = " OR ".join(
            f"({_range_sql('created_at', e_lo, e_hi, f'edge{i}', params)})"
            for i, (e_lo, e_hi) in enumerate(split.edges)
        )
        selects.append(
            f"SELECT {key} AS key, type, {USE_TIME_SQL} AS ut, {FRT_BUCKET_SQL} AS fb, "
            f"toInt64(count()) AS n FROM logs WHERE {where} AND ({cond}) {cells}"
        )
    # Three marginals of the (type, use_time, frt bucket) cells per key: the counts per
    # type, the use_time histogram and the frt histogram.
    sql = (
        "SELECT key, type, ut, fb, grouping(ut), grouping(fb), sum(n) AS total "
        f"FROM ({' UNION ALL '.join(selects)}) "
        "GROUP BY GROUPING SETS ((key, type), (key, type, ut), (key, type, fb)) "
        "HAVING total != 0"
    )
    return sql, params


class _Histograms:
    def __init__(self) -> None:
        self.counts: dict[int, int] = defaultdict(int)
        self.use_time: dict[int, int] = defaultdict(int)
        self.frt: dict[int, int] = defaultdict(int)

    def figures(self) -> dict[str, Any]:
        return figures(self.counts, self.use_time, self.frt)


def _grouped(rows: Iterable[Sequence[Any]]) -> tuple[_Histograms, dict[Any, _Histograms]]:
    total = _Histograms()
    per_key: dict[Any, _Histograms] = defaultdict(_Histograms)
    for key, type_, ut, fb, no_ut, no_fb, n in rows:
        n, type_ = int(n), int(type_)
        for target in (total, per_key[key]):
            if no_ut and no_fb:
                target.counts[type_] += n
            elif type_ == CONSUME and not no_ut:
                target.use_time[int(ut)] += n
            elif type_ == CONSUME and not no_fb and int(fb) != NO_FRT:
                target.frt[int(fb)] += n
    return total, per_key


async def performance(
    store: Store, flt: LogFilter, group_by: str | None, group_keys: dict[str, str]
) -> dict[str, Any]:
    """``{"total": F, "groups": [{"key": K, **F}]}`` over the filter and its range;
    groups (only with ``group_by``) by attempts (requests + errors), most first."""
    key = group_keys[group_by] if group_by else "''"
    built = _sql(flt, key, *half_open(flt.start, flt.end))
    rows: Sequence[Sequence[Any]] = []
    if built is not None:
        rows = (await store.query(*built)).rows
    total, per_key = _grouped(rows)
    groups = []
    if group_by:
        for value, hist in per_key.items():
            if any(hist.counts.values()):
                groups.append({"key": value, **hist.figures()})
        groups.sort(key=lambda g: (-(g["requests"] + g["errors"]), str(g["key"])))
    return {"group_by": group_by, "total": total.figures(), "groups": groups}
