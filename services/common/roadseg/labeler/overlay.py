"""Mask-over-image pictures for people: the review page and test artifacts."""

from __future__ import annotations

import io

import numpy as np

ROAD_RGB = (255, 40, 200)
IGNORE_RGB = (40, 120, 255)


def overlay(image_rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.45, outline_only: bool = False) -> np.ndarray:
    """uint8 [H,W,3]: road pixels tinted magenta (or only their outline), ignored pixels tinted blue."""
    out = image_rgb.astype(np.float32).copy()
    road = mask == 255
    if outline_only:
        from scipy import ndimage

        road = road & ~ndimage.binary_erosion(road, border_value=1)
    ignore = (mask != 255) & (mask != 0)
    for sel, colour in ((road, ROAD_RGB), (ignore, IGNORE_RGB)):
        out[sel] = (1 - alpha) * out[sel] + alpha * np.array(colour, dtype=np.float32)
    return out.clip(0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 image array ([H,W], [H,W,3] or [H,W,4]) as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
