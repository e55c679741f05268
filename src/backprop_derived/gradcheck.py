"""The ``gradcheck`` command, and `eps_sweep`: gradient checking from the outside.

The check itself, `gradient_check` and its report, is gradient_checking.py
(the models' ``gradcheck`` method runs it too); its module docstring explains
the error measure, the floor and the relu kinks.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from backprop_derived.gradient_checking import (
    KINDS,
    KINKS,
    GradientCheckReport,
    KinkWarning,
    gradient_check,
)

# The check's own names (gradient_check, its report, KINKS) are imported from
# gradient_checking.py above and documented there.
__all__ = ["EpsSweep", "add_gradcheck_command", "eps_sweep", "main", "random_problem",
           "run_gradcheck"]


@dataclass
class EpsSweep:
    """Max and median relative error of the gradient check for each eps."""

    eps: np.ndarray
    max_relative_error: np.ndarray
    median_relative_error: np.ndarray

    @property
    def best_eps(self) -> float:
        return float(self.eps[np.nanargmin(self.max_relative_error)])


def eps_sweep(net, X, Y, eps_values=None, floor: float = 1e-12) -> EpsSweep:
    """`gradient_check` for eps = 1e-1, 1e-2, ..., 1e-10 (or ``eps_values``).

    A fixed, tiny ``floor`` here: the point is to see the raw errors.

    An eps too small for the network's dtype (theta + eps == theta) gives NaN.
    """
    eps_values = np.logspace(-1, -10, 10) if eps_values is None else np.asarray(eps_values, float)
    worst, median = [], []
    for eps in eps_values:
        try:
            report = gradient_check(net, X, Y, eps=float(eps), floor=floor)
        except ValueError:  # eps below the dtype's resolution: no finite difference at all
            worst.append(np.nan)
            median.append(np.nan)
            continue
        counted = np.concatenate(
            [report.relative_error[k][~report.on_kink[k]] for k in report.relative_error]
        )
        worst.append(report.max_relative_error)
        median.append(float(np.median(counted)) if counted.size else 0.0)
    return EpsSweep(eps_values, np.array(worst), np.array(median))


# ------------------------------------------------------------------ command line
def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(item) for item in _comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--layers",
        type=_int_list,
        default=[4, 5, 3],
        help="layer sizes, input first (default 4,5,3)",
    )
    parser.add_argument(
        "--activations",
        type=_comma_list,
        default=["tanh", "softmax"],
        help="one activation per non-input layer (default tanh,softmax)",
    )
    parser.add_argument(
        "--loss",
        default="cross_entropy",
        help="squared_error, binary_cross_entropy or cross_entropy (default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and data (default 0)")
    parser.add_argument(
        "--batch", type=int, default=5, help="number of random examples (default 5)"
    )
    parser.add_argument("--l2", type=float, default=0.0, help="L2 strength lambda (default 0)")
    parser.add_argument(
        "--eps", type=float, default=1e-4, help="finite-difference step (default 1e-4)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-5,
        help="largest accepted error of a parameter, relative to the largest gradient "
        "of its layer's weights or biases (default 1e-5)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (by default one appears on stderr when the check takes over 1 s)",
    )
    parser.set_defaults(handler=run_gradcheck)
    return parser


def add_gradcheck_command(subparsers) -> argparse.ArgumentParser:
    """Register ``gradcheck`` on an argparse subparsers object.

    The handler is stored as ``handler``: the caller runs ``args.handler(args)`` and
    uses the returned integer as the exit status (0 passed, 1 failed, 2 bad input).
    """
    parser = subparsers.add_parser(
        "gradcheck",
        help="check backpropagation against finite differences on a random network",
        description="Build a random network and batch, compare Network.gradients with central "
        "differences of Network.loss and print the report. Exit status 1 if it fails.",
    )
    return _configure(parser)


def random_problem(layers, activations, loss, seed=0, batch=5, l2=0.0):
    """A random network with seeded weights, and a random batch (X, Y) that fits its loss."""
    from backprop_derived import Network

    net = Network(layer_sizes=layers, activations=activations, loss=loss, l2=l2, seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(batch, layers[0]))
    K = layers[-1]
    if loss == "cross_entropy":
        Y = rng.integers(0, K, size=batch)
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, size=(batch, K)).astype(np.float64)
    else:
        Y = rng.normal(size=(batch, K))
    return net, X, Y


def run_gradcheck(args: argparse.Namespace) -> int:
    import sys

    if args.batch < 1:
        print("gradcheck: --batch must be >= 1", file=sys.stderr)
        return 2
    try:
        net, X, Y = random_problem(
            args.layers, args.activations, args.loss, seed=args.seed, batch=args.batch, l2=args.l2
        )
        report = gradient_check(
            net, X, Y, eps=args.eps, tolerance=args.tolerance, progress=not args.no_progress
        )
    except ValueError as error:
        print(f"gradcheck: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.passed else 1


def main(argv=None) -> int:
    """``python -m backprop_derived.gradcheck [options]``: the same as the CLI subcommand."""
    parser = _configure(argparse.ArgumentParser(prog="backprop-derived gradcheck"))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
