"""Reading road vectors (Shapefile, GeoJSON, GeoPackage, OSM PBF/XML) for a scene.

Only the features inside the scene's bounding box are read (GDAL's spatial filter, which uses
the file's spatial index where it has one: GeoPackage R-tree, shapefile .qix, OSM), and the
result carries a spatial index so each tile then queries just the features it touches.
A city-sized file is therefore read once per scene and never loaded whole.

Every problem a user can fix (missing layer, no CRS, unreadable file) raises
:class:`~roadseg.errors.InvalidInput` with a message saying what to do; problems with single
features (null, empty, invalid, points) are repaired or dropped and counted in
:class:`GeometryReport`, never fatal.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from pyproj import CRS
from shapely.geometry import box

from roadseg.errors import InvalidInput

log = logging.getLogger(__name__)

#: OSM files hold every kind of line (rivers, power lines, boundaries); roads carry ``highway``.
OSM_ROAD_FILTER = "highway IS NOT NULL"
_LINE_TYPES = ("LineString", "MultiLineString")
_AREA_TYPES = ("Polygon", "MultiPolygon")


@dataclass
class GeometryReport:
    """What happened to the features read for a scene; stored in the label manifest."""

    read: int = 0
    null_or_empty: int = 0
    repaired: int = 0
    unsupported: int = 0
    kept: int = 0
    unsupported_types: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The report as a plain dict, for the label manifest."""
        return asdict(self)


@dataclass
class VectorSource:
    """One layer of a vector file, validated up front so errors surface before any tile is labeled."""

    path: str
    layer: str | None
    crs: CRS
    driver: str
    feature_count: int
    where: str | None = None
    attribute_filter: dict[str, list[str | int | float]] | None = None

    @classmethod
    def open(
        cls,
        path: str | Path,
        layer: str | None = None,
        assume_crs: str | None = None,
        where: str | None = None,
        attribute_filter: dict[str, list[str | int | float]] | None = None,
    ) -> VectorSource:
        """Check the file, the layer and the CRS; raise :class:`InvalidInput` with a fix when one is wrong.

        Messages name the file by its name only: the service's own folders (temporary copies) stay private.
        """
        path = str(path)
        name = Path(path).name
        if not Path(path).exists():
            raise InvalidInput(f"vector file not found: {name}")
        try:
            layers = [str(layer_name) for layer_name, _ in pyogrio.list_layers(path)]
        except Exception as exc:  # pyogrio raises DataSourceError and friends for unreadable files
            raise InvalidInput(f"cannot read vector file {name}: {_without_folders(exc)}") from exc
        if not layers:
            raise InvalidInput(f"vector file {name} has no layers")
        info_layer = layer
        if layer is None:
            # OSM files expose points/lines/multilinestrings/multipolygons/other_relations; roads are in `lines`.
            info_layer = "lines" if "lines" in layers and "points" in layers else layers[0]
        elif layer not in layers:
            raise InvalidInput(f"vector file {name} has no layer {layer!r}; available layers: {', '.join(layers)}")
        try:
            info = pyogrio.read_info(path, layer=info_layer)
        except Exception as exc:
            raise InvalidInput(f"cannot read layer {info_layer!r} of {name}: {_without_folders(exc)}") from exc
        fields = {str(f) for f in info.get("fields", [])}
        if missing := sorted(set(attribute_filter or {}) - fields):
            raise InvalidInput(f"layer {info_layer!r} of {name} has no attribute {', '.join(missing)} to filter on")
        driver = str(info.get("driver") or "")
        if where is None and driver == "OSM":
            where = OSM_ROAD_FILTER
        crs_text = info.get("crs")
        if crs_text:
            crs = CRS.from_user_input(crs_text)
        elif assume_crs:
            crs = _parse_crs(assume_crs)
        else:
            raise InvalidInput(
                f"vector file {name} has no coordinate reference system; pass --assume-crs EPSG:xxxx "
                "(e.g. EPSG:4326 for longitude/latitude) if you know it"
            )
        return cls(path, info_layer, crs, driver, int(info.get("features") or 0), where, attribute_filter)

    def read(self, bounds: tuple[float, float, float, float], bounds_crs: CRS | str) -> tuple[gpd.GeoDataFrame, dict]:
        """Features intersecting ``bounds`` (given in ``bounds_crs``), reprojected to ``bounds_crs``.

        Returns the cleaned frame (with a spatial index built) and the :class:`GeometryReport` as a dict.
        """
        from rasterio.warp import transform_bounds

        target = CRS.from_user_input(bounds_crs)
        src_bounds = bounds if target == self.crs else transform_bounds(target, self.crs, *bounds, densify_pts=21)
        try:
            frame = pyogrio.read_dataframe(self.path, layer=self.layer, bbox=tuple(src_bounds), where=self.where)
        except Exception as exc:
            raise InvalidInput(f"cannot read features from {Path(self.path).name}: {_without_folders(exc)}") from exc
        for attribute, values in (self.attribute_filter or {}).items():
            frame = frame[frame[attribute].isin(values)]
        frame = frame.set_crs(self.crs, allow_override=True)
        frame, report = clean_geometries(frame)
        if len(frame) and target != self.crs:
            frame = frame.to_crs(target)
            frame, _ = clean_geometries(frame)  # reprojection can make a sliver polygon invalid
        frame = frame[frame.intersects(box(*bounds))].reset_index(drop=True)
        report.kept = len(frame)
        frame.sindex  # noqa: B018 - build the spatial index once, before per-tile queries
        return frame, report.as_dict()


#: Formats a label run started over HTTP may bring, by their first bytes: data only. GDAL also opens formats
#: that name other files or run SQL (OGR VRT, CSVT, plain SQLite with views): those are for the command line.
_SIGNATURES = {
    "GeoPackage": lambda head: head.startswith(b"SQLite format 3\x00") and head[68:72] == b"GPKG",
    "Shapefile": lambda head: head[:4] == b"\x00\x00\x27\x0a",
    "FlatGeobuf": lambda head: head[:3] == b"fgb",
    "OSM PBF": lambda head: b"OSMHeader" in head[:32],
    "OSM XML": lambda head: head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<?xml") and b"<osm" in head,
    "GeoJSON": lambda head: head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"),
}


def check_data_format(path: str | Path) -> str:
    """The format of a vector file sent to a service, from its content; :class:`InvalidInput` for any other.

    Checked before GDAL opens the file, so a file that would make GDAL read something else never gets opened.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
    for name, matches in _SIGNATURES.items():
        if matches(head):
            return name
    raise InvalidInput(
        f"{Path(path).name}: not a vector format accepted here (GeoJSON, GeoPackage, Shapefile, FlatGeobuf, OSM)"
    )


def _without_folders(exc: Exception) -> str:
    """GDAL's message without server-side folders (the service's temporary copies)."""
    from roadseg.raster import gdal_message

    return gdal_message(exc)


def _parse_crs(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except Exception as exc:
        raise InvalidInput(f"not a coordinate reference system: {text!r} ({exc})") from exc


def clean_geometries(frame: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, GeometryReport]:
    """Drop null/empty and non-line/area features, repair invalid ones, split collections.

    Repair uses ``make_valid`` (keeping the line/area parts of what it returns), so a
    self-intersecting road polygon still labels the area it encloses instead of failing.
    """
    report = GeometryReport(read=len(frame))
    geoms = frame.geometry.values
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    report.null_or_empty = int(missing.sum())
    frame = frame[~missing]
    geoms = frame.geometry.values
    invalid = ~shapely.is_valid(geoms)
    report.repaired = int(invalid.sum())
    if invalid.any():
        fixed = np.array(geoms, dtype=object)
        fixed[invalid] = shapely.make_valid(fixed[invalid])
        frame = frame.set_geometry(gpd.GeoSeries(fixed, index=frame.index, crs=frame.crs))
    frame = frame.explode(index_parts=False)
    types = frame.geom_type
    keep = types.isin(_LINE_TYPES + _AREA_TYPES) & ~frame.geometry.is_empty
    dropped = frame[~keep]
    report.unsupported = int(len(dropped))
    report.unsupported_types = sorted({str(t) for t in dropped.geom_type})
    frame = frame[keep].reset_index(drop=True)
    if report.null_or_empty or report.repaired or report.unsupported:
        log.info(
            "vector geometries: %d null/empty dropped, %d invalid repaired, %d unsupported parts dropped (%s)",
            report.null_or_empty,
            report.repaired,
            report.unsupported,
            ", ".join(report.unsupported_types) or "-",
        )
    return frame, report


def query_tile(frame: gpd.GeoDataFrame, bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """The features of ``frame`` whose geometry intersects the tile bounds (same CRS), via the spatial index."""
    if frame.empty:
        return frame
    idx = frame.sindex.query(box(*bounds), predicate="intersects")
    return frame.iloc[np.sort(idx)]
