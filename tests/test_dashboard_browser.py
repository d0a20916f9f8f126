"""The web dashboard in a real browser: Debian's chromium driven by Playwright, against
the real service (real engine) serving on a local port.

One browser for the module; the service runs in a thread with a clock frozen at start, so
RPM/TPM do not move while the page is compared with the API. Expected values come from
the API itself (the figures must equal the stat endpoint) and from the rows posted here
(a user sees exactly their own).

``GATELOG_SCREENSHOTS=DIR`` also saves the admin and user views (docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from service.app import create_app
from service.auth import ROLE_ADMIN
from tests.conftest import ADMIN, WRITER, log_row, make_token, missing, truncate_all

CHROMIUM = "/usr/bin/chromium"
try:
    from playwright import sync_api
except ImportError:
    missing("playwright missing: pip install -e '.[test]'")
if not Path(CHROMIUM).exists():  # scripts/test.sh installs it
    missing(f"{CHROMIUM} missing: apt-get install chromium")

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
USER_ID = 2


# Signed when a test asks (not at collection, which may be an hour before it runs).
def user_token() -> str:
    return make_token(USER_ID, username="carol")


def admin_token() -> str:
    return make_token(1, ROLE_ADMIN, "root")


CHARTS_ALL = ("chart-usage", "chart-latency", "chart-ttft")
CHARTS_ADMIN = ("chart-errors", "chart-users", "chart-tokens")
ADMIN_ONLY_FIELDS = ("channel_id", "channel_name")
FIGURES = ("quota", "requests", "prompt_tokens", "completion_tokens", "rpm", "tpm")


def stat_figures(stat: dict[str, Any]) -> dict[str, int]:
    """The figures the dashboard shows, out of a stat answer (which may carry more)."""
    return {name: stat[name] for name in FIGURES}


def sample_rows(now: int) -> list[dict[str, Any]]:
    """90 logs of three users over the last day (some in the last minute), with errors
    and first-token times."""
    rows = []
    for i in range(90):
        user = (1, 2, 3)[i % 3]
        rows.append(
            log_row(
                user_id=user,
                username=("alice", "carol", "dave")[i % 3],
                created_at=now - 5 - (i * 937) % 80000 if i % 10 else now - 5 - i % 50,
                type=5 if i % 9 == 0 else 2,
                content=f"call {i} of user {user}",
                model_name=("gpt-4o", "claude-3", "gpt-4")[i % 4 % 3],
                token_name=f"tok-{user}-{i % 2}",
                channel_id=1 + i % 3,
                channel_name=f"channel {1 + i % 3}",
                quota=100 + i * 7,
                prompt_tokens=10 + i,
                completion_tokens=20 + 2 * i,
                use_time=1 + i % 6,
                other=json.dumps({"frt": 150.0 + i * 13} if i % 4 else {"frt": -1000}),
            )
        )
    return rows


class Live:
    def __init__(self, url: str, rows: list[dict[str, Any]]) -> None:
        self.url = url
        self.rows = rows

    def get(self, path: str, params: dict[str, Any], token: str) -> Any:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        request = urllib.request.Request(
            f"{self.url}{path}?{query}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["data"]


@pytest.fixture(scope="module")
def live(engine: Any, data_dir: Path) -> Iterator[Live]:
    from service.settings import Settings
    from tests.conftest import SECRET

    settings = Settings(data_dir=str(data_dir), jwt_secret=SECRET, token_lookup_rate=0)
    frozen = float(int(time.time()))
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        await truncate_all(engine)
        runner = web.AppRunner(create_app(settings, store=engine, clock=lambda: frozen))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60)
    url = f"http://127.0.0.1:{holder['port']}"
    rows = sample_rows(int(frozen))
    body = json.dumps(rows).encode()
    headers = {**WRITER, "Content-Type": "application/json"}
    request = urllib.request.Request(f"{url}/api/internal/logs", body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.loads(response.read())["data"] == len(rows)
    yield Live(url, rows)
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    # closed, or its self-pipe (a socket pair) is left to the garbage collector, whose
    # ResourceWarning then fails whichever later test it happens to run in
    loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
    page = context.new_page()
    page.errors = []  # console errors and uncaught exceptions
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()


def sign_in(page: Any, live: Live, token: str) -> None:
    page.goto(live.url + "/")
    assert page.url == live.url + "/dashboard/"
    page.fill("input[name=token]", token)
    page.click("#signin-form button[type=submit]")
    wait_refreshed(page, 1)


def wait_refreshed(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => Number(document.body.dataset.refreshes || 0) >= n "
        "&& document.body.dataset.state === 'ready'",
        arg=count,
    )


def figures(page: Any) -> tuple[dict[str, int], dict[str, str]]:
    values = page.eval_on_selector_all(
        "[data-figure]", "els => els.map(e => [e.dataset.figure, e.dataset.value])"
    )
    span = page.eval_on_selector("#figures", "e => ({start: e.dataset.start, end: e.dataset.end})")
    assert sorted(name for name, _ in values) == sorted(FIGURES)
    for name, value in values:
        assert value.lstrip("-").isdigit(), (name, value)  # an exact integer
    params = {"start_timestamp": span["start"], "end_timestamp": span["end"]}
    return {name: int(value) for name, value in values}, params


def chart_points(page: Any, chart: str) -> int:
    """Points plotted in a chart (plotly keeps its traces on the element) and drawn marks."""
    return int(
        page.evaluate(
            """id => { const el = document.getElementById(id);
                 const points = (el.data || []).reduce((n, t) => n + (t.y || []).filter(
                   v => v !== null && v !== 0).length, 0);
                 return el.querySelectorAll('.point, .bars path, .trace').length ? points : 0; }""",
            chart,
        )
    )


def table(page: Any) -> tuple[list[str], list[dict[str, str]]]:
    head = page.eval_on_selector_all("#log-table thead th", "els => els.map(e => e.textContent)")
    cells = page.eval_on_selector_all(
        "#log-table tbody tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
    )
    return head, [dict(zip(head, row, strict=True)) for row in cells]


async def started(app: web.Application) -> tuple[web.AppRunner, int]:
    """``app`` served on a free local port: its runner (to clean up) and the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def test_admin_sees_the_site(page: Any, live: Live) -> None:
    sign_in(page, live, admin_token())
    assert page.evaluate("document.body.dataset.view") == "admin"
    shown, span = figures(page)
    assert shown == stat_figures(live.get("/api/log/stat", span, admin_token()))
    assert shown["requests"] > 0 and shown["rpm"] > 0  # the data reached the page
    for chart in CHARTS_ALL + CHARTS_ADMIN:
        assert chart_points(page, chart) > 0, chart

    head, rows = table(page)
    assert set(ADMIN_ONLY_FIELDS) <= set(head)
    expected = live.get("/api/log/", {**span, "page_size": 20}, admin_token())
    assert len(rows) == 20 and page.eval_on_selector("#log-table", "e => e.dataset.total") == str(
        expected["total"]
    )
    assert [r["id"] for r in rows] == [str(item["id"]) for item in expected["items"]]
    page.click("#next")
    page.wait_for_function("document.getElementById('log-table').dataset.page === '2'")
    second = live.get("/api/log/", {**span, "page_size": 20, "p": 2}, admin_token())
    _, rows = table(page)
    assert [r["id"] for r in rows] == [str(item["id"]) for item in second["items"]]

    # filters: a model and a channel; every row shown matches, as many as the API has
    page.fill("#filters input[name=model_name]", "claude-3")
    page.fill("#filters input[name=channel]", "2")
    page.click("#filters button[type=submit]")
    wait_refreshed(page, 2)
    _, rows = table(page)
    want = [r for r in live.rows if r["model_name"] == "claude-3" and r["channel_id"] == 2]
    assert rows and len(rows) == min(20, len(want))
    assert all(r["model_name"] == "claude-3" and r["channel_id"] == "2" for r in rows)
    # the figures follow the filters, and still equal the stat endpoint
    shown, span = figures(page)
    filtered = {**span, "model_name": "claude-3", "channel": "2"}
    assert shown == stat_figures(live.get("/api/log/stat", filtered, admin_token()))
    assert shown["requests"] == sum(1 for r in want if r["type"] == 2)

    # export: the file holds what the filters select
    with page.expect_download() as download:
        page.click("#export-ndjson")
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    *exported, totals = [json.loads(line) for line in lines]  # the last line: the totals
    assert len(exported) == len(want) and str(len(want)) in json.dumps(totals)
    assert all(e["model_name"] == "claude-3" and e["channel_id"] == 2 for e in exported)
    with page.expect_download() as download:
        page.click("#export-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    records = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert sorted(r["id"] for r in records) == sorted(str(e["id"]) for e in exported)
    assert f"#totals,rows={len(want)}," in text
    if os.environ.get("GATELOG_SCREENSHOTS"):
        page.fill("#filters input[name=model_name]", "")
        page.fill("#filters input[name=channel]", "")
        page.click("#filters button[type=submit]")
        wait_refreshed(page, 3)
        page.screenshot(path=f"{os.environ['GATELOG_SCREENSHOTS']}/admin.png", full_page=True)
    assert page.errors == []


def test_user_sees_only_their_own(page: Any, live: Live) -> None:
    sign_in(page, live, user_token())
    assert page.evaluate("document.body.dataset.view") == "user"
    shown, span = figures(page)
    assert shown == stat_figures(live.get("/api/log/self/stat", span, user_token()))
    mine = [r for r in live.rows if r["user_id"] == USER_ID]
    assert shown["requests"] == sum(1 for r in mine if r["type"] == 2)
    for chart in CHARTS_ALL:
        assert chart_points(page, chart) > 0, chart
    for chart in CHARTS_ADMIN:  # admin-only charts are not shown, and never drawn
        assert not page.is_visible(f"#{chart}") and chart_points(page, chart) == 0
    assert not page.is_visible("#filters input[name=username]")

    head, rows = table(page)
    assert not set(ADMIN_ONLY_FIELDS) & set(head)
    assert page.eval_on_selector("#log-table", "e => e.dataset.total") == str(len(mine))
    seen = set()
    while True:
        _, rows = table(page)
        assert rows and all(r["username"] == "carol" for r in rows)
        seen |= {r["content"] for r in rows}
        if page.is_disabled("#next"):
            break
        current = page.eval_on_selector("#log-table", "e => e.dataset.page")
        page.click("#next")
        page.wait_for_function(
            "p => document.getElementById('log-table').dataset.page !== p", arg=current
        )
    assert seen == {r["content"] for r in mine}
    # the user's export holds their own rows, and no admin-only field
    with page.expect_download() as download:
        page.click("#export-ndjson")
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    exported = [json.loads(line) for line in lines][:-1]  # the last line: the totals
    assert sorted(e["content"] for e in exported) == sorted(r["content"] for r in mine)
    assert all(e["user_id"] == USER_ID for e in exported)
    assert not {key for e in exported for key in e} & set(ADMIN_ONLY_FIELDS)
    page.fill("#filters input[name=keyword]", "call 1")
    page.click("#filters button[type=submit]")
    wait_refreshed(page, 2)
    _, rows = table(page)
    assert {r["content"] for r in rows} == {r["content"] for r in mine if "call 1" in r["content"]}
    # export takes the filters, not a keyword search: it says so instead of downloading
    # a file that holds more than the table shows
    downloads: list[Any] = []
    page.on("download", lambda d: downloads.append(d))
    page.click("#export-csv")
    page.wait_for_function(
        "document.getElementById('status').textContent.includes('clear the search')"
    )
    assert downloads == []
    if os.environ.get("GATELOG_SCREENSHOTS"):
        page.fill("#filters input[name=keyword]", "")
        page.click("#filters button[type=submit]")
        wait_refreshed(page, 3)
        page.screenshot(path=f"{os.environ['GATELOG_SCREENSHOTS']}/user.png", full_page=True)
    assert page.errors == []


# Counts the page's calls of the stat endpoint and, while ``window.__gate`` is a promise,
# holds every call until it settles: a slow service, seen from the page.
SLOW_SERVICE = """
(() => {
  const real = window.fetch.bind(window);
  window.__statCalls = 0;
  window.__gate = null;
  window.fetch = (url, options) => {
    if (new URL(String(url), location.href).pathname.endsWith("/stat")) window.__statCalls += 1;
    const gate = window.__gate;
    return gate ? gate.then(() => real(url, options)) : real(url, options);
  };
})();
"""


def test_refresh_on_an_interval_without_piling_up(browser: Any, live: Live) -> None:
    """The page refreshes on its timer (a fake clock run forward here); ticks that come
    while a refresh waits on a slow service start nothing, and one refresh follows."""
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.add_init_script(SLOW_SERVICE)
    page.clock.install()
    try:
        sign_in(page, live, user_token())
        refresh_ms = page.evaluate("REFRESH_MS")
        assert page.evaluate("window.__statCalls") == 2  # the sign-in check, one refresh
        # (a statement, not an expression: evaluate would wait for the promise itself)
        page.evaluate("() => { window.__gate = new Promise(open => { window.__open = open; }); }")
        page.clock.run_for(refresh_ms)  # one tick: a refresh starts and waits
        assert page.evaluate("window.__statCalls") == 3
        assert page.evaluate("document.body.dataset.state") == "loading"
        page.clock.run_for(4 * refresh_ms)  # four more ticks while it waits
        assert page.evaluate("window.__statCalls") == 3  # nothing piled up
        page.evaluate("window.__gate = null; window.__open()")
        wait_refreshed(page, 3)  # the held refresh, then the one the ticks asked for
        assert page.evaluate("window.__statCalls") == 4
        assert page.evaluate("document.body.dataset.refreshes") == "3"
        page.clock.run_for(refresh_ms)  # and the timer keeps going
        wait_refreshed(page, 4)
        assert page.evaluate("window.__statCalls") == 5
        assert page.errors == []
    finally:
        context.close()


def test_phone_width_and_a_bad_token(browser: Any, live: Live) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(live.url + "/dashboard/")
        page.fill("input[name=token]", "not-a-token")
        page.click("#signin-form button[type=submit]")
        page.wait_for_function("document.getElementById('signin-error').textContent !== ''")
        assert page.is_visible("input[name=token]")
        assert page.evaluate("sessionStorage.length") == 0
        page.fill("input[name=token]", user_token())
        page.click("#signin-form button[type=submit]")
        wait_refreshed(page, 1)
        # nothing wider than the screen but the table's own scroller
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        assert page.evaluate("Object.keys(sessionStorage)") == ["gatelog.token"]
        assert page.evaluate("localStorage.length") == 0
    finally:
        context.close()


def test_the_gateways_session_signs_in(
    browser: Any, live: Live, engine: Any, data_dir: Path
) -> None:
    """With delegated sign-in, a browser signed in to the gateway's UI on the same site
    (its ``session`` cookie, its user in localStorage) sees its own logs without pasting
    anything; another user's id beside that cookie gets the sign-in form."""
    from service.settings import Settings
    from tests.conftest import SECRET
    from tests.gateway import Gateway, User

    gateway = Gateway(scheme="legacy")
    carol = gateway.add(User(USER_ID, "carol"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    holder: dict[str, Any] = {}

    async def up() -> None:
        await gateway.start()
        settings = Settings(
            data_dir=str(data_dir), jwt_secret=SECRET, token_lookup_rate=0, gateway_url=gateway.url
        )
        holder["runner"], holder["port"] = await started(create_app(settings, store=engine))

    async def down() -> None:
        await holder["runner"].cleanup()
        await gateway.stop()

    asyncio.run_coroutine_threadsafe(up(), loop).result(60)
    url = f"http://127.0.0.1:{holder['port']}"
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    try:
        name, value = gateway.session_cookie(carol).split("=", 1)
        context.add_cookies([{"name": name, "value": value, "url": url}])
        page = context.new_page()
        page.goto(url + "/dashboard/")
        page.wait_for_selector("input[name=token]", state="visible")  # no user id: refused
        page.evaluate("localStorage.setItem('user', JSON.stringify({id: 3, username: 'dave'}))")
        page.reload()
        page.wait_for_selector("input[name=token]", state="visible")  # not this cookie's user
        page.evaluate("localStorage.setItem('user', JSON.stringify({id: 2, username: 'carol'}))")
        page.reload()
        wait_refreshed(page, 1)
        assert page.evaluate("document.body.dataset.view") == "user"
        mine = [r for r in live.rows if r["user_id"] == USER_ID]
        assert page.eval_on_selector("#log-table", "e => e.dataset.total") == str(len(mine))
        _, rows = table(page)
        assert rows and all(r["username"] == "carol" for r in rows)
        last = gateway.received[-1]
        assert last.get("New-Api-User") == "2" and "session=" in last.get("Cookie", "")
        assert "Authorization" not in last
        assert page.evaluate("sessionStorage.length") == 0  # nothing of the gateway's kept
    finally:
        context.close()
        asyncio.run_coroutine_threadsafe(down(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def test_a_series_too_large_is_said_in_its_chart(
    browser: Any, live: Live, engine: Any, data_dir: Path
) -> None:
    """A site with more users or tokens than the series limit allows over the range gets
    the service's reason in those charts, and the rest of the page as usual."""
    from service.settings import Settings
    from tests.conftest import SECRET

    # two day buckets over the last 24 h: three users or six tokens are past this limit,
    # the per-model usage of 25 hour buckets too, the total of one day fits
    settings = Settings(
        data_dir=str(data_dir), jwt_secret=SECRET, token_lookup_rate=0, max_series_buckets=6
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    holder: dict[str, Any] = {}

    async def up() -> None:
        holder["runner"], holder["port"] = await started(create_app(settings, store=engine))

    asyncio.run_coroutine_threadsafe(up(), loop).result(60)
    small = Live(f"http://127.0.0.1:{holder['port']}", live.rows)
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    try:
        sign_in(page, small, admin_token())
        for chart in ("chart-users", "chart-tokens", "chart-usage"):
            text = page.eval_on_selector(f"#{chart}", "e => e.textContent")
            assert text.startswith("Not shown: ") and "limit" in text, (chart, text)
            assert chart_points(page, chart) == 0
        for chart in ("chart-latency", "chart-ttft", "chart-errors"):
            assert chart_points(page, chart) > 0, chart
        shown, span = figures(page)  # (this service's clock moves: rpm/tpm may differ)
        stat = small.get("/api/log/stat", span, admin_token())
        for name in ("quota", "requests", "prompt_tokens", "completion_tokens"):
            assert shown[name] == stat[name], name
        assert "failed" not in page.eval_on_selector("#status", "e => e.textContent")
        assert page.errors == []
    finally:
        context.close()
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def test_assets_are_served_by_the_service(live: Live) -> None:
    for name, kind in [("app.js", "javascript"), ("plotly.min.js", "javascript")]:
        with urllib.request.urlopen(f"{live.url}/dashboard/assets/{name}", timeout=30) as r:
            assert kind in r.headers["Content-Type"] and len(r.read()) > 1000
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{live.url}/dashboard/assets/..%2Fapp.py", timeout=30)
    assert missing.value.code == 404
    missing.value.close()
    with urllib.request.urlopen(f"{live.url}/dashboard/", timeout=30) as r:
        html = r.read().decode()
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    assert ADMIN["Authorization"]  # the tokens used above are the suite's own
