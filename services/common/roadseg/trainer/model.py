"""The road segmenter in Keras 3: an ImageNet backbone with a DeepLabV3+ or U-Net-style decoder.

The backbone is MobileNetV2 or ResNet50; the decoder DeepLabV3+ (Chen et al. 2018) or a
U-Net/LinkNet-style one over strides 16/8/4/2.

The Keras model takes raw RGB pixels as float in [0, 255] and does the backbone's ImageNet
preprocessing itself, so training, evaluation and the exported SavedModel all feed the same thing.
It returns one *logit* per pixel and output (float32 even under mixed precision): road, or road
surface and centreline band (:data:`roadseg.trainer.TARGETS`).

Output stride 16: the backbones' last stride-2 stage is turned into stride 1 with atrous (dilated)
convolutions by editing the Keras application's config and copying the pretrained weights across
(shapes are unchanged), which keeps ImageNet features while doubling the feature resolution.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import tensorflow as tf
from keras import layers, ops

from roadseg.trainer import BACKBONES, DECODER_STRIDES, DECODERS

log = logging.getLogger(__name__)


#: Channels per GroupNorm group in the new head. GroupNorm instead of BatchNorm: it has no moving
#: statistics, so training and inference compute the same function. With BatchNorm in the head
#: (batches of 8 on CPU, and the image-pooling branch normalised across the batch's images) the
#: inference-mode outputs drifted from the training-mode ones (measured: validation road IoU 0.0003
#: in inference mode vs 0.19 in training mode on the same checkpoint and crops).
HEAD_GROUP_CHANNELS = 8

#: Per backbone: layer overrides for output stride 16, the stride-16, 8, 4 and 2 feature layers.
_BACKBONE_SPECS: dict[str, dict[str, Any]] = {
    "mobilenetv2": {
        "overrides": {
            "block_13_pad": {"padding": ((1, 1), (1, 1))},
            "block_13_depthwise": {"strides": (1, 1)},
            "block_14_depthwise": {"dilation_rate": (2, 2)},
            "block_15_depthwise": {"dilation_rate": (2, 2)},
            "block_16_depthwise": {"dilation_rate": (2, 2)},
        },
        "high": "out_relu",
        "mid": "block_6_expand_relu",
        "low": "block_3_expand_relu",
        "fine": "block_1_expand_relu",
    },
    "resnet50": {
        "overrides": {
            "conv5_block1_0_conv": {"strides": (1, 1)},
            "conv5_block1_1_conv": {"strides": (1, 1)},
            "conv5_block1_2_conv": {"dilation_rate": (2, 2)},
            "conv5_block2_2_conv": {"dilation_rate": (2, 2)},
            "conv5_block3_2_conv": {"dilation_rate": (2, 2)},
        },
        "high": "conv5_block3_out",
        "mid": "conv3_block4_out",
        "low": "conv2_block3_out",
        "fine": "conv1_relu",
    },
}


@keras.saving.register_keras_serializable(package="roadseg")
class ImagePreprocess(layers.Layer):
    """ImageNet preprocessing of [0, 255] RGB for a backbone ("tf": [-1, 1]; "caffe": BGR minus mean)."""

    def __init__(self, mode: str = "tf", **kwargs: object) -> None:
        """``mode`` is the backbone's ImageNet convention: ``tf`` (MobileNetV2) or ``caffe`` (ResNet50)."""
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """Scale RGB values in [0, 255] the way the backbone saw its training images."""
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        mean = ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=self.compute_dtype)
        return ops.flip(x, axis=-1) - mean

    def get_config(self) -> dict:
        """The config with ``mode``, so a saved model reloads with the same preprocessing."""
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="roadseg")
class ResizeLike(layers.Layer):
    """Bilinear resize of ``x`` to the spatial size of a reference tensor, read at run time.

    Keras' UpSampling2D needs static sizes; resizing to the reference's *dynamic* shape lets the
    model (ASPP image pooling, decoder and output upsampling) run on any input size ([None, None, 3]).
    """

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        """Resize ``x`` (first input) bilinearly to the height and width of ``reference`` (second input)."""
        x, reference = inputs
        size = tf.shape(reference)[1:3]
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(
        self, input_shapes: tuple[tuple[int | None, ...], tuple[int | None, ...]]
    ) -> tuple[int | None, ...]:
        """``x``'s batch size and channels with the reference's height and width (None where unknown)."""
        x, reference = input_shapes
        return (x[0], reference[1], reference[2], x[-1])


def _dilated_backbone(backbone: str, weights: str | None, input_shape: tuple) -> keras.Model:
    """The Keras application with its last stride-2 stage made atrous (output stride 16)."""
    app_weights = "imagenet" if weights == "imagenet" else None
    if backbone == "mobilenetv2":
        base = keras.applications.MobileNetV2(include_top=False, weights=app_weights, input_shape=input_shape)
    else:
        base = keras.applications.ResNet50(include_top=False, weights=app_weights, input_shape=input_shape)
    if weights not in (None, "imagenet"):
        base.load_weights(weights)
    overrides = _BACKBONE_SPECS[backbone]["overrides"]
    config = base.get_config()
    for layer in config["layers"]:
        layer["config"].update(overrides.get(layer["config"]["name"], {}))
    dilated = keras.Model.from_config(config)
    dilated.set_weights(base.get_weights())
    # Frozen BatchNorm (DeepLab's recipe for batches under ~12): with batch statistics, the moving
    # averages lag the fine-tuned weights and inference drifts far from training (measured here:
    # out_relu features correlated only 0.5 between the two modes after 250 steps).
    for layer in dilated.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return dilated


@keras.saving.register_keras_serializable(package="roadseg")
class GroupNorm(layers.GroupNormalization):
    """Keras' GroupNormalization for channels-last images, with its statistics taken per channel first.

    Keras reduces a 5-D view [N, H, W, groups, channels/group] over three axes and then scales and
    shifts that view; on CPU those reductions across non-adjacent axes cost more than the convolution
    before them (measured on the shipped v1 at 512 px: its 13 GroupNorms took 80 of 166 ms per window,
    and 16 -> 5 ms for one [1, 128, 128, 256] layer with this ``call``). Here the means of x and x^2 are
    reduced over H and W only (channel axis innermost), the groups' mean and variance come from those
    N x C vectors, and the output is one scale and one shift per channel. Same weights and config as
    Keras' layer, and closer to a float64 reference (1.6e-6 vs 9.8e-5 for that layer). Only the
    channels-last layout with ``axis=-1`` is used by this model.

    The two means over H and W are matrix products of a row of 1/(H*W) with the [N, H*W, C] view:
    oneDNN's GEMM runs on every core at memory speed where TensorFlow's reduction over the outer axes
    does not (one [1, 128, 128, 256] layer: 14.3 -> 6.0 ms for both means on a 2-core host).
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """Normalise each image's channel groups over H, W and the group's channels, then scale and shift."""
        x = ops.cast(inputs, "float32")  # statistics in float32 under mixed precision, as Keras does
        channels = x.shape[-1]
        per_group = channels // self.groups
        shape = ops.shape(x)
        pixels = shape[1] * shape[2]
        flat = ops.reshape(x, (shape[0], pixels, channels))
        row = ops.full((1, 1, pixels), 1.0, "float32") / ops.cast(pixels, "float32")
        mean = ops.reshape(ops.matmul(row, flat), (shape[0], self.groups, per_group))
        square = ops.reshape(ops.matmul(row, ops.square(flat)), (shape[0], self.groups, per_group))
        group_mean = ops.mean(mean, axis=-1, keepdims=True)
        group_var = ops.maximum(ops.mean(square, axis=-1, keepdims=True) - ops.square(group_mean), 0.0)
        # One scale per channel: the group's 1 / std (times gamma), then the shift that centres it.
        inv = ops.broadcast_to(ops.rsqrt(group_var + self.epsilon), (shape[0], self.groups, per_group))
        if self.scale:
            inv = inv * ops.reshape(ops.cast(self.gamma, "float32"), (self.groups, per_group))
        shift = -group_mean * inv
        if self.center:
            shift = shift + ops.reshape(ops.cast(self.beta, "float32"), (self.groups, per_group))
        inv = ops.reshape(inv, (shape[0], 1, 1, channels))
        shift = ops.reshape(shift, (shape[0], 1, 1, channels))
        return ops.cast(x * inv + shift, self.compute_dtype)


def _group_norm(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    channels = x.shape[-1]
    return GroupNorm(groups=max(1, channels // HEAD_GROUP_CHANNELS), name=name)(x)


def _conv_gn_relu(
    x: keras.KerasTensor, filters: int, name: str, kernel: int = 1, rate: int = 1, separable: bool = False
) -> keras.KerasTensor:
    if separable:
        x = layers.DepthwiseConv2D(3, padding="same", dilation_rate=rate, use_bias=False, name=f"{name}_dw")(x)
        x = _group_norm(x, f"{name}_dw_gn")
        x = layers.ReLU(name=f"{name}_dw_relu")(x)
        kernel = 1
    x = layers.Conv2D(filters, kernel, padding="same", dilation_rate=1, use_bias=False, name=f"{name}_conv")(x)
    x = _group_norm(x, f"{name}_gn")
    return layers.ReLU(name=f"{name}_relu")(x)


def _aspp(x: keras.KerasTensor, filters: int, rates: tuple[int, ...], dropout: float) -> keras.KerasTensor:
    """Atrous spatial pyramid pooling: 1x1, separable atrous convs at ``rates``, and image pooling."""
    branches = [_conv_gn_relu(x, filters, "aspp_1x1")]
    for rate in rates:
        branches.append(_conv_gn_relu(x, filters, f"aspp_r{rate}", rate=rate, separable=True))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = _conv_gn_relu(pooled, filters, "aspp_pool_proj")
    branches.append(ResizeLike(name="aspp_pool_resize")([pooled, x]))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_gn_relu(x, filters, "aspp_out")
    return layers.Dropout(dropout, name="aspp_dropout")(x)


def _logits(x: keras.KerasTensor, outputs: int, stride: int) -> keras.KerasTensor:
    """The 1x1 convolution to one logit per output; named by the output count so weights never cross.

    Single-output models keep the layer names of every export up to v3 (``logits_stride4``), so
    those exports still load; two-output models (surface, centreline band) name theirs
    ``targets_logits_stride*``, which a single-output export leaves fresh instead of clashing.
    """
    prefix = "logits" if outputs == 1 else "targets_logits"
    return layers.Conv2D(outputs, 1, name=f"{prefix}_stride{stride}")(x)


def _stride2_stage(x: keras.KerasTensor, fine: keras.KerasTensor, filters: int, outputs: int) -> keras.KerasTensor:
    """Refine stride-4 decoder features at stride 2 with a skip from the backbone's first block.

    Kept narrow (a 1x1 reduction before upsampling, one separable conv after) so it costs a fraction
    of the stride-4 decoder while thin roads get twice the resolution before the final upsampling.
    """
    x = _conv_gn_relu(x, filters, "decoder_s2_reduce")
    fine = _conv_gn_relu(fine, filters // 2, "decoder_s2_fine")
    x = ResizeLike(name="decoder_s2_resize")([x, fine])
    x = layers.Concatenate(name="decoder_s2_concat")([x, fine])
    x = _conv_gn_relu(x, filters, "decoder_s2_sep", separable=True)
    return _logits(x, outputs, 2)


def _deeplab_head(
    features: list[keras.KerasTensor], aspp_filters: int, decoder_filters: int, decoder_stride: int, outputs: int
) -> keras.KerasTensor:
    """ASPP on the stride-16 features, the stride-4 decoder of DeepLabV3+, and the optional stride-2 stage."""
    high, low, *fine = features
    x = _aspp(high, aspp_filters, (6, 12, 18), 0.1)
    low = _conv_gn_relu(low, 48, "decoder_low")
    x = ResizeLike(name="decoder_resize")([x, low])
    x = layers.Concatenate(name="decoder_concat")([x, low])
    x = _conv_gn_relu(x, decoder_filters, "decoder_sep1", separable=True)
    x = _conv_gn_relu(x, decoder_filters, "decoder_sep2", separable=True)
    return _stride2_stage(x, fine[0], 64, outputs) if fine else _logits(x, outputs, 4)


def _unet_head(features: list[keras.KerasTensor], filters: int, outputs: int) -> keras.KerasTensor:
    """A LinkNet/U-Net style decoder: stride 16 -> 8 -> 4 -> 2, a backbone skip merged at each stride.

    Thin roads (5-10 px) are lost at stride 4 where DeepLabV3+ stops; every upsampling here adds the
    backbone's features of that resolution, so the last stage sees edges at stride 2. The stride-16
    features keep the dilated backbone's context plus one image-pooling channel block. Widths halve
    with each stage (``filters`` at stride 8), separable convolutions keep the cost of a model call
    within the DeepLabV3+ head's.
    """
    high, *skips = features  # strides 16, 8, 4, 2
    x = _conv_gn_relu(high, filters * 2, "unet_s16")
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="unet_pool")(high)
    pooled = _conv_gn_relu(pooled, filters // 2, "unet_pool_proj")
    x = layers.Concatenate(name="unet_s16_concat")([x, ResizeLike(name="unet_pool_resize")([pooled, x])])
    for skip, stride, width in zip(skips, (8, 4, 2), (filters, filters // 2, filters // 4), strict=True):
        x = ResizeLike(name=f"unet_s{stride}_resize")([x, skip])
        skip = _conv_gn_relu(skip, width, f"unet_s{stride}_skip")
        x = layers.Concatenate(name=f"unet_s{stride}_concat")([x, skip])
        x = _conv_gn_relu(x, width, f"unet_s{stride}_sep1", separable=True)
        x = _conv_gn_relu(x, width, f"unet_s{stride}_sep2", separable=True)
    return _logits(x, outputs, 2)


def build_model(
    backbone: str = "mobilenetv2",
    weights: str | None = "imagenet",
    input_shape: tuple = (None, None, 3),
    aspp_filters: int = 256,
    decoder_filters: int = 256,
    decoder_stride: int = 4,
    decoder: str = "deeplabv3plus",
    outputs: int = 1,
) -> keras.Model:
    """The road segmenter: logits [N,H,W,outputs] for float RGB input in [0, 255].

    ``decoder``: "deeplabv3plus" (ASPP + stride-4 decoder; ``decoder_stride`` 2 adds
    :func:`_stride2_stage`) or "unet" (:func:`_unet_head`, ``decoder_filters`` wide at stride 8).
    ``outputs``: 1 (road) or 2 (road surface, centreline band: :data:`roadseg.trainer.TARGETS`).
    ``weights``: None (random), "imagenet" (Keras download, or the KERAS_HOME cache) or a path to a
    backbone weights file. H and W must be multiples of 16. Layers keep their names across these
    choices where they exist in both, so an export can initialise a model that adds layers (see
    :func:`roadseg.trainer.serving_model.load_exported_weights`).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if decoder_stride not in DECODER_STRIDES:
        raise ValueError(f"decoder_stride must be one of {DECODER_STRIDES}, got {decoder_stride}")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    spec = _BACKBONE_SPECS[backbone]
    base = _dilated_backbone(backbone, weights, input_shape)
    if decoder == "unet":
        names = [spec["high"], spec["mid"], spec["low"], spec["fine"]]
    else:
        names = [spec["high"], spec["low"]] + ([spec["fine"]] if decoder_stride == 2 else [])
    features = keras.Model(base.input, [base.get_layer(n).output for n in names], name="backbone")

    inputs = keras.Input(shape=input_shape, name="images")
    x = ImagePreprocess("tf" if backbone == "mobilenetv2" else "caffe", name="preprocess")(inputs)
    maps = features(x)
    if decoder == "unet":
        x = _unet_head(maps, decoder_filters, outputs)
    else:
        x = _deeplab_head(maps, aspp_filters, decoder_filters, decoder_stride, outputs)
    x = ResizeLike(name="logits_resize")([x, inputs])
    logits = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=f"{decoder}_{backbone}")
