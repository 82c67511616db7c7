"""A ground pixel size as users type it, read one way by the API, the page and every command.

The API's form field, the page's field and ``--pixel-size`` of ``roadseg predict``, ``missing``, ``graph``
and ``apls`` (and ``--predict-at`` of ``export`` and ``validate``) all mean metres per pixel; one parser
gives them one range and one message. The argparse types refuse bad values before any work (exit 2).
"""

from __future__ import annotations

import argparse
from typing import Literal

from roadseg.errors import InvalidInput

#: ``--pixel-size auto``: a plain image's scale chosen by the model (:mod:`roadseg.inference.scale`).
AUTO: Literal["auto"] = "auto"
#: A plain image's ground pixel size as users give it: metres, :data:`AUTO`, or None (the model's own).
PixelSize = float | Literal["auto"] | None
#: Coarsest pixel size taken: beyond it no road is a pixel wide, so a larger number is a typo.
MAX_METRES = 1000.0


def parse_pixel_size(text: str | None) -> PixelSize:
    """A pixel size as a user types it: empty is None, ``auto``, or metres above 0 and at most 1000."""
    if text is None or not text.strip():
        return None
    if text.strip().lower() == AUTO:
        return AUTO
    return _metres(text, "a number of metres or 'auto'")


def pixel_size_arg(text: str) -> PixelSize:
    """The argparse type of options that take metres or ``auto`` (``roadseg predict --pixel-size``)."""
    try:
        return parse_pixel_size(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def metres_arg(text: str) -> float:
    """The argparse type of options that take metres only (``auto`` means nothing to them)."""
    try:
        return _metres(text, "a number of metres")
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metres(text: str, expected: str) -> float:
    """Metres above 0 and at most :data:`MAX_METRES`, else :class:`InvalidInput` saying ``expected``."""
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"the pixel size must be {expected}, got {text[:40]!r}") from None
    if not 0 < value <= MAX_METRES:
        raise InvalidInput(f"the pixel size must be above 0 and at most {MAX_METRES:g} m, got {value:g}")
    return value
