"""``roadseg demo``: the whole chain against the locally started stack (``make up``).

Ingest a scene, label it from its road lines, export a dataset, fine-tune the served model into
version N+1 of the runtime model folder (ROADSEG_MODEL_DIR, ``var/models/roads``: the shipped versions in
``models/roads`` are never written), wait for the gateway to serve it, predict on the scene, and print
before/after metrics.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roadseg.cli import Subcommands

VEGAS = (
    "data/spacenet-vegas/RGB-PanSharpen_AOI_2_Vegas_img0.tif",
    "data/spacenet-vegas/AOI_2_Vegas_img0_roads.geojson",
)
#: SpaceNet road lines carry their lane count; 3.7 m per lane (a US lane) gives the road width.
SPACENET_OPTIONS = {"widths": {"width_attr": "lane_number", "lane_width": 3.7}}


def _run(args: argparse.Namespace) -> int:
    from roadseg.config import get_settings
    from roadseg.demo_driver import Endpoints, FinetuneParams, Pipeline
    from roadseg.errors import InvalidInput
    from roadseg.model_versions import seed_model_dir

    settings = get_settings()
    shared = Path(settings.shared_dir)
    scene = Path(args.scene) if args.scene else shared / VEGAS[0]
    vectors = Path(args.vectors) if args.vectors else shared / VEGAS[1]
    for path in (scene, vectors):
        if not path.is_file():
            raise InvalidInput(f"{path} not found: name a scene with --scene and its roads with --vectors")
    options = json.loads(args.label_options) if args.label_options else SPACENET_OPTIONS
    model_dir = Path(args.model_dir or settings.model_dir)
    if model_dir.resolve() == Path(settings.shipped_model_dir).resolve():
        raise InvalidInput(f"{model_dir} holds the shipped versions (read only): give another --model-dir")
    seed_model_dir(model_dir, settings.shipped_model_dir)  # the new version starts from the shipped one
    run_dir = Path(args.run_dir or f"var/runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")

    pipeline = Pipeline(Endpoints.from_settings())
    started = time.monotonic()
    scene_record = pipeline.ingest(scene, args.tile_size)
    label_record = pipeline.label(scene_record["id"], vectors, options)
    dataset = pipeline.export([label_record["id"]], args.dataset_name or f"demo-{scene_record['id']}")
    before_version = _latest(model_dir)
    params = FinetuneParams(
        epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size, crop_size=args.crop_size
    )
    new_version = pipeline.finetune(dataset["url"], model_dir, run_dir, params)
    pipeline.wait_for_model(new_version)
    prediction = pipeline.predict(scene)
    before = pipeline.evaluate(model_dir / str(before_version), dataset["url"])
    after = pipeline.evaluate(model_dir / str(new_version), dataset["url"])
    print(f"\nmetrics on the new dataset's val+test tiles (version {before_version} -> {new_version}):")
    for key in ("iou_road", "iou_mean", "f1", "relaxed_f1"):
        if key in before and key in after:
            print(f"  {key:12s} {before[key]:.4f} -> {after[key]:.4f}")
    links = prediction.get("links", {})
    print(f"\nprediction {prediction['id']}: {_links_text(links)}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


def _links_text(links: dict) -> str:
    return ", ".join(f"{name}: {url}" for name, url in sorted(links.items())) or "(no files)"


def _latest(model_dir: Path) -> int:
    from roadseg.errors import NotFound
    from roadseg.model_versions import latest_version

    version = latest_version(str(model_dir))
    if version is None:
        raise NotFound(f"no model version under {model_dir}: train one first (see README)")
    return version


def register(sub: Subcommands) -> None:
    """Add the ``demo`` sub-command (the whole pipeline against the running stack)."""
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline against the running stack (make up)",
        description="Ingest a scene, label it from road lines, export a dataset, fine-tune the served model into "
        "version N+1, wait until the gateway serves it, predict on the scene and print before/after metrics. "
        "Needs the stack from `make up` (URLs from ROADSEG_INGEST_URL, ROADSEG_LABELER_URL, ROADSEG_GATEWAY_URL).",
        epilog="examples:\n  roadseg demo                       # SpaceNet Vegas tile from ../shared\n"
        '  roadseg demo --scene city.tif --vectors roads.gpkg --label-options \'{"widths": {"width": 8}}\'',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scene", help="scene GeoTIFF/JP2 (default: the SpaceNet Vegas tile in ../shared)")
    p.add_argument("--vectors", help="road lines of the scene (default: the Vegas tile's SpaceNet roads)")
    p.add_argument("--label-options", help="JSON label options (default: SpaceNet lane_number x 3.7 m)")
    p.add_argument("--tile-size", type=int, default=256, help="tile edge for ingest (default 256)")
    p.add_argument("--dataset-name", help="dataset name in storage (default demo-<scene id>)")
    p.add_argument("--model-dir", help="model versions folder (default ROADSEG_MODEL_DIR)")
    p.add_argument("--run-dir", help="training run folder (default var/runs/demo-<time>)")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default 1)")
    p.add_argument("--steps", type=int, default=10, help="steps per epoch (default 10)")
    p.add_argument("--batch-size", type=int, default=4, help="batch size (default 4)")
    p.add_argument("--crop-size", type=int, default=256, help="training crop (default 256)")
    p.set_defaults(func=_run)
