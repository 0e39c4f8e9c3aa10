"""The built site in a real browser, offline: `make browser` runs this after `make site`.

One headless Chromium (Debian's, /usr/bin/chromium) visits every HTML page of ``_build/html``
(discovered from the build, not from a fixed list) over a local HTTP server, with every request
to any other host blocked and recorded. For each page it checks: no JavaScript errors, no
request that needed the network, every local resource loads, the math is typeset, every image
loads, every figure in a cell output and every picture in a widget has alt text, the widgets
show their saved state, every internal link and anchor resolves, the Colab button of a notebook
page points at that notebook in the repository named in ``_config.yml``, and the page fits a
375 px phone screen. Screenshots of the front page and two chapters, at
desktop and phone widths, are written to ``_build/screenshots/``.

The pages are crawled once (a module-scoped fixture); the tests then check what was recorded,
one test per page and property, so a failure names both. This file installs nothing: the
Makefile installs Chromium when it is missing, and playwright comes from requirements-dev.txt.
Without a built site the tests skip, unless ``ATTNBOOK_REQUIRE_SITE=1`` (set by
``make browser``), which turns a missing site or browser into a failure.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import pytest
import yaml

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # the crawl skips (or, under `make browser`, fails) with a message
    sync_playwright = None
    PlaywrightTimeout = TimeoutError

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("ATTNBOOK_REQUIRE_SITE") == "1"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# JavaScript errors that are tolerated, as (substring of the message, why). Keep it short.
ALLOWED_ERRORS: list[tuple[str, str]] = [
    ("Identifier 'THEBE_JS_URL' has already been declared",
     "sphinx-thebe 0.3.1 under Sphinx 7.4 emits its inline config script twice; the first copy "
     "defines the same constants, the second fails before doing anything (thebe is unused)"),
    ("Got invalid theme mode: . Resetting to auto.",
     "pydata-sphinx-theme logs this on a reader's first page (no stored mode yet) and uses auto"),
]
WAIT_MS = 15_000  # for MathJax, the widgets and the images of one page
WIDGET_VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]'
WIDGET_STATE = 'script[type="application/vnd.jupyter.widget-state+json"]'
RAW_TEX = ("\\[", "\\]", "\\(", "\\)", "$$")


def discover_pages(site: Path = SITE) -> list[str]:
    """Every HTML page of the build, relative to its root, outside Sphinx's ``_*`` folders."""
    if not site.is_dir():
        return []
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(site).parts[:-1])
    )


def toc_entries() -> list[str]:
    """The book's documents in reading order, as written in ``_toc.yml`` (no suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [toc["root"]]

    def walk(items: list | None) -> None:
        for item in items or []:
            if "file" in item:
                entries.append(item["file"])
            walk(item.get("sections"))
            walk(item.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return entries


def notebook_pages() -> list[str]:
    """Pages built from a notebook, in reading order."""
    return [f"{e}.html" for e in toc_entries() if (ROOT / f"{e}.ipynb").is_file()]


def colab_url(entry: str) -> str:
    """The Colab link the theme must build for ``entry`` from ``_config.yml``'s repository."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    owner_name = urlsplit(repo["url"]).path.strip("/").removesuffix(".git")
    prefix = repo.get("path_to_book", "").strip("/")
    path = f"{prefix}/{entry}" if prefix else entry
    return (f"https://colab.research.google.com/github/{owner_name}/blob/"
            f"{repo.get('branch', 'main')}/{path}.ipynb")


PAGES = discover_pages()


# ---------------------------------------------------------------------------- the crawl


@dataclass
class PageReport:
    """What one visit to one page recorded."""

    path: str
    redirect_to: str | None = None  # a meta-refresh page (the site's index.html)
    blocked: list[str] = field(default_factory=list)  # requests to other hosts, aborted
    failed: list[str] = field(default_factory=list)  # local requests that failed or were >= 400
    errors: list[str] = field(default_factory=list)  # uncaught exceptions and console errors
    math: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)  # images a notebook cell output shows
    widgets: dict = field(default_factory=dict)
    links: list[str] = field(default_factory=list)  # absolute URLs on the local server
    ids: set[str] = field(default_factory=set)
    colab: list[str] = field(default_factory=list)
    phone: dict = field(default_factory=dict)
    link_status: dict[str, int] = field(default_factory=dict)  # URL without fragment -> HTTP
    seconds: float = 0.0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not (SITE / "index.html").is_file():
        if REQUIRED:
            pytest.fail(f"no built site at {SITE}: run `make site` first")
        pytest.skip(f"no built site at {SITE} (run `make site`)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# The drawn widgets that show nothing: hidden (a progress bar closed with leave=False) or without
# any text or picture once drawn; each leaves a blank box on the page.
_BLANK = """
() => Array.from(document.querySelectorAll('.widget-subarea'))
  .map(area => area.querySelector('.jupyter-widgets'))
  .filter(w => w !== null && w.checkVisibility())  // not inside a collapsed solution
  .filter(w => getComputedStyle(w).visibility === 'hidden' ||
               (w.innerText.trim() === '' && !w.querySelector('img, canvas, svg')))
  .map(w => w.className).slice(0, 5)
"""

# The figures of a page: the images in a notebook cell's output, outside widgets. MyST-NB gives
# them the alt of the cell's metadata.mystnb.image.alt; without it docutils uses the image's path
# as alt, which says nothing, so that counts as missing. (An explorer's picture is drawn by the
# widget manager from the saved state, where MyST-NB does not reach; attnbook.widgets.explore(...,
# alt=...) saves it as an <img> with that alt: `widgets.images` below records those.)
_FIGURES = """
() => Array.from(document.querySelectorAll('.cell_output img'))
  .filter(i => !i.closest('.widget-subarea, .jupyter-widgets'))
  .map(i => ({src: i.getAttribute('src') || '', alt: (i.getAttribute('alt') || '').trim()}))
"""

_COLLECT = """
() => {
  const root = document.querySelector('main') || document.body;
  const maths = Array.from(root.querySelectorAll('.math'));
  const clone = root.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight')
       .forEach(e => e.remove());
  const views = Array.from(document.querySelectorAll('__VIEW__'));
  const rendered = views.filter(v => {
    const area = v.previousElementSibling;
    return area && area.classList.contains('widget-subarea') &&
           area.querySelector('.jupyter-widgets') !== null;
  });
  const widgetImgs = Array.from(document.querySelectorAll('.widget-subarea img'));  // pictures
  const state = document.querySelector('__STATE__');
  return {
    math: {
      elements: maths.length,
      untypeset: maths.filter(m => !m.querySelector('mjx-container')).length,
      containers: document.querySelectorAll('mjx-container').length,
      errors: document.querySelectorAll('mjx-merror').length,
      text: clone.textContent,
    },
    images: Array.from(document.images).map(i => ({
      src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth,
      lazy: i.loading === 'lazy'})),
    figures: (__FIGURES__)(),
    widgets: {
      views: views.map(v => { try { return JSON.parse(v.textContent).model_id; }
                              catch (e) { return null; } }),
      rendered: rendered.length,
      blank: (__BLANK__)(),
      images: widgetImgs.map(i => ({complete: i.complete, width: i.naturalWidth,
                                    src: i.getAttribute('src') || '',
                                    alt: (i.getAttribute('alt') || '').trim()})),
      state: state ? state.textContent : null,
    },
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
    colab: Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]'))
               .map(a => a.getAttribute('href')),
  };
}
""".replace("__VIEW__", WIDGET_VIEW).replace("__STATE__", WIDGET_STATE).replace("__BLANK__", _BLANK).replace("__FIGURES__", _FIGURES)

_WIDGETS_DRAWN = """
(pngs) => Array.from(document.querySelectorAll('__VIEW__')).every(v => {
  const area = v.previousElementSibling;
  return area && area.classList.contains('widget-subarea') &&
         area.querySelector('.jupyter-widgets') !== null;
}) && Array.from(document.querySelectorAll('.widget-subarea img'))
         .filter(i => i.complete && i.naturalWidth > 0).length >= pngs
""".replace("__VIEW__", WIDGET_VIEW)

_MAKES_WIDGETS = re.compile(
    r"^\s*(import ipywidgets|from ipywidgets import|from attnbook\.widgets import|"
    r"from attnbook import widgets)|\b(explore|heatmap_explorer|head_explorer)\(",
    re.MULTILINE,
)
_REDIRECT = re.compile(r'http-equiv="refresh"[^>]*url=([^"]+)"', re.IGNORECASE)


def saved_pngs(state_json: str | None, views: list[str]) -> int:
    """How many PNGs the Output models behind the displayed widgets hold in the saved state."""
    if not state_json:
        return 0
    state = json.loads(state_json)["state"]
    return sum(
        1
        for model_id in _reachable_models(state, views)
        if state[model_id].get("model_name") == "OutputModel"
        for output in state[model_id]["state"].get("outputs", [])
        if "image/png" in output.get("data", {})
    )


def _wait(page, report: PageReport, what: str, script: str, arg=None) -> bool:
    """Wait for ``script`` to be truthy; a timeout is recorded (the tests say what is missing)."""
    try:
        page.wait_for_function(script, arg=arg, timeout=WAIT_MS)
    except PlaywrightTimeout:
        report.errors.append(f"timeout: {what} within {WAIT_MS / 1000:.0f} s")
        return False
    return True


def load(page, url: str, report: PageReport) -> None:
    """Open ``url`` and wait until MathJax has typeset it and its widgets are drawn."""
    page.goto(url, wait_until="load")
    if page.locator(".math").count():
        if _wait(page, report, "MathJax started",
                 "() => window.MathJax && MathJax.startup && MathJax.startup.promise"):
            _wait(page, report, "MathJax typeset the page",
                  "() => MathJax.startup.promise.then(() => true)")
    views = page.locator(WIDGET_VIEW)
    if views.count():
        state = page.locator(WIDGET_STATE)
        pngs = saved_pngs(state.first.text_content() if state.count() else None,
                          [json.loads(t).get("model_id", "") for t in views.all_text_contents()])
        _wait(page, report, f"widgets drawn with their {pngs} saved pictures", _WIDGETS_DRAWN, pngs)
        # a widget's labels are drawn after its box: give them time before calling one blank
        _wait(page, report, "every widget shows text or a picture",
              f"() => ({_BLANK})().length === 0")
    _wait(page, report, "images loaded",
          "() => Array.from(document.images).every(i => i.complete)")


def visit(desktop, phone, base: str, path: str, report: PageReport,
          shots: dict[str, str]) -> None:
    """Check ``path`` at desktop width, then load it afresh on the phone-sized page."""
    start = time.perf_counter()
    redirect = _REDIRECT.search((SITE / path).read_text(encoding="utf-8", errors="replace"))
    if redirect:  # Jupyter Book's index.html: check that the browser lands on the target
        report.redirect_to = redirect.group(1).strip()
        target = urljoin(base + path, report.redirect_to)
        report.links = [target]
        desktop.goto(base + path, wait_until="load")
        try:
            desktop.wait_for_url(target, timeout=10_000)
        except Exception:
            report.errors.append(f"{path} did not redirect to {target}; it shows {desktop.url}")
        report.seconds = time.perf_counter() - start
        return
    load(desktop, base + path, report)
    data = desktop.evaluate(_COLLECT)
    report.math = data["math"]
    report.images = data["images"]
    report.figures = data["figures"]
    report.widgets = data["widgets"]
    report.links = [u for u in data["links"] if u.startswith(base)]
    report.ids = set(data["ids"])
    report.colab = data["colab"]
    name = shots.get(path)
    if name:
        SHOTS.mkdir(parents=True, exist_ok=True)
        desktop.screenshot(path=str(SHOTS / f"{name}-desktop.png"))
        # an explorer's picture, not a tqdm progress bar (also a widget)
        if desktop.locator(".widget-subarea:has(img)").count():
            desktop.locator(".widget-subarea:has(img)").first.screenshot(
                path=str(SHOTS / f"{name}-widget.png"))
    # A fresh load: the theme lays out its sidebars for the width it was loaded at.
    load(phone, base + path, report)
    report.phone = phone.evaluate("() => ({inner: window.innerWidth, "
                                  "body: document.body.scrollWidth, "
                                  "doc: document.documentElement.scrollWidth})")
    if name:
        phone.screenshot(path=str(SHOTS / f"{name}-phone.png"))
    report.seconds = time.perf_counter() - start


def screenshot_plan() -> dict[str, str]:
    """Page -> file stem: the front page and the first and last chapters built from notebooks."""
    plan = {f"{toc_entries()[0]}.html": "front"}
    chapters = [p for p in notebook_pages() if p in PAGES]
    for p in dict.fromkeys(chapters[:1] + chapters[-1:]):
        plan[p] = Path(p).stem
    return plan


def _fetch_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def crawl(server: str) -> dict[str, PageReport]:
    """Visit every page once in one browser; record what the tests check."""
    if sync_playwright is None:
        if REQUIRED:
            pytest.fail("playwright is not installed (it is in requirements-dev.txt)")
        pytest.skip("playwright is not installed")
    if not CHROMIUM.exists():
        if REQUIRED:
            pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing")

    reports = {path: PageReport(path) for path in PAGES}
    current: list[PageReport] = []
    shots = screenshot_plan()

    def on_route(route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in LOCAL_HOSTS:
            route.continue_()
        else:
            current[-1].blocked.append(route.request.url)
            route.abort()

    def on_response(response) -> None:
        if urlsplit(response.url).hostname in LOCAL_HOSTS and response.status >= 400:
            current[-1].failed.append(f"{response.status} {response.url}")

    def on_failed(request) -> None:
        # ERR_ABORTED is a request the page itself cancelled (the favicon, when the next page
        # starts loading); a missing file is a 4xx response, which on_response records.
        if urlsplit(request.url).hostname in LOCAL_HOSTS and "ERR_ABORTED" not in (
            request.failure or ""
        ):
            current[-1].failed.append(f"{request.failure} {request.url}")

    def on_console(msg) -> None:
        if msg.type == "error":
            current[-1].errors.append(f"console: {msg.text}")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        pages = []
        for viewport in (DESKTOP, PHONE):
            context = browser.new_context(viewport=viewport, service_workers="block")
            context.route("**/*", on_route)
            page = context.new_page()
            page.on("response", on_response)
            page.on("requestfailed", on_failed)
            page.on("console", on_console)
            page.on("pageerror", lambda exc: current[-1].errors.append(f"pageerror: {exc}"))
            pages.append(page)
        for path in PAGES:
            current.append(reports[path])
            visit(*pages, server, path, reports[path], shots)
        browser.close()

    # Resolve every internal link once, over plain HTTP (no browser needed).
    status: dict[str, int] = {}
    for report in reports.values():
        for url in report.links:
            target = urldefrag(url).url
            if target not in status:
                status[target] = _fetch_status(target)
    for report in reports.values():
        report.link_status = {urldefrag(u).url: status[urldefrag(u).url] for u in report.links}
    return reports


def _page_of(url: str, base: str) -> str:
    """The site-relative page a local URL points at (a folder means its index.html)."""
    path = unquote(urlsplit(url).path).lstrip("/")
    base_path = urlsplit(base).path.lstrip("/")
    path = path.removeprefix(base_path)
    return path + "index.html" if path == "" or path.endswith("/") else path


def _allowed(message: str) -> bool:
    return any(fragment in message for fragment, _ in ALLOWED_ERRORS)


def _reachable_models(state: dict, roots: list[str]) -> set[str]:
    """Model ids reachable from ``roots`` through ``IPY_MODEL_<id>`` references in the state."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        model_id = stack.pop()
        if model_id in seen or model_id not in state:
            continue
        seen.add(model_id)

        def refs(value) -> Iterator[str]:
            if isinstance(value, str) and value.startswith("IPY_MODEL_"):
                yield value.removeprefix("IPY_MODEL_")
            elif isinstance(value, list):
                for v in value:
                    yield from refs(v)
            elif isinstance(value, dict):
                for v in value.values():
                    yield from refs(v)

        stack.extend(refs(state[model_id].get("state", {})))
    return seen


def _content(crawl: dict[str, PageReport], path: str) -> PageReport:
    report = crawl[path]
    if report.redirect_to is not None:
        pytest.skip(f"{path} only redirects to {report.redirect_to}")
    return report


# ---------------------------------------------------------------------------- the tests


def test_site_has_every_toc_page() -> None:
    """The crawl is not vacuous: every document in _toc.yml was built into a page."""
    if not PAGES:
        if REQUIRED:
            pytest.fail(f"no HTML pages found under {SITE}")
        pytest.skip(f"no built site at {SITE}")
    missing = [e for e in toc_entries() if f"{e}.html" not in PAGES]
    assert not missing, f"documents in _toc.yml without a page in {SITE}: {missing}"
    assert "index.html" in PAGES


@pytest.mark.parametrize("path", PAGES)
def test_no_network_needed(crawl: dict[str, PageReport], path: str) -> None:
    report = crawl[path]
    assert not report.blocked, f"{path} asked for other hosts: {sorted(set(report.blocked))}"


@pytest.mark.parametrize("path", PAGES)
def test_local_resources_load(crawl: dict[str, PageReport], path: str) -> None:
    report = crawl[path]
    assert not report.failed, f"{path}: local requests failed: {sorted(set(report.failed))}"


@pytest.mark.parametrize("path", PAGES)
def test_no_page_errors(crawl: dict[str, PageReport], path: str) -> None:
    report = crawl[path]
    # A blocked request also logs a console error; test_no_network_needed reports those.
    errors = [e for e in report.errors if not _allowed(e)
              and not any(url in e for url in report.blocked)]
    assert not errors, f"{path}: JavaScript errors: {errors}"


@pytest.mark.parametrize("path", PAGES)
def test_math_is_typeset(crawl: dict[str, PageReport], path: str) -> None:
    math = _content(crawl, path).math
    if math["elements"] == 0:
        assert math["containers"] == 0
        left = [t for t in ("$$", "\\[") if t in math["text"]]
        assert not left, f"{path} has no math elements but raw TeX delimiters {left} in its text"
        return
    assert math["untypeset"] == 0, (
        f"{path}: {math['untypeset']} of {math['elements']} math elements not typeset by MathJax")
    assert math["containers"] >= math["elements"]
    assert math["errors"] == 0, f"{path}: {math['errors']} MathJax errors (mjx-merror)"
    left = {t: math["text"].count(t) for t in RAW_TEX if t in math["text"]}
    assert not left, f"{path}: raw TeX delimiters left in the visible text: {left}"


@pytest.mark.parametrize("path", PAGES)
def test_images_load(crawl: dict[str, PageReport], path: str) -> None:
    images = _content(crawl, path).images
    broken = [i["src"][:120] for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"{path}: images that did not load: {broken}"


_FILE_NAME = re.compile(r"^\S+\.(png|jpe?g|gif|svg|webp)$", re.IGNORECASE)


def figure_alt_missing(figure: dict) -> bool:
    """No alt, or only the image's own path (docutils' default when the cell gave none)."""
    alt = figure["alt"]
    return not alt or alt == figure["src"] or bool(_FILE_NAME.match(alt))


@pytest.mark.parametrize("path", PAGES)
def test_figures_have_alt_text(crawl: dict[str, PageReport], path: str) -> None:
    """Every image in a cell output (the notebook's figures) carries alt text, set by the cell's
    metadata.mystnb.image.alt (tests/test_figure_accessibility.py checks the sources)."""
    missing = [f["src"][:80] for f in _content(crawl, path).figures if figure_alt_missing(f)]
    assert not missing, f"{path}: figures without alt text: {missing}"


@pytest.mark.parametrize("path", PAGES)
def test_widget_pictures_have_alt_text(crawl: dict[str, PageReport], path: str) -> None:
    """Every picture a widget shows (an explorer's saved state) carries alt text, given by
    ``attnbook.widgets.explore(..., alt=...)`` (tests/test_figure_accessibility.py checks that
    every explorer in the sources passes one)."""
    pictures = _content(crawl, path).widgets.get("images", [])
    missing = [f["src"][:80] for f in pictures if figure_alt_missing(f)]
    assert not missing, (
        f"{path}: {len(missing)} of {len(pictures)} widget pictures without alt text (pass "
        f"alt=... to the explorer): {missing}")


@pytest.mark.parametrize("path", PAGES)
def test_widgets_show_saved_state(crawl: dict[str, PageReport], path: str) -> None:
    """Every displayed widget is drawn, with every PNG its saved Output state holds."""
    widgets = _content(crawl, path).widgets
    views = widgets["views"]
    if not views:
        return
    assert widgets["state"], f"{path} displays widgets but carries no widget state"
    state = json.loads(widgets["state"])["state"]
    assert all(v in state for v in views), f"{path}: a widget view has no saved model"
    assert widgets["rendered"] == len(views), (
        f"{path}: {widgets['rendered']} of {len(views)} widgets rendered by the HTML manager")
    assert not widgets["blank"], f"{path}: widgets drawn hidden or empty: {widgets['blank']}"
    pngs = saved_pngs(widgets["state"], views)
    shown = [i for i in widgets["images"] if i["complete"] and i["width"] > 0]
    assert pngs > 0, f"{path}: its widgets saved no picture (use attnbook.widgets.explore)"
    assert len(shown) >= pngs, (
        f"{path}: widgets show {len(shown)} loaded images; their saved state holds {pngs}")


@pytest.mark.parametrize("path", notebook_pages())
def test_chapter_with_widget_shows_it(crawl: dict[str, PageReport], path: str) -> None:
    """A chapter whose notebook makes a widget shows it on its page."""
    if path not in crawl:
        pytest.fail(f"{path} is in _toc.yml but was not built")
    nb = json.loads((ROOT / path.replace(".html", ".ipynb")).read_text())
    uses_widgets = any(
        _MAKES_WIDGETS.search("".join(c["source"]))
        for c in nb["cells"] if c["cell_type"] == "code"
    )
    if not uses_widgets:
        pytest.skip(f"{path} makes no widget")
    assert crawl[path].widgets["views"], f"{path} makes widgets but its page shows none"


@pytest.mark.parametrize("path", PAGES)
def test_internal_links_resolve(crawl: dict[str, PageReport], path: str, server: str) -> None:
    report = crawl[path]
    bad = [f"{status} {url}" for url, status in report.link_status.items() if status != 200]
    assert not bad, f"{path}: internal links that do not resolve: {bad}"
    missing = []
    for url in report.links:
        fragment = unquote(urldefrag(url).fragment)
        if not fragment:
            continue
        target = _page_of(url, server)
        if target.endswith(".html"):
            if target not in crawl:
                missing.append(f"{url} (page not in the crawl)")
            elif crawl[target].redirect_to is None and fragment not in crawl[target].ids:
                missing.append(url)
    assert not missing, f"{path}: links to anchors that do not exist: {missing}"


@pytest.mark.parametrize("path", PAGES)
def test_colab_button(crawl: dict[str, PageReport], path: str) -> None:
    report = _content(crawl, path)
    entry = path.removesuffix(".html")
    if (ROOT / f"{entry}.ipynb").is_file():
        assert report.colab, f"{path} is a notebook page without a Colab button"
        expected = colab_url(entry)
        assert set(report.colab) == {expected}, f"{path}: Colab links {report.colab} != {expected}"
    else:
        assert not report.colab, f"{path} is not a notebook but links to Colab: {report.colab}"


@pytest.mark.parametrize("path", PAGES)
def test_fits_a_phone(crawl: dict[str, PageReport], path: str) -> None:
    phone = _content(crawl, path).phone
    assert phone["inner"] == PHONE["width"]
    assert phone["body"] <= phone["inner"], (
        f"{path} scrolls sideways at {PHONE['width']} px: body is {phone['body']} px wide")
    assert phone["doc"] <= phone["inner"], (
        f"{path} scrolls sideways at {PHONE['width']} px: document is {phone['doc']} px wide")


def test_screenshots_saved(crawl: dict[str, PageReport]) -> None:
    plan = screenshot_plan()
    expected = [SHOTS / f"{stem}-{kind}.png" for stem in plan.values()
                for kind in ("desktop", "phone")]
    missing = [p.name for p in expected if not p.is_file() or p.stat().st_size == 0]
    assert not missing, f"screenshots not written: {missing}"
    timings = {p: round(r.seconds, 2) for p, r in crawl.items()}
    (SHOTS / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
