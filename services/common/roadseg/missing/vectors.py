"""The map's existing roads over one image, as lines in the image's scene coordinates.

Shapefile, GeoJSON and GeoPackage go through the labeler's reading (:class:`~roadseg.labeler.vectors.VectorSource`:
only features in the image's box, any CRS, repaired geometries); OSM ``.osm.pbf`` extracts through
pyosmium (ways with a ``highway`` tag, node locations resolved by libosmium). Nothing is parsed by hand.

A plain image (no georeference) has no CRS to reproject into: its vectors must be in the image's pixel
coordinates (x = column, y = row, the way roadseg writes a plain image's road network), and any CRS the
file declares is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import shapely
from shapely.geometry import LineString, box
from shapely.geometry.base import BaseGeometry

from roadseg.errors import InvalidInput
from roadseg.missing.frame import WGS84, Frame

OSM_SUFFIXES = (".osm.pbf", ".pbf")


@dataclass
class ExistingRoads:
    """Road lines over an image (scene coordinates) and what reading them found."""

    lines: list[LineString]
    read: int
    dropped: dict[str, int] = field(default_factory=dict)


def read_existing_roads(
    path: str | Path, frame: Frame, layer: str | None = None, assume_crs: str | None = None
) -> ExistingRoads:
    """The road lines of ``path`` that cross the image of ``frame``, clipped to it, in scene coordinates.

    Every problem the user can fix is :class:`InvalidInput` (400): a missing, empty or unreadable file,
    no CRS, no road line at all, or none over the image (the message gives the image's box).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"vector file not found: {path.name}")
    if path.stat().st_size == 0:
        raise InvalidInput(f"the vector file {path.name} is empty (0 bytes)")
    footprint = frame.footprint()
    if path.name.lower().endswith(OSM_SUFFIXES):
        geoms, read = _read_osm(path, frame)
    elif frame.georeferenced:
        geoms, read = _read_georeferenced(path, frame, layer, assume_crs)
    else:
        geoms, read = _read_pixel_coordinates(path, layer)
    lines, dropped = _clip_lines(geoms, footprint)
    if read == 0:
        raise InvalidInput(f"the vector file {path.name} holds no features")
    if not lines:
        where = ", ".join(f"{v:.6g}" for v in footprint.bounds)
        units = frame.crs or "pixel coordinates (a plain image: vectors must be in pixels)"
        raise InvalidInput(
            f"none of the {read} features of {path.name} is a road line over the image "
            f"(image box {where} in {units}; dropped: {dropped or 'none'})"
        )
    return ExistingRoads(lines, read, dropped)


def _read_georeferenced(
    path: Path, frame: Frame, layer: str | None, assume_crs: str | None
) -> tuple[list[BaseGeometry], int]:
    from roadseg.labeler.vectors import VectorSource

    source = VectorSource.open(path, layer=layer, assume_crs=assume_crs)
    table, report = source.read(frame.footprint().bounds, frame.crs)  # type: ignore[arg-type]
    return list(table.geometry.values), int(report["read"]) or source.feature_count


def _read_pixel_coordinates(path: Path, layer: str | None) -> tuple[list[BaseGeometry], int]:
    import pyogrio

    try:
        table = pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # pyogrio raises DataSourceError and friends for unreadable files
        raise InvalidInput(f"cannot read vector file {path.name}: {exc}") from exc
    geoms = [g for g in table.geometry.values if g is not None and not g.is_empty]
    return [shapely.make_valid(g) if not g.is_valid else g for g in geoms], len(table)


def _read_osm(path: Path, frame: Frame) -> tuple[list[BaseGeometry], int]:
    """Ways tagged ``highway`` of an OSM PBF extract, in scene coordinates; ways far outside the image skipped."""
    import osmium

    if not frame.georeferenced:
        raise InvalidInput("OSM extracts are in longitude/latitude; the image has no georeference to match them")
    west, south, east, north = frame.to_wgs84(frame.footprint()).bounds  # type: ignore[union-attr]
    lines: list[BaseGeometry] = []
    ways = 0
    try:
        processor = (
            osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
            .with_locations()
            .with_filter(osmium.filter.KeyFilter("highway"))
        )
        for obj in processor:
            if not isinstance(obj, osmium.osm.Way):
                continue
            ways += 1
            coords = [(n.lon, n.lat) for n in obj.nodes if n.location.valid()]
            if len(coords) < 2:
                continue
            xs, ys = [c[0] for c in coords], [c[1] for c in coords]
            if max(xs) < west or min(xs) > east or max(ys) < south or min(ys) > north:
                continue
            lines.append(LineString(coords))
    except RuntimeError as exc:  # libosmium's errors for broken or truncated files
        raise InvalidInput(f"cannot read OSM file {path.name}: {exc}") from exc
    from roadseg.geo import transform_geometry

    return [transform_geometry(line, WGS84, frame.crs) for line in lines], ways  # type: ignore[arg-type]


def _clip_lines(geoms: list[BaseGeometry], footprint: BaseGeometry) -> tuple[list[LineString], dict[str, int]]:
    """Line parts of ``geoms`` inside ``footprint``; other geometry types are counted by type and dropped."""
    lines: list[LineString] = []
    dropped: dict[str, int] = {}
    window = box(*footprint.bounds)
    for geom in geoms:
        parts = list(getattr(geom, "geoms", [geom]))
        for part in parts:
            if not isinstance(part, LineString):
                dropped[part.geom_type] = dropped.get(part.geom_type, 0) + 1
                continue
            clipped = part.intersection(window) if not window.contains(part) else part
            lines.extend(p for p in getattr(clipped, "geoms", [clipped]) if isinstance(p, LineString) and p.length > 0)
    return lines, dropped
