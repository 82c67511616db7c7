"""Losses and a streaming metric for thin, rare roads, all skipping ignored pixels (mask not 0/255).

Roads cover ~5% of pixels, so plain BCE lets a model win by predicting background; soft Dice
rewards overlap with the road class directly, and the Lovasz hinge (Berman et al. 2018) is a convex
surrogate of the road IoU itself, best used to fine-tune a model first trained with BCE + Dice.
``y_true`` is the raw mask (0, 255, ignore values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import ops

from roadseg.trainer import LOSSES, TARGETS

if TYPE_CHECKING:
    # Keras runs on TensorFlow here, so its tensors are TensorFlow's (to mypy Any: TensorFlow ships no types).
    import tensorflow as tf


def _targets(y_true: tf.Tensor, dtype: str = "float32") -> tuple[tf.Tensor, tf.Tensor]:
    """(road target in {0,1}, valid weight in {0,1}) from a raw mask."""
    y_true = ops.cast(y_true, "float32")
    road = ops.cast(ops.equal(y_true, 255.0), dtype)
    valid = ops.cast(ops.logical_or(ops.equal(y_true, 255.0), ops.equal(y_true, 0.0)), dtype)
    return road, valid


def masked_bce(y_true: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy on logits, averaged over valid pixels only."""
    road, valid = _targets(y_true)
    logits = ops.cast(logits, "float32")
    per_pixel = ops.maximum(logits, 0.0) - logits * road + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(per_pixel * valid) / ops.maximum(ops.sum(valid), 1.0)


def _columns(x: tf.Tensor) -> tf.Tensor:
    """``x`` as [pixels, outputs]: an image batch [N, H, W, C] by its channels, anything else as one output."""
    channels = x.shape[-1] if len(x.shape) == 4 else 1
    return ops.reshape(x, (-1, channels))


def masked_soft_dice(y_true: tf.Tensor, logits: tf.Tensor, smooth: float = 1.0) -> tf.Tensor:
    """Sum over outputs (channels) of 1 - soft Dice of the road class over the batch, valid pixels only.

    Per channel: a two-output model's surface and band are different road definitions, and a batch
    without any valid pixel of one (all its crops from sources without that target) adds a constant.
    """
    road, valid = _targets(_columns(y_true))
    prob = ops.sigmoid(ops.cast(_columns(logits), "float32")) * valid
    intersection = ops.sum(prob * road, axis=0)
    dice = (2.0 * intersection + smooth) / (ops.sum(prob, axis=0) + ops.sum(road, axis=0) + smooth)
    return ops.sum(1.0 - dice)


def _lovasz_gradient(road_sorted: tf.Tensor) -> tf.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss for errors sorted in decreasing order."""
    roads = ops.sum(road_sorted)
    intersection = roads - ops.cumsum(road_sorted)
    union = roads + ops.cumsum(1.0 - road_sorted)
    jaccard = 1.0 - intersection / union
    return ops.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)


def masked_lovasz_hinge(y_true: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Sum over outputs (channels) of the Lovasz hinge of the road class over the batch (:func:`_lovasz_channel`)."""
    y_true, logits = _columns(y_true), _columns(logits)
    return sum(_lovasz_channel(y_true[:, k], logits[:, k]) for k in range(logits.shape[-1]))


def _lovasz_channel(y_true: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Lovasz hinge of the road class over the whole batch, valid pixels only.

    Ignored pixels get a negative error below every valid one, so they sort last and their hinge is
    zero: the loss equals the Lovasz hinge of the valid pixels alone, without dynamic shapes.
    """
    road, valid = _targets(y_true)
    road = ops.reshape(road, (-1,))
    valid = ops.reshape(valid, (-1,))
    logits = ops.reshape(ops.cast(logits, "float32"), (-1,))
    errors = 1.0 - logits * (2.0 * road - 1.0)
    errors = ops.where(valid > 0, errors, ops.minimum(ops.min(errors), 0.0) - 1.0)
    order = ops.argsort(-errors)
    errors_sorted = ops.take(errors, order)
    gradient = ops.stop_gradient(_lovasz_gradient(ops.take(road, order)))
    return ops.sum(ops.relu(errors_sorted) * gradient)


@keras.saving.register_keras_serializable(package="roadseg")
class RoadLoss(keras.losses.Loss):
    """One of :data:`LOSSES` (``a_b`` is the sum of both) on road logits with ignore handling."""

    def __init__(self, kind: str = "bce_dice", name: str = "road_loss", **kwargs: object) -> None:
        """``kind`` is one of :data:`LOSSES`; an unknown one fails here, not in the middle of training."""
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")
        super().__init__(name=name, **kwargs)
        self.kind = kind

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        """Sum of the losses named in ``kind``, for raw masks ``y_true`` and road logits ``y_pred``."""
        loss = 0.0
        parts = self.kind.split("_")
        if "bce" in parts:
            loss = loss + masked_bce(y_true, y_pred)
        if "dice" in parts:
            loss = loss + masked_soft_dice(y_true, y_pred)
        if "lovasz" in parts:
            loss = loss + masked_lovasz_hinge(y_true, y_pred)
        return loss

    def get_config(self) -> dict:
        """The config with ``kind``, so a saved model reloads with the same loss."""
        return {**super().get_config(), "kind": self.kind}


@keras.saving.register_keras_serializable(package="roadseg")
class RoadIoU(keras.metrics.Metric):
    """Road IoU at a probability threshold, accumulated over an epoch, valid pixels only."""

    def __init__(self, threshold: float = 0.5, name: str = "road_iou", channel: int = 0, **kwargs: object) -> None:
        """Count true positives, false positives and false negatives of output ``channel`` at ``threshold``."""
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.channel = channel
        self.tp = self.add_variable(shape=(), initializer="zeros", name="tp")
        self.fp = self.add_variable(shape=(), initializer="zeros", name="fp")
        self.fn = self.add_variable(shape=(), initializer="zeros", name="fn")

    def update_state(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None) -> None:
        """Add a batch's counts (sigmoid of the logits against the threshold); ``sample_weight`` is ignored."""
        k = self.channel
        road, valid = _targets(y_true[..., k : k + 1])
        pred = ops.cast(ops.sigmoid(ops.cast(y_pred[..., k : k + 1], "float32")) > self.threshold, "float32") * valid
        self.tp.assign_add(ops.sum(pred * road))
        self.fp.assign_add(ops.sum(pred * (1.0 - road) * valid))
        self.fn.assign_add(ops.sum((1.0 - pred) * road))

    def result(self) -> tf.Tensor:
        """TP / (TP + FP + FN) over everything seen since the last reset; 0 when nothing was counted."""
        return self.tp / ops.maximum(self.tp + self.fp + self.fn, 1.0)

    def reset_state(self) -> None:
        """Zero the counts (Keras calls this at the start of each epoch and evaluation)."""
        for var in (self.tp, self.fp, self.fn):
            var.assign(0.0)

    def get_config(self) -> dict:
        """The config with ``threshold`` and ``channel``, so a saved model reloads with the same metric."""
        return {**super().get_config(), "threshold": self.threshold, "channel": self.channel}


def road_metrics(outputs: int) -> list[RoadIoU]:
    """One :class:`RoadIoU` per output: ``road_iou``, or ``surface_iou`` and ``band_iou``."""
    if outputs == 1:
        return [RoadIoU()]
    return [RoadIoU(name=f"{target}_iou", channel=k) for k, target in enumerate(TARGETS)]
