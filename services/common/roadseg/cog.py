"""Cloud-Optimized GeoTIFFs of prediction layers, their overviews made in one streaming pass.

GDAL's COG driver makes missing overviews itself: from the full-resolution source into a temporary
compressed GeoTIFF, which it then reads back, decompresses and compresses again. For the 2048 x 32768 px
probabilities of ``bench/scale.py`` that was half of the COG's time with one thread, and with GDAL's
threads on 2 cores it took 1.6x as long as with one. Here the source is read once, in bands of rows, and
each level is halved from the one above it in numpy (what GDAL's ``average`` and ``nearest`` do at
factor 2); the levels are handed to the driver as the source's own overviews (a VRT's ``<Overview>``),
which it copies as they are (``OVERVIEWS=AUTO``). The last job of a sharded prediction writes its COGs
alone (:func:`roadseg.gateway.sharded.finish_job`), so this is time the other workers wait. Measured on the
bench's probability and mask layers (synthetic probabilities, a VRT of 19 bands): 15.5 -> 5.8 s with GDAL's
threads on 2 cores, 8.3 -> 6.0 s with one; the levels equal GDAL's to 4.5e-8, the full resolution to the bit.
"""

from __future__ import annotations

import math
import tempfile
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

#: GDAL block cache while writing; small, so dirty output blocks are flushed instead of piling up.
GDAL_ENV = {"GDAL_CACHEMAX": 64, "GDAL_PAM_ENABLED": "NO"}
#: Tile size of every COG (GDAL's default).
COG_BLOCK = 512
#: Images larger than this on a side get overviews in their COGs. Up to it a viewer draws any zoom from
#: at most 16 full-resolution blocks of 512 px, and GDAL's overviews were 60 % of the time of a 1500 px
#: tile's probability COG (98 vs 35 ms) and a third of its size.
COG_OVERVIEWS_ABOVE = 2048
#: Bytes of source pixels read at a time while the overviews are made (more rows when the image is narrow).
OVERVIEW_READ_BYTES = 16 * 2**20


def overview_factors(width: int, height: int) -> list[int]:
    """Decimation factors 2, 4, 8, ...: as many levels as GDAL's COG driver makes; none up to 2048 px a side.

    GDAL halves the longer side, rounding down, while that is larger than one block (:data:`COG_BLOCK`).
    Each level here is ``ceil(side / factor)`` px, every pixel exactly ``factor`` source pixels wide (GDAL
    rounds each level down and stretches the last partial block over the rest; 3001 px: 1500, not 1501).
    """
    if max(width, height) <= COG_OVERVIEWS_ABOVE:
        return []
    factors: list[int] = []
    side = max(width, height)
    while side > COG_BLOCK:
        side //= 2
        factors.append(2 ** (len(factors) + 1))
    return factors


def halve(bands: np.ndarray, resampling: str) -> np.ndarray:
    """One overview level of ``bands`` ([count, rows, cols]): every 2 x 2 block to one pixel.

    ``nearest`` keeps each block's top-left pixel (as GDAL does at factor 2: masks stay 0/255);
    ``average`` takes the block's mean, over the pixels it has at an odd edge (the last row or column
    counted twice averages the same), in the array's float type.
    """
    if resampling == "nearest":
        return bands[:, ::2, ::2]
    if resampling != "average":
        raise ValueError(f"resampling must be 'nearest' or 'average', not {resampling!r}")
    _, rows, cols = bands.shape
    if rows % 2 or cols % 2:
        bands = np.pad(bands, ((0, 0), (0, rows % 2), (0, cols % 2)), mode="edge")
    total = bands[:, 0::2, 0::2] + bands[:, 1::2, 0::2]
    total += bands[:, 0::2, 1::2]
    total += bands[:, 1::2, 1::2]
    total *= bands.dtype.type(0.25)
    return total


def write_overviews(src: Path, factors: list[int], resampling: str, out: Path) -> list[Path]:
    """Write ``src``'s overview levels (one GeoTIFF per factor in ``out``), reading it once.

    Bands of rows a multiple of the largest factor are read, so every level's rows of a band start at a
    whole pixel; memory is one band of rows and its halves, whatever the image's height.
    """
    paths = [out / f"{src.stem}.overview-{factor}.tif" for factor in factors]
    with rasterio.open(src) as ds:
        if resampling == "average" and not np.issubdtype(np.dtype(ds.dtypes[0]), np.floating):
            raise ValueError(f"average overviews need floating-point pixels, not {ds.dtypes[0]}")
        row_bytes = ds.width * ds.count * np.dtype(ds.dtypes[0]).itemsize
        top = factors[-1]
        rows = max(1, OVERVIEW_READ_BYTES // (row_bytes * top)) * top
        profile = {"driver": "GTiff", "count": ds.count, "dtype": ds.dtypes[0], "compress": "zstd", "zstd_level": 1}
        writers = [
            rasterio.open(path, "w", width=math.ceil(ds.width / f), height=math.ceil(ds.height / f), **profile)
            for path, f in zip(paths, factors, strict=True)
        ]
        try:
            for row in range(0, ds.height, rows):
                level = ds.read(window=Window(0, row, ds.width, min(rows, ds.height - row)))
                for factor, writer in zip(factors, writers, strict=True):
                    level = halve(level, resampling)
                    writer.write(level, window=Window(0, row // factor, level.shape[2], level.shape[1]))
        finally:
            for writer in writers:
                writer.close()
    return paths


def with_overviews(src: Path, overviews: list[Path], out: Path) -> Path:
    """A VRT of ``src`` (GeoTIFF or VRT) whose bands list ``overviews`` as theirs."""
    vrt = out / f"{src.stem}.overviews.vrt"
    if src.suffix == ".vrt":
        tree = ET.parse(src)
        for name in tree.getroot().iter("SourceFilename"):  # the new VRT lies elsewhere: paths made absolute
            if name.get("relativeToVRT") == "1":
                name.text, name.attrib["relativeToVRT"] = str((src.parent / (name.text or "")).resolve()), "0"
    else:
        rasterio.shutil.copy(src, vrt, driver="VRT")
        tree = ET.parse(vrt)
    for band in tree.getroot().iter("VRTRasterBand"):
        for path in overviews:
            overview = ET.SubElement(band, "Overview")
            ET.SubElement(overview, "SourceFilename", relativeToVRT="0").text = str(path.resolve())
            ET.SubElement(overview, "SourceBand").text = band.get("band")
    tree.write(vrt)
    return vrt


def tif_to_cog(src: Path, dst: Path, overview_resampling: str, level: int = 6, predictor: int = 1) -> Path:
    """Copy a GeoTIFF (or a VRT of them) to a Cloud-Optimized GeoTIFF, with overviews above 2048 px.

    GDAL's COG driver writes block by block, so memory stays at its block cache; its blocks are
    compressed on every core (0.74x the time on 2 cores), with DEFLATE (which every GIS reads) at zlib
    ``level``, after TIFF's ``predictor`` (1 none, 3 floating point). ``overview_resampling``:
    ``nearest`` for masks (stay 0/255), ``average`` for probabilities.
    """
    with (
        rasterio.Env(**GDAL_ENV),
        warnings.catch_warnings(),
        tempfile.TemporaryDirectory(prefix="roadseg-overviews-", dir=dst.parent) as tmp,
    ):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src) as ds:
            factors = overview_factors(ds.width, ds.height)
        if factors:
            levels = write_overviews(src, factors, overview_resampling, Path(tmp))
            src = with_overviews(src, levels, Path(tmp))
        rasterio.shutil.copy(
            src,
            dst,
            driver="COG",
            OVERVIEWS="AUTO" if factors else "NONE",  # AUTO: the source's own, as they are
            COMPRESS="DEFLATE",
            LEVEL=level,
            PREDICTOR=predictor,
            NUM_THREADS="ALL_CPUS",
            BLOCKSIZE=COG_BLOCK,
            BIGTIFF="IF_SAFER",
        )
    return dst
