"""Placeholder: sub-commands not built yet."""

import argparse


def _todo(args: argparse.Namespace) -> int:
    raise SystemExit(f"roadseg {args.command}: not implemented yet")


def register(sub) -> None:
    for name in ["demo"]:
        sub.add_parser(name, help="(not implemented yet)").set_defaults(func=_todo)
