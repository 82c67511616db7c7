"""Training losses against hand-computed values, with ignored pixels (mask neither 0 nor 255)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from roadseg.trainer.losses import RoadLoss, masked_bce, masked_lovasz_hinge, masked_soft_dice  # noqa: E402


def _value(fn, mask, logits) -> float:
    return float(keras.ops.convert_to_numpy(fn(np.array(mask, "uint8"), np.array(logits, "float32"))))


def test_lovasz_hinge_matches_the_hand_computed_value():
    # signs (+1 road, -1 background) -> errors 1 - logit * sign = [-1, 0, 1.5]; sorted down: 1.5 (bg),
    # 0 (bg), -1 (road); Jaccard of each prefix: 1 - [1/2, 1/3, 0/3] -> gradient [1/2, 1/6, 1/3];
    # loss = relu([1.5, 0, -1]) . gradient = 0.75
    assert _value(masked_lovasz_hinge, [255, 0, 0], [2.0, -1.0, 0.5]) == pytest.approx(0.75)


def test_lovasz_hinge_skips_ignored_pixels_wherever_they_sort():
    for ignored_logit in (-50.0, 0.0, 50.0):
        mask = [[255, 0], [0, 7]]
        logits = [[2.0, -1.0], [0.5, ignored_logit]]
        assert _value(masked_lovasz_hinge, mask, logits) == pytest.approx(0.75)


def test_every_loss_is_zero_on_a_fully_ignored_batch():
    for loss in (masked_bce, masked_soft_dice, masked_lovasz_hinge):
        assert _value(loss, [7, 7, 127], [9.0, 5.0, 3.0]) == pytest.approx(0.0)


def test_lovasz_hinge_is_zero_with_a_margin_and_grows_with_mistakes():
    mask = [255, 255, 0, 0]
    assert _value(masked_lovasz_hinge, mask, [3.0, 1.0, -1.0, -2.0]) == pytest.approx(0.0)
    worse = [_value(masked_lovasz_hinge, mask, [3.0, 1.0 - d, -1.0 + d, -2.0]) for d in (0.5, 1.0, 2.0)]
    assert 0 < worse[0] < worse[1] < worse[2]


def test_bce_and_dice_match_hand_computed_values_and_skip_ignored_pixels():
    mask, logits = [255, 0, 9], [0.0, 0.0, 5.0]
    assert _value(masked_bce, mask, logits) == pytest.approx(np.log(2.0))
    # probabilities 0.5, 0.5 (the ignored one counts as 0): 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)
    assert _value(masked_soft_dice, mask, logits) == pytest.approx(1 - 2.0 / 3.0)


@pytest.mark.parametrize("kind", ["bce", "dice", "bce_dice", "lovasz", "bce_lovasz"])
def test_road_loss_sums_its_parts(kind):
    mask = np.array([[[255], [0]], [[0], [255]]], "uint8")[None]
    logits = np.array([[[1.5], [-0.5]], [[0.7], [-0.2]]], "float32")[None]
    parts = {"bce": masked_bce, "dice": masked_soft_dice, "lovasz": masked_lovasz_hinge}
    expected = sum(_value(parts[name], mask, logits) for name in kind.split("_"))
    assert float(RoadLoss(kind)(mask, logits)) == pytest.approx(expected, rel=1e-5)


def test_lovasz_trains_a_model_without_dynamic_shapes():
    """Compiled (graph-mode) fit steps run and learn a separable toy task: road where channel 0 > 0."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    y = ((x[..., :1] > 0) * 255).astype("uint8")
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(1, 1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=RoadLoss("bce_lovasz"), jit_compile=False)
    history = model.fit(x, y, epochs=40, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    predicted = keras.ops.convert_to_numpy(model(x)) > 0
    assert (predicted == (y > 0)).mean() > 0.95
