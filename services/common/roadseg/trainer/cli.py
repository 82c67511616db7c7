"""``roadseg train``, ``roadseg evaluate`` and ``roadseg export``: the trainer's command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from typing import TYPE_CHECKING

from roadseg.errors import InvalidInput
from roadseg.model_versions import TTA_OPTIONS, TTA_VIEWS
from roadseg.pixel_size import AUTO, metres_arg
from roadseg.trainer import BACKBONES, DECODER_STRIDES, DECODERS, LOSSES, PRECISIONS, TARGETS
from roadseg.trainer.checkpoints import CONFIG

if TYPE_CHECKING:
    from roadseg.cli import Subcommands

TRAIN_EPILOG = """examples:
  roadseg train --config configs/shipped.yaml
  roadseg train --train-data ../shared/data/massachusetts-crops:1 --train-data ../shared/data/cil-2022:0.5 \\
      --val-data ../shared/data/massachusetts-crops --output var/runs/a --epochs 20 --max-minutes 60
  roadseg train --config configs/shipped.yaml --output gs://bucket/runs/a --resume   # continue after a kill
  roadseg train --resume var/runs/long-unet            # continue a run with the config saved in its folder

Data folders are TFRecord dataset folders ({split}-*.tfrecord) or plain {split}/images + {split}/masks
folders; PATH:WEIGHT sets the sampling weight in the mix. Command-line options override the config file.
"""

EVALUATE_EPILOG = """examples:
  roadseg evaluate --model models/roads --data ../shared/data/cil-2022 --split val
  roadseg evaluate --model models/roads/3 --data ../shared/data/massachusetts-crops --split test,val --out var/eval

--model is a SavedModel folder or a folder of numbered versions (the latest is used): what is served is
what is measured. Whole images are predicted the way `roadseg predict` does (sliding windows of
ROADSEG_PREDICT_WINDOW with ROADSEG_PREDICT_OVERLAP, blended). Prints the summary JSON with a score per
--data source (and their mean road IoU); --out also writes report.json, tiles.csv, thresholds.csv,
report.png.
"""

EXPORT_EPILOG = """examples:
  roadseg export --checkpoint var/runs/a/checkpoints/best.keras --model-dir models/roads
  roadseg export --checkpoint var/runs/a/checkpoints/best.keras --model-dir models/roads --version 2 \\
      --evaluate ../shared/data/massachusetts-crops:test,val --evaluate ../shared/data/cil-2022:val
  roadseg export --from-version models/roads/1 --model-dir models/roads --evaluate ../shared/data/cil-2022:val
  roadseg export --checkpoint var/runs/long-unet/checkpoints/step-030000.keras --average 3 --predict-at 0.75 \\
      --model-dir var/models/roads        # mean of steps 28,000-30,000, every image predicted at 0.75 m
"""


def _train(args: argparse.Namespace) -> int:
    from roadseg.trainer.train import TrainConfig, train

    resume_dir = args.resume if isinstance(args.resume, str) else None
    if resume_dir and args.config:
        raise InvalidInput("--resume RUN_DIR continues with the config saved in RUN_DIR: leave out --config")
    if resume_dir:
        config = dataclasses.replace(TrainConfig.load(f"{resume_dir.rstrip('/')}/{CONFIG}"), output=resume_dir)
    else:
        config = TrainConfig.load(args.config) if args.config else TrainConfig()
    overrides = {
        "output": args.output,
        "train_data": args.train_data,
        "val_data": args.val_data,
        "backbone": args.backbone,
        "weights": args.weights,
        "crop_size": args.crop_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "learning_rate": args.learning_rate,
        "loss": args.loss,
        "decoder_stride": args.decoder_stride,
        "decoder": args.decoder,
        "outputs": args.outputs,
        "max_minutes": args.max_minutes,
        "init_from": args.init_from,
        "precision": args.precision,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if config.weights == "none":
        config = dataclasses.replace(config, weights=None)
    state = train(config, resume=bool(args.resume), command=shlex.join(["roadseg", *sys.argv[1:]]))
    print(json.dumps({"output": config.output, **state}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from roadseg.trainer.evaluate import evaluate_model

    report = evaluate_model(
        args.model,
        args.data,
        splits=args.split.split(","),
        out=args.out,
        rho=args.rho,
        threshold=args.threshold,
        tta=args.tta,
    )
    print(json.dumps({**report["summary"], "sources": report["sources"]}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from roadseg.trainer.export import export_checkpoint, export_version

    command = shlex.join(["roadseg", *sys.argv[1:]])
    if args.pixel_size_m is not None and args.predict_at is not None:
        raise InvalidInput("--predict-at sets the card's pixel size: leave out --pixel-size-m")
    if args.from_version:
        if args.train_command or args.pixel_size_m is not None or args.predict_at is not None or args.average > 1:
            raise InvalidInput(
                "--train-command, --pixel-size-m, --predict-at and --average come from the version's card with "
                "--from-version"
            )
        path = export_version(
            args.from_version,
            args.model_dir,
            args.version,
            args.evaluate or [],
            command,
            args.tta,
            plain_pixel_size=args.plain_pixel_size,
        )
    else:
        path = export_checkpoint(
            args.checkpoint,
            args.model_dir,
            version=args.version,
            evaluate=args.evaluate or [],
            command=command,
            train_command=args.train_command,
            pixel_size_m=args.pixel_size_m,
            tta=args.tta or "none",
            predict_at=args.predict_at,
            average=args.average,
            plain_pixel_size=args.plain_pixel_size,
        )
    print(path)
    return 0


VALIDATE_EPILOG = """examples:
  roadseg validate var/runs/long-unet --prepare-vegas     # every kept checkpoint not measured yet
  roadseg validate var/runs/long-unet --steps 2000,4000 --tta flip
  roadseg validate --model models/roads/3 --prepare-vegas  # an exported version, for comparison
  roadseg validate --model var/models/long/1 --against models/roads/3 --tta flip   # may it ship? (exit 0: yes)
  roadseg validate var/runs/long-unet --steps 8000 --predict-at trained,0.75,1   # where should it predict?
  roadseg validate var/runs/long-unet --predict-at 0.75 --average 3    # the mean of 3 kept checkpoints per step

Each source of --sources (default configs/validation/sources.yaml) is predicted whole, at its pixel size, and scored
on the road definition of its labels (surface or centreline band) at per-output thresholds chosen on these
sources. Rows go to RUN_DIR/val.csv and are printed as a Markdown table (the training log's).
--predict-at measures each checkpoint as exported at the resolutions it trained for (trained) and/or with every
image resampled to M metres (roadseg export --predict-at M); --average N the mean of the weights of N kept
checkpoints (roadseg export --average N). Choose both on these rows, like the thresholds.
"""


def _validate(args: argparse.Namespace) -> int:
    from roadseg.trainer.validation import (
        load_sources,
        markdown_table,
        measure,
        prepare_vegas,
        read_rows,
        ship_verdict,
        validate_run,
        verdict_table,
        version_size_mb,
    )

    if bool(args.run_dir) == bool(args.model):
        raise InvalidInput("give a run folder or --model VERSION_DIR (one of them)")
    if args.prepare_vegas:
        vegas = args.shared.rstrip("/") + "/data/spacenet-vegas"
        tile, lines = f"{vegas}/RGB-PanSharpen_AOI_2_Vegas_img0.tif", f"{vegas}/AOI_2_Vegas_img0_roads.geojson"
        prepare_vegas(tile, lines, args.vegas)
    sources = load_sources(args.sources)
    if args.model and (args.predict_at != [None] or args.average > 1):
        raise InvalidInput(
            "--predict-at and --average measure a run's checkpoints; an exported version is measured as it is"
        )
    if args.against and not args.model:
        raise InvalidInput("--against compares an exported version: give it with --model VERSION_DIR")
    if args.model and args.against:
        new = measure(args.model, sources, args.tta, args.plain_pixel_size)
        old = measure(args.against, sources, args.tta, args.plain_pixel_size)
        verdict = ship_verdict(new, old, version_size_mb(args.model))
        print(verdict_table(verdict))
        return 0 if verdict["ships"] else 1
    if args.model:
        print(json.dumps(measure(args.model, sources, args.tta, args.plain_pixel_size), indent=2))
        return 0
    steps = [int(s) for s in args.steps.split(",")] if args.steps else None
    validate_run(args.run_dir, sources, args.tta, steps, args.predict_at, args.average)
    print(markdown_table(read_rows(args.run_dir)))
    return 0


def _count(text: str) -> int:
    """A whole number of checkpoints, 1 or more (argparse type)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a number of checkpoints (1 or more) is needed, got {text!r}")
    return int(text)


def _resolutions(text: str) -> list[float | None]:
    """``trained`` and/or metres, comma-separated (argparse type of ``validate --predict-at``)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give 'trained' and/or pixel sizes in metres, e.g. trained,0.75")
    return [None if item.lower() == "trained" else metres_arg(item) for item in items]


def register(sub: Subcommands) -> None:
    """Add the ``train``, ``evaluate``, ``export`` and ``validate`` sub-commands."""
    p = sub.add_parser(
        "train",
        help="train DeepLabV3+ on road masks (checkpoints every epoch, resumable)",
        description="Train DeepLabV3+ (MobileNetV2 or ResNet50 backbone) on image/mask folders or TFRecords.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML/JSON config file (keys as in roadseg.trainer.train.TrainConfig)")
    p.add_argument("--output", help="run folder: local path, file:// or gs:// URL")
    p.add_argument("--train-data", action="append", metavar="PATH[:WEIGHT]", help="training source (repeatable)")
    p.add_argument("--val-data", action="append", metavar="PATH", help="validation source (repeatable)")
    p.add_argument("--backbone", choices=BACKBONES)
    p.add_argument("--weights", help="backbone weights: imagenet, none or a weights file path")
    p.add_argument("--crop-size", type=int, help="training crop edge in px (multiple of 16)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the training examples")
    p.add_argument("--learning-rate", type=float, help="peak learning rate after warm-up")
    p.add_argument(
        "--loss",
        choices=LOSSES,
        help="lovasz: IoU surrogate, best for fine-tuning (--init-from)",
    )
    p.add_argument(
        "--decoder-stride",
        type=int,
        choices=DECODER_STRIDES,
        help="4: DeepLabV3+ as published (default); 2: add a stride-2 decoder stage for thin roads",
    )
    p.add_argument("--max-minutes", type=float, help="wall-clock budget: stop after the epoch that would exceed it")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="RUN_DIR",
        help="continue from the last checkpoint: of the output folder, or of RUN_DIR with the config saved "
        "there (weights, optimizer, step, learning-rate schedule and data order continue exactly)",
    )
    p.add_argument(
        "--decoder", choices=DECODERS, help="deeplabv3plus (ASPP, stride 4; default) or unet (strides 16/8/4/2)"
    )
    p.add_argument("--outputs", type=int, choices=(1, 2), help=f"1: road; 2: {' and '.join(TARGETS)}")
    p.add_argument(
        "--init-from",
        metavar="VERSION_DIR",
        help="fine-tune: start from an exported model version, e.g. models/roads/3",
    )
    p.add_argument(
        "--precision",
        choices=["auto", *PRECISIONS],
        help="dtype policy (default auto: mixed_float16 on GPUs, float32 on CPU); exports are always float32",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "evaluate",
        help="measure a SavedModel on image/mask data (IoU, F1, relaxed F1, thresholds)",
        description="Evaluate an exported road model on labeled folders or TFRecords; ignore pixels never count.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="SavedModel folder, or a folder of numbered versions")
    p.add_argument("--data", required=True, action="append", help="dataset folder (repeatable)")
    p.add_argument("--split", default="val", help="comma-separated splits (default val)")
    p.add_argument("--out", help="report folder (report.json, tiles.csv, thresholds.csv, report.png)")
    p.add_argument("--rho", type=int, default=3, help="relaxed-metric tolerance in px (default 3)")
    p.add_argument("--threshold", type=float, help="road probability threshold (default: the model card's, else 0.5)")
    p.add_argument(
        "--tta", choices=TTA_OPTIONS, help="test-time augmentation, as a request can ask (default: the model card's)"
    )
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "export",
        help="export a training checkpoint (or an older export) as a versioned SavedModel with its model card",
        description="Write <model-dir>/<version>/ (TF Serving layout) with model_card.json; optionally evaluate it.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help=".keras checkpoint (local path or storage URL)")
    source.add_argument(
        "--from-version",
        metavar="SAVEDMODEL",
        help="an exported version to export again with this code's serving graph (same weights, faster on CPU; "
        "its card's training record is kept, figures are measured again with --evaluate)",
    )
    p.add_argument("--model-dir", required=True, help="folder of versions, e.g. models/roads")
    p.add_argument("--version", type=int, help="default: latest + 1")
    p.add_argument("--evaluate", action="append", metavar="PATH:SPLITS", help="data to measure into the card")
    p.add_argument("--train-command", help="training command for the card (default: the run's command.txt)")
    p.add_argument(
        "--pixel-size-m",
        type=float,
        help="ground resolution the model was trained for (card pixel_size_m); the gateway resamples "
        "georeferenced images to it",
    )
    p.add_argument(
        "--average",
        type=_count,
        default=1,
        metavar="N",
        help="export the mean of the weights of the N kept checkpoints of the run ending at --checkpoint "
        "(a checkpoints/step-NNNNNN.keras); choose N on val with roadseg validate --average (default 1)",
    )
    p.add_argument(
        "--predict-at",
        type=metres_arg,
        metavar="M",
        help="a run trained across resolutions: predict every image at M m/px (card pixel_size_m, no range) "
        "instead of keeping those inside the training range as they are; choose M on val with "
        "roadseg validate --predict-at",
    )
    p.add_argument(
        "--plain-pixel-size",
        choices=(AUTO,),
        help="what a plain image given no pixel size is predicted at: auto (the model chooses the scale; choose it "
        "on val with roadseg validate --model VERSION --plain-pixel-size withheld|auto); default: the model's own "
        "resolution (with --from-version: the version's own)",
    )
    p.add_argument(
        "--tta",
        choices=list(TTA_VIEWS),
        help="test-time augmentation in the served graph: average the left-right mirror (flip, 2 passes) or "
        "all 8 rotations and mirrors (d4, 8 passes); default none (with --from-version: the version's own)",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "validate",
        help="measure a run's kept checkpoints (or an export) on whole val images, per source and output",
        description="Export each kept checkpoint of a run (checkpoints/step-N.keras) and score it on whole validation "
        "images, per source, through the prediction path; rows go to RUN_DIR/val.csv.",
        epilog=VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="training run folder")
    p.add_argument("--model", metavar="VERSION_DIR", help="measure an exported version instead of a run")
    p.add_argument("--sources", default="configs/validation/sources.yaml", help="YAML list of validation sources")
    p.add_argument("--steps", metavar="N,N", help="only these checkpoints (default: every one not measured yet)")
    p.add_argument("--tta", choices=TTA_OPTIONS, default="none", help="test-time augmentation (default none)")
    p.add_argument("--prepare-vegas", action="store_true", help="make the Vegas source folder first (once)")
    p.add_argument(
        "--predict-at",
        type=_resolutions,
        default=[None],
        metavar="trained|M,...",
        help="resolutions to measure each checkpoint at: 'trained' (as roadseg export writes it: images inside "
        "the training range kept as they are) and/or metres (every image resampled to M, as roadseg export "
        "--predict-at M); one row per checkpoint and resolution (default: trained)",
    )
    p.add_argument(
        "--plain-pixel-size",
        choices=("given", "withheld", "auto"),
        default="given",
        help="with --model: how plain images get their pixel size: the source's, as --pixel-size M (given), none, "
        "as users who give no --pixel-size (withheld: the card's default, so auto where its plain_pixel_size is "
        "auto), or --pixel-size auto (auto); georeferenced ones keep theirs",
    )
    p.add_argument(
        "--average",
        type=_count,
        default=1,
        metavar="N",
        help="measure at each step the mean of the weights of the N kept checkpoints ending there, as roadseg "
        "export --average N (default 1: each checkpoint alone)",
    )
    p.add_argument(
        "--against",
        metavar="OLD_VERSION_DIR",
        help="with --model: measure both the same way and apply the shipping rule (the val mean improves, no source "
        "more than 0.01 below OLD, at most 25 MB); exit status 0 if the new version ships, 1 if not",
    )
    p.add_argument("--shared", default="../shared", help="the shared data folder (for --prepare-vegas)")
    p.add_argument("--vegas", default="var/data/vegas", help="where --prepare-vegas writes the Vegas source")
    p.set_defaults(func=_validate)
