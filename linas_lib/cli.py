"""The ``linas`` command line: headless entry points (notebooks, LUTs) for any machine.

Imports are lazy so ``linas lut ...`` works where only torch is installed (GPU boxes).
"""

from __future__ import annotations

import argparse
import sys


def _cmd_notebook(args: argparse.Namespace) -> int:
    from .runner import run_notebook

    executed = run_notebook(args.name, args.profile, args.seed, html=not args.no_html)
    print(f"executed {executed}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``linas``."""
    parser = argparse.ArgumentParser(prog="linas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    nb = sub.add_parser("notebook", help="execute a notebook with papermill (and render HTML)")
    nb.add_argument("name", help="notebook name, e.g. 00_data")
    nb.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    nb.add_argument("--seed", type=int, default=0)
    nb.add_argument("--no-html", action="store_true", help="skip the nbconvert HTML rendering")
    nb.set_defaults(func=_cmd_notebook)

    # `linas lut build|check` is added by linas_lib.latency (see _add_lut_commands).
    _add_lut_commands(sub)
    return parser


def _add_lut_commands(sub) -> None:
    """Placeholder hook for the LUT commands; replaced when the latency package lands."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``linas`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"linas: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
