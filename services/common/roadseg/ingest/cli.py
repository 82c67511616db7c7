"""``roadseg ingest``: tile a scene straight into storage, without the API, Redis or a worker."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """\
examples:
  roadseg ingest ../shared/data/spacenet-vegas/RGB-PanSharpen_AOI_2_Vegas_img0.tif --out var/storage
  roadseg ingest scene.jp2 --out gs://my-bucket/roadseg --tile-size 256 --overlap 32
  roadseg ingest gs://imagery/ortho.tif --out file:///data/roadseg --stretch 1 99

Tiles go to STORAGE/scenes/<id>/tiles/r0000_c0000.tif and the manifest to
STORAGE/scenes/<id>/manifest.json. The id depends on the source and the tiling options, so
running the same command again resumes an interrupted run instead of starting over.
"""


def register(sub) -> None:
    """Add the ``ingest`` sub-command."""
    parser = sub.add_parser(
        "ingest",
        help="cut a scene (GeoTIFF, COG, JPEG 2000, PNG, JPEG) into georeferenced RGB tiles",
        description="Validate a scene, reduce it to 8-bit RGB (percentile stretch for non-8-bit data; nodata and "
        "alpha become the tiles' mask) and write georeferenced GeoTIFF tiles plus a manifest.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scene", metavar="SCENE", help="local path, file:///path or gs://bucket/key of the image")
    parser.add_argument(
        "--out",
        metavar="STORAGE_URL",
        default=None,
        help="storage root for tiles: a folder, file:///path or gs://bucket/prefix (default: ROADSEG_STORAGE_URL)",
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
    """Register and tile the scene in-process with a progress bar, then print a JSON summary.

    The scene id depends on the source and the tiling options, so re-running an interrupted command resumes it.
    """
    from tqdm import tqdm

    from roadseg.config import get_settings
    from roadseg.ingest.scenes import register_scene, run_scene, scene_id_for_uri
    from roadseg.ingest.tiling import TileParams
    from roadseg.storage import split_url, storage_from_url

    storage = storage_from_url(args.out or get_settings().storage_url)
    uri = args.scene if "://" in args.scene else Path(args.scene).resolve().as_uri()
    source, key = split_url(uri)
    params = TileParams.from_settings(get_settings(), args.tile_size, args.overlap, args.stretch)
    scene_id = scene_id_for_uri(uri, source.size(key), params)
    record = register_scene(storage, scene_id, source, key, params, source_url=uri, filename=key)
    print(
        f"scene {scene_id}: {record['width']} x {record['height']} px, {record['bands']} band(s) {record['dtype']}, "
        f"crs {record['crs'] or 'none (pixel space)'}",
        file=sys.stderr,
    )
    with tqdm(total=record["progress"]["total"], unit="tile", desc="tiling", file=sys.stderr) as bar:
        manifest = run_scene(storage, scene_id, echo=lambda done, total: bar.update(done - bar.n))
    summary = {
        "scene_id": scene_id,
        "tiles": len(manifest["tiles"]),
        "skipped_empty": manifest["skipped_empty"],
        "manifest": storage.url_for(f"scenes/{scene_id}/manifest.json"),
    }
    print(json.dumps(summary))
    return 0
