"""Conv1d and Conv2d: generated kernels against plain loops and central differences.

The reference forward maps below are the definition written as loops over
output positions, independent of the generated code; the gradients are
checked against central differences of ``sum(dY * Y)``, whose gradient with
respect to any input or parameter is that input's gradient by definition.
"""

import itertools

import numpy as np
import pytest
import sympy as sp

from backprop_derived.layers import Conv1d, Conv2d

EPS = 1e-6


def conv1d_loops(X, W, b):
    N, _, L = X.shape
    C_out, _, k = W.shape
    Y = np.empty((N, C_out, L - k + 1))
    for n, o, p in itertools.product(range(N), range(C_out), range(L - k + 1)):
        Y[n, o, p] = b[o] + np.sum(X[n, :, p:p + k] * W[o])
    return Y


def conv2d_loops(X, W, b):
    N, _, H, Wd = X.shape
    C_out, _, kh, kw = W.shape
    Y = np.empty((N, C_out, H - kh + 1, Wd - kw + 1))
    for n, o, p, q in itertools.product(range(N), range(C_out), range(H - kh + 1),
                                        range(Wd - kw + 1)):
        Y[n, o, p, q] = b[o] + np.sum(X[n, :, p:p + kh, q:q + kw] * W[o])
    return Y


def central_differences(f, array):
    """d f / d array by central differences, entry by entry (``array`` is perturbed in place)."""
    grad = np.empty_like(array)
    for idx in np.ndindex(array.shape):
        keep = array[idx]
        array[idx] = keep + EPS
        plus = f()
        array[idx] = keep - EPS
        minus = f()
        array[idx] = keep
        grad[idx] = (plus - minus) / (2 * EPS)
    return grad


def max_relative_error(got, want):
    return float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))


def check_gradients(layer, X, reference, tol=1e-8):
    rng = np.random.default_rng(1)
    Y = layer.forward(X)
    np.testing.assert_allclose(Y, reference(X, layer.params["W"], layer.params["b"]),
                               rtol=1e-12, atol=1e-12)
    dY = rng.normal(size=Y.shape)
    dX = layer.backward(dY)
    X = X.copy()

    def objective():
        return float(np.sum(dY * reference(X, layer.params["W"], layer.params["b"])))

    errors = {"X": max_relative_error(dX, central_differences(objective, X))}
    for key in ("W", "b"):
        errors[key] = max_relative_error(layer.grads[key],
                                         central_differences(objective, layer.params[key]))
    assert max(errors.values()) < tol, errors
    return errors


CONV1D_CASES = [  # (N, C_in, C_out, L, k): k = 1 and k = L included
    (2, 3, 4, 7, 3), (1, 1, 1, 5, 1), (3, 2, 2, 4, 4), (2, 1, 3, 6, 2), (1, 4, 1, 9, 5)]


@pytest.mark.parametrize("N, C_in, C_out, L, k", CONV1D_CASES)
def test_conv1d_gradients_match_central_differences(N, C_in, C_out, L, k):
    layer = Conv1d(C_in, C_out, k, seed=N + L)
    X = np.random.default_rng(L * k).normal(size=(N, C_in, L))
    check_gradients(layer, X, conv1d_loops)


CONV2D_CASES = [  # (N, C_in, C_out, H, W, kh, kw)
    (2, 2, 3, 5, 4, 2, 3), (1, 1, 1, 3, 3, 1, 1), (1, 2, 2, 3, 4, 3, 4), (2, 1, 2, 4, 3, 4, 1)]


@pytest.mark.parametrize("N, C_in, C_out, H, W, kh, kw", CONV2D_CASES)
def test_conv2d_gradients_match_central_differences(N, C_in, C_out, H, W, kh, kw):
    layer = Conv2d(C_in, C_out, kh, kw, seed=H * W)
    X = np.random.default_rng(kh + kw).normal(size=(N, C_in, H, W))
    check_gradients(layer, X, conv2d_loops)


def test_random_shapes():
    rng = np.random.default_rng(7)
    for _ in range(6):
        L = int(rng.integers(1, 9))
        k = int(rng.integers(1, L + 1))
        N, C_in, C_out = (int(v) for v in rng.integers(1, 4, size=3))
        layer = Conv1d(C_in, C_out, k, seed=int(rng.integers(100)))
        check_gradients(layer, rng.normal(size=(N, C_in, L)), conv1d_loops)


@pytest.mark.parametrize("make, shape", [
    (lambda dt: Conv1d(3, 2, 3, dtype=dt, seed=0), (4, 3, 10)),
    (lambda dt: Conv2d(2, 3, 2, 3, dtype=dt, seed=0), (2, 2, 6, 5)),
])
def test_float32_stays_float32(make, shape):
    rng = np.random.default_rng(3)
    X = rng.normal(size=shape)
    single, double = make(np.float32), make(np.float64)
    Y32, Y64 = single.forward(X.astype(np.float32)), double.forward(X)
    dY = rng.normal(size=Y64.shape)
    dX32, dX64 = single.backward(dY.astype(np.float32)), double.backward(dY)
    assert Y32.dtype == dX32.dtype == np.float32
    assert all(single.grads[k].dtype == np.float32 for k in ("W", "b"))
    assert all(single.params[k].dtype == np.float32 for k in ("W", "b"))
    np.testing.assert_allclose(Y32, Y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dX32, dX64, rtol=1e-4, atol=1e-5)
    for k in ("W", "b"):
        np.testing.assert_allclose(single.grads[k], double.grads[k], rtol=1e-4, atol=1e-4)


def test_parameters_shapes_and_initialization():
    layer = Conv2d(3, 5, 2, 4, seed=0)
    assert layer.params["W"].shape == (5, 3, 2, 4) and layer.params["b"].shape == (5,)
    bound = 1 / np.sqrt(3 * 2 * 4)
    assert np.abs(layer.params["W"]).max() <= bound and np.abs(layer.params["b"]).max() <= bound
    again = Conv2d(3, 5, 2, 4, seed=0)
    np.testing.assert_array_equal(layer.params["W"], again.params["W"])
    assert Conv1d(2, 2, 3, seed=1).params["W"].shape == (2, 2, 3)


@pytest.mark.parametrize("X, message", [
    (np.zeros((2, 3)), "3 dimensions"),
    (np.zeros((2, 3, 5, 1)), "3 dimensions"),
    (np.zeros((2, 4, 5)), "4 channels"),
    (np.zeros((2, 3, 2)), "larger than the input"),
    (np.full((2, 3, 5), np.nan), "NaN or inf"),
    (np.array([[[1.0, np.inf, 0, 0, 0]] * 3]), "NaN or inf"),
    (np.zeros((2, 3, 5), dtype=object), "numeric"),
])
def test_conv1d_bad_inputs(X, message):
    with pytest.raises(ValueError, match=message):
        Conv1d(3, 2, 3).forward(X)


def test_conv2d_bad_inputs_and_upstream():
    layer = Conv2d(2, 2, 3, 2)
    with pytest.raises(ValueError, match="4 dimensions"):
        layer.forward(np.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match="larger than the input"):
        layer.forward(np.zeros((1, 2, 2, 5)))
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 3, 4)))
    layer.forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        layer.backward(np.full((1, 2, 3, 4), np.inf))


@pytest.mark.parametrize("args", [(0, 2, 3), (2, 2, 0), (2, 2.5, 3), (True, 2, 3)])
def test_bad_sizes(args):
    with pytest.raises(ValueError, match="positive integer"):
        Conv1d(*args)
    with pytest.raises(ValueError, match="dtype"):
        Conv1d(2, 2, 2, dtype=np.int32)


def test_eval_mode_keeps_nothing():
    layer = Conv1d(1, 1, 2)
    layer.forward(np.ones((1, 1, 4)), train=False)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.ones((1, 1, 3)))


# -- the printer of symbolic/conv_forms.py against the plain index form -----------

def _index_form_values(expr, indices, shape, arrays, sizes):
    """Entries of ``expr`` evaluated by SymPy, for every value of ``indices``."""
    out = np.empty(shape)
    by_label = {str(k): v for k, v in arrays.items()}
    for idx in np.ndindex(shape):
        e = expr.xreplace(sizes).xreplace(dict(zip(indices, idx, strict=True))).doit()
        e = e.replace(lambda x: isinstance(x, sp.Indexed),
                      lambda x: sp.Float(by_label[str(x.base.label)][tuple(map(int, x.indices))]))
        out[idx] = float(e)
    return out


def test_printed_contraction_matches_the_index_form():
    from sympy import IndexedBase, Piecewise, Sum

    from backprop_derived.symbolic.conv_forms import lower
    from backprop_derived.symbolic.index_printer import Assignment
    from backprop_derived.symbolic.printers import ArrayPrinter

    N, C, L, k = sp.symbols("N C L k", integer=True, positive=True)
    n, c, p, j, q = sp.symbols("n c p j q", integer=True)
    X = IndexedBase("X", shape=(N, C, L))
    V = IndexedBase("V", shape=(C, k))
    P = IndexedBase("P", shape=(N, C, L + 2 * k - 2))
    F = IndexedBase("F", shape=(C, k))
    Y = IndexedBase("Y", shape=(N, L + k - 1))
    pad = Assignment("P", (n, c, q), Piecewise(
        (X[n, c, q - (k - 1)], (q >= k - 1) & (q <= L + k - 2)), (0, True)))
    flip = Assignment("F", (c, j), V[c, k - 1 - j])
    full = Assignment("Y", (n, p), 2 * Sum(P[n, c, p + j] * F[c, j], (c, 0, C - 1),
                                             (j, 0, k - 1)))
    code = ArrayPrinter().doprint(lower(full, Y.shape, [pad, flip]))
    assert code == ("2*numpy.tensordot(v[:, ::-1], "
                    "numpy.lib.stride_tricks.sliding_window_view(numpy.pad(x, ((0, 0), (0, 0), "
                    "(v.shape[1] - 1, v.shape[1] - 1))), v.shape[1], axis=2), axes=((0, 1), (1, 3)))")
    rng = np.random.default_rng(0)
    sizes = {N: 2, C: 2, L: 4, k: 3}
    x, v = rng.normal(size=(2, 2, 4)), rng.normal(size=(2, 3))
    got = eval(code, {"numpy": np, "x": x, "v": v})
    plain = full.expr.xreplace({P[n, c, p + j]: pad.expr.xreplace({q: p + j}),
                                F[c, j]: flip.expr})
    want = _index_form_values(plain, (n, p), (2, 6), {"X": x, "V": v}, sizes)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_canonical_sums_prove_reindexing_and_refuse_a_shifted_range():
    from sympy import IndexedBase, Piecewise, Sum

    from backprop_derived.symbolic.conv_forms import prove_reindexed

    L, k = sp.symbols("L k", integer=True, positive=True)
    w, p, j = sp.symbols("w p j", integer=True)
    A = IndexedBase("A", shape=(L - k + 1,))
    B = IndexedBase("B", shape=(k,))
    ranges = {w: (0, L - 1)}
    by_p = Sum(Piecewise((A[p] * B[w - p], (w - p >= 0) & (w - p <= k - 1)), (0, True)),
               (p, 0, L - k))
    by_j = Sum(Piecewise((A[w - j] * B[j], (w - j >= 0) & (w - j <= L - k)), (0, True)),
               (j, 0, k - 1))
    assert prove_reindexed(by_p, by_j, ranges)
    off_by_one = Sum(Piecewise((A[w - j] * B[j], (w - j >= 0) & (w - j < L - k)), (0, True)),
                     (j, 0, k - 1))
    assert not prove_reindexed(by_p, off_by_one, ranges)
    assert not prove_reindexed(by_p, 2 * by_j, ranges)


def test_chain_rule_chain_proves_the_engine_and_refuses_a_wrong_edge():
    import dataclasses

    from backprop_derived.symbolic import catalog
    from backprop_derived.symbolic.checked import StepNotVerified
    from backprop_derived.symbolic.conv_forms import chain_rule_chain
    from backprop_derived.symbolic.engine import backward

    g = backward(catalog.CONV1D, [catalog.CONV1D_X])[catalog.CONV1D_X]
    chain = chain_rule_chain(g, catalog.CONV1D, catalog.CONV1D_X, "deltas summed")
    assert chain.steps[-1].proof == "structural"
    # the window's last position dropped: w - j < L - k instead of <=
    (pw,) = g.expr.atoms(sp.Piecewise)
    (then, cond), rest = pw.args
    short = cond.replace(lambda x: isinstance(x, sp.GreaterThan),
                         lambda x: sp.StrictGreaterThan(x.lhs, x.rhs))
    wrong = dataclasses.replace(g, expr=g.expr.xreplace({pw: sp.Piecewise((then, short), rest)}))
    assert wrong.expr != g.expr
    with pytest.raises(StepNotVerified):
        chain_rule_chain(wrong, catalog.CONV1D, catalog.CONV1D_X, "deltas summed")


def test_generated_kernels_directly_against_plain_sums():
    """Each kernel of _generated/conv.py against the sums written as loops over positions."""
    from backprop_derived._generated import conv

    rng = np.random.default_rng(11)
    N, C_in, C_out, L, k = 2, 3, 2, 7, 3
    X, W, b = rng.normal(size=(N, C_in, L)), rng.normal(size=(C_out, C_in, k)), rng.normal(
        size=C_out)
    dY = rng.normal(size=(N, C_out, L - k + 1))
    dW, dX = np.zeros_like(W), np.zeros_like(X)
    for p in range(L - k + 1):
        dW += np.einsum("ncj,no->ocj", X[:, :, p:p + k], dY[:, :, p])
        dX[:, :, p:p + k] += np.einsum("no,ocj->ncj", dY[:, :, p], W)
    close = {"rtol": 1e-13, "atol": 1e-13}
    np.testing.assert_allclose(conv.conv1d_forward(X, W, b, np.empty(dY.shape)),
                               conv1d_loops(X, W, b), **close)
    np.testing.assert_allclose(conv.conv1d_weight_gradient(X, dY, np.empty(W.shape)), dW, **close)
    np.testing.assert_allclose(conv.conv1d_bias_gradient(dY, np.empty(C_out)), dY.sum((0, 2)),
                               **close)
    np.testing.assert_allclose(conv.conv1d_input_gradient(dY, W, np.empty(X.shape)), dX, **close)

    H, Wd, kh, kw = 5, 4, 2, 3
    X = rng.normal(size=(N, C_in, H, Wd))
    W = rng.normal(size=(C_out, C_in, kh, kw))
    dY = rng.normal(size=(N, C_out, H - kh + 1, Wd - kw + 1))
    dW, dX = np.zeros_like(W), np.zeros_like(X)
    for p, q in np.ndindex(dY.shape[2:]):
        dW += np.einsum("ncij,no->ocij", X[:, :, p:p + kh, q:q + kw], dY[:, :, p, q])
        dX[:, :, p:p + kh, q:q + kw] += np.einsum("no,ocij->ncij", dY[:, :, p, q], W)
    np.testing.assert_allclose(conv.conv2d_forward(X, W, b, np.empty(dY.shape)),
                               conv2d_loops(X, W, b), **close)
    np.testing.assert_allclose(conv.conv2d_weight_gradient(X, dY, np.empty(W.shape)), dW, **close)
    np.testing.assert_allclose(conv.conv2d_bias_gradient(dY, np.empty(C_out)),
                               dY.sum((0, 2, 3)), **close)
    np.testing.assert_allclose(conv.conv2d_input_gradient(dY, W, np.empty(X.shape)), dX, **close)


# -- the statement printer of symbolic/conv_statements.py ------------------------

def _run_statements(expr, arrays, out):
    """Execute the statements ``IntoOut(expr)`` prints, writing into ``out``."""
    from backprop_derived.symbolic.conv_statements import IntoOut
    from backprop_derived.symbolic.printers import ArrayPrinter

    lines = IntoOut(expr).statements(ArrayPrinter(), "out")
    exec("\n".join(lines), {"numpy": np, "out": out, **arrays})  # noqa: S102
    return lines


def test_shifted_add_prints_the_engine_input_gradient_as_tap_adds():
    """The engine's raw dX (a tap sum under a range condition) as one matmul and slice-adds."""
    from backprop_derived.symbolic import catalog
    from backprop_derived.symbolic.conv_forms import lower
    from backprop_derived.symbolic.engine import backward
    from backprop_derived.symbolic.index_printer import Assignment

    g = backward(catalog.CONV1D, [catalog.CONV1D_X])[catalog.CONV1D_X]
    names = {"W": "w", "dY": "dy"}
    expr = lower(Assignment("dX", g.indices, g.expr), catalog.CONV1D_X.shape, (), names)
    sizes = {catalog.CONV_N: 2, catalog.CONV_C_IN: 2, catalog.CONV_C_OUT: 3, catalog.CONV_L: 6,
             catalog.CONV_K: 3}
    rng = np.random.default_rng(5)
    w, dy = rng.normal(size=(3, 2, 3)), rng.normal(size=(2, 3, 4))
    out = np.full((2, 2, 6), np.nan)
    lines = _run_statements(expr, {"w": w, "dy": dy}, out)
    assert any("numpy.matmul" in line for line in lines)
    assert not any("numpy.pad" in line or "copyto" in line for line in lines)
    want = _index_form_values(g.expr, g.indices, (2, 2, 6), {"W": w, "dY": dy}, sizes)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-13)
    # an edge one short is not the shifted entry's range: the printer refuses it
    (pw,) = g.expr.atoms(sp.Piecewise)
    (then, cond), rest = pw.args
    short = cond.replace(lambda x: isinstance(x, sp.GreaterThan),
                         lambda x: sp.StrictGreaterThan(x.lhs, x.rhs))
    wrong = g.expr.xreplace({pw: sp.Piecewise((then, short), rest)})
    with pytest.raises(NotImplementedError, match="range"):
        lower(Assignment("dX", g.indices, wrong), catalog.CONV1D_X.shape, (), names)


def test_statements_fall_back_to_the_expression_form():
    """A scaled contraction is not a statement form: ``numpy.copyto(out, ...)``, same values."""
    from sympy import IndexedBase, Sum

    from backprop_derived.symbolic.conv_forms import lower
    from backprop_derived.symbolic.index_printer import Assignment

    N, C, L, k = sp.symbols("N C L k", integer=True, positive=True)
    n, c, p, j = sp.symbols("n c p j", integer=True)
    X, V = IndexedBase("X", shape=(N, C, L)), IndexedBase("V", shape=(C, k))
    valid = Assignment("Y", (n, p), 2 * Sum(X[n, c, p + j] * V[c, j], (c, 0, C - 1),
                                              (j, 0, k - 1)))
    rng = np.random.default_rng(2)
    x, v = rng.normal(size=(2, 3, 6)), rng.normal(size=(3, 2))
    out = np.empty((2, 5))
    lines = _run_statements(lower(valid, (N, L - k + 1)), {"x": x, "v": v}, out)
    assert len(lines) == 1 and lines[0].startswith("numpy.copyto(out, ")
    np.testing.assert_allclose(out, 2 * conv1d_loops(x, v[None], np.zeros(1))[:, 0], rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_generated_kernels_into_non_contiguous_out(dtype):
    """``out`` seen with fewer axes (``out.reshape``) is a copy when ``out`` is not
    contiguous; the kernels copy back, so any ``out`` gets the result."""
    from backprop_derived._generated import conv

    rng = np.random.default_rng(4)
    X, W = rng.normal(size=(3, 2, 5, 6)).astype(dtype), rng.normal(size=(4, 2, 2, 3)).astype(dtype)
    b, dY = rng.normal(size=4).astype(dtype), rng.normal(size=(3, 4, 4, 4)).astype(dtype)

    def fortran(shape):
        return np.empty(shape[::-1], dtype).T

    for name, args, shape in (("forward", (X, W, b), dY.shape), ("weight_gradient", (X, dY), W.shape),
                              ("input_gradient", (dY, W), X.shape),
                              ("bias_gradient", (dY,), b.shape)):
        kernel = getattr(conv, f"conv2d_{name}")
        want = kernel(*args, np.empty(shape, dtype))
        got = kernel(*args, fortran(shape))
        assert got.dtype == dtype and (got.ndim == 1 or not got.flags.c_contiguous)
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-13)
    X1, W1 = X[:, :, 0], W[:, :, 0]
    dY1 = rng.normal(size=(3, 4, 4)).astype(dtype)
    for name, args, shape in (("forward", (X1, W1, b), dY1.shape),
                              ("weight_gradient", (X1, dY1), W1.shape),
                              ("input_gradient", (dY1, W1), X1.shape)):
        kernel = getattr(conv, f"conv1d_{name}")
        np.testing.assert_allclose(kernel(*args, fortran(shape)),
                                   kernel(*args, np.empty(shape, dtype)),
                                   rtol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (6, 2, 1, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_sum_over_all_axes_but_one_as_products_with_ones(shape, dtype):
    """The bias gradient's printed form, for the kept axis anywhere (the kernels
    keep axis 1; the other positions are the same rule)."""
    from backprop_derived.symbolic.conv_statements import _sum_all_but

    x = np.random.default_rng(len(shape)).normal(size=shape).astype(dtype)
    for p in range(x.ndim):
        out = np.empty(shape[p], dtype)
        code = _sum_all_but("x", p, x.ndim, "out")
        exec(code, {"numpy": np, "x": x, "out": out})  # noqa: S102
        others = tuple(k for k in range(x.ndim) if k != p)
        np.testing.assert_allclose(out, x.astype(np.float64).sum(axis=others),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, err_msg=code)
