"""Unrolling: the per-layer weights and biases as one long parameter vector.

An optimizer such as the notes' ``fminunc`` (here ``scipy.optimize.minimize``)
wants a single vector ``theta``; the network keeps one matrix and one vector
per layer. ``unroll`` and ``roll`` convert between the two, exactly, in two
orders:

``"ours"``
    layer by layer, ``W_l`` flattened row by row (C order) followed by ``b_l``.

``"octave"``
    the Coursera layout: ``Theta_l = [b_l | W_l]`` with the bias column first,
    flattened column by column (``Theta_l(:)``, Fortran order), concatenated
    over layers: ``thetaVector = [Theta1(:); Theta2(:); ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

ORDERS = ("ours", "octave")


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; valid orders: {', '.join(ORDERS)}")


def to_theta(W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The notes' Theta^(l) = [b | W], shape (n_out, n_in + 1), bias column first."""
    return np.column_stack([b, W])


def from_theta(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split Theta^(l) = [b | W] back into (W, b), both fresh arrays."""
    return theta[:, 1:].copy(), theta[:, 0].copy()


def n_parameters(layer_sizes: Sequence[int]) -> int:
    """Number of entries in the unrolled vector: sum of (n_in + 1) * n_out."""
    return sum((n_in + 1) * n_out for n_in, n_out in pairwise(layer_sizes))


def unroll(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], order: str = "ours"
) -> np.ndarray:
    """Concatenate every layer's weights and biases into one 1-D vector (a copy)."""
    _check_order(order)
    if len(weights) != len(biases):
        raise ValueError(f"{len(weights)} weight matrices but {len(biases)} bias vectors")
    pieces = []
    for l, (W, b) in enumerate(zip(weights, biases, strict=True)):
        W, b = np.asarray(W), np.asarray(b)
        if W.ndim != 2 or b.shape != (W.shape[0],):
            raise ValueError(
                f"layer {l}: weights {W.shape} and biases {b.shape} do not fit "
                "(expected (n_out, n_in) and (n_out,))"
            )
        if order == "ours":
            pieces += [W.ravel(order="C"), b]
        else:
            pieces.append(to_theta(W, b).ravel(order="F"))  # Theta(:)
    return np.concatenate(pieces)


def roll(
    vector: np.ndarray, layer_sizes: Sequence[int], order: str = "ours"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Inverse of `unroll`: fresh (weights, biases) lists for ``layer_sizes``.

    The notes' ``reshape(thetaVector(1:110), 10, 11)`` is the ``"octave"`` branch.
    """
    _check_order(order)
    vector = np.asarray(vector)
    sizes = [int(n) for n in layer_sizes]
    if vector.ndim != 1:
        raise ValueError(f"expected a 1-D parameter vector, got shape {vector.shape}")
    expected = n_parameters(sizes)
    if vector.size != expected:
        raise ValueError(
            f"parameter vector has {vector.size} entries but layer sizes {sizes} need {expected}"
        )
    weights, biases = [], []
    start = 0
    for n_in, n_out in pairwise(sizes):
        block = vector[start : start + (n_in + 1) * n_out]
        start += block.size
        if order == "ours":
            weights.append(block[: n_in * n_out].reshape(n_out, n_in).copy())
            biases.append(block[n_in * n_out :].copy())
        else:
            W, b = from_theta(block.reshape((n_out, n_in + 1), order="F"))
            weights.append(W)
            biases.append(b)
    return weights, biases


def get_parameters(net, order: str = "ours") -> np.ndarray:
    """The network's current parameters as one vector (a copy)."""
    return unroll(net.weights, net.biases, order=order)


def set_parameters(net, vector: np.ndarray, order: str = "ours") -> None:
    """Write ``vector`` into the network's arrays in place (dtype of the network kept)."""
    weights, biases = roll(vector, net.layer_sizes, order=order)
    for W, W_new, b, b_new in zip(net.weights, weights, net.biases, biases, strict=True):
        W[...] = W_new
        b[...] = b_new
