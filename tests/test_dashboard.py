"""The dashboard's routes without a browser (tests/test_dashboard_browser.py drives it):
the redirect, the contract's sign-in field and figure names, assets served by the
service (plotly.js from the installed package, gzip when asked), nothing else."""

from __future__ import annotations

import re
from typing import Any

from service.handlers.dashboard import plotly_path

FIGURES = ("quota", "requests", "prompt_tokens", "completion_tokens", "rpm", "tpm")


async def test_root_redirects_to_the_dashboard(client: Any) -> None:
    for path in ("/", "/dashboard"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/dashboard/"


async def test_the_page_has_the_contract_names_and_loads_only_its_own_assets(client: Any) -> None:
    response = await client.get("/dashboard/")
    assert response.status == 200 and response.content_type == "text/html"
    html = await response.text()
    assert '<input name="token"' in html
    assert sorted(re.findall(r'data-figure="([a-z_]+)"', html)) == sorted(FIGURES)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("assets/") or s == "data:," for s in sources), sources
    for source in sources:
        if source.startswith("assets/"):
            asset = await client.get("/dashboard/" + source)
            assert asset.status == 200, source
            assert len(await asset.read()) > 100


async def test_plotly_comes_from_the_package_and_is_compressed(client: Any) -> None:
    response = await client.get(
        "/dashboard/assets/plotly.min.js", headers={"Accept-Encoding": "gzip"}
    )
    assert response.status == 200 and response.headers["Content-Encoding"] == "gzip"
    assert await response.read() == plotly_path().read_bytes()  # decoded by the client
    assert "site-packages" in str(plotly_path()) or "plotly" in str(plotly_path())


async def test_unknown_assets_are_404(client: Any) -> None:
    for name in ("index.html", "..%2F..%2Fpyproject.toml", "nope.js", "dashboard.py"):
        response = await client.get("/dashboard/assets/" + name)
        assert response.status == 404, name
        assert (await response.json())["success"] is False
