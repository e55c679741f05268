"""gradient_check: agrees on the whole catalog, catches a wrong gradient, handles relu kinks."""

import argparse

import numpy as np
import pytest

from backprop_derived import Network
from backprop_derived._generated import ACTIVATIONS, OUTPUTS
from backprop_derived.gradcheck import (
    add_gradcheck_command,
    eps_sweep,
    gradient_check,
    main,
    random_problem,
)
from backprop_derived.unrolling import get_parameters

# The whole catalog, read from the generated registry: an activation added to the
# derivation is tested here the day it is regenerated.
HIDDEN = sorted(name for name, kernels in ACTIVATIONS.items() if kernels.elementwise)
OUTPUTS = sorted(OUTPUTS)  # (output activation, loss) pairs


@pytest.mark.parametrize("output,loss", OUTPUTS, ids=lambda v: str(v))
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_catalog_agrees_with_finite_differences(hidden, output, loss, l2):
    net, X, Y = random_problem([3, 4, 3, 2], [hidden, hidden, output], loss, seed=7, batch=4, l2=l2)
    before = get_parameters(net)
    report = gradient_check(net, X, Y)
    assert report.passed, str(report)
    largest = max(float(np.abs(g).max()) for g in report.analytic.values())
    if largest > 100 * report.floor:
        # The programming exercise's single figure; a wrong derivative gives 1e-3 or more.
        assert report.norm_difference < 1e-6, str(report)
    else:  # e.g. absolute_error after a 2-way softmax: the gradient is exactly 0 here
        assert report.notes and "says little" in report.notes[0], str(report)
    assert np.array_equal(get_parameters(net), before), "the check must leave the network unchanged"


class OffByOnePercent:
    """A network whose gradient for one weight matrix is 1 % too large: a subtle bug."""

    def __init__(self, net, layer):
        self.net, self.layer = net, layer

    def __getattr__(self, name):
        return getattr(self.net, name)

    def gradients(self, X, Y):
        J, dW, db = self.net.gradients(X, Y)
        dW[self.layer] = dW[self.layer] * 1.01
        return J, dW, db


@pytest.mark.parametrize("layer", [0, 1])
def test_a_wrong_gradient_fails_and_is_located(layer):
    net, X, Y = random_problem([4, 5, 3], ["tanh", "softmax"], "cross_entropy", seed=3)
    report = gradient_check(OffByOnePercent(net, layer), X, Y)
    assert not report.passed
    assert report.worst[:2] == (layer, "weights")
    assert report.by_layer[layer]["weights"] == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert report.by_kind["biases"] < 1e-5
    assert "FAILED" in str(report)


def relu_net_on_a_kink(z_offset):
    """2-2-1 relu network whose hidden unit 0 has pre-activation z_offset on example 0."""
    net = Network(
        layer_sizes=[2, 2, 1], activations=["relu", "identity"], loss="squared_error", seed=0
    )
    net.weights[0][...] = [[1.0, -1.0], [0.5, 0.5]]
    net.biases[0][...] = [z_offset, 0.2]
    net.weights[1][...] = [[1.5, -0.7]]
    net.biases[1][...] = [0.1]
    X = np.array([[0.3, 0.3], [1.0, -1.0], [-0.5, 2.0]])  # z_0 of example 0 = z_offset
    Y = np.array([[1.0], [0.0], [2.0]])
    return net, X, Y


def test_relu_kink_is_a_warning_not_a_failure():
    net, X, Y = relu_net_on_a_kink(z_offset=3e-5)  # within eps = 1e-4 of the kink
    report = gradient_check(net, X, Y, eps=1e-4)
    flagged = {(w.layer, w.kind, w.index) for w in report.kink_warnings}
    # the bias of unit 0 moves z_0 by +-eps: it straddles the kink
    assert (0, "biases", (0,)) in flagged
    # and its finite difference really is wrong, by far more than the tolerance
    assert report.relative_error[(0, "biases")][0] > 1e-2
    assert report.passed, str(report)
    assert "kink" in str(report)
    assert all(w.crossing[0] == 0 and w.crossing[2] == 0 for w in report.kink_warnings)


def test_no_kink_warning_away_from_the_kink():
    net, X, Y = relu_net_on_a_kink(z_offset=0.05)
    report = gradient_check(net, X, Y, eps=1e-4)
    assert report.kink_warnings == []
    assert report.passed


def test_eps_sweep_has_truncation_and_rounding_regimes():
    net, X, Y = random_problem([3, 4, 2], ["tanh", "softmax"], "cross_entropy", seed=1)
    sweep = eps_sweep(net, X, Y)
    assert sweep.eps.tolist() == pytest.approx([10.0**-k for k in range(1, 11)])
    err = dict(zip(sweep.eps.tolist(), sweep.median_relative_error, strict=True))
    # truncation: the error falls roughly like eps^2 from 1e-1 to 1e-3 (a factor 1e4)
    assert err[1e-1] / err[1e-3] > 1e3
    # rounding: at 1e-10 it is far worse than at the best eps
    assert err[1e-10] > 100 * min(err.values())
    assert 1e-7 <= sweep.best_eps <= 1e-3


def test_report_layout():
    net, X, Y = random_problem([4, 5, 3], ["tanh", "softmax"], "cross_entropy", seed=0)
    report = gradient_check(net, X, Y)
    assert set(report.by_layer) == {0, 1}
    assert set(report.by_kind) == {"weights", "biases"}
    assert report.max_relative_error == max(report.by_kind.values())
    text = str(report)
    assert "4-5-3 tanh,softmax" in text and "PASSED" in text
    assert text.count("weights") >= 2 and text.count("biases") >= 2


def test_cli_prints_report_and_exit_status(capsys):
    status = main(["--layers", "4,5,3", "--activations", "tanh,softmax", "--loss", "cross_entropy"])
    out = capsys.readouterr().out
    assert status == 0 and "PASSED" in out and "4-5-3" in out
    # a huge eps makes the truncation error fail a strict tolerance
    status = main(
        [
            "--layers",
            "3,2",
            "--activations",
            "tanh",
            "--loss",
            "squared_error",
            "--eps",
            "0.5",
            "--tolerance",
            "1e-9",
        ]
    )
    assert status == 1 and "FAILED" in capsys.readouterr().out
    status = main(
        [
            "--layers",
            "4,5,3",
            "--activations",
            "relu,softmax",
            "--loss",
            "squared_error",
            "--seed",
            "3",
            "--batch",
            "7",
            "--l2",
            "0.1",
        ]
    )
    assert status == 0


def test_cli_bad_input(capsys):
    status = main(["--layers", "4,5,3", "--activations", "tanh,relu", "--loss", "cross_entropy"])
    assert status == 2 and "gradcheck:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--layers", "4,x"])


def test_subcommand_registration(capsys):
    parser = argparse.ArgumentParser(prog="backprop-derived")
    add_gradcheck_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "gradcheck",
            "--layers",
            "2,3,1",
            "--activations",
            "sigmoid,sigmoid",
            "--loss",
            "binary_cross_entropy",
        ]
    )
    assert args.handler(args) == 0
    assert "2-3-1 sigmoid,sigmoid" in capsys.readouterr().out


def test_a_small_error_in_a_zero_gradient_is_caught():
    # Errors are measured on the scale of the block, so an entry whose true gradient
    # is 0 is not exempt: input 0 is always 0, so dJ/dW[0][:, 0] = 0 exactly, and the
    # bug adds 1e-4 of the block's largest gradient to one of those entries.
    net, X, Y = random_problem([4, 5, 3], ["tanh", "softmax"], "cross_entropy", seed=3)
    X[:, 0] = 0.0

    class OneEntryOff(OffByOnePercent):
        def gradients(self, X, Y):
            J, dW, db = self.net.gradients(X, Y)
            assert np.all(dW[0][:, 0] == 0)
            dW[0][2, 0] += 1e-4 * np.abs(dW[0]).max()
            return J, dW, db

    report = gradient_check(OneEntryOff(net, 0), X, Y)
    assert not report.passed
    assert report.worst == (0, "weights", (2, 0))
    assert report.max_relative_error == pytest.approx(1e-4, rel=1e-2)


def test_float32_check_says_it_cannot_resolve():
    net = Network(layer_sizes=[4, 5, 3], activations=["tanh", "softmax"], dtype=np.float32, seed=0)
    _, X, Y = random_problem([4, 5, 3], ["tanh", "softmax"], "cross_entropy", seed=0)
    report = gradient_check(net, X.astype(np.float32), Y)
    assert report.notes and "float64" in report.notes[0]
    assert "note:" in str(report)
    with pytest.raises(ValueError, match="below the resolution of float32"):
        gradient_check(net, X.astype(np.float32), Y, eps=1e-10)


def test_wired_into_the_project_cli(capsys):
    from backprop_derived.cli import main as cli_main

    assert cli_main(["gradcheck", "--layers", "4,5,3", "--activations", "tanh,softmax"]) == 0
    assert "PASSED" in capsys.readouterr().out


# ---------------------------------------------------------------- the bugs that matter
def handwritten_gradients(net, X, y, bug=None):
    """Backprop for tanh hidden layers, softmax and cross-entropy, written out by hand
    (independently of the generated kernels), with one of the classic bugs if asked."""
    m, K = len(X), net.layer_sizes[-1]
    Y = np.eye(K)[y]
    A = [X]
    for W, b in zip(net.weights[:-1], net.biases[:-1], strict=True):
        A.append(np.tanh(A[-1] @ W.T + b))
    Z = A[-1] @ net.weights[-1].T + net.biases[-1]
    Z = Z - Z.max(axis=1, keepdims=True)
    log_p = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    loss = -(Y * log_p).sum() / m + net.l2 / (2 * m) * sum((W**2).sum() for W in net.weights)
    delta = (np.exp(log_p) - Y) / (1 if bug == "missing 1/m" else m)
    dW, db = [None] * len(A), [None] * len(A)
    for l in reversed(range(len(A))):
        W = net.weights[l]
        dW[l] = (A[l].T @ delta if bug == "dropped transpose" and l == 1 else delta.T @ A[l])
        dW[l] = dW[l] + net.l2 / m * W
        db[l] = delta.sum(axis=0)
        if bug == "wrong sign" and l == 1:
            dW[l] = -dW[l]
        if l:
            # tanh'(z) = 1 - a^2; the classic slip writes 1 - a
            slope = 1 - A[l] if bug == "wrong g'" else 1 - A[l] ** 2
            delta = (delta @ W) * slope
    return loss, dW, db


class HandWritten:
    """The network with its gradients replaced by `handwritten_gradients`."""

    def __init__(self, net, bug=None):
        self.net, self.bug = net, bug

    def __getattr__(self, name):
        return getattr(self.net, name)

    def gradients(self, X, Y):
        return handwritten_gradients(self.net, X, Y, self.bug)


# 4-4-4-3: a square middle layer, so that a transposed dW still has the right shape.
BUG_SIZES = [4, 4, 4, 3]


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_the_hand_written_backprop_passes(l2):
    # the control: without a bug the independent implementation passes
    net, X, Y = random_problem(BUG_SIZES, ["tanh", "tanh", "softmax"], "cross_entropy",
                               seed=5, batch=6, l2=l2)
    report = gradient_check(HandWritten(net), X, Y)
    assert report.passed, str(report)


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("bug", ["dropped transpose", "wrong sign", "missing 1/m", "wrong g'"])
def test_the_bugs_that_matter_fail(bug, l2):
    net, X, Y = random_problem(BUG_SIZES, ["tanh", "tanh", "softmax"], "cross_entropy",
                               seed=5, batch=6, l2=l2)
    report = gradient_check(HandWritten(net, bug), X, Y)
    assert not report.passed, str(report)
    assert report.max_relative_error > 1e-2  # three orders of magnitude above the pass mark
    assert "FAILED" in str(report)


def test_a_transposed_gradient_of_the_wrong_shape_is_named():
    net, X, Y = random_problem([4, 5, 3], ["tanh", "softmax"], "cross_entropy", seed=5)

    class Transposed(OffByOnePercent):
        def gradients(self, X, Y):
            J, dW, db = self.net.gradients(X, Y)
            return J, [dW[0].T, dW[1]], db

    with pytest.raises(ValueError, match=r"gradient of weights\[0\] has shape \(4, 5\)"):
        gradient_check(Transposed(net, 0), X, Y)


@pytest.mark.parametrize(("layers", "activations", "loss", "batch", "l2"), [
    ([64, 25, 10], ["sigmoid", "softmax"], "cross_entropy", 30, 1.0),
    ([30, 40, 30, 5], ["relu", "softplus", "sigmoid"], "binary_cross_entropy", 20, 0.1),
    ([50, 30, 2], ["swish", "identity"], "squared_error", 1, 0.0),
    ([80, 60, 10], ["tanh", "softmax"], "cross_entropy", 64, 0.0),
])
def test_correct_code_passes_at_larger_sizes(layers, activations, loss, batch, l2):
    net, X, Y = random_problem(layers, activations, loss, seed=2, batch=batch, l2=l2)
    report = gradient_check(net, X, Y)
    assert report.passed, str(report)
    assert report.max_relative_error < 1e-7  # a hundredfold margin below the pass mark


@pytest.mark.slow
def test_the_issue_s_command_passes_on_correct_code(capsys):
    # `backprop-derived gradcheck --layers 300,200,10 --batch 20` reported FAILED
    # (2.3e-05 > 1e-05) on correct code when each entry was its own scale.
    status = main(["--layers", "300,200,10", "--batch", "20", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0 and "PASSED" in captured.out, captured.out
    assert captured.err == ""


def test_progress_bar_for_the_check(monkeypatch, capsys):
    import tqdm.auto

    bars = []

    class Recorder:
        def __init__(self, **kwargs):
            self.kwargs, self.updates, self.postfix, self.closed = kwargs, 0, None, False
            bars.append(self)

        def set_postfix(self, postfix, refresh=True):
            self.postfix = postfix

        def update(self, n=1):
            self.updates += n

        def close(self):
            self.closed = True

    net, X, Y = random_problem([4, 5, 3], ["tanh", "softmax"], "cross_entropy", seed=0)
    gradient_check(net, X, Y)  # no bar unless asked for
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    report = gradient_check(net, X, Y, progress=True)
    (bar,) = bars
    assert bar.kwargs["total"] == 5 * 4 + 5 + 3 * 5 + 3 == bar.updates and bar.closed
    assert bar.kwargs["delay"] > 0  # quick checks stay quiet
    assert bar.postfix["loss"] == f"{report.loss:.4g}"
