"""``roadseg evaluate``: measure the *exported* SavedModel (what is served) on labeled data.

Every figure pools pixel counts over the whole dataset (not a mean of per-tile scores, which tiles
without roads would distort). Probabilities are histogrammed per class so the whole threshold sweep
comes from one prediction pass. Ignored mask pixels (not 0/255) never count.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from roadseg import metrics
from roadseg.errors import MissingFile
from roadseg.trainer.export import read_card, resolve_savedmodel

log = logging.getLogger(__name__)

BINS = 100
WORST_TILES = 4


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
    road = sum(np.asarray(r["histograms"]["road"]) for r in reports)
    background = sum(np.asarray(r["histograms"]["background"]) for r in reports)
    return max(sweep(road, background), key=lambda row: row["f1"])["threshold"]


def _overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Image with true positives green, false positives red, missed road blue."""
    out = image.astype(np.float32) * 0.6
    road = truth == metrics.ROAD
    colors = {(0, 255, 0): pred & road, (255, 0, 0): pred & (truth == metrics.BACKGROUND), (0, 80, 255): ~pred & road}
    for color, where in colors.items():
        out[where] = np.asarray(color, np.float32)
    return out.astype(np.uint8)


def _plot(path: Path, rows: list[dict], threshold: float, worst: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(worst), figsize=(4 * (1 + len(worst)), 4.2))
    axes = np.atleast_1d(axes)
    axes[0].plot([r["recall"] for r in rows], [r["precision"] for r in rows], lw=2)
    chosen = min(rows, key=lambda r: abs(r["threshold"] - threshold))
    axes[0].plot(chosen["recall"], chosen["precision"], "o", label=f"threshold {threshold:.2f}")
    axes[0].set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1), title="road precision-recall")
    axes[0].legend(loc="lower left")
    for ax, tile in zip(axes[1:], worst, strict=True):
        ax.imshow(tile["overlay"])
        ax.set_title(f"{tile['name']}\nroad IoU {tile['iou_road']:.2f}", fontsize=9)
        ax.axis("off")
    fig.suptitle("green: found road, red: false road, blue: missed road", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate_model(
    model: str | Path,
    data: list[str],
    splits: list[str] = ("val",),
    out: str | Path | None = None,
    rho: int = 3,
    threshold: float | None = None,
) -> dict:
    """Predict every example of ``splits`` of each ``data`` folder with the SavedModel and score it.

    ``threshold`` defaults to the model card's, else 0.5. Returns ``{"summary", "histograms", "tiles",
    "thresholds"}``; with ``out`` also writes report.json, tiles.csv, thresholds.csv and report.png.
    """
    with tempfile.TemporaryDirectory(prefix="roadseg-eval-") as cache:
        return _evaluate(model, data, splits, out, rho, threshold, Path(cache))


def _evaluate(model, data, splits, out, rho: int, threshold: float | None, cache: Path) -> dict:
    """The evaluation itself; ``cache`` holds local copies of data given as storage URLs."""
    import tensorflow as tf

    from roadseg.trainer.data import Source, iter_examples

    path = resolve_savedmodel(model)
    card = read_card(path)
    if threshold is None:
        threshold = float(card.get("threshold", 0.5))
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]

    total = metrics.Confusion()
    relaxed = {"pred_total": 0, "pred_matched": 0, "truth_total": 0, "truth_matched": 0}
    road_hist, bg_hist = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    tiles, worst = [], []
    for folder in data:
        source = Source(str(folder)).localized(cache)
        for split in splits:
            examples = iter_examples(source, split)
            for name, image, truth in tqdm(examples, desc=f"{Path(folder).name}:{split}", unit="tile", disable=None):
                prob = serve(images=tf.convert_to_tensor(image[None]))["probabilities"].numpy()[0, ..., 0]
                pred = prob >= threshold
                cm = metrics.confusion(pred, truth)
                counts = metrics.relaxed_counts(pred, truth, rho)
                total = total + cm
                relaxed = {k: relaxed[k] + counts[k] for k in relaxed}
                hists = _histograms(prob, truth)
                road_hist += hists[0]
                bg_hist += hists[1]
                valid = int(np.count_nonzero(metrics.valid_mask(truth)))
                row = {
                    "name": name,
                    "data": Path(folder).name,
                    "split": split,
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

    rows = sweep(road_hist, bg_hist)
    best = max(rows, key=lambda r: r["f1"])
    summary = {
        "model": str(path),
        "data": [str(d) for d in data],
        "splits": list(splits),
        "tiles": len(tiles),
        "threshold": threshold,
        **metrics.iou_scores(total),
        **metrics.precision_recall_f1(total),
        "rho": rho,
        **metrics.relaxed_from_counts(relaxed),
        "best_threshold": best["threshold"],
        "best_threshold_f1": best["f1"],
        "best_threshold_iou_road": best["iou_road"],
    }
    report = {
        "summary": summary,
        "histograms": {"road": road_hist.tolist(), "background": bg_hist.tolist()},
        "tiles": tiles,
        "thresholds": rows,
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
