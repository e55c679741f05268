"""The page "Add your own layer" works as written.

Its three files are taken from the page's code blocks: the derivation page
runs, its kernels are rendered by the code generator (as ``regenerate``
would write them) into a module, and the reader's layer class and check
script run against it. The check prints the largest difference from central
differences of each gradient; each must be small, and the model must learn.
"""

import contextlib
import io
import re
import runpy
import sys
import types

import pytest

import backprop_derived._generated as generated
from backprop_derived.symbolic.codegen import GENERATED_PACKAGE, render_modules, split_exports


@pytest.fixture
def page_files(root, tmp_path):
    text = (root / "docs" / "add-your-own-layer.md").read_text()
    files = dict(re.findall(r'```python title="([^"]+)"\n(.*?)```', text, flags=re.DOTALL))
    assert set(files) == {"derivations/15_dynamic_tanh.py", "my_layers.py",
                          "check_dynamic_tanh.py"}
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    return tmp_path


def test_the_walkthrough_derives_prints_and_trains(page_files, monkeypatch):
    with contextlib.redirect_stdout(io.StringIO()):
        exports = runpy.run_path(str(page_files / "derivations/15_dynamic_tanh.py"),
                                 run_name="__derivation__")["EXPORTS"]
    kernels, *_ = split_exports(exports)
    text = render_modules(kernels, [], [])[f"{GENERATED_PACKAGE}/dynamic_tanh.py"]
    assert "def dynamic_tanh_backward(dy, x, alpha, gamma):" in text  # as the page shows
    module = types.ModuleType("backprop_derived._generated.dynamic_tanh")
    exec(compile(text, "dynamic_tanh.py", "exec"), module.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(generated, "dynamic_tanh", module, raising=False)
    monkeypatch.syspath_prepend(str(page_files))
    monkeypatch.delitem(sys.modules, "my_layers", raising=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(page_files / "check_dynamic_tanh.py"), run_name="__main__")
    lines = out.getvalue().splitlines()
    errors = {line.split()[0]: float(line.split()[1]) for line in lines[:-1]}
    assert sorted(errors) == ["dX", "dalpha", "dbeta", "dgamma"]
    assert all(e < 1e-8 for e in errors.values()), errors  # central differences, h = 1e-6
    before, after = map(float, re.findall(r"[\d.]+", lines[-1]))
    assert after < before
