"""Web-map tiles of stored rasters: XYZ in Web Mercator, 256 px PNGs read by rio-tiler through our storage.

Prediction outputs are Cloud-Optimized GeoTIFFs with overviews, so a tile is a few block reads of the
right overview, reprojected by GDAL's warper (rio-tiler's :meth:`Reader.tile`); nothing here reimplements
tiling. rio-tiler is handed the dataset that :meth:`Storage.open_raster` opened, so local files and GCS
objects (range reads) are read the same way, and a scene's VRT mosaic through the same checks as ingest.

A tile is transparent where there is no data: outside the raster, on its nodata/mask, and (for the road
layers) where there is no road. Its ETag names what it is drawn from (key, record version, style), so a
browser revalidates without the server reading a block.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import rasterio
from PIL import Image
from rasterio.io import DatasetReader
from rio_tiler.colormap import cmap
from rio_tiler.io import Reader

from roadseg import raster
from roadseg.documents import PredictionRecord, SceneRecord, Status
from roadseg.errors import InvalidInput, NotFound
from roadseg.storage import Storage

TILE_SIZE = 256
#: Part of every ETag: change it when tiles are drawn differently, so browsers fetch them again.
STYLE_VERSION = "1"
#: Layers of a prediction (``surface`` is the road-surface mask, ``mask`` its older name).
PREDICTION_LAYERS = ("image", "surface", "mask", "centerline", "probability")
#: RGBA of road pixels in the mask layers (opaque; the page sets the layer's opacity).
ROAD_COLOURS = {"mask": (255, 196, 0, 255), "centerline": (0, 229, 255, 255)}
#: rio-tiler's colour map for probabilities (perceptually uniform, dark at 0).
PROBABILITY_COLOURMAP = "inferno"
#: GDAL's block cache for tile reads (MB): tiles read a few blocks, not whole rows.
TILE_GDAL_CACHE_MB = 64

Style = Literal["image", "mask", "centerline", "probability"]


@dataclass(frozen=True)
class TileSource:
    """One stored raster and how its tiles are drawn.

    ``version`` changes whenever the raster behind ``key`` may have changed (the record's update time),
    and goes into the ETag. ``mosaic``: a scene's VRT of many files, opened as ingest opens it.
    """

    storage: Storage
    key: str
    style: Style
    version: str
    mosaic: bool = False
    stretch: raster.Stretch | None = field(default=None, compare=False)

    def etag(self, z: int, x: int, y: int) -> str:
        """A strong ETag for tile ``z/x/y`` of this source (quoted, as the header wants it)."""
        text = f"{STYLE_VERSION}|{self.storage.url}|{self.key}|{self.style}|{self.version}|{z}/{x}/{y}"
        return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def prediction_source(storage: Storage, record: PredictionRecord, layer: str) -> TileSource:
    """The raster behind ``layer`` of a finished, georeferenced prediction.

    ``centerline`` is the centreline mask of a two-output model and the surface mask otherwise (the
    road network is drawn from whichever the prediction has). ``image`` is the upload, or the ingested
    scene a scene prediction read in place.
    """
    if layer not in PREDICTION_LAYERS:
        raise NotFound(f"no tile layer {layer!r}: one of {', '.join(PREDICTION_LAYERS)}")
    if record.status != Status.DONE:
        raise NotFound(f"prediction {record.id} is {record.status}: its tiles exist once it is done")
    if not record.info.georeferenced:
        raise InvalidInput(f"prediction {record.id} is of a plain image: only georeferenced ones are on the map")
    version = f"{record.updated}"
    base = f"predictions/{record.id}"
    files = set(record.files)
    if layer == "image":
        if record.scene_id:
            from roadseg.ingest.scene_jobs import scene_store

            return scene_source(storage, scene_store(storage).get(record.scene_id))
        return TileSource(storage, f"{base}/input/{record.input_name}", "image", version)
    if layer == "probability":
        return TileSource(storage, f"{base}/probability.tif", "probability", version)
    if layer == "centerline" and "centerline.tif" in files:
        return TileSource(storage, f"{base}/centerline.tif", "centerline", version)
    return TileSource(storage, f"{base}/mask.tif", "mask", version)


def scene_source(storage: Storage, record: SceneRecord) -> TileSource:
    """The source image of an ingested scene (an upload, a URI read in place or a VRT mosaic).

    It is stretched to 8 bits with the scene's own stretch once it has one, as its tiles for the model are.
    """
    from roadseg.ingest.scene_jobs import source_of

    if not record.georeferenced:
        raise InvalidInput(f"scene {record.id} is not georeferenced: it has no map tiles")
    source, key, _ = source_of(storage, record)
    stretch = raster.Stretch.from_dict(record.stretch) if record.stretch else None
    return TileSource(source, key, "image", f"{record.updated}", bool(record.mosaic_files), stretch)


@contextlib.contextmanager
def open_source(source: TileSource) -> Iterator[DatasetReader]:
    """The source's dataset, opened through storage (range reads on GCS) with the checks ingest applies."""
    if source.mosaic:
        from roadseg.ingest.scene_jobs import open_scene_source

        with open_scene_source(source.storage, source.key, mosaic=True) as ds:
            yield ds
        return
    with (
        rasterio.Env(GDAL_CACHEMAX=TILE_GDAL_CACHE_MB),
        raster.open_stored(source.storage, source.key, probe=False) as ds,
    ):
        yield ds


def render_tile(source: TileSource, z: int, x: int, y: int) -> bytes:
    """Tile ``z/x/y`` of ``source`` as an RGBA PNG; a transparent one where the raster does not reach."""
    with open_source(source) as ds:
        rgba = read_tile_rgba(ds, source, z, x, y)
    return encode_png(rgba)


def read_tile_rgba(ds: DatasetReader, source: TileSource, z: int, x: int, y: int) -> np.ndarray:
    """Tile ``z/x/y`` of an open dataset as uint8 ``[256, 256, 4]``, drawn in the source's style."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no overviews" for small rasters: a few blocks either way
        with Reader(None, dataset=ds) as reader:
            if not reader.tile_exists(x, y, z):
                return np.zeros((TILE_SIZE, TILE_SIZE, 4), dtype=np.uint8)
            bands = raster.rgb_band_indexes(ds) if source.style == "image" else (1,)
            tile = reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=bands)
    data = np.asarray(tile.array.data)
    valid = np.asarray(tile.mask) > 0
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    rgba = np.zeros((TILE_SIZE, TILE_SIZE, 4), dtype=np.uint8)
    if source.style == "image":
        stretch = source.stretch or image_stretch(source.storage.url, source.key, source.version, ds)
        rgba[..., :3] = raster.to_uint8_rgb(data, valid, stretch)
        rgba[..., 3] = np.where(valid, 255, 0)
    elif source.style == "probability":
        lut = probability_lut()
        index = np.clip(np.nan_to_num(data[0]) * 255 + 0.5, 0, 255).astype(np.uint8)
        rgba[...] = lut[index]
        rgba[..., 3] = np.where(valid, 255, 0)
    else:
        rgba[(data[0] > 0) & valid] = ROAD_COLOURS[source.style]
    return rgba


#: Stretches of images without a recorded one, by (storage, key, version); small: one per image on the map.
_STRETCHES: dict[tuple[str, str, str], raster.Stretch] = {}


def image_stretch(storage_url: str, key: str, version: str, ds: DatasetReader) -> raster.Stretch:
    """The 8-bit stretch of an image without a recorded one (uint8 passes through; else a decimated read).

    Cached per object and version: a 16-bit upload would otherwise be read whole for every tile.
    """
    cache_key = (storage_url, key, version)
    if cache_key not in _STRETCHES:
        if len(_STRETCHES) >= 64:
            _STRETCHES.clear()
        _STRETCHES[cache_key] = raster.compute_stretch(ds)
    return _STRETCHES[cache_key]


@functools.cache
def probability_lut() -> np.ndarray:
    """rio-tiler's colour map as a ``[256, 4]`` lookup table."""
    colours = cmap.get(PROBABILITY_COLOURMAP)
    return np.array([colours[i] for i in range(256)], dtype=np.uint8)


def encode_png(rgba: np.ndarray) -> bytes:
    """An RGBA PNG (fast deflate: tiles are many and small, and re-sent rarely thanks to the ETag)."""
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
