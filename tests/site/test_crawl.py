"""A crawl of the built site in headless Chromium: no internal link or anchor is broken.

Starting from the home page, the crawler opens every page that an internal
link reaches, as a reader's browser would (every request to another host is
aborted: the site must work offline), and checks each link it finds there:
the target answers 200, and the anchor after '#' is an id of the target page
once that page has loaded. Images the pages show are fetched the same way.
"""

from __future__ import annotations

from collections import deque
from urllib.parse import urldefrag, urlsplit

import pytest
from _sitebuild import BuiltSite

pytestmark = pytest.mark.site

_LINKS_AND_IDS = """() => ({
  links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
  images: Array.from(document.querySelectorAll('img[src]'), img => img.src),
  ids: Array.from(document.querySelectorAll('[id], a[name]'), e => e.id || e.name),
})"""


def _is_page(url: str) -> bool:
    path = urlsplit(url).path
    return path.endswith("/") or path.endswith(".html")


def test_every_internal_link_and_anchor_resolves(
    built_site: BuiltSite, site_url: str, browser
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        site_url) else route.abort())
    page = context.new_page()
    ids: dict[str, set[str]] = {}
    status: dict[str, int] = {}
    links: list[tuple[str, str]] = []  # (page it is on, absolute link)
    queue, seen = deque([site_url]), {site_url}
    try:
        while queue:
            url = queue.popleft()
            response = page.goto(url, wait_until="load")
            status[url] = response.status if response else 0
            if status[url] != 200:
                continue
            found = page.evaluate(_LINKS_AND_IDS)
            ids[url] = set(found["ids"])
            for link in found["links"] + found["images"]:
                if not link.startswith(site_url):
                    continue
                links.append((url, link))
                target = urldefrag(link).url
                if target not in seen and _is_page(target):
                    seen.add(target)
                    queue.append(target)
        # Files that are not pages (the figures, the MathJax script): fetched, not opened.
        for target in sorted({urldefrag(link).url for _, link in links} - set(status)):
            status[target] = context.request.get(target).status
    finally:
        context.close()

    broken = []
    for source, link in links:
        target, anchor = urldefrag(link)
        where = f"{source.removeprefix(site_url) or '/'} -> {link.removeprefix(site_url)}"
        if status.get(target) != 200:
            broken.append(f"{where}: HTTP {status.get(target)}")
        elif anchor and anchor not in ids.get(target, set()):
            broken.append(f"{where}: no element with id {anchor!r}")
    crawled = {u for u in status if _is_page(u) and status[u] == 200}
    built_pages = {site_url + p for p in built_site.pages()}
    # Every built page but the 404 page is reachable from the home page.
    unreached = sorted(p.removeprefix(site_url) for p in built_pages - crawled
                       if "404" not in p)
    print(f"crawled {len(crawled)} pages, checked {len(links)} internal links")
    assert not broken, f"{len(broken)} broken links of {len(links)}:\n" + "\n".join(broken)
    assert not unreached, "pages that no link reaches: " + ", ".join(unreached)
    assert len(crawled) >= 30, f"the crawl reached only {len(crawled)} pages"
