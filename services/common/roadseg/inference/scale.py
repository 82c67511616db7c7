"""A plain image's scale chosen from the model's own output: ``--pixel-size auto``.

A PNG or JPEG says nothing about its ground pixel size, and a model finds roads only near the scales it
was trained on: v3 (1 m) finds nothing on the 0.27 m Vegas tile taken as 1 m, and 0.31 IoU once it is
brought to 1 m. ``auto`` runs the model on the image's central crop (:data:`CROP` px) resampled by each
of :data:`CANDIDATE_FACTORS` (image pixels per model pixel, as :func:`~roadseg.inference.windows.resampled`
takes them) and keeps the factor whose roads the model is surest of: the mean probability over the
pixels above the threshold. Each factor pays :data:`DISTANCE_PENALTY` per unit of ``|ln factor|``, so a
near tie leaves the image as it is.

Why this score: on validation crops of known pixel size (docs/training-log.md, "A plain image's scale"),
the confidence of the found roads peaks near the scale that scores best, where the certainty of every
pixel (background included) rewards scales at which the model sees nothing at all. The penalty was chosen
on the same validation crops (0 to 0.1 tried).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from roadseg import raster
from roadseg.inference.windows import resampled

#: Image pixels per model pixel tried: for a 1 m model, images of 2.0, 1.4, 1.0, 0.7, 0.5, 0.4 and 0.3 m.
CANDIDATE_FACTORS = (0.5, 0.714, 1.0, 1.429, 2.0, 2.5, 3.333)
#: Score lost per unit of |ln factor|: resampling must be clearly better to be chosen.
DISTANCE_PENALTY = 0.05
#: Side (image pixels) of the central crop the factors are tried on.
CROP = 640

PredictBatch = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ScaleChoice:
    """The chosen factor and every candidate's score (mean road probability, before the penalty)."""

    factor: float
    scores: dict[float, float]

    def pixel_size_m(self, model_pixel_size_m: float | None) -> float | None:
        """The image's pixel size this choice implies, for a model trained at one pixel size."""
        return round(model_pixel_size_m / self.factor, 4) if model_pixel_size_m else None


def road_confidence(probabilities: np.ndarray, threshold: float) -> float:
    """Mean probability over the pixels above ``threshold`` (0 when there are none)."""
    road = probabilities > threshold
    return float(probabilities[road].mean()) if road.any() else 0.0


def choose_factor(
    ds: DatasetReader,
    predict: PredictBatch,
    threshold: float,
    stretch: raster.Stretch,
    channel: int = 0,
) -> ScaleChoice:
    """The resampling factor of :data:`CANDIDATE_FACTORS` at which ``predict`` finds roads most surely.

    ``predict`` maps uint8 ``[N, H, W, 3]`` windows to probabilities ``[N, H, W, C]``; ``channel`` is the
    road output (the surface of a two-output model). ``stretch`` is the prediction's own, so the crop
    looks as the windows will.
    """
    side_h, side_w = min(CROP, ds.height), min(CROP, ds.width)
    window = Window((ds.width - side_w) // 2, (ds.height - side_h) // 2, side_w, side_h)
    rgb, _ = raster.read_rgb_window(ds, window, stretch)
    scores = {}
    for factor in CANDIDATE_FACTORS:
        run = predict if factor == 1.0 else resampled(predict, factor)
        scores[factor] = round(road_confidence(run(rgb[None])[0, ..., channel], threshold), 4)
    best = max(CANDIDATE_FACTORS, key=lambda f: scores[f] - DISTANCE_PENALTY * abs(math.log(f)))
    return ScaleChoice(best, scores)
