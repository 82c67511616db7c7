"""A minimal GeoTIFF encoder for label masks: one uint8 band, north-up, a CRS with an EPSG code.

A label run writes one small mask per tile. Through GDAL (a /vsimem dataset, its CRS handling and
block writer) that took longer than labeling the tile itself; the file is simple enough to write
directly: a baseline TIFF with one deflate strip and the three GeoTIFF keys GDAL needs to read it
back with the same CRS and transform (model type, raster type "area", the EPSG code). Anything
else (rotated grids, CRSs without an EPSG code) returns None, and the caller uses GDAL.
"""

from __future__ import annotations

import functools
import struct
import zlib

import numpy as np
from affine import Affine
from rasterio.crs import CRS

#: TIFF field types.
_SHORT, _LONG, _DOUBLE = 3, 4, 12
#: GeoTIFF keys: model type (1 projected, 2 geographic), raster type (1 = pixel is area), CRS codes.
_MODEL_TYPE, _RASTER_TYPE, _GEOGRAPHIC_CRS, _PROJECTED_CRS = 1024, 1025, 2048, 3072
#: GeoKey values are 16-bit; 32767 means "user-defined" in GeoTIFF.
_MAX_CODE = 32766


@functools.lru_cache(maxsize=64)
def _epsg(wkt: str) -> tuple[int, bool] | None:
    """(EPSG code, geographic?) of a CRS, or None without a code GeoTIFF keys can hold."""
    crs = CRS.from_wkt(wkt)
    code = crs.to_epsg()
    if code is None or code > _MAX_CODE:
        return None
    return code, bool(crs.is_geographic)


def mask_geotiff(mask: np.ndarray, transform: Affine, crs_wkt: str) -> bytes | None:
    """The mask as GeoTIFF bytes (deflate, one strip), or None when this encoder cannot express the grid."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        return None
    code = _epsg(crs_wkt)
    if code is None or transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        return None
    epsg, geographic = code
    height, width = mask.shape
    strip = zlib.compress(np.ascontiguousarray(mask).tobytes(), 1)
    keys = [1, 1, 0, 3]  # GeoKeyDirectory header: version 1.1.0, three keys, each a value in place
    keys += [_MODEL_TYPE, 0, 1, 2 if geographic else 1, _RASTER_TYPE, 0, 1, 1]
    keys += [_GEOGRAPHIC_CRS if geographic else _PROJECTED_CRS, 0, 1, epsg]
    scale = struct.pack("<3d", transform.a, -transform.e, 0.0)
    tiepoint = struct.pack("<6d", 0.0, 0.0, 0.0, transform.c, transform.f, 0.0)
    directory = struct.pack(f"<{len(keys)}H", *keys)

    entries = 14
    data_at = 8 + 2 + entries * 12 + 4  # header, entry count, entries, next-IFD offset
    scale_at = data_at
    tiepoint_at = scale_at + len(scale)
    directory_at = tiepoint_at + len(tiepoint)
    strip_at = directory_at + len(directory)
    fields = [
        (256, _LONG, 1, width),
        (257, _LONG, 1, height),
        (258, _SHORT, 1, 8),  # bits per sample
        (259, _SHORT, 1, 8),  # compression: deflate (zlib)
        (262, _SHORT, 1, 1),  # photometric: black is zero
        (273, _LONG, 1, strip_at),
        (277, _SHORT, 1, 1),  # samples per pixel
        (278, _LONG, 1, height),  # rows per strip: one strip
        (279, _LONG, 1, len(strip)),
        (284, _SHORT, 1, 1),  # planar configuration: contiguous
        (339, _SHORT, 1, 1),  # sample format: unsigned integer
        (33550, _DOUBLE, 3, scale_at),  # ModelPixelScale
        (33922, _DOUBLE, 6, tiepoint_at),  # ModelTiepoint
        (34735, _SHORT, len(keys), directory_at),  # GeoKeyDirectory
    ]
    ifd = [struct.pack("<2sHI", b"II", 42, 8), struct.pack("<H", entries)]
    for tag, kind, count, value in fields:
        packed = struct.pack("<HI", value, 0)[:4] if kind == _SHORT and count == 1 else struct.pack("<I", value)
        ifd.append(struct.pack("<HHI", tag, kind, count) + packed)
    ifd.append(struct.pack("<I", 0))  # no next IFD
    return b"".join([*ifd, scale, tiepoint, directory, strip])
