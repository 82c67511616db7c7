"""Sliding-window blending: exact for per-pixel models, seamless, streamed in bounded bands."""

from __future__ import annotations

import numpy as np
import pytest
from roadseg.inference.windows import count_windows, hann_weights, sliding_predict, window_starts


def brightness(batch: np.ndarray) -> np.ndarray:
    """A per-pixel 'model': every window that sees a pixel agrees on it, so blending must reproduce it."""
    return batch.mean(axis=-1, keepdims=True).astype(np.float32) / 255.0


def run(image: np.ndarray, valid: np.ndarray, predict, window: int, overlap: int, batch: int = 3):
    height, width = image.shape[:2]
    calls: list[int] = []
    bands = list(
        sliding_predict(
            lambda row, rows: (image[row : row + rows], valid[row : row + rows]),
            lambda b: (calls.append(len(b)), predict(b))[1],
            height,
            width,
            window,
            overlap,
            batch,
        )
    )
    return bands, calls


@pytest.mark.parametrize("length,window,overlap", [(1000, 256, 64), (256, 256, 64), (100, 256, 64), (257, 256, 0)])
def test_window_starts_cover_everything_inside_the_image(length, window, overlap):
    starts = window_starts(length, window, overlap)
    size = min(window, length)
    covered = np.zeros(length, bool)
    for s in starts:
        assert s >= 0 and s + size <= length
        covered[s : s + size] = True
    assert covered.all()
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_hann_weights_are_positive_and_peak_in_the_middle():
    w = hann_weights(64, 32)
    assert w.shape == (64, 32) and w.min() > 0
    assert w[32, 16] == pytest.approx(w.max()) and w[0, 0] < 0.01


@pytest.mark.parametrize("height,width", [(300, 517), (128, 128), (40, 700), (1000, 90)])
def test_blending_reproduces_a_per_pixel_model_exactly(height, width):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    valid = np.ones((height, width), bool)
    bands, calls = run(image, valid, brightness, window=128, overlap=32)
    rows = [row for row, _ in bands]
    assert rows == sorted(rows) and rows[0] == 0
    assert sum(b.shape[0] for _, b in bands) == height  # every row exactly once
    out = np.concatenate([b for _, b in bands])
    np.testing.assert_allclose(out, brightness(image[None])[0], atol=1e-5)
    assert sum(calls) == count_windows(height, width, 128, 32) and max(calls) <= 3


def test_bands_are_bounded_by_the_window_and_nodata_is_zero():
    image = np.full((1000, 400, 3), 200, np.uint8)
    valid = np.ones((1000, 400), bool)
    valid[:, :50] = False
    bands, _ = run(image, valid, brightness, window=128, overlap=32)
    assert max(b.shape[0] for _, b in bands) <= 128
    out = np.concatenate([b for _, b in bands])
    assert (out[:, :50] == 0).all()
    np.testing.assert_allclose(out[:, 50:], 200 / 255, atol=1e-5)


def test_blending_hides_window_seams():
    """A model that is worse near window edges (as CNNs are) leaves no seam after Hann blending."""
    image = np.full((600, 600, 3), 128, np.uint8)
    valid = np.ones((600, 600), bool)

    def edge_biased(batch: np.ndarray) -> np.ndarray:
        n, h, w, _ = batch.shape
        y, x = np.mgrid[0:h, 0:w]
        edge = np.minimum.reduce([y, x, h - 1 - y, w - 1 - x]) < 8
        return np.broadcast_to(np.where(edge, 0.0, 1.0).astype(np.float32)[..., None], (n, h, w, 1))

    bands, _ = run(image, valid, edge_biased, window=128, overlap=64)
    out = np.concatenate([b for _, b in bands])
    inner = out[8:-8, 8:-8]  # the image border is covered by window edges only
    # Plain averaging of the same windows would leave 0.5 along every seam; the taper keeps the bad
    # edge at a few percent weight (worst where the end-aligned last window overlaps its neighbour).
    assert inner.min() > 0.85 and np.mean(inner > 0.95) > 0.98


@pytest.mark.parametrize("overlap", [0, 64, 128])
@pytest.mark.parametrize("window", [256, 512, 1024])
def test_fitted_windows_are_no_more_and_no_larger_and_keep_the_overlap(window, overlap):
    """Per side: never more windows than the fixed size, never larger, the overlap kept, and less model input."""
    from roadseg.inference.windows import fit_window

    for height, width in [(1500, 1500), (32768, 2048), (700, 900), (100, 3000), (window + 1, window), (64, 64)]:
        fitted = fit_window(height, width, window, overlap)
        assert count_windows(height, width, fitted, overlap) <= count_windows(height, width, window, overlap)
        seen, fixed = 1, 1
        for length, size in zip((height, width), fitted, strict=True):
            assert size <= window and (length <= window or size % 16 == 0)
            starts = window_starts(length, size, overlap)
            gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
            assert all(min(size, length) - gap >= overlap for gap in gaps)  # neighbours overlap enough
            assert starts[-1] + min(size, length) == length  # the side is covered to its end
            seen *= len(starts) * min(size, length)
            fixed *= len(window_starts(length, window, overlap)) * min(window, length)
        assert seen <= fixed
    assert fit_window(1500, 1500, 1024, 128) == (816, 816) and fit_window(1500, 1500, 512, 128) == (480, 480)


def test_rows_are_read_ahead_from_an_image_in_gcs(fake_gcs, tmp_path):
    """The read-ahead thread reads a dataset opened through rasterio's Python opener (GCS) in another thread.

    Opened without the read probe, the first read (GDAL's look for a mask sidecar) happens in that thread,
    which must see the opener: before, it failed with a SystemError inside rasterio.
    """
    import uuid

    from PIL import Image
    from rasterio.windows import Window
    from roadseg import raster
    from roadseg.storage import GCSStorage

    image = np.random.default_rng(2).integers(0, 256, size=(300, 200, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    storage = GCSStorage(f"windows-{uuid.uuid4().hex[:8]}")
    storage.write_file("in/photo.png", tmp_path / "photo.png")
    with raster.open_stored(storage, "in/photo.png", probe=False) as ds:
        stretch = raster.compute_stretch(ds)
        bands = list(
            sliding_predict(
                lambda row, rows: raster.read_rgb_window(ds, Window(0, row, ds.width, rows), stretch),
                brightness,
                ds.height,
                ds.width,
                128,
                32,
                2,
            )
        )
    out = np.concatenate([b for _, b in bands])
    np.testing.assert_allclose(out, brightness(image[None])[0], atol=1e-5)
