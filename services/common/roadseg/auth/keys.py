"""API keys: made by ``roadseg keys create``, stored only as their SHA-256 in ``ROADSEG_API_KEYS`` or a key file.

A key file holds one key per line, ``name role sha256-hex [revoked]``; the process re-reads it when it
changes, so creating or revoking a key needs no restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from roadseg.auth.identity import Identity, Role
from roadseg.config import InvalidSettings, Settings
from roadseg.errors import Unauthenticated

log = logging.getLogger(__name__)

#: Prefix of keys made by ``roadseg keys create`` (recognisable in logs and secret scanners).
KEY_PREFIX = "rsk_"


def hash_key(key: str) -> str:
    """SHA-256 of a key, as stored: the keys themselves are never written anywhere by roadseg."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """One line of the key file: ``name role sha256-hex [revoked]``."""

    name: str
    role: Role
    sha256: str
    revoked: bool = False

    def line(self) -> str:
        """The entry as a key-file line."""
        return f"{self.name} {self.role.name} {self.sha256}" + (" revoked" if self.revoked else "")


def parse_keys(text: str, where: str) -> list[ApiKey]:
    """Key entries from lines (or ``;``-separated entries); ``#`` starts a comment. Errors name the line."""
    keys = []
    for number, raw in enumerate(text.replace(";", "\n").splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        revoked = fields[3:] == ["revoked"]
        if len(fields) not in (3, 4) or (len(fields) == 4 and not revoked):
            raise InvalidSettings(f"{where} line {number}: expected 'name role sha256-hex [revoked]'")
        name, role, digest = fields[:3]
        if role not in Role.__members__:
            raise InvalidSettings(f"{where} line {number}: role {role!r}; use {', '.join(Role.__members__)}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidSettings(f"{where} line {number}: the key must be stored as its 64-digit sha256 hex")
        keys.append(ApiKey(name, Role[role], digest, revoked))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise InvalidSettings(f"{where}: each key needs its own name")
    return keys


def write_key_file(path: Path, keys: list[ApiKey]) -> None:
    """Write a key file atomically (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("# roadseg API keys: name role sha256-hex [revoked]\n" + "".join(k.line() + "\n" for k in keys))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class KeyRing:
    """The configured API keys: ``ROADSEG_API_KEYS`` plus ``ROADSEG_API_KEYS_FILE``, re-read when the file changes."""

    def __init__(self, inline: str, path: str | None) -> None:
        """Parse the inline keys now (bad entries stop the service); the file is read on first use."""
        self._inline = parse_keys(inline, "ROADSEG_API_KEYS")
        self._path = Path(path) if path else None
        self._stamp: tuple[int, int] | None = None
        self._from_file: list[ApiKey] = []
        self._lock = threading.Lock()

    def keys(self) -> list[ApiKey]:
        """Every configured key; a key file that went missing counts as empty (and is logged)."""
        if self._path is None:
            return list(self._inline)
        with self._lock:
            try:
                stat = self._path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._stamp:
                    self._from_file = parse_keys(self._path.read_text(), str(self._path))
                    self._stamp = stamp
            except FileNotFoundError:
                if self._stamp != (0, 0):
                    log.error("API key file %s is missing: no key from it is accepted", self._path)
                self._from_file, self._stamp = [], (0, 0)
            return self._inline + self._from_file

    def identify(self, key: str, via: Literal["api-key", "session"] = "api-key") -> Identity:
        """The identity of a presented key; :class:`Unauthenticated` for an unknown or revoked one."""
        return self.identify_digest(hash_key(key), via)

    def identify_digest(self, digest: str, via: Literal["api-key", "session"] = "api-key") -> Identity:
        """The identity of a key given by its SHA-256 (a session keeps only that).

        A revoked key is refused without its name: the name is the key owner's business, not the caller's.
        """
        for entry in self.keys():
            if secrets.compare_digest(entry.sha256, digest):
                if entry.revoked:
                    raise Unauthenticated("this API key was revoked")
                return Identity(entry.name, entry.role, via)
        raise Unauthenticated("unknown API key")


@lru_cache(maxsize=4)
def _keyring(inline: str, path: str | None) -> KeyRing:
    return KeyRing(inline, path)


def keyring(settings: Settings) -> KeyRing:
    """The process's keys for these settings (one KeyRing per key source, so the file is watched once)."""
    return _keyring(settings.api_keys, settings.api_keys_file)
