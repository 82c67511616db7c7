"""The layers a prediction writes: probabilities and masks as GeoTIFFs, the page's PNGs, their colours.

:func:`layer_rows` makes the rows of one layer from a band of the model's outputs, :func:`output_profile`
is the GeoTIFF a layer is written to, and :func:`tif_to_png` copies a uint8 layer to PNG band by band
(the page's PNGs of a prediction whose bands were joined from shards).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader
from rasterio.windows import Window

from roadseg import raster
from roadseg.cog import GDAL_ENV
from roadseg.png import PngWriter

#: Road colour of the overlay (magenta: visible on desert, vegetation and asphalt alike).
OVERLAY_RGB = (255, 0, 200)
#: Colour of the centreline overlay of a two-output model (cyan, apart from the surface's magenta).
CENTERLINE_RGB = (0, 230, 255)

#: Layers a prediction writes -> (bands, dtype): always the probabilities and the 0/255 mask of the road
#: (surface); for the page also the probabilities as 0..255, the input as 8-bit RGB (what the browser
#: shows) and the RGBA overlay. A two-output model adds its centreline band's probabilities, mask and overlay.
LAYERS = {
    "probability": (1, "float32"),
    "mask": (1, "uint8"),
    "probability8": (1, "uint8"),
    "image": (3, "uint8"),
    "overlay": (4, "uint8"),
    "centerline_probability": (1, "float32"),
    "centerline": (1, "uint8"),
    "centerline_overlay": (4, "uint8"),
}
#: Layers made from the centreline band output: written only by models that have one.
CENTERLINE_LAYERS = ("centerline_probability", "centerline", "centerline_overlay")
#: Probabilities are stored in steps of 2**-16 (at most 7.6e-6 off): float32 model outputs have noise in
#: their low mantissa bits, which DEFLATE cannot compress (the probability COG of a 1500 px Massachusetts
#: tile was 10.5 MB for 9.0 MB of pixels). Rounded, and with TIFF's floating-point predictor, it is
#: 2.8 MB, and the mask is thresholded from the same rounded values, so the two always agree.
PROBABILITY_STEPS = 2**16
#: What every prediction writes as GeoTIFFs (the centreline's only where the model has that output).
BASE_LAYERS = ("probability", "mask", "centerline_probability", "centerline")
#: The page's PNG files of an upload and the layer each is made of (:class:`~roadseg.png.PngWriter`).
PNG_LAYERS = {
    "mask.png": "mask",
    "overlay.png": "overlay",
    "image.png": "image",
    "probability.png": "probability8",
    "centerline.png": "centerline",
    "centerline_overlay.png": "centerline_overlay",
}


def available_layers(names: Collection[str], has_centerline: bool) -> tuple[str, ...]:
    """``names`` less the centreline layers when the model has no centreline output."""
    return tuple(n for n in names if has_centerline or n not in CENTERLINE_LAYERS)


def layer_rows(
    layer: str, prob: np.ndarray, road: np.ndarray, rgb: np.ndarray | None, line: np.ndarray | None = None
) -> np.ndarray:
    """Rows of one output layer as ``[rows, width, bands]`` from a band of rows.

    ``prob`` float32 [rows, width, C] (the model's outputs), ``road`` the road (surface) mask,
    ``line`` the centreline band's mask (two-output models), ``rgb`` the image rows.
    """
    if layer == "probability":
        return prob[..., :1]
    if layer == "centerline_probability":
        return prob[..., -1:]
    if layer in ("mask", "centerline"):
        chosen = road if layer == "mask" else line
        if chosen is None:
            raise ValueError(f"the {layer} layer needs its mask")
        return (chosen * np.uint8(255))[..., None]
    if layer == "probability8":
        return np.round(prob[..., 0] * 255).astype(np.uint8)[..., None]
    if layer == "image":
        if rgb is None:
            raise ValueError("the image layer needs the band's image rows")
        return rgb
    chosen, color = (road, OVERLAY_RGB) if layer == "overlay" else (line, CENTERLINE_RGB)
    if chosen is None:
        raise ValueError(f"the {layer} layer needs its mask")
    overlay = np.zeros((*chosen.shape, 4), np.uint8)
    overlay[chosen] = (*color, 255)
    return overlay


def output_profile(ds: DatasetReader, count: int, dtype: str, rows: tuple[int, int] | None = None) -> dict[str, Any]:
    """A GeoTIFF profile with the input's size (or its ``rows`` [from, to)) and georeferencing when it has one."""
    row_from, row_to = rows or (0, ds.height)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": ds.width,
        "height": row_to - row_from,
        "count": count,
        "dtype": dtype,
        "compress": "zstd",  # intermediate files (turned into COGs and PNGs): the fastest codec that compresses
        "zstd_level": 1,
        "tiled": False,
        "BIGTIFF": "IF_SAFER",
    }
    if raster.is_georeferenced(ds):
        profile.update(crs=ds.crs, transform=ds.window_transform(Window(0, row_from, ds.width, row_to - row_from)))
    return profile


def tif_to_png(src: Path, dst: Path, rows: int = 512) -> Path:
    """Copy a uint8 GeoTIFF to PNG, ``rows`` at a time (memory stays a band; no ``.aux.xml`` sidecar)."""
    with rasterio.Env(**GDAL_ENV), warnings.catch_warnings(), rasterio.open(src) as ds:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with PngWriter(dst, ds.width, ds.height, ds.count) as png:
            for row in range(0, ds.height, rows):
                band = ds.read(window=Window(0, row, ds.width, min(rows, ds.height - row)))
                png.write(np.moveaxis(band, 0, -1))
    return dst
