"""trainer: see the modules in this package.

``LOSSES`` lives here, not in ``losses`` (which imports Keras), so the CLI lists it without loading TF.
"""

#: Training losses (roadseg.trainer.losses.RoadLoss kinds); ``a_b`` is the sum of both.
LOSSES = ("bce", "dice", "bce_dice", "lovasz", "bce_lovasz")
