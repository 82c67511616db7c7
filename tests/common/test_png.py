"""The streaming PNG encoder: what PIL decodes is what went in, whatever the bands; short images are refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from roadseg.png import PngWriter


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_bands_of_rows_decode_to_the_same_pixels(tmp_path, channels):
    rng = np.random.default_rng(channels)
    shape = (301, 157) if channels == 1 else (301, 157, channels)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image[100:140] = 255  # runs that the Up filter turns into zeros
    path = tmp_path / "out.png"
    with PngWriter(path, 157, 301, channels, level=1) as png:
        for start, stop in [(0, 1), (1, 120), (120, 121), (121, 301)]:
            png.write(image[start:stop])
    decoded = Image.open(path)
    assert decoded.mode == {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    assert np.array_equal(np.asarray(decoded), image)


def test_a_short_or_oversized_image_is_an_error(tmp_path):
    png = PngWriter(tmp_path / "short.png", 8, 4, 1)
    png.write(np.zeros((3, 8), np.uint8))
    with pytest.raises(ValueError, match="rows"):
        png.write(np.zeros((2, 8), np.uint8))  # one too many
    with pytest.raises(ValueError, match="3 of 4 rows"):
        png.close()
    with pytest.raises(ValueError, match="channels"):
        PngWriter(tmp_path / "x.png", 8, 4, 2)
