"""The live panel's files: Pyodide, SymPy and this package, served by the site itself.

An MkDocs hook (listed under `hooks:` in mkdocs.yml), so `make site`,
`make serve` and the site tests all run it; also a script,
`python docs/hooks/live_assets.py SITE_DIR`, for a build without MkDocs.

After the build it writes `assets/live/` into the site:

* the core of Pyodide from the npm registry (`pyodide.mjs`, `pyodide.asm.mjs`,
  `pyodide.asm.wasm`, `python_stdlib.zip`), pinned by version and by the
  sha256 of the package tarball;
* the pure-Python wheels of SymPy and mpmath from PyPI (sympy needs
  mpmath < 1.4), pinned by the sha256 of each wheel;
* a wheel of this package written from the working tree at every build, so
  the browser runs the catalog and engine the pages were built with;
* a `pyodide-lock.json` that lists exactly those three wheels with their
  sha256. Pyodide's own lock lists its rebuilt SymPy and mpmath under other
  hashes; beside the PyPI wheels it fails its integrity check only at import.

Downloads are cached in $BACKPROP_DERIVED_LIVE_CACHE (default
~/.cache/backprop-derived/live), outside the repository, and checked against
the pinned sha256 on every build; with a warm cache the build needs no
network. Nothing large is committed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.live_assets")

DEST = "assets/live"
PYODIDE_VERSION = "314.0.8"
PYODIDE_TARBALL = f"https://registry.npmjs.org/pyodide/-/pyodide-{PYODIDE_VERSION}.tgz"
PYODIDE_SHA256 = "9a52704e0ae5b07aaacb8e4fed9f1658e8024694a078695ea45ac79dee4cefcb"
# The files loadPyodide reads at start; the rest of the package (the CommonJS
# loader, source maps, type declarations, the console pages, its lock) is not served.
PYODIDE_CORE = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip")
# The `info` block of the lock: the ABI the wheels are loaded under (from the
# package's own pyodide-lock.json of this version).
LOCK_INFO_KEYS = ("abi_version", "arch", "platform", "python")

WHEELS = {
    # name: (version, file name, sha256, imports, depends)
    "mpmath": ("1.3.0", "mpmath-1.3.0-py3-none-any.whl",
               "a0b2b9fe80bbcd81a6647ff13108738cfb482d481d826cc0e02f5b35e5c88d2c",
               ["mpmath"], []),
    "sympy": ("1.14.0", "sympy-1.14.0-py3-none-any.whl",
              "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5",
              ["sympy"], ["mpmath"]),
}
PACKAGE = "backprop-derived"


class LiveAssetError(RuntimeError):
    """A download that failed or does not match its pinned checksum."""


def cache_dir() -> Path:
    folder = os.environ.get("BACKPROP_DERIVED_LIVE_CACHE")
    path = Path(folder) if folder else Path.home() / ".cache" / "backprop-derived" / "live"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(path: Path, expected: str) -> Path:
    found = sha256(path)
    if found != expected:
        raise LiveAssetError(f"{path.name}: sha256 {found}, pinned {expected}; delete it from "
                             f"{path.parent} to download it again")
    return path


def pyodide_tarball(cache: Path) -> Path:
    path = cache / f"pyodide-{PYODIDE_VERSION}.tgz"
    if not path.exists():
        log.info("live panel: downloading %s", PYODIDE_TARBALL)
        tmp = path.with_suffix(".part")
        try:
            with urllib.request.urlopen(PYODIDE_TARBALL, timeout=120) as response:
                tmp.write_bytes(response.read())
        except OSError as err:
            raise LiveAssetError(f"could not download {PYODIDE_TARBALL} ({err}); the live "
                                 "panel needs it once, then the cache serves it") from err
        _checked(tmp, PYODIDE_SHA256)
        tmp.replace(path)
    return _checked(path, PYODIDE_SHA256)


def wheel(cache: Path, name: str) -> Path:
    version, file_name, digest, _, _ = WHEELS[name]
    path = cache / file_name
    if not path.exists():
        log.info("live panel: downloading %s %s from PyPI", name, version)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--dest", str(cache), f"{name}=={version}"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0 or not path.exists():
            raise LiveAssetError(f"pip download {name}=={version} failed:\n{result.stderr[-2000:]}")
    return _checked(path, digest)


def package_wheel(repo: Path, out: Path) -> Path:
    """A wheel of this package, written from the working tree (pure Python).

    Written here rather than by `pip wheel`: pip would build in an isolated
    environment that downloads setuptools at every build (the installed one
    may be too old for pyproject.toml), and setuptools writes build/ and
    egg-info folders into src/, which `mkdocs serve` watches. The wheel
    format for pure Python is a zip with three metadata files (PEP 427);
    fixed timestamps make the same tree give the same bytes.
    """
    import base64
    import tomllib
    import zipfile

    project = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dist = project["name"].replace("-", "_")
    version = project["version"]
    info = f"{dist}-{version}.dist-info"
    files = {}
    package = repo / "src" / "backprop_derived"
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
            files[path.relative_to(package.parent).as_posix()] = path.read_bytes()
    requires = "".join(f"Requires-Dist: {r}\n" for r in project.get("dependencies", ()))
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                 f"Version: {version}\n{requires}").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: docs/hooks/live_assets.py\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")

    def record_line(name, data):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return f"{name},sha256={digest},{len(data)}\n"

    record = "".join(record_line(n, d) for n, d in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    path = out / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            whl.writestr(entry, data, zipfile.ZIP_DEFLATED)
    return path


# Run under node with the Pyodide being served: its own Python 3.14 compiles
# every module of a wheel to a .pyc in place of the .py (hash-based and
# unchecked, as a sourceless module needs no timestamp), so the browser does
# not compile SymPy's 1,000 modules at every first import. The libraries'
# own test suites (tests/, benchmarks/ folders) are left out, as Pyodide's
# build of SymPy does.
_PRECOMPILE_JS = r"""
import { readFileSync, writeFileSync } from "node:fs";
const [pyodideDir, ...pairs] = process.argv.slice(2);
const { loadPyodide } = await import(pyodideDir + "/pyodide.mjs");
const py = await loadPyodide({ indexURL: pyodideDir + "/" });
py.FS.mkdir("/work");
for (let i = 0; i < pairs.length; i += 2) {
  py.FS.writeFile("/work/in.whl", readFileSync(pairs[i]));
  py.runPython(`
import base64, hashlib, importlib.util, zipfile
from importlib._bootstrap_external import _code_to_hash_pyc
out = {}
with zipfile.ZipFile("/work/in.whl") as whl:
    for name in whl.namelist():
        if "/tests/" in name or "/benchmarks/" in name:
            continue  # a library's own test suite is never imported here
        data = whl.read(name)
        if name.endswith(".py"):
            code = compile(data, name, "exec", dont_inherit=True)
            data = bytes(_code_to_hash_pyc(code, importlib.util.source_hash(data), False))
            name += "c"
        out[name] = data
record = next(n for n in out if n.endswith(".dist-info/RECORD"))
lines = []
for name, data in out.items():
    if name != record:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
out[record] = ("\\n".join(lines) + f"\\n{record},,\\n").encode()
with zipfile.ZipFile("/work/out.whl", "w", zipfile.ZIP_DEFLATED) as whl:
    for name, data in out.items():
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        whl.writestr(info, data, zipfile.ZIP_DEFLATED)
`);
  writeFileSync(pairs[i + 1], py.FS.readFile("/work/out.whl"));
}
"""


def precompile(pyodide_dir: Path, pairs: list[tuple[Path, Path]]) -> bool:
    """Compile wheels to .pyc with Pyodide's Python under node; False without node."""
    node = shutil.which("node")
    if node is None or not pairs:
        if pairs:
            log.warning("live panel: node not found, serving source wheels (slower first import)")
        return False
    with tempfile.TemporaryDirectory(prefix="live-pyc-") as tmp:
        script = Path(tmp) / "precompile.mjs"
        script.write_text(_PRECOMPILE_JS, encoding="utf-8")
        args = [str(p) for pair in pairs for p in pair]
        result = subprocess.run([node, str(script), str(pyodide_dir), *args],
                                capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        raise LiveAssetError(f"precompiling the wheels under node failed:\n{result.stderr[-2000:]}")
    return True


def _lock_entry(name, version, file_name, digest, imports, depends) -> dict:
    return {"name": name, "version": version, "file_name": file_name, "install_dir": "site",
            "sha256": digest, "package_type": "package", "imports": imports,
            "depends": depends, "unvendored_tests": False, "shared_library": False}


def build(repo: Path, site_dir: Path) -> dict[str, int]:
    """Write `assets/live/` into `site_dir`; returns ``{file: bytes}`` of what it wrote."""
    cache = cache_dir()
    dest = site_dir / DEST
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(pyodide_tarball(cache)) as tar:
        for name in PYODIDE_CORE:
            member = tar.extractfile(f"package/{name}")
            (dest / name).write_bytes(member.read())
        upstream_lock = json.load(io.TextIOWrapper(tar.extractfile("package/pyodide-lock.json"),
                                                   encoding="utf-8"))
    info = {k: upstream_lock["info"][k] for k in LOCK_INFO_KEYS}
    lock_path = dest / "pyodide-lock.json"
    lock_path.write_text(json.dumps({"info": info, "packages": {}}), encoding="utf-8")
    # The downloads, checked against their pins, and this package's wheel;
    # each compiled to .pyc (SymPy and mpmath once, into the cache).
    sources = {name: wheel(cache, name) for name in WHEELS}
    compiled = {name: cache / f"pyc-pyodide-{PYODIDE_VERSION}" / WHEELS[name][1]
                for name in WHEELS}
    with tempfile.TemporaryDirectory(prefix="live-own-") as tmp:
        own_source = package_wheel(repo, Path(tmp))
        own = dest / own_source.name
        todo = [(sources[n], compiled[n]) for n in WHEELS if not compiled[n].exists()]
        for _, target in todo:
            target.parent.mkdir(parents=True, exist_ok=True)
        if not precompile(dest, [*todo, (own_source, own)]):
            compiled = sources
            shutil.copy2(own_source, own)
    packages = {}
    for name, (version, file_name, _, imports, depends) in WHEELS.items():
        shutil.copy2(compiled[name], dest / file_name)
        packages[name] = _lock_entry(name, version, file_name, sha256(dest / file_name),
                                     imports, depends)
    version = own.name.split("-")[1]
    packages[PACKAGE] = _lock_entry(PACKAGE, version, own.name, sha256(own),
                                    ["backprop_derived"], ["sympy"])
    lock = {"info": info, "packages": packages}
    lock_path.write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n",
                                            encoding="utf-8")
    sizes = {p.name: p.stat().st_size for p in sorted(dest.iterdir())}
    log.info("live panel: %d files, %.1f MB in %s", len(sizes), sum(sizes.values()) / 1e6, DEST)
    return sizes


# --- The panel --------------------------------------------------------------------
# Pages that show the live panel: (kind, the expression it starts with, the id
# of the heading it goes before; at the end of the page when there is none).
LIVE_PAGES = {
    "derivations/01_activations.py": ("activation", "z/(1 + Abs(z))", "exercises"),
    "derivations/07_losses_x_activations.py": ("loss", "(a - y)**4/4", "exercises"),
    "add-your-own-activation.md": ("activation", "z/(1 + Abs(z))", "2-regenerate"),
}
LOAD_LABEL = "Load the live engine — about 22 MB"


def panel_html(kind: str, expression: str) -> str:
    """The panel's markup; docs/javascripts/live.js binds it (contract: issue 18)."""
    from html import escape

    options = "".join(
        f'<option value="{k}"{" selected" if k == kind else ""}>{label}</option>'
        for k, label in (("activation", "activation g(z)"), ("loss", "loss per unit, E(a, y)")))
    return f"""
<section class="live-panel" data-live="panel" id="live-panel">
<h2 class="live-title">Re-derive it live</h2>
<p>Type an activation in <code>z</code> (or a loss in <code>a</code> and <code>y</code>) as a
SymPy expression, e.g. <code>z/(1 + Abs(z))</code> or <code>(a - y)**4/4</code>. This site's
own catalog, engine, proof checker and printers run in your browser: nothing leaves it, and
nothing is fetched from another site. Functions: exp, log, sqrt, Abs, tanh, erf, atan,
Max, Min, Piecewise, Heaviside and the like; decimals are read exactly.</p>
<p><button type="button" class="md-button" data-live="load">{escape(LOAD_LABEL)}</button>
<progress data-live="progress" hidden></progress>
<span class="live-status" data-live="status" aria-live="polite"></span></p>
<form class="live-form" data-live="form">
<select data-live="kind" aria-label="what the expression is">{options}</select>
<input type="text" data-live="expr" value="{escape(expression)}" spellcheck="false"
 autocomplete="off" aria-label="SymPy expression">
<label class="live-option"><input type="checkbox" data-live="softmax"> a loss with a
 softmax output too (a few seconds more)</label>
<button type="submit" class="md-button md-button--primary" data-live="run">Derive</button>
<button type="button" class="md-button" data-live="cancel" hidden>Cancel</button>
</form>
<div class="live-error admonition failure" data-live="error" role="alert" hidden></div>
<div class="live-results" data-live="results" hidden>
<p class="live-derivative" data-live="derivative"></p>
<div data-live="steps"></div>
<h3 class="live-subtitle">Output deltas</h3>
<div data-live="deltas"></div>
<p class="live-check" data-live="check" data-max-error=""></p>
<details class="live-code"><summary>NumPy kernels, as <code>regenerate</code> writes them</summary>
<pre><code data-live="numpy"></code></pre></details>
</div>
</section>
"""


def on_page_content(html: str, page, config, files) -> str:
    import re

    where = LIVE_PAGES.get(page.file.src_uri)
    if where is None:
        return html
    kind, expression, before = where
    panel = panel_html(kind, expression)
    heading = re.search(rf'<h2[^>]*\bid="{re.escape(before)}"', html, flags=re.IGNORECASE)
    if heading is None:
        return html + panel
    return html[:heading.start()] + panel + html[heading.start():]


def on_post_build(config, **kwargs) -> None:
    from mkdocs.exceptions import PluginError

    try:
        build(Path(config["config_file_path"]).resolve().parent, Path(config["site_dir"]))
    except LiveAssetError as err:
        raise PluginError(f"live panel assets: {err}") from err


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/hooks/live_assets.py SITE_DIR")
    for file, size in build(Path(__file__).resolve().parents[2], Path(sys.argv[1])).items():
        print(f"{size:>10}  {file}")
