"""``sluice``: plan, profile, simulate and run pipelines on one machine."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

#: One module per subcommand, each with ``register(subparsers)``; the parser it adds sets
#: ``run=callable(args) -> int``.
COMMANDS = ("plan", "profile", "simulate", "split", "up", "variants")


class CommandError(Exception):
    """A user error a command reports in one line (exit status 2)."""


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the command, like every other error of ``sluice``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = _OneLineParser(prog="sluice", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True,
                                       parser_class=_OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"sluice_local.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sluice``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except CommandError as exc:
        print(f"sluice {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
