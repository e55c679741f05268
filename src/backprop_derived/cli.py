"""``backprop-derived`` command line (also ``python -m backprop_derived``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _regenerate(args: argparse.Namespace) -> int:
    # Imported here: the SymPy side is only needed by this command.
    from .symbolic.regenerate import main

    root = Path(args.root).resolve()
    if not (root / "derivations").is_dir():
        print(f"error: {root} has no derivations/ folder; run from the repository root "
              "or pass --root", file=sys.stderr)
        return 2
    return main(root, check_only=args.check, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backprop-derived",
        description="Backpropagation derived by SymPy and generated into NumPy.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    regen = sub.add_parser(
        "regenerate",
        help="rerun derivations/ and rewrite the generated code and LaTeX",
        description="Execute every derivations/NN_*.py and write the generated NumPy "
        "module and LaTeX fragments. Nothing is written if any derivation fails.",
    )
    regen.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 with a diff if the files are stale")
    regen.add_argument("--root", default=".", help="repository root (default: .)")
    regen.add_argument("--quiet", action="store_true", help="print only errors and diffs")
    regen.set_defaults(handler=_regenerate)
    from .gradcheck import add_gradcheck_command

    add_gradcheck_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)
