"""Backend selection, the fallback to NumPy, and the two backends' answers side by side.

Tolerance (``assert_agree``): the Numba loops are compiled with the fastmath
flags ``reassoc``/``contract``/``arcp`` (numba_printer.FASTMATH), so a
reduction of n terms is summed in another order (vectorized partial sums),
``a*b + c`` may become one fused multiply-add, and ``x / y`` may become
``x * (1/y)``. Recursive summation of n terms in any order is within
``(n - 1) u sum |terms|`` of the exact sum (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., eq. 4.4), u the unit roundoff; the elementwise
functions (exp, log, erf of LLVM's math library against NumPy's) differ by a
few ulp, and each kernel chains a few such steps. So the two backends must
agree within ``16 (n + 4) u`` relative to the scale of the result (max(1,
max |reference|)), n the longest reduction: 16 covers the short chains of
rounded steps between the reduction and the result, and is far below any
real error (a wrong index or a missing term is off by O(1)).
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

import backprop_derived
from backprop_derived import backend
from backprop_derived._generated import ACTIVATIONS, OUTPUTS
from backprop_derived._generated import norm as numpy_norm

numba = pytest.importorskip("numba")

# The layer tests of test_layer_norm.py and test_layer_simple.py, collected here
# once more under each backend (the fixture below sets it).
from test_layer_norm import (  # noqa: E402, F401
    test_batch_norm_compact_gradient_sums_to_zero_over_the_batch,
    test_batch_norm_gradients_match_central_differences,
    test_evaluation_mode_uses_running_statistics_and_their_gradient,
    test_float32_stays_float32,
    test_layer_norm_gradients_match_central_differences,
    test_layer_norm_on_a_single_vector,
    test_running_statistics_follow_pytorch,
)


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def each_backend(request, monkeypatch):
    """Every test here runs with each backend set explicitly, and leaves the default."""
    monkeypatch.delenv(backend.ENV, raising=False)
    monkeypatch.delenv(backend.CACHE_ENV, raising=False)
    backend._reset()
    backend.set_backend(request.param)
    yield request.param
    backend._reset()


def unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2


def assert_agree(name, got, expected, n, dtype):
    tol = 16 * (n + 4) * unit_roundoff(dtype)
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, name
    scale = max(1.0, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(got.astype(np.float64) - expected))) / scale
    assert error <= tol, f"{name}: error {error:.2e} > {tol:.2e} (n = {n}, {np.dtype(dtype)})"


# -- selection ---------------------------------------------------------------------------

def test_the_package_reports_the_active_backend(each_backend):
    assert backprop_derived.backend() == each_backend
    assert backend.active() == each_backend
    other = "numpy" if each_backend == "numba" else "numba"
    assert backprop_derived.set_backend(other) == other
    assert backprop_derived.backend() == other


def test_auto_prefers_numba_when_it_imports(monkeypatch):
    backend._reset()
    monkeypatch.setenv(backend.ENV, "auto")
    assert backend.active() == "numba"
    backend._reset()
    monkeypatch.setenv(backend.ENV, "NumPy")  # case and spaces do not matter
    assert backend.active() == "numpy"


@pytest.mark.parametrize("bad", ["torch", "", "numpy,numba"])
def test_a_bad_environment_value_names_the_allowed_ones(monkeypatch, bad):
    backend._reset()
    monkeypatch.setenv(backend.ENV, bad)
    with pytest.raises(ValueError, match=r"numpy, numba, auto.*BACKPROP_DERIVED_BACKEND"):
        backend.active()


@pytest.mark.parametrize("bad", ["cuda", None, 1])
def test_set_backend_refuses_an_unknown_name_and_keeps_the_old_one(each_backend, bad):
    with pytest.raises(ValueError, match="numpy, numba, auto"):
        backend.set_backend(bad)
    assert backend.active() == each_backend


def test_an_unknown_module_or_kernel_is_named():
    with pytest.raises(ValueError, match="no generated kernel module 'nrom'"):
        backend.kernels("nrom")
    with pytest.raises(AttributeError, match="layer_norm_forwards"):
        backend.kernels("norm").layer_norm_forwards  # noqa: B018


# -- the fallback --------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [ImportError("No module named 'numba'"),
                                     OSError("could not load libllvmlite.so")])
def test_a_missing_or_broken_numba_gives_numpy_and_one_warning(monkeypatch, failure):
    real = importlib.import_module

    def import_module(name, *args):
        if name == "numba":
            raise failure
        return real(name, *args)

    monkeypatch.setattr(backend.importlib, "import_module", import_module)
    backend._reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend.set_backend("numba") == "numpy"  # asked for, not usable: no error
        assert backend.set_backend("auto") == "numpy"
        kernel = backend.kernels("norm").layer_norm_forward
        backend.kernels("simple").dropout_forward  # noqa: B018
    assert kernel is numpy_norm.layer_norm_forward
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "Numba is not usable" in messages[0] and str(failure) in messages[0]


def test_kernels_fall_back_one_by_one():
    fused = importlib.import_module("backprop_derived._generated.fused.norm")
    assert backend.choose("norm", "layer_norm_forward", "numba") is fused.layer_norm_forward
    assert backend.choose("norm", "layer_norm_forward", "numpy") is (
        numpy_norm.layer_norm_forward)
    # no fused module at all (the GEMMs of attention): NumPy's
    attention = importlib.import_module("backprop_derived._generated.attention")
    assert backend.choose("attention", "attention_backward", "numba") is (
        attention.attention_backward)
    # printed, but measured slower than NumPy: NumPy's, as the table says
    for module, name in backend.NUMPY_IS_FASTER:
        assert hasattr(backend.numba_kernels(module), name), (module, name)
        numpy_module = importlib.import_module(f"backprop_derived._generated.{module}")
        assert backend.choose(module, name, "numba") is getattr(numpy_module, name)
    simple = importlib.import_module("backprop_derived._generated.simple")
    # not printed (a scatter-add): NumPy's, and the module says why
    assert "embedding_backward" in backend.numba_kernels("simple").NOT_PRINTED
    assert backend.choose("simple", "embedding_backward", "numba") is (
        simple.embedding_backward)


def test_the_kernels_kept_serial_exist_and_have_independent_rows():
    """NOT_PARALLEL names printed kernels whose row loop prange could take (no state
    carried from row to row: no column accumulator), measured and kept serial."""
    for module, name in backend.NOT_PARALLEL:
        fused = backend.numba_kernels(module)
        assert hasattr(fused, name), (module, name)
        from pathlib import Path

        text = Path(fused.__file__).read_text()
        start = f"def _{name}_loops(" if f"def _{name}_loops(" in text else f"def {name}("
        body = text[text.index(start):].split("\n\n\n")[0]  # the loops, wrapped or not
        assert "for _i in range(_m):" in body and "[_j] +=" not in body, (module, name)


def test_layers_follow_set_backend(each_backend):
    from backprop_derived.layers import norm as norm_layers

    kernel = norm_layers.norm.layer_norm_forward
    assert (kernel is numpy_norm.layer_norm_forward) == (each_backend == "numpy")


def test_the_cache_directory_reaches_numba(monkeypatch, tmp_path):
    monkeypatch.setenv(backend.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("NUMBA_CACHE_DIR", "")
    backend._reset()
    assert backend.set_backend("numba") == "numba"
    import os

    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path)
    assert numba.core.config.CACHE_DIR == str(tmp_path)
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    numba.core.config.reload_config()


# -- the same answers ----------------------------------------------------------------------

def _numba_or_skip(module, name):
    """The printed fused kernel (in use or not: NUMPY_IS_FASTER is about speed, not answers)."""
    fused = backend.numba_kernels(module)
    if fused is None or not hasattr(fused, name):
        pytest.skip(f"{module}.{name} has no Numba kernel")
    return getattr(fused, name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(37, 64), (3, 5)])
def test_norm_kernels_agree(dtype, shape):
    rng = np.random.default_rng(11)
    x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    gamma = (1 + 0.5 * rng.normal(size=shape[1])).astype(dtype)
    beta = rng.normal(size=shape[1]).astype(dtype)
    m, n = shape
    for name, axis_length in (("layer_norm", n), ("batch_norm", m)):
        fwd = _numba_or_skip("norm", f"{name}_forward")
        ref = getattr(numpy_norm, f"{name}_forward")(x, gamma, beta, 1e-5)
        for k, (g, r) in enumerate(zip(fwd(x, gamma, beta, 1e-5), ref, strict=True)):
            assert_agree(f"{name}_forward[{k}]", g, r, axis_length, dtype)
        _, _, var, xhat = ref
        bwd = _numba_or_skip("norm", f"{name}_backward")
        got = bwd(dy, xhat, var, gamma, 1e-5)
        ref = getattr(numpy_norm, f"{name}_backward")(dy, xhat, var, gamma, 1e-5)
        for k, (g, r) in enumerate(zip(got, ref, strict=True)):
            assert_agree(f"{name}_backward[{k}]", g, r, max(m, n), dtype)
    mu, var = x.mean(axis=0), x.var(axis=0)
    for name, args in (("batch_norm_eval_forward", (x, mu, var, gamma, beta, 1e-5)),
                       ("batch_norm_eval_backward", (dy, x, var, gamma, 1e-5))):
        got = _numba_or_skip("norm", name)(*args)
        for k, (g, r) in enumerate(zip(got, getattr(numpy_norm, name)(*args), strict=True)):
            assert_agree(f"{name}[{k}]", g, r, m, dtype)


# A few of each kind: compiling every activation and loss kernel for two dtypes
# would take minutes (about 0.4 s each); the printer prints them all alike.
ACTIVATION_CASES = ["sigmoid", "tanh", "relu", "gelu", "softplus", "elu"]


@pytest.mark.parametrize("name", ACTIVATION_CASES)
def test_activation_kernels_agree(name):
    entry = ACTIVATIONS[name]
    rng = np.random.default_rng(5)
    z = rng.normal(scale=3, size=(16, 7))
    z[0, :3] = (-800.0, 0.0, 800.0)  # the stable forms: no overflow at either end
    a = entry.forward(z, np.empty_like(z), [np.empty_like(z) for _ in range(entry.scratch)])
    da = rng.normal(size=z.shape)
    scratch = [np.empty_like(z) for _ in range(entry.scratch)]
    for field, args in (("forward", (z,)), ("derivative", (a, z)), ("backward", (da, a, z))):
        reference = getattr(entry, field)
        if reference is None:
            continue
        fused = _numba_or_skip("activations", reference.__name__)
        expected = reference(*args, np.empty_like(z), scratch).copy()
        out = np.full_like(z, np.nan)
        assert fused(*args, out, scratch) is out
        assert_agree(f"{name} {field}", out, expected, 1, np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pair", [("softmax", "cross_entropy"),
                                  ("sigmoid", "binary_cross_entropy"),
                                  ("identity", "squared_error")])
def test_output_kernels_agree(pair, dtype):
    entry = OUTPUTS[pair]
    rng = np.random.default_rng(8)
    m, k = 33, 10
    z = rng.normal(scale=4, size=(m, k)).astype(dtype)
    if pair[1] == "cross_entropy":
        y = np.eye(k, dtype=dtype)[rng.integers(0, k, m)]
    else:
        y = rng.uniform(size=(m, k)).astype(dtype)
    act = ACTIVATIONS[pair[0]]
    a = act.forward(z, np.empty_like(z), [np.empty_like(z) for _ in range(act.scratch)])
    scratch = [np.empty_like(z) for _ in range(entry.scratch)]
    value = _numba_or_skip("losses", entry.value.__name__)(a, z, y, m)
    assert_agree("value", np.asarray(value, dtype), np.asarray(entry.value(a, z, y, m)),
                 m * k, dtype)
    delta = _numba_or_skip("losses", entry.delta.__name__)
    out = np.empty_like(z)
    delta(a, z, y, m, out, scratch)
    assert_agree("delta", out, entry.delta(a, z, y, m, np.empty_like(z), scratch), k, dtype)
    if entry.fused is not None:
        fused = _numba_or_skip("losses", entry.fused.__name__)
        rows = [np.empty((m, 1), dtype) for _ in range(entry.rows)]
        units, transposed = np.ones((k, 1), dtype), np.empty((k, m), dtype)
        got_a, got_d, ref_a, ref_d = (np.empty_like(z) for _ in range(4))
        loss = fused(z, y, m, got_a, got_d, scratch, rows, units, transposed)
        ref = entry.fused(z, y, m, ref_a, ref_d, scratch, rows, units, transposed)
        assert_agree("fused loss", np.asarray(loss, dtype), np.asarray(ref), m * k, dtype)
        assert_agree("fused a", got_a, ref_a, k, dtype)
        assert_agree("fused delta", got_d, ref_d, k, dtype)


def test_network_gradients_agree_across_backends():
    """A whole Network built under each backend: the same loss and gradients."""
    from backprop_derived import Network

    rng = np.random.default_rng(2)
    X, labels = rng.normal(size=(40, 6)), rng.integers(0, 4, 40)
    results = {}
    for name in ("numpy", "numba"):
        backend.set_backend(name)
        net = Network([6, 9, 4], ["tanh", "softmax"], seed=3)
        results[name] = net.gradients(X, labels)
    (loss0, dW0, db0), (loss1, dW1, db1) = results["numpy"], results["numba"]
    assert_agree("loss", np.float64(loss1), np.float64(loss0), 40 * 4, np.float64)
    for g, r in zip(dW1 + db1, dW0 + db0, strict=True):
        assert_agree("gradient", g, r, 40, np.float64)


def test_a_two_index_kernel_given_another_rank_runs_numpys():
    """Dropout takes any rank; its fused loops are two-index, so a 3-d batch goes to NumPy."""
    simple = importlib.import_module("backprop_derived._generated.simple")
    fused = _numba_or_skip("simple", "dropout_forward")
    rng = np.random.default_rng(4)
    for shape in ((6, 5), (2, 3, 5), (7,)):
        x = rng.normal(size=shape)
        mask = (rng.random(shape) >= 0.3).astype(x.dtype)
        assert_agree(f"dropout {shape}", fused(x, mask, 0.3),
                     simple.dropout_forward(x, mask, 0.3), 1, np.float64)


# -- per model: backend.use and the models' backend= ------------------------------------------

def test_use_overrides_inside_and_restores_on_exit(each_backend):
    other = "numpy" if each_backend == "numba" else "numba"
    with backend.use(other) as name:
        assert name == other == backend.active() == backprop_derived.backend()
        with backend.use(each_backend):
            assert backend.active() == each_backend
        assert backend.active() == other
        with backend.use(None):  # None: no change
            assert backend.active() == other
    assert backend.active() == each_backend
    with pytest.raises(ValueError, match="backend must be one of numpy, numba, auto"):
        backend.use("cuda")
    assert backend.active() == each_backend


def test_use_is_per_thread(each_backend):
    import threading

    other = "numpy" if each_backend == "numba" else "numba"
    seen = []
    with backend.use(other):
        thread = threading.Thread(target=lambda: seen.append(backend.active()))
        thread.start()
        thread.join()
        assert backend.active() == other
    assert seen == [each_backend]  # a new thread starts from the global choice


class _Recording:
    """The layers' kernel lookups (``kernels("norm")``), each with the backend it ran on."""

    def __init__(self, kernels):
        self.kernels, self.seen = kernels, []

    def __getattr__(self, name):
        self.seen.append((name, backend.active()))
        return getattr(self.kernels, name)


@pytest.mark.parametrize("model_backend", ["numpy", "numba", None])
def test_a_sequential_runs_its_own_backend(each_backend, model_backend, monkeypatch):
    from backprop_derived import Sequential
    from backprop_derived import layers as L
    from backprop_derived.layers import norm as norm_layers

    recording = _Recording(norm_layers.norm)
    monkeypatch.setattr(norm_layers, "norm", recording)
    model = Sequential([L.Dense(5, 8, seed=0), L.LayerNorm(8), L.Activation("tanh"),
                        L.Dense(8, 3, seed=1), L.Activation("softmax")],
                       backend=model_backend)
    rng = np.random.default_rng(5)
    X, labels = rng.normal(size=(12, 5)), rng.integers(0, 3, 12)
    model.gradients(X, labels)
    model.predict(X)
    expected = model_backend or each_backend
    assert {name for name, _ in recording.seen} == {"layer_norm_forward", "layer_norm_backward"}
    assert {ran for _, ran in recording.seen} == {expected}
    assert backend.active() == each_backend  # the model's choice stays inside its passes
    fused = importlib.import_module("backprop_derived._generated.fused.losses")
    assert (model._kernels.out.fused is fused.cross_entropy__softmax_output) == (
        expected == "numba")  # the output pass: softmax and cross-entropy in one loop nest


def test_sequential_gradients_agree_across_model_backends():
    from backprop_derived import Sequential
    from backprop_derived import layers as L

    rng = np.random.default_rng(6)
    X, labels = rng.normal(size=(20, 5)), rng.integers(0, 3, 20)
    results = {}
    for name in ("numpy", "numba"):
        model = Sequential([L.Dense(5, 8, seed=0), L.BatchNorm(8), L.Activation("sigmoid"),
                            L.Dense(8, 3, seed=1), L.Activation("softmax")], backend=name)
        results[name] = model.gradients(X, labels)
    (loss0, g0), (loss1, g1) = results["numpy"], results["numba"]
    assert_agree("loss", np.float64(loss1), np.float64(loss0), 20 * 3, np.float64)
    for a, b in zip(g1, g0, strict=True):
        for key in b:
            assert_agree(key, a[key], b[key], 20, np.float64)


def test_a_network_takes_the_kernels_of_its_own_backend(each_backend):
    from backprop_derived import Network

    fused = importlib.import_module("backprop_derived._generated.fused.losses")
    for name, want in (("numpy", OUTPUTS["softmax", "cross_entropy"].fused),
                       ("numba", fused.cross_entropy__softmax_output)):
        net = Network([4, 3, 2], ["sigmoid", "softmax"], backend=name)
        assert net._output.fused is want, name
        sigmoid_is_numpys = net._acts[0].forward is ACTIVATIONS["sigmoid"].forward
        assert sigmoid_is_numpys == (name == "numpy")
    net = Network([4, 3, 2], ["sigmoid", "softmax"])  # None: the global choice
    assert (net._output.fused is fused.cross_entropy__softmax_output) == (
        each_backend == "numba")
    with pytest.raises(ValueError, match="backend must be one of"):
        Network([4, 3, 2], ["sigmoid", "softmax"], backend="fast")


def test_one_use_entered_from_two_threads_at_once():
    # A model holds one `use` and enters it on every pass. Thread 0 enters, then
    # thread 1; thread 0 leaves first: each must restore its own choice.
    import threading

    block = backend.use("numpy")
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def run(n):
        try:
            if n == 1:
                first_in.wait(timeout=10)
            with block:
                assert backend.active() == "numpy"
                if n == 0:
                    first_in.set()
                    second_in.wait(timeout=10)
                else:
                    second_in.set()
                    first_out.wait(timeout=10)
            if n == 0:
                first_out.set()
        except Exception as err:  # reported below, with the thread's error
            errors.append(err)
            for event in (first_in, second_in, first_out):  # release the other thread
                event.set()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors, errors
