"""Internal links of the built site: rewritten where MkDocs cannot, then checked.

MkDocs rewrites a Markdown page's links to source files (`../notation.md`,
`../derivations/07_losses_x_activations.py`) into page URLs and checks them
(`validation:` in mkdocs.yml). A notebook page is rendered by nbconvert, not by
MkDocs' Markdown, so its links to source files would reach the reader as 404s
and are never checked. The build hooks therefore

* rewrite a notebook page's links to source files into page URLs, as MkDocs
  does for Markdown pages (`rewrite_source_links`), and
* check every internal link and anchor of every built HTML page once the site
  is written (`broken_links`); the hook turns each problem into a warning, so
  `mkdocs build --strict` fails on it.
"""

from __future__ import annotations

import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

# href="..." of an <a> whose target is a page source (.md, .py, .ipynb).
_SOURCE_HREF = re.compile(
    r'(<a\b[^>]*?\bhref=")(?P<path>(?![a-z][a-z0-9+.-]*:|/|#)[^"#?]+\.(?:md|py|ipynb))'
    r'(?P<frag>#[^"]*)?(")'
)


def rewrite_source_links(html: str, page: Page, files: Files) -> tuple[str, list[str]]:
    """Point links to page sources at the pages; return the HTML and the unresolved links."""
    unresolved: list[str] = []
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(m: re.Match) -> str:
        target = posixpath.normpath(posixpath.join(here, unquote(m["path"])))
        file = files.get_file_from_path(target)
        if file is None or not file.is_documentation_page():
            unresolved.append(m["path"] + (m["frag"] or ""))
            return m[0]
        return f'{m[1]}{file.url_relative_to(page.file)}{m["frag"] or ""}{m[4]}'

    return _SOURCE_HREF.sub(rewrite, html), unresolved


class _LinksAndIds(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id", "name") if tag == "a" else ("id",):
            if values.get(name):
                self.ids.add(values[name])
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        elif tag == "img" and values.get("src"):
            self.links.append(values["src"])


def _parse(path: Path) -> _LinksAndIds:
    parser = _LinksAndIds()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _target(site: Path, page: Path, path: str, site_prefix: str) -> Path:
    if path.startswith("/"):
        # Material's 404 page links from the site root (site_url's path).
        rel = path.removeprefix(site_prefix).lstrip("/")
        target = site / rel
    else:
        target = page.parent / path if path else page
    if path.endswith("/") or (target.is_dir() and not path == ""):
        target = target / "index.html"
    return target.resolve()


def broken_links(site_dir: str | Path, site_prefix: str = "/") -> tuple[list[str], int]:
    """Every internal link of the built site that misses its file or its anchor.

    Returns the problems, one line each (page: link, why), and the number of
    internal links checked. External links (with a scheme or a host) are not
    followed: the site must work offline.
    """
    site = Path(site_dir).resolve()
    pages = sorted(site.rglob("*.html"))
    parsed = {p.resolve(): _parse(p) for p in pages}
    problems, checked = [], 0
    for page, found in parsed.items():
        rel_page = page.relative_to(site).as_posix()
        for link in found.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("//"):
                continue
            checked += 1
            target = _target(site, page, unquote(parts.path), site_prefix)
            if not target.is_relative_to(site) or not target.is_file():
                problems.append(f"{rel_page}: {link} (no such file in the site)")
                continue
            anchor = unquote(parts.fragment)
            if not anchor or target.suffix != ".html":
                continue
            ids = parsed[target].ids if target in parsed else set()
            if anchor not in ids:
                problems.append(f"{rel_page}: {link} (no id={anchor!r} on that page)")
    return problems, checked
