"""The live panel in headless Chromium, served by the built site alone.

Every request to another host is aborted (and recorded: there must be none).
The test loads the panel, derives an activation that is not in the catalog,
checks the derivative and the printed kernel against central differences of a
NumPy definition written here, checks the reported numeric error, answers an
exercise wrongly and rightly, gives bad input, moves to another page with the
engine kept alive, and cancels a slow derivation. It prints the times and the
bytes the server sent (run with -s to see them).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
import pytest
import sympy as sp
from _sitebuild import REPO_ROOT, BuiltSite

pytestmark = pytest.mark.site

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
FIRST_RESULT_TIMEOUT_MS = 240_000  # loading Pyodide and SymPy on two busy cores
DERIVE_TIMEOUT_MS = 120_000


class _CountingHandler(SimpleHTTPRequestHandler):
    """Serves the site and counts the bytes of every file it sends."""

    sent: Counter = Counter()

    def copyfile(self, source, outputfile):
        data = source.read()
        type(self).sent[urlsplit(self.path).path] += len(data)
        outputfile.write(data)

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def live_server(built_site: BuiltSite):
    handler = functools.partial(_CountingHandler, directory=str(built_site.path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", _CountingHandler.sent
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _kernel(module_text: str, name: str):
    namespace: dict = {}
    exec(compile(module_text, "<printed kernel>", "exec"), namespace)
    return namespace[name]


def _central(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def _derive(page, text: str, kind: str = "activation", timeout: int = DERIVE_TIMEOUT_MS):
    """Type ``text``, press Derive, wait for this run to finish; seconds it took."""
    panel = page.locator('[data-live="panel"]')
    runs = int(panel.get_attribute("data-runs") or 0)
    page.select_option('[data-live="kind"]', kind)
    page.fill('[data-live="expr"]', text)
    start = time.perf_counter()
    page.click('[data-live="run"]')
    page.wait_for_function(
        f"document.querySelector('[data-live=panel]').dataset.runs === '{runs + 1}'",
        timeout=timeout)
    return time.perf_counter() - start


def _answer(page, number: int, text: str) -> str:
    box = page.locator(f'[data-exercise="{number}"]')
    box.locator('[data-live="answer"]').fill(text)
    box.locator('[data-live="verdict"]').evaluate("v => { v.dataset.ok = ''; }")
    box.locator('[data-live="check-answer"]').click()
    page.wait_for_function(
        f"document.querySelector('[data-exercise=\"{number}\"] [data-live=verdict]')"
        ".dataset.ok !== ''", timeout=DERIVE_TIMEOUT_MS)
    return box.locator('[data-live="verdict"]').get_attribute("data-ok")


def test_live_panel_offline(live_server, browser) -> None:
    url, sent = live_server
    blocked: list[str] = []
    context = browser.new_context()

    def route(r):
        if urlsplit(r.request.url).hostname in LOCAL_HOSTS:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    # Material's instant navigation follows only the links its sitemap.xml
    # lists, with the sitemap's host and path (site_url) kept but for the
    # hostname: served here on another port and path, every link would be a
    # full page load. The sitemap is given the local address, as if this
    # server were the site's home.
    site_url = re.search(r"^site_url:\s*(\S+)", (REPO_ROOT / "mkdocs.yml").read_text(),
                         re.MULTILINE).group(1)

    def local_sitemap(r):
        body = r.fetch().text().replace(site_url, url)
        r.fulfill(status=200, content_type="application/xml", body=body)

    context.route("**/sitemap.xml", local_sitemap)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    try:
        page.goto(url + "derivations/01_activations/", wait_until="load")
        page.wait_for_function("window.__mathjaxDone === true", timeout=60_000)
        # main-thread tasks longer than 50 ms, from here on
        page.evaluate("""() => { window.__longTasks = [];
            new PerformanceObserver((l) => l.getEntries().forEach(
              (e) => window.__longTasks.push(e.duration))).observe({entryTypes: ['longtask']}); }""")
        load = page.locator('[data-live="load"]')
        assert "22 MB" in load.inner_text()
        assert not any("/assets/live/" in p for p in sent), "the engine loaded before it was asked"

        # 1. An activation that is not in the catalog; Derive loads the engine first.
        first = _derive(page, "z*atan(z)", timeout=FIRST_RESULT_TIMEOUT_MS)
        first_bytes = sum(n for p, n in sent.items() if "/assets/live/" in p)
        error = page.locator('[data-live="error"]')
        assert error.is_hidden(), error.inner_text()
        g = lambda z: z * np.arctan(z)  # noqa: E731
        z = np.array([-2.7, -1.1, -0.3, 0.45, 1.6, 3.2])
        printed = page.locator('[data-live="derivative"]').get_attribute("data-expr")
        zs = sp.Symbol("z", real=True)
        as_text = sp.lambdify((sp.Symbol("a", real=True), zs), sp.sympify(printed, {"z": zs}))
        np.testing.assert_allclose(as_text(g(z), z), _central(g, z), rtol=1e-7, atol=1e-8)
        numpy_text = page.locator('[data-live="numpy"]').text_content()
        assert "def mine_derivative(a, z, out, scratch):" in numpy_text
        buffers = [np.empty_like(z) for _ in range(8)]
        a = _kernel(numpy_text, "mine")(z, np.empty_like(z), buffers)
        np.testing.assert_allclose(a, g(z), rtol=1e-14)
        derivative = _kernel(numpy_text, "mine_derivative")(a, z, np.empty_like(z), buffers)
        np.testing.assert_allclose(derivative, _central(g, z), rtol=1e-7, atol=1e-8)
        check = page.locator('[data-live="check"]')
        assert float(check.get_attribute("data-max-error")) < 1e-15
        assert page.locator('[data-live="steps"] .chain-step').count() >= 1
        assert page.locator('[data-live="deltas"] figure.chain').count() == 3
        page.wait_for_function("window.__mathjaxErrors.length === 0 && "
                               "document.querySelector('[data-live=derivative] mjx-container')")

        # 2. A re-derivation with the engine loaded.
        again = _derive(page, "z/(1 + Abs(z))")
        assert error.is_hidden(), error.inner_text()
        assert float(check.get_attribute("data-max-error")) < 1e-15

        # 3. Bad input: a message, never a stack trace.
        for text, message in (("z*", "syntax error"), ("sqrt(z)", "not real"),
                              ("q + 1", "unknown name 'q'"), ("Heaviside(z)", "jumps")):
            _derive(page, text)
            assert error.is_visible() and message in error.inner_text(), error.inner_text()
            assert "Traceback" not in error.inner_text()

        # 4. Exercises: a wrong and a right expression, a wrong and a right number.
        assert _answer(page, 1, "1 - exp(a)") == "false"
        assert _answer(page, 1, "1 - exp(-a)") == "true"
        assert _answer(page, 3, "-da*a*(1 - a)") == "false"
        assert "sign" in page.locator('[data-exercise="3"] [data-live="verdict"]').inner_text()
        assert _answer(page, 4, "0.5") == "false"
        assert _answer(page, 4, "0") == "true"
        long_tasks = page.evaluate("window.__longTasks")

        # 5. Another page through the navigation: the engine is still loaded.
        wasm_before = sent["/assets/live/pyodide.asm.wasm"]
        page.locator('a.md-nav__link[href$="07_losses_x_activations/"]').first.click()
        page.wait_for_url("**/07_losses_x_activations/")
        page.wait_for_selector('[data-live="panel"]')
        assert page.evaluate("window.__live.state") == "ready"
        start = time.perf_counter()
        assert _answer(page, 2, "a - y") == "true"
        answer_seconds = time.perf_counter() - start
        assert sent["/assets/live/pyodide.asm.wasm"] == wasm_before

        # 5b. A matrix answer on Vectorized: a missing transpose is named; the right
        # order is proven entry by entry.
        page.locator('a.md-nav__link[href$="06_vectorized/"]').first.click()
        page.wait_for_url("**/06_vectorized/")
        page.wait_for_selector('[data-exercise="5"]')
        assert _answer(page, 5, "A @ dZ") == "false"
        assert "transpose" in page.locator('[data-exercise="5"] [data-live="verdict"]').inner_text()
        assert _answer(page, 5, "dZ.T @ A") == "true"
        page.locator('a.md-nav__link[href$="07_losses_x_activations/"]').first.click()
        page.wait_for_url("**/07_losses_x_activations/")
        page.wait_for_selector('[data-live="panel"]')

        # 5c. A loss with a softmax output on request: one more delta, summing over the units.
        page.check('[data-live="softmax"]')
        softmax_seconds = _derive(page, "-y*log(a)", kind="loss")
        assert page.locator('[data-live="error"]').is_hidden()
        assert page.locator('[data-live="deltas"] figure.chain').count() >= 6
        assert "softmax output" in page.locator('[data-live="deltas"]').inner_text()
        assert float(page.get_attribute('[data-live="check"]', "data-max-error")) < 1e-10
        page.uncheck('[data-live="softmax"]')

        # 6. A slow simplify can be cancelled; the engine comes back.
        page.select_option('[data-live="kind"]', "activation")
        page.fill('[data-live="expr"]', "z*tanh(log(1 + exp(z)))*erf(z)")
        page.click('[data-live="run"]')
        page.wait_for_timeout(500)
        assert page.locator('[data-live="cancel"]').is_visible(), "finished in 0.5 s?"
        page.click('[data-live="cancel"]')
        page.wait_for_function("document.querySelector('[data-live=error]').textContent"
                               ".includes('Cancelled')", timeout=10_000)
        after_cancel = _derive(page, "(a - y)**2 + a", kind="loss",
                               timeout=FIRST_RESULT_TIMEOUT_MS)
        assert page.locator('[data-live="error"]').is_hidden()
        assert page.locator('[data-live="deltas"] figure.chain').count() >= 5

        assert not blocked, f"requests to other hosts: {blocked}"
        assert not console_errors, console_errors
        assert first_bytes < 30e6, f"the engine took {first_bytes / 1e6:.1f} MB"
        print(f"\nlive panel: first result {first:.1f} s (engine load "
              f"{page.evaluate('window.__live.loadSeconds') or 0:.1f} s in the worker), "
              f"re-derivation {again:.2f} s, exercise check on the next page "
              f"{answer_seconds:.2f} s, a loss with the softmax output {softmax_seconds:.1f} s, "
              f"restart after cancel + loss derivation "
              f"{after_cancel:.1f} s; assets/live/ bytes sent for the first result "
              f"{first_bytes / 1e6:.1f} MB (every file of the test, restart included, "
              f"{sum(sent.values()) / 1e6:.1f} MB); longest main-thread task "
              f"{max(long_tasks, default=0):.0f} ms")
    finally:
        context.close()
