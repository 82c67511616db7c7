"""``roadseg predict`` (files in, masks out: the contract other tools call) and ``roadseg serve``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.model_versions import TTA_OPTIONS
from roadseg.pixel_size import pixel_size_arg

if TYPE_CHECKING:
    import threading

    from roadseg.cli import Subcommands
    from roadseg.config import Settings
    from roadseg.inference.predictor import Predictor

#: Side of the blank window that starts the model before the first image (its size does not matter).
WARM_UP_WINDOW = 64

PREDICT_EPILOG = """\
outputs, for every INPUT (named after its file stem):
  DIR/<stem>.png             road (surface) mask, 0 = background, 255 = road, same width and height as the input
  DIR/<stem>.centerline.png  centreline band mask, same format (models with a centreline output)
  DIR/<stem>.tif, DIR/<stem>.centerline.tif
                             the same masks as GeoTIFFs with the input's CRS and transform (georeferenced inputs)
  DIR/<stem>.geojson         road network, from the centreline band where the model has one (with --geojson)

examples:
  roadseg predict scene.tif --out out/
  roadseg predict a.png b.jpg c.jp2 --out masks/ --threshold 0.4 --geojson
  roadseg predict big.tif --out out/ --model models/roads/3
  roadseg predict tiles/*.tif --out out/ --tta none     # many images, the fast way
  roadseg predict nyc.vrt --out out/                     # tiles of one image as one (roadseg ingest mosaic)
  roadseg predict photo.png --out out/ --pixel-size 0.5   # a plain image of 0.5 m pixels

The model is ROADSEG_MODEL_DIR (latest version) unless --model is given; with ROADSEG_TFSERVING_URL set
(and no --model) windows are sent to TF Serving. Window size/overlap/batch: ROADSEG_PREDICT_WINDOW,
ROADSEG_PREDICT_OVERLAP, ROADSEG_PREDICT_BATCH. Exit status 2 if any input could not be predicted.
"""

SERVE_EPILOG = """\
examples:
  roadseg serve                      # http://127.0.0.1:8000/ (page), /docs (API)
  roadseg serve --host 0.0.0.0 --port 8080
Large uploads are queued for a worker: celery -A roadseg.celery_app worker -Q predict
"""


def register(sub: Subcommands) -> None:
    """Add the ``predict`` and ``serve`` sub-commands."""
    p = sub.add_parser(
        "predict",
        help="predict road masks for image files",
        description="Predict road masks for images of any size (PNG, JPEG, TIFF/GeoTIFF, JPEG 2000) at full "
        "resolution with overlapping, blended sliding windows.",
        epilog=PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--model", metavar="PATH", help="SavedModel folder, or a folder of versions (latest is used)")
    p.add_argument("--threshold", type=float, metavar="T", help="road probability threshold (default: model card)")
    p.add_argument(
        "--centerline-threshold",
        type=float,
        metavar="T",
        help="centreline band threshold (default: model card)",
    )
    p.add_argument(
        "--pixel-size",
        type=pixel_size_arg,
        metavar="M|auto",
        help="ground pixel size in metres of plain images (PNG/JPEG without georeference): they are resampled to "
        "the model's resolution as georeferenced ones are; 'auto': the model chooses the scale at which it finds "
        "roads most surely, and the line printed says which (default: the model card's plain_pixel_size, auto "
        "where it says so, else taken to be the model's own)",
    )
    p.add_argument("--geojson", action="store_true", help="also write the road network as DIR/<stem>.geojson")
    p.add_argument(
        "--tta", choices=TTA_OPTIONS, help="test-time augmentation: none is about twice as fast (default: the card's)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        metavar="N",
        help="images in flight at once; reading and writing overlap the model calls, which run one at a time "
        "(default 2)",
    )
    p.set_defaults(func=predict_command)

    s = sub.add_parser(
        "serve",
        help="run the gateway (API + web page)",
        description="Run the gateway HTTP service with uvicorn: prediction and route API, model card, web page.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.set_defaults(func=serve_command)

    m = sub.add_parser(
        "seed-models",
        help="copy the shipped model versions into the runtime model folder",
        description="Copy the versions of ROADSEG_SHIPPED_MODEL_DIR (models/roads, read only) that ROADSEG_MODEL_DIR "
        "(var/models/roads) lacks into it. The gateway does this itself when it starts with an embedded model; "
        "deployments with TF Serving run it once before TF Serving starts (docker-compose models-init).",
    )
    m.set_defaults(func=seed_models_command)


def predict_command(args: argparse.Namespace) -> int:
    """Predict every input into ``--out``; an input that fails is reported, skipped, and makes the exit status 2.

    ``--jobs`` images are in flight at once, sharing one model that runs one call at a time: while
    one image is in the model, the next is read and stretched and the last one's outputs are written.
    Results are printed in the order of the inputs. A VRT mosaic (``roadseg ingest mosaic``) is
    predicted as one image, as on the user's own command line it may be.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    from tqdm import tqdm

    from roadseg import raster
    from roadseg.config import get_settings
    from roadseg.errors import RoadsegError
    from roadseg.inference.predictor import make_predictor, warm_up
    from roadseg.mosaic import gcs_gdal_options

    settings = get_settings()
    predictor = make_predictor(settings, args.model)
    predictor.signature(args.tta)  # refuse an unavailable test-time augmentation before any work
    threshold = predictor.threshold(args.threshold if args.threshold is not None else settings.threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = f"{predictor.name} v{predictor.version} ({predictor.backend})"
    tta = args.tta or predictor.card.get("tta") or "none"
    print(f"model {model}, threshold {threshold:.3f}, test-time augmentation {tta}", file=sys.stderr)
    warm_up(predictor, WARM_UP_WINDOW, [tta])  # TensorFlow's one-off start, not the first image's time
    lock = threading.Lock()
    one = len(args.inputs) == 1 or args.jobs == 1

    def predict_one(source: str) -> str:
        # In the worker thread: the trust in VRT mosaics and GDAL's options hold per thread.
        with rasterio.Env(**gcs_gdal_options()), raster.trusted_mosaics():
            return _predict_file(source, predictor, settings, out, threshold, args, lock, show_windows=one)

    failed = 0
    with (
        ThreadPoolExecutor(max_workers=max(1, args.jobs), thread_name_prefix="predict") as pool,
        tqdm(total=len(args.inputs), desc="images", unit="image", file=sys.stderr, disable=one or None) as bar,
    ):
        # Submitted one ahead of the workers at most, so a long list never queues every image's work at once.
        pending = [pool.submit(predict_one, source) for source in args.inputs[: args.jobs + 1]]
        for index, source in enumerate(args.inputs):
            if index + args.jobs + 1 < len(args.inputs):
                pending.append(pool.submit(predict_one, args.inputs[index + args.jobs + 1]))
            try:
                tqdm.write(pending[index].result(), file=sys.stdout)
                sys.stdout.flush()  # each result as it comes, also into a pipe or a log
            except RoadsegError as exc:
                failed += 1
                tqdm.write(f"{source}: error: {exc}", file=sys.stderr)
            bar.update()
    return 2 if failed else 0


def _predict_file(
    source: str,
    predictor: Predictor,
    settings: Settings,
    out: Path,
    threshold: float,
    args: argparse.Namespace,
    lock: threading.Lock,
    show_windows: bool,
) -> str:
    """Predict one input into ``out``; returns the line the command prints for it."""
    from tqdm import tqdm

    from roadseg import raster
    from roadseg.cog import tif_to_cog
    from roadseg.inference.predict import plain_pixel_size, predict_raster
    from roadseg.inference.road_graph import road_graph_geojson

    stem = Path(source).stem
    notes = []
    with (
        raster.open_checked(source, settings.max_scene_pixels) as ds,
        tempfile.TemporaryDirectory(prefix=".predict-", dir=out) as tmp,
    ):
        with tqdm(desc=stem, unit="window", file=sys.stderr, leave=False, disable=not show_windows or None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = predict_raster(
                ds,
                predictor,
                Path(tmp),
                settings,
                threshold,
                progress=progress,
                tta=args.tta,
                model_lock=lock,
                pngs=("mask.png", "centerline.png"),
                centerline_threshold=args.centerline_threshold,
                pixel_size_m=args.pixel_size,
            )
        # Each output appears whole: written in the temporary folder, then renamed.
        masks = {"mask": f"{stem}", "centerline": f"{stem}.centerline"}
        masks = {layer: name for layer, name in masks.items() if layer in result.files}
        written = []
        for layer, name in masks.items():
            os.replace(result.files[f"{layer}.png"], out / f"{name}.png")
            written.append(out / f"{name}.png")
        if args.geojson:
            # The road network follows the centreline band where there is one (mask_key says why).
            with raster.open_checked(result.files["centerline" if "centerline" in masks else "mask"]) as mask:
                metres = plain_pixel_size(args.pixel_size, result.resampling)
                roads = road_graph_geojson(mask, settings.graph_max_pixels, settings.graph_window, pixel_size_m=metres)
            if roads is None:
                notes.append("too large for a road graph (ROADSEG_GRAPH_MAX_PIXELS)")
            else:
                (Path(tmp) / "roads.geojson").write_text(json.dumps(roads))
                os.replace(Path(tmp) / "roads.geojson", out / f"{stem}.geojson")
                written.append(out / f"{stem}.geojson")
        if result.info.georeferenced:
            for layer, name in masks.items():
                cog = tif_to_cog(result.files[layer], Path(tmp) / f"{layer}.cog.tif", "nearest")
                os.replace(cog, out / f"{name}.tif")
                written.append(out / f"{name}.tif")
    width, height = result.info.width, result.info.height
    if (resampling := result.resampling or {}).get("estimated"):
        metres = resampling["image_pixel_size_m"]
        scale = f"{metres:g} m pixels" if metres else f"resampling factor {resampling['factor']:g}"
        notes.append(f"scale chosen by the model: {scale}")
    note = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"{source}: {width}x{height} px, roads {result.road_pixels / (width * height):.1%}, "
        f"{result.seconds:.1f} s -> {', '.join(str(p) for p in written)}{note}"
    )


def seed_models_command(args: argparse.Namespace) -> int:
    """Seed the runtime model folder; prints what it copied."""
    from roadseg.config import get_settings
    from roadseg.model_versions import seed_model_dir

    settings = get_settings()
    copied = seed_model_dir(settings.model_dir, settings.shipped_model_dir)
    print(f"{settings.model_dir}: copied versions {copied or 'none (all there)'} from {settings.shipped_model_dir}")
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """Run the gateway under uvicorn through the app factory, so settings are read when the server starts.

    Open local mode (no authentication) refuses to listen anywhere but on loopback.
    """
    import uvicorn

    from roadseg.auth import refuse_open_binding
    from roadseg.config import get_settings

    refuse_open_binding(get_settings(), args.host)

    uvicorn.run("roadseg.gateway.api:create_app", factory=True, host=args.host, port=args.port)
    return 0
