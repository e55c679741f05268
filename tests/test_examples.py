"""The worked examples: each one learns, with fixed seeds (results, not timings)."""

import numpy as np
import pytest

from backprop_derived.examples.digits import run_digits
from backprop_derived.examples.regression import run_regression
from backprop_derived.examples.xor import X_XOR, Y_XOR, boolean_name, run_xor, success_rate

pytestmark = pytest.mark.slow


def test_digits_reaches_95_percent_on_held_out_images():
    result = run_digits(seed=0)
    assert result.history.loss[-1] < 0.5 * result.history.initial_loss  # fit lowered the loss
    assert result.test_accuracy >= 0.95, result.test_accuracy
    assert len(result.y_test) == 450  # 25 % of the 1797 images, never trained on
    assert result.confusion.sum() == 450
    assert np.trace(result.confusion) / 450 == pytest.approx(result.test_accuracy)


def test_regression_fits_the_curve():
    result = run_regression(seed=0)
    history = result.history
    assert history.loss[-1] < 0.1 * history.initial_loss
    assert 10 < history.epochs <= 200  # at most the notes' MaxIter = 200
    # close to the noise level, and far better than the best straight line
    assert result.train_mse < 2 * result.noise**2
    assert result.train_mse < 0.1 * result.line_mse
    # the fitted curve follows the true one between the data points too
    from backprop_derived.examples.regression import true_curve

    assert np.sqrt(np.mean((result.fit - true_curve(result.grid)) ** 2)) < 2 * result.noise


def test_xor_is_learned_and_hidden_units_are_single_lines():
    result = run_xor(seed=0)
    assert result.history.loss[-1] < 0.1 * result.initial_loss
    assert result.predicted.tolist() == [0, 1, 1, 0]
    assert np.all(np.abs(result.output - Y_XOR[:, 0]) < 0.1)
    # a sigmoid unit is one line through the plane: it can never compute XOR itself,
    # so the two hidden units compute two different linearly separable functions
    assert set(result.hidden_names).isdisjoint({"x1 XOR x2", "NOT (x1 XOR x2)"})
    assert result.hidden_names[0] != result.hidden_names[1]
    assert result.hidden.shape == (4, 2)


def test_boolean_names():
    assert boolean_name([0, 1, 1, 1]) == "x1 OR x2"
    assert boolean_name([1, 1, 1, 0]) == "NOT (x1 AND x2)"
    assert X_XOR.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_some_starting_points_get_stuck():
    solved, tried = success_rate(range(10))
    assert 0 < solved < tried  # the 2-2-1 net learns XOR from some seeds but not from all
