"""Automatic quality flags: road fraction, nodata, and the misalignment shift search."""

from __future__ import annotations

import numpy as np
from roadseg.labeler.quality import MISALIGNED, MOSTLY_ROAD, NO_ROAD, NODATA, assess


def _scene():
    """A noisy grey image with two bright roads (a horizontal and a vertical one) and their exact mask."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (256, 256)).astype(np.float32)
    mask = np.zeros((256, 256), np.uint8)
    for rows, cols in ((slice(100, 120), slice(None)), (slice(None), slice(40, 52))):
        image[rows, cols] += 60
        mask[rows, cols] = 255
    return np.repeat(image[..., None], 3, axis=2), mask


def test_aligned_mask_is_not_flagged_and_shifted_mask_is():
    image, mask = _scene()
    valid = np.ones(mask.shape, bool)
    good = assess(mask, image, valid)
    assert good["flags"] == [] and good["alignment"]["shift"] == [0, 0]
    assert good["road_fraction"] == round((mask == 255).mean(), 5)
    shifted = np.roll(np.roll(mask, 6, axis=0), -5, axis=1)  # 6 px down, 5 px left
    bad = assess(shifted, image, valid)
    assert bad["flags"] == [MISALIGNED]
    assert bad["alignment"]["shift"] == [5, -6]  # moving the mask back by this fits the image
    assert bad["alignment"]["gain"] > 3


def test_road_fraction_and_nodata_flags():
    image, _ = _scene()
    valid = np.ones((256, 256), bool)
    assert assess(np.zeros((256, 256), np.uint8), image, valid)["flags"] == [NO_ROAD]
    assert assess(np.full((256, 256), 255, np.uint8), image, valid)["flags"] == [MOSTLY_ROAD]
    valid[:, 64:] = False
    mask = np.zeros((256, 256), np.uint8)
    mask[:, 64:] = 127
    record = assess(mask, image, valid)
    assert record["flags"] == [NO_ROAD, NODATA] and record["nodata_fraction"] == 0.75


def test_gradient_magnitude_is_scipys_sobel():
    """The slice-based Sobel magnitude equals scipy's on tiles of any content, borders included."""
    from roadseg.labeler.quality import gradient_magnitude
    from scipy import ndimage

    rng = np.random.default_rng(11)
    for shape in [(256, 256), (37, 301), (3, 3)]:
        gray = (rng.random(shape) * 255).astype(np.float32)
        expected = np.hypot(ndimage.sobel(gray, axis=0), ndimage.sobel(gray, axis=1))
        np.testing.assert_allclose(gradient_magnitude(gray), expected, rtol=1e-5, atol=1e-3)
