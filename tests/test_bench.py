"""The benchmark suite runs end to end on a tiny dataset, so it cannot rot. (Speed itself
is measured by the suite, never asserted here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.bench.run import CASES

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_writes_results(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.run", "--quick", "--rows", "3000",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [result_file] = tmp_path.glob("*-3k.json")
    result = json.loads(result_file.read_text())
    table = result_file.with_suffix(".md").read_text()
    assert "| target | measured | met |" in table
    cases = result["summary"]["cases"]
    assert set(cases) == {case.name for case in CASES}
    for name in ("list_all", "list_self_heavy", "search_type", "search_self", "token_lookup"):
        assert not cases[name]["absent"], name
        assert cases[name]["one"]["n"] == 5 and cases[name]["many"]["n"] == 8
        assert cases[name]["engine_ms"] > 0 and cases[name]["newapi_ms"] > 0
    assert result["engine"]["rows"] == 3000
    assert result["import"]["rows"] == 3000
    assert result["http"]["ingest"]["clients_1"]["rows"] == 2000
    deleted = result["delete"]
    assert deleted["rows"] == deleted["rows_newapi"] > 0
    assert deleted["left"] == deleted["left_newapi"] == 0
    assert result["machine"]["cores"] == os.cpu_count()
