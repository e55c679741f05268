"""Every page of the built site in headless Chromium, with the network cut off.

For each page: it loads, MathJax finishes, every formula (arithmatex and
notebook LaTeX output) became rendered math of non-zero size, no TeX
delimiters are left over as text, MathJax reported no error, the console shows
no error and no request went to a host other than the local server.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _sitebuild import BuiltSite

pytestmark = pytest.mark.site

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
MATHJAX_TIMEOUT_MS = 60_000
SCREENSHOT_PAGES = ("notation/", "derivations/02_output_layer/")

# Runs in the page once MathJax is done. Closed <details> are opened first so
# that math inside them has a size to measure.
_INSPECT = r"""
() => {
  for (const d of document.querySelectorAll("details")) d.open = true;
  const sized = (el) => {
    const c = el.querySelector("mjx-container");
    if (!c) return false;
    const r = c.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const describe = (el) => (el.textContent || "").trim().slice(0, 80);
  const arithmatex = [...document.querySelectorAll(".arithmatex")];
  const latex = [...document.querySelectorAll(".jp-RenderedLatex")];
  // Text left outside rendered math that still holds TeX delimiters means a
  // formula was skipped (wrong delimiters or an ignored class).
  const leftovers = [];
  const walker = document.createTreeWalker(
    document.querySelector("article") || document.body, NodeFilter.SHOW_TEXT, {
      acceptNode(node) {
        const skip = node.parentElement.closest(
          "pre, code, script, style, textarea, mjx-container, .tex2jax_ignore, .mathjax_ignore");
        return skip ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT;
      },
    });
  const delimiters = /\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\s][^$]*\\[A-Za-z]+[^$]*\$/;
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent;
    if (delimiters.test(text)) leftovers.push(text.trim().slice(0, 80));
  }
  return {
    arithmatex: arithmatex.length,
    latex: latex.length,
    containers: document.querySelectorAll("mjx-container").length,
    unrendered: [...arithmatex, ...latex].filter((el) => !sized(el)).map(describe),
    leftovers,
    errors: window.__mathjaxErrors || ["window.__mathjaxErrors is missing"],
  };
}
"""


def _problems_on(page, url: str) -> tuple[list[str], dict]:
    problems: list[str] = []
    response = page.goto(url, wait_until="load")
    if response is None or not response.ok:
        problems.append(f"HTTP {response.status if response else 'no response'}")
        return problems, {}
    page.wait_for_function("window.__mathjaxDone === true", timeout=MATHJAX_TIMEOUT_MS)
    report = page.evaluate(_INSPECT)
    problems += [f"formula not rendered: {text!r}" for text in report["unrendered"]]
    problems += [f"TeX delimiters left as text: {text!r}" for text in report["leftovers"]]
    problems += [f"MathJax error: {message}" for message in report["errors"]]
    return problems, report


def test_every_page_renders_offline(
    built_site: BuiltSite, site_url: str, browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def keep_local(route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", keep_local)
    page = context.new_page()
    events: list[str] = []
    page.on("console", lambda m: events.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "assert") else None)
    page.on("pageerror", lambda e: events.append(f"uncaught: {e}"))

    def on_request_failed(request) -> None:
        # Moving on to the next page cancels whatever the previous one still
        # had in flight (the favicon, typically): ERR_ABORTED on a local URL is
        # that, not a fault. A missing file shows up as an HTTP 404 instead.
        local = urlsplit(request.url).hostname in LOCAL_HOSTS
        if not (local and request.failure == "net::ERR_ABORTED"):
            events.append(f"request failed: {request.url} ({request.failure})")

    page.on("requestfailed", on_request_failed)
    page.on("response", lambda r: events.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)

    failures: dict[str, list[str]] = {}
    totals = {"arithmatex": 0, "latex": 0}
    pages = built_site.pages()
    assert len(pages) > 5, f"suspiciously few pages: {pages}"
    try:
        for path in pages:
            events.clear()
            before = len(outside)
            problems, report = _problems_on(page, site_url + path)
            problems += events
            problems += [f"request to another host: {u}" for u in outside[before:]]
            for key in totals:
                totals[key] += report.get(key, 0)
            if problems:
                failures[path or "/"] = problems
            if path in SCREENSHOT_PAGES:
                shot = tmp_path / (path.strip("/").replace("/", "_") + ".png")
                page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()

    report_lines = [f"{p}\n    " + "\n    ".join(v) for p, v in failures.items()]
    assert not failures, "problems in the browser:\n" + "\n".join(report_lines)
    # The checks above pass vacuously on a page without math; the site as a
    # whole must have exercised both kinds of formula.
    assert totals["arithmatex"] > 0, "no arithmatex formula on any page"
    assert totals["latex"] > 0, "no notebook LaTeX output on any page"
    for path in SCREENSHOT_PAGES:
        assert (tmp_path / (path.strip("/").replace("/", "_") + ".png")).is_file(), (
            f"no screenshot of {path}: the page is not in the build"
        )


def test_the_reader_can_switch_to_dark_mode(site_url: str, browser, tmp_path: Path) -> None:
    context = browser.new_context(color_scheme="light")
    try:
        page = context.new_page()
        page.goto(site_url + "notation/")
        page.wait_for_function("window.__mathjaxDone === true", timeout=MATHJAX_TIMEOUT_MS)
        scheme = "document.body.getAttribute('data-md-color-scheme')"
        assert page.evaluate(scheme) == "default"
        # The palette toggle cycles automatic -> light -> dark.
        for _ in range(3):
            if page.evaluate(scheme) == "slate":
                break
            page.locator("form[data-md-component=palette] label:visible").first.click()
        assert page.evaluate(scheme) == "slate"
        page.screenshot(path=str(tmp_path / "notation_dark.png"))
    finally:
        context.close()


def test_a_graph_wider_than_a_phone_says_that_it_scrolls(site_url: str, browser) -> None:
    # At 390 px the attention page's computational graph is wider than the
    # column: it scrolls inside its figure, and scroll-cue.js marks the figure so
    # that a line under it says so. At 1280 px the same graph fits, unmarked.
    marks = {}
    for width in (390, 1280):
        context = browser.new_context(viewport={"width": width, "height": 900})
        context.route("**/*", lambda route: route.continue_()
                      if urlsplit(route.request.url).hostname in LOCAL_HOSTS else route.abort())
        page = context.new_page()
        try:
            page.goto(site_url + "derivations/11_attention/", wait_until="load")
            page.wait_for_function("document.querySelector('figure.equation-graph img')"
                                   "?.complete === true")
            page.wait_for_timeout(200)
            marks[width] = page.evaluate(
                "[...document.querySelectorAll('figure.equation-graph')].map(f => "
                "[f.scrollWidth > f.clientWidth + 1, f.classList.contains('scrolls-sideways'),"
                " getComputedStyle(f, '::after').content])")
        finally:
            context.close()
    assert any(wide for wide, _, _ in marks[390]), f"no graph is wider than 390 px: {marks}"
    for width, figures in marks.items():
        for wide, marked, after in figures:
            assert wide == marked, (width, figures)
            assert ("scroll sideways" in after) == wide, (width, after)
