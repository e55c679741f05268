"""``backprop-derived regenerate [--check]``: derivations -> generated files.

1. Run every ``derivations/NN_*.py`` top to bottom (in-process, reading order)
   and collect its ``EXPORTS``. Any failed step raises here, before anything
   is written: a failing derivation never modifies a file.
2. Render every generated text in memory.
3. ``--check``: compare with the files on disk, print a unified diff, exit 1
   on any difference (including generated files that should not exist).
   Otherwise write only the files whose text changed, each atomically
   (temporary file + ``os.replace``), and delete stale generated files.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import difflib
import io
import multiprocessing
import os
import runpy
import sys
import tempfile
import time
from pathlib import Path

from .codegen import GENERATED_DOCS, GENERATED_PACKAGE, render_latex, render_modules, split_exports
from .kernels import Kernel
from .numba_printer import render_numba_modules

__all__ = ["check", "collect", "derivation_scripts", "main", "render_all", "write"]


def derivation_scripts(root: Path) -> list[Path]:
    scripts = sorted((root / "derivations").glob("[0-9][0-9]_*.py"))
    if not scripts:
        raise FileNotFoundError(f"no derivations/NN_*.py under {root}; run from the repository root")
    return scripts


def _run_page(script: str) -> tuple[list, float]:
    """One derivation page, top to bottom: its EXPORTS and the seconds it took."""
    start = time.perf_counter()
    from . import exercises  # the exercises are the site's, not the kernels' (see there)

    checking, exercises.CHECK_ANSWERS = exercises.CHECK_ANSWERS, False
    try:
        # A page's printed output belongs on the page, not in this command's log.
        with contextlib.redirect_stdout(io.StringIO()):
            namespace = runpy.run_path(script, run_name="__derivation__")
    finally:
        exercises.CHECK_ANSWERS = checking
    return namespace.get("EXPORTS", []), time.perf_counter() - start


def _jobs() -> int:
    """Pages run in parallel, one per core (the pages are independent)."""
    value = os.environ.get("BACKPROP_DERIVED_JOBS")
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"BACKPROP_DERIVED_JOBS must be a positive integer, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def collect(root: Path, *, log=None) -> list:
    """Every page's EXPORTS, in reading order; the first failing page raises."""
    scripts = derivation_scripts(root)
    jobs = min(_jobs(), len(scripts))
    if jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
        # fork: the workers start with SymPy and the catalog already imported
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
            results = list(pool.map(_run_page, [str(s) for s in scripts]))
    else:
        results = [_run_page(str(s)) for s in scripts]
    exports: list = []
    for script, (found, seconds) in zip(scripts, results, strict=True):
        exports.extend(found)
        if log:
            log(f"  {script.relative_to(root)}: {len(found)} exports ({seconds:.1f} s)")
    return exports


def render_all(root: Path, *, log=None) -> dict[str, str]:
    kernels, acts, outs, agreements = split_exports(collect(root, log=log))
    files = render_modules(kernels, acts, outs, agreements)
    # the same kernels as fused Numba loops (a Binding is data, printed once, above)
    files.update(render_numba_modules([k for k in kernels if isinstance(k, Kernel)]))
    sources = sorted({k.source for k in kernels})
    files.update(render_latex(acts, outs, sources))
    return files


def _generated_on_disk(root: Path) -> set[str]:
    found = set()
    for folder in (GENERATED_PACKAGE, GENERATED_DOCS):
        base = root / folder
        if base.is_dir():
            for p in base.rglob("*"):
                if p.is_file() and "__pycache__" not in p.parts:
                    found.add(p.relative_to(root).as_posix())
    return found


def check(root: Path, files: dict[str, str]) -> str:
    """Unified diff between the disk and ``files`` ('' when in sync)."""
    chunks = []
    for rel in sorted(set(files) | _generated_on_disk(root)):
        path = root / rel
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = files.get(rel, "")
        if old != new:
            chunks.extend(difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True),
                fromfile=f"a/{rel} (committed)", tofile=f"b/{rel} (regenerated)",
            ))
    return "".join(chunks)


def write(root: Path, files: dict[str, str]) -> list[str]:
    """Write changed files atomically; remove stale ones. Returns what changed."""
    changed = []
    for rel in sorted(files):
        path = root / rel
        text = files[rel]
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
        changed.append(rel)
    for rel in sorted(_generated_on_disk(root) - set(files)):
        (root / rel).unlink()
        changed.append(rel)
    return changed


def main(root: Path, *, check_only: bool, quiet: bool = False) -> int:
    log = None if quiet else (lambda msg: print(msg, file=sys.stderr))
    start = time.perf_counter()
    files = render_all(root, log=log)
    if check_only:
        diff = check(root, files)
        if diff:
            sys.stdout.write(diff)
            print("\nGenerated files are out of date: run `make regenerate` and commit.",
                  file=sys.stderr)
            return 1
        if log:
            log(f"generated files are up to date ({time.perf_counter() - start:.1f} s)")
        return 0
    changed = write(root, files)
    if log:
        for rel in changed:
            log(f"  wrote {rel}")
        log(f"{len(changed)} of {len(files)} generated files changed "
            f"({time.perf_counter() - start:.1f} s)")
    return 0
