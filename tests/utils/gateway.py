"""Helpers for the gateway tests (no tests here): models exported once per session, images, servers.

Two SavedModels, both following docs/contracts.md §5 (``serving_default``: uint8 ``images`` -> float32
``probabilities``), in TF Serving's versioned layout with a ``model_card.json``:

* :func:`real_model` is our DeepLabV3+ (random weights, the trainer's builder and exporter):
  the real graph, used where the test is about the model contract (TF Serving double, GeoTIFF
  round trip). Random weights find no roads, so it cannot drive the route tests.
* :func:`dark_model` is a deterministic *test model*: road probability is high where the
  image is dark and smooth (asphalt in the Las Vegas tile). It makes road/route outcomes
  predictable and is ~100x cheaper, which the 6000 x 6000, concurrency and browser tests need.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from utils.paths import REPO
from utils.processes import Service

SHIPPED = REPO / "models" / "roads"
_CACHE: dict[str, Path] = {}


def _write_card(version_dir: Path, **card) -> None:
    (version_dir / "model_card.json").write_text(json.dumps(card, indent=2))


def dark_model() -> Path:
    """Folder of versions (``<dir>/1``) holding the deterministic dark-is-road test model."""
    if "dark" not in _CACHE:
        import tensorflow as tf

        class DarkRoads(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
            def serve(self, images):
                gray = tf.reduce_mean(tf.cast(images, tf.float32), axis=-1, keepdims=True) / 255.0
                smooth = tf.nn.avg_pool2d(gray, ksize=9, strides=1, padding="SAME")
                return {"probabilities": tf.sigmoid(20.0 * (0.25 - smooth))}

        root = Path(tempfile.mkdtemp(prefix="roadseg-dark-model-"))
        module = DarkRoads()
        tf.saved_model.save(module, str(root / "1"), signatures={"serving_default": module.serve})
        _write_card(
            root / "1",
            name="roads",
            version=1,
            backbone="dark-pixels (test model)",
            threshold=0.5,
            metrics={"synthetic:val": {"iou_road": 0.0}},
            data={"train": [], "val": []},
            config={},
            code_version="test",
            created="2026-01-01T00:00:00Z",
            command="tests/utils/gateway.py",
        )
        _CACHE["dark"] = root
    return _CACHE["dark"]


def dark_two_output_model() -> Path:
    """Folder of versions with a two-output test model: surface = dark and smooth (as :func:`dark_model`),
    centreline band = the middle of such areas (dark after a wider blur), at a model pixel size of 1 m
    (a 12 px road of a 0.5 m image: 12 px of surface, 8 px of band).
    """
    if "dark2" not in _CACHE:
        import tensorflow as tf

        class DarkRoadsTwoOutputs(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
            def serve(self, images):
                gray = tf.reduce_mean(tf.cast(images, tf.float32), axis=-1, keepdims=True) / 255.0
                surface = tf.sigmoid(40.0 * (0.4 - tf.nn.avg_pool2d(gray, ksize=3, strides=1, padding="SAME")))
                band = tf.sigmoid(40.0 * (0.3 - tf.nn.avg_pool2d(gray, ksize=5, strides=1, padding="SAME")))
                return {"probabilities": tf.concat([surface, band], axis=-1)}

        root = Path(tempfile.mkdtemp(prefix="roadseg-dark2-model-"))
        module = DarkRoadsTwoOutputs()
        tf.saved_model.save(module, str(root / "1"), signatures={"serving_default": module.serve})
        _write_card(
            root / "1",
            name="roads",
            version=1,
            backbone="dark-pixels, two outputs (test model)",
            threshold=0.5,
            outputs=["surface", "band"],
            thresholds={"surface": 0.5, "band": 0.5},
            band_width_m=7.0,
            pixel_size_m=1.0,
            metrics={},
            code_version="test",
            created="2026-01-01T00:00:00Z",
        )
        _CACHE["dark2"] = root
    return _CACHE["dark2"]


def with_card(models: Path, dest: Path, **fields) -> Path:
    """A copy of version 1 of the folder of versions ``models`` as ``dest/1``, ``fields`` added to its card."""
    shutil.copytree(models / "1", dest / "1")
    card = json.loads((dest / "1" / "model_card.json").read_text())
    _write_card(dest / "1", **{**card, **fields})
    return dest


def real_model() -> Path:
    """Folder of versions with our DeepLabV3+: the shipped ``models/roads`` when present, else a fresh
    export (MobileNetV2, random weights) made once per session with the trainer's builder and exporter."""
    if "real" not in _CACHE:
        from roadseg.model_versions import latest_version
        from roadseg.trainer.export import export_savedmodel
        from roadseg.trainer.model import build_model

        if latest_version(SHIPPED) is not None:
            _CACHE["real"] = SHIPPED
            return SHIPPED

        root = Path(tempfile.mkdtemp(prefix="roadseg-real-model-"))
        model = build_model(backbone="mobilenetv2", weights=None, input_shape=(None, None, 3))
        card = {"name": "roads", "version": 1, "backbone": "mobilenetv2", "threshold": 0.5, "metrics": {}}
        export_savedmodel(model, root / "1", card)
        _CACHE["real"] = root
    return _CACHE["real"]


def write_geotiff(
    path: Path,
    rgb: np.ndarray,
    crs: str | None = "EPSG:32611",
    transform: tuple[float, ...] = (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0),
) -> Path:
    """A 3-band uint8 GeoTIFF (``rgb`` is ``[H, W, 3]``); ``crs=None`` writes a plain TIFF."""
    import rasterio
    from affine import Affine

    height, width = rgb.shape[:2]
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8"}
    if crs is not None:
        profile.update(crs=crs, transform=Affine(*transform))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.moveaxis(rgb, -1, 0))
    return path


def road_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Light, textured ground with dark 12-px roads every 150 px (what the dark test model finds)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(150, 220, size=(height, width, 3), dtype=np.uint8)
    for offset in range(60, max(height, width), 150):
        img[offset : offset + 12, :] = 40
        img[:, offset : offset + 12] = 40
    return img


def Gateway(env: dict[str, str], log_path: Path, port: int) -> Service:  # noqa: N802 - reads as a class
    """``uvicorn services/gateway main:app`` on a free port, as ``make up`` runs it."""
    return Service("gateway", env, log_path, port)
