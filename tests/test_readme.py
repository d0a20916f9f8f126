"""The README stays the five-minute read the project's guide asks for: two commands for a
fresh machine first (the test command is what CI runs), a "Try it" a second terminal can
run as written, and links that lead somewhere in it and in docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_opens_with_the_two_commands() -> None:
    text = README.read_text()
    before_first_block = text.split("```", 1)[0]
    assert before_first_block.strip() == "# gatelog"
    serve, tests = blocks(text)[:2]
    assert serve.count("\n") == 1 and tests.count("\n") == 1, "one command in each block"
    assert serve.startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert serve.rstrip().endswith(".venv/bin/python -m service serve")
    assert tests.strip() == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_try_it_finds_the_secret_the_first_command_kept() -> None:
    text = README.read_text()
    serve = blocks(text)[0]
    try_it = blocks(text.split("## Try it", 1)[1])[0]
    kept = re.search(r'echo "export GATELOG_JWT_SECRET=.*?" > (\S+);', serve)
    assert kept is not None, "the first command writes the secret to a file"
    assert f". ./{kept.group(1).removeprefix('./')}" in serve
    assert try_it.splitlines()[0] == f". ./{kept.group(1).removeprefix('./')}"
    assert f"/{kept.group(1).removeprefix('./')}" in (ROOT / ".gitignore").read_text()
    for line in try_it.splitlines():
        if "-m service" in line:
            assert ".venv/bin/python -m service" in line, line
    assert "serve" not in try_it, "the service runs in the first terminal only"


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 200


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize(
    "path", [README, ROOT / "deploy" / "README.md", *DOCS], ids=lambda p: p.name
)
def test_every_relative_link_leads_somewhere(path: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        where = (path.parent / file).resolve() if file else path
        assert where.exists(), f"{path.name}: {target}"
        if anchor and where.suffix == ".md":
            assert anchor in anchors(where), f"{path.name}: {target}"
