"""Grafana (deploy/grafana/): every panel's SQL, with the ClickHouse data source plugin's
macros expanded as the plugin does, runs on the real schema (chDB, rows ingested through
the service so the materialized views fill the rollups) and returns what brute force over
the rows says; every Prometheus panel's metric is one the service exports; the
provisioning names the data sources the panels use; compose mounts it all."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ADMIN, ingest, log_row

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
BASE = 1_790_000_000 // 3600 * 3600
FROM, TO = BASE, BASE + 6 * 3600 - 1  # six whole hours
INTERVAL = 3600


def expand(sql: str, start: int, end: int, interval_s: int) -> str:
    """The plugin's macros (grafana-clickhouse-datasource, "Macros" in its docs)."""
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m[1]} >= toDateTime({start}) AND {m[1]} <= toDateTime({end})",
        sql,
    )
    sql = re.sub(
        r"\$__timeInterval\(([^)]+)\)",
        lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {interval_s} second)",
        sql,
    )
    sql = sql.replace("$__fromTime", f"toDateTime({start})").replace(
        "$__toTime", f"toDateTime({end})"
    )
    sql = sql.replace("$__interval_s", str(interval_s))
    assert "$" not in sql, sql
    return sql


def panels(kind: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["datasource"]["type"] == kind:
                out.append((f"{path.stem}: {panel['title']}", panel))
    return out


SQL_PANELS = panels("grafana-clickhouse-datasource")
PROM_PANELS = panels("prometheus")


def rows() -> list[dict[str, Any]]:
    return [
        log_row(
            user_id=1 + i % 4, username=f"u{i % 4}", created_at=BASE + i * 97 % (7 * 3600),
            type=5 if i % 7 == 0 else 2, model_name=("a", "b", "c")[i % 3],
            channel_id=1 + i % 2, token_name=f"t{i % 5}", quota=i, use_time=i % 9,
            other=json.dumps({"frt": 100 + i} if i % 3 else {"frt": -1000}),
        )
        for i in range(300)
    ]  # fmt: skip


def test_there_are_panels_of_both_kinds() -> None:
    assert len(SQL_PANELS) >= 6 and len(PROM_PANELS) >= 4


def test_provisioning_names_every_panels_data_source() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())
    uids = {s["uid"]: s["type"] for s in sources["datasources"]}
    for _, panel in SQL_PANELS + PROM_PANELS:
        for target in [panel, *panel["targets"]]:
            assert uids[target["datasource"]["uid"]] == target["datasource"]["type"]
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yaml").read_text())
    compose = yaml.safe_load((GRAFANA / "compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    path = providers["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert (
        "grafana-clickhouse-datasource"
        in compose["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    )


@pytest.fixture
async def filled(client: Any) -> list[dict[str, Any]]:
    data = rows()
    await ingest(client, data)
    return data


@pytest.mark.parametrize("backend_kind", ["embedded"], indirect=True)
async def test_every_panel_sql_runs_on_the_schema(filled: Any, backend: Any) -> None:
    in_range = [r for r in filled if FROM <= r["created_at"] <= TO]
    results = {}
    for name, panel in SQL_PANELS:
        for target in panel["targets"]:
            got = await backend.query(expand(target["rawSql"], FROM, TO, INTERVAL))
            assert got.rows, name  # the data reached the panel
            results[panel["title"]] = got.rows
    # A check of the figures themselves on two panels: brute force over the rows.
    got = results["Requests by model"]  # time, model_name, requests
    assert sum(r[2] for r in got) == sum(1 for r in in_range if r["type"] == 2)
    got = results["Top users by quota"]  # username, quota, requests
    by_user: dict[str, int] = {}
    for r in in_range:
        if r["type"] == 2:
            by_user[r["username"]] = by_user.get(r["username"], 0) + r["quota"]
    top = sorted(by_user.items(), key=lambda kv: -kv[1])[:10]
    assert [(r[0], r[1]) for r in got] == top


async def test_every_prometheus_metric_is_exported(client: Any) -> None:
    await ingest(client, [log_row()])
    await client.get("/api/log/", headers=ADMIN)
    await client.get("/api/log/", params={"p": "x"}, headers=ADMIN)  # an error answer
    text = await (await client.get("/metrics")).text()
    exported = set(re.findall(r"^(gatelog_\w+)", text, re.MULTILINE))
    for name, panel in PROM_PANELS:
        for target in panel["targets"]:
            metrics = set(re.findall(r"gatelog_\w+", target["expr"]))
            assert metrics and metrics <= exported, (name, metrics - exported)
