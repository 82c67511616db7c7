"""The single ``roadseg`` command: one sub-command per service and tool.

Sub-commands are registered by the service modules (``register(subparsers)``); heavy
imports (TensorFlow, geopandas) happen inside the handlers so ``roadseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TypeAlias

from roadseg import __version__
from roadseg.errors import RoadsegError
from roadseg.logs import setup_logging

#: What each module's ``register(sub)`` receives: the ``roadseg`` parser's ``add_subparsers()`` (a string, since
#: argparse's class is generic only to type checkers).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: Modules that contribute sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES = [
    "roadseg.ingest.cli",
    "roadseg.labeler.cli",
    "roadseg.trainer.cli",
    "roadseg.roadnet.cli",
    "roadseg.gateway.cli",
    "roadseg.missing.cli",
    "roadseg.demo",
    "roadseg.keys_cli",
]


def build_parser() -> argparse.ArgumentParser:
    """The ``roadseg`` parser, with the sub-commands of every module in :data:`COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(
        prog="roadseg",
        description="Find roads in satellite and aerial images: ingest scenes, label them from street "
        "vectors, train and evaluate DeepLabV3+, predict, vectorize and route.",
        epilog="Configuration comes from ROADSEG_* environment variables (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"roadseg {__version__}")
    parser.add_argument("--log-level", default=None, help="logging level (default: ROADSEG_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``roadseg``; a :class:`RoadsegError` prints its message (no traceback) and exits with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        setup_logging(args.log_level)  # reads (and so validates) the settings first
        return int(args.func(args) or 0)
    except RoadsegError as exc:
        print(f"roadseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
