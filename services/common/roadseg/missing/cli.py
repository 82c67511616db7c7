"""``roadseg missing``: find the roads a map is missing on one image or scene, then export what reviewers decided."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.pixel_size import metres_arg

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

    from rasterio.io import DatasetReader

    from roadseg.cli import Subcommands
    from roadseg.config import Settings
    from roadseg.storage import Storage

    #: An open image and how a job names it (``image_url`` or ``scene_id``).
    Opened = tuple[DatasetReader, dict[str, str]]

USAGE = """\
%(prog)s [compare] SCENE_OR_IMAGE --vectors ROADS --out DIR [--model PATH] [--tolerance M] [--min-length M]
       %(prog)s export JOB --out DIR
       %(prog)s export-dataset JOB [JOB ...] --out DATASET"""

EPILOG = """\
examples:
  roadseg missing ../shared/data/spacenet-vegas/RGB-PanSharpen_AOI_2_Vegas_img0.tif \\
      --vectors ../shared/data/spacenet-vegas/AOI_2_Vegas_img0_roads.geojson --out out/
  roadseg missing 20260101-abc123 --vectors nevada-latest.osm.pbf --out out/      # an ingested scene
  roadseg missing photo.png --vectors roads_in_pixels.geojson --pixel-size 0.5 --out out/
  roadseg missing export 20261207-0123456789ab --out out/        # accepted.geojson, accepted.osc, rejected.geojson
  roadseg missing export-dataset 20261207-0123456789ab --out var/datasets/corrections

outputs of a comparison (named after the image's stem):
  DIR/<stem>.missing.geojson      candidate missing roads: LineStrings in EPSG:4326, best score first
  DIR/<stem>.unsupported.geojson  mapped roads the model does not see (absent or misaligned), lower priority
A plain image (no georeference) has no EPSG:4326: its vectors must be in pixel coordinates (x = column,
y = row) and the outputs are too (their "roadseg" member says crs null). The job is also stored
(ROADSEG_STORAGE_URL) for the review page: http://127.0.0.1:8002/missing/<job>.
Vectors: GeoJSON, GeoPackage, Shapefile (any CRS), or an OSM .osm.pbf extract (ways tagged highway).
"""


def register(sub: Subcommands) -> None:
    """Add the ``missing`` sub-command."""
    parser = sub.add_parser(
        "missing",
        help="find roads the map is missing: predicted network vs existing road vectors",
        description="Predict roads on an image (or an ingested scene), trace the road network and compare it in "
        "metres with existing road vectors: predicted roads without a mapped road within the tolerance are "
        "candidate missing roads, mapped roads without predicted support are unsupported. `export` writes what "
        "reviewers accepted (GeoJSON, OSM change file) and rejected; `export-dataset` turns the decisions into "
        "training labels.",
        usage=USAGE,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # One parser with a leading word, like `roadseg ingest`, so `roadseg missing IMAGE` needs no sub-command.
    parser.add_argument(
        "words", nargs="+", metavar="SCENE_OR_IMAGE", help="image path or scene id; or export/export-dataset JOB..."
    )
    parser.add_argument("--vectors", metavar="FILE", help="existing roads: .geojson, .gpkg, .shp or .osm.pbf")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (a dataset folder or URL for export-dataset)"
    )
    parser.add_argument("--layer", help="layer of a multi-layer vector file")
    parser.add_argument("--assume-crs", metavar="CRS", help="CRS of a vector file that declares none")
    parser.add_argument("--pixel-size", type=metres_arg, metavar="M", help="pixel size in metres of a plain image")
    parser.add_argument("--tolerance", type=float, metavar="M", help="matching tolerance in metres (default: setting)")
    parser.add_argument("--min-length", type=float, metavar="M", help="shortest candidate in metres (default: setting)")
    parser.add_argument(
        "--model", metavar="PATH", help="SavedModel folder or folder of versions (default: ROADSEG_MODEL_DIR)"
    )
    parser.add_argument("--threshold", type=float, help="road probability threshold (default: the model card's)")
    parser.add_argument("--tta", help="test-time augmentation: none or flip (default: the card's)")
    parser.set_defaults(func=missing_command)


def missing_command(args: argparse.Namespace) -> int:
    """Dispatch on the leading word: ``export``, ``export-dataset``, else compare."""
    word, rest = args.words[0], args.words[1:]
    if word == "export":
        return _export(rest, args)
    if word == "export-dataset":
        return _export_dataset(rest, args)
    if word == "compare":
        word, rest = (rest[0], rest[1:]) if rest else ("", [])
    if not word or rest:
        raise SystemExit("roadseg missing: give one image or scene (or: export JOB, export-dataset JOB...)")
    return _compare(word, args)


def _compare(source: str, args: argparse.Namespace) -> int:
    import rasterio

    from roadseg import raster
    from roadseg.config import get_settings
    from roadseg.errors import InvalidInput
    from roadseg.inference.predictor import make_predictor
    from roadseg.missing.compare import centreline_probabilities, centreline_threshold
    from roadseg.missing.records import missing_store
    from roadseg.missing.run import prepare_job, run_comparison
    from roadseg.storage import get_storage

    if not args.vectors:
        raise InvalidInput("--vectors is needed: the existing roads to compare with")
    settings, storage = get_settings(), get_storage()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with _open_source(source, storage, settings) as (ds, where):
        info = raster.scene_info(ds)
        record = prepare_job(  # vectors first: a bad file fails before the model loads
            storage,
            settings,
            info,
            Path(args.vectors),
            input_name=Path(source).name,
            layer=args.layer,
            assume_crs=args.assume_crs,
            pixel_size_m=args.pixel_size,
            tolerance_m=args.tolerance,
            min_length_m=args.min_length,
            **where,
        )
        predictor = make_predictor(settings, args.model)
        override = args.threshold if args.threshold is not None else settings.threshold
        threshold = centreline_threshold(predictor, override)
        print(f"job {record.id}: predicting with {predictor.name} v{predictor.version}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix=".missing-", dir=out) as tmp:
            probabilities = centreline_probabilities(ds, predictor, settings, Path(tmp), args.tta)
            with rasterio.open(probabilities) as prob:
                record = run_comparison(storage, record.id, prob, settings, threshold, predictor.describe())
            stem = Path(source).stem
            jobs = missing_store(storage)
            for kind in ("missing", "unsupported"):
                part = Path(tmp) / f"{kind}.geojson"
                storage.download(jobs.key(record.id, f"{kind}.geojson"), part)
                os.replace(part, out / f"{stem}.{kind}.geojson")  # each output appears whole
    counts = record.counts or {}
    print(
        f"{source}: {counts.get('missing', 0)} candidate missing roads, {counts.get('unsupported', 0)} unsupported "
        f"(tolerance {record.tolerance_m} m) -> {out / (stem + '.missing.geojson')}, "
        f"{out / (stem + '.unsupported.geojson')}; review: {settings.labeler_url}/missing/{record.id}"
    )
    return 0


def _open_source(source: str, storage: Storage, settings: Settings) -> AbstractContextManager[Opened]:
    """(dataset, how the job names its image) for an image file, or an ingested scene's source."""
    import contextlib

    from roadseg import raster

    @contextlib.contextmanager
    def opened() -> Iterator[Opened]:
        if Path(source).is_file():
            with raster.trusted_mosaics(), raster.open_checked(source, settings.max_scene_pixels) as ds:
                yield ds, {"image_url": Path(source).resolve().as_uri()}
            return
        from roadseg.ingest.scene_jobs import open_scene_source, scene_store, source_of

        scene = scene_store(storage).get(source)
        src, key, _ = source_of(storage, scene)
        with open_scene_source(src, key, bool(scene.mosaic_files)) as ds:
            yield ds, {"scene_id": source}

    return opened()


def _export(job_ids: list[str], args: argparse.Namespace) -> int:
    from roadseg.missing.export import candidates_geojson, decided, osm_change
    from roadseg.missing.records import missing_store
    from roadseg.storage import get_storage

    if len(job_ids) != 1:
        raise SystemExit("roadseg missing export: give one job id")
    storage = get_storage()
    record = missing_store(storage).get(job_ids[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    accepted, rejected = decided(storage, record, "accept"), decided(storage, record, "reject")
    files = {
        "accepted.geojson": json.dumps(candidates_geojson(accepted, record, tags=True)).encode(),
        "rejected.geojson": json.dumps(candidates_geojson(rejected, record, tags=True)).encode(),
    }
    if record.info.georeferenced:
        files["accepted.osc"] = osm_change(accepted, record)
    for name, body in files.items():
        (out / f".{name}.part").write_bytes(body)
        os.replace(out / f".{name}.part", out / f"{record.id}.{name}")
    note = "" if record.info.georeferenced else " (plain image: pixel coordinates, no .osc)"
    print(f"job {record.id}: {len(accepted)} accepted, {len(rejected)} rejected -> {out}{note}")
    return 0


def _export_dataset(job_ids: list[str], args: argparse.Namespace) -> int:
    from roadseg.config import get_settings
    from roadseg.missing.dataset import export_dataset
    from roadseg.storage import get_storage

    if not job_ids:
        raise SystemExit("roadseg missing export-dataset: give at least one job id")
    target = args.out if "://" in args.out else str(Path(args.out).resolve())
    source = export_dataset(get_storage(), job_ids, target, get_settings())
    print(json.dumps({"out": args.out, **source}))
    return 0
