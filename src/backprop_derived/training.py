"""Training workflow of the Coursera notes: fit, predict, score.

`Network` inherits `TrainingMixin`, so these are methods of the network. They
use only the public runtime (``forward``, ``loss``, ``gradients``, ``weights``,
``biases``, ``layer_sizes``, ``activations``, ``loss_name``, ``l2``, ``dtype``).

Two optimizers, as in the notes' step 6 ("use gradient descent or a built-in
optimization function"):

``"sgd"``
    minibatch gradient descent with optional (heavy-ball) momentum, reshuffled
    every epoch with ``numpy.random.default_rng(seed)``.
``"lbfgs"``
    the analogue of the notes' ``fminunc``: ``scipy.optimize.minimize`` with
    ``method="L-BFGS-B"``, ``jac=True`` and the analytic gradient, on the
    unrolled parameter vector, for at most ``max_iter`` iterations.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from backprop_derived.unrolling import get_parameters, set_parameters, unroll

OPTIMIZERS = ("sgd", "lbfgs")


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite; the network keeps its last finite weights.

    A FloatingPointError, hence an ArithmeticError. ``epoch`` is 1-based;
    ``history`` holds the epochs completed before the divergence.
    """

    def __init__(self, message: str, epoch: int, history: History):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


@dataclass
class History:
    """What `fit` returns: one entry per epoch (per iteration for L-BFGS).

    ``loss`` is the full training loss J at the end of each epoch (none for an
    L-BFGS run that starts at a stationary point); ``val_loss``
    and ``val_score`` are filled when ``validation_data`` is given, where
    ``val_score`` is `score` on the validation set: an accuracy for the
    classification losses, a mean squared error for squared_error
    (``score_name`` says which).
    """

    optimizer: str
    score_name: str
    initial_loss: float
    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

    @property
    def epochs(self) -> int:
        return len(self.loss)

    @property
    def val_accuracy(self) -> list[float]:
        if self.score_name != "accuracy":
            raise AttributeError(
                "val_accuracy exists for classification losses only; see val_score"
            )
        return self.val_score


def _is_real(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _score_name(loss_name: str) -> str:
    return "mean_squared_error" if loss_name == "squared_error" else "accuracy"


class TrainingMixin:
    # ---------------------------------------------------------------- checks
    def _check_data(self, X, Y, what: str = "training data"):
        """Cheap shape and value checks with messages that name the problem."""
        X = np.asarray(X)
        Y = np.asarray(Y)
        if X.ndim != 2:
            raise ValueError(
                f"{what}: X must be 2-D (m, {self.layer_sizes[0]}), got shape {X.shape}"
            )
        if X.shape[0] == 0:
            raise ValueError(f"{what}: X is empty (0 examples)")
        if X.shape[1] != self.layer_sizes[0]:
            raise ValueError(
                f"{what}: X has {X.shape[1]} columns but the input layer has "
                f"{self.layer_sizes[0]} units"
            )
        if Y.ndim == 0 or Y.shape[0] != X.shape[0]:
            raise ValueError(
                f"{what}: X has {X.shape[0]} rows but Y has {Y.shape[0] if Y.ndim else 'no'} rows"
            )
        for name, arr in (("X", X), ("Y", Y)):
            real = np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
            if not real or np.issubdtype(arr.dtype, np.complexfloating):
                raise ValueError(f"{what}: {name} must hold real numbers, got dtype {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{what}: {name} contains NaN or inf")
        return X, Y

    def _check_fit_arguments(
        self, epochs, batch_size, learning_rate, momentum, optimizer, max_iter
    ):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}"
            )
        for name, value in (("epochs", epochs), ("max_iter", max_iter)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int | np.integer)
            or batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be an integer >= 1 or None (full batch), got {batch_size!r}"
            )
        if not _is_real(learning_rate) or not (0.0 < learning_rate < np.inf):
            raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
        if not _is_real(momentum) or not (0.0 <= momentum < 1.0):
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")

    # ------------------------------------------------------------------- fit
    def fit(
        self,
        X,
        Y,
        *,
        epochs: int = 10,
        batch_size: int | None = 32,
        learning_rate: float = 0.1,
        momentum: float = 0.0,
        optimizer: str = "sgd",
        validation_data=None,
        seed=None,
        progress: bool = True,
        max_iter: int = 200,
    ) -> History:
        """Minimize ``self.loss(X, Y)`` and return a `History`.

        ``epochs``, ``batch_size`` (None = full batch), ``learning_rate`` and
        ``momentum`` drive "sgd"; ``max_iter`` drives "lbfgs". With ``progress``
        one line per epoch goes to stderr. A non-finite loss raises
        `TrainingDivergedError` after restoring the last weights whose loss was
        finite. Every argument is checked before any work is done. L-BFGS runs on
        the full batch and ignores the SGD settings (``epochs``, ``batch_size``,
        ``learning_rate``, ``momentum``, ``seed``), though they are still checked.
        """
        self._check_fit_arguments(epochs, batch_size, learning_rate, momentum, optimizer, max_iter)
        X, Y = self._check_data(X, Y)
        if validation_data is not None:
            try:
                X_val, Y_val = validation_data
            except (TypeError, ValueError):
                raise ValueError("validation_data must be a pair (X_val, Y_val)") from None
            X_val, Y_val = self._check_data(X_val, Y_val, what="validation_data")
            self.loss(X_val, Y_val)  # the network's own checks (labels, columns of Y)
        initial_loss = float(self.loss(X, Y))  # also runs the network's own checks
        history = History(optimizer, _score_name(self.loss_name), initial_loss)
        if not np.isfinite(initial_loss):
            raise TrainingDivergedError(
                f"the loss is already {initial_loss} at the initial weights; nothing was trained",
                0,
                history,
            )
        validation = None if validation_data is None else (X_val, Y_val)
        state = _Progress(self, history, validation, progress)
        # Convert once, not once per minibatch (integer labels stay integers).
        X = X.astype(self.dtype, copy=False)
        if np.issubdtype(Y.dtype, np.floating):
            Y = Y.astype(self.dtype, copy=False)
        start = time.perf_counter()
        try:
            # A diverging fit overflows; the non-finite values are detected explicitly
            # below and turned into TrainingDivergedError, so NumPy need not warn.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if optimizer == "sgd":
                    self._fit_sgd(X, Y, epochs, batch_size, learning_rate, momentum, seed, state)
                else:
                    state.unit = "iteration"
                    self._fit_lbfgs(X, Y, max_iter, state)
        finally:
            history.seconds = time.perf_counter() - start
        return history

    def _fit_sgd(self, X, Y, epochs, batch_size, learning_rate, momentum, seed, state):
        m = X.shape[0]
        b = m if batch_size is None else min(batch_size, m)
        rng = np.random.default_rng(seed)
        params = [*self.weights, *self.biases]
        velocity = [np.zeros_like(p) for p in params]
        # The weights at the end of the last epoch whose training loss was finite
        # (at first the initial weights): what a divergence falls back to.
        checkpoint = [p.copy() for p in params]
        n_batches = -(-m // b)

        def diverged(epoch, where, loss):
            for p, saved in zip(params, checkpoint, strict=True):
                np.copyto(p, saved)
            history = state.history
            kept = f"end of epoch {epoch - 1}" if epoch > 1 else "initial weights"
            kept_loss = history.loss[epoch - 2] if epoch > 1 else history.initial_loss
            return TrainingDivergedError(
                f"training diverged in epoch {epoch}{where}: the loss became {loss}. The weights "
                f"were restored to the {kept} (training loss {kept_loss:.6g}). "
                f"Try a smaller learning_rate (was {learning_rate}).",
                epoch,
                history,
            )

        for epoch in range(1, epochs + 1):
            order = rng.permutation(m)
            for k in range(n_batches):
                rows = order[k * b : (k + 1) * b]
                loss, dW, db = self.gradients(X[rows], Y[rows])
                grads = [*dW, *db]
                if not (np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)):
                    raise diverged(epoch, f" (minibatch {k + 1} of {n_batches})", loss)
                # The runtime regularizes a batch of n examples with (l2 / n) W; the full
                # objective J has (l2 / m) W, so correct the batch gradient to match J.
                if self.l2 and len(rows) != m:
                    for W, g in zip(self.weights, dW, strict=True):
                        g += (self.l2 / m - self.l2 / len(rows)) * W
                for p, v, g in zip(params, velocity, grads, strict=True):
                    v *= momentum  # heavy ball: v := mu v - alpha dJ/dtheta; theta := theta + v
                    v -= learning_rate * g
                    p += v
            loss = state.end_epoch(X, Y, epoch, epochs)
            if not np.isfinite(loss):
                raise diverged(epoch, "", loss)
            for p, saved in zip(params, checkpoint, strict=True):
                np.copyto(saved, p)

    def _fit_lbfgs(self, X, Y, max_iter, state):
        from scipy.optimize import minimize  # optional dependency (extra "train")

        theta0 = get_parameters(self).astype(np.float64)
        last_finite = theta0.copy()

        def cost_and_gradient(theta):
            # Everything goes through the network: J and the unrolled (dJ/dW, dJ/db).
            set_parameters(self, theta)
            loss, dW, db = self.gradients(X, Y)
            grad = unroll(dW, db).astype(np.float64)
            if not (np.isfinite(loss) and np.all(np.isfinite(grad))):
                # Tell the line search this point is unusable instead of failing inside scipy.
                return np.inf, np.zeros_like(theta)
            return float(loss), grad

        iteration = 0

        def diverged(where):
            set_parameters(self, last_finite)
            return TrainingDivergedError(
                f"L-BFGS diverged {where}: the loss is not finite. The weights were restored to "
                f"the last iterate with a finite loss (iteration {len(state.history.loss)}).",
                iteration,
                state.history,
            )

        def callback(intermediate_result):
            # Called once per L-BFGS iteration: our "epoch".
            nonlocal iteration
            iteration += 1
            set_parameters(self, intermediate_result.x)
            if not np.isfinite(state.end_epoch(X, Y, iteration, max_iter)):
                raise diverged(f"at iteration {iteration}")
            last_finite[...] = intermediate_result.x

        result = minimize(
            cost_and_gradient,
            theta0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": max_iter},
        )
        set_parameters(self, result.x)
        if not (np.all(np.isfinite(result.x)) and np.isfinite(self.loss(X, Y))):
            raise diverged(f"after {iteration} iterations")
        state.history.message = str(result.message)

    # ------------------------------------------------------ predict / score
    def predict(self, X) -> np.ndarray:
        """Class indices (m,) for cross_entropy; 0/1 (m, K) for binary_cross_entropy
        (output >= 0.5); the raw outputs (m, K) for squared_error."""
        A = self.forward(X)
        if self.loss_name == "cross_entropy":
            return np.argmax(A, axis=1)
        if self.loss_name == "binary_cross_entropy":
            return (A >= 0.5).astype(np.int64)
        return A

    def score(self, X, Y) -> float:
        """Accuracy (fraction correct) for the classification losses, mean squared
        error over every output for squared_error (lower is better there).

        For cross_entropy Y may be integer labels (m,) or one-hot rows (m, K); for
        binary_cross_entropy with one output, (m,) works as well as (m, 1)."""
        X, Y = self._check_data(X, Y, what="score")
        predicted = self.predict(X)
        K = self.layer_sizes[-1]
        if self.loss_name == "cross_entropy":
            labels = Y if Y.ndim == 1 else np.argmax(Y, axis=1)
            return float(np.mean(predicted == labels))
        Y = Y.reshape(len(Y), K) if Y.ndim == 1 and K == 1 else Y
        if Y.shape != predicted.shape:
            raise ValueError(f"score: Y has shape {Y.shape}, expected {predicted.shape}")
        if self.loss_name == "binary_cross_entropy":
            return float(np.mean(predicted == Y))
        return float(np.mean((predicted - Y) ** 2))


class _Progress:
    """Bookkeeping at the end of an epoch: history, validation, one line to stderr."""

    def __init__(self, net, history: History, validation, progress: bool):
        self.net = net
        self.history = history
        self.validation = validation
        self.progress = progress
        self.unit = "epoch"
        self.start = time.perf_counter()

    def end_epoch(self, X, Y, epoch: int, total: int) -> float:
        """Record epoch ``epoch`` and return its training loss (recorded only if finite)."""
        loss = float(self.net.loss(X, Y))
        if not np.isfinite(loss):
            return loss
        self.history.loss.append(loss)
        line = f"{self.unit} {epoch:>{len(str(total))}}/{total}  loss {loss:.6g}"
        if self.validation:
            X_val, Y_val = self.validation
            self.history.val_loss.append(float(self.net.loss(X_val, Y_val)))
            self.history.val_score.append(self.net.score(X_val, Y_val))
            line += (
                f"  val_loss {self.history.val_loss[-1]:.6g}"
                f"  val_{self.history.score_name} {self.history.val_score[-1]:.4g}"
            )
        if self.progress:
            elapsed = time.perf_counter() - self.start
            print(f"{line}  ({elapsed:.1f} s)", file=sys.stderr, flush=True)
        return loss
