"""trainer: train, evaluate and export the road segmenter (a batch job: no server, no queue).

``data`` samples crops from folder and TFRecord sources with augmentation, ``model`` builds DeepLabV3+ or
the U-Net decoder on MobileNetV2, ``losses`` and ``schedule`` drive ``train`` (resumable to the batch,
``checkpoints``), ``evaluate`` and ``validation`` measure whole images through the prediction path,
``export`` and ``serving_model`` write a versioned SavedModel and its card (docs/contracts.md §5) into the
model folder the gateway and TF Serving read. ``cli`` is ``roadseg train``, ``evaluate``, ``export`` and
``validate``. Documentation: docs/training.md, docs/training-log.md.

The choices of the trainer's settings (``BACKBONES``, ``LOSSES``, ``PHOTOMETRIC``, ``DECODER_STRIDES``,
``DECODERS``, ``TARGETS``, ``PRECISIONS``) live here, not beside the code that uses them (which imports
TF), so the CLI and config validation list them without loading TF.
"""

#: ImageNet backbones of roadseg.trainer.model (MobileNetV2 is the only one whose weights ship offline).
BACKBONES = ("mobilenetv2", "resnet50")

#: Keras dtype policies a run may force (``auto`` picks mixed_float16 on GPUs, float32 on CPU).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

#: Training losses (roadseg.trainer.losses.RoadLoss kinds); ``a_b`` is the sum of both.
LOSSES = ("bce", "dice", "bce_dice", "lovasz", "bce_lovasz")

#: Appearance augmentation levels (roadseg.trainer.data.photometric).
PHOTOMETRIC = ("none", "basic", "strong")

#: Resolution of the decoder's last features (roadseg.trainer.model): 4 is DeepLabV3+ as published;
#: 2 adds a stride-2 stage with a skip from the backbone's first block, for roads only 5-10 px wide.
DECODER_STRIDES = (4, 2)

#: Decoders of roadseg.trainer.model: DeepLabV3+ (ASPP, stride 4) or a U-Net/LinkNet-style decoder
#: over the backbone's strides 16/8/4/2.
DECODERS = ("deeplabv3plus", "unet")

#: What a two-output model predicts, in channel order: the whole road *surface*, and the *band* of a
#: fixed ground width around each centreline (the Massachusetts Roads convention). Each data source
#: provides one or both; the loss ignores a target a source does not provide.
TARGETS = ("surface", "band")
