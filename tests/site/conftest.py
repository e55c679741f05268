"""Fixtures of the site tests: one strict build per session, a local server, Chromium.

The site is built once (`mkdocs build --strict` into a temporary directory) and
every test shares that build; building takes most of the time these tests need.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from _sitebuild import REPO_ROOT, BackgroundBuild, BuiltSite, output_tail


_BUILD = pytest.StashKey[BackgroundBuild]()
# Set to the directory of an earlier `mkdocs build` (made with SITE_REPO_URL as
# _sitebuild.TEST_REPO_URL) to test it instead of building again.
PREBUILT = "BACKPROP_DERIVED_PREBUILT_SITE"


@pytest.hookimpl(trylast=True)  # after `-m` and `-k` have deselected
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    # The site tests run last, and their build starts now in its own process:
    # on two cores it runs beside the math tests instead of after them.
    site = [item for item in items if item.get_closest_marker("site")]
    if not site or os.environ.get(PREBUILT):
        return
    items[:] = [item for item in items if not item.get_closest_marker("site")] + site
    site_dir = Path(tempfile.mkdtemp(prefix="backprop-derived-site-"))
    config.stash[_BUILD] = BackgroundBuild(REPO_ROOT, site_dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    build = config.stash.get(_BUILD, None)
    if build is not None:
        build.stop()
        shutil.rmtree(build.site_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def built_site(request: pytest.FixtureRequest) -> BuiltSite:
    prebuilt = os.environ.get(PREBUILT)
    if prebuilt:  # a developer iterating on the browser tests; CI never sets it
        return BuiltSite(Path(prebuilt), subprocess.CompletedProcess([], 0, "", ""))
    build = request.config.stash.get(_BUILD, None)
    if build is None:  # not reached through collection (a plugin run): start it here
        build = request.config.stash[_BUILD] = BackgroundBuild(
            REPO_ROOT, Path(tempfile.mkdtemp(prefix="backprop-derived-site-")))
    site_dir, result = build.site_dir, build.result()
    if result.returncode != 0:
        pytest.fail(
            f"`mkdocs build --strict` failed (exit {result.returncode}):\n{output_tail(result)}",
            pytrace=False,
        )
    return BuiltSite(site_dir, result)


class _QuietHandler(SimpleHTTPRequestHandler):
    # Correct types for the fonts and scripts whatever the machine's mime.types says.
    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".woff": "font/woff",
        ".js": "text/javascript",
        ".svg": "image/svg+xml",
    }

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def site_url(built_site: BuiltSite) -> Iterator[str]:
    """Serve the built site on 127.0.0.1 (a free port) for the session."""
    handler = functools.partial(_QuietHandler, directory=str(built_site.path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's `chromium` is not on PATH (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
