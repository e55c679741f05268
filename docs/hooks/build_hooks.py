"""MkDocs hooks of the derivation site (referenced from `hooks:` in mkdocs.yml).

What they add to a plain Material build:

* the derivation scripts of the top-level `derivations/` folder become pages
  (mkdocs-jupyter renders and executes them), with "edit this page" links that
  point at `derivations/`, not at a docs/ path that does not exist;
* MathJax 3 (`tex-chtml.js`, its woff-v2 fonts and the TeX extensions it may
  autoload) is copied from the installed django-static-mathjax package into
  `assets/mathjax/`, so nothing is fetched from a CDN;
* the network diagram is drawn with matplotlib at every build;
* the generated-code page lists every module under
  `src/backprop_derived/_generated/` through pymdownx.snippets, with a table of
  its functions, the equation each cites and the tests that use it;
* the API page documents every name of the package's `__all__` lists
  (`<!-- api-reference -->` becomes mkdocstrings' `::: module.Name` lines),
  `<!-- catalog-tables -->` becomes the tables of every activation, loss and
  layer read from the catalog, and `<!-- cli-help -->` the `--help` text of
  the command line, so the reference cannot drift from the code;
* each derivation page gets the computational graph of its equations, drawn
  from the catalog by Graphviz (equation_graphs.py);
* a notebook page's links to page sources become page URLs, and after the
  build every internal link and anchor of the site is checked (site_links.py);
* a page that derives something ends with the works it took from: author,
  title, link and what was taken (page_sources.py);
* notebook pages lose the CDN script tags nbconvert writes into them;
* a derivation page shows prose and checked results, not its plumbing: every
  code cell of `derivations/NN_*.py` is tagged `hide-input` when the script is
  read (the file itself is untouched), the stylesheet hides the input of a
  tagged cell, and the source follows the output in a collapsed "SymPy
  source" block. (mkdocs-jupyter's `remove_tag_config` left the inputs in
  place with the installed nbconvert template.) Other notebook pages hide the cells their author
  tagged `hide-input` the same way.
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib
import inspect
import logging
import os
import posixpath
import re
import types
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import equation_graphs  # sibling modules; mkdocs puts this folder on sys.path
import figure_alt
import network_figure
import page_sources
import site_links
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.backprop_derived")

DERIVATIONS_DIR = "derivations"
# Only numbered scripts are pages; helper modules next to them are not.
DERIVATION_PAGE = re.compile(r"^\d\d_[A-Za-z0-9_]+\.py$")
GENERATED_DIR = "src/backprop_derived/_generated"
GENERATED_MARKER = "<!-- generated-modules -->"
MATHJAX_DEST = "assets/mathjax"
NETWORK_FIGURE = "assets/figures/network.svg"
GRAPH_FIGURES = "assets/figures/graphs"
_GRAPHS: dict[str, list] = {}  # page source -> its equation graphs, set in on_files


def _repo_root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _mathjax_es5() -> Path:
    try:
        import mathjax  # the django-static-mathjax distribution
    except ImportError as error:
        raise PluginError(
            "MathJax is served from the site itself and comes from the "
            "django-static-mathjax package, which is not installed: "
            "pip install -e '.[docs]'"
        ) from error
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise PluginError(f"django-static-mathjax has no es5/tex-chtml.js under {es5}")
    return es5


def _mathjax_files(config: MkDocsConfig) -> list[File]:
    es5 = _mathjax_es5()
    wanted = [es5 / "tex-chtml.js"]
    # The CHTML output loads its fonts relative to tex-chtml.js, and TeX
    # macros outside the core (\cancel, \bbox, ...) are autoloaded from
    # input/tex/extensions; both must sit next to it.
    for folder in ("output/chtml/fonts/woff-v2", "input/tex/extensions"):
        wanted.extend(sorted(p for p in (es5 / folder).rglob("*") if p.is_file()))
    files = []
    for path in wanted:
        rel = path.relative_to(es5).as_posix()
        files.append(File.generated(config, f"{MATHJAX_DEST}/{rel}", abs_src_path=str(path)))
    return files


def _derivation_files(config: MkDocsConfig) -> list[File]:
    folder = _repo_root(config) / DERIVATIONS_DIR
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.iterdir() if DERIVATION_PAGE.match(p.name))
    return [
        File(
            f"{DERIVATIONS_DIR}/{name}",
            src_dir=str(folder.parent),
            dest_dir=config.site_dir,
            use_directory_urls=config.use_directory_urls,
        )
        for name in names
    ]


# ---------------------------------------------------------------------------
# Hidden inputs and the collapsed "SymPy source" blocks.

HIDE_INPUT = "hide-input"
_REPO_URL: list[str] = []  # the blob URL prefix, set from the config in on_config


def _source_block(cells: list, path: Path, root: Path) -> str:
    """A collapsed block with the source of ``cells`` (one line of HTML).

    Written on a single line, with the newlines of the code as character
    references inside <pre>: the notebook's Markdown renderer passes an HTML
    block through untouched only up to the first blank line.
    """
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    code = "\n\n".join(cell.source.strip("\n") for cell in cells)
    body = highlight(code, PythonLexer(), HtmlFormatter(nowrap=True)).rstrip("\n")
    rel = path.relative_to(root).as_posix()
    derivation = rel.startswith(DERIVATIONS_DIR + "/")
    title = "SymPy source" if derivation else "Source"
    link = ""
    if _REPO_URL:
        link = (f'<p class="source-file">The whole script: <a href="{_REPO_URL[0]}{rel}">'
                f"<code>{html.escape(rel)}</code></a></p>")
    block = (f'<details class="note sympy-source"><summary>{title}</summary>'
             f'<div class="highlight"><pre><code>{body}</code></pre></div>{link}</details>')
    return block.replace("\n", "&#10;")


def _hide_inputs(notebook, path: Path, root: Path):
    """Tag the cells whose input the page hides; put their source after them."""
    import nbformat

    derivation = path.parent.name == DERIVATIONS_DIR and DERIVATION_PAGE.match(path.name)
    cells, pending = [], []
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        hidden = cell.cell_type == "code" and (derivation or HIDE_INPUT in tags)
        if hidden and HIDE_INPUT not in tags:
            tags.append(HIDE_INPUT)
        if pending and not hidden:
            cells.append(nbformat.v4.new_markdown_cell(_source_block(pending, path, root)))
            pending = []
        cells.append(cell)
        if hidden:
            pending.append(cell)
    if pending:
        cells.append(nbformat.v4.new_markdown_cell(_source_block(pending, path, root)))
    notebook.cells = cells
    return notebook


def _install_input_hiding(config: MkDocsConfig) -> None:
    """Make mkdocs-jupyter read every notebook page through `_hide_inputs`."""
    import jupytext
    from mkdocs_jupyter import nbconvert2

    root = _repo_root(config)
    read = jupytext.read

    class _Jupytext:
        def __getattr__(self, name):
            return getattr(jupytext, name)

        @staticmethod
        def read(fp, *args, **kwargs):
            notebook = read(fp, *args, **kwargs)
            if isinstance(fp, str | os.PathLike):
                notebook = _hide_inputs(notebook, Path(fp).resolve(), root)
            return notebook

    nbconvert2.jupytext = _Jupytext()


def blob_prefix(config: MkDocsConfig) -> str | None:
    """The URL a repository path is appended to, from `repo_url` and `edit_uri`.

    `repo_url` is the one place the repository is named: edit links, the
    "SymPy source" links and the test-file links all start here. With
    `edit_uri: edit/main/docs/`, a file is viewed at `<repo_url>/blob/main/<path>`.
    None when no repository is configured: then no page links to one.
    """
    if not config.repo_url:
        return None
    edit = (config.edit_uri or "edit/main/docs/").strip("/").split("/")
    branch = edit[1] if len(edit) > 1 and edit[0] == "edit" else "main"
    return f"{config.repo_url.rstrip('/')}/blob/{branch}/"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    blob = blob_prefix(config)
    _REPO_URL[:] = [blob] if blob else []
    if not config.repo_url:
        # MkDocs would still make "edit/main/docs/<page>" a relative edit link.
        config.edit_uri = None
    _install_input_hiding(config)
    # every page's kernel starts with figure_alt.install(): plots get alt text
    os.environ["IPYTHONDIR"] = str(figure_alt.startup_dir())
    return config


# Before mkdocs-jupyter's on_files (priority 0), which wraps the notebook pages.
@event_priority(100)
def on_files(files: Files, config: MkDocsConfig) -> Files:
    derivations = _derivation_files(config)
    clash = [f.src_uri for f in derivations if files.get_file_from_path(f.src_uri)]
    if clash:
        raise PluginError(f"docs/ already holds {clash}; derivations/ is added by the hook")
    # Derivations first: they are the reading order, and a failing step is
    # reported before the slower practice and performance pages run.
    ordered = Files([*derivations, *files])
    for mathjax_file in _mathjax_files(config):
        ordered.append(mathjax_file)
    ordered.append(File.generated(config, NETWORK_FIGURE, content=network_figure.draw()))
    # The computational graph of every derivation page, from the catalog.
    try:
        _GRAPHS.clear()
        _GRAPHS.update(equation_graphs.graphs())
        for graphs in _GRAPHS.values():
            for graph in graphs:
                ordered.append(File.generated(config, f"{GRAPH_FIGURES}/{graph.name}.svg",
                                              content=equation_graphs.svg(graph)))
    except (RuntimeError, ValueError) as error:
        raise PluginError(f"drawing the derivation figures: {error}") from error
    return ordered


_HEADING_END = re.compile(r"</h[1-6]>")


def _insert_figures(html: str, page: Page) -> str:
    """Put each equation graph of the page under its heading (or before the first h2)."""
    # Directory URLs: the page "derivations/10_normalization/" is a folder.
    base = page.url if page.url.endswith("/") else posixpath.dirname(page.url)
    for graph in _GRAPHS.get(page.file.src_uri, []):
        src = posixpath.relpath(f"{GRAPH_FIGURES}/{graph.name}.svg", base.rstrip("/") or ".")
        figure = equation_graphs.figure_html(graph, src)
        if graph.after_heading:
            start = re.search(rf'<h[1-6]\b[^>]*\bid="{re.escape(graph.after_heading)}"', html)
            end = _HEADING_END.search(html, start.end()) if start else None
            if end is None:
                log.warning("%s: no heading with id %r for the figure %s",
                            page.file.src_uri, graph.after_heading, graph.name)
                continue
            html = html[:end.end()] + figure + html[end.end():]
        else:
            first = re.search(r"<h2\b", html)
            at = first.start() if first else len(html)
            html = html[:at] + figure + html[at:]
    return html


# `<!-- kernel:layers.weight_gradient -->` in a page becomes the NumPy
# statements of that generated function, and `<!-- kernel-doc:... -->` its
# docstring summary: what a hand-written page says the runtime computes is
# read from the generated code, so it cannot drift from it.
KERNEL_MARKER = re.compile(r"<!-- kernel(?P<doc>-doc)?:(?P<module>\w+)\.(?P<name>\w+) -->")


def _kernel_text(root: Path, module: str, name: str, doc: bool, page: Page) -> str:
    path = root / GENERATED_DIR / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8")) if path.is_file() else None
    for node in tree.body if tree else []:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            if doc:
                return (ast.get_docstring(node) or "").splitlines()[0]
            body = [stmt for stmt in node.body
                    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
                    and not isinstance(stmt, ast.Return)]
            returned = [s for s in node.body if isinstance(s, ast.Return)]
            if not body and returned:  # a kernel that returns its value (the penalty)
                body = returned
            return "`" + "; ".join(ast.unparse(stmt) for stmt in body) + "`"
    # A warning fails the strict build: the page names a kernel that is gone.
    log.warning("%s: no generated function %s.%s for <!-- kernel:... -->",
                page.file.src_uri, module, name)
    return f"`{module}.{name}` (missing)"


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    root = _repo_root(config)
    markdown = KERNEL_MARKER.sub(
        lambda m: _kernel_text(root, m["module"], m["name"], bool(m["doc"]), page), markdown)
    if GENERATED_MARKER in markdown:
        markdown = markdown.replace(GENERATED_MARKER, _generated_modules_markdown(config))
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, _cli_help_markdown())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, _api_reference_markdown())
    if CATALOG_MARKER in markdown:
        markdown = markdown.replace(CATALOG_MARKER, _catalog_markdown())
    return markdown


# ---------------------------------------------------------------------------
# API reference: the objects to document are read from the package's
# `__all__` lists, and mkdocstrings renders each from its source and docstring;
# the catalog tables come from the catalog itself.

API_MARKER = "<!-- api-reference -->"
CATALOG_MARKER = "<!-- catalog-tables -->"
CLI_MARKER = "<!-- cli-help -->"
# Sections of the reference: (heading, package whose __all__ is documented,
# modules documented whole, with their public members).
API_SECTIONS = (
    ("The network", "backprop_derived", ()),
    ("Layers", "backprop_derived.layers", ()),
    ("Training", None, ("backprop_derived.training",)),
    ("Parameters as one vector", None, ("backprop_derived.unrolling",)),
    ("Gradient checking", None, ("backprop_derived.gradient_checking",
                                 "backprop_derived.gradcheck")),
)


def _exported(package: str) -> list[str]:
    """``module.Name`` of every name in ``package.__all__``, where it is defined."""
    module = importlib.import_module(package)
    paths = []
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):  # optim, backend: the module, whole
            paths.append(obj.__name__)
            continue
        defined_in = getattr(obj, "__module__", None)
        if defined_in is None or not hasattr(obj, "__qualname__"):
            log.warning("api.md: %s.%s is not a class or function to document", package, name)
            continue
        paths.append(f"{defined_in}.{obj.__qualname__}")
    return paths


def _api_reference_markdown() -> str:
    parts = []
    for heading, package, modules in API_SECTIONS:
        parts.append(f"## {heading}\n")
        if package:
            parts.append(f"Every name in `{package}.__all__`:\n")
            parts.extend(f"::: {path}\n" for path in _exported(package))
        parts.extend(f"::: {module}\n" for module in modules)
    return "\n".join(parts)


def _latex_cell(expr) -> str:
    import sympy as sp

    # A bare | would end the table cell; arithmatex needs no space before the closing $.
    return "$" + sp.latex(expr).replace("|", r"\vert ").strip() + "$"


def _catalog_markdown() -> str:
    """Tables of every activation, loss and layer, read from the catalog and the package."""
    import backprop_derived.layers as layers
    from backprop_derived.symbolic import catalog

    out = ["### Activations\n", f"{len(catalog.ACTIVATIONS)} entries of `catalog.ACTIVATIONS`.\n",
           "| Name | Definition | Applies |", "|---|---|---|"]
    for name, expr in catalog.ACTIVATIONS.items():
        where = "entry by entry" if catalog.is_elementwise(name) else "to a whole row (output layer)"
        out.append(f"| `{name}` | {_latex_cell(expr)} | {where} |")
    out += ["", "### Losses\n", f"{len(catalog.LOSSES)} entries of `catalog.LOSSES`, "
            "per example; the cost is their mean over the batch.\n",
            "| Name | Per-example loss | Output activation it needs |", "|---|---|---|"]
    for name, expr in catalog.LOSSES.items():
        needs = catalog.REQUIRED_OUTPUT.get(name)
        out.append(f"| `{name}` | {_latex_cell(expr)} | {f'`{needs}`' if needs else 'any'} |")
    out += ["", "### Layers\n", f"{len(layers.__all__)} names in `backprop_derived.layers.__all__`.\n",
            "| Layer | What it computes |", "|---|---|"]
    for name in layers.__all__:
        obj = getattr(layers, name)
        summary = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")
        anchor = f"{obj.__module__}.{obj.__qualname__}"
        out.append(f"| [`{name}`](#{anchor}) | {_escape_cell(summary)} |")
    return "\n".join(out) + "\n"


def _cli_help_markdown() -> str:
    from backprop_derived.cli import build_parser

    # argparse wraps to the terminal width; pin it so the page is the same
    # whether it was built in a terminal or in CI.
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"
    try:
        parser = build_parser()
        blocks = [("backprop-derived --help", parser.format_help())]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    blocks.append((f"backprop-derived {name} --help", sub.format_help()))
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(f"```console\n$ {cmd}\n{text.rstrip()}\n```\n" for cmd, text in blocks)


def _generated_modules_markdown(config: MkDocsConfig) -> str:
    root = _repo_root(config)
    modules = sorted(p for p in (root / GENERATED_DIR).glob("*.py") if p.name != "__init__.py")
    if not modules:
        # A warning, so `mkdocs build --strict` fails: the page would be empty.
        log.warning(
            "No generated modules under %s; run `make regenerate` first.", GENERATED_DIR
        )
        return "!!! failure\n    No generated module was found; run `make regenerate`.\n"
    test_sources = {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted((root / "tests").rglob("test_*.py"))
    }
    blob = blob_prefix(config)
    parts = []
    for module in modules:
        rel = module.relative_to(root).as_posix()
        parts.append(f"## `{module.stem}`\n")
        parts.append(_function_table(module, test_sources, blob))
        # The module itself is pulled in by pymdownx.snippets, not pasted.
        parts.append(
            f'??? example "{rel}"\n\n'
            f'    ```python title="{rel}" linenums="1"\n'
            f'    --8<-- "{rel}"\n'
            f"    ```\n"
        )
    return "\n".join(parts)


_DERIVED_IN = re.compile(r"^(?P<equation>.*?);? derived in (?P<source>derivations/\S+?\.py)\.?$")


def _function_table(module: Path, test_sources: dict[str, str], blob: str | None) -> str:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    rows = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        lines = [line.strip() for line in (ast.get_docstring(node) or "").splitlines()]
        summary = lines[0] if lines else ""
        equation = ""
        for line in lines[1:]:
            cited = _DERIVED_IN.match(line)
            if cited:
                # Links to the derivation page (a .py page, resolved by MkDocs).
                equation = f"[{cited['equation'] or cited['source']}]({cited['source']})"
        tests = [path for path, text in test_sources.items()
                 if _calls_generated(text, module.stem, node.name)]
        links = ", ".join(
            f"[{posixpath.basename(t)}]({blob}{t})" if blob else f"`{t}`" for t in tests
        )
        rows.append(
            f"| `{node.name}` | {_escape_cell(summary)} | {_escape_cell(equation)} "
            f"| {links or 'through the runtime'} |"
        )
    if not rows:
        return "This module defines no public function.\n"
    header = "| Function | Computes | Equation | Tests that call it directly |\n|---|---|---|---|\n"
    return header + "\n".join(rows) + "\n"


def _calls_generated(test_source: str, module: str, name: str) -> bool:
    # Kernels share their names with catalog entries ("sigmoid"), so a bare
    # word match would list every test that merely builds a sigmoid network.
    # Count a test only if it reaches the generated module itself.
    if re.search(rf"\b{module}\.{re.escape(name)}\b", test_source):
        return True
    # A parametrised test that looks kernels up by name in the module
    # (getattr(activations, f"{name}_derivative")) calls each one directly.
    looks_up = re.search(rf"getattr\({module},", test_source)
    if looks_up and re.search(rf"_generated import [^\n]*\b{module}\b", test_source):
        return True
    imports_it = re.search(
        rf"from\s+backprop_derived\._generated\.{module}\s+import\s[^\n]*\b{re.escape(name)}\b",
        test_source,
    )
    return bool(imports_it)


def _escape_cell(text: str) -> str:
    return text.replace("|", r"\|")


def on_page_context(context, page: Page, config: MkDocsConfig, nav):
    # Pages that live outside docs/ (the derivations) would otherwise get an
    # edit link to docs/derivations/..., which does not exist in the repository.
    source = page.file.abs_src_path
    if page.edit_url and source and config.repo_url:
        docs_dir = Path(config.docs_dir).resolve()
        path = Path(source).resolve()
        if not path.is_relative_to(docs_dir):
            rel = os.path.relpath(path, docs_dir).replace(os.sep, "/")
            repo = config.repo_url if config.repo_url.endswith("/") else config.repo_url + "/"
            page.edit_url = urljoin(repo, config.edit_uri + rel)
    return context


# nbconvert's notebook template loads MathJax 2 from cdnjs (an empty src when
# mkdocs-jupyter's custom_mathjax_url is unset) and writes an inline module
# that would import mermaid from cdnjs. The site's own MathJax typesets the
# notebook output, and no page uses mermaid, so both are removed.
_NB_MATHJAX_LOADER = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->",
                                re.DOTALL)
_NB_MERMAID_MODULE = re.compile(
    r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded", async \(\) => \{'
    r"\s*const diagrams = document\.querySelectorAll\(\"\.jp-Mermaid.*?</script>",
    re.DOTALL,
)


# ---------------------------------------------------------------------------
# Citations: "eq. (8)" and "(V3)" link to the equation on the Sources page.

SOURCES_PAGE = "sources.md"
_CITATION = re.compile(
    r"(?<![\w])(?P<eq>[Ee]q(?:uation)?s?\.?\s*\(?(?P<n>1[0-2]|[1-9])\)?(?![\d\w]))"
    r"|\((?P<bp>V[1-4])\)"
)
_SKIP_TAGS = ("a", "pre", "code", "script", "style", "textarea")
_TAG = re.compile(r"(<[^>]*>)")


def _link_citations(text: str, page: Page, files: Files) -> str:
    target = files.get_file_from_path(SOURCES_PAGE)
    if target is None or page.file.src_uri == SOURCES_PAGE:
        return text
    # Directory URLs: "derivations/02_output_layer/" -> "../../sources/".
    base = posixpath.relpath(target.url, page.url or ".") + "/"

    def link(m: re.Match) -> str:
        if m["bp"]:
            return f'(<a class="citation" href="{base}#efavdb-{m["bp"].lower()}">{m["bp"]}</a>)'
        return f'<a class="citation" href="{base}#cm-eq-{m["n"]}">{m["eq"]}</a>'

    out, skipping = [], []
    for part in _TAG.split(text):
        if part.startswith("<"):
            name = re.match(r"</?\s*([A-Za-z0-9-]+)", part)
            tag = name.group(1).lower() if name else ""
            if tag in _SKIP_TAGS and not part.endswith("/>"):
                if part.startswith("</"):
                    if skipping and skipping[-1] == tag:
                        skipping.pop()
                else:
                    skipping.append(tag)
            out.append(part)
        elif skipping:
            out.append(part)
        else:
            out.append(_CITATION.sub(link, part))
    return "".join(out)


_HEADING_ID = re.compile(r'<h([1-6])\b[^>]*?\bid="([^"]+)"')


def _align_toc_with_headings(html: str, page: Page) -> None:
    """Give each table-of-contents entry the id its heading has on the page.

    mkdocs-jupyter slugs the headings for the table of contents with Markdown's
    toc extension, which drops inline code (`fit` in "one epoch of `fit`"),
    while nbconvert's ids keep it; the entry would then point at no anchor.
    Entries and headings come in the same order, so they are paired by level.
    """
    headings = [(int(level), ident) for level, ident in _HEADING_ID.findall(html)]
    position = 0

    def walk(items):
        nonlocal position
        for item in items:
            for n in range(position, len(headings)):
                if headings[n][0] == item.level:
                    item.id, position = headings[n][1], n + 1
                    break
            walk(item.children)

    walk(page.toc.items if page.toc else [])


def _append_sources(html: str, page: Page, files: Files) -> str:
    """End a page that derives something with the works it took from (page_sources.py)."""
    target = files.get_file_from_path(SOURCES_PAGE)
    href = target.url_relative_to(page.file) if target else SOURCES_PAGE
    section = page_sources.section_html(page.file.src_uri, href)
    if section is None:
        return html
    if page.toc is not None:
        from mkdocs.structure.toc import AnchorLink

        items = page.toc.items
        # Under the page title when the table of contents has one, as the other sections.
        (items[0].children if len(items) == 1 and items[0].level == 1 else items).append(
            AnchorLink("Sources", "sources", 2))
    return html + section


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    html = _link_citations(html, page, files)
    html = _insert_figures(html, page)
    html = _append_sources(html, page, files)
    if 'class="jupyter-wrapper"' not in html:
        return html
    _align_toc_with_headings(html, page)
    # nbconvert leaves `../notation.md` as it is; MkDocs would have rewritten it.
    html, unresolved = site_links.rewrite_source_links(html, page, files)
    for link in unresolved:
        log.warning("%s: link to %s, which is not a page of the site", page.file.src_uri, link)
    html, n_mathjax = _NB_MATHJAX_LOADER.subn("", html)
    html, n_mermaid = _NB_MERMAID_MODULE.subn("", html)
    if (n_mathjax, n_mermaid) != (1, 1):
        # The template changed upstream: fail rather than ship CDN references.
        raise PluginError(
            f"{page.file.src_uri}: expected one nbconvert MathJax loader and one mermaid "
            f"module to strip, found {n_mathjax} and {n_mermaid}; update docs/hooks/build_hooks.py"
        )
    return html


def on_post_build(config: MkDocsConfig) -> None:
    # MkDocs validates the links of Markdown pages only; this checks every
    # built page, notebooks included, and a warning fails the strict build.
    prefix = urlsplit(config.site_url or "/").path or "/"
    problems, checked = site_links.broken_links(config.site_dir, prefix)
    for problem in problems:
        log.warning("broken internal link: %s", problem)
    log.info("checked %d internal links of the built site, %d broken", checked, len(problems))
