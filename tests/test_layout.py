"""The package boundary: the service imports nothing of the tools beside it, the
benchmarks or the tests (they are in neither its wheel's serving path nor its image)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE_FILES = sorted((ROOT / "service").rglob("*.py"))
OUTSIDE = ("tools", "bench", "tests")


def imported_roots(path: Path) -> set[str]:
    """The top-level names of every absolute import in ``path``, wherever it stands
    (module level, inside a function, under TYPE_CHECKING)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            # a module named in a string, for importlib (the way round a static import)
            and re.fullmatch(r"[a-z_]+(\.[a-z_]+)+(:\w+)?", node.value)
        ):
            roots.add(node.value.split(".")[0])
    return roots


def test_the_scan_sees_imports_wherever_they_stand(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "def f():\n"
        "    from tools.generate import Spec\n"
        "    import bench.rollup\n"
        "from . import sibling\n"
        "PLUGINS = ('tests.support.server',)\n"
    )
    assert imported_roots(sample) == {"os", "tools", "bench", "tests"}


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_service_imports_no_tool_bench_or_test_module(path: Path) -> None:
    assert imported_roots(path).isdisjoint(OUTSIDE)


def test_every_service_module_is_scanned() -> None:
    names = {p.name for p in SERVICE_FILES}
    assert {"app.py", "cli.py", "importer.py", "follow.py"} <= names
