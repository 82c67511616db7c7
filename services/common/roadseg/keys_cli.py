"""``roadseg keys``: make, revoke and list API keys in a key file (``ROADSEG_API_KEYS_FILE``).

The file holds only each key's SHA-256; the key itself is printed once, at creation.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roadseg.cli import Subcommands

EPILOG = """examples:
  roadseg keys create ci --role operator --file var/api-keys.txt      # prints the key once
  roadseg keys revoke ci --file var/api-keys.txt                      # refused from the next request on
  roadseg keys list --file var/api-keys.txt
  kubectl create secret generic roadseg-api-keys --from-file=api-keys.txt=var/api-keys.txt   # on GKE
Scripts send the key as 'Authorization: Bearer <key>' (roadseg demo: ROADSEG_API_KEY)."""


def register(sub: Subcommands) -> None:
    """Add ``keys create|revoke|list``."""
    p = sub.add_parser(
        "keys",
        help="make, revoke and list API keys",
        description="Manage the API key file services read (ROADSEG_API_KEYS_FILE): one 'name role sha256' per key.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="add a key with a role and print it (once)")
    create.add_argument("name", help="who or what uses the key (letters, digits, - _ . @)")
    create.add_argument("--role", required=True, choices=["viewer", "labeler", "operator", "admin"])
    revoke = actions.add_parser("revoke", help="mark a key revoked (kept in the file, refused by the services)")
    revoke.add_argument("name")
    listing = actions.add_parser("list", help="names, roles and whether revoked (never the keys)")
    for action in (create, revoke, listing):
        action.add_argument("--file", required=True, type=Path, help="the key file (created when missing)")
    p.set_defaults(func=keys_command)


def keys_command(args: argparse.Namespace) -> int:
    """Run one key action; the file is rewritten atomically."""
    import re
    from dataclasses import replace

    from roadseg.auth import ApiKey, Role, hash_key, new_key, parse_keys, write_key_file
    from roadseg.errors import InvalidInput, NotFound

    keys = parse_keys(args.file.read_text(), str(args.file)) if args.file.exists() else []
    if args.action == "list":
        for entry in keys:
            print(f"{entry.name}\t{entry.role.name}\t{'revoked' if entry.revoked else 'active'}")
        return 0
    if args.action == "create":
        if not re.fullmatch(r"[\w.@-]+", args.name):
            raise InvalidInput(f"key name {args.name!r}: use letters, digits and - _ . @")
        if any(k.name == args.name for k in keys):
            raise InvalidInput(f"{args.file} already has a key named {args.name!r}; revoke it or pick another name")
        key = new_key()
        args.file.parent.mkdir(parents=True, exist_ok=True)
        write_key_file(args.file, [*keys, ApiKey(args.name, Role[args.role], hash_key(key))])
        print(key)
        return 0
    if not any(k.name == args.name for k in keys):
        raise NotFound(f"{args.file} has no key named {args.name!r}")
    write_key_file(args.file, [replace(k, revoked=True) if k.name == args.name else k for k in keys])
    return 0
