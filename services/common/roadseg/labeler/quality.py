"""Automatic quality checks of one label mask against its tile, with reasons.

The seed deleted all-road and no-road tiles and then removed broken masks by eye. Here every
tile gets measured numbers and named flags in the label manifest; flagged tiles are shown first
on the review page and left out of the dataset unless a reviewer accepts them.

Misalignment: road edges in the mask should sit on brightness edges in the image. We search
small shifts of the mask-edge pixels over the image gradient magnitude; a mask drawn from offset
vectors scores best at a shift away from zero. Centerline masks rarely match the painted road
width, and in parking lots or on dark asphalt their edges fall on no image edge at all, where any
shift "wins" on noise. So the flag needs all of: a best shift farther than the tolerance but
inside the search window (a maximum on the window's rim is no peak), a clear gain over no shift,
and mask edges that, once shifted, sit on edges clearly stronger than the tile's average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

NO_ROAD, MOSTLY_ROAD, NODATA, MISALIGNED = "no_road", "mostly_road", "nodata", "misaligned"
REASONS = {
    NO_ROAD: "almost no road pixels",
    MOSTLY_ROAD: "almost all pixels are road",
    NODATA: "too much of the tile has no image data",
    MISALIGNED: "mask edges fit the image better when shifted",
}


@dataclass
class QualityParams:
    """Thresholds of the automatic flags (fractions are of the tile's valid pixels)."""

    min_road_fraction: float = 0.005
    max_road_fraction: float = 0.6
    max_nodata_fraction: float = 0.5
    max_shift_px: int = 8
    shift_tolerance_px: float = 2.5
    min_shift_gain: float = 1.5
    min_edge_contrast: float = 1.5
    min_edge_pixels: int = 50


def to_gray(image: np.ndarray) -> np.ndarray:
    """float32 [H,W] brightness of a [H,W], [H,W,C] or [C,H,W]-as-[H,W,C] image of any dtype."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] >= 3 and image.dtype == np.uint8:  # tiles: a table of the 766 means
        return _THIRDS[image[..., 0].astype(np.uint16) + image[..., 1] + image[..., 2]]
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)
    return image.astype(np.float32)


#: ``(r + g + b) / 3`` as float32 for every sum of three uint8 values: what the float64 mean, rounded, gives.
_THIRDS = (np.arange(3 * 255 + 1) / 3).astype(np.float32)


def erode(mask: np.ndarray, border_value: bool) -> np.ndarray:
    """Binary erosion by the 3 x 3 cross, pixels outside the array counting as ``border_value``.

    The same pixels as ``ndimage.binary_erosion(mask, border_value=...)`` (whose default structure is
    that cross) in a fifth of the time: five shifted ANDs instead of a generic structuring element.
    """
    padded = np.pad(mask.astype(bool, copy=False), 1, constant_values=border_value)
    return padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a float32 image, borders mirrored as ``ndimage.sobel``'s "reflect".

    The same values as ``np.hypot(ndimage.sobel(gray, 0), ndimage.sobel(gray, 1))`` up to float32
    rounding, eight times faster on a 256-px tile: each separable kernel as sums of shifted slices.
    """
    padded = np.pad(gray, 1, mode="symmetric")
    rows = padded[:-2] + 2 * padded[1:-1] + padded[2:]  # [1, 2, 1] down the columns: [H, W + 2]
    cols = padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]  # [1, 2, 1] along the rows: [H + 2, W]
    along_x = rows[:, 2:] - rows[:, :-2]
    along_y = cols[2:] - cols[:-2]
    return np.sqrt(along_x * along_x + along_y * along_y)


def alignment(mask_road: np.ndarray, gray: np.ndarray, valid: np.ndarray, max_shift: int) -> dict | None:
    """Best shift (dx, dy) of the mask edges over the image gradient, and how much it gains over no shift.

    Returns None when the mask has no edge pixels (``assess`` also skips masks with too few).
    """
    grad = gradient_magnitude(gray)
    grad[~valid] = 0.0
    edges = mask_road & ~erode(mask_road, border_value=True)
    edges &= erode(valid, border_value=False)  # tile border and nodata borders are not road edges
    ys, xs = np.nonzero(edges)
    if ys.size == 0:
        return None
    size = 2 * max_shift + 1
    # [N, dy, dx]: the gradient around each edge pixel, gathered through a window view (two index arrays
    # of N instead of one of N x size²), summed over the edge pixels: mean gradient under shifted edges.
    windows = sliding_window_view(np.pad(grad, max_shift, mode="constant"), (size, size))
    scores = windows[ys, xs].sum(axis=0) / ys.size
    best_dy, best_dx = np.unravel_index(int(np.argmax(scores)), scores.shape)
    zero = float(scores[max_shift, max_shift])
    best = float(scores[best_dy, best_dx])
    n_valid = int(np.count_nonzero(valid))
    mean_grad = float(grad.sum(dtype=np.float64)) / n_valid if n_valid else 0.0  # nodata's gradient is 0
    return {
        "edge_pixels": int(ys.size),
        "shift": [int(best_dx) - max_shift, int(best_dy) - max_shift],
        "gain": round(best / zero, 3) if zero > 0 else None,
        "edge_contrast": round(zero / mean_grad, 3) if mean_grad > 0 else None,
        "shifted_contrast": round(best / mean_grad, 3) if mean_grad > 0 else None,
        "on_rim": bool(max(abs(int(best_dx) - max_shift), abs(int(best_dy) - max_shift)) == max_shift),
    }


def assess(mask: np.ndarray, image: np.ndarray, valid: np.ndarray, params: QualityParams | None = None) -> dict:
    """Numbers and flags for one tile: ``{"road_fraction", "nodata_fraction", "alignment", "flags"}``."""
    params = params or QualityParams()
    valid = valid.astype(bool)
    n_valid = int(np.count_nonzero(valid))
    road = (mask == 255) & valid
    road_pixels = int(np.count_nonzero(road))
    road_fraction = road_pixels / n_valid if n_valid else 0.0
    nodata_fraction = 1.0 - n_valid / valid.size
    flags = []
    if road_fraction < params.min_road_fraction:
        flags.append(NO_ROAD)
    if road_fraction > params.max_road_fraction:
        flags.append(MOSTLY_ROAD)
    if nodata_fraction > params.max_nodata_fraction:
        flags.append(NODATA)
    align = None
    if 0 < road_pixels < n_valid:
        align = alignment(road, to_gray(image), valid, params.max_shift_px)
        if align and align["edge_pixels"] >= params.min_edge_pixels and align["gain"] is not None:
            far = float(np.hypot(*align["shift"])) > params.shift_tolerance_px
            clear = align["gain"] >= params.min_shift_gain and align["shifted_contrast"] >= params.min_edge_contrast
            if far and clear and not align["on_rim"]:
                flags.append(MISALIGNED)
    return {
        "road_fraction": round(road_fraction, 5),
        "nodata_fraction": round(nodata_fraction, 5),
        "alignment": align,
        "flags": flags,
    }
