"""``roadseg ingest``: tile a scene straight into storage, without the API, Redis or a worker.

``roadseg ingest mosaic`` first joins the files of a multi-file scene into one VRT (:mod:`roadseg.mosaic`),
which ``roadseg ingest`` then tiles like any scene. VRTs are accepted here, on the user's own command line,
and never from the ingest API (:func:`roadseg.raster.trusted_mosaics`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roadseg.cli import Subcommands

USAGE = """\
%(prog)s [scene] SCENE [--out STORAGE_URL] [--tile-size N] [--overlap N] [--stretch LOW HIGH]
       %(prog)s mosaic SOURCE [SOURCE ...] --out MOSAIC.vrt"""

EPILOG = """\
examples:
  roadseg ingest ../shared/data/spacenet-vegas/RGB-PanSharpen_AOI_2_Vegas_img0.tif --out var/storage
  roadseg ingest scene.jp2 --out gs://my-bucket/roadseg --tile-size 256 --overlap 32
  roadseg ingest gs://imagery/ortho.tif --out file:///data/roadseg --stretch 1 99

multi-file scenes (a folder of tiles, or the tiles' paths or gs:// URIs) are one VRT mosaic:
  roadseg ingest mosaic ortho-tiles/ --out ortho.vrt
  roadseg ingest mosaic gs://imagery/nyc/a.jp2 gs://imagery/nyc/b.jp2 --out nyc.vrt
  roadseg ingest scene nyc.vrt --out var/storage       (the same as: roadseg ingest nyc.vrt ...)
The tiles must share CRS, bands, data type and pixel size; the VRT names them by absolute path
(gs:// as /vsigs/, read with GDAL's GCS credentials). Files named "mosaic" or "scene": ./mosaic, ./scene.

Tiles go to STORAGE/scenes/<id>/tiles/r0000_c0000.tif and the manifest to
STORAGE/scenes/<id>/manifest.json. The id depends on the source and the tiling options, so
running the same command again resumes an interrupted run instead of starting over.
"""


def register(sub: Subcommands) -> None:
    """Add the ``ingest`` sub-command."""
    parser = sub.add_parser(
        "ingest",
        help="cut a scene (GeoTIFF, COG, JPEG 2000, PNG, JPEG) into georeferenced RGB tiles",
        description="Validate a scene, reduce it to 8-bit RGB (percentile stretch for non-8-bit data; nodata and "
        "alpha become the tiles' mask) and write georeferenced GeoTIFF tiles plus a manifest.json. "
        "`mosaic` joins the files of one multi-file scene into a VRT to ingest.",
        usage=USAGE,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # One parser with a leading word rather than sub-commands, so `roadseg ingest SCENE` keeps working.
    parser.add_argument(
        "words",
        nargs="+",
        metavar="SCENE",
        help="local path, file:///path or gs://bucket/key of the image (a .vrt from `mosaic` too); "
        "after `mosaic`: the files, folders or gs:// URIs of the tiles",
    )
    parser.add_argument(
        "--out",
        metavar="STORAGE_URL",
        default=None,
        help="storage root for tiles: a folder, file:///path or gs://bucket/prefix (default: ROADSEG_STORAGE_URL); "
        "after `mosaic`: the VRT file to write (required)",
    )
    parser.add_argument("--tile-size", type=int, default=None, help="tile edge in pixels (default: 512)")
    parser.add_argument("--overlap", type=int, default=None, help="pixels shared by neighbouring tiles (default: 0)")
    parser.add_argument(
        "--stretch",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="percentiles mapped to 0 and 255 for non-8-bit data (default: 2 98)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch on the leading word: ``mosaic`` builds a VRT, anything else (or ``scene``) tiles a scene.

    Both accept VRT mosaics and let GDAL read gs:// tiles from the emulator when one is configured.
    """
    import rasterio

    from roadseg.errors import InvalidInput
    from roadseg.mosaic import gcs_gdal_options
    from roadseg.raster import trusted_mosaics

    words = list(args.words)
    command, rest = (words[0], words[1:]) if words[0] in ("scene", "mosaic") else ("scene", words)
    with rasterio.Env(**gcs_gdal_options()), trusted_mosaics():
        if command == "mosaic":
            if not rest:
                raise InvalidInput("mosaic needs the tiles: files, folders or gs:// URIs")
            return run_mosaic(args, rest)
        if len(rest) != 1:
            raise InvalidInput(
                "one SCENE at a time; for the tiles of one image: roadseg ingest mosaic TILES... --out scene.vrt"
            )
        return run_scene_command(args, rest[0])


def run_mosaic(args: argparse.Namespace, sources: list[str]) -> int:
    """Write the VRT of ``sources`` to ``--out`` and print its summary as JSON."""
    from roadseg.errors import InvalidInput
    from roadseg.mosaic import write_mosaic

    if args.out is None:
        raise InvalidInput("mosaic needs --out MOSAIC.vrt, the VRT file to write")
    if args.tile_size is not None or args.overlap is not None or args.stretch is not None:
        raise InvalidInput("--tile-size, --overlap and --stretch belong to `roadseg ingest SCENE`, not to mosaic")
    mosaic = write_mosaic(sources, args.out)
    print(json.dumps({"mosaic": args.out, **mosaic.summary()}))
    return 0


def run_scene_command(args: argparse.Namespace, scene: str) -> int:
    """Register and tile the scene in-process with a progress bar, then print a JSON summary.

    The scene id depends on the source and the tiling options, so re-running an interrupted command resumes it.
    """
    from tqdm import tqdm

    from roadseg.config import get_settings
    from roadseg.ingest.scene_jobs import register_scene, run_scene, scene_id_for_uri
    from roadseg.ingest.tiling import TileParams
    from roadseg.storage import split_url, storage_from_url

    storage = storage_from_url(args.out or get_settings().storage_url)
    uri = scene if "://" in scene else Path(scene).resolve().as_uri()
    source, key = split_url(uri)
    params = TileParams.from_settings(get_settings(), args.tile_size, args.overlap, args.stretch)
    scene_id = scene_id_for_uri(uri, source.size(key), params)
    record = register_scene(storage, scene_id, source, key, params, source_url=uri, filename=key)
    print(
        f"scene {scene_id}: {record.width} x {record.height} px, {record.bands} band(s) {record.dtype}, "
        f"crs {record.crs or 'none (pixel space)'}",
        file=sys.stderr,
    )
    with tqdm(total=record.progress.total, unit="tile", desc="tiling", file=sys.stderr) as bar:
        manifest = run_scene(storage, scene_id, echo=lambda done, total: bar.update(done - bar.n))
    summary = {
        "scene_id": scene_id,
        "tiles": len(manifest["tiles"]),
        "skipped_empty": manifest["skipped_empty"],
        "manifest": storage.url_for(f"scenes/{scene_id}/manifest.json"),
    }
    print(json.dumps(summary))
    return 0
