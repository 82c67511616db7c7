"""``roadseg evaluate``: measure the *exported* SavedModel (what is served) on labeled data.

Whole images go through the prediction path users run (sliding windows, blending, the served graph's
test-time augmentation), so full 1500 px tiles are measured the way ``roadseg predict`` sees them.
Every figure pools pixel counts over a dataset (not a mean of per-tile scores, which tiles without
roads would distort); each data source is also scored alone. Probabilities are histogrammed per class
so the whole threshold sweep comes from one prediction pass. Ignored mask pixels (not 0/255) never count.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from tqdm import tqdm

from roadseg import metrics
from roadseg.errors import InvalidInput, MissingFile
from roadseg.inference.predict import predict_raster
from roadseg.inference.predictor import EmbeddedPredictor, Predictor
from roadseg.model_versions import resolve_savedmodel
from roadseg.pixel_size import AUTO, PixelSize
from roadseg.trainer import TARGETS

if TYPE_CHECKING:
    from roadseg.config import Settings
    from roadseg.trainer.data import Source

log = logging.getLogger(__name__)

BINS = 100
#: What a data source can be scored on (``PATH=OUTPUT``): a two-output model's outputs, or a one-output model's.
OUTPUT_NAMES = (*TARGETS, "road")
WORST_TILES = 4
#: How a source's plain images get their pixel size: the source's (as ``--pixel-size``), none, or ``auto``.
PlainPixelSize = Literal["given", "withheld", "auto"]


def _histograms(prob: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin counts of road and background probabilities (bin k holds k/100 <= p < (k+1)/100)."""
    bins = np.clip((prob * BINS).astype(np.int64), 0, BINS - 1)
    road = np.bincount(bins[truth == metrics.ROAD], minlength=BINS)
    background = np.bincount(bins[truth == metrics.BACKGROUND], minlength=BINS)
    return road, background


def sweep(road_hist: np.ndarray, background_hist: np.ndarray) -> list[dict[str, float]]:
    """Precision, recall, F1 and road IoU at thresholds 0.01..0.99 (pred = probability >= threshold)."""
    tp_at = np.cumsum(road_hist[::-1])[::-1]
    fp_at = np.cumsum(background_hist[::-1])[::-1]
    total_road, total_bg = int(road_hist.sum()), int(background_hist.sum())
    rows = []
    for k in range(1, BINS):
        tp, fp = int(tp_at[k]), int(fp_at[k])
        cm = metrics.Confusion(tp=tp, fp=fp, fn=total_road - tp, tn=total_bg - fp)
        rows.append({"threshold": k / BINS, **metrics.precision_recall_f1(cm), **metrics.iou_scores(cm)})
    return rows


def best_threshold_of(reports: list[dict]) -> float:
    """Best-F1 threshold over the pooled histograms of several reports."""
    road = np.sum([r["histograms"]["road"] for r in reports], axis=0)
    background = np.sum([r["histograms"]["background"] for r in reports], axis=0)
    return max(sweep(road, background), key=lambda row: row["f1"])["threshold"]


def iou_at(report: dict, threshold: float) -> float:
    """Road IoU of a report's images at another threshold (from its histograms, no new prediction)."""
    rows = sweep(np.asarray(report["histograms"]["road"]), np.asarray(report["histograms"]["background"]))
    return min(rows, key=lambda row: abs(row["threshold"] - threshold))["iou_road"]


def _overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Image with true positives green, false positives red, missed road blue."""
    out = image.astype(np.float32) * 0.6
    road = truth == metrics.ROAD
    colors = {(0, 255, 0): pred & road, (255, 0, 0): pred & (truth == metrics.BACKGROUND), (0, 80, 255): ~pred & road}
    for color, where in colors.items():
        out[where] = np.asarray(color, np.float32)
    return out.astype(np.uint8)


def _plot(path: Path, rows: list[dict], threshold: float | None, worst: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(worst), figsize=(4 * (1 + len(worst)), 4.2))
    axes = np.atleast_1d(axes)
    axes[0].plot([r["recall"] for r in rows], [r["precision"] for r in rows], lw=2)
    if threshold is not None:
        chosen = min(rows, key=lambda r: abs(r["threshold"] - threshold))
        axes[0].plot(chosen["recall"], chosen["precision"], "o", label=f"threshold {threshold:.2f}")
    axes[0].set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1), title="road precision-recall")
    if threshold is not None:
        axes[0].legend(loc="lower left")
    for ax, tile in zip(axes[1:], worst, strict=True):
        ax.imshow(tile["overlay"])
        ax.set_title(f"{tile['name']}\nroad IoU {tile['iou_road']:.2f}", fontsize=9)
        ax.axis("off")
    fig.suptitle("green: found road, red: false road, blue: missed road", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class _Tally:
    """Pooled pixel counts of one group of images (a source, or all of them)."""

    def __init__(self) -> None:
        self.confusion = metrics.Confusion()
        self.relaxed = {"pred_total": 0, "pred_matched": 0, "truth_total": 0, "truth_matched": 0}
        self.road_hist = np.zeros(BINS, np.int64)
        self.background_hist = np.zeros(BINS, np.int64)
        self.tiles = 0

    def add(self, cm: metrics.Confusion, relaxed: dict[str, int], hists: tuple[np.ndarray, np.ndarray]) -> None:
        self.confusion = self.confusion + cm
        self.relaxed = {k: self.relaxed[k] + relaxed[k] for k in self.relaxed}
        self.road_hist += hists[0]
        self.background_hist += hists[1]
        self.tiles += 1

    def summary(self, threshold: float | None, rho: int) -> dict:
        """Scores at ``threshold``, plus the best-F1 threshold of this group's own sweep."""
        best = max(sweep(self.road_hist, self.background_hist), key=lambda r: r["f1"])
        return {
            "tiles": self.tiles,
            "threshold": threshold,
            **metrics.iou_scores(self.confusion),
            **metrics.precision_recall_f1(self.confusion),
            "rho": rho,
            **metrics.relaxed_from_counts(self.relaxed),
            "best_threshold": best["threshold"],
            "best_threshold_f1": best["f1"],
            "best_threshold_iou_road": best["iou_road"],
        }


def predict_image(
    image: np.ndarray,
    predictor: Predictor,
    settings: Settings,
    work: Path,
    tta: str | None = None,
    pixel_size_m: PixelSize = None,
) -> np.ndarray:
    """Probabilities float32 [H, W, C] (a channel per model output) of one RGB image through ``roadseg predict``'s path.

    The image goes through :func:`roadseg.inference.predict.predict_raster` as an in-memory,
    non-georeferenced raster (like a PNG a user uploads): the same reading, sliding windows, Hann
    blending, batch size and test-time augmentation as the CLI, the API and the page, so the
    figures describe what users get on full images of any size.
    """
    import rasterio
    from rasterio.io import MemoryFile

    height, width = image.shape[:2]
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8"}
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(np.moveaxis(image, -1, 0))
        with memory.open() as ds:
            result = predict_raster(ds, predictor, work, settings, threshold=0.5, tta=tta, pixel_size_m=pixel_size_m)
    layers = [name for name in ("probability", "centerline_probability") if name in result.files]
    channels = []
    for name in layers:
        with rasterio.open(result.files[name]) as probabilities:
            channels.append(probabilities.read(1))
    return np.stack(channels, axis=-1)


def split_output(spec: str) -> tuple[str, str | None]:
    """``PATH=OUTPUT`` -> (PATH, OUTPUT); a plain ``PATH`` -> (PATH, None). OUTPUT: surface, band or road."""
    path, sep, output = str(spec).rpartition("=")
    if not sep:
        return str(spec), None
    if output not in OUTPUT_NAMES:
        raise InvalidInput(f"{spec}: the output after '=' must be one of {', '.join(OUTPUT_NAMES)}")
    return path, output


def scored_output(predictor: Predictor, source: Source, output: str | None) -> str:
    """Which of the model's outputs a source is scored on: ``output`` if given, else the one its masks hold.

    A source's ``targets`` (or its ``source.json``) say what its masks are: "band" sources score the
    centreline band, "surface" sources the road surface ("both": the band, from ``masks/``). A
    single-output model has only "road", which is scored against whatever the source holds.
    """
    wanted = output or {"surface": "surface"}.get(source.declared().targets or "band", "band")
    outputs = predictor.outputs
    if wanted not in outputs and outputs != ["road"]:
        raise InvalidInput(f"the model has no {wanted!r} output (it has {', '.join(outputs)})")
    return wanted if wanted in outputs else "road"


def evaluate_model(
    model: str | Path,
    data: Sequence[str | dict],
    splits: Sequence[str] = ("val",),
    out: str | Path | None = None,
    rho: int = 3,
    threshold: float | None = None,
    tta: str | None = None,
    output: str | None = None,
    plain_pixel_size: PlainPixelSize = "given",
) -> dict:
    """Predict every example of ``splits`` of each ``data`` folder with the SavedModel and score it.

    ``data`` items are folders (``PATH`` or ``PATH=OUTPUT``) or source mappings (``{path, targets,
    pixel_size_m}``, as in a training config). Each source is scored on one output
    (:func:`scored_output`: the ``=OUTPUT``, else ``output``, else what its masks hold), at that output's
    threshold; its summary names the output. Images are plain arrays, so a source's ``pixel_size_m`` is
    handed to the prediction as a user's ``--pixel-size`` would be (``plain_pixel_size`` ``given``), or
    not (``withheld``: how a model does on images of unknown resolution), or ``auto`` in its place (the
    model chooses the scale, :mod:`roadseg.inference.scale`).

    Images are predicted whole, as ``roadseg predict`` does (:func:`predict_image`), with the window,
    overlap and batch of the settings (``ROADSEG_PREDICT_*``). ``threshold`` defaults to the model
    card's, else 0.5. Returns ``{"summary", "sources", "histograms", "tiles", "thresholds"}``:
    ``sources`` scores each data folder alone, and with several folders the summary adds
    ``mean_source_iou_road``, the mean of their road IoUs (every source counts the same, whatever
    its size). With ``out`` also writes report.json, tiles.csv, thresholds.csv and report.png.
    ``tta`` asks for another test-time augmentation than the card's, as a request can.
    """
    with tempfile.TemporaryDirectory(prefix="roadseg-eval-") as cache:
        return _evaluate(model, data, splits, out, rho, threshold, Path(cache), tta, output, plain_pixel_size)


def source_of(spec: str | dict) -> tuple[Source, str | None]:
    """(source with its ``source.json`` defaults, the output named by ``=OUTPUT``) of a data item."""
    from roadseg.trainer.data import Source

    if isinstance(spec, dict):
        return Source.parse(spec).declared(), None
    path, named = split_output(spec)
    return Source(path).declared(), named


def _evaluate(
    model: str | Path,
    data: Sequence[str | dict],
    splits: Sequence[str],
    out: str | Path | None,
    rho: int,
    threshold: float | None,
    cache: Path,
    tta: str | None,
    output: str | None,
    plain_pixel_size: PlainPixelSize,
) -> dict:
    """The evaluation itself; ``cache`` holds local copies of data and the prediction rasters."""
    from roadseg.config import get_settings
    from roadseg.trainer.data import iter_examples

    path = resolve_savedmodel(model)
    predictor = EmbeddedPredictor(path)
    settings = get_settings()
    work = cache / "predictions"
    work.mkdir()

    total, per_source = _Tally(), dict[str, _Tally]()
    tiles, worst = [], []
    scored: dict[str, tuple[str, float]] = {}
    for spec in data:
        source, named = source_of(spec)
        folder = source.path
        pixel_size_m = {"given": source.pixel_size_m, "withheld": None, "auto": AUTO}[plain_pixel_size]
        source = source.localized(cache)
        scored_as = scored_output(predictor, source, named or output)
        cut = predictor.threshold(threshold, scored_as)
        channel = predictor.outputs.index(scored_as) if scored_as in predictor.outputs else 0
        scored[Path(folder).name] = (scored_as, cut)
        tally = per_source.setdefault(Path(folder).name, _Tally())
        for split in splits:
            examples = iter_examples(source, split)
            for name, image, truth in tqdm(examples, desc=f"{Path(folder).name}:{split}", unit="image", disable=None):
                prob = predict_image(image, predictor, settings, work, tta, pixel_size_m)[..., channel]
                pred = prob >= cut
                cm = metrics.confusion(pred, truth)
                counts = metrics.relaxed_counts(pred, truth, rho)
                hists = _histograms(prob, truth)
                total.add(cm, counts, hists)
                tally.add(cm, counts, hists)
                valid = int(np.count_nonzero(metrics.valid_mask(truth)))
                row = {
                    "name": name,
                    "data": Path(folder).name,
                    "output": scored_as,
                    "split": split,
                    "height": image.shape[0],
                    "width": image.shape[1],
                    "road_fraction": round((cm.tp + cm.fn) / valid, 5) if valid else 0.0,
                    **{k: round(v, 5) for k, v in metrics.iou_scores(cm).items()},
                    **{k: round(v, 5) for k, v in metrics.precision_recall_f1(cm).items()},
                    **{k: round(v, 5) for k, v in metrics.relaxed_from_counts(counts).items()},
                }
                tiles.append(row)
                if cm.tp + cm.fn:
                    worst.append({"name": name, "iou_road": row["iou_road"], "overlay": _overlay(image, pred, truth)})
                    worst = sorted(worst, key=lambda t: t["iou_road"])[:WORST_TILES]
    if not tiles:
        raise MissingFile(f"no examples in {data} for splits {list(splits)}")

    sources = {
        name: {"output": scored[name][0], **tally.summary(scored[name][1], rho)} for name, tally in per_source.items()
    }
    # Pooled over sources: one threshold when they share it, else none (each source's is in its own summary).
    cuts = {cut for _, cut in scored.values()}
    summary = {
        "model": str(path),
        "data": [str(source_of(d)[0].path) for d in data],
        "splits": list(splits),
        "window": settings.predict_window,
        "overlap": settings.predict_overlap,
        "tta": tta or predictor.card.get("tta") or "none",
        "outputs": sorted({o for o, _ in scored.values()}),
        **total.summary(cuts.pop() if len(cuts) == 1 else None, rho),
    }
    if len(sources) > 1:
        summary["mean_source_iou_road"] = float(np.mean([s["iou_road"] for s in sources.values()]))
    report = {
        "summary": summary,
        "sources": sources,
        "histograms": {"road": total.road_hist.tolist(), "background": total.background_hist.tolist()},
        "tiles": tiles,
        "thresholds": sweep(total.road_hist, total.background_hist),
    }
    if out is not None:
        _write_report(Path(out), report, worst)
    return report


def _write_report(out: Path, report: dict, worst: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, rows in (("tiles.csv", report["tiles"]), ("thresholds.csv", report["thresholds"])):
        with open(out / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    _plot(out / "report.png", report["thresholds"], report["summary"]["threshold"], worst)
    log.info("wrote evaluation report to %s", out)
