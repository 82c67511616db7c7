"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

Warm-up keeps the freshly initialised ASPP/decoder from wrecking the pretrained backbone in the
first steps; cosine decay ends training at a small rate so the last checkpoint is a good one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
from keras import ops

if TYPE_CHECKING:
    import tensorflow as tf


@keras.saving.register_keras_serializable(package="roadseg")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """``peak * (step + 1) / warmup`` for ``warmup`` steps, then cosine from ``peak`` to ``peak * floor``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, floor: float = 0.01) -> None:
        """``total_steps`` is raised to at least ``warmup_steps + 1`` so the cosine phase is never empty."""
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        self.floor = float(floor)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        """The rate at ``step``; warm-up starts at ``peak / warmup`` rather than 0, so the first step is not wasted."""
        step = ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / float(max(self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / float(self.total_steps - self.warmup_steps), 0.0, 1.0)
        cosine = self.peak * (self.floor + (1.0 - self.floor) * 0.5 * (1.0 + ops.cos(math.pi * progress)))
        return ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self) -> dict:
        """The constructor arguments, so an optimizer using this schedule can be saved and reloaded."""
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "floor": self.floor,
        }
