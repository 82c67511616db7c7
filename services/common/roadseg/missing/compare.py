"""Predicted road network vs existing roads, in metres: candidate missing roads and unsupported roads.

The predicted network is the road graph roadseg builds from a prediction anyway (:mod:`roadseg.roadnet.graph`:
skeleton, cleaning, coordinates), traced from the probabilities of :func:`centreline_probabilities`.
Then, in metres (:class:`~roadseg.missing.frame.Frame`):

- the stretches of predicted edges farther than ``tolerance_m`` from every existing road, joined where
  they meet end to end and at least ``min_length_m`` long, are **missing** candidates;
- the stretches of existing roads farther than ``tolerance_m`` from every predicted edge are
  **unsupported** (absent or misaligned in the map; a separate, lower-priority list).

Each candidate gets its length, the model's mean probability along it, whether it connects to the
existing network (directly or through other candidates), and a rank score (:func:`missing_score`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import shapely
from rasterio.io import DatasetReader
from rasterio.windows import Window
from shapely.geometry import LineString, MultiLineString
from shapely.geometry.base import BaseGeometry

from roadseg.config import Settings
from roadseg.inference.predict import predict_raster
from roadseg.inference.predictor import Predictor
from roadseg.missing.frame import Frame
from roadseg.missing.records import MISSING, UNSUPPORTED, Candidate

#: The prediction layers whose probabilities trace road centrelines, best first: the centreline band of
#: a two-output model, else a single-output model's road probabilities.
CENTRELINE_LAYERS = ("centerline_probability", "probability")
#: Dangling candidates (not joined to the existing network) rank lower by this factor.
DANGLING_FACTOR = 0.5
#: Length (m) at which a candidate's length factor reaches 1 - 1/e: short stretches rank lower.
LENGTH_SCALE_M = 100.0


def centreline_probabilities(
    ds: DatasetReader,
    predictor: Predictor,
    settings: Settings,
    out_dir: Path,
    tta: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """A float32 GeoTIFF of the probability of a road centreline for every pixel of ``ds`` (same grid).

    Runs the prediction path everybody uses (:func:`roadseg.inference.predict.predict_raster`) and keeps
    the first of :data:`CENTRELINE_LAYERS` the model has.
    """
    threshold = predictor.threshold(settings.threshold)
    result = predict_raster(
        ds, predictor, out_dir, settings, threshold, layers=CENTRELINE_LAYERS, progress=progress, tta=tta
    )
    return result.files[centreline_layer(result.files)]


def centreline_layer(layers: Collection[str]) -> str:
    """The first of :data:`CENTRELINE_LAYERS` among a prediction's ``layers``."""
    return next(layer for layer in CENTRELINE_LAYERS if layer in layers)


def centreline_threshold(predictor: Predictor, override: float | None) -> float:
    """The threshold of the layer :func:`centreline_probabilities` keeps: the band's, else the road's."""
    return predictor.threshold(override, "band" if "band" in predictor.outputs else None)


def band_width_m(settings: Settings) -> float:
    """``ROADSEG_MISSING_BAND_WIDTH_M``, else the labeler's centreline band: the band the model's output learns."""
    from roadseg.labeler.run import BAND_WIDTH_M

    return settings.missing_band_width_m or BAND_WIDTH_M


def default_tolerance_m(settings: Settings, pixel_size_m: float) -> float:
    """``ROADSEG_MISSING_TOLERANCE_M``, else half the centreline band plus 6 pixels.

    Why both: a predicted centreline lies within half a band of the true one, and mapped lines
    are drawn on other imagery, a few pixels off (Massachusetts' labels: ~1-2 px).
    """
    if settings.missing_tolerance_m is not None:
        return settings.missing_tolerance_m
    return round(band_width_m(settings) / 2 + 6 * pixel_size_m, 2)


@dataclass(frozen=True)
class CompareOptions:
    """How strict the comparison is (metres) and which probability makes a pixel road."""

    tolerance_m: float
    min_length_m: float
    threshold: float


@dataclass
class Comparison:
    """The two candidate lists (best first) and the predicted network's size."""

    missing: list[Candidate]
    unsupported: list[Candidate]
    predicted_length_m: float
    existing_length_m: float


def predicted_network(probabilities: DatasetReader, frame: Frame, threshold: float, window: int) -> list[LineString]:
    """The predicted road graph's edges (scene coordinates), traced from the probability raster window by window."""
    from roadseg.roadnet.graph import RasterMask, mask_to_graph
    from roadseg.roadnet.params import GraphParams

    params = GraphParams(threshold=threshold, window=window, pixel_size_m=frame.pixel_size_m)
    transform = frame.transform if frame.georeferenced else None
    graph = mask_to_graph(RasterMask(probabilities), transform, frame.crs, params)
    return [data["geometry"] for _, _, data in graph.edges(data=True)]


def compare(
    predicted: list[LineString],
    existing: list[LineString],
    probabilities: DatasetReader,
    frame: Frame,
    options: CompareOptions,
) -> Comparison:
    """Match predicted and existing lines (scene coordinates) in metres and rank both kinds of candidate."""
    predicted_m = [frame.to_metric(line) for line in predicted]
    existing_m = [frame.to_metric(line) for line in existing]
    tolerance = options.tolerance_m
    existing_union = shapely.union_all(existing_m) if existing_m else MultiLineString()
    predicted_union = shapely.union_all(predicted_m) if predicted_m else MultiLineString()
    missing_parts = _farther_than(predicted_m, existing_union, tolerance, options.min_length_m)
    unsupported_parts = _farther_than(existing_m, predicted_union, tolerance, options.min_length_m)
    connected = _connected(missing_parts, existing_union, tolerance + 2 * frame.pixel_size_m)
    missing = [
        _candidate(MISSING, part, link, probabilities, frame)
        for part, link in zip(missing_parts, connected, strict=True)
    ]
    unsupported = [_candidate(UNSUPPORTED, part, True, probabilities, frame) for part in unsupported_parts]
    return Comparison(
        missing=ranked(missing),
        unsupported=ranked(unsupported),
        predicted_length_m=round(sum(line.length for line in predicted_m), 1),
        existing_length_m=round(sum(line.length for line in existing_m), 1),
    )


def _farther_than(
    lines: list[BaseGeometry], other: BaseGeometry, tolerance: float, min_length: float
) -> list[LineString]:
    """Stretches of ``lines`` beyond ``tolerance`` of ``other``, joined end to end, at least ``min_length`` long."""
    if not lines:
        return []
    near = other.buffer(tolerance, quad_segs=4) if not other.is_empty else None
    pieces: list[LineString] = []
    for line in lines:
        rest = line.difference(near) if near is not None else line
        pieces.extend(p for p in getattr(rest, "geoms", [rest]) if isinstance(p, LineString) and p.length > 0)
    if not pieces:
        return []
    merged = shapely.line_merge(MultiLineString(pieces))
    parts = [p for p in getattr(merged, "geoms", [merged]) if isinstance(p, LineString)]
    return sorted((p for p in parts if p.length >= min_length), key=lambda p: p.coords[0])


def _connected(parts: list[LineString], existing: BaseGeometry, reach: float) -> list[bool]:
    """Whether each part ends within ``reach`` of the existing network, directly or through connected parts."""
    ends = [(shapely.Point(p.coords[0]), shapely.Point(p.coords[-1])) for p in parts]
    linked = [not existing.is_empty and min(existing.distance(a), existing.distance(b)) <= reach for a, b in ends]
    tree = shapely.STRtree(parts) if parts else None
    changed = True
    while changed and tree is not None:
        changed = False
        for i, (a, b) in enumerate(ends):
            if linked[i]:
                continue
            for point in (a, b):
                near = tree.query(point, predicate="dwithin", distance=reach / 4)
                if any(linked[j] for j in near if j != i):
                    linked[i] = changed = True
                    break
    return linked


def _candidate(
    kind: Literal["missing", "unsupported"],
    line_m: LineString,
    connected: bool,
    probabilities: DatasetReader,
    frame: Frame,
) -> Candidate:
    scene = frame.from_metric(line_m)
    wgs84 = frame.to_wgs84(scene)
    mean = mean_probability(probabilities, frame.to_pixels(scene))
    length = line_m.length
    score = missing_score(mean, length, connected) if kind == MISSING else unsupported_score(mean, length)
    return Candidate(
        id="",
        kind=kind,
        rank=0,
        score=score,
        length_m=round(length, 2),
        mean_probability=round(mean, 4),
        connected=connected,
        coordinates=_coords(scene, frame.coordinate_digits),
        coordinates_wgs84=_coords(wgs84, 8) if wgs84 is not None else None,
    )


def missing_score(mean_probability: float, length_m: float, connected: bool) -> float:
    """Rank of a missing candidate in [0, 1]: the model's confidence, longer is better, dangling is worse."""
    length_factor = 1.0 - math.exp(-length_m / LENGTH_SCALE_M)
    return round(mean_probability * length_factor * (1.0 if connected else DANGLING_FACTOR), 4)


def unsupported_score(mean_probability: float, length_m: float) -> float:
    """Rank of an unsupported road: how surely the model sees no road there, longer is better."""
    return round((1.0 - mean_probability) * (1.0 - math.exp(-length_m / LENGTH_SCALE_M)), 4)


def ranked(candidates: list[Candidate]) -> list[Candidate]:
    """Best score first; ids ``<kind letter><rank>`` follow that order, so the pages are in rank order."""
    ordered = sorted(candidates, key=lambda c: (-c.score, -c.length_m, c.coordinates[0]))
    return [c.model_copy(update={"rank": i, "id": f"{c.kind[0]}{i:06d}"}) for i, c in enumerate(ordered)]


def mean_probability(probabilities: DatasetReader, line_px: BaseGeometry, step_px: float = 1.0) -> float:
    """Mean of the probability raster at points every ``step_px`` along a line in pixel coordinates.

    Reads only the line's bounding window, so it costs the same on a city-sized raster.
    """
    length = line_px.length
    count = max(2, int(length / step_px) + 1)
    points = shapely.line_interpolate_point(line_px, np.linspace(0.0, length, count))
    xy = shapely.get_coordinates(points)
    cols = np.clip(np.floor(xy[:, 0]).astype(int), 0, probabilities.width - 1)
    rows = np.clip(np.floor(xy[:, 1]).astype(int), 0, probabilities.height - 1)
    c0, r0 = int(cols.min()), int(rows.min())
    window = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
    values = probabilities.read(1, window=window).astype(np.float64)
    if probabilities.dtypes[0] == "uint8":
        values /= 255.0
    return float(values[rows - r0, cols - c0].mean())


def _coords(line: BaseGeometry, digits: int = 3) -> list[list[float]]:
    return [[round(float(x), digits), round(float(y), digits)] for x, y in line.coords]
