"""Training workflow of the Coursera notes: fit, predict, score.

`Network` inherits `TrainingMixin`, so these are methods of the network.

Checked once, then fast: `fit` checks its arguments, its data and the
network's parameters once, before any work, and then runs the network's
internal pass (``Network._pass``) on every minibatch without the per-call
checks of `Network.gradients`. Each step does what a careful hand-written
loop does and nothing more (the Performance page measures it against one):
copy the minibatch's rows, one forward and backward pass, one in-place
subtraction per parameter array (three ufunc passes with momentum).

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

import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from backprop_derived.unrolling import get_parameters, set_parameters, unroll

OPTIMIZERS = ("sgd", "lbfgs")


class _Default:
    """A setting left at its default. Shown as the value itself in the signature;
    `fit` tells it from a value passed on purpose (an SGD setting given to L-BFGS)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


SGD_SETTINGS = ("epochs", "batch_size", "learning_rate", "momentum", "seed")


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

    The training cost J is (1/m) sum of the per-example losses + (l2/2m) sum ||W||^2
    over all m training examples.

    ``loss``
        SGD: the mean of the epoch's minibatch costs, each taken at the weights
        the step starts from and weighted by the minibatch's size (the L2 term
        is J's, l2/2m, at those weights). It is what the passes compute anyway,
        so recording it is free; it lags the end-of-epoch J by about half an
        epoch of training. With ``batch_size=None`` (full batch) it is exactly J
        at the start of the epoch. L-BFGS: J at the end of each iteration.
    ``initial_loss``
        SGD: the cost of the first minibatch at the initial weights (J itself
        for full batch); L-BFGS: J at the initial weights.
    ``val_loss``, ``val_score``
        filled when ``validation_data`` is given, at the end of each epoch:
        the validation cost and `score` on the validation set, an accuracy for
        the classification losses, a mean squared error for squared_error
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


def _all_finite(x: np.ndarray) -> bool:
    # The extremes: a NaN makes the minimum NaN, an inf is the minimum or the
    # maximum. No temporary array, unlike isfinite, and no overflow, unlike a sum.
    return bool(-math.inf < np.minimum.reduce(x, axis=None) and np.maximum.reduce(x, axis=None)
                < math.inf)


def _progress_bar(enabled: bool, total: int, unit: str, delay: float = 0.0):
    """A tqdm bar (the notebook widget in Jupyter), or None when progress is off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm  # imported only when a bar is wanted

    return tqdm(total=total, unit=unit, delay=delay, dynamic_ncols=True)


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
        return X, Y

    def _prepare_data(self, X, Y, what: str):
        """X and dense targets, in the network's dtype and checked, for the internal pass.

        Integer labels become one-hot rows here, once, rather than once per
        minibatch. The checks of Y are the network's own (`Network._check_Y`).
        """
        X, Y = self._check_data(X, Y, what)
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not _all_finite(X):
            raise ValueError(f"{what}: X contains NaN or inf")
        m = X.shape[0]
        onehot = SimpleNamespace(targets=np.empty((m, self.layer_sizes[-1]), self.dtype),
                                 examples=np.arange(m))
        try:
            Y = self._check_Y(Y, m, onehot)
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None
        return X, np.ascontiguousarray(Y)

    @staticmethod
    def _resolve_settings(optimizer, settings: dict) -> dict:
        """Values of the settings; an error for one that the optimizer would ignore."""
        given = [name for name, value in settings.items()
                 if not isinstance(value, _Default) and not (name == "seed" and value is None)]
        if optimizer == "lbfgs":
            ignored = [name for name in given if name in SGD_SETTINGS]
            if ignored:
                raise ValueError(
                    f"{', '.join(ignored)} set for optimizer='lbfgs', which would ignore "
                    f"{'it' if len(ignored) == 1 else 'them'}: L-BFGS runs on the full batch "
                    "for at most max_iter iterations"
                )
        elif optimizer == "sgd" and "max_iter" in given:
            raise ValueError("max_iter is a setting of optimizer='lbfgs'; "
                             "SGD runs for `epochs` epochs")
        return {name: value.value if isinstance(value, _Default) else value
                for name, value in settings.items()}

    def _check_fit_arguments(
        self, epochs, batch_size, learning_rate, momentum, optimizer, max_iter
    ):
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
        epochs: int = _Default(10),
        batch_size: int | None = _Default(32),
        learning_rate: float = _Default(0.1),
        momentum: float = _Default(0.0),
        optimizer: str = "sgd",
        validation_data=None,
        seed=None,
        progress: bool = True,
        max_iter: int = _Default(200),
    ) -> History:
        """Minimize the training cost J on (X, Y) and return a `History`.

        ``epochs``, ``batch_size`` (None = full batch), ``learning_rate``,
        ``momentum`` and ``seed`` (of the shuffling) drive "sgd"; ``max_iter``
        drives "lbfgs". Setting one for the other optimizer is a ValueError,
        not silently ignored. With ``progress`` a tqdm bar (a widget in Jupyter)
        shows the epochs and the loss; nothing is printed without it.

        Every argument, the data and the parameters are checked once, before
        any work; the minibatches then run without per-call checks. A
        non-finite loss raises `TrainingDivergedError` after restoring the
        weights of the end of the last epoch (the initial weights in the
        first). `History` says what each recorded loss is.
        """
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}"
            )
        settings = self._resolve_settings(optimizer, {
            "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
            "momentum": momentum, "seed": seed, "max_iter": max_iter,
        })
        self._check_fit_arguments(
            settings["epochs"], settings["batch_size"], settings["learning_rate"],
            settings["momentum"], optimizer, settings["max_iter"],
        )
        validation = None
        if validation_data is not None:
            try:
                X_val, Y_val = validation_data
            except (TypeError, ValueError):
                raise ValueError("validation_data must be a pair (X_val, Y_val)") from None
            # Y_val also as given: score reads labels or one-hot rows as they came.
            validation = (*self._prepare_data(X_val, Y_val, "validation_data"), Y_val)
        X, Y = self._prepare_data(X, Y, "training data")
        self._check_parameters()  # a NaN written in place before fit

        history = History(optimizer, _score_name(self.loss_name), math.nan)
        watch = _Epochs(self, history, validation)
        start = time.perf_counter()
        try:
            # A diverging fit overflows; the non-finite loss is detected explicitly
            # and turned into TrainingDivergedError, so NumPy need not warn.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if optimizer == "sgd":
                    watch.bar = _progress_bar(progress, settings["epochs"], "epoch")
                    self._fit_sgd(X, Y, settings, watch)
                else:
                    watch.bar = _progress_bar(progress, settings["max_iter"], "iteration")
                    self._fit_lbfgs(X, Y, settings["max_iter"], watch)
        finally:
            history.seconds = time.perf_counter() - start
            if watch.bar is not None:
                watch.bar.close()
        return history

    def _fit_sgd(self, X, Y, settings, watch):
        from .network import _Workspace

        m = X.shape[0]
        epochs, lr, momentum = settings["epochs"], settings["learning_rate"], settings["momentum"]
        b = m if settings["batch_size"] is None else min(settings["batch_size"], m)
        n_batches = -(-m // b)
        short = m - (n_batches - 1) * b  # size of the last minibatch
        rng = np.random.default_rng(settings["seed"])
        # lr is folded into the pass: given m_batch / lr where it divides by
        # m_batch, it returns lr J_batch and writes lr dJ_batch/dtheta into the
        # steps. lam = l2 m_batch / m makes the batch's L2 term J's own, (l2 / 2m)
        # ||W||^2, so the steps of an epoch follow J whatever the batch size.
        # Per size: its workspace and its X rows (kept for the next fit with the
        # same sizes, like the workspace of `gradients`), and those two arguments.
        kept = getattr(self, "_fit_buffers", {})
        self._fit_buffers = {n: kept.get(n) or (_Workspace(self, n), np.empty((n, X.shape[1]),
                                                                               self.dtype))
                             for n in {b, short}}
        batches = {n: (*buffers, n / lr, self.l2 * n / m)
                   for n, buffers in self._fit_buffers.items()}
        with _FlatParameters(self) as flat:
            # The weights at the end of the last epoch (at first the initial weights):
            # what a divergence falls back to. One copy per epoch, not per step.
            checkpoint = flat.values.copy()
            velocity = np.zeros_like(flat.values) if momentum else None
            take_X, take_Y, run = X.take, Y.take, self._pass
            for epoch in range(1, epochs + 1):
                order = rng.permutation(m)
                total = 0.0
                for k in range(n_batches):
                    rows = order[k * b : (k + 1) * b]
                    ws, X_batch, m_arg, lam_arg = batches[len(rows)]
                    # mode="clip" lets take write straight into out (rows are in range).
                    take_X(rows, 0, X_batch, "clip")
                    take_Y(rows, 0, ws.targets, "clip")
                    loss = run(X_batch, ws.targets, ws, flat.dW, flat.db, m_arg, lam_arg,
                               check_X=False)
                    if not math.isfinite(loss):
                        np.copyto(flat.values, checkpoint)
                        raise watch.diverged(epoch, f" (minibatch {k + 1} of {n_batches})",
                                             loss / lr, lr)
                    total += loss * len(rows)
                    if velocity is None:
                        np.subtract(flat.values, flat.steps, out=flat.values)
                    else:  # heavy ball: v := mu v - lr dJ/dtheta; theta := theta + v
                        np.multiply(velocity, momentum, out=velocity)
                        np.subtract(velocity, flat.steps, out=velocity)
                        np.add(flat.values, velocity, out=flat.values)
                    if epoch == 1 and k == 0:
                        watch.history.initial_loss = loss / lr
                watch.end_epoch(total / (lr * m))
                np.copyto(checkpoint, flat.values)

    def _fit_lbfgs(self, X, Y, max_iter, watch):
        from scipy.optimize import minimize  # optional dependency (extra "train")

        from .network import _Workspace

        m = X.shape[0]
        ws = _Workspace(self, m)
        dW = [np.empty_like(w) for w in self.weights]
        db = [np.empty_like(b) for b in self.biases]
        theta0 = get_parameters(self).astype(np.float64)
        last_finite = theta0.copy()
        history = watch.history

        def cost_and_gradient(theta):
            # Everything goes through the network: J and the unrolled (dJ/dW, dJ/db).
            set_parameters(self, theta)
            loss = self._pass(X, Y, ws, dW, db, m, self.l2, check_X=False)
            if math.isnan(history.initial_loss):
                history.initial_loss = loss
            if not math.isfinite(loss):
                # Tell the line search this point is unusable instead of failing inside scipy.
                return np.inf, np.zeros_like(theta)
            return loss, unroll(dW, db).astype(np.float64)

        iteration = 0

        def diverged(where):
            set_parameters(self, last_finite)
            return TrainingDivergedError(
                f"L-BFGS diverged {where}: the loss is not finite. The weights were restored to "
                f"the last iterate with a finite loss (iteration {len(history.loss)}).",
                iteration,
                history,
            )

        def callback(intermediate_result):
            # Called once per L-BFGS iteration, our "epoch", with J at the new iterate.
            nonlocal iteration
            iteration += 1
            if not np.isfinite(intermediate_result.fun):
                raise diverged(f"at iteration {iteration}")
            set_parameters(self, intermediate_result.x)
            watch.end_epoch(float(intermediate_result.fun))
            last_finite[...] = intermediate_result.x

        if not math.isfinite(cost_and_gradient(theta0)[0]):
            raise TrainingDivergedError(
                f"the loss is already {history.initial_loss} at the initial weights; "
                "nothing was trained", 0, history)
        result = minimize(
            cost_and_gradient,
            theta0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": max_iter},
        )
        set_parameters(self, result.x)
        if not (np.all(np.isfinite(result.x)) and np.isfinite(result.fun)):
            raise diverged(f"after {iteration} iterations")
        history.message = str(result.message)

    # ------------------------------------------------------ predict / score
    def _predictions(self, A: np.ndarray) -> np.ndarray:
        if self.loss_name == "cross_entropy":
            return np.argmax(A, axis=1)
        if self.loss_name == "binary_cross_entropy":
            return (A >= 0.5).astype(np.int64)
        return A

    def predict(self, X) -> np.ndarray:
        """Class indices (m,) for cross_entropy; 0/1 (m, K) for binary_cross_entropy
        (output >= 0.5); the raw outputs (m, K) for squared_error."""
        return self._predictions(self.forward(X))

    def _score_predictions(self, predicted: np.ndarray, Y: np.ndarray) -> float:
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

    def score(self, X, Y) -> float:
        """Accuracy (fraction correct) for the classification losses, mean squared
        error over every output for squared_error (lower is better there).

        For cross_entropy Y may be integer labels (m,) or one-hot rows (m, K); for
        binary_cross_entropy with one output, (m,) works as well as (m, 1)."""
        X, Y = self._check_data(X, Y, what="score")
        for name, values in (("X", X), ("Y", Y)):
            if not _all_finite(values):
                raise ValueError(f"score: {name} contains NaN or inf")
        return self._score_predictions(self.predict(X), Y)


class _FlatParameters:
    """The network's weights and biases as views of one vector, for the length of a fit.

    A step is then one ufunc call over every parameter instead of one per
    array, which is what decides the speed of a small network. On entry the
    values are copied into the vector and its views are assigned to the
    network; on exit (also after an error) the final values are copied back
    into the network's own arrays and its own lists are put back, so that
    references a caller holds to them stay valid and see the training. ``steps`` is a vector of
    the same layout, with ``dW`` and ``db`` its views, for the pass to write.
    """

    def __init__(self, net):
        self.net = net
        self.arrays = [*net.weights, *net.biases]
        self.values = np.concatenate([p.ravel() for p in self.arrays])
        self.steps = np.empty_like(self.values)
        L = len(net.weights)
        value_views, step_views = self._views(self.values), self._views(self.steps)
        self.W, self.b = value_views[:L], value_views[L:]
        self.dW, self.db = step_views[:L], step_views[L:]

    def _views(self, vector: np.ndarray) -> list[np.ndarray]:
        views, start = [], 0
        for p in self.arrays:
            views.append(vector[start : start + p.size].reshape(p.shape))
            start += p.size
        return views

    def __enter__(self):
        self.lists = self.net.weights, self.net.biases
        self.net.weights, self.net.biases = self.W, self.b  # checked assignments
        return self

    def __exit__(self, *exc_info):
        for p, view in zip(self.arrays, [*self.W, *self.b], strict=True):
            np.copyto(p, view)
        # The lists themselves, not an assignment: nothing here may raise over
        # the error that is leaving the block.
        self.net._weights, self.net._biases = self.lists


class _Epochs:
    """End-of-epoch bookkeeping: history, validation, the progress bar, divergence."""

    def __init__(self, net, history: History, validation):
        self.net = net
        self.history = history
        self.bar = None
        self.validation = None
        if validation is not None:
            from .network import _Workspace

            X_val, Y_val, Y_given = validation
            self.validation = (X_val, Y_val, np.asarray(Y_given), _Workspace(net, len(X_val)))

    def end_epoch(self, loss: float) -> None:
        net, history = self.net, self.history
        history.loss.append(loss)
        postfix = {"loss": f"{loss:.4g}"}
        if self.validation is not None:
            X_val, Y_val, Y_given, ws = self.validation
            A = net._forward(X_val, ws, check_X=False)
            history.val_loss.append(net._loss_value(Y_val, ws, len(X_val), net.l2))
            history.val_score.append(net._score_predictions(net._predictions(A), Y_given))
            postfix["val_loss"] = f"{history.val_loss[-1]:.4g}"
            postfix[f"val_{history.score_name}"] = f"{history.val_score[-1]:.4g}"
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update()

    @staticmethod
    def restore(params, saved) -> None:
        for p, s in zip(params, saved, strict=True):
            np.copyto(p, s)

    def diverged(self, epoch: int, where: str, loss: float, lr: float) -> TrainingDivergedError:
        history = self.history
        if epoch > 1:
            kept = f"end of epoch {epoch - 1} (mean minibatch loss {history.loss[-1]:.6g})"
        else:
            kept = "initial weights"
        return TrainingDivergedError(
            f"training diverged in epoch {epoch}{where}: the loss became {loss}. The weights "
            f"were restored to the {kept}. Try a smaller learning_rate (was {lr}).",
            epoch,
            history,
        )
