"""``Conv1d`` and ``Conv2d``: cross-correlation, stride, zero padding (PyTorch's convention).

``Y[n, o, p] = b[o] + sum_c sum_j X[n, c, p + j] W[o, c, j]`` (and the same
with two shifted indices in 2-d). The kernels are generated from
derivations/13_convolution.py into ``_generated/conv.py``: all four are the
engine's results (the page also proves the input gradient equal to the full
correlation of dY with the flipped kernel), computed with ``numpy.matmul``:
tap loops in 1-d, im2col in 2-d, and one slice-add per tap for the input
gradient (see symbolic/conv_statements.py). With a stride or padding, the
kernels are the declared ``catalog.STRIDED_CONV1D``/``2D`` (window reads at
``stride p + j`` and a tap scatter for the input gradient); padding pads the
input with zeros first and crops the input gradient.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import kernels
from .base import Layer, check_positive_int
from .declared import call_declared

__all__ = ["Conv1d", "Conv2d"]


class _Conv(Layer):
    """What the 1-d and 2-d layers share; ``kernel`` is the kernel's spatial shape."""

    _kernels: dict  # "forward", "weight_gradient", "bias_gradient", "input_gradient"

    def __init__(self, c_in, c_out, kernel: tuple, stride, padding, dtype, seed) -> None:
        super().__init__(dtype)
        self.stride = check_positive_int(stride, f"{self.name}: stride")
        if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
            raise ValueError(f"{self.name}: padding must be a non-negative integer, "
                             f"got {padding!r}")
        self.padding = int(padding)
        self.c_in = check_positive_int(c_in, f"{self.name}: c_in")
        self.c_out = check_positive_int(c_out, f"{self.name}: c_out")
        self.kernel = tuple(check_positive_int(s, f"{self.name}: kernel size") for s in kernel)
        # PyTorch's default: uniform in +-1/sqrt(fan_in), fan_in = c_in * kernel size
        bound = 1.0 / math.sqrt(self.c_in * math.prod(self.kernel))
        rng = np.random.default_rng(seed)
        W = rng.uniform(-bound, bound, size=(self.c_out, self.c_in, *self.kernel))
        b = rng.uniform(-bound, bound, size=self.c_out)
        self._set_params({"W": W, "b": b})

    def __repr__(self) -> str:
        sizes = ", ".join(map(str, self.kernel))
        return (f"{self.name}({self.c_in}, {self.c_out}, {sizes}, stride={self.stride}, "
                f"padding={self.padding}, dtype={self.dtype.name})")

    @property
    def _plain(self) -> bool:
        """Stride 1, no padding: the page's stride-1 kernels (matmul forms)."""
        return self.stride == 1 and self.padding == 0

    def _output_shape(self, shape: tuple) -> tuple:
        """PyTorch's: (size + 2 padding - k) // stride + 1 along each spatial axis."""
        return (shape[0], self.c_out, *((s + 2 * self.padding - k) // self.stride + 1
                                         for s, k in zip(shape[2:], self.kernel, strict=True)))

    def forward(self, X, train: bool = True) -> np.ndarray:
        rank = 2 + len(self.kernel)
        if np.ndim(X) != rank:
            raise ValueError(f"{self.name}: X must have {rank} dimensions (batch, channels, "
                             f"{'length' if rank == 3 else 'height, width'}), "
                             f"got shape {np.shape(X)}")
        X = self._check_input(X, ndim=rank)
        if X.shape[1] != self.c_in:
            raise ValueError(f"{self.name}: X has {X.shape[1]} channels in axis 1, the layer "
                             f"expects {self.c_in}")
        if any(s + 2 * self.padding < k for s, k in zip(X.shape[2:], self.kernel, strict=True)):
            raise ValueError(f"{self.name}: the kernel {self.kernel} is larger than the input "
                             f"{X.shape[2:]} with padding {self.padding} (each padded size "
                             "must be at least the kernel's)")
        return self._forward_unchecked(X, train)

    def _forward_unchecked(self, X: np.ndarray, train: bool = True) -> np.ndarray:
        if not self._plain:
            pad = self.padding
            Xp = np.pad(X, [(0, 0), (0, 0)] + [(pad, pad)] * len(self.kernel)) if pad else X
            Y = call_declared(self._kernels["strided_forward"], x=Xp, stride=self.stride,
                              w=self.params["W"], b=self.params["b"])
            self._cache = (X, Xp) if train else None
            return Y
        Y = np.empty(self._output_shape(X.shape), self.dtype)
        self._kernels["forward"](X, self.params["W"], self.params["b"], Y)
        self._cache = (X,) if train else None
        return Y

    def backward(self, dY) -> np.ndarray:
        shape = (1,) if self._cache is None else self._output_shape(self._cache[0].shape)
        dY = self._check_upstream(dY, shape)
        return self._backward_unchecked(dY)

    def _backward_unchecked(self, dY: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not self._plain:
            X, Xp = self._cache
            dXp, dW, db = call_declared(self._kernels["strided_backward"], dy=dY, x=Xp,
                                        stride=self.stride, w=self.params["W"])
            self.grads = {"W": dW, "b": db}
            if not input_grad:
                return None
            pad = self.padding  # the padded entries are constants: crop their gradient
            return dXp[(..., *[slice(pad, pad + n) for n in X.shape[2:]])] if pad else dXp
        (X,) = self._cache
        W, b = self.params["W"], self.params["b"]
        k = self._kernels
        self.grads = {"W": k["weight_gradient"](X, dY, np.empty_like(W)),
                      "b": k["bias_gradient"](dY, np.empty_like(b))}
        if not input_grad:
            return None
        return k["input_gradient"](dY, W, np.empty_like(X))


class _generated_kernels:  # noqa: N801 (was a dict; now looked up per call, per backend)
    def __init__(self, prefix: str) -> None:
        self._prefix, self._conv = prefix, kernels("conv")

    def __getitem__(self, name: str):
        return getattr(self._conv, f"{self._prefix}_{name}")


class Conv1d(_Conv):
    """A 1-d convolution: input (batch, c_in, L), output (batch, c_out, L'),
    ``L' = (L + 2 padding - k) // stride + 1``.

    Parameters ``W`` of shape (c_out, c_in, k) and ``b`` of shape (c_out,),
    initialized as PyTorch's ``nn.Conv1d`` does by default: uniform in
    [-1/sqrt(c_in k), 1/sqrt(c_in k)], from ``numpy.random.default_rng(seed)``.
    ``Y[n, o, p] = b[o] + sum_c sum_j Xpad[n, c, stride p + j] W[o, c, j]``, ``Xpad``: X
    with ``padding`` zeros at both ends.
    """

    _kernels = _generated_kernels("conv1d")

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0,
                 dtype=np.float64, seed=None):
        super().__init__(c_in, c_out, (k,), stride, padding, dtype, seed)

    def get_config(self) -> dict:
        return {"c_in": self.c_in, "c_out": self.c_out, "k": self.kernel[0],
                "stride": self.stride, "padding": self.padding, "dtype": self.dtype.name}


class Conv2d(_Conv):
    """A 2-d convolution: input (batch, c_in, H, W), output (batch, c_out, H', W'),
    ``H' = (H + 2 padding - kh) // stride + 1`` (one stride and padding for both axes).

    Parameters ``W`` of shape (c_out, c_in, kh, kw) and ``b`` of shape
    (c_out,), initialized as PyTorch's ``nn.Conv2d`` does by default (uniform
    in +-1/sqrt(c_in kh kw)). Cross-correlation.
    """

    _kernels = _generated_kernels("conv2d")

    def __init__(self, c_in: int, c_out: int, kh: int, kw: int, stride: int = 1,
                 padding: int = 0, dtype=np.float64, seed=None):
        super().__init__(c_in, c_out, (kh, kw), stride, padding, dtype, seed)

    def get_config(self) -> dict:
        return {"c_in": self.c_in, "c_out": self.c_out, "kh": self.kernel[0],
                "kw": self.kernel[1], "stride": self.stride, "padding": self.padding,
                "dtype": self.dtype.name}
