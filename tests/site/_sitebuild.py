"""Helpers shared by the site tests: building a repository the way `make site` does."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 900
# The test build names a repository (mkdocs.yml reads it from SITE_REPO_URL),
# so that its edit and source links exist and can be checked against this
# checkout's files; the default build links to no repository.
TEST_REPO_URL = "https://github.com/example-owner/backprop-derived"


def _build_command(repo: Path, site_dir: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"
    # The execution cache would hide a change in an imported module; the tests
    # always execute every page.
    env["MKDOCS_JUPYTER_CACHE"] = "false"
    env["SITE_REPO_URL"] = TEST_REPO_URL
    return [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)], env


def mkdocs_build(repo: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the strict build of `repo` the way `make site` does, into `site_dir`."""
    command, env = _build_command(repo, site_dir)
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, check=False)


class BackgroundBuild:
    """The same build, started now and collected later: the session starts it
    when it collects site tests, so that it runs on the second core while the
    math tests run on the first."""

    def __init__(self, repo: Path, site_dir: Path) -> None:
        command, env = _build_command(repo, site_dir)
        self.site_dir = site_dir
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self._process = subprocess.Popen(command, cwd=repo, env=env, stdout=self._log,
                                         stderr=subprocess.STDOUT, text=True)
        self._started = time.monotonic()
        self._result: subprocess.CompletedProcess[str] | None = None

    def result(self) -> subprocess.CompletedProcess[str]:
        if self._result is None:
            left = BUILD_TIMEOUT_S - (time.monotonic() - self._started)
            try:
                code = self._process.wait(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                self.stop()
                code = -9
            self._log.seek(0)
            self._result = subprocess.CompletedProcess(self._process.args, code,
                                                       stdout=self._log.read(), stderr="")
            self._log.close()
        return self._result

    def stop(self) -> None:
        """Kill the build if it still runs (an interrupted or failed-early session)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def output_tail(result: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    text = (result.stdout or "") + (result.stderr or "")
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class BuiltSite:
    path: Path
    result: subprocess.CompletedProcess[str]

    def pages(self) -> list[str]:
        """URL paths of every rendered page, e.g. '' and 'derivations/02_output_layer/'."""
        found = []
        for index in sorted(self.path.rglob("index.html")):
            rel = index.parent.relative_to(self.path).as_posix()
            found.append("" if rel == "." else rel + "/")
        return found


