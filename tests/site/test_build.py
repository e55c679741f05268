"""The strict build: it passes on the real tree, fails on a raising cell, and
produces pages that load nothing from outside the site."""

from __future__ import annotations

import re
import shutil
import types
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _sitebuild import REPO_ROOT, TEST_REPO_URL, BuiltSite, mkdocs_build, output_tail

pytestmark = pytest.mark.site

NOTEBOOK_MARK = 'class="jupyter-wrapper"'


def test_strict_build_renders_every_derivation(built_site: BuiltSite) -> None:
    scripts = sorted((REPO_ROOT / "derivations").glob("[0-9][0-9]_*.py"))
    assert scripts, "derivations/ holds no NN_name.py script"
    for script in scripts:
        page = built_site.path / "derivations" / script.stem / "index.html"
        assert page.is_file(), f"{script.name} was not rendered to {page}"
        assert NOTEBOOK_MARK in page.read_text(encoding="utf-8"), (
            f"{script.name} was copied as a file, not rendered as a notebook page"
        )


def test_notebook_pages_were_executed(built_site: BuiltSite) -> None:
    # A jupytext script carries no outputs; outputs on the page prove the
    # build ran it.
    notebook_pages = [
        p for p in sorted(built_site.path.rglob("index.html"))
        if NOTEBOOK_MARK in p.read_text(encoding="utf-8")
    ]
    assert notebook_pages, "no notebook page in the build"
    silent = [
        p.parent.relative_to(built_site.path).as_posix()
        for p in notebook_pages
        if "jp-OutputArea-output" not in p.read_text(encoding="utf-8")
    ]
    assert not silent, f"notebook pages without any cell output (not executed?): {silent}"


def test_hook_scripts_are_not_pages(built_site: BuiltSite) -> None:
    assert not (built_site.path / "hooks").exists(), "docs/hooks/ leaked into the site"


def _copy_repo(destination: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "site", ".cache", "__pycache__", ".pytest_cache", ".hypothesis",
        ".ruff_cache", "*.egg-info",
    )
    shutil.copytree(REPO_ROOT, destination, ignore=ignore, symlinks=True)
    return destination


def test_a_raising_cell_fails_the_build(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path / "repo")
    marker = "deliberate failure planted by test_a_raising_cell_fails_the_build"
    # 00_ sorts first, so the build stops before executing the real pages.
    (repo / "derivations" / "00_raises.py").write_text(
        "# %% [markdown]\n# # A broken derivation step\n\n"
        f"# %%\nraise AssertionError({marker!r})\n",
        encoding="utf-8",
    )
    result = mkdocs_build(repo, tmp_path / "site")
    log = (result.stdout or "") + (result.stderr or "")
    assert result.returncode != 0, (
        "the build passed although a cell raised:\n" + output_tail(result)
    )
    assert marker in log, (
        "the build failed, but not because of the raising cell:\n" + output_tail(result)
    )


# Attributes through which a page makes the browser fetch something.
_FETCHING = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "audio": ("src",),
    "video": ("src", "poster"),
    "track": ("src",),
}
# <link rel=...> values that only name a URL (navigation, canonical address).
_LINK_RELS_NOT_FETCHED = {"canonical", "prev", "next", "alternate", "author", "license"}
_URL = re.compile(r"""(?:https?:)?//[^\s"'<>)]+""")
_XML_NAMESPACE = re.compile(r"^(?:https?:)?//www\.w3\.org/")


class _ResourceScanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.external: list[str] = []
        self._inline: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in _FETCHING.get(tag, ()):
            for url in (values.get(name) or "").replace(",", " ").split():
                self._check(f"<{tag} {name}>", url)
        if tag == "link":
            rels = set((values.get("rel") or "").lower().split())
            if not rels <= _LINK_RELS_NOT_FETCHED:
                self._check(f"<link rel={values.get('rel')}>", values.get("href") or "")
        if tag in ("script", "style") and "src" not in values:
            self._inline = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._inline:
            self._inline = None

    def handle_data(self, data: str) -> None:
        if self._inline:
            for url in _URL.findall(data):
                if not _XML_NAMESPACE.match(url):
                    self.external.append(f"inline <{self._inline}>: {url}")

    def _check(self, where: str, url: str) -> None:
        if urlsplit(url).netloc or url.startswith("//"):
            self.external.append(f"{where}: {url}")


def test_no_page_or_stylesheet_loads_from_another_host(built_site: BuiltSite) -> None:
    problems = []
    for page in sorted(built_site.path.rglob("*.html")):
        scanner = _ResourceScanner()
        scanner.feed(page.read_text(encoding="utf-8"))
        rel = page.relative_to(built_site.path).as_posix()
        problems += [f"{rel}: {item}" for item in scanner.external]
    for sheet in sorted(built_site.path.rglob("*.css")):
        text = sheet.read_text(encoding="utf-8")
        for url in re.findall(r"""(?:url\(\s*["']?|@import\s+["'])((?:https?:)?//[^"')\s]+)""", text):
            problems.append(f"{sheet.relative_to(built_site.path).as_posix()}: {url}")
    assert not problems, "references to other hosts:\n" + "\n".join(problems)


def test_mathjax_is_part_of_the_site(built_site: BuiltSite) -> None:
    mathjax = built_site.path / "assets" / "mathjax"
    assert (mathjax / "tex-chtml.js").is_file()
    fonts = list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert fonts, "the CHTML woff-v2 fonts were not copied next to tex-chtml.js"


_EDIT_LINK = re.compile(r'<a href="([^"]+)" title="Edit this page"')
_HREF = re.compile(r'href="([^"]+)"')


def test_the_default_build_links_to_no_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    # A placeholder repository would give every page dead "edit" and "source"
    # links; without SITE_REPO_URL the site names none.
    from mkdocs.config import load_config

    monkeypatch.delenv("SITE_REPO_URL", raising=False)
    assert load_config(str(REPO_ROOT / "mkdocs.yml")).repo_url is None
    monkeypatch.setenv("SITE_REPO_URL", TEST_REPO_URL)
    assert load_config(str(REPO_ROOT / "mkdocs.yml")).repo_url == TEST_REPO_URL


def test_every_repository_link_names_a_file_of_the_repository(built_site: BuiltSite) -> None:
    # The test build sets SITE_REPO_URL; every link into that repository (edit
    # links, "SymPy source" links, test-file links) starts from it and names a
    # file that exists in this checkout.
    edit, blob = TEST_REPO_URL + "/edit/main/", TEST_REPO_URL + "/blob/main/"
    edits, seen, broken = 0, 0, []
    for page in sorted(built_site.path.rglob("index.html")):
        text = page.read_text(encoding="utf-8")
        edits += bool(_EDIT_LINK.search(text))
        for link in _HREF.findall(text):
            if "github.com" not in link or link == TEST_REPO_URL:
                continue
            seen += 1
            rel = link.removeprefix(edit).removeprefix(blob)
            if rel == link or not (REPO_ROOT / rel.split("#")[0]).is_file():
                broken.append(f"{page.relative_to(built_site.path).as_posix()}: {link}")
    assert edits >= 30, f"only {edits} pages have an 'Edit this page' link"
    assert seen > edits, "no 'SymPy source' or test-file link was found"
    assert not broken, "repository links to files that do not exist:\n" + "\n".join(broken)


def test_execution_cache_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from mkdocs.config import load_config

    monkeypatch.delenv("MKDOCS_JUPYTER_CACHE", raising=False)
    jupyter = load_config(str(REPO_ROOT / "mkdocs.yml")).plugins["mkdocs-jupyter"].config
    assert jupyter["cache"] is False
    assert jupyter["execute"] is True
    assert jupyter["allow_errors"] is False
    assert jupyter["include_requirejs"] is False


_OBJECT_REPR = re.compile(r"&lt;[A-Za-z_][\w.]* (?:object )?at 0x[0-9a-fA-F]+&gt;")


def test_no_page_shows_an_object_repr(built_site: BuiltSite) -> None:
    # `<matplotlib.colorbar.Colorbar at 0x7f...>` under a figure is noise to a
    # reader, and its address changes on every build.
    found = []
    for page in sorted(built_site.path.rglob("index.html")):
        for match in _OBJECT_REPR.finditer(page.read_text(encoding="utf-8")):
            found.append(f"{page.parent.relative_to(built_site.path).as_posix()}: {match[0]}")
    assert not found, "object reprs in cell output:\n" + "\n".join(found)


_CITATION_LINK = re.compile(r'<a class="citation" href="([^"#]*)#([^"]+)">')


def test_every_citation_links_to_an_equation_on_the_sources_page(built_site: BuiltSite) -> None:
    sources = (built_site.path / "sources" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'\bid="([^"]+)"', sources))
    cited, broken = 0, []
    for page in sorted((built_site.path / "derivations").rglob("index.html")):
        for _, anchor in _CITATION_LINK.findall(page.read_text(encoding="utf-8")):
            cited += 1
            if anchor not in anchors:
                broken.append(f"{page.parent.name}: #{anchor}")
    assert cited, "no derivation page links a citation such as eq. (5) to the Sources page"
    assert not broken, "citations of equations the Sources page does not list:\n" + "\n".join(
        broken)


_FIGURE = re.compile(r'<figure class="equation-graph"><img src="([^"]+)" alt="([^"]*)"')


def test_every_derivation_page_shows_its_computational_graph(built_site: BuiltSite) -> None:
    scripts = sorted((REPO_ROOT / "derivations").glob("[0-9][0-9]_*.py"))
    without = []
    for script in scripts:
        folder = built_site.path / "derivations" / script.stem
        figures = _FIGURE.findall((folder / "index.html").read_text(encoding="utf-8"))
        if not figures:
            without.append(script.name)
        for src, alt in figures:
            svg = (folder / src).resolve()
            assert svg.is_file(), f"{script.name}: {src} is not in the site"
            text = svg.read_text(encoding="utf-8")
            assert text.startswith("<svg") and "<text" in text, f"{src} is not a drawn SVG"
            # The alt text says what the drawing shows, array by array.
            assert len(alt) > 60 and (" from " in alt or " reads " in alt), alt
        if figures and not figures[0][1].startswith("Computational graph."):
            without.append(f"{script.name} (its first figure is not the graph)")
    assert not without, f"derivation pages without a figure: {without}"


def test_the_gate_figure_carries_the_chain_rule_numbers(built_site: BuiltSite) -> None:
    # At x = 3, y = -2 with 2 arriving from above, by hand: x + y hands 2 and 2 back;
    # x*y hands y*2 = -4 to x and x*2 = 6 to y; max(x, y) = x hands 2 to x, 0 to y.
    page = (built_site.path / "intuition" / "index.html").read_text(encoding="utf-8")
    (src, alt), = _FIGURE.findall(page)
    for claim in ("+ (add): out = 1, gradient 2 back to x and 2 back to y",
                  "× (multiply): out = −6, gradient −4 back to x and 6 back to y",
                  "max: out = 3, gradient 2 back to x and 0 back to y"):
        assert claim in alt, alt
    svg = (built_site.path / "intuition" / src).resolve().read_text(encoding="utf-8")
    labels = re.findall(r"<text[^>]*>([^<]+)</text>", svg)
    assert labels.count("−4") == 1 and labels.count("6") == 1 and labels.count("0") == 1, labels


_SOURCES_SECTION = re.compile(r'<h2 id="sources">.*?</ul>', re.DOTALL)


def test_every_derivation_page_names_its_sources(built_site: BuiltSite) -> None:
    missing = []
    for script in sorted((REPO_ROOT / "derivations").glob("[0-9][0-9]_*.py")):
        page = built_site.path / "derivations" / script.stem / "index.html"
        section = _SOURCES_SECTION.search(page.read_text(encoding="utf-8"))
        works = re.findall(r'<li>.*?<a href="https?://[^"]+">.*?Taken here:', section[0],
                           re.DOTALL) if section else []
        if not works:
            missing.append(script.name)
    assert not missing, f"derivation pages without a Sources section: {missing}"
    lesson = (built_site.path / "lessons" / "numeric_pass" / "index.html").read_text(
        encoding="utf-8")
    assert "mattmazur.com" in lesson, "One pass by hand does not credit Matt Mazur's example"


def test_api_reference_documents_every_export_and_catalog_entry(built_site: BuiltSite) -> None:
    import backprop_derived
    import backprop_derived.layers as layers
    from backprop_derived.symbolic import catalog

    page = (built_site.path / "api" / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    missing = []
    for package in (backprop_derived, layers):
        for name in package.__all__:
            obj = getattr(package, name)
            # a module (optim, the callable backend module) is documented whole, under its name
            anchor = (obj.__name__ if isinstance(obj, types.ModuleType)
                      else f"{obj.__module__}.{obj.__qualname__}")
            if anchor not in ids:
                missing.append(f"{package.__name__}.{name}")
    assert not missing, f"exported names the API reference does not document: {missing}"
    for name in [*catalog.ACTIVATIONS, *catalog.LOSSES]:
        assert f"<td><code>{name}</code></td>" in page, f"catalog entry {name} is not listed"


def test_the_link_check_finds_a_missing_page_and_a_missing_anchor(tmp_path: Path) -> None:
    # The hook turns each problem into a warning, which fails `mkdocs build --strict`.
    import sys

    sys.path.insert(0, str(REPO_ROOT / "docs" / "hooks"))
    try:
        import site_links
    finally:
        sys.path.pop(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "index.html").write_text(
        '<h2 id="here">x</h2><a href="../b/#there">ok</a><a href="../b/#gone">anchor</a>'
        '<a href="../c/">page</a><a href="#here">self</a><a href="https://example.org/">out</a>',
        encoding="utf-8")
    (tmp_path / "b" / "index.html").write_text('<p id="there">y</p>', encoding="utf-8")
    problems, checked = site_links.broken_links(tmp_path)
    assert checked == 4  # the external link is not followed
    assert problems == ["a/index.html: ../b/#gone (no id='gone' on that page)",
                        "a/index.html: ../c/ (no such file in the site)"]


def test_every_derivation_page_ends_with_three_checkable_exercises(built_site: BuiltSite) -> None:
    # Issue 18: each derivation page has at least three exercises, with the
    # contract the live engine (and checks outside this repository) drive.
    short = {}
    for script in sorted((REPO_ROOT / "derivations").glob("[0-9][0-9]_*.py")):
        html = (built_site.path / "derivations" / script.stem / "index.html").read_text(
            encoding="utf-8")
        exercises = html.count("data-exercise=")
        answered = min(html.count('data-live="answer"'), html.count('data-live="verdict"'))
        if exercises < 3 or answered < exercises:
            short[script.stem] = (exercises, answered)
    assert not short, f"pages with fewer than 3 checkable exercises (found, with inputs): {short}"


def test_the_worked_numbers_page_works_every_runtime_layer(built_site: BuiltSite) -> None:
    # The page names the layers it has no example for; a new layer must get one.
    html = (built_site.path / "layers" / "worked_numbers" / "index.html").read_text(
        encoding="utf-8")
    assert "That is every layer" in html, re.findall(r"Not yet worked through here:[^<]*", html)


def test_every_plot_has_alt_text(built_site: BuiltSite) -> None:
    # nbconvert's placeholder for an image without alt text; the build's
    # figure_alt hook describes each matplotlib figure from its own texts.
    placeholder = "No description has been provided for this image"
    pages = [p.parent.relative_to(built_site.path).as_posix()
             for p in sorted(built_site.path.rglob("index.html"))
             if placeholder in p.read_text(encoding="utf-8")]
    assert not pages, f"images without alt text on: {pages}"
    # nbconvert rewrites the tag (attributes in alphabetical order): look at each <img>
    plots = sum(1 for p in built_site.path.rglob("index.html")
                for tag in re.findall(r"<img\b[^>]*>", p.read_text(encoding="utf-8"))
                if 'class="plot"' in tag and re.search(r'\balt="[^"]+"', tag))
    assert plots >= 10, f"only {plots} plots with alt text: is figure_alt installed?"
