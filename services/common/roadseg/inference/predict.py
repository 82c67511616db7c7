"""Predict roads for a whole image, streamed to files; used by the gateway's jobs, the CLI and the evaluation.

:func:`predict_raster` reads the input band of rows by band of rows (docs/contracts.md §6 reading, so
every format, stretch and nodata rule is the ingest's), runs :func:`~roadseg.inference.windows.sliding_predict`
and writes each finished band of rows straight into GeoTIFFs and PNGs (the :mod:`~roadseg.inference.layers`)
on local disk, in a writer thread while the model runs on the next band. Nothing holds a whole image in
memory. :class:`ModelWindows` is how an image meets the model (window, overlap, resampling), also for
cutting a prediction into shards of rows of windows.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader
from rasterio.windows import Window

from roadseg import raster
from roadseg.cog import GDAL_ENV
from roadseg.config import Settings
from roadseg.documents import ImageInfo
from roadseg.inference.layers import (
    BASE_LAYERS,
    LAYERS,
    PNG_LAYERS,
    PROBABILITY_STEPS,
    available_layers,
    layer_rows,
    output_profile,
)
from roadseg.inference.predictor import Predictor
from roadseg.inference.scale import choose_factor
from roadseg.inference.windows import (
    PredictBatch,
    fit_window,
    model_resolution,
    resampled,
    resolution_factor,
    shard_rows,
    sliding_predict,
    window_starts,
)
from roadseg.pixel_size import AUTO, PixelSize
from roadseg.png import PngWriter

log = logging.getLogger(__name__)


def plain_pixel_size(pixel_size_m: PixelSize, resampling: dict[str, Any] | None) -> float | None:
    """The metres of a plain image's pixel after a prediction: the user's, or the one ``auto`` chose.

    ``auto`` is the user's or, given no pixel size, the model card's (``plain_pixel_size``): ``resampling``
    then says ``estimated``.
    """
    resampling = resampling or {}
    if isinstance(pixel_size_m, str) or (pixel_size_m is None and resampling.get("estimated")):  # AUTO
        return resampling.get("image_pixel_size_m")
    return pixel_size_m


@dataclass
class RasterPrediction:
    """What :func:`predict_raster` wrote and measured."""

    files: dict[str, Path]
    info: ImageInfo
    threshold: float
    road_pixels: int = 0
    windows: int = 0
    seconds: float = 0.0
    #: Set when the image was resampled to the model's resolution: both pixel sizes and the factor
    #: (``estimated`` when the model chose the scale: ``--pixel-size auto``, or none given and the card's auto).
    resampling: dict[str, Any] | None = None
    #: The test-time augmentation that ran (the request's, else the model card's).
    tta: str = "none"
    #: The centreline mask's threshold (two-output models), else None.
    centerline_threshold: float | None = None


@dataclass
class ModelWindows:
    """How an image meets the model: window (height, width) and overlap in image pixels, and the resampling."""

    window: tuple[int, int]
    overlap: int
    factor: float = 1.0
    resampling: dict[str, Any] | None = None

    @classmethod
    def of(
        cls,
        ds: DatasetReader,
        predictor: Predictor,
        settings: Settings,
        pixel_size_m: PixelSize = None,
        chosen: dict[str, Any] | None = None,
    ) -> ModelWindows:
        """At most ``predict_window`` px per side, fitted to the image (:func:`windows.fit_window`).

        Windows grow by the resampling factor, so the model still sees at most ~``predict_window`` px per side.
        The image's ground pixel size is its georeference's; ``pixel_size_m`` (what the user says) stands in
        for a plain image's, which has none: metres, or :data:`AUTO` to let the model choose the scale
        (:mod:`roadseg.inference.scale`). Without either, a plain image gets the card's ``plain_pixel_size``
        (:data:`AUTO`, chosen on val) or else is taken to be at the model's own resolution. ``chosen`` is the
        ``resampling`` an earlier :data:`AUTO` choice recorded (a queued job's planner,
        :func:`roadseg.gateway.jobs.job_windows`): that scale is then used, not asked of the model again.
        """
        window, overlap = settings.predict_window, settings.predict_overlap
        image_m = raster.ground_pixel_size_m(ds)
        estimated = chosen if chosen and chosen.get("estimated") else None
        if image_m is None and pixel_size_m is None:
            # The card's default; a scale already chosen for this image (by the card's auto) stays chosen.
            pixel_size_m = AUTO if estimated else predictor.card.get("plain_pixel_size")
        if image_m is None and pixel_size_m == AUTO and settings.match_resolution:
            return cls.from_resampling(ds, settings, estimated) if estimated else cls.estimated(ds, predictor, settings)
        image_m = image_m or (pixel_size_m if isinstance(pixel_size_m, float | int) else None)
        model_m = model_resolution(image_m, predictor.card)
        factor = resolution_factor(image_m, model_m) if settings.match_resolution else 1.0
        if image_m is None or model_m is None or factor == 1.0:
            return cls(fit_window(ds.height, ds.width, window, overlap), overlap)
        resampling = {"image_pixel_size_m": round(image_m, 4), "model_pixel_size_m": model_m, "factor": factor}
        return cls.from_resampling(ds, settings, resampling)

    @classmethod
    def from_resampling(cls, ds: DatasetReader, settings: Settings, resampling: dict[str, Any]) -> ModelWindows:
        """The windows of ``ds`` resampled as ``resampling`` says (its ``factor``), which they keep as their record."""
        factor = resampling["factor"]
        window, overlap = round(settings.predict_window * factor), round(settings.predict_overlap * factor)
        return cls(fit_window(ds.height, ds.width, window, overlap), overlap, factor, resampling)

    @classmethod
    def estimated(cls, ds: DatasetReader, predictor: Predictor, settings: Settings) -> ModelWindows:
        """The windows of a plain image at the scale the model itself finds roads best (:func:`choose_factor`).

        ``resampling`` records the choice (``estimated``), even a factor of 1, with the pixel size it
        implies for a model trained at one pixel size.
        """
        stretch = raster.compute_stretch(ds, settings.stretch_percentiles)
        choice = choose_factor(ds, lambda images: predictor.predict(images, "none"), predictor.threshold(), stretch)
        model_m = predictor.card.get("pixel_size_m")
        resampling: dict[str, Any] = {
            "image_pixel_size_m": choice.pixel_size_m(model_m),
            "model_pixel_size_m": model_m,
            "factor": choice.factor,
            "estimated": True,
        }
        log.info("scale chosen by the model: factor %.3f (road confidence per factor %s)", choice.factor, choice.scores)
        return cls.from_resampling(ds, settings, resampling)

    def row_count(self, height: int) -> int:
        """Rows of windows over an image ``height`` pixels high (the unit prediction shards are cut in)."""
        return len(window_starts(height, self.window[0], self.overlap))

    def shard(self, ds: DatasetReader, rows: tuple[int, int]) -> tuple[list[int], int, int]:
        """:func:`windows.shard_rows` of window rows ``rows`` [first, stop) of ``ds``."""
        return shard_rows(ds.height, self.window[0], self.overlap, *rows)

    def windows_of(self, ds: DatasetReader, rows: tuple[int, int]) -> int:
        """Model calls of one shard (its halo row included), for progress."""
        starts, _, _ = self.shard(ds, rows)
        return len(starts) * len(window_starts(ds.width, self.window[1], self.overlap))


def centerline_channel(predictor: Predictor) -> int | None:
    """The channel of the centreline band among the model's outputs; None for a single-output model."""
    outputs = predictor.outputs
    return outputs.index("band") if "band" in outputs else None


def predict_raster(
    ds: DatasetReader,
    predictor: Predictor,
    out_dir: Path,
    settings: Settings,
    threshold: float,
    layers: Collection[str] = BASE_LAYERS,
    progress: Callable[[int, int], None] | None = None,
    tta: str | None = None,
    model_lock: threading.Lock | None = None,
    window_rows: tuple[int, int] | None = None,
    pngs: Collection[str] = (),
    centerline_threshold: float | None = None,
    pixel_size_m: PixelSize = None,
    geometry: ModelWindows | None = None,
) -> RasterPrediction:
    """Predict ``ds`` window by window into GeoTIFFs (``layers`` of :data:`LAYERS`) and PNGs in ``out_dir``.

    ``threshold`` makes the road (surface) mask; ``centerline_threshold`` (default: the card's) the
    centreline mask of a two-output model. Centreline layers asked of a single-output model are left out.
    ``pixel_size_m`` is the ground pixel size of a plain image, or ``"auto"`` (see :meth:`ModelWindows.of`);
    ``geometry``, how the image meets the model when that was decided already (a queued job's ``auto`` scale,
    chosen once for all its shards), stands in for it.

    ``tta`` (``none``/``flip``; None: the model card's) is checked against the serving version
    before any work, so an unavailable choice is a 400 and not a half-done job. ``model_lock`` is
    shared by images predicted side by side (``roadseg predict --jobs``): their reading, writing and
    encoding overlap, while the model runs one call at a time on all cores.

    Each layer goes to ``<layer>.tif``, georeferenced like the input when it is; ``pngs`` (names of
    :data:`PNG_LAYERS`) are written as PNGs as well, band by band. ``files`` of the result has both.

    ``window_rows`` ([first, stop) of the image's rows of windows) predicts one shard: the files then
    hold only the shard's band of image rows (:func:`windows.shard_rows`), equal to those rows of a
    whole-image prediction.
    """
    started = time.perf_counter()
    stretch = raster.compute_stretch(ds, settings.stretch_percentiles)
    width, height = ds.width, ds.height
    predictor.signature(tta)  # raises InvalidInput when this version does not offer it

    def model(images: np.ndarray) -> np.ndarray:
        with model_lock or contextlib.nullcontext():
            return predictor.predict(images, tta)

    geometry = geometry or ModelWindows.of(ds, predictor, settings, pixel_size_m)
    predict: PredictBatch = model if geometry.factor == 1.0 else resampled(model, geometry.factor)
    if geometry.resampling and not geometry.resampling.get("estimated"):
        log.info(
            "resampling %.3f m pixels to the model's %.3f m (factor %.2f)",
            *(geometry.resampling[k] for k in ("image_pixel_size_m", "model_pixel_size_m", "factor")),
        )
    starts, row_from, row_to = geometry.shard(ds, window_rows) if window_rows else (None, 0, height)

    decoded: dict[int, np.ndarray] = {}

    def read_rows(row_off: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        rgb, valid = raster.read_rgb_window(ds, Window(0, row_off, width, rows), stretch)
        if with_rgb:
            previous = max(decoded, default=row_off)
            for old in [key for key in decoded if key < previous]:
                del decoded[old]  # keep this row and the one before: memory stays two bands
            decoded[row_off] = rgb
        return rgb, valid

    def band_rgb(band_off: int, first: int, last: int) -> np.ndarray:
        """Image rows [first, last) of the band at ``band_off``, already decoded for its row of windows.

        :func:`sliding_predict` yields a band while the row after it is being read (at most one ahead),
        so the band's own row is the last or the one before it.
        """
        return decoded[band_off][first - band_off : last - band_off]

    line_channel = centerline_channel(predictor)
    layers = available_layers(layers, line_channel is not None)
    pngs = [name for name in pngs if PNG_LAYERS[name] in available_layers([PNG_LAYERS[name]], line_channel is not None)]
    line_threshold = predictor.threshold(centerline_threshold, "band") if line_channel is not None else None
    files = {name: out_dir / f"{name}.tif" for name in layers} | {name: out_dir / name for name in pngs}
    needed = {*layers, *(PNG_LAYERS[name] for name in pngs)}
    with_rgb = "image" in needed
    road_pixels = 0
    windows = 0

    def count(done: int, total: int) -> None:
        nonlocal windows
        windows = total
        if progress is not None:
            progress(done, total)

    def write_band(first: int, last: int, prob: np.ndarray, rgb: np.ndarray | None) -> int:
        """Write rows [first, last) of every layer; returns their road pixels. Runs in the writer thread."""
        window = Window(0, first - row_from, width, last - first)
        prob = np.round(prob * PROBABILITY_STEPS) / np.float32(PROBABILITY_STEPS)
        road = prob[..., 0] >= threshold
        line = None if line_channel is None or line_threshold is None else prob[..., line_channel] >= line_threshold
        # The masks once for GeoTIFF and PNG.
        rows = {layer: layer_rows(layer, prob, road, rgb, line) for layer in needed}
        with rasterio.Env(**GDAL_ENV):
            for name, out in tifs.items():
                out.write(np.moveaxis(rows[name], -1, 0), window=window)
        for name, png in png_files.items():
            png.write(rows[PNG_LAYERS[name]])
        return int(road.sum())

    with rasterio.Env(**GDAL_ENV), warnings.catch_warnings(), contextlib.ExitStack() as opened:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        tifs = {
            name: opened.enter_context(
                rasterio.open(files[name], "w", **output_profile(ds, *LAYERS[name], (row_from, row_to)))
            )
            for name in layers
        }
        png_files = {}
        for name in pngs:
            png = PngWriter(files[name], width, row_to - row_from, LAYERS[PNG_LAYERS[name]][0])
            png_files[name] = opened.enter_context(png)
        # One band is written (GDAL and ISA-L compress without the GIL) while the model runs on the next one;
        # at most one band waits, so memory stays a band.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="band-writer") as writer:
            writing = None
            bands = sliding_predict(
                read_rows,
                predict,
                height,
                width,
                geometry.window,
                geometry.overlap,
                settings.predict_batch,
                count,
                starts,
            )
            for band_off, band in bands:
                # A shard's bands start above its rows and end below them (halo rows): keep its own.
                first, last = max(band_off, row_from), min(band_off + band.shape[0], row_to)
                if first >= last:
                    continue
                prob = band[first - band_off : last - band_off]
                rgb = band_rgb(band_off, first, last) if with_rgb else None
                if writing is not None:
                    road_pixels += writing.result()
                writing = writer.submit(write_band, first, last, prob, rgb)
            if writing is not None:
                road_pixels += writing.result()
    return RasterPrediction(
        files=files,
        info=raster.scene_info(ds),
        threshold=threshold,
        road_pixels=road_pixels,
        windows=windows,
        seconds=time.perf_counter() - started,
        resampling=geometry.resampling,
        tta=tta or predictor.card.get("tta") or "none",
        centerline_threshold=line_threshold,
    )
