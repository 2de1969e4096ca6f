"""Browser check of the built book: every page in headless Chromium (playwright + Debian chromium).

A page fails when it raises a JavaScript error (other than the known, harmless ``THEBE_JS_URL``
redeclaration of jupyter-book 1.0.4 + sphinx-thebe), when a request to the local server fails,
when a plotly figure was output but did not draw, or when a widget area stays blank. One static
slider figure is moved and must change the plotted data. A screenshot of every page is saved
under ``_build/screenshots/``. Run after ``make book-smoke`` (``make test`` does both).
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
KNOWN_PAGE_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}


def book_pages() -> list[str]:
    """Every HTML page of the built book, relative to ``_build/html``."""
    if not (HTML / "index.html").is_file():
        return []
    return sorted(
        str(path.relative_to(HTML))
        for path in HTML.rglob("*.html")
        if not SKIP_DIRS.intersection(path.relative_to(HTML).parts)
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `make book-smoke` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make browser` or set CHROMIUM")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


def open_page(browser, server: str, page_path: str):
    """Load a page and collect its JS errors and failed local requests."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    failed: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_failed(request):
        if request.url.startswith(server):
            failed.append(f"{request.url} ({request.failure})")

    def on_response(response):
        if response.url.startswith(server) and response.status >= 400:
            failed.append(f"{response.url} (HTTP {response.status})")

    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.goto(f"{server}/{page_path}", wait_until="load")
    # let plotly and the widget manager render: wait until every figure and widget view is drawn
    # (a loaded CI machine can take seconds), then give late errors a moment to surface
    try:
        page.wait_for_function(RENDERED, timeout=RENDER_TIMEOUT_MS)
    except PlaywrightTimeout:
        pass  # the checks below say which figure or widget is missing
    page.wait_for_timeout(500)
    return page, errors, failed


FIGURE_STATE = """() => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return divs.map(d => ({id: d.id, drawn: d.classList.contains('js-plotly-plot')
                          && d.querySelector('.main-svg') !== null}));
}"""

WIDGET_STATE = """() => {
  const views = Array.from(document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]'));
  return views.map(s => {
    const host = s.parentElement;
    const rendered = host.querySelector('.jupyter-widgets, .widget-box, .lm-Widget');
    const box = rendered ? rendered.getBoundingClientRect() : null;
    return {rendered: rendered !== null, height: box ? box.height : 0};
  });
}"""


RENDER_TIMEOUT_MS = 20_000
RENDERED = f"""() => ({FIGURE_STATE})().every(f => f.drawn)
                  && ({WIDGET_STATE})().every(w => w.rendered && w.height > 0)"""


@pytest.mark.parametrize("page_path", book_pages() or ["index.html"])
def test_page_renders(browser, server, page_path):
    page, errors, failed = open_page(browser, server, page_path)
    try:
        figures = page.evaluate(FIGURE_STATE)
        widgets = page.evaluate(WIDGET_STATE)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOTS / (page_path.replace("/", "__") + ".png")), full_page=True
        )
    finally:
        page.close()
    unexpected = [e for e in errors if not any(k in e for k in KNOWN_PAGE_ERRORS)]
    assert not unexpected, f"{page_path}: JavaScript errors: {unexpected}"
    assert not failed, f"{page_path}: failed requests to the book server: {failed}"
    not_drawn = [f["id"] for f in figures if not f["drawn"]]
    assert not not_drawn, f"{page_path}: plotly figures output but not drawn: {not_drawn}"
    blank = [i for i, w in enumerate(widgets) if not w["rendered"] or w["height"] <= 0]
    assert not blank, f"{page_path}: widget areas left blank (views #{blank} of {len(widgets)})"


def test_book_has_figures_and_widgets():
    """The check above must have something to check: the book outputs figures and widgets."""
    pages = [(HTML / p).read_text(encoding="utf-8") for p in book_pages()]
    assert pages, f"no pages under {HTML}"
    assert sum(p.count('class="plotly-graph-div"') for p in pages) > 0, (
        "no plotly figure in the book"
    )
    assert sum(p.count("application/vnd.jupyter.widget-view+json") for p in pages) > 0, (
        "no widget in the book"
    )


SLIDER_DATA = """(id) => {
  const gd = document.getElementById(id);
  return gd._fullData.map(t => Array.from(t.y || []));
}"""

SLIDER_FIGURES = """() => Array.from(document.querySelectorAll('.plotly-graph-div'))
  .filter(d => d.layout && d.layout.sliders && d.layout.sliders.length
               && d.layout.sliders[0].steps.length > 1)
  .map(d => d.id)"""


def test_static_slider_changes_the_data(browser, server):
    """Moving the slider of a static figure (no kernel) must change what is plotted."""
    for page_path in book_pages():
        if "plotly-graph-div" not in (HTML / page_path).read_text(encoding="utf-8"):
            continue
        page, _, _ = open_page(browser, server, page_path)
        try:
            ids = page.evaluate(SLIDER_FIGURES)
            if not ids:
                continue
            figure = page.locator(f'[id="{ids[0]}"]')
            figure.scroll_into_view_if_needed()
            before = page.evaluate(SLIDER_DATA, ids[0])
            rail = figure.locator(".slider-rail-touch-rect").first
            box = rail.bounding_box()
            assert box is not None, "slider rail not drawn"
            page.mouse.click(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
            page.wait_for_timeout(800)
            after = page.evaluate(SLIDER_DATA, ids[0])
            assert after != before, f"{page_path}: moving the slider of #{ids[0]} changed nothing"
            return
        finally:
            page.close()
    pytest.fail("no static slider figure found in the book")
