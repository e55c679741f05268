"""The README's Python snippets run as written (on the digits data for X and labels)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)


def test_the_readme_has_python_snippets():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"snippet {n}" for n in range(len(BLOCKS))])
def test_readme_snippet_runs(block):
    from sklearn.datasets import load_digits

    digits = load_digits()
    namespace = {"X": digits.data[:256] / 16.0, "labels": digits.target[:256]}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 -- the snippet under test
