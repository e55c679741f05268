"""``Sequential``: layers composed in order, with a catalog loss, and `Network`'s workflow.

The loss is applied at the last layer's pre-activations with the generated
output kernels of derivations/07_losses_x_activations.py (the ``OUTPUTS``
registry): when the last layer is ``Activation(g)`` the pair (g, loss) gives
the loss value and its delta dJ/dZ at the input of that activation (the
fused one-pass kernel where one was generated, e.g. softmax with
cross-entropy), so softmax needs no backward of its own and sigmoid with
binary cross-entropy never divides by a' = a(1 - a). Any other last layer
is an identity output.

**Shapes.** The loss sees the output as rows of K units: a 2-D output
(m, K) is m rows; an output of higher rank, e.g. (batch, T, K) for a batch
of sequences, is flattened to batch * T rows. The cost is the **mean over
all rows** of the per-row loss (for (batch, T, K): the mean over every
position of every sequence, as PyTorch's losses do on flattened positions).
``Y`` has the output's shape; for cross_entropy it may instead hold integer
class labels of the output's shape without its last axis.

**L2.** ``l2=lambda`` adds ``(lambda / 2m) sum ||W||^2`` to the cost, the
penalty of `Network` (derivations/08_regularization.py, the generated
``l2_penalty`` kernel), with m the number of rows the loss averages over
(the examples, for a 2-D output). W runs over every layer's
``weight_keys()``: by default each parameter array of two or more
dimensions (Dense and convolution kernels, recurrent and attention
matrices, an embedding table), never a vector (biases, gamma, beta); a
layer class may name its own in ``WEIGHTS``. Its gradient (lambda / m) W,
the generated ``l2_gradient`` of the same page, is added to those
parameters' gradients (regularization.py, shared with `Network`).

**Gradient checking.** ``model.gradcheck(X, Y)`` compares every parameter
gradient with central differences of the cost (gradient_checking.py) and
returns the same `GradientCheckReport` as for a `Network`.

**Training.** `fit` is `Network.fit` itself (training.py: the same
optimizers, checks and `History`, L-BFGS included). Parameters are updated
in place in every layer's ``params``. Dropout layers draw their masks from
their own generators, which ``fit(seed=...)`` seeds.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence

import numpy as np

from .._generated import LOSSES, OUTPUTS
from .. import backend as _backend
from .. import serialization
from ..checks import is_real
from ..gradient_checking import GradientCheckReport, gradient_check
from ..regularization import add_l2_gradient, l2_penalty
from ..training import TrainingMixin, _all_layers
from .base import Layer, all_finite, check_dtype
from .dense import Activation
from .simple import _adopt_dtype, _declares_dtype, _fast

__all__ = ["Sequential"]


class _OutputKernels:
    """The (activation, loss) pair's generated kernels behind one call signature.

    The only place that knows their signatures: a kernel takes the number of
    rows ``m`` (the 1/m of the mean is inside the generated code) or, in the
    older form, ``scale`` = 1/m for the delta with a summed value. Both give
    here the mean loss and the delta of the mean.
    """

    def __init__(self, activation: str, loss: str, backend: str | None = None):
        self.act = _backend.activation(activation, backend)  # ACTIVATIONS[activation], or
        self.out = _backend.output(activation, loss, backend)  # its fused Numba kernels
        self.takes_m = "m" in inspect.signature(self.out.delta).parameters
        self.scratch = max(self.act.scratch, self.out.scratch)

    def _arg(self, m: int) -> float:
        return m if self.takes_m else 1.0 / m

    def _mean(self, value, m: int) -> float:
        return float(value) if self.takes_m else float(value) / m

    def value(self, z, y, ws) -> float:
        """Mean loss; writes the activations into ``ws.a``."""
        self.act.forward(z, ws.a, ws.scratch[: self.act.scratch])
        m = z.shape[0]
        if self.takes_m:
            return self._mean(self.out.value(ws.a, z, y, m), m)
        return self._mean(self.out.value(ws.a, z, y), m)

    def value_and_delta(self, z, y, ws) -> tuple[float, np.ndarray]:
        """Mean loss and its delta dJ/dz (m rows, the 1/m included), into ``ws``."""
        m = z.shape[0]
        if self.out.fused is not None:  # a, the loss and the delta in one pass
            loss = self.out.fused(z, y, self._arg(m), ws.a, ws.delta, ws.scratch, ws.rows,
                                  ws.units, ws.transposed)
            return self._mean(loss, m), ws.delta
        loss = self.value(z, y, ws)
        self.out.delta(ws.a, z, y, self._arg(m), ws.delta, ws.scratch)
        return loss, ws.delta


class _Workspace:
    """Output-pass buffers for one (rows, units) shape, reused while it repeats."""

    def __init__(self, kernels: _OutputKernels, m: int, K: int, dtype):
        self.key = (m, K)
        self.a = np.empty((m, K), dtype)
        self.delta = np.empty((m, K), dtype)
        self.scratch = [np.empty((m, K), dtype) for _ in range(kernels.scratch)]
        self.rows = [np.empty((m, 1), dtype) for _ in range(kernels.out.rows)]
        self.units = np.ones((K, 1), dtype)
        self.transposed = np.empty((K, m), dtype)


class Sequential(TrainingMixin, serialization.SavingMixin):
    """Layers applied in order, trained on a catalog loss.

    Parameters
    ----------
    layers : the layers, first to last (`Dense`, `Activation`, `Dropout`,
        `Embedding`, `Residual`, ... : anything with the `Layer` interface).
        An `Activation` that is not elementwise (softmax) only as the last one.
    loss : one of ``Sequential.LOSSES``; cross_entropy needs a last
        ``Activation("softmax")``, binary_cross_entropy ``Activation("sigmoid")``.
    dtype : float32 or float64; by default that of the layers with
        parameters (they must agree). Layers without parameters whose dtype
        was not given take it.
    l2 : lambda of the L2 penalty (lambda / 2m) sum ||W||^2 over every
        layer's ``weight_keys()`` (weight matrices and kernels; biases,
        gamma and beta are not penalized). See the module docstring.
    backend : ``"numpy"``, ``"numba"`` or ``"auto"``: the kernels every pass of
        this model runs (``backend.use`` entered around the layers' forward and
        backward); None: the global choice. Not saved.

    Notes
    -----
    ``gradients(X, Y)`` returns ``(loss, grads)``: ``grads`` is a list with
    one dict per layer, with the keys and shapes of that layer's ``params``
    (empty for a layer without parameters), each array dJ/dparam of the mean
    cost. See the module docstring for the shapes of X, Y and the output.
    """

    LOSSES = LOSSES
    _saved_class = "Sequential"

    def __init__(self, layers: Sequence[Layer], loss: str = "cross_entropy", dtype=None,
                 l2: float = 0.0, backend: str | None = None):
        if isinstance(layers, Layer):
            raise ValueError("Sequential: layers must be a list of layers, got one layer")
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("Sequential: needs at least one layer")
        for k, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Sequential: layer {k} is not a Layer: {layer!r}")
        if not is_real(l2) or not (math.isfinite(l2) and l2 >= 0):
            raise ValueError(f"Sequential: l2 must be a finite number >= 0, got {l2!r}")
        self.l2 = float(l2)
        self.dtype = self._resolve_dtype(dtype)
        last = self.layers[-1]
        head = last.activation if isinstance(last, Activation) else "identity"
        self._body = self.layers[:-1] if isinstance(last, Activation) else self.layers
        for k, layer in enumerate(self._body):
            if isinstance(layer, Activation) and not layer.elementwise:
                raise ValueError(
                    f"Sequential: layer {k}, Activation({layer.activation!r}), couples the units "
                    "of a row and is allowed only as the last layer, where the loss's output "
                    "pass differentiates it")
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"Sequential: unknown loss {loss!r}; valid names: "
                             f"{', '.join(LOSSES)}")
        if (head, loss) not in OUTPUTS:
            needed = sorted(act for act, name in OUTPUTS if name == loss)
            got = f"Activation({head!r})" if isinstance(last, Activation) else last.name
            raise ValueError(f"Sequential: {loss} needs a last layer "
                             f"{' or '.join(f'Activation({n!r})' for n in needed)}, got {got}")
        self.loss_name = loss
        self.output_activation = head
        self.backend = backend  # numpy | numba | auto, or None: the global choice
        self._on_backend = _backend.use(backend)  # entered around each pass
        self._kernels = _OutputKernels(head, loss, backend)
        self._workspace: _Workspace | None = None

    def _resolve_dtype(self, dtype) -> np.dtype:
        declared = [(k, layer) for k, layer in enumerate(self.layers) if _declares_dtype(layer)]
        if dtype is not None:
            chosen = check_dtype(dtype)
        elif declared:
            chosen = declared[0][1].dtype
        else:
            chosen = np.dtype(np.float64)
        for k, layer in declared:
            if layer.dtype != chosen:
                raise ValueError(f"Sequential: layer {k} ({layer.name}) is {layer.dtype.name}, "
                                 f"the model is {chosen.name}; give every layer the same dtype")
        for layer in self.layers:
            if not _declares_dtype(layer):
                _adopt_dtype(layer, chosen)
        return chosen

    def __repr__(self) -> str:
        inner = ",\n    ".join(map(repr, self.layers))
        l2 = f", l2={self.l2}" if self.l2 else ""
        return f"Sequential([\n    {inner},\n], loss={self.loss_name!r}{l2})"

    @property
    def params(self) -> list[dict[str, np.ndarray]]:
        """Every layer's ``params`` dict, in order."""
        return [layer.params for layer in self.layers]

    # -- saving (serialization.py) --------------------------------------------------
    def _saved_state(self):
        arrays: dict[str, np.ndarray] = {}
        layers = [serialization.layer_entry(layer, f"{k}.", arrays)
                  for k, layer in enumerate(self.layers)]
        config = {"loss": self.loss_name, "dtype": self.dtype.name, "layers": layers}
        if self.l2:  # files of models without L2 stay as they were
            config["l2"] = self.l2
        return config, arrays

    def _restore_state(self, path, config, arrays) -> None:
        if config.get("loss") != self.loss_name:
            raise ValueError(f"{path}: the file holds another architecture: loss "
                             f"{config.get('loss')!r} in the file, {self.loss_name!r} here")
        entries = config.get("layers", [])
        if len(entries) != len(self.layers):
            raise ValueError(f"{path}: the file holds another architecture: "
                             f"{len(entries)} layers in the file, {len(self.layers)} here")
        for k, (layer, entry) in enumerate(zip(self.layers, entries, strict=True)):
            serialization.restore_layer(path, layer, entry, f"{k}.", arrays)

    # -- passes ------------------------------------------------------------
    def _forward_body(self, X, train: bool, checked: bool) -> np.ndarray:
        with self._on_backend:
            return self._forward_layers(X, train, checked)

    def _forward_layers(self, X, train: bool, checked: bool) -> np.ndarray:
        for k, layer in enumerate(self._body):
            if checked:
                try:
                    X = layer.forward(X, train)
                except ValueError as error:
                    raise ValueError(f"Sequential layer {k}: {error}") from None
            else:
                X = _fast(layer, "_forward_unchecked", "forward")(X, train)
        if not isinstance(X, np.ndarray) or X.dtype.kind != "f":
            X = np.asarray(X, dtype=self.dtype)  # no layers: X is the output's input
        return X

    def _backward_body(self, dY: np.ndarray) -> None:
        with self._on_backend:
            self._backward_layers(dY)

    def _backward_layers(self, dY: np.ndarray) -> None:
        for k in range(len(self._body) - 1, -1, -1):
            layer = self._body[k]
            unchecked = getattr(layer, "_backward_unchecked", None)
            if unchecked is not None:
                dY = unchecked(dY, input_grad=k > 0)
            else:
                dY = layer.backward(dY)

    def _workspace_for(self, m: int, K: int) -> _Workspace:
        ws = self._workspace
        if ws is None or ws.key != (m, K):
            ws = self._workspace = _Workspace(self._kernels, m, K, self.dtype)
        return ws

    @staticmethod
    def _as_rows(Z: np.ndarray) -> np.ndarray:
        if Z.ndim < 2:
            raise ValueError(f"Sequential: the output must have a last axis of units "
                             f"(m, K) or (batch, T, K); got shape {Z.shape}")
        return np.ascontiguousarray(Z.reshape(-1, Z.shape[-1]))

    def _pass(self, X, Y: np.ndarray | None, Y_given, *, checked: bool,
              lam: float | None = None) -> float:
        """Forward (train mode), output pass and backward; fills every layer's grads.

        ``Y`` is the prepared (rows, K) target array, or None to build it from
        ``Y_given`` once the output's shape is known. ``lam`` is the L2
        strength (``l2`` unless given: `fit` gives l2 n / m for a minibatch of
        n of the m examples, so that the batch's penalty is J's own).
        """
        Z = self._forward_body(X, True, checked)
        z = self._as_rows(Z)
        if Y is None:
            Y = self._targets(Y_given, Z.shape)
        ws = self._workspace_for(*z.shape)
        loss, delta = self._kernels.value_and_delta(z, Y, ws)
        if self._body:
            self._backward_body(delta.reshape(Z.shape))
        lam = self.l2 if lam is None else lam
        if lam:
            rows = z.shape[0]
            loss += self._l2_penalty(rows, lam)
            add_l2_gradient(((layer.params[key], layer.grads[key])
                             for layer, key in self._penalized()), lam, rows)
        return loss

    def _penalized(self) -> list[tuple[Layer, str]]:
        """(layer, key) of every parameter the L2 penalty applies to."""
        return [(layer, key) for layer in self.layers for key in layer.weight_keys()]

    def _l2_penalty(self, m: int, lam: float) -> float:
        return l2_penalty((layer.params[key] for layer, key in self._penalized()), lam, m)

    # -- targets -------------------------------------------------------------
    def _targets(self, Y, out_shape: tuple, what: str = "Y") -> np.ndarray:
        """``Y`` as (rows, K) in the model's dtype; class labels one-hot."""
        K, lead = out_shape[-1], tuple(out_shape[:-1])
        rows = math.prod(lead)
        try:
            Y = np.asarray(Y)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Sequential: {what} is not an array: {error}") from None
        if Y.dtype.kind not in "biuf":
            raise ValueError(f"Sequential: {what} must be numeric, got dtype {Y.dtype}")
        if self.loss_name == "cross_entropy" and Y.shape == lead and Y.dtype.kind in "iu":
            labels = Y.ravel()
            if labels.min() < 0 or labels.max() >= K:
                bad = labels[(labels < 0) | (labels >= K)][0]
                raise ValueError(f"Sequential: {what} label {bad} out of range: {K} classes "
                                 f"are 0..{K - 1}")
            onehot = np.zeros((rows, K), self.dtype)
            onehot[np.arange(rows), labels] = 1
            return onehot
        if K == 1 and Y.shape == lead:
            Y = Y.reshape(*lead, 1)
        if Y.shape != tuple(out_shape):
            hint = (f" or integer labels of shape {lead}" if self.loss_name == "cross_entropy"
                    else "")
            raise ValueError(f"Sequential: {what} has shape {Y.shape}; the output has shape "
                             f"{tuple(out_shape)}, so {what} must have that shape{hint}")
        Y = np.ascontiguousarray(Y.reshape(rows, K), dtype=self.dtype)
        lo, hi = np.minimum.reduce(Y, axis=None), np.maximum.reduce(Y, axis=None)
        if not (-math.inf < lo and hi < math.inf):
            raise ValueError(f"Sequential: {what} contains NaN or inf")
        if self.loss_name == "binary_cross_entropy" and not (lo >= 0 and hi <= 1):
            raise ValueError(f"Sequential: binary_cross_entropy targets {what} must lie in [0, 1]")
        if self.loss_name == "cross_entropy" and lo < 0:
            raise ValueError(f"Sequential: cross_entropy targets {what} must be non-negative "
                             "(one-hot or probabilities)")
        return Y

    def _check_parameters(self) -> None:
        """Name a parameter holding NaN or inf (written in place), if any."""
        for k, layer in enumerate(self.layers):
            for key, p in layer.params.items():
                if not all_finite(p):
                    raise ValueError(f"Sequential: layer {k} ({layer.name}) parameter {key!r} "
                                     "contains NaN or inf")

    # -- public passes ---------------------------------------------------------
    def forward(self, X) -> np.ndarray:
        """The model's output (inference mode: dropout off), shape (..., K)."""
        Z = self._forward_body(X, False, True)
        z = self._as_rows(Z)
        ws = self._workspace_for(*z.shape)
        act = self._kernels.act
        act.forward(z, ws.a, ws.scratch[: act.scratch])
        return ws.a.copy().reshape(Z.shape)

    def loss(self, X, Y) -> float:
        """The mean cost on (X, Y) in inference mode (dropout off), with the L2 penalty."""
        Z = self._forward_body(X, False, True)
        z = self._as_rows(Z)
        y = self._targets(Y, Z.shape)
        value = self._kernels.value(z, y, self._workspace_for(*z.shape))
        if self.l2:
            value += self._l2_penalty(z.shape[0], self.l2)
        return value

    def gradcheck(self, X, Y, eps: float = 1e-4, tolerance: float = 1e-5, floor=None,
                  progress: bool = False) -> GradientCheckReport:
        """Every parameter gradient of `gradients` against central differences of the
        cost (gradient_checking.py), in training mode; the model is unchanged after."""
        return gradient_check(self, X, Y, eps=eps, tolerance=tolerance, floor=floor,
                              progress=progress)

    def _loss_closure(self, X, Y):
        """``(J, reset, activation_inputs)`` for gradient_checking.py, the data checked once.

        ``J()`` is the training-mode cost at the current parameters, each call
        from the state ``reset()`` puts back: every layer's generator (the
        same dropout masks) and buffers (batch norm's running statistics) as
        they were. ``activation_inputs()`` gives (layer index, activation, Z)
        for every activation after the last J(), the last layer's included.
        """
        X, Y = self._prepare(X, Y, "gradient_check")
        Y = Y.reshape(-1, Y.shape[-1])
        every = list(_all_layers(self.layers))
        states = [(layer, copy.deepcopy(layer.rng.bit_generator.state)) for layer in every
                  if isinstance(getattr(layer, "rng", None), np.random.Generator)]
        buffers = [(getattr(layer, name), getattr(layer, name).copy()) for layer in every
                   for name in layer.BUFFERS]
        last: dict = {}

        def reset() -> None:
            for layer, state in states:
                layer.rng.bit_generator.state = copy.deepcopy(state)
            for array, saved in buffers:
                np.copyto(array, saved)

        def loss() -> float:
            reset()
            z = self._as_rows(self._forward_body(X, True, False))
            last["z"] = z
            value = self._kernels.value(z, Y, self._workspace_for(*z.shape))
            return value + (self._l2_penalty(z.shape[0], self.l2) if self.l2 else 0.0)

        def activation_inputs() -> list:
            found = [(k, inner.activation, inner._cache[0]) for k, layer in enumerate(self._body)
                     for inner in _all_layers([layer])
                     if isinstance(inner, Activation) and inner._cache is not None]
            if len(self._body) < len(self.layers) and "z" in last:
                found.append((len(self.layers) - 1, self.output_activation, last["z"]))
            return found

        return loss, reset, activation_inputs

    def gradients(self, X, Y) -> tuple[float, list[dict[str, np.ndarray]]]:
        """``(loss, grads)`` in training mode: the mean cost (with the L2 penalty) and,
        per layer, a dict ``{key: dJ/dparams[key]}`` with the keys and shapes of its ``params``.

        The arrays are new on every call. Dropout layers draw a new mask.
        """
        try:
            loss = self._pass(X, None, Y, checked=True)
        except (RuntimeWarning, FloatingPointError):
            self._check_parameters()  # a NaN or inf written in place can warn first
            raise
        if not math.isfinite(loss):
            self._check_parameters()
        return loss, [dict(layer.grads) if layer.params else {} for layer in self.layers]

    # -- predict / score -------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Class indices (...,) for cross_entropy (argmax over the last axis); 0/1
        (..., K) for binary_cross_entropy (output >= 0.5); the raw outputs otherwise."""
        A = self.forward(X)
        if self.loss_name == "cross_entropy":
            return np.argmax(A, axis=-1)
        if self.loss_name == "binary_cross_entropy":
            return (A >= 0.5).astype(np.int64)
        return A

    def score(self, X, Y) -> float:
        """Accuracy for the classification losses, mean squared error over every
        output otherwise (lower is better there). For cross_entropy Y may be
        labels or one-hot rows; for one output unit, Y may omit the last axis."""
        predicted = self.predict(X)
        Y = np.asarray(Y)
        if Y.dtype.kind not in "biuf":
            raise ValueError(f"Sequential: score: Y must be numeric, got dtype {Y.dtype}")
        if not np.isfinite(Y).all():
            raise ValueError("Sequential: score: Y contains NaN or inf")
        if self.loss_name == "cross_entropy":
            labels = Y if Y.shape == predicted.shape else None
            if labels is None:
                if Y.shape[:-1] != predicted.shape:
                    raise ValueError(f"Sequential: score: Y has shape {Y.shape}, expected labels "
                                     f"{predicted.shape} or one-hot rows")
                labels = np.argmax(Y, axis=-1)
            return float(np.mean(predicted == labels))
        if Y.shape == predicted.shape[:-1] and predicted.shape[-1] == 1:
            Y = Y[..., None]
        if Y.shape != predicted.shape:
            raise ValueError(f"Sequential: score: Y has shape {Y.shape}, expected "
                             f"{predicted.shape}")
        if self.loss_name == "binary_cross_entropy":
            return float(np.mean(predicted == Y))
        return float(np.mean((predicted - Y) ** 2))

    # -- fit (training.py runs the loop) -------------------------------------------
    def _prepare(self, X, Y, what: str):
        """X in the first layer's form and Y as (examples, rows per example, K), checked once."""
        try:
            Z = self._forward_body(X, False, True)  # checks X through every layer
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None
        first = self.layers[0]
        X = first._check_ids(X) if hasattr(first, "_check_ids") else np.ascontiguousarray(
            X, dtype=self.dtype)
        Y_rows = np.asarray(Y)
        if Y_rows.ndim == 0 or Y_rows.shape[0] != X.shape[0]:
            raise ValueError(f"{what}: X has {X.shape[0]} examples but Y has "
                             f"{Y_rows.shape[0] if Y_rows.ndim else 'no'} rows")
        try:
            targets = self._targets(Y, Z.shape)
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None
        return X, targets.reshape(X.shape[0], -1, Z.shape[-1])

    def _training_session(self, X, Y, validation) -> _Session:
        if validation is not None:
            self._prepare(*validation, "validation_data")
        X, Y = self._prepare(X, Y, "training data")
        self._check_parameters()
        return _Session(self, X, Y, validation)


class _Session:
    """A fit of a `Sequential` for training.py: every layer's arrays and one pass per batch."""

    folds_lr = False  # the layers' backward passes return dJ/dtheta itself

    def __init__(self, model: Sequential, X, Y, validation):
        self.model, self.X, self.Y, self.m = model, X, Y, X.shape[0]
        self.validation = validation
        self.arrays = [(layer, key) for layer in model.layers for key in layer.params]
        self.params = [layer.params[key] for layer, key in self.arrays]

    def batch_sizes(self, sizes) -> None:
        pass  # the layers allocate per call

    def run(self, rows, scale: float):
        X, Y = (self.X, self.Y) if rows is None else (self.X.take(rows, axis=0),
                                                      self.Y.take(rows, axis=0))
        loss = self.model._pass(X, Y.reshape(-1, Y.shape[-1]), None, checked=False,
                                lam=self.model.l2 * X.shape[0] / self.m)
        return loss, [layer.grads[key] for layer, key in self.arrays]

    def validate(self):
        if self.validation is None:
            return None
        return self.model.loss(*self.validation), self.model.score(*self.validation)

    def close(self) -> None:
        pass
