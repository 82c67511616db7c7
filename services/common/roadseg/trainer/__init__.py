"""trainer: see the modules in this package.

``LOSSES``, ``PHOTOMETRIC`` and ``DECODER_STRIDES`` live here, not beside the code that uses them
(which imports TF), so the CLI and config validation list them without loading TF.
"""

#: Training losses (roadseg.trainer.losses.RoadLoss kinds); ``a_b`` is the sum of both.
LOSSES = ("bce", "dice", "bce_dice", "lovasz", "bce_lovasz")

#: Appearance augmentation levels (roadseg.trainer.data.photometric).
PHOTOMETRIC = ("none", "basic", "strong")

#: Resolution of the decoder's last features (roadseg.trainer.model): 4 is DeepLabV3+ as published;
#: 2 adds a stride-2 stage with a skip from the backbone's first block, for roads only 5-10 px wide.
DECODER_STRIDES = (4, 2)
