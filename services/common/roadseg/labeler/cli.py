"""``roadseg label`` (vector roads -> masks) and ``roadseg dataset export|import-folder`` (-> TFRecords)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadseg.labeler import MODES

if TYPE_CHECKING:
    from roadseg.cli import Subcommands
    from roadseg.labeler.dataset_export import Sample
    from roadseg.labeler.run import LabelOptions
    from roadseg.storage import Storage

LABEL_EPILOG = """\
examples:
  # label an ingested scene with 6 m wide roads (default width), in-process with a progress bar
  roadseg label 20260101-abc123 --vectors city_roads.gpkg --layer roads
  # widths from a lane count (SpaceNet): lane_number x 3.7 m
  roadseg label vegas --vectors AOI_2_Vegas_img0_roads.geojson --width-attr lane_number --lane-width 3.7
  # widths per OSM class (built-in table), straight from an OSM extract
  roadseg label vegas --vectors nevada-latest.osm.pbf --width-table highway
  # the seed's method: street edge lines cut the tile, centerlines pick the road regions
  roadseg label vegas --mode edges --vectors centerlines.shp --edge-vectors curbs.shp
  # queue it for the labeler worker (Celery queue `label`) instead of running here
  roadseg label vegas --vectors roads.geojson --queue
  # one GeoTIFF, no ingest: write the mask next to it
  roadseg label image.tif --vectors roads.geojson --width 4 --out image_mask.tif

width rules: --width M (every road, default 6 m; also the fallback for missing values),
--width-attr COL (metres, or a lane count with --lane-width M), --width-table COL (built-in
tables: road_type = SpaceNet codes 1..7, highway = OSM classes; or --width-table-file t.json).
Masks: 255 road, 0 background, --ignore-value (default ROADSEG_IGNORE_VALUE=127) where the tile
has no data. Re-running the same command reuses finished tiles (the run id depends on the scene,
the vector file contents and the options). Review the result at the labeler page (port 8002).
"""

EXPORT_EPILOG = """\
examples:
  roadseg dataset export vegas-6afca486cd4b --out datasets/vegas
  roadseg dataset export RUN1 RUN2 --out gs://bucket/datasets/city --block-tiles 4 --seed 7
  roadseg dataset import-folder ../shared/data/massachusetts-crops --out datasets/massachusetts
  roadseg dataset import-folder ../shared/data/cil-2022 --out datasets/cil

Label runs: tiles a reviewer rejected are left out, and so are tiles flagged by the automatic
checks (no road, almost all road, too much nodata, misaligned) unless a reviewer accepted them
(--include-flagged keeps them). Tiles are split by spatial blocks of --block-tiles x --block-tiles
grid cells, so neighbours share a split. Folders keep their train/val/test sub-folders.
Output: {split}-{i:05d}-of-{n:05d}.tfrecord shards and manifest.json (read by roadseg train).
"""


class _Bar:
    """A tqdm progress bar on stderr, created on the first update (so nothing shows for instant work)."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit = desc, unit
        self.bar: Any = None  # tqdm, imported on first use

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr)
        self.bar.update(done - self.bar.n)  # tqdm redraws at most every 0.1 s

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _options(args: argparse.Namespace) -> LabelOptions:
    from roadseg.config import get_settings
    from roadseg.labeler.quality import QualityParams
    from roadseg.labeler.run import LabelOptions
    from roadseg.labeler.widths import WidthSpec

    widths = WidthSpec.from_options(
        args.width, args.width_attr, args.lane_width, args.width_table, args.width_table_file
    )
    qc = QualityParams(
        min_road_fraction=args.min_road,
        max_road_fraction=args.max_road,
        max_nodata_fraction=args.max_nodata,
        max_shift_px=args.max_shift,
    )
    ignore = get_settings().ignore_value if args.ignore_value is None else args.ignore_value
    return LabelOptions(
        mode=args.mode,
        layer=args.layer,
        assume_crs=args.assume_crs,
        where=args.where,
        edge_layer=args.edge_layer,
        widths=widths,
        band_width_m=args.band_width,
        ignore_value=ignore,
        quality=qc,
    )


def _print_summary(manifest: dict, storage_url: str) -> None:
    counts = manifest["counts"]
    reasons = ", ".join(f"{k} {counts[k]}" for k in manifest["reasons"] if counts.get(k))
    print(f"run {manifest['run_id']}: {counts['tiles']} masks, {counts['flagged']} flagged ({reasons or 'none'})")
    for warning in manifest["vectors"]["warnings"]:
        print(f"warning: {warning}")
    print(f"manifest: {storage_url}/labels/{manifest['run_id']}/manifest.json")


def _label(args: argparse.Namespace) -> int:
    from roadseg.labeler import run as runs

    options = _options(args)
    if args.scene.lower().endswith((".tif", ".tiff", ".jp2")) and Path(args.scene).is_file():
        out = args.out or str(Path(args.scene).with_name(Path(args.scene).stem + "_mask.tif"))
        record = runs.label_raster_file(args.scene, args.vectors, out, options, args.edge_vectors)
        flags = ", ".join(record["flags"]) or "none"
        print(f"mask written to {out}: road {record['road_fraction']:.1%} of valid pixels, flags: {flags}")
        return 0
    if args.out:
        raise SystemExit("roadseg label: --out is only for labeling a single GeoTIFF; scenes write to storage")
    from roadseg.storage import get_storage

    storage = get_storage()
    run = runs.prepare_run(storage, args.scene, args.vectors, options, args.edge_vectors, args.run_id)
    run_id = run.id
    print(f"label run {run_id} (scene {run.scene_id}, {run.progress.total} tiles)")
    if not args.queue:
        bar = _Bar("labeling", "tile")
        try:
            manifest = runs.label_run(storage, run_id, progress=bar)
        finally:
            bar.close()
        _print_summary(manifest, storage.url)
        return 0
    from roadseg.labeler.tasks import label_scene

    label_scene.apply_async((run_id,))
    print(f"queued on `label`; follow it with: roadseg label-status {run_id}")
    return 0 if args.no_wait else _wait(storage, run_id)


def _wait(storage: Storage, run_id: str) -> int:
    from roadseg.documents import Status
    from roadseg.labeler.run import run_store

    jobs, bar = run_store(storage), _Bar("labeling (worker)", "tile")
    try:
        while True:
            record = jobs.get(run_id)
            if record.progress.total:
                bar(record.progress.done, record.progress.total)
            if record.status in (Status.DONE, Status.FAILED):
                break
            time.sleep(1.0)
    finally:
        bar.close()
    if record.status == Status.FAILED:
        print(f"run {run_id} failed: {record.error}", file=sys.stderr)
        return 1
    from roadseg.labeler.run import read_manifest

    _print_summary(read_manifest(storage, run_id), storage.url)
    return 0


def _label_status(args: argparse.Namespace) -> int:
    import json

    from roadseg.labeler.run import run_store
    from roadseg.storage import get_storage

    storage = get_storage()
    if args.wait:
        return _wait(storage, args.run_id)
    print(json.dumps(run_store(storage).get(args.run_id), indent=2))
    return 0


def _export_info(args: argparse.Namespace) -> dict:
    return {"seed": args.seed, "fractions": list(args.fractions), "command": " ".join(["roadseg", *sys.argv[1:]])}


def _dataset_export(args: argparse.Namespace) -> int:
    from roadseg.labeler.dataset_export import samples_from_runs
    from roadseg.storage import get_storage

    samples, excluded = samples_from_runs(
        get_storage(), args.run_ids, args.block_tiles, args.fractions, args.seed, args.include_flagged
    )
    print(f"{len(samples)} tiles to export; left out: {excluded or 'none'}")
    info = {**_export_info(args), "block_tiles": args.block_tiles, "runs": args.run_ids, "excluded": excluded}
    return _write(samples, args, info)


def _dataset_import(args: argparse.Namespace) -> int:
    from roadseg.labeler.dataset_export import samples_from_folder

    samples, _ = samples_from_folder(args.folder, args.fractions, args.seed)
    print(f"{len(samples)} image/mask pairs found in {args.folder}")
    return _write(samples, args, {**_export_info(args), "folder": str(Path(args.folder).resolve())})


def _write(samples: list[Sample], args: argparse.Namespace, info: dict) -> int:
    from roadseg.labeler.dataset_export import write_dataset

    bar = _Bar("writing", "example")
    try:
        manifest = write_dataset(samples, args.out, args.shard_size, info, progress=bar)
    finally:
        bar.close()
    for split, part in manifest["splits"].items():
        print(f"{split}: {part['examples']} examples in {len(part['shards'])} shard(s)")
    print(f"manifest: {args.out.rstrip('/')}/manifest.json")
    return 0


def _add_dataset_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder or storage URL (gs://bucket/datasets/name)")
    p.add_argument("--shard-size", type=int, default=256, help="examples per TFRecord shard (default 256)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="split fractions (default 0.8 0.1 0.1)",
    )


def register(sub: Subcommands) -> None:
    """Add the ``label``, ``label-status`` and ``dataset export|import-folder`` sub-commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "label",
        help="make road masks for a scene's tiles from road vectors",
        formatter_class=fmt,
        description="Rasterize road vectors (Shapefile, GeoJSON, GeoPackage, OSM PBF; any CRS) into one "
        "uint8 mask per tile of an ingested scene, check each mask's quality, and write a label manifest.",
        epilog=LABEL_EPILOG,
    )
    p.add_argument(
        "scene",
        metavar="SCENE_ID_OR_MANIFEST",
        help="scene id, path/URL of scenes/<id>/manifest.json, or a single GeoTIFF",
    )
    p.add_argument("--vectors", required=True, help="road centerlines (or road polygons) file")
    p.add_argument("--layer", help="layer of the vector file (default: the first; `lines` for OSM)")
    p.add_argument("--assume-crs", help="CRS of a vector file that declares none, e.g. EPSG:4326")
    p.add_argument("--where", help="SQL filter on the features, e.g. \"highway IN ('primary','residential')\"")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="centerline",
        help="centerline: buffer lines by a width (default); edges: cut by street edge lines",
    )
    p.add_argument("--edge-vectors", help="street edge (curb) lines, for --mode edges")
    p.add_argument("--edge-layer", help="layer of the edge vector file")
    p.add_argument("--width", type=float, help="road width in metres (default 6; fallback for other rules)")
    p.add_argument("--width-attr", help="numeric attribute with the width in metres, or a lane count")
    p.add_argument("--lane-width", type=float, help="metres per lane: width = attribute x lane width")
    p.add_argument("--width-table", metavar="COLUMN", help="per-class widths keyed by COLUMN (road_type, highway)")
    p.add_argument("--width-table-file", help='JSON {"class": metres} for --width-table')
    p.add_argument(
        "--band-width",
        type=float,
        metavar="M",
        help="ground width of the centreline band mask written beside each surface mask (default 7)",
    )
    p.add_argument("--ignore-value", type=int, help="mask value where the tile has no data (default 127)")
    p.add_argument("--min-road", type=float, default=0.005, help="flag tiles with less road than this fraction")
    p.add_argument("--max-road", type=float, default=0.6, help="flag tiles with more road than this fraction")
    p.add_argument("--max-nodata", type=float, default=0.5, help="flag tiles with more nodata than this fraction")
    p.add_argument("--max-shift", type=int, default=8, help="misalignment search radius in pixels (default 8)")
    p.add_argument("--run-id", help="run id (default: derived from scene, vectors and options)")
    p.add_argument("--queue", action="store_true", help="send to the labeler worker (Celery) instead of running here")
    p.add_argument("--no-wait", action="store_true", help="with --queue: return right after queueing")
    p.add_argument("--out", help="output mask path when labeling a single GeoTIFF")
    p.set_defaults(func=_label)

    s = sub.add_parser(
        "label-status",
        help="show or wait for a label run's status",
        description="Print a label run's status record (progress, counts, error).",
    )
    s.add_argument("run_id")
    s.add_argument("--wait", action="store_true", help="follow the run until it finishes")
    s.set_defaults(func=_label_status)

    d = sub.add_parser(
        "dataset",
        help="export labeled tiles or image folders as TFRecord datasets",
        description="Build training datasets (TFRecord shards + manifest.json).",
        epilog=EXPORT_EPILOG,
        formatter_class=fmt,
    )
    dsub = d.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    e = dsub.add_parser(
        "export",
        help="label runs -> TFRecords (review decisions respected, block split)",
        description="Export the tiles of finished label runs.",
        epilog=EXPORT_EPILOG,
        formatter_class=fmt,
    )
    e.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="label run ids (see the review page)")
    e.add_argument("--block-tiles", type=int, default=4, help="spatial block edge in tiles (default 4)")
    e.add_argument("--include-flagged", action="store_true", help="keep flagged tiles nobody reviewed")
    _add_dataset_common(e)
    e.set_defaults(func=_dataset_export)
    i = dsub.add_parser(
        "import-folder",
        help="plain image/mask folders -> TFRecords",
        description="Convert {train,val,test}/{images,masks} (or images/ + masks/) folders.",
        epilog=EXPORT_EPILOG,
        formatter_class=fmt,
    )
    i.add_argument("folder", help="folder with images/ and masks/ (same file stems), optionally per split")
    _add_dataset_common(i)
    i.set_defaults(func=_dataset_import)
