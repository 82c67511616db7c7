"""``roadseg predict`` (files in, masks out: the contract other tools call) and ``roadseg serve``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

PREDICT_EPILOG = """\
outputs, for every INPUT (named after its file stem):
  DIR/<stem>.png      road mask, 0 = background, 255 = road, same width and height as the input
  DIR/<stem>.tif      the same mask as a GeoTIFF with the input's CRS and transform (georeferenced inputs only)
  DIR/<stem>.geojson  road network (with --geojson)

examples:
  roadseg predict scene.tif --out out/
  roadseg predict a.png b.jpg c.jp2 --out masks/ --threshold 0.4 --geojson
  roadseg predict big.tif --out out/ --model models/roads/1

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


def register(sub) -> None:
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
    p.add_argument("--geojson", action="store_true", help="also write the road network as DIR/<stem>.geojson")
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


def predict_command(args: argparse.Namespace) -> int:
    """Predict every input into ``--out``; an input that fails is reported, skipped, and makes the exit status 2."""
    from tqdm import tqdm

    from roadseg import raster
    from roadseg.config import get_settings
    from roadseg.errors import RoadsegError
    from roadseg.gateway.predictions import predict_raster, road_graph_geojson, tif_to_png
    from roadseg.gateway.predictor import make_predictor

    settings = get_settings()
    predictor = make_predictor(settings, args.model)
    threshold = predictor.threshold(args.threshold if args.threshold is not None else settings.threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = f"{predictor.name} v{predictor.version} ({predictor.backend})"
    print(f"model {model}, threshold {threshold:.3f}", file=sys.stderr)
    failed = 0
    for source in args.inputs:
        stem = Path(source).stem
        try:
            with (
                raster.open_checked(source, settings.max_scene_pixels) as ds,
                tempfile.TemporaryDirectory(prefix=".predict-", dir=out) as tmp,
            ):
                with tqdm(desc=stem, unit="window", file=sys.stderr, leave=False) as bar:

                    def progress(done: int, total: int, bar=bar) -> None:
                        bar.total = total
                        bar.update(done - bar.n)

                    result = predict_raster(ds, predictor, Path(tmp), settings, threshold, progress=progress)
                mask_tif = result.files["mask"]
                written = [tif_to_png(mask_tif, out / f"{stem}.png")]
                if args.geojson:
                    roads = road_graph_geojson(mask_tif, settings.graph_max_pixels)
                    if roads is None:
                        print(f"{source}: too large for a road graph (ROADSEG_GRAPH_MAX_PIXELS)", file=sys.stderr)
                    else:
                        (out / f"{stem}.geojson").write_text(json.dumps(roads))
                        written.append(out / f"{stem}.geojson")
                if result.info["georeferenced"]:
                    os.replace(mask_tif, out / f"{stem}.tif")
                    written.append(out / f"{stem}.tif")
        except RoadsegError as exc:
            failed += 1
            print(f"{source}: error: {exc}", file=sys.stderr)
            continue
        width, height = result.info["width"], result.info["height"]
        print(
            f"{source}: {width}x{height} px, roads {result.road_pixels / (width * height):.1%}, "
            f"{result.seconds:.1f} s -> {', '.join(str(p) for p in written)}"
        )
    return 2 if failed else 0


def serve_command(args: argparse.Namespace) -> int:
    """Run the gateway under uvicorn through the app factory, so settings are read when the server starts."""
    import uvicorn

    uvicorn.run("roadseg.gateway.api:create_app", factory=True, host=args.host, port=args.port)
    return 0
