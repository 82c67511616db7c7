"""Queued predictions of large images, cut into bands of rows that the ``predict`` workers share.

A job is cut into shards of ``ROADSEG_SHARD_WINDOW_ROWS`` rows of prediction windows
(:mod:`roadseg.shards` explains the bookkeeping). Each shard also runs the first row of windows of
the shard below it, its halo, so the rows it writes have seen every window that covers them, in
the same order as a prediction of the whole image: the seams are not approximately but exactly
the single-worker result (:func:`roadseg.inference.windows.sliding_predict`).

Storage of job ``{id}`` besides :mod:`roadseg.gateway.jobs`' files:

* ``predictions/{id}/bands/{n}/{layer}.tif``: shard ``n``'s band of each output layer (removed once joined);
* ``predictions/{id}/shards/{n}.json``: its result (rows, road pixels, windows, seconds);
* ``predictions/{id}/roads/shards/{n}.json``: the traced pieces of row ``n`` of the mask's graph windows,
  when the road network of a mask above ``ROADSEG_GRAPH_MAX_PIXELS`` is built by the workers too
  (:func:`plan_roads`): pieces meet at globally keyed seam nodes, and the shard completing the set
  merges them in window order and cleans the graph once, so it equals the one-process graph.

The shard that completes the set writes the job's outputs like a one-task job, from a VRT of the bands
(GDAL streams them block by block into the COG: memory stays at its block cache, whatever the image).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

from rasterio.io import DatasetReader

from roadseg import raster
from roadseg.config import Settings
from roadseg.documents import PredictionRecord, Roads, ShardPlan, Status
from roadseg.errors import InvalidInput
from roadseg.gateway.jobs import (
    failing_job,
    job_windows,
    open_input,
    page_layers,
    predict_job,
    prediction_store,
    store_outputs,
    window_progress,
)
from roadseg.gateway.road_network import failing_roads, graph_pixel_size, mask_key, store_road_network
from roadseg.inference.layers import BASE_LAYERS, LAYERS, available_layers
from roadseg.inference.predict import ModelWindows, RasterPrediction, centerline_channel
from roadseg.inference.predictor import Predictor
from roadseg.inference.road_graph import graph_params, mask_georeference
from roadseg.inference.windows import count_windows
from roadseg.roadnet.graph import (
    GraphScale,
    RasterMask,
    graph_from_pieces,
    graph_to_geojson,
    piece_from_json,
    piece_to_json,
    trace_windows,
    window_count,
)
from roadseg.roadnet.params import GraphParams
from roadseg.shards import ShardBook, Span, spans, throttled
from roadseg.storage import Storage

log = logging.getLogger(__name__)


def _plan(record: PredictionRecord) -> ShardPlan:
    if record.shards is None:
        raise InvalidInput(f"prediction {record.id} is not planned into shards")
    return record.shards


def _book(storage: Storage, record: PredictionRecord) -> ShardBook:
    return ShardBook(storage, prediction_store(storage).key(record.id), _plan(record).count)


def _cut(ds: DatasetReader, geometry: ModelWindows, per_shard: int) -> list[Span]:
    return spans(geometry.row_count(ds.height), per_shard)


def band_key(storage: Storage, job_id: str, index: int, layer: str) -> str:
    """Storage key of shard ``index``'s band of one output layer."""
    return prediction_store(storage).key(job_id, "bands", f"{index:05d}", f"{layer}.tif")


def plan_job(job_id: str, storage: Storage, predictor: Predictor, settings: Settings) -> list[int] | None:
    """Cut a queued job into shards; returns the shards still to run, or ``None`` when one task is enough.

    An image with at most ``shard_window_rows`` rows of windows is not cut (:func:`run_job` runs it).
    A re-delivered plan keeps the cut it made. The scale the model chooses for a plain image of pixel
    size ``auto`` (or none, when the card's ``plain_pixel_size`` is auto) is recorded in the job's
    ``resampling`` here, so its shards and the join (or its one task) use it instead of asking the model
    again (:func:`~roadseg.gateway.jobs.job_windows`).
    """
    jobs = prediction_store(storage)
    record = jobs.get(job_id)
    if record.shards is None:
        predictor.refresh()
        with failing_job(jobs, job_id), open_input(storage, record, settings) as ds:
            geometry = job_windows(ds, record, predictor, settings)
            rows = geometry.row_count(ds.height)
        if record.resampling is None and (geometry.resampling or {}).get("estimated"):
            record = jobs.update(job_id, resampling=geometry.resampling)  # the model's scale, chosen once
        if rows <= settings.shard_window_rows:
            return None
        per_shard = settings.shard_window_rows
        record = jobs.update(
            job_id,
            status=Status.RUNNING,
            stage="predicting",
            progress=0.0,
            shards={"count": len(spans(rows, per_shard)), "per_shard": per_shard},
        )
    pending = _book(storage, record).pending()
    log.info("prediction %s: %d shards, %d to run", job_id, _plan(record).count, len(pending))
    return pending


def run_shard(job_id: str, index: int, storage: Storage, predictor: Predictor, settings: Settings) -> bool:
    """Predict shard ``index``'s band and store it; returns whether every shard has now finished.

    A finished shard is not redone; after a failure of the job the others stop at their start.
    """
    jobs = prediction_store(storage)
    record = jobs.get(job_id)
    book = _book(storage, record)
    if (settled := book.settled(index, record.status == Status.FAILED)) is not None:
        return settled

    predictor.refresh()
    with failing_job(jobs, job_id), tempfile.TemporaryDirectory(prefix="roadseg-shard-") as tmp:
        with open_input(storage, record, settings) as ds:
            geometry = job_windows(ds, record, predictor, settings)
            cut = _cut(ds, geometry, _plan(record).per_shard)
            span = cut[index]
            sizes = [geometry.windows_of(ds, (s.start, s.stop)) for s in cut]
            progress = throttled(book, index, sizes, window_progress(jobs, job_id))
            window_rows = (span.start, span.stop)
            result = predict_job(ds, record, predictor, settings, Path(tmp), progress, window_rows, geometry)
            _, row_from, row_to = geometry.shard(ds, window_rows)
        for layer, path in result.files.items():
            storage.write_file(band_key(storage, job_id, index, layer), path)
    return book.finish(
        index,
        {
            "rows": [row_from, row_to],
            "road_pixels": result.road_pixels,
            "windows": result.windows,
            "seconds": round(result.seconds, 3),
            "threshold": result.threshold,
            "centerline_threshold": result.centerline_threshold,
            "tta": result.tta,
            "resampling": result.resampling,
        },
    )


def finish_job(job_id: str, storage: Storage, predictor: Predictor, settings: Settings) -> PredictionRecord:
    """Join the shards' bands into the job's outputs and mark it done; returns the final record.

    Each layer is a VRT over the band files, which GDAL turns straight into the job's COG (or PNG): the
    whole image is never written and read back in between (0.6x the time of a joined GeoTIFF first).
    """
    jobs = prediction_store(storage)
    record = jobs.get(job_id)
    if record.status == Status.DONE:
        # A re-delivered last shard: the bands were joined already. They are removed after the job is marked
        # done, so a worker killed in between left them: removing them again is what its re-delivery owes.
        storage.delete_prefix(jobs.key(job_id, "bands"))
        return record
    results = _book(storage, record).results()
    with (
        failing_job(jobs, job_id),
        tempfile.TemporaryDirectory(prefix="roadseg-join-") as tmp,
        contextlib.ExitStack() as bands,
    ):
        out = Path(tmp)
        with open_input(storage, record, settings) as ds:
            info = raster.scene_info(ds)
            geometry = job_windows(ds, record, predictor, settings)
            windows = count_windows(ds.height, ds.width, geometry.window, geometry.overlap)
            has_centerline = centerline_channel(predictor) is not None
            layers = available_layers(LAYERS if page_layers(record) else BASE_LAYERS, has_centerline)
            files = {}
            for layer in layers:
                parts = [
                    (bands.enter_context(storage.local_path(band_key(storage, job_id, index, layer))), result["rows"])
                    for index, result in enumerate(results)
                ]
                files[layer] = _band_vrt(ds, layer, parts, out)
        first = results[0]
        result = RasterPrediction(
            files=files,
            info=info,
            threshold=first["threshold"],
            road_pixels=sum(r["road_pixels"] for r in results),
            windows=windows,
            seconds=sum(r["seconds"] for r in results),
            resampling=first["resampling"],
            tta=first["tta"],
            centerline_threshold=first.get("centerline_threshold"),
        )
        final = store_outputs(job_id, storage, predictor, settings, out, result)
    storage.delete_prefix(jobs.key(job_id, "bands"))
    return final


def _band_vrt(ds: DatasetReader, layer: str, parts: list[tuple[Path, list[int]]], out: Path) -> Path:
    """A VRT of one output layer: each shard's band file placed at its rows, georeferenced like ``ds``."""
    count, dtype = LAYERS[layer]
    gdal_type = {"float32": "Float32", "uint8": "Byte"}[dtype]
    lines = [f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}">']
    if raster.is_georeferenced(ds):
        lines.append(f"<SRS>{escape(ds.crs.to_wkt())}</SRS>")
        lines.append(f"<GeoTransform>{', '.join(repr(v) for v in ds.transform.to_gdal())}</GeoTransform>")
    for band in range(1, count + 1):
        lines.append(f'<VRTRasterBand dataType="{gdal_type}" band="{band}">')
        for path, (row_from, row_to) in parts:
            size = f'xSize="{ds.width}" ySize="{row_to - row_from}"'
            lines.append(
                f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(path))}</SourceFilename>'
                f'<SourceBand>{band}</SourceBand><SrcRect xOff="0" yOff="0" {size}/>'
                f'<DstRect xOff="0" yOff="{row_from}" {size}/></SimpleSource>'
            )
        lines.append("</VRTRasterBand>")
    lines.append("</VRTDataset>")
    path = out / f"{layer}.vrt"
    path.write_text("\n".join(lines))
    return path


# ----------------------------------------------------------------------------- road network of a large mask


def _roads_book(storage: Storage, job_id: str, count: int) -> ShardBook:
    return ShardBook(storage, prediction_store(storage).key(job_id, "roads"), count)


def _graph_geometry(
    ds: DatasetReader, settings: Settings, record: PredictionRecord
) -> tuple[GraphParams, GraphScale, int, int]:
    """Vectorization settings, georeferencing, windows per row of windows (one shard) and shards of an open mask."""
    params = graph_params(settings.graph_window, graph_pixel_size(record))
    transform, crs = mask_georeference(ds)
    columns = -(-ds.width // params.window)
    count = -(-window_count((ds.height, ds.width), params) // columns)
    return params, GraphScale.of((ds.height, ds.width), transform, crs, params), columns, count


def plan_roads(job_id: str, storage: Storage, settings: Settings) -> list[int] | None:
    """Cut a done prediction's road network into shards (one row of graph windows each); the shards to run.

    ``None`` when its mask is small enough for one process (``ROADSEG_GRAPH_MAX_PIXELS``).
    """
    jobs = prediction_store(storage)
    record = jobs.get(job_id)
    if record.roads not in (Roads.PENDING, Roads.FAILED):
        return []  # built already, or nothing to build
    with raster.open_stored(storage, mask_key(jobs, record)) as ds:
        if ds.width * ds.height <= settings.graph_max_pixels:
            return None
        _, _, _, count = _graph_geometry(ds, settings, record)
    jobs.update(job_id, roads=Roads.PENDING, roads_note=f"building the road network in {count} shards")
    return _roads_book(storage, job_id, count).pending()


def run_roads_shard(job_id: str, index: int, storage: Storage, settings: Settings) -> bool:
    """Trace row ``index`` of the mask's graph windows; returns whether every row has now been traced."""
    jobs = prediction_store(storage)
    record = jobs.get(job_id)
    with failing_roads(jobs, job_id), raster.open_stored(storage, mask_key(jobs, record)) as ds:
        params, scale, columns, count = _graph_geometry(ds, settings, record)
        book = _roads_book(storage, job_id, count)
        if (settled := book.settled(index, job_failed=False)) is not None:
            return settled
        indexes = range(index * columns, (index + 1) * columns)
        pieces = trace_windows(RasterMask(ds), params, scale.hole_area_px(params), indexes)
    return book.finish(index, {"pieces": [piece_to_json(piece) for piece in pieces]})


def finish_roads(job_id: str, storage: Storage, settings: Settings) -> PredictionRecord:
    """Merge the traced rows (window order) into the road network, clean it once, store it; returns the record."""
    jobs = prediction_store(storage)
    record = jobs.get(job_id)
    started = time.perf_counter()
    with failing_roads(jobs, job_id):
        with raster.open_stored(storage, mask_key(jobs, record)) as ds:
            params, scale, _, count = _graph_geometry(ds, settings, record)
        results = _roads_book(storage, job_id, count).results()
        pieces = [piece_from_json(piece) for result in results for piece in result["pieces"]]
        roads = graph_to_geojson(graph_from_pieces(pieces, scale, params))
        return store_road_network(storage, job_id, roads, time.perf_counter() - started)
