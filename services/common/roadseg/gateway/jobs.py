"""Predict roads for a whole image, streamed to files; shared by the API, the Celery task and the CLI.

:func:`predict_raster` reads the input band of rows by band of rows (docs/contracts.md §6 reading, so
every format, stretch and nodata rule is the ingest's), runs :func:`windows.sliding_predict`
and writes each finished band of rows straight into GeoTIFFs and PNGs (:mod:`roadseg.png`) on local
disk, in a writer thread while the model runs on the next band. Cloud-Optimized GeoTIFFs are then
made with GDAL's COG driver, which also works block by block. Nothing holds a whole image in memory
except the optional road graph, which needs the full mask and is therefore size-limited.

:func:`run_job` is one prediction job of the API: input in storage under ``predictions/{id}/``,
outputs next to it, status in the ``predictions`` JobStore.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader
from rasterio.windows import Window

from roadseg import raster
from roadseg.cog import GDAL_ENV, tif_to_cog
from roadseg.config import Settings
from roadseg.documents import MISSING_CANDIDATES_FILE, ROADS_FAILED, ROADS_PENDING, ROADS_READY, PredictionRecord
from roadseg.errors import InvalidInput, RoadsegError
from roadseg.http_api import enqueue
from roadseg.inference.predictor import Predictor
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
from roadseg.jobs import DONE, FAILED, RUNNING, JobStore, new_id
from roadseg.png import PngWriter
from roadseg.roadnet.params import GraphParams
from roadseg.storage import Storage, safe_filename

log = logging.getLogger(__name__)

KIND = "predictions"


def prediction_store(storage: Storage) -> JobStore:
    """The status records of predictions, kept at ``predictions/<id>/status.json`` beside the outputs."""
    return JobStore(storage, KIND, PredictionRecord)


#: Road colour of the overlay (magenta: visible on desert, vegetation and asphalt alike).
OVERLAY_RGB = (255, 0, 200)
#: Colour of the centreline overlay of a two-output model (cyan, apart from the surface's magenta).
CENTERLINE_RGB = (0, 230, 255)

#: Seconds between progress writes to a job's record (the page polls every second, so it sees each one).
PROGRESS_INTERVAL_S = 0.5

#: Files of an API prediction (name -> media type), all under ``predictions/{id}/``.
MEDIA_TYPES = {
    "image.png": "image/png",
    "mask.png": "image/png",
    "overlay.png": "image/png",
    "probability.png": "image/png",
    "probability.tif": "image/tiff",
    "mask.tif": "image/tiff",
    "centerline.png": "image/png",
    "centerline_overlay.png": "image/png",
    "centerline_probability.tif": "image/tiff",
    "centerline.tif": "image/tiff",
    "roads.geojson": "application/geo+json",
    MISSING_CANDIDATES_FILE: "application/geo+json",  # added by the missing-roads job that made the prediction
}


@dataclass
class RasterPrediction:
    """What :func:`predict_raster` wrote and measured."""

    files: dict[str, Path]
    info: dict[str, Any]
    threshold: float
    road_pixels: int = 0
    windows: int = 0
    seconds: float = 0.0
    #: Set when the image was resampled to the model's resolution: both pixel sizes and the factor.
    resampling: dict[str, float] | None = None
    #: The test-time augmentation that ran (the request's, else the model card's).
    tta: str = "none"
    #: The centreline mask's threshold (two-output models), else None.
    centerline_threshold: float | None = None


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


@dataclass
class ModelWindows:
    """How an image meets the model: window (height, width) and overlap in image pixels, and the resampling."""

    window: tuple[int, int]
    overlap: int
    factor: float = 1.0
    resampling: dict[str, float] | None = None

    @classmethod
    def of(
        cls, ds: DatasetReader, predictor: Predictor, settings: Settings, pixel_size_m: float | None = None
    ) -> ModelWindows:
        """At most ``predict_window`` px per side, fitted to the image (:func:`windows.fit_window`).

        Windows grow by the resampling factor, so the model still sees at most ~``predict_window`` px per side.
        The image's ground pixel size is its georeference's; ``pixel_size_m`` (what the user says) stands in
        for a plain image's, which has none. Without either, a plain image is taken to be at the model's
        own resolution.
        """
        window, overlap = settings.predict_window, settings.predict_overlap
        image_m = raster.ground_pixel_size_m(ds) or pixel_size_m
        model_m = model_resolution(image_m, predictor.card)
        factor = resolution_factor(image_m, model_m) if settings.match_resolution else 1.0
        if image_m is None or model_m is None or factor == 1.0:
            return cls(fit_window(ds.height, ds.width, window, overlap), overlap)
        resampling = {"image_pixel_size_m": round(image_m, 4), "model_pixel_size_m": model_m, "factor": factor}
        window, overlap = round(window * factor), round(overlap * factor)
        return cls(fit_window(ds.height, ds.width, window, overlap), overlap, factor, resampling)

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


def centerline_channel(predictor: Predictor) -> int | None:
    """The channel of the centreline band among the model's outputs; None for a single-output model."""
    outputs = predictor.outputs
    return outputs.index("band") if "band" in outputs else None


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
    pixel_size_m: float | None = None,
) -> RasterPrediction:
    """Predict ``ds`` window by window into GeoTIFFs (``layers`` of :data:`LAYERS`) and PNGs in ``out_dir``.

    ``threshold`` makes the road (surface) mask; ``centerline_threshold`` (default: the card's) the
    centreline mask of a two-output model. Centreline layers asked of a single-output model are left out.
    ``pixel_size_m`` is the ground pixel size of a plain image (see :meth:`ModelWindows.of`).

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

    geometry = ModelWindows.of(ds, predictor, settings, pixel_size_m)
    predict: PredictBatch = model if geometry.factor == 1.0 else resampled(model, geometry.factor)
    if geometry.resampling:
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


def tif_to_png(src: Path, dst: Path, rows: int = 512) -> Path:
    """Copy a uint8 GeoTIFF to PNG, ``rows`` at a time (memory stays a band; no ``.aux.xml`` sidecar)."""
    with rasterio.Env(**GDAL_ENV), warnings.catch_warnings(), rasterio.open(src) as ds:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with PngWriter(dst, ds.width, ds.height, ds.count) as png:
            for row in range(0, ds.height, rows):
                band = ds.read(window=Window(0, row, ds.width, min(rows, ds.height - row)))
                png.write(np.moveaxis(band, 0, -1))
    return dst


def road_graph_geojson(
    mask: DatasetReader, max_pixels: int, window: int = 2048, pixel_size_m: float | None = None
) -> dict[str, Any] | None:
    """Road network GeoJSON of an open mask (docs/contracts.md §7); ``None`` when it is above ``max_pixels``.

    The mask is read window by window (``window`` pixels, ``ROADSEG_GRAPH_WINDOW``); the limit bounds the
    time one process spends (larger masks: :func:`roadseg.gateway.sharded.plan_roads`) and the graph's size.
    ``pixel_size_m`` is a plain image's ground pixel size (the user's): its graph is then cleaned and
    measured in metres like a georeferenced one's.
    """
    from roadseg.roadnet.graph import RasterMask, graph_to_geojson, mask_to_graph

    if mask.width * mask.height > max_pixels:
        return None
    transform, crs = mask_georeference(mask)
    return graph_to_geojson(mask_to_graph(RasterMask(mask), transform, crs, graph_params(window, pixel_size_m)))


def graph_params(window: int, pixel_size_m: float | None = None) -> GraphParams:
    """How a prediction's mask is vectorized: ``window`` pixels at a time; a plain image's pixel size if given."""
    return GraphParams(window=window, pixel_size_m=pixel_size_m or None)


def mask_georeference(mask: DatasetReader) -> tuple[Any, str | None]:
    """(transform, CRS) of a mask for its road graph; (None, None) for pixel coordinates."""
    if not raster.is_georeferenced(mask):
        return None, None
    return mask.transform, raster.crs_string(mask.crs)


# ---------------------------------------------------------------------------- API jobs


def create_job(
    storage: Storage,
    upload: BinaryIO,
    filename: str,
    settings: Settings,
    tta: str | None = None,
    pixel_size_m: float | None = None,
) -> dict[str, Any]:
    """Store an upload as a new prediction job after checking its header; nothing is kept if it is refused.

    ``timings.upload`` is the time to store and check it (the client's transfer happened before).
    """
    jobs = prediction_store(storage)
    job_id = new_id()
    name = safe_filename(filename)
    key = jobs.key(job_id, "input", name)
    started = time.perf_counter()
    try:
        size = storage.write_stream(key, upload, settings.max_upload_bytes)
        if size == 0:
            raise InvalidInput("the upload is empty (0 bytes)")
        with raster.open_stored(storage, key, settings.max_scene_pixels) as ds:
            info = raster.scene_info(ds)
        upload_seconds = round(time.perf_counter() - started, 3)
        return jobs.create(
            job_id,
            input_name=name,
            input_bytes=size,
            info=info,
            progress=0.0,
            stage="queued",
            tta=tta,
            pixel_size_m=pixel_size_m,
            timings={"upload": upload_seconds},
        )
    except BaseException:
        storage.delete_prefix(jobs.key(job_id))
        raise


def submit_prediction(
    storage: Storage,
    predictor: Predictor,
    settings: Settings,
    upload: BinaryIO,
    filename: str,
    queue: Callable[[str], Any],
    tta: str | None = None,
    background: Callable[[str], Any] | None = None,
    pixel_size_m: float | None = None,
) -> tuple[dict[str, Any], int]:
    """Store and check an upload, then predict it now (small: 201) or ``queue`` its id (large: 202).

    With ``background`` (the page), a small upload is handed to it instead of being predicted during
    the request (202): the page then polls the job and its progress bar moves window by window.
    Input that cannot be predicted during the request, or a queue that cannot be reached, leaves no
    job behind: the client got the error and nobody would ever run it.
    """
    predictor.signature(tta)  # an unavailable test-time augmentation is refused before anything is stored
    record = create_job(storage, upload, filename, settings, tta, pixel_size_m)
    job_id = record["id"]
    if record["info"]["width"] * record["info"]["height"] <= settings.sync_predict_max_pixels:
        if background is not None:
            background(job_id)
            return record, 202
        try:
            return run_job(job_id, storage, predictor, settings), 201
        except RoadsegError:
            storage.delete_prefix(prediction_store(storage).key(job_id))
            raise
    enqueue(
        lambda: queue(job_id),
        "prediction",
        lambda _: storage.delete_prefix(prediction_store(storage).key(job_id)),
        "predict",
    )
    return record, 202


def run_job_in_background(job_id: str, storage: Storage, predictor: Predictor, settings: Settings) -> None:
    """:func:`run_job` (then its road network) after the response was sent; outcomes are in the job record."""
    try:
        run_job(job_id, storage, predictor, settings)
    except RoadsegError as exc:
        log.info("prediction %s failed: %s", job_id, exc)
        return
    except Exception:  # noqa: BLE001 - already logged with its traceback and recorded by run_job
        return
    build_road_network_quietly(job_id, storage, settings)


# ----------------------------------------------------------------------------- road network

#: One builder per job at a time in this process (striped, so the set of locks stays bounded).
_ROAD_LOCKS = [threading.Lock() for _ in range(16)]


def has_road_network(record: dict[str, Any]) -> bool:
    """Whether a done prediction has, or can build, ``roads.geojson`` (records before ``roads`` list it as a file)."""
    if "roads.geojson" in record.get("files", []):
        return True
    return record["status"] == DONE and record.get("roads") in (ROADS_PENDING, ROADS_FAILED)


def road_network(job_id: str, storage: Storage, settings: Settings) -> tuple[str, dict[str, Any]]:
    """(storage key of a done prediction's ``roads.geojson``, its record), vectorized from the mask on first use.

    Whoever comes first builds it (the worker right after the job, or a route or download asking
    for it) while the others of this process wait for it; processes racing on one job write the same
    object atomically. A failed build is recorded and tried again on the next use.
    """
    jobs = prediction_store(storage)
    key = jobs.key(job_id, "roads.geojson")
    record = jobs.get(job_id)
    if "roads.geojson" in record.get("files", []):
        return key, record
    if record["status"] != DONE:
        raise InvalidInput(f"prediction {job_id} is {record['status']}, not done")
    if not has_road_network(record):
        raise InvalidInput(f"prediction {job_id} has no road network ({record.get('roads_note')})")
    info = record["info"]
    if info["width"] * info["height"] > settings.graph_max_pixels:
        raise InvalidInput(
            f"the road network of prediction {job_id} (above {settings.graph_max_pixels} pixels) is built by the "
            f"predict workers in shards: {record.get('roads_note') or 'not ready yet'}"
        )
    with _ROAD_LOCKS[hash(job_id) % len(_ROAD_LOCKS)]:
        record = jobs.get(job_id)  # another thread may have built it meanwhile
        if "roads.geojson" in record["files"]:
            return key, record
        started = time.perf_counter()
        with failing_roads(jobs, job_id), raster.open_stored(storage, mask_key(jobs, record)) as ds:
            roads = road_graph_geojson(ds, settings.graph_max_pixels, settings.graph_window, record.get("pixel_size_m"))
        return key, store_road_network(storage, job_id, roads, time.perf_counter() - started)


def mask_key(jobs: JobStore, record: dict[str, Any]) -> str:
    """Storage key of the mask a done prediction's road network is built from (a COG when georeferenced, else PNG).

    The centreline band of a two-output model: a band of one width follows each road's middle, where
    the surface mask's width varies with the road (and its skeleton with every wide junction).
    """
    files = record["files"]
    for name in ("centerline.tif", "centerline.png", "mask.tif"):
        if name in files:
            return jobs.key(record["id"], name)
    return jobs.key(record["id"], "mask.png")


@contextlib.contextmanager
def failing_roads(jobs: JobStore, job_id: str) -> Iterator[None]:
    """A failed road network is logged and recorded (``roads: failed`` with the reason), then re-raised."""
    try:
        yield
    except Exception as exc:
        log.exception("road network of prediction %s failed", job_id)
        reason = str(exc) if isinstance(exc, RoadsegError) else f"internal error: {type(exc).__name__}"
        jobs.update(job_id, roads=ROADS_FAILED, roads_note=f"the road network failed: {reason}")
        raise


def store_road_network(storage: Storage, job_id: str, roads: dict[str, Any] | None, seconds: float) -> dict[str, Any]:
    """Write ``roads.geojson`` and record it as ready (with its build time); returns the record."""
    jobs = prediction_store(storage)
    if roads is None:
        raise InvalidInput("the image is too large for a road graph in one process")
    storage.write_text(jobs.key(job_id, "roads.geojson"), json.dumps(roads))
    record = jobs.get(job_id)
    return jobs.update(
        job_id,
        roads=ROADS_READY,
        roads_note=None,
        files=sorted({*record["files"], "roads.geojson"}),
        timings={**(record.get("timings") or {}), "roads": round(seconds, 3)},
    )


def build_road_network_quietly(job_id: str, storage: Storage, settings: Settings) -> None:
    """Build a just-finished prediction's road network ahead of its first route; failures stay in the record."""
    try:
        if has_road_network(prediction_store(storage).get(job_id)):
            road_network(job_id, storage, settings)
    except Exception:  # noqa: BLE001 - logged and recorded by road_network; the next use tries again
        pass


def window_progress(jobs: JobStore, job_id: str) -> Callable[[int, int], None]:
    """``record(done, total)``: windows predicted so far into the job's record (fraction and counts)."""

    def record(done: int, total: int) -> None:
        jobs.update(job_id, progress=round(done / total, 3), windows_done=done, windows_total=total)

    return record


def progress_writer(jobs: JobStore, job_id: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback (in windows) writing the job's record at most every 0.5 s."""
    record = window_progress(jobs, job_id)
    last_write = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= PROGRESS_INTERVAL_S or done == total:  # bounded status writes
            last_write = now
            record(done, total)

    return progress


@contextlib.contextmanager
def failing_job(jobs: JobStore, job_id: str) -> Iterator[None]:
    """Any error inside marks the job failed (bad input with its message), then propagates.

    A job that is already done stays done: the error then comes from a late duplicate of its last
    task (a re-delivered shard that found the bands already joined and removed), not from its outputs.
    """
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, RoadsegError):
            log.exception("prediction %s failed", job_id)
        if jobs.get(job_id)["status"] != DONE:
            error = str(exc) if isinstance(exc, RoadsegError) else f"internal error: {type(exc).__name__}"
            jobs.update(job_id, status=FAILED, stage="failed", error=error)
        raise


@contextlib.contextmanager
def open_input(storage: Storage, record: dict[str, Any], settings: Settings) -> Iterator[DatasetReader]:
    """The job's input image: its stored upload (its header checked again), or the ingested scene it names."""
    if record.get("scene_id"):
        from roadseg.ingest.scenes import open_scene_source, scene_store, source_of

        scene = scene_store(storage).get(record["scene_id"])
        source, key, _ = source_of(storage, scene)
        with open_scene_source(source, key, bool(scene.get("mosaic_files"))) as ds:
            yield ds
        return
    key = prediction_store(storage).key(record["id"], "input", record["input_name"])
    # Probed whole when it was uploaded (create_job), and a stored upload never changes.
    with raster.open_stored(storage, key, settings.max_scene_pixels, probe=False) as ds:
        yield ds


def page_layers(record: dict[str, Any]) -> bool:
    """Whether a job makes the page's layers (image, overlay, PNGs): uploads yes, whole scenes no."""
    return not record.get("scene_id")


def create_scene_job(storage: Storage, scene_id: str, tta: str | None = None) -> dict[str, Any]:
    """A queued prediction of an ingested scene (read in place: a city-sized image or a mosaic of tiles).

    Its outputs are Cloud-Optimized GeoTIFFs (probability and mask) and the road network; a browser
    could not show PNGs of such an image, so none are made.
    """
    from roadseg.ingest.scenes import scene_store

    scene = scene_store(storage).get(scene_id)
    info = {k: scene.get(k) for k in ("georeferenced", "crs", "transform", "width", "height", "bands", "dtype")}
    info |= {k: scene.get(k) for k in ("bounds", "pixel_size", "driver")}
    return prediction_store(storage).create(
        new_id(),
        input_name=scene.get("filename") or scene_id,
        input_bytes=scene.get("bytes") or 0,
        info=info,
        progress=0.0,
        stage="queued",
        tta=tta,
        scene_id=scene_id,
        timings={},
    )


def run_job(job_id: str, storage: Storage, predictor: Predictor, settings: Settings) -> dict[str, Any]:
    """Run one stored prediction job to the end in this process; returns the final record.

    The job is done once its rasters are stored; its road network is built afterwards
    (:func:`build_road_network_quietly` right after, or :func:`road_network` on first use), so
    vectorizing, which can take as long as the model on real imagery, never delays the answer.
    Queued images too large for one task are cut into shards instead (:mod:`roadseg.gateway.sharded`).

    Idempotent: outputs have fixed keys and are overwritten atomically, so a re-delivered task
    simply redoes the work. A :class:`RoadsegError` (bad input) marks the job failed and is
    re-raised for the caller (the API turns it into a 4xx); other exceptions mark it failed too.
    """
    jobs = prediction_store(storage)
    predictor.refresh()
    jobs.update(job_id, status=RUNNING, progress=0.0, stage="predicting")
    with failing_job(jobs, job_id), tempfile.TemporaryDirectory(prefix="roadseg-predict-") as tmp:
        record = jobs.get(job_id)
        with open_input(storage, record, settings) as ds:
            result = predict_job(ds, record, predictor, settings, Path(tmp), progress_writer(jobs, job_id))
        return store_outputs(job_id, storage, predictor, settings, Path(tmp), result)


def predict_job(
    ds: DatasetReader,
    record: dict[str, Any],
    predictor: Predictor,
    settings: Settings,
    out: Path,
    progress: Callable[[int, int], None],
    window_rows: tuple[int, int] | None = None,
) -> RasterPrediction:
    """:func:`predict_raster` with a job's own choices (``window_rows``: one shard's).

    The served version's threshold, the job's tta, and the page's layers for uploads only: as PNGs
    written during the prediction, or for a shard as GeoTIFF bands that :mod:`~roadseg.gateway.sharded`
    joins into PNGs at the end.
    """
    threshold = predictor.threshold(settings.threshold)
    page = page_layers(record)
    layers = tuple(LAYERS) if page and window_rows else BASE_LAYERS
    pngs = tuple(PNG_LAYERS) if page and not window_rows else ()
    return predict_raster(
        ds,
        predictor,
        out,
        settings,
        threshold,
        layers,
        progress,
        tta=record.get("tta"),
        window_rows=window_rows,
        pngs=pngs,
        pixel_size_m=record.get("pixel_size_m"),
    )


def store_outputs(
    job_id: str, storage: Storage, predictor: Predictor, settings: Settings, out: Path, result: RasterPrediction
) -> dict[str, Any]:
    """Turn a finished prediction's files (in ``out``) into the job's outputs (COGs, PNGs) and mark the job done."""
    jobs = prediction_store(storage)
    record = jobs.update(job_id, stage="writing outputs")
    started = time.perf_counter()
    files = result.files

    def cog(layer: str, resampling: str, *options: int) -> Callable[[], Path]:
        return partial(tif_to_cog, files[layer], out / f"{layer}.cog.tif", resampling, *options)

    # Rounded probabilities (PROBABILITY_STEPS) with the floating-point predictor: 2.8 MB at level 1, 2.7 MB
    # at level 6 for 1.5x the time, on a 1500 px Massachusetts tile.
    encodings = {
        f"{layer}.tif": cog(layer, "average", 1, 3)
        for layer in ("probability", "centerline_probability")
        if layer in files
    }
    # The page's layers (uploads): PNGs written during the prediction, or made now from joined shard bands.
    pngs = {name: files[name] for name in PNG_LAYERS if name in files}
    joined_bands = "overlay" in files
    if joined_bands:
        for name, layer in PNG_LAYERS.items():
            if layer in files:
                encodings[name] = partial(tif_to_png, files[layer], out / name)
    if result.info["georeferenced"] or not (pngs or joined_bands):
        encodings |= {f"{layer}.tif": cog(layer, "nearest") for layer in ("mask", "centerline") if layer in files}
    # GDAL and ISA-L encode without the GIL: the files are written side by side, on every core the model just used.
    with ThreadPoolExecutor(max_workers=min(len(encodings), os.cpu_count() or 1)) as pool:
        running = {name: pool.submit(encode) for name, encode in encodings.items()}
        outputs = pngs | {name: future.result() for name, future in running.items()}
    png_seconds, started = time.perf_counter() - started, time.perf_counter()
    for name, path in outputs.items():
        storage.write_file(jobs.key(job_id, name), path)
    store_seconds = time.perf_counter() - started
    return jobs.update(
        job_id,
        status=DONE,
        progress=1.0,
        stage="done",
        files=sorted(outputs),
        info=result.info,
        threshold=result.threshold,
        centerline_threshold=result.centerline_threshold,
        road_fraction=result.road_pixels / (result.info["width"] * result.info["height"]),
        windows_total=result.windows,
        seconds=round(result.seconds, 3),
        timings={
            **(record.get("timings") or {}),
            "predict": round(result.seconds, 3),
            "pngs": round(png_seconds, 3),
            "store": round(store_seconds, 3),
        },
        model=predictor.describe(),
        tta=result.tta,
        resampling=result.resampling,
        roads=ROADS_PENDING,
        roads_note=None,
    )
