import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def output_deltas():
    """The derived output deltas of every (activation, loss) pair, index form."""
    namespace = runpy.run_path(str(ROOT / "derivations" / "07_losses_x_activations.py"),
                               run_name="__derivation__")
    return namespace["DELTAS"]
