"""Dense, Activation, Dropout, Embedding and Residual on their own.

Gradients are checked against central differences (float64) of
``sum(dY * layer.forward(X))``, whose gradient with respect to any input or
parameter is by definition what ``backward(dY)`` returns or stores; the
forward passes are checked against plain NumPy written here (and the
catalog's SymPy expressions for the activations).
"""

import numpy as np
import pytest
import sympy as sp

from _finite_differences import assert_close, central_differences
from backprop_derived._generated import ACTIVATIONS
from backprop_derived.layers import Activation, Dense, Dropout, Embedding, Residual
from backprop_derived.symbolic import catalog

ELEMENTWISE = sorted(name for name, act in ACTIVATIONS.items() if act.elementwise)


def check_layer(make_layer, X, rng):
    """Input and parameter gradients of a layer against central differences.

    ``make_layer()`` returns the same layer each time (a fresh one with the
    same seed for dropout, so the mask is the same draw).
    """
    layer = make_layer()
    Y = layer.forward(X)
    dY = rng.normal(size=Y.shape)
    dX = layer.backward(dY)

    source = {key: p.copy() for key, p in layer.params.items()}

    def objective():
        probe = make_layer()
        for key, p in source.items():
            probe.params[key][...] = p
        return float(np.sum(dY * probe.forward(X)))

    if dX is not None:
        assert_close("dX", dX, central_differences(objective, X))
    for key in layer.params:
        assert_close(key, layer.grads[key], central_differences(objective, source[key]))
    return layer, dY, dX


# -- Dense and Activation -----------------------------------------------------------
def test_dense_any_rank():
    rng = np.random.default_rng(0)
    for shape in ((5, 3), (2, 4, 3), (2, 2, 3, 3)):
        X = rng.normal(size=shape)
        layer, _, _ = check_layer(lambda: Dense(3, 4, seed=1), X, rng)
        np.testing.assert_allclose(layer.forward(X),
                                   X @ layer.params["W"].T + layer.params["b"], rtol=1e-14)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_layer(name):
    rng = np.random.default_rng(len(name))
    X = rng.normal(size=(3, 2, 4))
    for kink in catalog.kinks(catalog.ACTIVATIONS[name]):  # keep away from kinks
        at = sp.lambdify(catalog.z, kink)(X)
        X = np.where(np.abs(at) < 1e-3, X + 0.01, X)
    layer, _, _ = check_layer(lambda: Activation(name), X, rng)
    reference = sp.lambdify(catalog.z, catalog.ACTIVATIONS[name], ["scipy", "numpy"])
    np.testing.assert_allclose(layer.forward(X), reference(X) * np.ones_like(X),
                               rtol=1e-12, atol=1e-14)
    assert layer.params == {} and layer.grads == {}


def test_softmax_is_only_an_output():
    layer = Activation("softmax")
    out = layer.forward(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(out.sum(axis=-1), 1.0)
    with pytest.raises(ValueError, match=r"Activation: softmax .* last layer of a Sequential"):
        layer.backward(np.ones((1, 3)))


def test_dense_and_activation_errors_name_the_layer():
    with pytest.raises(ValueError, match="Dense: X has 2 features"):
        Dense(3, 2).forward(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="Dense: X must have 2 dimensions"):
        Dense(3, 2).forward(np.zeros(3))
    with pytest.raises(ValueError, match="Dense: X must be numeric"):
        Dense(3, 2).forward(np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError, match="Dense: n_in must be a positive integer"):
        Dense(0, 2)
    with pytest.raises(ValueError, match="Dense: backward needs a forward"):
        Dense(3, 2).backward(np.zeros((1, 2)))
    layer = Dense(3, 2)
    layer.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="Dense: dY has shape \\(4, 3\\)"):
        layer.backward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="Activation: unknown activation 'relu6'"):
        Activation("relu6")
    with pytest.raises(ValueError, match="Activation: X contains NaN"):
        Activation("tanh").forward(np.array([np.nan]))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        Dense(2, 2, dtype=np.int32)


def test_dense_float32():
    layer = Dense(3, 2, dtype=np.float32, seed=0)
    Y = layer.forward(np.ones((4, 3)))
    dX = layer.backward(np.ones((4, 2), np.float32))
    assert Y.dtype == dX.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())


# -- Dropout --------------------------------------------------------------------------
def test_dropout_mask_semantics():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, 3, 5))
    layer = Dropout(0.4, seed=2)
    Y = layer.forward(X)
    mask = layer.mask
    assert mask.shape == X.shape and mask.dtype == np.float64
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(Y, X * mask / 0.6)
    dY = rng.normal(size=X.shape)
    np.testing.assert_array_equal(layer.backward(dY), dY * mask / 0.6)
    assert layer.params == {} and layer.grads == {}
    # a new mask at every training-mode forward, none in inference
    layer.forward(X)
    assert not np.array_equal(layer.mask, mask)
    np.testing.assert_array_equal(layer.forward(X, train=False), X)


def test_dropout_keeps_units_with_probability_one_minus_p():
    n = 200_000
    for p in (0.1, 0.5, 0.9):
        layer = Dropout(p, seed=3)
        layer.forward(np.ones(n))
        kept = layer.mask.mean()
        assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    layer = Dropout(0.0, seed=0)
    np.testing.assert_array_equal(layer.forward(np.arange(5.0)), np.arange(5.0))


def test_dropout_gradient_central_differences():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3, 4))
    check_layer(lambda: Dropout(0.5, seed=7), X, rng)


def test_dropout_is_reproducible_and_float32():
    a, b = Dropout(0.3, seed=5, dtype=np.float32), Dropout(0.3, seed=5, dtype=np.float32)
    X = np.ones((10, 10), np.float32)
    np.testing.assert_array_equal(a.forward(X), b.forward(X))
    assert a.mask.dtype == np.float32 and a.forward(X).dtype == np.float32


@pytest.mark.parametrize("p", [1, 1.0, -0.1, 1.5, "0.5", True, float("nan")])
def test_dropout_p_is_checked(p):
    with pytest.raises(ValueError, match="Dropout: p must be a number in \\[0, 1\\)"):
        Dropout(p)


# -- Embedding ------------------------------------------------------------------------
def test_embedding_forward_and_accumulated_gradient():
    rng = np.random.default_rng(5)
    layer = Embedding(6, 3, seed=1)
    ids = np.array([[1, 4, 1], [1, 0, 4]])  # id 1 three times, 4 twice, 2, 3, 5 never
    Y = layer.forward(ids)
    assert Y.shape == (2, 3, 3)
    np.testing.assert_array_equal(Y, layer.params["E"][ids])
    dY = rng.normal(size=Y.shape)
    assert layer.backward(dY) is None
    expected = np.zeros((6, 3))
    for pos in np.ndindex(ids.shape):  # the independent loop: += per occurrence
        expected[ids[pos]] += dY[pos]
    np.testing.assert_allclose(layer.grads["E"], expected, rtol=1e-15, atol=1e-15)
    assert np.all(layer.grads["E"][[2, 3, 5]] == 0)
    # `=` instead of `+=` would keep one row per id: not what backward returns
    assigned = np.zeros((6, 3))
    assigned[ids.ravel()] = dY.reshape(-1, 3)
    assert not np.allclose(layer.grads["E"], assigned)


def test_embedding_gradient_central_differences():
    rng = np.random.default_rng(6)
    ids = np.array([3, 3, 0, 2, 3])
    layer, _, _ = check_layer(lambda: Embedding(4, 2, seed=2), ids, rng)
    assert layer.grads["E"].shape == (4, 2)


def test_embedding_float32_and_unsigned_ids():
    layer = Embedding(5, 2, dtype=np.float32)
    Y = layer.forward(np.array([4, 0], dtype=np.uint8))
    layer.backward(np.ones((2, 2), np.float32))
    assert Y.dtype == layer.grads["E"].dtype == np.float32
    np.testing.assert_array_equal(layer.grads["E"].sum(axis=1), [2, 0, 0, 0, 2])


@pytest.mark.parametrize(("ids", "message"), [
    (np.array([0, 5]), "Embedding: id 5 out of range"),
    (np.array([-1, 2]), "Embedding: id -1 out of range"),
    (np.array([0.0, 1.0]), "Embedding: ids must be integers"),
    (np.array([True, False]), "Embedding: ids must be integers"),
    (np.array(["a"]), "Embedding: ids must be integers"),
    (np.zeros(0, dtype=int), "Embedding: ids is empty"),
])
def test_embedding_bad_ids(ids, message):
    with pytest.raises(ValueError, match=message):
        Embedding(5, 2).forward(ids)


def test_embedding_bad_upstream():
    layer = Embedding(5, 2)
    layer.forward(np.array([[1, 2]]))
    with pytest.raises(ValueError, match="Embedding: dY has shape \\(1, 3, 2\\)"):
        layer.backward(np.zeros((1, 3, 2)))


def loop_scatter_add(ids, dY, vocab):
    """The independent reference: one ``+=`` per position, in float64."""
    expected = np.zeros((vocab, dY.shape[-1]))
    for pos in np.ndindex(ids.shape):
        expected[ids[pos]] += dY[pos]
    return expected


@pytest.mark.parametrize("ids_shape", [(), (1,), (7,), (2, 3, 4), (1, 1, 5, 1)])
def test_embedding_ids_of_any_shape(ids_shape):
    rng = np.random.default_rng(len(ids_shape))
    layer = Embedding(5, 3, seed=3)
    ids = rng.integers(0, 5, ids_shape)
    Y = layer.forward(ids)
    assert Y.shape == (*ids_shape, 3)
    np.testing.assert_array_equal(Y, layer.params["E"][ids])
    dY = rng.normal(size=Y.shape)
    layer.backward(dY)
    np.testing.assert_allclose(layer.grads["E"], loop_scatter_add(ids, dY, 5),
                               rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64,
                                   np.uint8, np.uint16, np.uint32, np.uint64])
def test_embedding_integer_id_dtypes(dtype):
    rng = np.random.default_rng(8)
    ids = np.array([[3, 0, 3], [6, 3, 0]], dtype=dtype)
    layer = Embedding(7, 2, seed=4)
    dY = rng.normal(size=(2, 3, 2))
    np.testing.assert_array_equal(layer.forward(ids), layer.params["E"][ids.astype(np.intp)])
    layer.backward(dY)
    np.testing.assert_allclose(layer.grads["E"], loop_scatter_add(ids, dY, 7),
                               rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_one_id_repeated_many_times(dtype):
    """Every position names id 1: its row is the sum of all of dY, the others stay 0."""
    rng = np.random.default_rng(9)
    layer = Embedding(3, 4, dtype=dtype)
    ids = np.ones((50, 40), dtype=np.int64)
    layer.forward(ids)
    dY = rng.normal(size=(50, 40, 4)).astype(dtype)
    layer.backward(dY)
    dE = layer.grads["E"]
    assert dE.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dE[1], dY.astype(np.float64).sum(axis=(0, 1)), rtol=tol,
                               atol=tol)
    assert np.all(dE[[0, 2]] == 0)


def test_embedding_vocab_one_and_a_single_id():
    layer = Embedding(1, 3, seed=0)
    Y = layer.forward(np.zeros((2, 2), dtype=np.uint8))
    np.testing.assert_array_equal(Y, np.broadcast_to(layer.params["E"][0], (2, 2, 3)))
    layer.backward(np.arange(12.0).reshape(2, 2, 3))
    np.testing.assert_array_equal(layer.grads["E"], [[18.0, 22.0, 26.0]])
    layer = Embedding(4, 2, seed=0)
    layer.forward(np.array([2]))
    layer.backward(np.array([[1.5, -2.0]]))
    np.testing.assert_array_equal(layer.grads["E"], [[0, 0], [0, 0], [1.5, -2.0], [0, 0]])


def test_embedding_large_table_few_ids_and_strided_upstream():
    """10**5 rows and three ids; dY a non-contiguous view: the same sums."""
    rng = np.random.default_rng(10)
    layer = Embedding(100_000, 3, dtype=np.float32, seed=0)
    ids = np.array([99_999, 5, 99_999])
    layer.forward(ids)
    dY = rng.normal(size=(3, 6)).astype(np.float32)[:, ::2]
    assert not dY.flags.c_contiguous
    layer.backward(dY)
    dE = layer.grads["E"]
    assert dE.shape == (100_000, 3) and dE.dtype == np.float32
    np.testing.assert_allclose(dE[99_999], dY[0] + dY[2], rtol=1e-6)
    np.testing.assert_array_equal(dE[5], dY[1])
    assert np.count_nonzero(dE) == 6
    from backprop_derived._generated import simple  # the kernel itself, given the view

    np.testing.assert_array_equal(simple.embedding_backward(dY, ids, 100_000), dE)


def test_embedding_backward_kernel_refuses_ids_outside_the_table():
    """The generated kernel alone (the layer checks ids first): no write outside dE."""
    from backprop_derived._generated import simple

    dy = np.ones((2, 3))
    for ids in (np.array([0, 4]), np.array([-1, 0])):
        with pytest.raises(ValueError, match="index"):
            simple.embedding_backward(dy, ids, 4)


# -- Residual -------------------------------------------------------------------------
def test_residual_central_differences():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2, 3, 4))
    layer, dY, dX = check_layer(
        lambda: Residual(Dense(4, 5, seed=1), Activation("tanh"), Dense(5, 4, seed=2)), X, rng)
    assert sorted(layer.params) == ["0.W", "0.b", "2.W", "2.b"]
    inner = layer.layers
    np.testing.assert_allclose(
        layer.forward(X),
        X + np.tanh(X @ inner[0].params["W"].T + inner[0].params["b"]) @ inner[2].params["W"].T
        + inner[2].params["b"], rtol=1e-13)
    # the identity path: dX is dY plus what comes back through the inner layers
    dX_f = dY
    for sub in reversed(inner):
        dX_f = sub.backward(dX_f)
    np.testing.assert_allclose(dX, dY + dX_f, rtol=1e-14)
    assert not np.allclose(dX, dX_f)


def test_residual_identity_path_alone():
    """Inner layers with zero weights: Y = X, so dX must be dY (the mistake gives 0)."""
    dense = Dense(3, 3)
    dense.params["W"][...] = 0
    dense.params["b"][...] = 0
    layer = Residual(dense)
    X = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(layer.forward(X), X)
    dY = np.ones((2, 3))
    np.testing.assert_array_equal(layer.backward(dY), dY)


def test_residual_params_are_the_inner_arrays():
    dense = Dense(2, 2, seed=0)
    layer = Residual(dense, Activation("relu"))
    layer.params["0.W"] -= 1.0
    np.testing.assert_array_equal(layer.params["0.W"], dense.params["W"])


def test_residual_errors_name_the_layer():
    with pytest.raises(ValueError, match="Residual: the inner layers map shape \\(2, 4\\) "
                                         "to \\(2, 3\\)"):
        Residual(Dense(4, 3)).forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="Residual: needs at least one inner layer"):
        Residual()
    with pytest.raises(ValueError, match="Residual: inner layer 0 is not a Layer"):
        Residual(np.tanh)
    with pytest.raises(ValueError, match="Residual: inner layers mix dtypes"):
        Residual(Dense(2, 2), Dense(2, 2, dtype=np.float32))


def test_residual_float32():
    layer = Residual(Dense(3, 3, dtype=np.float32), Activation("relu", dtype=np.float32))
    Y = layer.forward(np.ones((2, 3)))
    assert Y.dtype == np.float32
    assert layer.backward(np.ones((2, 3), np.float32)).dtype == np.float32


# -- the gather and scatter-add behind the embedding kernels ----------------------------
def test_embedding_is_derived_proven_and_printed_as_gather_and_scatter_add():
    """The engine keeps the id delta under its sum; SymPy proves the chain; the index
    printer prints the read as numpy.take and the sum as a sparse one-hot product,
    which agrees with a loop of += per occurrence (repeated ids, and 2x the sum)."""
    import scipy.sparse
    from sympy import KroneckerDelta

    from backprop_derived.symbolic.engine import backward, gradient_chain
    from backprop_derived.symbolic.index_printer import Assignment, IndexPrinter

    grad = backward(catalog.EMBEDDING, [catalog.EMBEDDING_E])[catalog.EMBEDDING_E]
    assert grad.expr.has(KroneckerDelta)
    chain = gradient_chain(grad, catalog.EMBEDDING)
    assert chain.steps[-1].proof == "structural"
    rows = catalog.EMBEDDING_E.shape[0]
    printer = IndexPrinter(given=[str(rows)])
    (lhs, rhs), = catalog.EMBEDDING
    forward = "\n".join(printer.statements([Assignment("Y", lhs.indices, rhs)]))
    assert "numpy.take(e, ids, axis=0)" in forward
    rng = np.random.default_rng(3)
    ids, e, dy = np.array([2, 0, 2, 2]), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    env = {"numpy": np, "ids": ids, "e": e}
    exec(forward, env)  # noqa: S102
    np.testing.assert_array_equal(env["y"], e[ids])
    for factor in (1, 2):
        step = Assignment("dE", grad.indices, factor * grad.expr,
                          shape=catalog.EMBEDDING_E.shape)
        code = "\n".join(printer.statements([step]))
        assert "scipy.sparse.coo_array" in code and "add.at" not in code
        env = {"numpy": np, "scipy": scipy, "ids": ids, "dy": dy, str(rows): 4}
        exec(code, env)  # noqa: S102
        expected = np.zeros((4, 3))
        for s_, i in enumerate(ids):
            expected[i] += factor * dy[s_]
        np.testing.assert_allclose(env["de"], expected, rtol=1e-14, atol=1e-14)
    # a delta on two plain indices that no sum meets is still the engine's error
    x = sp.IndexedBase("X", shape=(3, 3), real=True)
    y = sp.IndexedBase("Y", shape=(3,), real=True)
    i = sp.Symbol("i", integer=True)
    with pytest.raises(AssertionError, match="Kronecker delta survived"):
        backward(((y[i], x[i, i]),), [x])