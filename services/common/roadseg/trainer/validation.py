"""Validation of a training run's history: each kept checkpoint measured on whole val images, per source.

The long run keeps a checkpoint every ``snapshot_every_steps`` (``checkpoints/step-NNNNNN.keras``);
:func:`validate_run` exports each one not measured yet (the serving graph, as ``roadseg export``
would), predicts every image of the validation sources whole through ``roadseg predict``'s path
(:func:`roadseg.trainer.evaluate.evaluate_model`) and scores each source on the output its labels
define, at per-output thresholds chosen on these same val sources (as an export's card does). One
row per checkpoint goes to ``val.csv`` in the run folder; the training log in
``models/roads/README.md`` is made from it.

The Vegas tile joins as a source made from its road lines (:func:`prepare_vegas`): road surface from
each line's lane count, and the APLS of the predicted network against the lines themselves.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from roadseg.errors import InvalidInput, MissingFile
from roadseg.inference.predict import predict_raster
from roadseg.inference.predictor import EmbeddedPredictor
from roadseg.inference.road_graph import road_graph_geojson
from roadseg.storage import storage_from_url

if TYPE_CHECKING:
    from roadseg.trainer.evaluate import PlainPixelSize

log = logging.getLogger(__name__)

#: The result of :func:`validate_run` in the run folder, a row per checkpoint.
VAL_CSV = "val.csv"
#: Default lane width (m) for lines that give a lane count (SpaceNet's ``lane_number``).
LANE_WIDTH_M = 3.7


def load_sources(path: str | Path) -> list[dict]:
    """Validation sources from a YAML file: a list of ``{path, targets, pixel_size_m}`` (or ``{sources: [...]}``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"validation sources file {path} does not exist")
    data = yaml.safe_load(path.read_text())
    sources = data.get("sources") if isinstance(data, dict) else data
    if not isinstance(sources, list) or not sources:
        raise InvalidInput(f"{path} must list validation sources ({{path, targets, pixel_size_m}} each)")
    return sources


def prepare_vegas(tile: str | Path, lines: str | Path, out: str | Path, lane_width_m: float = LANE_WIDTH_M) -> Path:
    """A val source folder from a georeferenced tile and its road lines: image, surface mask, ``source.json``.

    The surface is each line buffered by half its width (``lane_number`` x ``lane_width_m``, else 6 m),
    rasterised as the labeler does; pixels without data (alpha 0) are ignored. The folder also keeps
    the tile's own path, for :func:`vegas_apls`. Written once; an existing folder is reused.
    """
    import geopandas as gpd
    import rasterio
    from PIL import Image
    from rasterio.windows import Window

    from roadseg import raster
    from roadseg.labeler.rasterize import TileGrid, burn, centerline_shapes
    from roadseg.labeler.widths import WidthSpec

    out = Path(out)
    if (out / "source.json").is_file():
        return out
    with rasterio.open(tile) as ds:
        grid = TileGrid.from_dataset(ds)
        rgb, valid = raster.read_rgb_window(ds, Window(0, 0, ds.width, ds.height), raster.compute_stretch(ds))
        pixel_size_m = raster.ground_pixel_size_m(ds)
    frame = gpd.read_file(lines)
    spec = WidthSpec.from_options(width_attr="lane_number", lane_width=lane_width_m)
    surface = burn(centerline_shapes(frame.to_crs(grid.crs), spec, grid), grid, valid)
    stem = Path(tile).stem
    for folder, array in (("images", rgb), ("masks", surface)):
        (out / "val" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(out / "val" / folder / f"{stem}.png")
    declared = {"targets": "surface", "pixel_size_m": pixel_size_m, "tile": str(tile), "lines": str(lines)}
    (out / "source.json").write_text(json.dumps(declared, indent=2) + "\n")
    return out


def vegas_apls(
    model: str | Path,
    tile: str | Path,
    lines: str | Path,
    tta: str | None = None,
    thresholds: dict[str, float] | None = None,
) -> float:
    """APLS of the road network predicted on the georeferenced tile against its road lines (4 m snap).

    ``thresholds`` (per output, as :func:`measure` chooses them) make the masks the network is traced
    from; without them the card's are used. A run's checkpoint has no card thresholds of its own, so
    its APLS means something only at the ones chosen on val.
    """
    import rasterio

    from roadseg.config import get_settings
    from roadseg.model_versions import resolve_savedmodel
    from roadseg.roadnet.apls import AplsParams, apls
    from roadseg.roadnet.io import load_graph

    predictor = EmbeddedPredictor(resolve_savedmodel(model))
    settings = get_settings()
    with tempfile.TemporaryDirectory(prefix="roadseg-apls-") as tmp, rasterio.open(tile) as ds:
        chosen = thresholds or {}
        result = predict_raster(
            ds,
            predictor,
            Path(tmp),
            settings,
            predictor.threshold(chosen.get(predictor.outputs[0])),
            tta=tta,
            centerline_threshold=chosen.get("band"),
        )
        layer = "centerline" if "centerline" in result.files else "mask"
        with rasterio.open(result.files[layer]) as mask:
            roads = road_graph_geojson(mask, settings.graph_max_pixels)
        if roads is None:
            raise InvalidInput(f"{tile} is too large for a road graph")
        proposal = Path(tmp) / "roads.geojson"
        proposal.write_text(json.dumps(roads))
        return float(apls(load_graph(lines), load_graph(proposal), AplsParams(max_snap_m=4.0)).apls)


def measure(
    model: str | Path, sources: Sequence[dict], tta: str | None = None, plain_pixel_size: PlainPixelSize = "given"
) -> dict[str, Any]:
    """Road IoU per source of an exported model, at per-output thresholds chosen on these sources.

    ``plain_pixel_size`` (:data:`~roadseg.trainer.evaluate.PlainPixelSize`): ``withheld`` predicts every plain
    image as a user who gives no ``--pixel-size`` would, ``auto`` as one who gives ``--pixel-size auto``.

    Returns ``{"iou": {source: IoU}, "outputs": {source: output}, "thresholds": {output: t}, "mean": m,
    "apls": {source: APLS}}``; a source prepared by :func:`prepare_vegas` also gets its APLS.
    """
    from roadseg.trainer.evaluate import best_threshold_of, evaluate_model, iou_at, source_of

    reports = {
        Path(source_of(s)[0].path).name: evaluate_model(model, [s], tta=tta, plain_pixel_size=plain_pixel_size)
        for s in sources
    }
    outputs = {name: report["summary"]["outputs"][0] for name, report in reports.items()}
    thresholds = {
        output: best_threshold_of([reports[name] for name, o in outputs.items() if o == output])
        for output in sorted(set(outputs.values()))
    }
    iou = {name: iou_at(report, thresholds[outputs[name]]) for name, report in reports.items()}
    scores: dict[str, Any] = {"iou": iou, "outputs": outputs, "thresholds": thresholds, "apls": {}}
    scores["mean"] = float(np.mean(list(iou.values())))
    for spec in sources:
        folder = Path(source_of(spec)[0].path)
        declared = json.loads((folder / "source.json").read_text()) if (folder / "source.json").is_file() else {}
        if declared.get("tile") and declared.get("lines"):
            scores["apls"][folder.name] = vegas_apls(model, declared["tile"], declared["lines"], tta, thresholds)
    return scores


#: Issue 27's shipping rule: a new version must raise the val mean, lose at most this much road IoU on any
#: source against the version it would replace, and stay this small (its model call, at most 1.3x the old
#: one's, is measured by ``bench/model_call.py --against``: a timing, so not here).
SHIP_MAX_DROP = 0.01
SHIP_MAX_MB = 25.0


def ship_verdict(new: dict[str, Any], old: dict[str, Any], size_mb: float) -> dict[str, Any]:
    """Whether a version measured as ``new`` may replace one measured as ``old`` (both from :func:`measure`).

    Returns ``{"ships": bool, "reasons": [why not, ...], "mean": {"new", "old"}, "sources": {name: {"new",
    "old", "change"}}, "apls": {name: {"new", "old"}}, "size_mb": size_mb}``. Only sources measured for both
    count; a source the old version was not measured on cannot block, one the new version lacks is a reason
    not to ship. APLS is reported, not ruled on: the rule is about road IoU.
    """
    reasons = []
    sources = {}
    for name, before in old["iou"].items():
        if name not in new["iou"]:
            reasons.append(f"{name} was not measured for the new version")
            continue
        after = new["iou"][name]
        sources[name] = {"new": after, "old": before, "change": after - before}
        if after < before - SHIP_MAX_DROP:
            reasons.append(f"{name}: {after:.3f} is {before - after:.3f} below {before:.3f} (at most {SHIP_MAX_DROP})")
    if new["mean"] <= old["mean"]:
        reasons.append(f"val mean {new['mean']:.4f} does not improve on {old['mean']:.4f}")
    if size_mb > SHIP_MAX_MB:
        reasons.append(f"{size_mb:.1f} MB is over {SHIP_MAX_MB:g} MB")
    return {
        "ships": not reasons,
        "reasons": reasons,
        "mean": {"new": new["mean"], "old": old["mean"]},
        "sources": sources,
        "apls": {name: {"new": new["apls"].get(name), "old": value} for name, value in old.get("apls", {}).items()},
        "size_mb": size_mb,
    }


def version_size_mb(version: str | Path) -> float:
    """The size of an exported version on disk (its SavedModel folder and card), in MB (10^6 bytes)."""
    from roadseg.model_versions import resolve_savedmodel

    folder = resolve_savedmodel(version)
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def verdict_table(verdict: dict[str, Any]) -> str:
    """A :func:`ship_verdict` as a Markdown table and a closing line (what ``roadseg validate --against`` prints)."""
    lines = ["| source | new | old | change |", "|---|---|---|---|"]
    lines += [f"| {n} | {s['new']:.4f} | {s['old']:.4f} | {s['change']:+.4f} |" for n, s in verdict["sources"].items()]
    mean = verdict["mean"]
    lines.append(f"| **mean** | {mean['new']:.4f} | {mean['old']:.4f} | {mean['new'] - mean['old']:+.4f} |")
    for name, apls in verdict["apls"].items():
        if apls["new"] is not None:
            lines.append(f"| {name} APLS | {apls['new']:.4f} | {apls['old']:.4f} | {apls['new'] - apls['old']:+.4f} |")
    lines.append("")
    lines.append(f"size {verdict['size_mb']:.1f} MB")
    if verdict["ships"]:
        lines.append(
            f"ships: the val mean improves, no source drops more than {SHIP_MAX_DROP}, size within {SHIP_MAX_MB:g} MB"
        )
        lines.append("(the model call, at most 1.3x the old one's: bench/model_call.py --against OLD)")
    else:
        lines.append("does not ship: " + "; ".join(verdict["reasons"]))
    return "\n".join(lines)


#: ``predict_at`` of a row measured at the resolutions the run trained for (the card's range, as exported).
TRAINED = "trained"


def validate_run(
    run_dir: str,
    sources: Sequence[dict],
    tta: str | None = "none",
    steps: Sequence[int] | None = None,
    predict_at: Sequence[float | None] = (None,),
    average: int = 1,
) -> list[dict]:
    """Measure every kept checkpoint of ``run_dir`` not yet in its ``val.csv`` (or only ``steps``); returns new rows.

    Each row: step, the resolution it was predicted at, how many checkpoints were averaged, the test-time
    augmentation, seconds it took, per-source road IoU and APLS, the val mean, the thresholds. ``predict_at`` lists
    resolutions to measure each checkpoint at: None is the card ``roadseg export`` writes by default (images inside
    the run's ``pixel_size_range_m`` kept as they are), metres the card of ``roadseg export --predict-at M`` (every
    image resampled to M). Where to predict is a choice made on val, like the thresholds: a run that saw fine
    resolutions only as upsampled coarse images may do better on real fine imagery brought to a coarser one.
    ``average`` > 1 measures, for each step, the mean of the weights of the ``average`` kept checkpoints ending
    there (:func:`~roadseg.trainer.checkpoints.load_average`, as ``roadseg export --average``); steps with fewer
    before them are left out. Rows are appended as they are measured, so an interrupted validation keeps what it
    finished.
    """
    from roadseg.trainer.checkpoints import CONFIG, load_average, snapshots, window_of
    from roadseg.trainer.export import export_savedmodel, output_fields, resolution_fields

    storage = storage_from_url(run_dir)
    config = yaml.safe_load(storage.read_text(CONFIG)) if storage.exists(CONFIG) else {}
    tta = tta or "none"
    done = {(int(row["step"]), row["predict_at"], int(row["average"]), row["tta"]) for row in read_rows(run_dir)}
    kept = snapshots(storage)
    if steps is not None and set(steps) - set(kept):
        raise MissingFile(f"no checkpoint of step(s) {sorted(set(steps) - set(kept))} in {run_dir}")
    rows = []
    for step in kept if steps is None else [s for s in kept if s in steps]:
        todo = [m for m in predict_at if (step, _label(m), average, tta) not in done]
        if not todo:
            continue
        try:
            keys = window_of(kept, step, average)
        except MissingFile as exc:
            log.info("step %d left out: %s", step, exc)
            continue
        model = load_average(storage, keys)
        for metres in todo:
            started = time.monotonic()
            card = {
                "name": "validation",
                "version": step,
                "threshold": 0.5,
                "config": config,
                **resolution_fields(config, metres),
            }
            with tempfile.TemporaryDirectory(prefix="roadseg-validate-") as tmp:
                exported = export_savedmodel(model, Path(tmp) / "1", card | output_fields(config), tta)
                scores = measure(exported, sources, tta)
            row = {"step": step, "predict_at": _label(metres), "average": average, "tta": tta}
            row |= {"seconds": round(time.monotonic() - started, 1), "mean_iou": round(scores["mean"], 4)}
            row |= {f"iou:{name}={scores['outputs'][name]}": round(v, 4) for name, v in scores["iou"].items()}
            row |= {f"apls:{name}": round(v, 4) for name, v in scores["apls"].items()}
            row |= {f"threshold:{output}": t for output, t in scores["thresholds"].items()}
            _append_row(run_dir, row)
            log.info("validated step %d: %s", step, row)
            rows.append(row)
    return rows


def _label(predict_at: float | None) -> str:
    """A ``predict_at`` as ``val.csv`` writes it: ``trained`` or metres."""
    return TRAINED if predict_at is None else f"{float(predict_at):g}"


def read_rows(run_dir: str) -> list[dict]:
    """The rows of a run's ``val.csv`` ([] when there is none)."""
    storage = storage_from_url(run_dir)
    if not storage.exists(VAL_CSV):
        return []
    rows = csv.DictReader(io.StringIO(storage.read_text(VAL_CSV)))
    # Rows written before these columns existed were measured as trained, one checkpoint each, tta none.
    before = {"predict_at": TRAINED, "average": "1", "tta": "none"}
    return [row | {key: row.get(key) or value for key, value in before.items()} for row in rows]


def _append_row(run_dir: str, row: dict) -> None:
    """Add a row to ``val.csv``, widening the header when a row brings new columns (written atomically)."""
    storage = storage_from_url(run_dir)
    rows = [*read_rows(run_dir), {k: str(v) for k, v in row.items()}]
    columns = list(dict.fromkeys(["step", "predict_at", "average", "tta", *(k for r in rows for k in r)]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(VAL_CSV, text.getvalue())


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (steps down, figures across), for the training log."""
    if not rows:
        return "(no validated checkpoints)"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
