"""The copy of a trained model that an export serves: the same function in fewer passes over memory.

On CPU a 512 px window of the shipped v1 spent more time in normalisation layers than in its
convolutions (``bench/model_call.py``): each of MobileNetV2's 52 inference-mode BatchNorms is a
multiply and an add over every activation of the convolution before it, and Keras' GroupNormalization
reduces over a 5-D view. The served copy is rebuilt from the model's config with three rewrites,
none of which changes what it computes beyond float rounding:

* every BatchNormalization that is the only reader of a convolution is folded into it (kernel
  scaled per output channel, the shift moved into the bias) and replaced by an Identity layer,
  which leaves a convolution, a bias and a ReLU that TensorFlow's graph optimizer fuses (measured:
  86 vs 100 ms per 512 px window on top of the GroupNorm change);
* Keras' GroupNormalization (checkpoints saved before :class:`~roadseg.trainer.model.GroupNorm`
  existed) becomes that layer: same weights, statistics per channel first;
* every layer computes in float32: a checkpoint trained under mixed precision keeps its float16
  compute policy per layer, which TF Serving on CPU would run as slow, less accurate float16 kernels.

An export stores the served copy's weights only (a second copy would double the model on disk);
:func:`unfold_batch_norms` turns them back into the trained model's form (same function), and
:func:`load_exported_weights` loads an exported version into a freshly built model for fine-tuning.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from roadseg.errors import InvalidInput
from roadseg.model_versions import resolve_savedmodel
from roadseg.trainer.model import GroupNorm

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

#: Export values and model shapes by ``layer/weight`` -> the export's index per axis of each narrowed variable.
Narrowing = Callable[[dict[str, np.ndarray], dict[str, tuple[int, ...]]], dict[str, tuple[np.ndarray, ...]]]

_CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D")


def serving_model(keras_model: keras.Model) -> keras.Model:
    """A float32 copy of ``keras_model`` with BatchNorms folded and fast GroupNorms (module docstring).

    Its outputs equal the model's in inference mode up to float32 rounding (tested); ``keras_model``
    itself is left unchanged.
    """
    import keras

    config = keras_model.get_config()
    folds = batch_norm_folds(config)
    copy = keras.Model.from_config(_rewrite(config, folds))
    weights = _fold({v.path: v.numpy() for v in keras_model.variables}, folds, _layers_by_name(keras_model))
    missing = [v.path for v in copy.variables if v.path not in weights and "seed_generator" not in v.path]
    if missing:
        raise RuntimeError(f"serving copy has weights the model lacks: {', '.join(missing[:4])}")
    for variable in copy.variables:
        if variable.path in weights:
            variable.assign(weights[variable.path])
    log.info("serving copy: %d BatchNorms folded into their convolutions", len(folds))
    return copy


def batch_norm_folds(config: dict) -> dict[str, str]:
    """BatchNorm layer name -> the convolution folded into it, for every foldable pair in a model config.

    Foldable: the BatchNorm normalises the last axis, reads one Conv2D/DepthwiseConv2D without an
    activation, and is that convolution's only reader (nested functional models included).
    """
    folds: dict[str, str] = {}
    for graph in _functional_graphs(config):
        entries = {entry["config"]["name"]: entry for entry in graph["layers"]}
        readers = Counter(name for entry in graph["layers"] for name in _sources(entry["inbound_nodes"]))
        outputs = graph["output_layers"]
        readers.update(name for name, *_ in ([outputs] if isinstance(outputs[0], str) else outputs))
        for name, entry in entries.items():
            if entry["class_name"] != "BatchNormalization" or entry["config"]["axis"] not in (-1, 3):
                continue
            sources = _sources(entry["inbound_nodes"])
            conv = entries.get(sources[0]) if len(sources) == 1 else None
            if (
                conv is not None
                and conv["class_name"] in _CONVOLUTIONS
                and conv["config"]["activation"] == "linear"
                and readers[sources[0]] == 1
            ):
                folds[name] = sources[0]
    return folds


def unfold_batch_norms(source: Mapping[str, np.ndarray], keras_model: keras.Model) -> dict[str, np.ndarray]:
    """Weights of a served copy (``layer/weight`` -> value) in the form of the trained ``keras_model``.

    For every foldable pair of ``keras_model`` whose BatchNorm weights ``source`` lacks but whose
    convolution has a bias: the BatchNorm gets scale 1, mean 0, variance ``1 - epsilon`` (so it
    divides by exactly 1) and the bias as its shift; the convolution keeps the folded kernel. The
    model then computes what the served copy computes, and fine-tuning starts from there.
    """
    layers = _layers_by_name(keras_model)
    unfolded = dict(source)
    for norm, conv in batch_norm_folds(keras_model.get_config()).items():
        if f"{norm}/moving_mean" in source or f"{conv}/bias" not in source:
            continue  # not folded in this export (or not in it at all)
        shift = unfolded[f"{conv}/bias"]
        if not layers[conv].use_bias:
            unfolded.pop(f"{conv}/bias")  # the trained convolution has none: the BatchNorm shifts instead
        norm_layer = layers[norm]
        if not (norm_layer.center or layers[conv].use_bias):
            raise ValueError(f"{norm} has no shift to hold the folded bias of {conv}")
        if norm_layer.scale:
            unfolded[f"{norm}/gamma"] = np.ones_like(shift)
        if norm_layer.center:
            unfolded[f"{norm}/beta"] = np.zeros_like(shift) if layers[conv].use_bias else shift
        unfolded[f"{norm}/moving_mean"] = np.zeros_like(shift)
        unfolded[f"{norm}/moving_variance"] = np.full_like(shift, 1.0 - norm_layer.epsilon)
    return unfolded


def load_exported_weights(
    keras_model: keras.Model, savedmodel: str | Path, narrow: Narrowing | None = None
) -> list[str]:
    """Copy an exported version's weights into a freshly built model; returns the names left fresh.

    The export tracks ``model_variables`` (named by layer, e.g. ``decoder_sep1_conv/kernel``), so a
    SavedModel is all that is needed to fine-tune a served model: no separate Keras checkpoint ships
    with it. Variables are matched by name, so a model that adds layers (a stride-2 decoder) starts
    from every layer the export has and initialises only the new ones. A narrower model (fewer ASPP
    or decoder filters) starts from the export only when ``narrow`` is given: it maps the export's
    values and the model's shapes to the export's index on every axis of each narrowed variable
    (:func:`roadseg.trainer.narrow.head_indices`). Any other variable of another shape, or a model
    sharing no variable with the export, is an error. Exports since the serving copy hold their
    BatchNorms folded into the convolutions; they are unfolded into an exact identity BatchNorm
    (:func:`unfold_batch_norms`), so the model computes the served function.
    """
    loaded = tf.saved_model.load(str(resolve_savedmodel(savedmodel)))
    source = {n: v.numpy() for n, v in _by_name(getattr(loaded, "model_variables", []), "name").items()}
    source = unfold_batch_norms(source, keras_model)  # exports store their served copy, BatchNorms folded
    target = _by_name(keras_model.variables, "path")
    if len(target) != len([v for v in keras_model.variables if not _is_rng_state(v.path)]):
        raise ValueError(f"{keras_model.name} has variables of the same layer/weight name; cannot match by name")
    plan = narrow(source, {n: tuple(v.shape) for n, v in target.items()}) if narrow else {}
    picked = {n: source[n][np.ix_(*index)] for n, index in plan.items()}
    clashes = [n for n in target if n in source and tuple(picked.get(n, source[n]).shape) != tuple(target[n].shape)]
    if clashes or not set(source) & set(target):
        raise InvalidInput(
            f"{savedmodel} does not match this architecture ({len(source)} vs {len(target)} variables, "
            f"{len(clashes)} of other shapes{': ' + ', '.join(clashes[:4]) if clashes else ''}): use the backbone "
            "and filter sizes of its model card"
        )
    for name, variable in target.items():
        if name in source:
            variable.assign(picked.get(name, source[name]))
    return [name for name in target if name not in source]


def _is_rng_state(name: str) -> bool:
    """Dropout's random-generator state: not a weight, and named by a process-wide counter."""
    return "seed_generator" in name


def _by_name(variables: Iterable[tf.Variable], attribute: str) -> dict[str, tf.Variable]:
    """Weights keyed ``layer/weight`` (from TF names ``layer/weight:0`` or nested Keras paths)."""
    named = {}
    for variable in variables:
        name = getattr(variable, attribute)
        if not _is_rng_state(name):
            named["/".join(name.removesuffix(":0").split("/")[-2:])] = variable
    return named


def _fold(source: dict[str, np.ndarray], folds: dict[str, str], layers: dict) -> dict[str, np.ndarray]:
    """``source`` weights with each folded BatchNorm moved into its convolution's kernel and bias."""
    from keras.layers import DepthwiseConv2D

    weights = dict(source)
    for norm, conv in folds.items():
        mean = weights.pop(f"{norm}/moving_mean")
        variance = weights.pop(f"{norm}/moving_variance")
        gamma = weights.pop(f"{norm}/gamma", np.ones_like(mean))
        beta = weights.pop(f"{norm}/beta", np.zeros_like(mean))
        scale = gamma / np.sqrt(variance + layers[norm].epsilon)
        kernel = weights[f"{conv}/kernel"]
        # Conv2D kernels end in output channels; a DepthwiseConv2D's output channel c*multiplier+m
        # comes from kernel[..., c, m], so its per-channel scale is reshaped to (channels, multiplier).
        depthwise = isinstance(layers[conv], DepthwiseConv2D)
        weights[f"{conv}/kernel"] = kernel * (scale.reshape(kernel.shape[-2:]) if depthwise else scale)
        bias = weights.get(f"{conv}/bias", 0.0)
        weights[f"{conv}/bias"] = (bias - mean) * scale + beta
    return weights


def _rewrite(config: object, folds: dict[str, str]) -> object:
    """The model config with float32 everywhere, folded BatchNorms as Identity, GroupNorms as ours."""
    if isinstance(config, list):
        return [_rewrite(item, folds) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "BatchNormalization" and config.get("config", {}).get("name") in folds:
        return {
            "module": "keras.layers",
            "class_name": "Identity",
            "registered_name": None,
            "name": config["config"]["name"],
            "config": {"name": config["config"]["name"], "trainable": False, "dtype": "float32"},
            # BatchNorm's call takes a mask; Identity's does not.
            "inbound_nodes": [{**node, "kwargs": {}} for node in config["inbound_nodes"]],
        }
    rewritten: dict[str, Any] = {
        key: "float32" if key == "dtype" else _rewrite(value, folds) for key, value in config.items()
    }
    if config.get("class_name") in _CONVOLUTIONS and config["config"]["name"] in folds.values():
        rewritten["config"] = {**rewritten["config"], "use_bias": True}
    if config.get("class_name") == "GroupNormalization":
        rewritten.update(module=GroupNorm.__module__, class_name="GroupNorm", registered_name="roadseg>GroupNorm")
    return rewritten


def _functional_graphs(config: dict) -> Iterator[dict]:
    """The config of a functional model and of every functional model nested in it."""
    yield config
    for entry in config["layers"]:
        if "layers" in entry.get("config", {}):
            yield from _functional_graphs(entry["config"])


def _sources(nodes: object) -> list[str]:
    """Names of the layers whose outputs a layer's inbound nodes read (Keras tensors, at any depth)."""
    if isinstance(nodes, dict):
        if nodes.get("class_name") == "__keras_tensor__":
            return [nodes["config"]["keras_history"][0]]
        return [name for value in nodes.values() for name in _sources(value)]
    if isinstance(nodes, list | tuple):
        return [name for value in nodes for name in _sources(value)]
    return []


def _layers_by_name(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Every layer of ``model`` and of the models nested in it, by name."""
    found = {}
    for layer in model.layers:
        found[layer.name] = layer
        if hasattr(layer, "layers"):
            found.update(_layers_by_name(layer))
    return found
