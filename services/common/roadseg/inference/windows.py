"""Sliding-window prediction of images of any size, streamed row of windows by row of windows.

The model sees fixed-size windows that overlap; each window's probabilities are weighted by a
2D Hann window and the weighted sum is divided by the sum of weights. The taper hides the
seams that plain tiling leaves (predictions degrade near a window's edge), and dividing by
the weight sum keeps the image borders exact where only one window covers a pixel.

Memory is bounded by two bands of rows (``window`` rows x image width: the one being predicted and
the next, decoded ahead) plus one batch of windows: finished rows are handed to the caller as soon as
no later window can touch them.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

#: (row_off, height) -> (uint8 [height, width, 3] image rows, bool [height, width] valid pixels)
ReadRows = Callable[[int, int], tuple[np.ndarray, np.ndarray]]
#: uint8 [N, h, w, 3] -> float32 [N, h, w, C] probabilities, a channel per model output
PredictBatch = Callable[[np.ndarray], np.ndarray]


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with windows of ``window`` overlapping by at least ``overlap``.

    The last window is aligned with the end, so every window lies fully inside the image
    (no padding at the far edge); an image shorter than the window gets one short window.
    """
    if window <= overlap:
        raise ValueError(f"window ({window}) must be larger than overlap ({overlap})")
    if length <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    return starts


def fit_window(height: int, width: int, window: int, overlap: int) -> tuple[int, int]:
    """Window (height, width) for an image: per side the fewest windows of at most ``window`` px, no larger than needed.

    Windows of ``window`` px with the last one pushed back to the image's end overlap much more than
    ``overlap`` where a side is not a whole number of strides (a 1500 px side takes four 512 px windows,
    2048 px of model input). The same count of windows just large enough to cover the side with
    ``overlap`` (a multiple of 16) wastes nothing: 480 px there, or two 816 px windows instead of two of
    1024. A side up to ``window`` px is one window, as long as the side.
    """

    def side(length: int) -> int:
        if length <= window:
            return window  # one window, as short as the side
        count = math.ceil((length - overlap) / (window - overlap))
        return min(window, -(-math.ceil((length + (count - 1) * overlap) / count) // 16) * 16)

    return side(height), side(width)


def pair(window: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a square (``int``) or fitted (``(h, w)``) window."""
    return (window, window) if isinstance(window, int) else window


def hann_weights(height: int, width: int) -> np.ndarray:
    """2D Hann taper, strictly positive so a pixel covered by one window edge still gets a weight.

    Sampling the Hann curve at pixel centres (``i + 0.5``) instead of at the ends avoids exact
    zeros at the borders.
    """

    def one_d(n: int) -> np.ndarray:
        return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2

    return np.outer(one_d(height), one_d(width)).astype(np.float32)


def shard_rows(height: int, window: int, overlap: int, first: int, stop: int) -> tuple[list[int], int, int]:
    """(window row starts to run, first output row, end output row) of the shard owning window rows ``[first, stop)``.

    Shards meet where a shard's last own window ends: the rows above that seam are final once the
    shard's windows ran plus the next shard's first row of windows (its halo, run by both), so each
    shard writes ``[row_from, row_to)`` and the bands tile the image without a gap or an overlap.
    """
    rows = window_starts(height, window, overlap)
    win_h = min(window, height)
    row_from = rows[first - 1] + win_h if first > 0 else 0
    row_to = rows[stop - 1] + win_h if stop < len(rows) else height
    return [r for r in rows if r < row_to and r + win_h > row_from], row_from, row_to


def count_windows(height: int, width: int, window: int | tuple[int, int], overlap: int) -> int:
    """How many windows :func:`sliding_predict` will run (for progress reporting)."""
    window_h, window_w = pair(window)
    return len(window_starts(height, window_h, overlap)) * len(window_starts(width, window_w, overlap))


def sliding_predict(
    read_rows: ReadRows,
    predict: PredictBatch,
    height: int,
    width: int,
    window: int | tuple[int, int],
    overlap: int,
    batch: int,
    progress: Callable[[int, int], None] | None = None,
    row_starts: list[int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row_off, probabilities float32 [rows, width, C])`` bands covering the image top to bottom.

    Pixels outside the valid mask (nodata, alpha 0) get probability 0. ``progress(done, total)``
    is called after every model call with the number of windows predicted so far.

    The next row of windows is read in a thread while the model runs on this one (decoding a
    1500 px JPEG's row took 37 ms, serial to the model before). ``read_rows`` is therefore called
    from that thread, one call at a time, in row order, up to one row ahead of the band yielded, in a
    copy of the caller's context: rasterio finds the Python opener of a dataset in storage (GCS) through
    a context variable, and GDAL's first read looks for sidecar files with it.

    ``row_starts`` (consecutive entries of :func:`window_starts`) runs only those rows of windows, for
    one shard of an image: its bands then start at the first of them, and a row is final only where
    every window covering it was among them. Such rows get the very same arithmetic, in the same
    order, as in a run over all rows, so a sharded image equals one predicted whole.
    """
    window_h, window_w = pair(window)
    win_h, win_w = min(window_h, height), min(window_w, width)
    rows = window_starts(height, window_h, overlap) if row_starts is None else row_starts
    cols = window_starts(width, window_w, overlap)
    weights = hann_weights(win_h, win_w)[..., None]
    total, done = len(rows) * len(cols), 0
    # Accumulators for image rows [top, top + win_h): weighted sum (a channel per output, sized by the
    # first model call) and weight sum.
    acc = np.zeros((win_h, width, 0), np.float32)
    wsum = np.zeros((win_h, width, 1), np.float32)
    top = rows[0]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
        reading = reader.submit(contextvars.copy_context().run, read_rows, rows[0], win_h)
        for index, row_off in enumerate(rows):
            if row_off > top:
                yield top, _finish(acc, wsum, row_off - top)
                _shift(acc, wsum, row_off - top)
                top = row_off
            image, valid = reading.result()
            if index + 1 < len(rows):
                reading = reader.submit(contextvars.copy_context().run, read_rows, rows[index + 1], win_h)
            for first in range(0, len(cols), batch):
                chunk = cols[first : first + batch]
                windows = np.stack([image[:, c : c + win_w] for c in chunk])
                probs = predict(windows)
                if acc.shape[-1] != probs.shape[-1]:  # the first call says how many outputs the model has
                    acc = np.zeros((win_h, width, probs.shape[-1]), np.float32)
                for c, prob in zip(chunk, probs, strict=True):
                    acc[:, c : c + win_w] += prob * weights
                    wsum[:, c : c + win_w] += weights
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            # Nodata pixels end at probability 0: every window touching them zeroes their weighted sum.
            acc[~valid] = 0.0
    yield top, _finish(acc, wsum, min(height - top, win_h))


def _finish(acc: np.ndarray, wsum: np.ndarray, n: int) -> np.ndarray:
    """Normalized probabilities of the first ``n`` accumulated rows (a copy: the buffers are reused)."""
    return acc[:n] / np.maximum(wsum[:n], np.float32(1e-12))


def _shift(acc: np.ndarray, wsum: np.ndarray, n: int) -> None:
    """Drop the first ``n`` (finished) rows of the accumulators and clear the freed rows at the end.

    ``n`` is at most the stride, always smaller than the buffer height.
    """
    for buf in (acc, wsum):
        buf[:-n] = buf[n:].copy()
        buf[-n:] = 0.0


#: Resolution ratios closer to 1 than this are left alone (the models train with +-25 % scale jitter).
MIN_RESAMPLE = 1.25
#: Bounds of the model/image pixel-size ratio: finer than 1/8 of the model's pixel size still works,
#: while upsampling more than 2x would multiply the model's work by more than 4 for little gain.
FACTOR_RANGE = (0.5, 8.0)


def model_resolution(image_pixel_m: float | None, card: dict) -> float | None:
    """The ground pixel size (m) to predict an image at, from the model card; None: leave it alone.

    A card with ``pixel_size_range_m`` (a model trained across resolutions) keeps images inside the
    range as they are and brings others to the nearest bound; a card with only ``pixel_size_m``
    (trained at one resolution) asks for exactly that. Unknown image pixel sizes (plain PNG/JPEG)
    are never resampled.
    """
    if not image_pixel_m:
        return None
    if card.get("pixel_size_range_m"):
        low, high = card["pixel_size_range_m"]
        target = min(max(image_pixel_m, low), high)
        return None if target == image_pixel_m else target
    return card.get("pixel_size_m")


def resolution_factor(image_pixel_m: float | None, model_pixel_m: float | None) -> float:
    """How many image pixels make one model pixel (>1: shrink the image), or 1.0 to leave it alone.

    1.0 when either pixel size is unknown or they are within :data:`MIN_RESAMPLE` of each other.
    """
    if not image_pixel_m or not model_pixel_m:
        return 1.0
    factor = model_pixel_m / image_pixel_m
    if abs(math.log(factor)) < math.log(MIN_RESAMPLE):
        return 1.0
    return min(max(factor, FACTOR_RANGE[0]), FACTOR_RANGE[1])


def resampled(predict: PredictBatch, factor: float) -> PredictBatch:
    """``predict`` applied to windows resized by ``1 / factor``; probabilities resized back to the window.

    Box filtering when shrinking (every input pixel counts, no aliasing), bilinear when enlarging and
    for the probabilities, so the output grid is the input's and nothing downstream changes.
    """

    def run(images: np.ndarray) -> np.ndarray:
        count, height, width, _ = images.shape
        size = (max(16, round(width / factor)), max(16, round(height / factor)))
        method = Image.Resampling.BOX if factor > 1 else Image.Resampling.BILINEAR
        small = np.stack([np.asarray(Image.fromarray(image).resize(size, method)) for image in images])
        probabilities = predict(small)
        channels = probabilities.shape[-1]
        back = [
            [
                np.asarray(
                    Image.fromarray(p[..., k].astype(np.float32), mode="F").resize(
                        (width, height), Image.Resampling.BILINEAR
                    )
                )
                for k in range(channels)
            ]
            for p in probabilities
        ]
        return (
            np.clip(np.asarray(back, np.float32), 0.0, 1.0)
            .transpose(0, 2, 3, 1)
            .reshape(count, height, width, channels)
        )

    return run
