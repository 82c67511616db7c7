"""Review decisions as training labels: a plain folder dataset the trainer reads like any other source.

An accepted candidate is road: 255 in the centreline band mask (``masks/``, as wide as the labeler's band
unless ``ROADSEG_MISSING_BAND_WIDTH_M`` says otherwise) and in the surface mask (``surface_masks/``, the
labeler's default road width). A rejected one is background along its corridor (0 in both, the road
width wide). Everything else is ignored (:data:`~roadseg.mask_values.IGNORE`): the review says nothing
about it. Tiles are cut only where a decided candidate passes. ``source.json`` says which targets the
folder holds (``"both"``: band and surface, in the trainer's words) and its pixel size.

Layout: ``train/images/<job>_r<row>_c<col>.png``, ``train/masks/...``, ``train/surface_masks/...``, ``source.json``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from affine import Affine
from PIL import Image
from rasterio.features import rasterize
from rasterio.windows import Window
from shapely.geometry import LineString, box
from shapely.geometry.base import BaseGeometry

from roadseg import raster
from roadseg.config import Settings
from roadseg.documents import Status
from roadseg.errors import InvalidInput
from roadseg.labeler.widths import DEFAULT_WIDTH_M
from roadseg.mask_values import BACKGROUND, IGNORE, ROAD
from roadseg.missing.compare import band_width_m
from roadseg.missing.export import decided
from roadseg.missing.frame import Frame
from roadseg.missing.jobs import open_image
from roadseg.missing.records import Candidate, MissingRecord, missing_store
from roadseg.missing.run import frame_of
from roadseg.storage import Storage, storage_from_url

SPLIT = "train"
TILE_PX = 512


def export_dataset(
    storage: Storage, job_ids: Iterable[str], out_url: str, settings: Settings, tile_px: int = TILE_PX
) -> dict[str, Any]:
    """Write the decided candidates of ``job_ids`` as a dataset at ``out_url`` (folder or storage URL)."""
    out = storage_from_url(out_url)
    jobs = missing_store(storage)
    tiles = 0
    counts = {"accepted": 0, "rejected": 0}
    sizes = set()
    for job_id in job_ids:
        record = jobs.get(job_id)
        if record.status != Status.DONE:
            raise InvalidInput(f"missing-roads job {job_id} is {record.status}, not done")
        accepted, rejected = decided(storage, record, "accept"), decided(storage, record, "reject")
        counts["accepted"] += len(accepted)
        counts["rejected"] += len(rejected)
        sizes.add(round(record.pixel_size_m, 3))
        tiles += _write_job(storage, out, record, accepted, rejected, settings, tile_px)
    if len(sizes) > 1:
        raise InvalidInput(f"the jobs have different pixel sizes ({sorted(sizes)} m): export them as separate datasets")
    if tiles == 0:
        raise InvalidInput("no candidate of these jobs is accepted or rejected yet: nothing to export")
    source = {
        "targets": "both",  # the trainer's word (trainer.data.SOURCE_TARGETS): masks/ band, surface_masks/ surface
        "pixel_size_m": sizes.pop(),
        "jobs": list(job_ids),
        "tiles": tiles,
        "candidates": counts,
        "mask_values": f"{BACKGROUND} background (rejected corridors), {ROAD} road (accepted), {IGNORE} unknown",
        "band_width_m": band_width_m(settings),
        "surface_width_m": DEFAULT_WIDTH_M,
    }
    out.write_text("source.json", json.dumps(source, indent=2))
    return source


def _write_job(
    storage: Storage,
    out: Storage,
    record: MissingRecord,
    accepted: list[Candidate],
    rejected: list[Candidate],
    settings: Settings,
    tile_px: int,
) -> int:
    """Tiles of one job's image crossed by a decided candidate; returns how many were written."""
    frame = frame_of(record)
    band = [_corridor(frame, c, band_width_m(settings)) for c in accepted]
    surface = [_corridor(frame, c, DEFAULT_WIDTH_M) for c in accepted]
    background = [_corridor(frame, c, DEFAULT_WIDTH_M) for c in rejected]
    everything = band + surface + background
    written = 0
    with open_image(storage, record, settings) as ds:
        stretch = raster.compute_stretch(ds, settings.stretch_percentiles)
        for row in range(0, frame.height, tile_px):
            for col in range(0, frame.width, tile_px):
                window = Window(col, row, min(tile_px, frame.width - col), min(tile_px, frame.height - row))
                cell = box(col, row, col + window.width, row + window.height)
                if not any(shape.intersects(cell) for shape in everything):
                    continue
                rgb, valid = raster.read_rgb_window(ds, window, stretch)
                shape = (window.height, window.width)
                band_mask = _burn(shape, col, row, background, band)
                surface_mask = _burn(shape, col, row, background, surface)
                band_mask[~valid] = IGNORE
                surface_mask[~valid] = IGNORE
                stem = f"{record.id}_r{row:06d}_c{col:06d}"
                out.write_bytes(f"{SPLIT}/images/{stem}.png", _png(rgb))
                out.write_bytes(f"{SPLIT}/masks/{stem}.png", _png(band_mask))
                out.write_bytes(f"{SPLIT}/surface_masks/{stem}.png", _png(surface_mask))
                written += 1
    return written


def _corridor(frame: Frame, candidate: Candidate, width_m: float) -> BaseGeometry:
    """The candidate buffered by half ``width_m`` in metres, in pixel coordinates of its image."""
    line_m = frame.to_metric(LineString(candidate.coordinates))
    return frame.to_pixels(frame.from_metric(line_m.buffer(width_m / 2, cap_style="flat")))


def _burn(
    shape: tuple[int, int], col: int, row: int, background: list[BaseGeometry], road: list[BaseGeometry]
) -> np.ndarray:
    """IGNORE everywhere, BACKGROUND on rejected corridors, ROAD on accepted ones (road wins where they cross)."""
    mask = np.full(shape, IGNORE, np.uint8)
    transform = Affine.translation(col, row)
    for value, shapes in ((BACKGROUND, background), (ROAD, road)):
        if shapes:
            burnt = rasterize(((s, 1) for s in shapes), out_shape=shape, transform=transform, fill=0, dtype="uint8")
            mask[burnt > 0] = value
    return mask


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()
