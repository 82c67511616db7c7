"""The served copy of a model computes the trained function: folded BatchNorms, fast GroupNorm, re-export.

Random BatchNorm statistics everywhere (a freshly built model's are 0 and 1, which any fold would
get right), so each assertion compares real outputs of two different graphs.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from roadseg.cli import main  # noqa: E402
from roadseg.model_versions import read_card  # noqa: E402
from roadseg.trainer.export import export_savedmodel  # noqa: E402
from roadseg.trainer.model import GroupNorm, build_model  # noqa: E402
from roadseg.trainer.serving_model import batch_norm_folds, load_exported_weights, serving_model  # noqa: E402


def _randomise_batch_norms(model, seed: int) -> None:
    """Give every BatchNorm of ``model`` (nested ones too) random scale, shift, mean and variance."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            for weight in layer.weights:
                low, high = (0.2, 2.0) if weight.name in ("gamma", "moving_variance") else (-0.5, 0.5)
                weight.assign(rng.uniform(low, high, weight.shape).astype(np.float32))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _toy_model():
    """Every case of the fold: biased and bias-free convs, a depthwise multiplier, a shared conv, nesting."""
    layers = keras.layers
    inner_in = keras.Input((None, None, 4))
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, name="dw")(inner_in)
    x = layers.BatchNormalization(name="dw_bn")(x)
    inner = keras.Model(inner_in, layers.ReLU(6.0)(x), name="inner")

    inputs = keras.Input((None, None, 3))
    a = layers.Conv2D(4, 3, padding="same", use_bias=False, name="plain")(inputs)
    a = layers.BatchNormalization(name="plain_bn", epsilon=1.001e-5)(a)
    b = layers.Conv2D(4, 1, use_bias=True, name="biased")(inputs)
    b = layers.BatchNormalization(name="biased_bn")(b)
    shared = layers.Conv2D(4, 1, use_bias=False, name="shared")(inputs)
    c = layers.BatchNormalization(name="shared_bn")(shared)  # its conv has a second reader: not folded
    x = layers.Concatenate()([inner(layers.Add()([a, b])), c, shared])
    x = layers.Conv2D(8, 1, use_bias=False, name="head")(x)
    x = GroupNorm(groups=2, name="head_gn")(x)
    return keras.Model(inputs, layers.Conv2D(1, 1, name="logits")(x))


def test_group_norm_matches_keras_and_a_float64_reference():
    rng = np.random.default_rng(0)
    x = (rng.normal(3.0, 2.0, (2, 12, 10, 32)) * rng.uniform(0.1, 3.0, 32)).astype(np.float32)
    ours, reference = GroupNorm(groups=4), keras.layers.GroupNormalization(groups=4)
    ours.build(x.shape)
    reference.build(x.shape)
    gamma, beta = rng.uniform(0.5, 1.5, 32).astype(np.float32), rng.normal(0, 0.3, 32).astype(np.float32)
    for layer in (ours, reference):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)

    grouped = x.astype(np.float64).reshape(2, 12, 10, 4, 8)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = grouped.var(axis=(1, 2, 4), keepdims=True)
    expected = ((grouped - mean) / np.sqrt(var + reference.epsilon)).reshape(x.shape) * gamma + beta
    np.testing.assert_allclose(ours(x).numpy(), expected, atol=2e-5)  # each image normalised on its own
    np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), atol=1e-4)
    np.testing.assert_allclose(ours(x[1:]).numpy(), ours(x).numpy()[1:], atol=1e-6)

    # Without scale and shift (a config the serving copy may meet in any Keras GroupNormalization).
    plain, plain_reference = (
        GroupNorm(groups=4, scale=False, center=False),
        keras.layers.GroupNormalization(groups=4, scale=False, center=False),
    )
    np.testing.assert_allclose(plain(x).numpy(), plain_reference(x).numpy(), atol=1e-4)


def test_serving_copy_folds_batch_norms_and_computes_the_same_function():
    model = _toy_model()
    _randomise_batch_norms(model, 1)
    assert batch_norm_folds(model.get_config()) == {"plain_bn": "plain", "biased_bn": "biased", "dw_bn": "dw"}

    served = serving_model(model)
    image = np.random.default_rng(2).uniform(0, 255, (2, 20, 24, 3)).astype(np.float32)
    np.testing.assert_allclose(served(image).numpy(), model(image, training=False).numpy(), rtol=1e-4, atol=1e-4)
    norms = [layer.name for layer in _all_layers(served) if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms == ["shared_bn"]
    assert served.get_layer("plain").use_bias and served.get_layer("inner").get_layer("dw").use_bias
    assert model.get_layer("plain").bias is None  # the trained model is left as it was


def test_export_stores_the_served_copy_and_fine_tuning_starts_from_the_same_function(tmp_path):
    """An export holds folded weights (no BatchNorm statistics); loading it into the trained architecture
    unfolds them into identity BatchNorms, so the rebuilt model predicts what the export serves."""
    model = build_model(weights=None, aspp_filters=16, decoder_filters=16)
    _randomise_batch_norms(model, 3)
    out = export_savedmodel(model, tmp_path / "1", {"name": "roads"})
    stored = [v.name for v in tf.saved_model.load(str(out)).model_variables]
    assert not [name for name in stored if "moving_mean" in name]
    assert len(stored) == len(model.variables) - 4 * 52 + 52  # 52 folds: 4 statistics out, 1 bias in

    image = np.random.default_rng(4).integers(0, 256, (1, 48, 64, 3), dtype=np.uint8)
    served = tf.saved_model.load(str(out)).signatures["serving_default"](images=tf.constant(image))["probabilities"]
    expected = tf.sigmoid(model(image.astype(np.float32), training=False)).numpy()
    np.testing.assert_allclose(served.numpy(), expected, atol=1e-5)

    rebuilt = build_model(weights=None, aspp_filters=16, decoder_filters=16)
    assert load_exported_weights(rebuilt, out) == []
    assert rebuilt.get_layer("backbone").get_layer("Conv1").bias is None  # the training architecture
    np.testing.assert_allclose(
        tf.sigmoid(rebuilt(image.astype(np.float32), training=False)).numpy(), expected, atol=1e-5
    )


def test_an_export_is_exported_again_with_its_card_and_the_same_predictions(tmp_path, capsys, monkeypatch):
    model = build_model(weights=None, aspp_filters=16, decoder_filters=16)
    _randomise_batch_norms(model, 5)
    card = {
        "name": "roads",
        "threshold": 0.3,
        "pixel_size_m": 0.5,
        "config": {"aspp_filters": 16, "decoder_filters": 16},
        "command": "roadseg train --config x.yaml",
        "metrics": {"old:val": {"iou_road": 0.9}},
    }
    export_savedmodel(model, tmp_path / "models" / "1", card, tta="flip")

    argv = ["export", "--from-version", str(tmp_path / "models" / "1"), "--model-dir", str(tmp_path / "models")]
    monkeypatch.setattr(sys, "argv", ["roadseg", *argv])  # the card records the command line
    assert main(argv) == 0
    out = tmp_path / "models" / "2"
    assert capsys.readouterr().out.strip() == str(out)
    again = read_card(out)
    assert (again["version"], again["threshold"], again["pixel_size_m"], again["tta"]) == (2, 0.3, 0.5, "flip")
    assert again["command"] == card["command"] and again["config"] == card["config"]
    assert again["metrics"] == {}  # figures of another graph are not copied
    assert again["plain_pixel_size"] is None  # plain images given no pixel size: the model's own resolution
    assert again["export_command"] == f"roadseg export --from-version {tmp_path}/models/1 --model-dir {tmp_path}/models"

    image = tf.constant(np.random.default_rng(6).integers(0, 256, (1, 40, 56, 3), dtype=np.uint8))
    predictions = [
        tf.saved_model.load(str(tmp_path / "models" / v)).signatures["serving_default"](images=image)["probabilities"]
        for v in ("1", "2")
    ]
    np.testing.assert_allclose(predictions[1].numpy(), predictions[0].numpy(), atol=1e-6)
    assert json.loads((out / "model_card.json").read_text())["name"] == "roads"


def test_export_writes_the_plain_pixel_size_and_a_re_export_keeps_it(tmp_path, capsys, monkeypatch):
    """``roadseg export --plain-pixel-size auto`` writes the card's default for plain images given no pixel
    size; ``--from-version`` keeps it (a card without one stays without: the re-export test above)."""
    import yaml

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    architecture = {"aspp_filters": 16, "decoder_filters": 16}
    build_model(weights=None, **architecture).save(run / "checkpoints" / "last.keras")
    (run / "config.yaml").write_text(yaml.safe_dump({"backbone": "mobilenetv2", **architecture}))
    models = tmp_path / "models"
    monkeypatch.setattr(sys, "argv", ["roadseg", "export"])
    checkpoint = ["--checkpoint", str(run / "checkpoints" / "last.keras")]
    assert main(["export", *checkpoint, "--model-dir", str(models), "--plain-pixel-size", "auto"]) == 0
    assert read_card(models / "1")["plain_pixel_size"] == "auto"
    assert main(["export", "--from-version", str(models / "1"), "--model-dir", str(models)]) == 0
    assert read_card(models / "2")["plain_pixel_size"] == "auto"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["export", *checkpoint, "--model-dir", str(models), "--plain-pixel-size", "0.5"])
    assert "invalid choice: '0.5'" in capsys.readouterr().err
