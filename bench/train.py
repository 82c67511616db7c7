"""Trainer benchmark: training images/s, and inference ms per 512x512 tile of the exported SavedModel
against calling the same Keras model directly, of test-time-augmented exports (--tta flip, d4) and of
the stride-2 decoder against the plain export, measured in the same run on the same inputs.

    KERAS_HOME=../shared/weights/keras-home .venv/bin/python bench/train.py [--crop 320 --batch 8]

Prints numbers and ratios only; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: tracing and first-call allocations are not what we measure
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=320, help="training crop edge (default 320, as shipped)")
    parser.add_argument("--batch", type=int, default=8, help="training batch size (default 8, as shipped)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--repeats", type=int, default=10, help="timed inference calls")
    parser.add_argument("--tta", nargs="*", default=["flip", "d4"], help="test-time augmentations to time")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf
    from roadseg.trainer.export import export_savedmodel
    from roadseg.trainer.losses import RoadIoU, RoadLoss
    from roadseg.trainer.model import build_model

    rng = np.random.default_rng(0)
    model = build_model("mobilenetv2", weights=None)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=RoadLoss(), metrics=[RoadIoU()])
    images = rng.integers(0, 256, (args.batch, args.crop, args.crop, 3)).astype(np.float32)
    masks = (rng.random((args.batch, args.crop, args.crop, 1)) < 0.05).astype(np.uint8) * 255
    step_ms = _median_ms(lambda: model.train_on_batch(images, masks), args.steps)
    print(
        f"train: {args.batch} x {args.crop}px per step, {step_ms:.0f} ms/step, "
        f"{args.batch / step_ms * 1000:.2f} images/s ({tf.config.list_physical_devices('GPU') and 'GPU' or 'CPU'})"
    )

    tile = rng.integers(0, 256, (1, 512, 512, 3), dtype=np.uint8)
    tile_float = tile.astype(np.float32)
    keras_ms = _median_ms(lambda: tf.sigmoid(model(tile_float, training=False)).numpy(), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_savedmodel(model, f"{tmp}/1", {"name": "bench"})
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        saved_ms = _median_ms(lambda: serve(images=tf.constant(tile))["probabilities"].numpy(), args.repeats)
        same = np.abs(
            serve(images=tf.constant(tile))["probabilities"].numpy()
            - tf.sigmoid(model(tile_float, training=False)).numpy()
        ).max()
        print(
            f"inference 512x512 tile: keras model {keras_ms:.0f} ms, exported SavedModel {saved_ms:.0f} ms, "
            f"ratio SavedModel/keras {saved_ms / keras_ms:.2f} (max |diff| {same:.1e})"
        )
        for tta in args.tta:
            path = export_savedmodel(model, f"{tmp}/{tta}", {"name": "bench"}, tta=tta)
            augmented = tf.saved_model.load(str(path)).signatures["serving_default"]
            tta_ms = _median_ms(lambda f=augmented: f(images=tf.constant(tile))["probabilities"].numpy(), args.repeats)
            print(f"  export --tta {tta}: {tta_ms:.0f} ms, ratio to --tta none {tta_ms / saved_ms:.2f}")
        # The stride-2 decoder (config decoder_stride: 2) against the published stride-4 one, same run.
        stride2 = build_model("mobilenetv2", weights=None, decoder_stride=2)
        path = export_savedmodel(stride2, f"{tmp}/stride2", {"name": "bench"})
        fine = tf.saved_model.load(str(path)).signatures["serving_default"]
        fine_ms = _median_ms(lambda: fine(images=tf.constant(tile))["probabilities"].numpy(), args.repeats)
        print(f"  decoder_stride 2: {fine_ms:.0f} ms, ratio to decoder_stride 4 {fine_ms / saved_ms:.2f}")


if __name__ == "__main__":
    main()
