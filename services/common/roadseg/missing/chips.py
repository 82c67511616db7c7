"""Image chips of the review page: the imagery around a candidate, existing roads in cyan, the candidate on top.

Only the candidate's window of the image is read, decimated by GDAL to at most :data:`CHIP_PX` a side,
so a chip costs the same on a city scene; the existing roads come from the job's ``existing.geojson``
through a spatial index kept per job in this process.
"""

from __future__ import annotations

import io

import numpy as np
import shapely
from PIL import Image, ImageDraw
from rasterio.io import DatasetReader
from rasterio.windows import Window
from shapely.geometry import LineString, box

from roadseg import raster
from roadseg.missing.frame import Frame
from roadseg.missing.records import Candidate

CHIP_PX = 256
EXISTING_RGB = (0, 220, 255)
CANDIDATE_RGB = {"missing": (255, 0, 200), "unsupported": (255, 200, 0)}
#: Per-process caches, bounded: a job's existing-road index and its image stretch.
_CACHE_JOBS = 16


class ExistingIndex:
    """The existing roads of one job with an STRtree, for the lines near each chip."""

    def __init__(self, lines: list[LineString]) -> None:
        """Index ``lines`` (scene coordinates)."""
        self.lines = lines
        self.tree = shapely.STRtree(lines)

    def near(self, bounds: tuple[float, float, float, float]) -> list[LineString]:
        """Lines crossing ``bounds`` (scene coordinates)."""
        return [self.lines[i] for i in self.tree.query(box(*bounds))]


_STRETCHES: dict[str, raster.Stretch] = {}


def stretch_of(job_id: str, ds: DatasetReader, percentiles: tuple[float, float]) -> raster.Stretch:
    """The image's stretch to 8-bit RGB, computed once per job in this process (a decimated read of the image)."""
    if job_id not in _STRETCHES:
        if len(_STRETCHES) >= _CACHE_JOBS:
            _STRETCHES.clear()
        _STRETCHES[job_id] = raster.compute_stretch(ds, percentiles)
    return _STRETCHES[job_id]


def chip_window(frame: Frame, line: LineString) -> Window:
    """A square window around a line (scene coordinates) with a margin, clipped to the image."""
    minx, miny, maxx, maxy = frame.to_pixels(line).bounds
    side = max(maxx - minx, maxy - miny) * 1.3 + 64
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    col0, row0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    col1, row1 = int(min(frame.width, cx + side / 2)), int(min(frame.height, cy + side / 2))
    return Window(col0, row0, max(1, col1 - col0), max(1, row1 - row0))


def chip_png(
    ds: DatasetReader, stretch: raster.Stretch, frame: Frame, candidate: Candidate, existing: ExistingIndex
) -> bytes:
    """A PNG chip centred on ``candidate``, at most :data:`CHIP_PX` a side."""
    line = LineString(candidate.coordinates)
    window = chip_window(frame, line)
    scale = CHIP_PX / max(window.width, window.height)  # decimated when > 1 px per chip pixel, else enlarged
    shape = (max(1, round(window.height * min(scale, 1.0))), max(1, round(window.width * min(scale, 1.0))))
    bands = raster.rgb_band_indexes(ds)
    data = ds.read(bands, window=window, out_shape=(len(bands), *shape))
    rgb = raster.to_uint8_rgb(data, np.ones(shape, bool), stretch)
    image = Image.fromarray(rgb).resize((round(window.width * scale), round(window.height * scale)))
    draw = ImageDraw.Draw(image)

    def chip_xy(part: LineString) -> list[tuple[float, float]]:
        return [((x - window.col_off) * scale, (y - window.row_off) * scale) for x, y in frame.to_pixels(part).coords]

    corners = shapely.transform(
        LineString([(window.col_off, window.row_off), (window.col_off + window.width, window.row_off + window.height)]),
        frame.pixels_to_scene,
    )
    for road in existing.near(corners.bounds):
        draw.line(chip_xy(road), fill=EXISTING_RGB, width=2)
    draw.line(chip_xy(line), fill=CANDIDATE_RGB[candidate.kind], width=3)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
