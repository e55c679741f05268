"""Helpers shared by the site tests: building a repository the way `make site` does."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 900
# The test build names a repository (mkdocs.yml reads it from SITE_REPO_URL),
# so that its edit and source links exist and can be checked against this
# checkout's files; the default build links to no repository.
TEST_REPO_URL = "https://github.com/example-owner/backprop-derived"


def mkdocs_build(repo: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the strict build of `repo` the way `make site` does, into `site_dir`."""
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"
    # The execution cache would hide a change in an imported module; the tests
    # always execute every page.
    env["MKDOCS_JUPYTER_CACHE"] = "false"
    env["SITE_REPO_URL"] = TEST_REPO_URL
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )


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


