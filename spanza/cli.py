"""The `spanza` command."""

from __future__ import annotations

import argparse
import sys

import spanza


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spanza", description=spanza.__doc__)
    p.add_argument("--version", action="version", version=f"spanza {spanza.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_derper(sub)
    return p


def _add_derper(sub: argparse._SubParsersAction) -> None:
    from spanza._derper_cli import add_derper_parser

    add_derper_parser(sub)


def main(argv: list[str] | None = None) -> int:
    from spanza._derper_cli import go_style_args

    parser = build_parser()
    args = parser.parse_args(go_style_args(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 2
    if hasattr(args, "func"):
        return args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
