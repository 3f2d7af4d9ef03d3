"""The web page in a real headless Chromium against the real service: a photo in, rendered results out.

Needs the ``playwright`` Python package and the Debian ``chromium`` at /usr/bin/chromium (never
``playwright install``: it downloads a browser). ``serve_url`` and ``query_photo`` come from conftest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import GATED

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000
K = 5


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def requested() -> list[str]:
    """Every URL the page requests, filled by the ``page`` fixture."""
    return []


@pytest.fixture
def page(browser: sync_api.Browser, serve_url: str, requested: list[str]) -> Iterator[sync_api.Page]:
    """A fresh page on the service's ``/``, recording its requests into ``requested``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("request", lambda request: requested.append(request.url))
    page.goto(serve_url + "/")
    yield page
    context.close()


def assert_same_origin(requested: list[str], serve_url: str) -> None:
    """The page may only talk to the service (blob:/data: URLs are local, not network)."""
    origin = urlsplit(serve_url)[:2]
    foreign = [u for u in requested if urlsplit(u).scheme not in ("blob", "data") and urlsplit(u)[:2] != origin]
    assert not foreign, f"the page requested other origins: {foreign}"


def save_screenshot(page: sync_api.Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    if extra := os.environ.get("SNAPSEARCH_SCREENSHOT"):
        page.screenshot(path=extra, full_page=True)


def test_photo_search_renders_results(
    page: sync_api.Page, requested: list[str], serve_url: str, query_photo: Path, tmp_path: Path
) -> None:
    info = page.request.get(serve_url + "/info").json()
    k = min(K, info["k_max"])

    # The strategy select is filled from /info, preselecting the default.
    page.wait_for_function("document.querySelectorAll('#strategy option').length > 0")
    options = page.eval_on_selector_all("#strategy option", "opts => opts.map(o => o.value)")
    assert options == info["strategies"]
    assert page.input_value("#strategy") == info["default_strategy"]
    assert page.get_attribute("body", "data-state") == "idle"

    strategy = GATED  # a route that reads the gate, so that the answer has probability bars to draw
    page.select_option("#strategy", strategy)
    page.fill("#k", str(k))
    with page.expect_response(lambda r: urlsplit(r.url).path == "/search") as searched:
        page.set_input_files("#file-input", query_photo)
    page.wait_for_selector("body[data-state=done]")
    response = searched.value
    assert response.ok, response.text()
    assert f"k={k}" in response.url and f"strategy={strategy}" in response.url
    answer = response.json()

    assert page.is_visible("#preview")
    assert page.get_attribute("#preview", "alt")

    # Cards: what the service ranked, in its order. The service may return fewer than k when the
    # routed partition holds fewer products; the page must show exactly what it got.
    assert 1 <= len(answer["products"]) <= k
    cards = page.locator("#results .card")
    assert cards.count() == len(answer["products"])
    names = cards.locator(".card-name").all_text_contents()
    categories = cards.locator(".card-category").all_text_contents()
    scores = [float(s) for s in cards.locator(".card-score").all_text_contents()]
    assert all(n.strip() for n in names) and all(c.strip() for c in categories)
    assert names == [p["name"] for p in answer["products"]]
    assert scores == sorted(scores, reverse=True)

    # Every catalog image really loaded.
    page.wait_for_function("[...document.querySelectorAll('.card img')].every(img => img.complete)")
    widths = page.eval_on_selector_all(".card img", "imgs => imgs.map(img => img.naturalWidth)")
    assert widths and all(w > 0 for w in widths), widths
    alts = page.eval_on_selector_all(".card img", "imgs => imgs.map(img => img.alt)")
    assert all(alts)

    # Probability bars: a percentage in 0..100 whose bar is exactly that wide.
    bars = page.eval_on_selector_all(
        ".prob-bar",
        """rows => rows.map(r => ({
            label: r.querySelector('.prob-label').textContent,
            value: r.querySelector('.prob-value').textContent,
            width: r.querySelector('.prob-fill').style.width}))""",
    )
    assert len(bars) == len(answer["categories"]) > 0
    for bar, expected in zip(bars, answer["categories"], strict=True):
        assert bar["label"] == expected["category"]
        value = float(re.fullmatch(r"([\d.]+)%", bar["value"]).group(1))
        assert 0 <= value <= 100
        assert value == pytest.approx(100 * expected["probability"], abs=0.051)
        assert float(bar["width"].removesuffix("%")) == value  # the browser normalises "0.0%" to "0%"

    assert strategy in page.text_content("#route")
    assert page.text_content("#route .query-type") == answer["query_type"]  # the detected query type
    if answer["route"]["fallback_to_global"]:
        shown = "global search" if strategy == "global" else "global search (fallback)"
        assert shown in page.text_content("#route")
    assert "total" in page.text_content("#timings")
    assert page.is_visible("#no-match") == answer["rejected"]
    assert page.is_hidden("#error")
    assert page.get_attribute("#results", "aria-live") == "polite"

    save_screenshot(page, tmp_path / "page.png")
    assert_same_origin(requested, serve_url)


def test_non_image_upload_shows_service_error(
    page: sync_api.Page, requested: list[str], serve_url: str, tmp_path: Path
) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a photo\n")
    direct = page.request.post(
        serve_url + "/search",
        multipart={"image": {"name": text_file.name, "mimeType": "text/plain", "buffer": text_file.read_bytes()}},
    )
    assert 400 <= direct.status < 500
    detail = direct.json()["detail"]
    assert isinstance(detail, str) and detail

    page.wait_for_function("document.querySelectorAll('#strategy option').length > 0")
    page.set_input_files("#file-input", text_file)
    page.wait_for_selector("body[data-state=error]")
    assert page.is_visible("#error")
    assert detail in page.text_content("#error")
    assert page.locator(".card").count() == 0
    assert_same_origin(requested, serve_url)
