"""A hand-tuned prototype of the kernel sequence recommended for the generated code.

Not a contender: it exists so that the advice given to the code generator
("ufuncs with out=, workspaces reused per batch size, g' through the stored
activation, 1/m folded into the output delta, db as a GEMV, no transposed
copies") is a measured claim rather than a guess. ``benchmarks.micro`` times
it next to the bare GEMMs. tanh hidden layers, softmax + cross-entropy output,
one-hot Y that sums to one per row (the assumption under delta = a - y).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class PrototypePass:
    def __init__(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], m: int,
                 fresh_outputs: bool = False) -> None:  # fmt: skip
        self.W, self.b = list(weights), list(biases)
        dtype = self.W[0].dtype
        self.inv_m = dtype.type(1 / m)
        # Workspaces for one batch size: A_1..A_L (Z is overwritten by g(Z) in
        # place: backward needs only a), two delta-sized buffers per layer
        # (dA/dZ and the g' scratch), a few row vectors.
        self.A = [np.empty((m, W.shape[0]), dtype) for W in self.W]
        self.dZ = [np.empty((m, W.shape[0]), dtype) for W in self.W]
        self.scratch = [np.empty((m, W.shape[0]), dtype) for W in self.W]
        self.row_max = np.empty((m, 1), dtype)
        self.row_sum = np.empty((m, 1), dtype)
        self.ones = np.ones(m, dtype)
        self.fresh_outputs = fresh_outputs
        self.dW = [np.empty_like(W) for W in self.W]
        self.db = [np.empty_like(b) for b in self.b]

    def __call__(self, X: np.ndarray, Y: np.ndarray):
        W, b, A, dZ, L = self.W, self.b, self.A, self.dZ, len(self.W)
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or inf")
        prev = X
        for l in range(L - 1):
            np.matmul(prev, W[l].T, out=A[l])  # BLAS takes the transpose flag
            A[l] += b[l]
            np.tanh(A[l], out=A[l])
            prev = A[l]
        out = A[-1]
        np.matmul(prev, W[-1].T, out=out)
        out += b[-1]
        # log-sum-exp with the row max: exp cannot overflow, the max row term is exp(0) = 1
        np.max(out, axis=1, keepdims=True, out=self.row_max)
        out -= self.row_max
        delta = dZ[-1]
        np.exp(out, out=delta)
        np.sum(delta, axis=1, keepdims=True, out=self.row_sum)
        # loss = mean_i (log sum_k e^{z_ik} - sum_k y_ik z_ik), z shifted by the row max
        loss = (np.log(self.row_sum).sum() - np.vdot(Y, out)) * self.inv_m
        delta /= self.row_sum  # softmax a
        delta -= Y  # a - y (softmax + cross-entropy)
        delta *= self.inv_m  # 1/m folded into the (m, n_L) delta, not into every dW
        dW = [np.empty_like(w) for w in W] if self.fresh_outputs else self.dW
        db = [np.empty_like(v) for v in b] if self.fresh_outputs else self.db
        for l in reversed(range(L)):
            a_prev = A[l - 1] if l > 0 else X
            np.matmul(delta.T, a_prev, out=dW[l])
            np.matmul(self.ones, delta, out=db[l])  # sum over the batch as a GEMV
            if l > 0:
                dA, s = dZ[l - 1], self.scratch[l - 1]
                np.matmul(delta, W[l], out=dA)
                np.multiply(a_prev, a_prev, out=s)  # tanh' = 1 - a^2, from the stored a
                np.subtract(1, s, out=s)
                dA *= s
                delta = dA
        return loss, dW, db
