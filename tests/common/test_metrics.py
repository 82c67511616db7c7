"""roadseg.metrics against small arrays whose scores are worked out by hand."""

import numpy as np
import pytest
from roadseg import metrics

# pred vs truth, pixel by pixel (127 = ignore):
#   (0,0) road/pred -> TP   (0,1) bg/pred -> FP   (0,2) bg/none -> TN
#   (1,0) road/none -> FN   (1,1) ignore/pred -> skipped   (1,2) road/none -> FN
PRED = np.array([[1, 1, 0], [0, 1, 0]], dtype=bool)
TRUTH = np.array([[255, 0, 0], [255, 127, 255]], dtype=np.uint8)


def test_confusion_skips_ignored_pixels():
    assert metrics.confusion(PRED, TRUTH) == metrics.Confusion(tp=1, fp=1, fn=2, tn=1)


def test_iou_and_f1_by_hand():
    iou = metrics.iou_scores(PRED, TRUTH)
    assert iou["iou_road"] == pytest.approx(1 / 4)  # tp / (tp + fp + fn)
    assert iou["iou_background"] == pytest.approx(1 / 4)  # tn / (tn + fn + fp)
    assert iou["iou_mean"] == pytest.approx(1 / 4)
    prf = metrics.precision_recall_f1(metrics.confusion(PRED, TRUTH))
    assert prf == pytest.approx({"precision": 1 / 2, "recall": 1 / 3, "f1": 2 * (1 / 6) / (5 / 6)})


def test_confusions_add_up_over_tiles():
    total = metrics.confusion(PRED, TRUTH) + metrics.confusion(~PRED, TRUTH)
    assert total == metrics.Confusion(tp=3, fp=2, fn=3, tn=2)


def test_empty_road_is_perfect_when_nothing_predicted():
    truth = np.zeros((4, 4), np.uint8)
    assert metrics.iou_scores(np.zeros((4, 4), bool), truth)["iou_road"] == 1.0
    assert metrics.iou_scores(np.ones((4, 4), bool), truth)["iou_road"] == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        metrics.confusion(np.zeros((3, 3), bool), np.zeros((3, 4), np.uint8))


def _column(x: int, size: int = 11) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[:, x] = True
    return mask


def test_relaxed_metrics_forgive_small_offsets():
    truth = np.where(_column(5), 255, 0).astype(np.uint8)
    shifted_by_2 = _column(7)
    assert metrics.relaxed_precision_recall_f1(shifted_by_2, truth, rho=3) == pytest.approx(
        {"relaxed_precision": 1.0, "relaxed_recall": 1.0, "relaxed_f1": 1.0}
    )
    # The strict metrics see no overlap at all, and rho=1 does not reach 2 px.
    assert metrics.precision_recall_f1(shifted_by_2, truth)["f1"] == 0.0
    assert metrics.relaxed_precision_recall_f1(shifted_by_2, truth, rho=1)["relaxed_f1"] == 0.0
    assert metrics.relaxed_precision_recall_f1(_column(9), truth, rho=3)["relaxed_f1"] == 0.0


def test_relaxed_metrics_by_hand_with_ignore():
    truth = np.where(_column(5), 255, 0).astype(np.uint8)
    truth[:, 10] = 127  # an ignored strip: predictions there count neither way
    pred = _column(5) | _column(10)
    pred[:, 0] = True  # 11 false positives, 5 px from the road
    counts = metrics.relaxed_counts(pred, truth, rho=3)
    assert counts == {"pred_total": 22, "pred_matched": 11, "truth_total": 11, "truth_matched": 11}
    scores = metrics.relaxed_from_counts(counts)
    assert scores["relaxed_precision"] == pytest.approx(0.5)
    assert scores["relaxed_recall"] == pytest.approx(1.0)
    assert scores["relaxed_f1"] == pytest.approx(2 / 3)


def test_all_scores_has_every_figure():
    scores = metrics.all_scores(PRED, TRUTH)
    # rho = 3 reaches across the whole 2 x 3 array: both scored predictions (the ignored one is not) lie near
    # a road pixel and all 3 road pixels near a prediction.
    relaxed = {"relaxed_precision": 1.0, "relaxed_recall": 1.0, "relaxed_f1": 1.0}
    iou = {"iou_background": 1 / 4, "iou_road": 1 / 4, "iou_mean": 1 / 4}
    assert scores == pytest.approx({**iou, "precision": 1 / 2, "recall": 1 / 3, "f1": 2 / 5, **relaxed})
    counts = {"pred_total": 2, "pred_matched": 2, "truth_total": 3, "truth_matched": 3}
    assert metrics.relaxed_counts(PRED, TRUTH, rho=3) == counts
