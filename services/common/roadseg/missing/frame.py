"""Where an image lies and how to measure on it: scene coordinates, metres, pixels and EPSG:4326.

Matching happens in metres: in the scene's CRS when it is projected in metres, else in the UTM zone of
the image centre (the labeler's rule), so an EPSG:4326 scene is not measured in degrees. A plain image
(no georeference) works in pixel coordinates scaled by its pixel size, and has no EPSG:4326 geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from roadseg.documents import ImageInfo
from roadseg.geo import crs_string, to_crs, transform_geometry

WGS84 = "EPSG:4326"


@dataclass(frozen=True)
class Frame:
    """An image's geometry: ``crs`` None means scene coordinates are pixels (x = column, y = row)."""

    crs: str | None
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    pixel_size_m: float
    metric_crs: str | None

    @classmethod
    def of(cls, info: ImageInfo, pixel_size_m: float | None = None) -> Frame:
        """The frame of an image from its header facts (:func:`roadseg.raster.scene_info`).

        ``pixel_size_m`` is needed for a plain image (there is nothing else to measure it by); a
        georeferenced one measures its own.
        """
        from roadseg.errors import InvalidInput
        from roadseg.geo import pixel_size_m as measure
        from roadseg.labeler.rasterize import TileGrid, metric_crs

        width, height = info.width, info.height
        if not info.georeferenced or info.crs is None:
            if not pixel_size_m or pixel_size_m <= 0:
                raise InvalidInput(
                    "a plain image (no georeference) needs its pixel size in metres: --pixel-size on the command "
                    'line, "pixel_size_m" in the API\'s options'
                )
            return cls(None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), width, height, float(pixel_size_m), None)
        crs = crs_string(info.crs)
        transform = tuple(float(v) for v in info.transform[:6])
        parsed = to_crs(crs)
        assert parsed is not None  # a georeferenced image has a CRS
        size = measure(transform, crs, (height, width)) or 1.0
        if parsed.is_projected and parsed.axis_info[0].unit_conversion_factor == 1.0:
            metric = crs
        else:
            metric = crs_string(metric_crs(TileGrid(Affine(*transform), parsed, width, height)))
        return cls(crs, transform, width, height, float(size), metric)  # type: ignore[arg-type]

    @property
    def georeferenced(self) -> bool:
        """Whether scene coordinates are a CRS (else pixels)."""
        return self.crs is not None

    @property
    def coordinate_digits(self) -> int:
        """Decimals that keep scene coordinates to about a millimetre (degrees need eight)."""
        parsed = to_crs(self.crs)
        return 8 if parsed is not None and parsed.is_geographic else 3

    def footprint(self) -> BaseGeometry:
        """The image rectangle in scene coordinates."""
        return shapely.transform(box(0, 0, self.width, self.height), self.pixels_to_scene)

    def to_metric(self, geom: BaseGeometry) -> BaseGeometry:
        """Scene coordinates -> metres (a projected CRS, or pixels times the pixel size)."""
        if self.crs is None:
            return shapely.transform(geom, lambda xy: xy * self.pixel_size_m)
        return transform_geometry(geom, self.crs, self.metric_crs or self.crs)

    def from_metric(self, geom: BaseGeometry) -> BaseGeometry:
        """Metres -> scene coordinates (the inverse of :meth:`to_metric`)."""
        if self.crs is None:
            return shapely.transform(geom, lambda xy: xy / self.pixel_size_m)
        return transform_geometry(geom, self.metric_crs or self.crs, self.crs)

    def to_wgs84(self, geom: BaseGeometry) -> BaseGeometry | None:
        """Scene coordinates -> longitude/latitude; None for a plain image (there is no honest answer)."""
        return None if self.crs is None else transform_geometry(geom, self.crs, WGS84)

    def to_pixels(self, geom: BaseGeometry) -> BaseGeometry:
        """Scene coordinates -> pixel coordinates (x = column, y = row) of this image."""
        inverse = ~Affine(*self.transform)
        return shapely.transform(geom, lambda xy: _apply(inverse, xy))

    def pixels_to_scene(self, xy: np.ndarray) -> np.ndarray:
        """Pixel (x, y) rows of an (N, 2) array -> scene coordinates (for :func:`shapely.transform`)."""
        return _apply(Affine(*self.transform), xy)


def _apply(affine: Affine, xy: np.ndarray) -> np.ndarray:
    """An affine on an (N, 2) array of x, y."""
    x, y = xy[:, 0], xy[:, 1]
    out = xy.copy()
    out[:, 0] = affine.a * x + affine.b * y + affine.c
    out[:, 1] = affine.d * x + affine.e * y + affine.f
    return out
