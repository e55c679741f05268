"""fit's tools beyond the steps: early stopping, seeds, interruption, callbacks, L-BFGS
for any model. The optimizers' arithmetic is tested in test_optim.py."""

import os
import signal

import numpy as np
import pytest

from backprop_derived import Network
from backprop_derived.layers import Activation, Dense, Dropout, Sequential
from backprop_derived.optim import Adam


def data(m=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def net(seed=0, l2=0.0):
    return Network([2, 8, 2], ["tanh", "softmax"], l2=l2, seed=seed)


def vector(model):
    if isinstance(model, Network):
        return np.concatenate([p.ravel() for p in (*model.weights, *model.biases)])
    return np.concatenate([p.ravel() for layer in model.layers for p in layer.params.values()])


# ------------------------------------------------------------------ early stopping
def test_early_stopping_returns_to_the_best_epoch():
    X, y = data(m=16, seed=1)
    X_val, y_val = data(m=40, seed=2)
    settings = dict(optimizer="adam", lr=0.1, batch_size=4, seed=0, progress=False)
    model = net()
    history = model.fit(X, y, epochs=300, validation_data=(X_val, y_val), early_stopping=5,
                        **settings)
    best = int(np.argmin(history.val_loss)) + 1
    assert history.stopped_early and history.best_epoch == best
    assert history.epochs == best + 5 < 300  # five epochs without improvement, then stop
    # the parameters of the best epoch: what a fit of exactly that many epochs ends with
    again = net()
    again.fit(X, y, epochs=best, **settings)
    np.testing.assert_array_equal(vector(model), vector(again))


# ------------------------------------------------------------------ seeds
def dropout_model():
    return Sequential([Dense(2, 16, seed=1), Activation("relu"), Dropout(0.5),
                       Dense(16, 2, seed=2), Activation("softmax")])


def test_a_seed_fixes_the_whole_run_dropout_masks_included():
    X, y = data()
    runs = []
    for seed in (3, 3, 4):
        model = dropout_model()  # Dropout itself unseeded
        model.fit(X, y, optimizer="adam", lr=0.01, epochs=3, batch_size=8, seed=seed,
                  progress=False)
        runs.append(vector(model))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


# ------------------------------------------------------------------ interruption
def replay_adam(model, X, y, steps, batch_size, seed, lr):
    """fit's minibatch Adam on the public API: net.gradients and Adam.step, `steps` steps."""
    rng = np.random.default_rng(seed)
    opt, params, done = Adam(lr=lr), [*model.weights, *model.biases], 0
    while done < steps:
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch_size):
            if done == steps:
                break
            rows = order[start : start + batch_size]
            _, dW, db = model.gradients(X[rows], y[rows])
            opt.step(params, [*dW, *db])
            done += 1


class InterruptedAt(Network):
    """A network whose `stop_at`-th pass is interrupted: raised in it, or Ctrl-C sent during it."""

    stop_at, calls, by_signal = 0, 0, False

    def _pass(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.stop_at:
            if self.by_signal:
                os.kill(os.getpid(), signal.SIGINT)  # delivered while this step runs
            else:
                raise KeyboardInterrupt
        return super()._pass(*args, **kwargs)


@pytest.mark.parametrize("by_signal", [False, True], ids=["raised", "ctrl-c"])
def test_keyboard_interrupt_keeps_the_last_completed_step(by_signal):
    X, y = data()  # 40 examples in batches of 8: five steps per epoch
    model = InterruptedAt([2, 8, 2], ["tanh", "softmax"], seed=0)
    model.stop_at, model.by_signal = 13, by_signal
    history = model.fit(X, y, optimizer="adam", lr=0.05, epochs=10, batch_size=8, seed=7,
                        progress=False)
    # raised in pass 13: twelve steps done; Ctrl-C during pass 13: that step completes
    steps = 13 if by_signal else 12
    assert history.interrupted and history.steps == steps and history.epochs == 2
    assert "interrupted" in history.message
    reference = net()
    replay_adam(reference, X, y, steps, 8, 7, 0.05)
    np.testing.assert_allclose(vector(model), vector(reference), rtol=1e-12, atol=1e-15)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_interrupt_from_a_callback_returns_the_history_so_far():
    X, y = data()

    def stop_in_epoch_3(epoch, history):
        if epoch == 3:
            raise KeyboardInterrupt

    model, reference = dropout_model(), dropout_model()
    history = model.fit(X, y, epochs=10, lr=0.1, seed=0, callback=stop_in_epoch_3,
                        progress=False)
    assert history.interrupted and history.epochs == 3
    reference.fit(X, y, epochs=3, lr=0.1, seed=0, progress=False)
    np.testing.assert_array_equal(vector(model), vector(reference))


def test_a_callback_returning_true_stops():
    X, y = data()
    history = net().fit(X, y, epochs=10, callback=lambda epoch, h: epoch == 2, progress=False)
    assert history.epochs == 2 and not history.interrupted and "callback" in history.message


# ------------------------------------------------------------------ L-BFGS for any model
def test_sequential_trains_with_lbfgs():
    X, y = data()
    model = Sequential([Dense(2, 8, seed=0), Activation("tanh"), Dense(8, 2, seed=1),
                        Activation("softmax")])
    start = model.loss(X, y)
    history = model.fit(X, y, optimizer="lbfgs", max_iter=50, progress=False)
    assert history.initial_loss == pytest.approx(start, rel=1e-12)
    assert history.loss[-1] == pytest.approx(model.loss(X, y), rel=1e-12)
    assert model.loss(X, y) < 0.5 * start


def test_clipping_bounds_every_step():
    # With a tiny max norm the whole step of plain SGD is at most lr * max_norm.
    X, y = data()
    model = net()
    before = vector(model)
    model.fit(X, y, optimizer="sgd", lr=1.0, clip_grad_norm=1e-3, epochs=1, batch_size=None,
              progress=False)
    assert np.linalg.norm(vector(model) - before) <= 1e-3 * (1 + 1e-9)
