"""The built site in a real browser: every formula rendered offline, nothing fetched, nothing hidden sideways.

The site is built once for this module (``mkdocs build --strict`` into a temporary folder) and served on
127.0.0.1. Headless Chromium (Debian's ``chromium``), driven by Playwright, loads every page at 1280 x 900
with every request watched: one for another host is recorded and aborted, and the browser resolves no
host name but localhost, so the test behaves the same with or without a network. On each page it reads:

- text outside code that still holds a TeX delimiter (``$$``, ``\\(``, ``\\[``): maths that never rendered;
- every formula (``.arithmatex``, what the Markdown leaves for KaTeX) without KaTeX's output inside it,
  and every KaTeX error;
- every code block, table or display formula wider than its box: what sits behind a scrollbar at 1280 px.

A screenshot of the layer-norm backward (display maths inside a list) is saved in the module's temporary
folder for a person to look at. Without Chromium the browser tests skip with the reason, except in CI
(``CI=true``), where a missing browser fails them.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Flags known to work headless as root; Playwright gives each launch a new, empty profile.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
VIEWPORT = {"width": 1280, "height": 900}
# Pages whose display maths sits inside list items, with how many such formulas each holds.
DISPLAY_MATHS_IN_LISTS = {"components/layer_norm/": 2, "components/activations/": 1}
SCREENSHOT_PAGE = "components/layer_norm/#backward"

# Run in each page once its maths has rendered: what the assertions below read.
PAGE_REPORT_JS = r"""() => {
  const describe = (el) => `${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 70)}"`;
  const delimiter = /\$\$|\\\(|\\\[/;
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (delimiter.test(node.data) && !node.parentElement.closest("pre, code, script, style, .katex")) {
      raw.push(node.data.trim().slice(0, 80));
    }
  }
  const formulas = [...document.querySelectorAll(".arithmatex")];
  const boxes = document.querySelectorAll(
    ".md-content pre > code, .md-content table, .md-typeset__scrollwrap, .md-content div.arithmatex");
  return {
    raw,
    formulas: formulas.length,
    unrendered: formulas.filter((f) => !f.querySelector(".katex")).map(describe),
    errors: [...document.querySelectorAll(".katex-error")].map(describe),
    displayInLists: document.querySelectorAll(".md-content li .katex-display").length,
    katexFontsLoaded: [...document.fonts].filter((f) => f.family.includes("KaTeX") && f.status === "loaded").length,
    tooWide: [...boxes].filter((b) => b.clientWidth > 0 && b.scrollWidth > b.clientWidth + 1)
      .map((b) => `${describe(b)}: ${b.scrollWidth} px of content in ${b.clientWidth} px`),
  };
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs")  # a docs dependency, absent on the GPU machine
    folder = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def test_mkdocs_build_strict_succeeds(site: Path) -> None:
    """No warning of any kind: broken links and anchors, pages missing from the nav, missing includes."""
    assert (site / "attention" / "index.html").exists()
    assert (site / "assets" / "katex" / "katex.min.js").exists()


def test_no_formula_is_left_outside_the_maths_markup(site: Path) -> None:
    """Without a browser: TeX delimiters in the HTML only inside what arithmatex marked for KaTeX, or in code."""
    skipped = re.compile(r'<(pre|code|script)\b.*?</\1>|<(span|div) class="arithmatex">.*?</\2>', re.DOTALL)
    left = {page.relative_to(site).as_posix(): re.findall(r".{0,40}(?:\$\$|\\\(|\\\[).{0,40}", skipped.sub("", html))
            for page in site.rglob("*.html") if (html := page.read_text())}
    assert not {page: found for page, found in left.items() if found}


def test_getting_started_shows_what_triad_check_printed_during_the_build(site: Path) -> None:
    html = (site / "index.html").read_text()
    assert "$ triad check" in html and "triad_check_output.py" not in html
    assert re.search(r"\b\d+ comparisons, 0 failed\b", html), "the summary line of `triad check`"


def chromium_or_skip() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}: CI must run the browser tests")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browsed(site: Path, base_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every page loaded once: its report, the requests for other hosts, failed responses, the screenshot."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    chromium = chromium_or_skip()
    pages = sorted(p.relative_to(site).as_posix().removesuffix("index.html") for p in site.rglob("*.html"))
    outside: list[str] = []
    failed: list[str] = []
    reports: dict[str, dict] = {}
    screenshot = tmp_path_factory.mktemp("browser") / "layer_norm_backward.png"

    def route(request_route) -> None:
        if urlsplit(request_route.request.url).netloc == urlsplit(base_url).netloc:
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(20_000)
        context.route("**/*", route)
        context.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page = context.new_page()
        for name in pages:
            page.goto(base_url + name, wait_until="load")
            with contextlib.suppress(PlaywrightTimeout):  # what KaTeX leaves undone is in the report
                page.wait_for_function("!document.querySelector('.arithmatex:not(:has(.katex))')", timeout=5_000)
            page.evaluate("document.fonts.ready.then(() => true)")
            reports[name] = page.evaluate(PAGE_REPORT_JS)
        page.goto(base_url + SCREENSHOT_PAGE, wait_until="load")
        page.evaluate("document.fonts.ready.then(() => true)")
        page.screenshot(path=screenshot)
        browser.close()
    return {"reports": reports, "outside": outside, "failed": failed, "screenshot": screenshot}


def bad_pages(browsed: dict, key: str) -> dict[str, list[str]]:
    return {name: report[key] for name, report in browsed["reports"].items() if report[key]}


def test_the_browser_fetches_nothing_from_another_host(browsed: dict) -> None:
    assert len(browsed["reports"]) >= 20, "every page of the site"
    assert not browsed["outside"], f"requests that would leave the machine: {sorted(set(browsed['outside']))}"
    assert not browsed["failed"], f"requests the local site could not answer: {browsed['failed']}"


def test_every_formula_is_rendered_by_katex_on_every_page(browsed: dict) -> None:
    assert not bad_pages(browsed, "raw"), "raw TeX delimiters in the rendered text"
    assert not bad_pages(browsed, "unrendered"), "formulas without KaTeX output"
    assert not bad_pages(browsed, "errors"), "KaTeX could not parse these"
    with_maths = {name for name, report in browsed["reports"].items() if report["formulas"]}
    assert {"attention/", "softmax/", "components/layer_norm/", "api/"} <= with_maths
    assert all(browsed["reports"][name]["katexFontsLoaded"] for name in with_maths), "KaTeX's own fonts, served"
    in_lists = {name: browsed["reports"][name]["displayInLists"] for name in DISPLAY_MATHS_IN_LISTS}
    assert in_lists == DISPLAY_MATHS_IN_LISTS, "display maths inside list items"


def test_no_code_block_table_or_formula_is_wider_than_the_page_at_1280_px(browsed: dict) -> None:
    assert not bad_pages(browsed, "tooWide")


def test_a_screenshot_shows_the_layer_norm_backward(browsed: dict) -> None:
    screenshot = browsed["screenshot"]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", screenshot
    print(f"screenshot of {SCREENSHOT_PAGE}: {screenshot}")
