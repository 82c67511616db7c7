"""trainer: see the modules in this package.

``LOSSES`` and ``PHOTOMETRIC`` live here, not beside the code that uses them (which imports TF), so the
CLI and config validation list them without loading TF.
"""

#: Training losses (roadseg.trainer.losses.RoadLoss kinds); ``a_b`` is the sum of both.
LOSSES = ("bce", "dice", "bce_dice", "lovasz", "bce_lovasz")

#: Appearance augmentation levels (roadseg.trainer.data.photometric).
PHOTOMETRIC = ("none", "basic", "strong")
