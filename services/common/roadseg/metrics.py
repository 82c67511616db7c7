"""Segmentation metrics on numpy arrays, shared by the trainer, the evaluator and the other services.

Conventions (docs/contracts.md §2): ``truth`` is a uint8 mask where 0 is background, 255 is road and every
other value is *ignore* (nodata, unlabeled); ignored pixels never count in any metric. ``pred`` is a
boolean road mask of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from roadseg.mask_values import BACKGROUND, ROAD  # noqa: F401  (re-exported: metrics.ROAD)


@dataclass(frozen=True)
class Confusion:
    """Pixel counts over the non-ignored pixels. Counts add up, so per-tile results can be summed."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        """Sum two confusions, so per-tile counts add up to a dataset's."""
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred).astype(bool)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        pred, truth = np.squeeze(pred), np.squeeze(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    return pred, truth


def valid_mask(truth: np.ndarray) -> np.ndarray:
    """Pixels that count: exactly 0 or 255."""
    truth = np.asarray(truth)
    return (truth == ROAD) | (truth == BACKGROUND)


def confusion(pred: np.ndarray, truth: np.ndarray) -> Confusion:
    """True/false positives/negatives of ``pred`` against ``truth``, ignoring values other than 0/255."""
    pred, truth = _check(pred, truth)
    road = truth == ROAD
    background = truth == BACKGROUND
    return Confusion(
        tp=int(np.count_nonzero(pred & road)),
        fp=int(np.count_nonzero(pred & background)),
        fn=int(np.count_nonzero(~pred & road)),
        tn=int(np.count_nonzero(~pred & background)),
    )


def _ratio(num: float, den: float) -> float:
    """num/den, with the convention that an empty denominator means a perfect score (nothing to get wrong)."""
    return float(num) / float(den) if den else 1.0


def _as_confusion(pred_or_cm: np.ndarray | Confusion, truth: np.ndarray | None) -> Confusion:
    """Accept either precomputed counts (summed over tiles) or a (pred, truth) pair."""
    if isinstance(pred_or_cm, Confusion):
        return pred_or_cm
    if truth is None:
        raise TypeError("pass a Confusion, or both pred and truth")
    return confusion(pred_or_cm, truth)


def iou_scores(pred_or_cm: np.ndarray | Confusion, truth: np.ndarray | None = None) -> dict[str, float]:
    """IoU of background, of road and their mean (the three numbers the seed project reported).

    Takes ``(pred, truth)`` or a :class:`Confusion` (e.g. summed over a dataset).
    """
    cm = _as_confusion(pred_or_cm, truth)
    road = _ratio(cm.tp, cm.tp + cm.fp + cm.fn)
    background = _ratio(cm.tn, cm.tn + cm.fn + cm.fp)
    return {"iou_background": background, "iou_road": road, "iou_mean": (road + background) / 2}


def precision_recall_f1(pred_or_cm: np.ndarray | Confusion, truth: np.ndarray | None = None) -> dict[str, float]:
    """Pixel precision, recall and F1 of the road class, from ``(pred, truth)`` or a :class:`Confusion`."""
    cm = _as_confusion(pred_or_cm, truth)
    precision = _ratio(cm.tp, cm.tp + cm.fp)
    recall = _ratio(cm.tp, cm.tp + cm.fn)
    f1 = _ratio(2 * cm.tp, 2 * cm.tp + cm.fp + cm.fn)
    return {"precision": precision, "recall": recall, "f1": f1}


def _disk(rho: int) -> np.ndarray:
    yy, xx = np.mgrid[-rho : rho + 1, -rho : rho + 1]
    return (yy * yy + xx * xx) <= rho * rho


def relaxed_counts(pred: np.ndarray, truth: np.ndarray, rho: int = 3) -> dict[str, int]:
    """Counts behind the relaxed metrics, summable over tiles.

    Mnih & Hinton (2010): a predicted road pixel is correct when a true road pixel lies within ``rho``
    pixels (relaxed precision); a true road pixel is found when a predicted one lies within ``rho``
    (relaxed recall). This forgives the few-pixel offsets of OSM-derived labels. Ignored pixels are
    excluded as positions to score, but never count as road.
    """
    pred, truth = _check(pred, truth)
    valid = valid_mask(truth)
    road = truth == ROAD
    footprint = _disk(rho)
    near_truth = ndimage.binary_dilation(road, structure=footprint)
    near_pred = ndimage.binary_dilation(pred & valid, structure=footprint)
    scored_pred = pred & valid
    return {
        "pred_total": int(np.count_nonzero(scored_pred)),
        "pred_matched": int(np.count_nonzero(scored_pred & near_truth)),
        "truth_total": int(np.count_nonzero(road)),
        "truth_matched": int(np.count_nonzero(road & near_pred)),
    }


def relaxed_from_counts(counts: dict[str, int]) -> dict[str, float]:
    """Relaxed precision/recall/F1 from (possibly summed) :func:`relaxed_counts`."""
    precision = _ratio(counts["pred_matched"], counts["pred_total"])
    recall = _ratio(counts["truth_matched"], counts["truth_total"])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"relaxed_precision": precision, "relaxed_recall": recall, "relaxed_f1": f1}


def relaxed_precision_recall_f1(pred: np.ndarray, truth: np.ndarray, rho: int = 3) -> dict[str, float]:
    """Relaxed precision, recall and F1 at tolerance ``rho`` pixels (see :func:`relaxed_counts`)."""
    return relaxed_from_counts(relaxed_counts(pred, truth, rho))


def all_scores(pred: np.ndarray, truth: np.ndarray, rho: int = 3) -> dict[str, float]:
    """Every metric for one prediction: IoUs, P/R/F1 and relaxed P/R/F1."""
    cm = confusion(pred, truth)
    return {**iou_scores(cm), **precision_recall_f1(cm), **relaxed_precision_recall_f1(pred, truth, rho)}
