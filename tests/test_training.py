"""fit / predict / score, initialization and the zero-initialization symmetry."""

import math

import numpy as np
import pytest

from backprop_derived import Network
from backprop_derived.training import TrainingDivergedError
from backprop_derived.unrolling import get_parameters


def blobs(m=60, seed=0):
    """Three Gaussian blobs in 2-D: labels 0, 1, 2."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    labels = np.arange(m) % 3
    return centers[labels] + 0.6 * rng.normal(size=(m, 2)), labels


def classifier(seed=0, **kwargs):
    return Network(layer_sizes=[2, 6, 3], activations=["tanh", "softmax"], seed=seed, **kwargs)


# ------------------------------------------------------------------ bad arguments
BAD_FIT_ARGUMENTS = [
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum is a setting of optimizer='sgd'"),
    ({"lr": 0.1, "learning_rate": 0.1}, "the same setting"),
    ({"clip_grad_norm": 0.0}, "clip_grad_norm"),
    ({"early_stopping": 3}, "validation_data"),
    ({"lr_schedule": 0.5}, "lr_schedule"),
    ({"momentum": 1.0}, "momentum"),
    ({"learning_rate": "0.1"}, "learning_rate"),
    ({"max_iter": 0, "optimizer": "lbfgs"}, "max_iter"),
    # settings of the other optimizer are refused, not silently ignored
    ({"optimizer": "lbfgs", "epochs": 3}, "epochs set for optimizer='lbfgs'"),
    ({"optimizer": "lbfgs", "learning_rate": 0.5, "seed": 1},
     "learning_rate, seed set for optimizer='lbfgs', which would ignore them"),
    ({"optimizer": "lbfgs", "batch_size": 8}, "batch_size set for optimizer='lbfgs'"),
    ({"max_iter": 50}, "max_iter is a setting of optimizer='lbfgs'"),
    ({"validation_data": np.zeros((3, 2))}, "validation_data"),
]


@pytest.mark.parametrize("kwargs,message", BAD_FIT_ARGUMENTS, ids=lambda v: str(v)[:30])
def test_bad_arguments_raise_before_any_work(kwargs, message):
    X, y = blobs()
    net = classifier()
    before = get_parameters(net)
    with pytest.raises(ValueError, match=message):
        net.fit(X, y, progress=False, **kwargs)
    assert np.array_equal(get_parameters(net), before)


def bad_data():
    X, y = blobs(m=9)
    X_nan = X.copy()
    X_nan[4, 1] = np.nan
    return [
        (X[:0], y[:0], "empty"),
        (X, y[:-1], "9 rows but Y has 8"),
        (X_nan, y, "NaN"),
        (X[:, :1], y, "1 columns but the input layer has 2"),
        (X[0], y, "2-D"),
        (X, np.where(np.arange(9) == 3, np.inf, 0.0)[:, None] * np.ones((1, 3)), "NaN or inf"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_bad_data_raises_before_any_work(case):
    X, Y, message = bad_data()[case]
    net = classifier()
    before = get_parameters(net)
    with pytest.raises(ValueError, match=message):
        net.fit(X, Y, progress=False)
    assert np.array_equal(get_parameters(net), before)


def test_bad_labels_are_rejected_by_the_network_before_training():
    X, y = blobs(m=9)
    net = classifier()
    before = get_parameters(net)
    with pytest.raises(ValueError):
        net.fit(X, y + 5, progress=False)  # labels 5..7 for 3 classes
    assert np.array_equal(get_parameters(net), before)


# ------------------------------------------------------------------ fit
@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "epochs": 20, "batch_size": 8, "learning_rate": 0.3},
        {"optimizer": "sgd", "epochs": 20, "batch_size": 8, "learning_rate": 0.1, "momentum": 0.9},
        {"optimizer": "sgd", "epochs": 20, "batch_size": None, "learning_rate": 1.0},
        {"optimizer": "lbfgs", "max_iter": 30},
    ],
    ids=["sgd", "momentum", "full-batch", "lbfgs"],
)
def test_fit_lowers_the_loss(options):
    X, y = blobs()
    net = classifier(l2=0.1)
    start = net.loss(X, y)
    seed = {"seed": 0} if options["optimizer"] == "sgd" else {}
    history = net.fit(X, y, progress=False, **seed, **options)
    if options["optimizer"] == "lbfgs" or options["batch_size"] is None:
        # J itself: at the initial weights, and (L-BFGS) at the final iterate
        assert history.initial_loss == pytest.approx(start, rel=1e-12)
    if options["optimizer"] == "lbfgs":
        assert history.loss[-1] == pytest.approx(net.loss(X, y), rel=1e-12)
    assert net.loss(X, y) < 0.5 * start
    assert net.score(X, y) > 0.9


def replay_sgd(net, X, y, epochs, batch_size, learning_rate, momentum, seed):
    """fit's SGD written plainly on the public API, one net.gradients call per minibatch.

    Returns the mean minibatch cost of each epoch, History.loss's definition.
    """
    rng = np.random.default_rng(seed)
    m = len(X)
    params = [*net.weights, *net.biases]
    velocity = [np.zeros_like(p) for p in params]
    means = []
    for _ in range(epochs):
        order = rng.permutation(m)
        total = 0.0
        for start in range(0, m, batch_size):
            rows = order[start : start + batch_size]
            n = len(rows)
            loss, dW, db = net.gradients(X[rows], y[rows])
            # J regularizes with (l2 / 2m) ||W||^2, the batch's own cost with l2 / 2n.
            loss += (net.l2 / (2 * m) - net.l2 / (2 * n)) * sum(np.sum(W**2) for W in net.weights)
            for W, g in zip(net.weights, dW, strict=True):
                g += (net.l2 / m - net.l2 / n) * W
            total += n * loss
            for p, v, g in zip(params, velocity, [*dW, *db], strict=True):
                v[...] = momentum * v - learning_rate * g
                p += v
        means.append(total / m)
    return means


@pytest.mark.parametrize("momentum", [0.0, 0.8])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_is_the_plain_loop_and_history_is_the_mean_minibatch_cost(dtype, momentum):
    # 60 examples in batches of 7: eight of 7 and a last one of 4, with l2 on.
    X, y = blobs()
    settings = dict(epochs=3, batch_size=7, learning_rate=0.3, momentum=momentum, seed=4)
    fitted, replayed = classifier(l2=0.5, dtype=dtype), classifier(l2=0.5, dtype=dtype)
    history = fitted.fit(X, y, progress=False, **settings)
    means = replay_sgd(replayed, X.astype(dtype), y, **settings)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(get_parameters(fitted), get_parameters(replayed), rtol=rtol,
                               atol=rtol * 1e-2)
    np.testing.assert_allclose(history.loss, means, rtol=rtol)
    assert history.epochs == 3


def test_full_batch_history_is_J_before_each_step():
    X, y = blobs(m=30)
    net = classifier(l2=0.2)
    expected = []
    probe = classifier(l2=0.2)
    for _ in range(4):  # J, then one full-batch gradient step, by hand on the public API
        J, dW, db = probe.gradients(X, y)
        expected.append(J)
        for p, g in zip([*probe.weights, *probe.biases], [*dW, *db], strict=True):
            p -= 0.5 * g
    history = net.fit(X, y, epochs=4, batch_size=None, learning_rate=0.5, progress=False)
    np.testing.assert_allclose(history.loss, expected, rtol=1e-12)
    assert history.initial_loss == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(get_parameters(net), get_parameters(probe), rtol=1e-12)


def test_history_with_validation_data():
    X, y = blobs(m=60)
    history = classifier().fit(
        X[:45],
        y[:45],
        epochs=7,
        batch_size=5,
        validation_data=(X[45:], y[45:]),
        seed=0,
        progress=False,
    )
    assert history.epochs == len(history.loss) == len(history.val_loss) == 7
    assert history.val_accuracy == history.val_score
    assert all(0.0 <= a <= 1.0 for a in history.val_accuracy)
    regression = Network([2, 3, 1], ["tanh", "identity"], loss="squared_error", seed=0)
    history = regression.fit(
        X, X[:, :1] * X[:, 1:], epochs=2, validation_data=(X, X[:, :1]), progress=False
    )
    assert history.score_name == "mean_squared_error" and len(history.val_score) == 2
    with pytest.raises(AttributeError):
        history.val_accuracy  # noqa: B018


def test_shuffling_is_reproducible_with_seed():
    X, y = blobs()
    runs = {}
    for name, seed in [("a", 5), ("b", 5), ("c", 6)]:
        net = classifier(seed=0)
        net.fit(X, y, epochs=3, batch_size=7, learning_rate=0.2, seed=seed, progress=False)
        runs[name] = get_parameters(net)
    assert np.array_equal(runs["a"], runs["b"])
    assert not np.array_equal(runs["a"], runs["c"])


def test_progress_is_one_bar_on_stderr_and_nothing_without_it(capsys):
    X, y = blobs()
    history = classifier().fit(X, y, epochs=40, progress=True, validation_data=(X, y), seed=0)
    captured = capsys.readouterr()
    assert captured.out == ""
    # one tqdm bar redrawn in place ("\r"), ended by one newline: no line per epoch
    assert captured.err.count("\n") == 1, captured.err
    final = captured.err.rsplit("\r", 1)[-1]
    assert "40/40" in final and "epoch" in final
    assert f"loss={history.loss[-1]:.4g}" in final
    assert f"val_accuracy={history.val_accuracy[-1]:.4g}" in final
    classifier().fit(X, y, epochs=4, progress=False, validation_data=(X, y))
    classifier().fit(X, y, optimizer="lbfgs", max_iter=5, progress=False)
    assert capsys.readouterr() == ("", "")


def test_fit_draws_the_bar_tqdm_auto_chooses(monkeypatch):
    # In Jupyter tqdm.auto is the notebook widget; fit must go through it.
    import tqdm.auto

    drawn = []

    class Recorder:
        def __init__(self, **kwargs):
            drawn.append(kwargs)
            self.updates, self.postfix, self.closed = 0, None, False

        def set_postfix(self, postfix, refresh=True):
            self.postfix = postfix

        def update(self, n=1):
            self.updates += n

        def close(self):
            self.closed = True

    bars = []
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda **kw: bars.append(Recorder(**kw)) or bars[-1])
    X, y = blobs()
    history = classifier().fit(X, y, epochs=3, seed=0, progress=True)
    (bar,) = bars
    assert drawn[0]["total"] == 3 and drawn[0]["unit"] == "epoch"
    assert bar.updates == 3 and bar.closed
    assert bar.postfix == {"loss": f"{history.loss[-1]:.4g}"}
    classifier().fit(X, y, optimizer="lbfgs", max_iter=4, progress=True)
    classifier().fit(X, y, epochs=2)  # no bar by default
    assert len(bars) == 2
    assert bars[1].closed and drawn[1]["unit"] == "iteration" and 1 <= bars[1].updates <= 4


def test_float32_stays_float32():
    X, y = blobs()
    net = classifier(dtype=np.float32)
    net.fit(X, y, epochs=3, momentum=0.5, progress=False)
    net.fit(X, y, optimizer="lbfgs", max_iter=5, progress=False)
    assert all(W.dtype == np.float32 for W in [*net.weights, *net.biases])


def test_minibatch_steps_follow_the_full_objective_with_l2():
    # Over one epoch of tiny steps, plain SGD moves by -lr * sum over batches of the
    # batch gradient. For that sum to be (number of batches) * dJ/dtheta of the FULL
    # objective (1/m) sum loss + (l2/2m) ||W||^2, each batch must regularize with l2/m.
    X, y = blobs(m=12)
    net = classifier(l2=5.0)
    before = [W.copy() for W in net.weights]
    _, dW_full, _ = net.gradients(X, y)
    lr = 1e-7
    net.fit(X, y, epochs=1, batch_size=4, learning_rate=lr, seed=0, progress=False)
    for W0, W1, g in zip(before, net.weights, dW_full, strict=True):
        step = (W0 - W1) / lr
        np.testing.assert_allclose(step, 3 * g, rtol=1e-4, atol=1e-8)


def test_divergence_stops_with_the_epoch_and_keeps_finite_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)) * 10
    Y = rng.normal(size=(20, 1)) * 10
    net = Network([3, 4, 1], ["identity", "identity"], loss="squared_error", seed=0)
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+") as info:
        net.fit(X, Y, epochs=200, batch_size=5, learning_rate=10.0, seed=0, progress=False)
    error = info.value
    assert isinstance(error, ArithmeticError)
    assert error.epoch >= 2 and "learning_rate" in str(error)
    assert all(np.all(np.isfinite(p)) for p in [*net.weights, *net.biases])
    # restored to the end of the last epoch whose minibatch costs were all finite:
    # the weights a fit of that many epochs ends with
    assert len(error.history.loss) == error.epoch - 1
    shorter = Network([3, 4, 1], ["identity", "identity"], loss="squared_error", seed=0)
    shorter.fit(X, Y, epochs=error.epoch - 1, batch_size=5, learning_rate=10.0, seed=0,
                progress=False)
    assert np.array_equal(get_parameters(net), get_parameters(shorter))
    assert f"epoch {error.epoch}" in str(error)


class BreaksAfter(Network):
    """A network whose loss turns NaN after a number of passes (a stand-in for an
    overflow deep into training), to see that the epochs before it are kept."""

    calls_left = 0

    def _pass(self, *args, **kwargs):
        self.calls_left -= 1
        loss = super()._pass(*args, **kwargs)
        return math.nan if self.calls_left < 0 else loss


def test_divergence_late_in_training_keeps_what_was_learned():
    X, y = blobs()
    net = BreaksAfter(layer_sizes=[2, 6, 3], activations=["tanh", "softmax"], seed=0)
    net.calls_left = 4 * 6 + 2  # 6 minibatches of 10 per epoch: breaks in epoch 5
    with pytest.raises(TrainingDivergedError, match=r"epoch 5 \(minibatch 3 of 6\)") as info:
        net.fit(X, y, epochs=10, batch_size=10, learning_rate=0.5, seed=0, progress=False)
    history = info.value.history
    assert len(history.loss) == 4
    intact = classifier()
    intact.fit(X, y, epochs=4, batch_size=10, learning_rate=0.5, seed=0, progress=False)
    assert np.array_equal(get_parameters(net), get_parameters(intact))
    assert history.loss[-1] < 0.5 * history.initial_loss


# ------------------------------------------------------------------ predict / score
def test_predict_and_score_cross_entropy():
    net = classifier()
    X, y = blobs(m=12)
    A = net.forward(X)
    predicted = net.predict(X)
    assert predicted.shape == (12,)
    assert all(A[i, predicted[i]] == A[i].max() for i in range(12))
    expected = sum(int(predicted[i] == y[i]) for i in range(12)) / 12
    assert net.score(X, y) == expected
    assert net.score(X, np.eye(3)[y]) == expected  # one-hot rows work too


def test_predict_and_score_binary_cross_entropy():
    net = Network([2, 3, 2], ["tanh", "sigmoid"], loss="binary_cross_entropy", seed=1)
    X, _ = blobs(m=10)
    A = net.forward(X)
    predicted = net.predict(X)
    assert set(np.unique(predicted)) <= {0, 1}
    assert np.array_equal(predicted == 1, A >= 0.5)
    Y = np.zeros((10, 2))
    Y[:, 0] = 1
    assert net.score(X, Y) == np.mean(predicted == Y)
    single = Network([2, 3, 1], ["tanh", "sigmoid"], loss="binary_cross_entropy", seed=1)
    labels = (X[:, 0] > 0).astype(float)
    assert single.score(X, labels) == single.score(X, labels[:, None])


def test_predict_and_score_squared_error():
    net = Network([2, 3, 2], ["tanh", "identity"], loss="squared_error", seed=2)
    X, _ = blobs(m=10)
    Y = np.ones((10, 2))
    assert np.array_equal(net.predict(X), net.forward(X))
    diffs = [(net.forward(X)[i, k] - 1.0) ** 2 for i in range(10) for k in range(2)]
    assert net.score(X, Y) == pytest.approx(sum(diffs) / 20, rel=1e-12)


# ------------------------------------------------------------------ initialization
def test_default_initialization_is_uniform_in_the_notes_interval():
    sizes = [30, 50, 20]
    a = Network(sizes, ["sigmoid", "softmax"], seed=3)
    b = Network(sizes, ["sigmoid", "softmax"], seed=3)
    c = Network(sizes, ["sigmoid", "softmax"], seed=4)
    assert np.array_equal(get_parameters(a), get_parameters(b))  # reproducible with seed
    assert not np.array_equal(get_parameters(a), get_parameters(c))
    for W, n_in, n_out in zip(a.weights, sizes[:-1], sizes[1:], strict=True):
        eps = np.sqrt(6) / np.sqrt(n_in + n_out)  # the notes' INIT_EPSILON
        assert np.abs(W).max() <= eps
        assert np.abs(W).max() > 0.95 * eps  # fills the interval, not a narrower one
        assert abs(W.mean()) < 0.1 * eps  # centred


def xor_clusters(seed=0):
    """Four clusters at the corners of a square, label 1 where the coordinates' signs differ.
    Unequal cluster sizes, so that the all-zero network is not already at a stationary point."""
    rng = np.random.default_rng(seed)
    corners = [((1, 1), 0, 15), ((-1, -1), 0, 15), ((1, -1), 1, 20), ((-1, 1), 1, 20)]
    X = np.concatenate([1.5 * np.array(c) + 0.5 * rng.normal(size=(n, 2)) for c, _, n in corners])
    Y = np.concatenate([np.full(n, float(label)) for _, label, n in corners])[:, None]
    return X, Y


def xor_classifier(init="uniform"):
    return Network(
        [2, 5, 1], ["sigmoid", "sigmoid"], loss="binary_cross_entropy", seed=0, init=init
    )


FIT = {
    "sgd": {"epochs": 100, "batch_size": 10, "learning_rate": 0.5, "momentum": 0.9, "seed": 0},
    "lbfgs": {"max_iter": 100},
}


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_zero_initialization_keeps_hidden_units_identical(optimizer):
    """The notes' warning: with all weights zero every hidden unit gets the same update,
    so they stay copies of one another however long we train."""
    X, Y = xor_clusters()
    net = xor_classifier(init="zeros")
    assert not np.any(get_parameters(net))
    net.fit(X, Y, optimizer=optimizer, progress=False, **FIT[optimizer])
    W1, b1, W2 = net.weights[0], net.biases[0], net.weights[1]
    scale = np.abs(W1).max()
    assert scale > 0.1, "the hidden weights must have moved for the test to mean anything"
    # Every hidden unit j has the same incoming weights W1[j, :], bias b1[j] and outgoing
    # weights W2[:, j]. Exactly so in exact arithmetic; here up to the rounding of the
    # matrix products (~1e-12 relative), which is why this is not an equality test.
    tol = 1e-9 * scale
    assert np.abs(W1 - W1[0]).max() <= tol
    assert np.abs(b1 - b1[0]).max() <= tol
    assert np.abs(W2 - W2[:, :1]).max() <= tol
    # Five copies of one unit draw a single line: at most 3 of the 4 clusters (55 of 70).
    assert net.score(X, Y) <= 55 / 70


def test_random_initialization_breaks_the_symmetry():
    X, Y = xor_clusters()
    net = xor_classifier()
    net.fit(X, Y, progress=False, **FIT["sgd"])
    W1 = net.weights[0]
    assert min(np.abs(W1[i] - W1[j]).max() for i in range(5) for j in range(i)) > 1e-2
    assert net.score(X, Y) > 0.95


def test_fit_trains_the_arrays_the_caller_holds():
    # fit works on one flat copy of the parameters; the network's own arrays and
    # lists must come back holding the result, also after a divergence.
    X, y = blobs()
    net = classifier()
    weights, W0, b1 = net.weights, net.weights[0], net.biases[1]
    before = W0.copy()
    net.fit(X, y, epochs=2, seed=0, progress=False)
    assert net.weights is weights and net.weights[0] is W0 and net.biases[1] is b1
    assert not np.array_equal(W0, before)
    assert W0.flags.owndata and W0.flags.c_contiguous
    unstable = Network([3, 4, 1], ["identity", "identity"], loss="squared_error", seed=0)
    arrays = [*unstable.weights, *unstable.biases]
    rng = np.random.default_rng(0)
    with pytest.raises(TrainingDivergedError):
        unstable.fit(rng.normal(size=(20, 3)) * 10, rng.normal(size=(20, 1)) * 10, epochs=200,
                     batch_size=5, learning_rate=10.0, seed=0, progress=False)
    assert all(a is b for a, b in zip(arrays, [*unstable.weights, *unstable.biases], strict=True))
    assert all(np.isfinite(a).all() for a in arrays)
