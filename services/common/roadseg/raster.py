"""Reading any supported image as 8-bit RGB plus a valid-pixel mask (docs/contracts.md §6).

Every service that looks at pixels (ingest, labeler, gateway) goes through this module so
they agree on what a scene *is*:

* :func:`open_checked` opens and validates an image from its header only: a readable format
  (GeoTIFF/COG, JPEG 2000, PNG, JPEG), at least one band, a non-empty size, and at most
  ``max_scene_pixels`` pixels. The size check happens before any pixel is read, so a header
  declaring 100000 x 100000 pixels costs nothing. A one-block probe at both ends of the image
  catches truncated files early.
* Bands are reduced to RGB: 1 band (gray) is repeated, a palette is expanded, 3+ bands use
  the bands GDAL labels red/green/blue (else the first three). An alpha band, nodata values,
  internal masks and NaNs all become the *valid mask* (GDAL's dataset mask).
* **Stretch** (documented in the README): uint8 data passes through unchanged. Anything else
  (uint16, int16, float) gets a per-band linear stretch from the ``low``/``high`` percentiles
  (default 2 % / 98 %, setting ``stretch_percentiles``) of the band's *valid* pixels, computed
  once per scene from a decimated read (at most ~1 Mpx, overviews when present), then
  ``255 * (value - p_low) / (p_high - p_low)`` clipped to 0..255. One stretch per scene keeps
  tiles of the same scene comparable, unlike a per-tile stretch.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from roadseg.documents import ImageInfo
from roadseg.errors import InvalidInput, TooLarge
from roadseg.geo import crs_string, pixel_size_m
from roadseg.storage import Storage

#: GDAL drivers accepted as input, checked right after opening and before any pixel read, so an
#: upload GDAL recognises as something else (a VRT pointing at local files, an ASCII grid) is refused.
ALLOWED_DRIVERS = ("GTiff", "COG", "JP2OpenJPEG", "PNG", "JPEG")

#: Also accepted inside :func:`trusted_mosaics` only: a VRT mosaic (:mod:`roadseg.mosaic`) names other
#: files for GDAL to open, which is fine from the user's own command line and never from an upload.
TRUSTED_DRIVERS = ("VRT",)

_mosaics_trusted: contextvars.ContextVar[bool] = contextvars.ContextVar("roadseg_mosaics_trusted", default=False)

_UNREADABLE = "not a readable image (GeoTIFF, COG, JPEG 2000, PNG or JPEG expected)"
_DIRS = re.compile(r"/(?:[^/\s'\"]+/)+")

#: Pixels read to compute a scene's stretch percentiles (decimated read, per band).
STRETCH_SAMPLE_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class Stretch:
    """How source values map to 0..255, per output band (R, G, B).

    ``mode`` is ``"none"`` (uint8 passes through) or ``"percentile"`` (linear between
    ``low[i]`` and ``high[i]``, the values at ``percentiles`` of the valid pixels).
    """

    mode: str = "none"
    percentiles: tuple[float, float] = (2.0, 98.0)
    low: tuple[float, ...] = field(default_factory=tuple)
    high: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The stretch as JSON-ready data, for the scene manifest."""
        return {
            "mode": self.mode,
            "percentiles": list(self.percentiles),
            "low": list(self.low),
            "high": list(self.high),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stretch:
        """Rebuild a stretch from :meth:`to_dict` output; missing keys take the defaults (``mode`` none)."""
        return cls(
            mode=data.get("mode", "none"),
            percentiles=tuple(data.get("percentiles", (2.0, 98.0))),
            low=tuple(data.get("low", ())),
            high=tuple(data.get("high", ())),
        )


def image_size_ok(width: int, height: int, max_pixels: int | None = None) -> bool:
    """Whether an image of this size is accepted (``max_scene_pixels`` unless given)."""
    if max_pixels is None:
        max_pixels = _max_pixels()
    return width > 0 and height > 0 and width * height <= max_pixels


def open_checked(source: str | os.PathLike[str] | DatasetReader, max_pixels: int | None = None) -> DatasetReader:
    """Open (or take) a raster dataset and validate it from its header; use as a context manager.

    ``source`` is a path/URL GDAL can open or an already open dataset (for instance from
    ``Storage.open_raster``), which is validated and returned as is. Raises
    :class:`InvalidInput` for unreadable, truncated, empty or unsupported files and
    :class:`TooLarge` when the header declares more than ``max_pixels`` pixels.
    """
    if isinstance(source, DatasetReader):
        check_dataset(source, max_pixels)
        return source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(source)
    except RasterioError as exc:
        raise InvalidInput(f"{_UNREADABLE}: {gdal_message(exc)}") from exc
    try:
        check_dataset(ds, max_pixels)
    except Exception:
        ds.close()
        raise
    return ds


@contextlib.contextmanager
def open_stored(
    storage: Storage, key: str, max_pixels: int | None = None, probe: bool = True
) -> Iterator[DatasetReader]:
    """:func:`open_checked` for an object in storage (range reads, so GCS scenes are not downloaded).

    ``probe=False`` skips the read probe of :func:`check_dataset`, for an object probed when it was stored.
    """
    with contextlib.ExitStack() as stack:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = stack.enter_context(storage.open_raster(key))
        except RasterioError as exc:
            raise InvalidInput(f"{_UNREADABLE}: {gdal_message(exc)}") from exc
        check_dataset(ds, max_pixels, probe)
        yield ds


@contextlib.contextmanager
def trusted_mosaics() -> Iterator[None]:
    """Accept VRT mosaics in this block: for command-line tools, whose user wrote the VRT.

    A context variable, not a setting, so no service can switch it on for its requests. It holds for the
    current thread (and asyncio task) only: code that opens images in worker threads enters it there.
    """
    token = _mosaics_trusted.set(True)
    try:
        yield
    finally:
        _mosaics_trusted.reset(token)


def check_dataset(ds: DatasetReader, max_pixels: int | None = None, probe: bool = True) -> None:
    """Validate an open dataset: driver, band count, size limit, then (``probe``) a one-block read probe.

    The probe of a plain JPEG decodes the whole image (its last pixel is in its last row): 50 ms for a
    1500 px photo, worth paying once per upload, not again each time a stored upload is opened.
    """
    if ds.driver not in ALLOWED_DRIVERS and not (ds.driver in TRUSTED_DRIVERS and _mosaics_trusted.get()):
        raise InvalidInput(f"unsupported image format {ds.driver}: expected GeoTIFF, COG, JPEG 2000, PNG or JPEG")
    if ds.count < 1:
        raise InvalidInput("the image has no bands")
    if ds.width < 1 or ds.height < 1:
        raise InvalidInput(f"the image is empty ({ds.width} x {ds.height} pixels)")
    if not image_size_ok(ds.width, ds.height, max_pixels):
        limit = max_pixels if max_pixels is not None else _max_pixels()
        raise TooLarge(f"image of {ds.width} x {ds.height} pixels exceeds the limit of {limit} pixels")
    check_georeferencing(ds)
    if not probe:
        return
    # Truncated files usually have an intact header and lose their last blocks: read one
    # pixel at each end (one block each) so the user hears about it now, not mid-tiling.
    try:
        for row, col in ((0, 0), (ds.height - 1, ds.width - 1)):
            ds.read(1, window=Window(col, row, 1, 1))
    except RasterioError as exc:
        raise InvalidInput(f"the image is corrupt or truncated: {gdal_message(exc)}") from exc


def check_georeferencing(ds: DatasetReader) -> None:
    """Refuse georeferencing no ground size can be measured in (:class:`InvalidInput`), before any work.

    A geographic CRS with coordinates off the globe (a transform meant for metres, tagged EPSG:4326) or a
    degenerate transform makes the pixel size NaN or zero, which would fail deep inside a prediction.
    """
    if not is_georeferenced(ds):
        return
    a, b, _, d, e, _ = tuple(ds.transform)[:6]
    try:
        size_m = ground_pixel_size_m(ds) if a * e - b * d != 0 else None
    except (ValueError, ArithmeticError, pyproj.exceptions.ProjError):
        size_m = None
    if size_m is None or not math.isfinite(size_m) or size_m <= 0:
        left, bottom, right, top = ds.bounds
        raise InvalidInput(
            f"the image's georeferencing is impossible: {crs_string(ds.crs)} with bounds "
            f"({left:g}, {bottom:g}, {right:g}, {top:g}) has no measurable pixel size on the ground"
        )


def gdal_message(exc: Exception) -> str:
    """GDAL's message without the folders of server-side paths (users see it in API errors)."""
    return _DIRS.sub("", str(exc))


def _max_pixels() -> int:
    from roadseg.config import get_settings

    return get_settings().max_scene_pixels


def is_georeferenced(ds: DatasetReader) -> bool:
    """A scene is georeferenced when it has a CRS and a non-identity geotransform."""
    return ds.crs is not None and not ds.transform.is_identity


def scene_info(ds: DatasetReader) -> ImageInfo:
    """Header facts reported by APIs (CRS, transform, bounds as [minx, miny, maxx, maxy], pixel size...)."""
    georef = is_georeferenced(ds)
    left, bottom, right, top = ds.bounds
    return ImageInfo(
        georeferenced=georef,
        crs=crs_string(ds.crs) if georef else None,
        transform=list(ds.transform)[:6],
        width=ds.width,
        height=ds.height,
        bands=ds.count,
        dtype=ds.dtypes[0],
        bounds=[min(left, right), min(bottom, top), max(left, right), max(bottom, top)],
        pixel_size=[abs(ds.transform.a), abs(ds.transform.e)],
        driver=ds.driver,
    )


def ground_pixel_size_m(ds: DatasetReader) -> float | None:
    """Ground size of a pixel in metres at the scene centre, or None when the scene is not georeferenced.

    The road graph measures with the same function (:func:`roadseg.geo.pixel_size_m`): geodesic
    distances for geographic CRSs, the CRS's linear unit for projected ones.
    """
    if not is_georeferenced(ds):
        return None
    return pixel_size_m(tuple(ds.transform)[:6], crs_string(ds.crs), (ds.height, ds.width))


def rgb_band_indexes(ds: DatasetReader) -> tuple[int, ...]:
    """1-based band indexes used as R, G, B (one index for gray or palette images)."""
    interp = list(ds.colorinterp)
    colour = [i for i, ci in enumerate(interp, start=1) if ci != ColorInterp.alpha]
    if len(colour) < 3:
        return (colour[0] if colour else 1,)
    labelled = [interp.index(ci) + 1 for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue) if ci in interp]
    return tuple(labelled) if len(labelled) == 3 else tuple(colour[:3])


def compute_stretch(ds: DatasetReader, percentiles: tuple[float, float] | None = None) -> Stretch:
    """The scene's stretch: none for uint8, else per-band percentiles of a decimated read."""
    if percentiles is None:
        from roadseg.config import get_settings

        percentiles = get_settings().stretch_percentiles
    low_pct, high_pct = float(percentiles[0]), float(percentiles[1])
    if not 0 <= low_pct < high_pct <= 100:
        raise InvalidInput(f"stretch percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    if ds.dtypes[0] == "uint8":
        return Stretch(mode="none", percentiles=(low_pct, high_pct))
    bands = rgb_band_indexes(ds)
    factor = max(1.0, math.sqrt(ds.width * ds.height / STRETCH_SAMPLE_PIXELS))
    shape = (len(bands), max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
    with damaged_data_is_invalid("an overview of the image"):
        data = ds.read(bands, out_shape=shape).astype(np.float64)
        valid = ds.dataset_mask(out_shape=shape[1:]) > 0
    lows, highs = [], []
    for band in data:
        values = band[valid & np.isfinite(band)]
        if values.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = (float(v) for v in np.percentile(values, [low_pct, high_pct]))
        lows.append(lo)
        highs.append(hi if hi > lo else lo + 1.0)
    if len(bands) == 1:
        lows, highs = lows * 3, highs * 3
    return Stretch(mode="percentile", percentiles=(low_pct, high_pct), low=tuple(lows), high=tuple(highs))


def to_uint8_rgb(bands_array: np.ndarray, valid_mask: np.ndarray, stretch: Stretch) -> np.ndarray:
    """Bands ``[C, H, W]`` (C = 1 or 3, rasterio order) -> uint8 ``[H, W, 3]``; invalid pixels are 0.

    A single band is repeated into R, G and B. ``stretch.mode == "none"`` requires uint8 input
    and copies it unchanged. Integer bands of at most 16 bits go through a lookup table of the
    stretch (:func:`_stretch_lut`, the same float32 arithmetic, so the same values) instead of
    float maths per pixel.
    """
    if bands_array.ndim != 3 or bands_array.shape[0] not in (1, 3):
        raise ValueError(f"expected bands as [1 or 3, H, W], got shape {bands_array.shape}")
    if stretch.mode == "none" and bands_array.dtype != np.uint8:
        raise ValueError(f"stretch mode 'none' needs uint8 input, got {bands_array.dtype}")
    sources = (0, 0, 0) if bands_array.shape[0] == 1 else (0, 1, 2)
    # One band at a time into the interleaved result: a whole-array moveaxis copy is ~8x slower.
    out = np.empty((*bands_array.shape[1:], 3), dtype=np.uint8)
    if stretch.mode == "none":
        for i, band in enumerate(sources):
            out[..., i] = bands_array[band]
    elif (lut := _stretch_lut(stretch.low, stretch.high, bands_array.dtype.str)) is not None:
        index = bands_array.view(_INDEX[bands_array.dtype.itemsize])
        for i, band in enumerate(sources):
            np.take(lut[i], index[band], out=out[..., i], mode="clip")  # every index is in range
    else:
        rgb = _stretch_floats(bands_array[list(sources)], stretch.low, stretch.high)
        for i in range(3):
            out[..., i] = rgb[i]
    if not valid_mask.all():
        out[~valid_mask] = 0
    return out


#: Unsigned dtype whose values index a lookup table, by item size (a signed band is viewed as unsigned).
_INDEX = {1: np.uint8, 2: np.uint16}


def _stretch_floats(bands_array: np.ndarray, low: tuple[float, ...], high: tuple[float, ...]) -> np.ndarray:
    """The percentile stretch of ``[3, ...]`` values: ``255 * (value - low) / (high - low)`` in float32, rounded."""
    shape = (3,) + (1,) * (bands_array.ndim - 1)
    low_ = np.asarray(low, dtype=np.float32).reshape(shape)
    high_ = np.asarray(high, dtype=np.float32).reshape(shape)
    scaled = (bands_array.astype(np.float32) - low_) * (255.0 / (high_ - low_))
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _stretch_lut(low: tuple[float, ...], high: tuple[float, ...], dtype: str) -> np.ndarray | None:
    """``[3, 2**bits]`` uint8: the stretched value of every possible value of an 8/16-bit integer dtype.

    Entry ``i`` of band ``b`` is :func:`_stretch_floats` of the value whose bits, read as unsigned, are
    ``i``; None for other dtypes (floats, 32-bit integers), which are stretched pixel by pixel. One
    table per scene stretch (cached): 192 KiB for 16 bits, built in well under a millisecond.
    """
    kind = np.dtype(dtype)
    if kind.kind not in "ui" or kind.itemsize not in _INDEX or not kind.isnative:
        return None
    values = np.arange(2 ** (8 * kind.itemsize), dtype=_INDEX[kind.itemsize]).view(kind)
    return _stretch_floats(np.broadcast_to(values, (3, values.size)), low, high)


def read_rgb_window(ds: DatasetReader, window: Window, stretch: Stretch) -> tuple[np.ndarray, np.ndarray]:
    """Read one window (inside the dataset) as (uint8 ``[H, W, 3]``, valid bool ``[H, W]``)."""
    bands = rgb_band_indexes(ds)
    with damaged_data_is_invalid(_rows(window)):
        data = ds.read(bands, window=window)
        valid = _finite(_dataset_valid(ds, window, data.shape[1:]), data)
    if len(bands) == 1 and ds.colorinterp[bands[0] - 1] == ColorInterp.palette:
        return _apply_palette(ds, bands[0], data[0], valid), valid
    return to_uint8_rgb(data, valid, stretch), valid


def read_valid_mask(ds: DatasetReader, window: Window) -> np.ndarray:
    """Only the valid-pixel mask of a window, the same one :func:`read_rgb_window` returns."""
    with damaged_data_is_invalid(_rows(window)):
        valid = ds.dataset_mask(window=window) > 0
        if np.issubdtype(np.dtype(ds.dtypes[0]), np.floating):
            valid = _finite(valid, ds.read(rgb_band_indexes(ds), window=window))
    return valid


@contextlib.contextmanager
def damaged_data_is_invalid(where: str) -> Iterator[None]:
    """A read that fails past the header (a corrupt or cut-off block) is the file's fault: InvalidInput.

    The header and one block are checked when the file is opened (:func:`check_dataset`); damage
    further in only shows when that part is read, in the middle of a job (found by fuzzing).
    """
    try:
        yield
    except RasterioError as exc:
        raise InvalidInput(f"the image is damaged: {where} cannot be read ({gdal_message(exc)})") from exc


def _dataset_valid(ds: DatasetReader, window: Window, shape: tuple[int, ...]) -> np.ndarray:
    """``ds.dataset_mask(window=window) > 0``, without a read when no band has a mask, alpha or nodata.

    That is rasterio's rule too (no mask, alpha or nodata: every pixel valid); the read it saves fills
    and combines a mask per band, a tenth of a 512 px tile's whole read.
    """
    if all(flags == [MaskFlags.all_valid] for flags in ds.mask_flag_enums):
        return np.ones(shape, dtype=bool)
    return ds.dataset_mask(window=window) > 0


def _rows(window: Window) -> str:
    return f"rows {int(window.row_off)}-{int(window.row_off + window.height) - 1}"


def _finite(valid: np.ndarray, data: np.ndarray) -> np.ndarray:
    """NaN and infinite values are nodata too (float scenes often have no nodata value)."""
    if np.issubdtype(data.dtype, np.floating):
        return valid & np.isfinite(data).all(axis=0)
    return valid


def _apply_palette(ds: DatasetReader, band: int, indexes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Expand a paletted band through its colour table (palette entries are RGBA tuples)."""
    lut = np.zeros((max(256, int(indexes.max()) + 1), 3), dtype=np.uint8)
    for value, rgba in ds.colormap(band).items():
        lut[value] = rgba[:3]
    rgb = lut[indexes]
    rgb[~valid] = 0
    return rgb
