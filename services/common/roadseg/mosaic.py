"""Multi-file scenes: the tiles of one image (a folder, or gs:// URIs like NYC's JP2 tiles) as one VRT mosaic.

Why a GDAL VRT: it is a small XML file that GDAL reads as one dataset, opening a tile only when a
window touches it, so ingest and prediction treat a folder of tiles like any single scene: nothing is
copied or merged first. rasterio cannot build VRTs and the GDAL Python bindings are not installed, so
:func:`build_mosaic` writes the XML itself, after checking every file's header with rasterio: same CRS,
band count and data type, north-up, and pixel sizes equal within :data:`PIXEL_SIZE_RTOL`. A file that
differs is named in the :class:`~roadseg.errors.InvalidInput` message, with what differs.

Placement: the mosaic covers the union of the files' bounds on the first file's pixel grid; each file is
one source per band with its ``SrcRect`` (the whole file) and ``DstRect`` (where its bounds fall in the
mosaic). Offsets within :data:`SNAP_PX` of a whole pixel are snapped to it; tiles off the grid by more are
still placed (GDAL resamples them, nearest neighbour). Where files overlap, the later one wins (GDAL draws
sources in order; a folder's files are sorted by name), except where it is nodata or masked out.

Nodata and masks, so the valid-pixel mask (:mod:`roadseg.raster`) is right across the whole mosaic:

* a file with a nodata value gets it as its sources' ``NODATA``: its nodata pixels never paint over a
  neighbour. When every file has the same nodata value it is also the mosaic bands' ``NoDataValue``, which
  is what areas no file covers read as, so they are nodata too;
* a file with an alpha band or an internal (or ``.msk``) mask gets ``UseMaskBand`` on its sources (GDAL
  3.8+), for the same reason. When every file has an alpha band, the mosaic's alpha band is the mask
  (areas no file covers have alpha 0);
* otherwise the mosaic gets a dataset ``MaskBand`` made of each file's own mask (``mask,1``: all valid,
  nodata, alpha or internal mask, whichever the file has): 255 where a file has a valid pixel, 0 in gaps
  between files and where files are masked. It is cheap for files without masks (GDAL answers "all
  valid" without reading them).

Sources are written with absolute paths: local files by their resolved path, ``gs://bucket/key`` as
``/vsigs/bucket/key``, which GDAL reads with its own GCS credentials (the metadata server on GKE,
``GOOGLE_APPLICATION_CREDENTIALS`` elsewhere). GDAL 3.10 (this rasterio build) also reads ``/vsigs/`` from
fake-gcs-server, checked by tests/ingest/test_mosaic.py: :func:`gcs_gdal_options` points it at
``STORAGE_EMULATOR_HOST`` when that is set.
"""

from __future__ import annotations

import math
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from roadseg.errors import InvalidInput
from roadseg.geo import crs_string
from roadseg.raster import gdal_message
from roadseg.storage import split_url, storage_from_url

#: File name endings a folder's tiles are found by (case-insensitive).
TILE_SUFFIXES = (".tif", ".tiff", ".jp2", ".j2k")

#: Pixel sizes (x and y) of all files must agree within this relative tolerance.
PIXEL_SIZE_RTOL = 1e-6

#: Offsets and sizes within this many pixels of a whole number are snapped to it: coordinates in the
#: headers carry float noise, and a whole-pixel placement lets GDAL copy pixels instead of resampling.
SNAP_PX = 1e-3

#: GDAL's names of the data types a mosaic can hold.
GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "uint64": "UInt64",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}

#: The fake-gcs-server routes XML-API object reads (what /vsigs/ sends) by the Host header: GCS's own
#: name works whatever ``-public-host`` the emulator was started with (the test wrapper sets none).
_EMULATOR_HOST_HEADER = "Host: storage.googleapis.com"


@dataclass(frozen=True)
class SourceHeader:
    """What the mosaic needs to know about one file, read from its header only."""

    name: str  # as the user gave it, for messages
    path: str  # what GDAL opens: an absolute path or /vsigs/bucket/key
    width: int
    height: int
    dtypes: tuple[str, ...]
    crs: CRS | None
    transform: Affine
    nodata: float | None
    colorinterp: tuple[ColorInterp, ...]
    masked: bool  # an alpha band or an internal mask (not nodata)
    block: tuple[int, int]  # (width, height) of band 1's blocks

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.dtypes)

    @property
    def alpha(self) -> bool:
        """Whether one of the bands is an alpha band."""
        return ColorInterp.alpha in self.colorinterp


@dataclass(frozen=True)
class Mosaic:
    """A VRT mosaic: its XML and the facts a user checks before ingesting it."""

    xml: str
    files: tuple[str, ...]
    width: int
    height: int
    crs: str | None
    pixel_size: tuple[float, float]

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (the file count, not the list: a city has thousands of tiles)."""
        return {
            "files": len(self.files),
            "width": self.width,
            "height": self.height,
            "crs": self.crs,
            "pixel_size": list(self.pixel_size),
        }


def gcs_gdal_options() -> dict[str, str]:
    """``rasterio.Env`` options for GDAL's own ``/vsigs/`` reads: none for real GCS, the emulator's otherwise.

    The Python storage client finds fake-gcs-server through ``STORAGE_EMULATOR_HOST``; GDAL does not look
    at it, so tests and compose would send mosaic reads to the real GCS. With the variable set, GDAL gets
    the emulator as its endpoint, unsigned requests (the emulator checks no credentials) and the Host
    header the emulator routes object reads by.
    """
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        return {}
    endpoint = emulator if "://" in emulator else f"http://{emulator}"
    return {
        "CPL_GS_ENDPOINT": endpoint.rstrip("/") + "/",
        "GS_NO_SIGN_REQUEST": "YES",
        "GDAL_HTTP_HEADERS": _EMULATOR_HOST_HEADER,
    }


def gdal_path(source: str | os.PathLike[str]) -> str:
    """The path GDAL opens for a source: ``/vsigs/bucket/key`` for gs://, an absolute path for local files.

    Absolute, so the VRT can be read from any working directory (and moved, as long as the tiles stay).
    """
    text = os.fspath(source)
    parsed = urlparse(text)
    if parsed.scheme == "gs":
        if not parsed.netloc or not parsed.path.strip("/"):
            raise InvalidInput(f"{text}: a gs:// source needs a bucket and an object name")
        return f"/vsigs/{parsed.netloc}/{unquote(parsed.path).lstrip('/')}"
    if parsed.scheme == "file":
        return str(Path(unquote(parsed.path)).resolve())
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # no scheme, or a Windows drive letter
        return str(Path(text).resolve())
    raise InvalidInput(f"{text}: unsupported source; use a local path, file:///path or gs://bucket/key")


def expand_sources(sources: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Sources with every folder replaced by its tiles (:data:`TILE_SUFFIXES`), sorted by name.

    A local folder, or a ``gs://bucket/prefix/`` ending in ``/`` (every object under it). Sorted so the
    same folder always gives the same VRT (and so the same scene id when it is ingested).
    """
    files: list[str] = []
    for source in sources:
        text = os.fspath(source)
        parsed = urlparse(text)
        if parsed.scheme == "gs" and text.endswith("/"):
            files.extend(_gcs_tiles(text))
            continue
        folder = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(text)
        if parsed.scheme not in ("", "file") or not folder.is_dir():
            files.append(text)
            continue
        tiles = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TILE_SUFFIXES)
        if not tiles:
            raise InvalidInput(f"{text}: the folder has no {'/'.join(TILE_SUFFIXES)} files")
        files.extend(tiles)
    if not files:
        raise InvalidInput("a mosaic needs at least one file")
    return files


def _gcs_tiles(folder: str) -> list[str]:
    """The tiles under a ``gs://bucket/prefix/`` folder, as gs:// URIs sorted by name."""
    storage = storage_from_url(folder)
    tiles = [f"{folder}{key}" for key in storage.list("") if key.lower().endswith(TILE_SUFFIXES)]
    if not tiles:
        raise InvalidInput(f"{folder}: the folder has no {'/'.join(TILE_SUFFIXES)} objects")
    return sorted(tiles)


def read_header(source: str) -> SourceHeader:
    """Open one file and keep its header facts; an unreadable file is :class:`InvalidInput`, named."""
    path = gdal_path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                flags = ds.mask_flag_enums[0] if ds.count else []
                return SourceHeader(
                    name=source,
                    path=path,
                    width=ds.width,
                    height=ds.height,
                    dtypes=tuple(ds.dtypes),
                    crs=ds.crs,
                    transform=ds.transform,
                    nodata=ds.nodata,
                    colorinterp=tuple(ds.colorinterp),
                    masked=MaskFlags.per_dataset in flags,
                    block=(ds.block_shapes[0][1], ds.block_shapes[0][0]) if ds.count else (0, 0),
                )
    except RasterioError as exc:
        raise InvalidInput(f"{source}: not a readable image ({gdal_message(exc)})") from exc


def check_compatible(headers: Sequence[SourceHeader]) -> None:
    """Refuse files that cannot be one image; the first file is the reference the others are compared with.

    GDAL would mosaic mismatched files without a word (wrong places, bands or values), so the check is
    ours, before any XML is written.
    """
    ref = headers[0]
    for h in headers:
        _check_alone(h)
    for h in headers[1:]:
        if h.crs != ref.crs:
            raise InvalidInput(f"{h.name}: CRS {crs_string(h.crs)} differs from {crs_string(ref.crs)} of {ref.name}")
        if h.count != ref.count:
            raise InvalidInput(f"{h.name}: {h.count} band(s), but {ref.name} has {ref.count}")
        if h.dtypes != ref.dtypes:
            raise InvalidInput(f"{h.name}: data type {_types(h)} differs from {_types(ref)} of {ref.name}")
        if h.alpha != ref.alpha:
            which, other = (h, ref) if h.alpha else (ref, h)
            raise InvalidInput(f"{h.name}: {which.name} has an alpha band and {other.name} has none")
        if not _same_pixel_size(h.transform, ref.transform):
            raise InvalidInput(
                f"{h.name}: pixel size {_pixel(h.transform)} differs from {_pixel(ref.transform)} of {ref.name}"
            )


def _check_alone(h: SourceHeader) -> None:
    """What every file needs on its own: bands of a known type, georeferencing, north-up, no palette."""
    if h.count < 1:
        raise InvalidInput(f"{h.name}: the image has no bands")
    if len(set(h.dtypes)) > 1 or h.dtypes[0] not in GDAL_TYPES:
        raise InvalidInput(f"{h.name}: data type {_types(h)} cannot be mosaicked (one integer or float type)")
    if h.crs is None or h.transform.is_identity:
        raise InvalidInput(f"{h.name}: not georeferenced (a mosaic places each file by its CRS and transform)")
    t = h.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise InvalidInput(f"{h.name}: transform {tuple(t)[:6]} is not north-up (rotated or flipped)")
    if ColorInterp.palette in h.colorinterp:
        raise InvalidInput(f"{h.name}: paletted images cannot be mosaicked (expand them to RGB first)")


def _same_pixel_size(a: Affine, b: Affine) -> bool:
    return math.isclose(a.a, b.a, rel_tol=PIXEL_SIZE_RTOL) and math.isclose(a.e, b.e, rel_tol=PIXEL_SIZE_RTOL)


def _pixel(t: Affine) -> str:
    return f"{t.a!r} x {-t.e!r}"


def _types(h: SourceHeader) -> str:
    return "/".join(dict.fromkeys(h.dtypes))


def _snap(value: float) -> float:
    """``value`` as a whole number when it is within :data:`SNAP_PX` of one."""
    whole = round(value)
    return float(whole) if abs(value - whole) < SNAP_PX else value


def _number(value: float) -> str:
    """A number as VRT XML writes it: whole numbers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class _Grid:
    """The mosaic's pixel grid: the union of the files' bounds at the first file's pixel size."""

    left: float
    top: float
    xres: float  # > 0
    yres: float  # > 0 (rows go down)
    width: int
    height: int

    @classmethod
    def union(cls, headers: Sequence[SourceHeader]) -> _Grid:
        """Grid covering every file; a partial last pixel (off-grid tiles) is included."""
        xres, yres = headers[0].transform.a, -headers[0].transform.e
        left = min(h.transform.c for h in headers)
        top = max(h.transform.f for h in headers)
        right = max(h.transform.c + h.width * h.transform.a for h in headers)
        bottom = min(h.transform.f + h.height * h.transform.e for h in headers)
        width = math.ceil(_snap((right - left) / xres))
        height = math.ceil(_snap((top - bottom) / yres))
        return cls(left, top, xres, yres, width, height)

    def dst_rect(self, h: SourceHeader) -> dict[str, str]:
        """Where a file's pixels go in the mosaic, in mosaic pixels."""
        t = h.transform
        return {
            "xOff": _number(_snap((t.c - self.left) / self.xres)),
            "yOff": _number(_snap((self.top - t.f) / self.yres)),
            "xSize": _number(_snap(h.width * t.a / self.xres)),
            "ySize": _number(_snap(h.height * -t.e / self.yres)),
        }

    @property
    def geotransform(self) -> str:
        """GDAL's six geotransform numbers (origin, pixel size, no rotation)."""
        return ", ".join(repr(float(v)) for v in (self.left, self.xres, 0.0, self.top, 0.0, -self.yres))


def _common_nodata(headers: Sequence[SourceHeader]) -> float | None:
    """The nodata value every file has, or None when one has none or they differ."""
    values = {"nan" if h.nodata is not None and math.isnan(h.nodata) else h.nodata for h in headers}
    if len(values) != 1 or None in values:
        return None
    return headers[0].nodata


def _add_source(band_el: ET.Element, h: SourceHeader, band: str, grid: _Grid, data_type: str) -> None:
    """One file's band as a source of a mosaic band: a SimpleSource, or a ComplexSource that skips invalid pixels.

    ``band`` is a band number or ``mask,1`` (the file's mask, for the mosaic's MaskBand).
    """
    is_mask = band.startswith("mask")
    skip_invalid = is_mask or h.nodata is not None or h.masked
    source = ET.SubElement(band_el, "ComplexSource" if skip_invalid else "SimpleSource")
    ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = h.path
    ET.SubElement(source, "SourceBand").text = band
    ET.SubElement(
        source,
        "SourceProperties",
        RasterXSize=str(h.width),
        RasterYSize=str(h.height),
        DataType=data_type,
        BlockXSize=str(h.block[0]),
        BlockYSize=str(h.block[1]),
    )
    ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(h.width), ySize=str(h.height))
    ET.SubElement(source, "DstRect", grid.dst_rect(h))
    if is_mask:
        ET.SubElement(source, "NODATA").text = "0"  # a masked-out pixel never hides a neighbour's valid one
    elif h.nodata is not None:
        ET.SubElement(source, "NODATA").text = repr(float(h.nodata))
    elif h.masked:
        ET.SubElement(source, "UseMaskBand").text = "true"


def _mosaic_xml(headers: Sequence[SourceHeader]) -> tuple[str, _Grid]:
    """The VRT document of already checked files (:func:`check_compatible`), and its grid."""
    ref = headers[0]
    grid = _Grid.union(headers)
    data_type = GDAL_TYPES[ref.dtypes[0]]
    nodata = _common_nodata(headers)
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS").text = ref.crs.to_wkt() if ref.crs else ""
    ET.SubElement(root, "GeoTransform").text = grid.geotransform
    for index in range(1, ref.count + 1):
        band_el = ET.SubElement(root, "VRTRasterBand", dataType=data_type, band=str(index))
        if nodata is not None:
            ET.SubElement(band_el, "NoDataValue").text = repr(float(nodata))
        ET.SubElement(band_el, "ColorInterp").text = ref.colorinterp[index - 1].name.capitalize()
        for h in headers:
            _add_source(band_el, h, str(index), grid, data_type)
    if nodata is None and not ref.alpha:
        mask_el = ET.SubElement(ET.SubElement(root, "MaskBand"), "VRTRasterBand", dataType="Byte")
        for h in headers:
            _add_source(mask_el, h, "mask,1", grid, "Byte")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n", grid


def build_mosaic(sources: Sequence[str | os.PathLike[str]]) -> Mosaic:
    """Check the files (folders expanded) and return their VRT mosaic; nothing is written.

    Raises :class:`InvalidInput` naming the first file that is unreadable or does not match the first one.
    """
    files = expand_sources(sources)
    paths = [gdal_path(f) for f in files]
    duplicates = {f for f, p in zip(files, paths, strict=True) if paths.count(p) > 1}
    if duplicates:
        raise InvalidInput(f"{sorted(duplicates)[0]}: listed more than once")
    with rasterio.Env(**gcs_gdal_options()):
        headers = [read_header(f) for f in files]
    check_compatible(headers)
    xml, grid = _mosaic_xml(headers)
    return Mosaic(
        xml=xml,
        files=tuple(files),
        width=grid.width,
        height=grid.height,
        crs=crs_string(headers[0].crs),
        pixel_size=(grid.xres, grid.yres),
    )


def write_mosaic(sources: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Mosaic:
    """Build the mosaic and store its XML at ``out`` (a path, file:// or gs:// URL) in one atomic write.

    Atomic (a temporary file renamed into place, or one GCS upload), so an interrupted run never leaves
    a half-written VRT for the next ``roadseg ingest`` to choke on.
    """
    text = os.fspath(out)
    if "://" not in text:
        if Path(text).is_dir():
            raise InvalidInput(f"{text} is a folder: --out names the VRT file to write, e.g. scene.vrt")
        text = Path(text).resolve().as_uri()
    mosaic = build_mosaic(sources)
    try:
        storage, key = split_url(text)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    storage.write_text(key, mosaic.xml)
    return mosaic
