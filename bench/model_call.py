"""The exported model's own cost per window on this CPU: batch size, test-time augmentation, threads, XLA.

    nice -n 10 .venv/bin/python bench/model_call.py [--model models/roads] [--window 512] [--repeats 5]
    nice -n 10 .venv/bin/python bench/model_call.py --against var/models/v1 --only-against   # versions side by side

Every figure is milliseconds per window (the median of ``--repeats`` timed calls after a warm-up), on
random uint8 windows, through the SavedModel's signatures as the embedded backend and TF Serving call
them. Rows:

* ``batch B, tta T``: signature ``serving_default`` (the card's TTA) or ``tta_none`` at batch 1/2/4/8;
* ``xla``: the version's weights in this code's serving graph with ``jit_compile=True`` (what an
  export with XLA would serve);
* ``threads intra/inter``: a fresh process with TensorFlow's thread pools set (0 = TF's default), batch 1;
* ``oneDNN off``: a fresh process with ``TF_ENABLE_ONEDNN_OPTS=0`` (TensorFlow's own CPU kernels), batch 1;
* ``first call, new shape``: the first call on a window 16 px larger than any before (the gateway fits
  windows to each image, so a new image size pays this once per process), batch 1;
* ``interleaved``: with ``--against``, ``--model`` and each other version called in turn, one call each
  per round, in one process, batch 1: the host's drifts hit every version alike, so their ratio holds
  where separate runs' absolute figures do not.

The ratios are against ``batch 1`` of the same signature, measured in the same run: the machine's
load changes absolute figures, so compare rows of one run. The line ``load`` reports the 1-minute
load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def per_window_ms(fn, window: int, batch: int, repeats: int) -> float:
    """Median milliseconds per window of ``fn`` on a batch of random windows (one warm-up call first)."""
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, window, window, 3), dtype=np.uint8))
    fn(images)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.asarray(fn(images))
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / batch


def signature_call(version_dir: Path, name: str):
    """A callable images -> probabilities of one signature of the SavedModel."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures[name]
    return lambda images: signature(images=images)["probabilities"]


def xla_call(version_dir: Path, tta: str):
    """The version's served graph (its weights in this code's serving copy), compiled with XLA."""
    from roadseg.trainer.export import keras_model_of, serving_function
    from roadseg.trainer.serving_model import serving_model

    serve = serving_function(serving_model(keras_model_of(version_dir)), tta, jit_compile=True)
    return lambda images: serve(images)["probabilities"]


def interleaved_ms(calls: list, window: int, repeats: int) -> list[float]:
    """Median ms per window of each call, timed in turn round by round on the same random window (batch 1)."""
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(0).integers(0, 256, (1, window, window, 3), dtype=np.uint8))
    for call in calls:
        call(images)
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, own in zip(calls, times, strict=True):
            started = time.perf_counter()
            np.asarray(call(images))
            own.append(time.perf_counter() - started)
    return [1000 * statistics.median(own) for own in times]


def first_call_ms(fn, window: int) -> float:
    """Milliseconds of the first call on a window shape not seen before (oneDNN sets up per shape)."""
    import tensorflow as tf

    started = time.perf_counter()
    np.asarray(fn(tf.zeros((1, window, window, 3), tf.uint8)))
    return 1000 * (time.perf_counter() - started)


def child_ms(args: argparse.Namespace, signature: str, intra: str, inter: str, env: dict[str, str]) -> float:
    """ms per window of one signature at batch 1 in a fresh process with thread pools and ``env`` set."""
    command = [sys.executable, __file__, "--model", args.model, "--window", str(args.window)]
    command += ["--repeats", str(args.repeats), "--child", f"{signature},{intra},{inter}"]
    child = subprocess.run(
        command, capture_output=True, text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    )
    return float(child.stdout.strip().splitlines()[-1])


def threads_child(version_dir: Path, signature: str, window: int, repeats: int, intra: int, inter: int) -> float:
    """Run in a fresh process: thread pools can only be set before TensorFlow starts."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    return per_window_ms(signature_call(version_dir, signature), window, 1, repeats)


def main() -> int:
    """Print one row per configuration with its ratio to batch 1 of the same signature."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "models" / "roads"))
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--threads", default="1/1,2/1,0/0", help="intra/inter pairs for the thread rows")
    parser.add_argument("--against", nargs="+", default=[], help="other versions to time interleaved with --model")
    parser.add_argument("--only-against", action="store_true", help="only the interleaved rows")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # "signature,intra,inter": one thread-setting run
    args = parser.parse_args()

    from roadseg.model_versions import read_card, resolve_savedmodel

    version_dir = resolve_savedmodel(args.model)
    if args.child:
        signature, intra, inter = args.child.split(",")
        print(json.dumps(threads_child(version_dir, signature, args.window, args.repeats, int(intra), int(inter))))
        return 0

    card = read_card(version_dir)
    signatures = {"serving_default": card.get("tta", "none")}
    if "none" in (card.get("tta_options") or []) and card.get("tta") != "none":
        signatures["tta_none"] = "none"
    print(f"model {version_dir} (tta {card.get('tta')}); {args.window}^2 windows; {os.cpu_count()} CPUs")
    print(f"load before: {os.getloadavg()[0]:.2f}")
    print("| signature (tta) | setting | ms / window | ratio to batch 1 |\n|---|---|---|---|", flush=True)
    for signature, tta in signatures.items():
        if args.against:
            others = [resolve_savedmodel(path) for path in args.against]
            calls = [signature_call(path, signature) for path in [version_dir, *others]]
            ours, *theirs = interleaved_ms(calls, args.window, args.repeats)
            print(f"| {signature} ({tta}) | interleaved, batch 1 | {ours:.0f} | 1.00 |", flush=True)
            for path, ms in zip(others, theirs, strict=True):
                print(f"| {signature} ({tta}) | {path}, interleaved | {ms:.0f} | {ours / ms:.2f} |", flush=True)
        if args.only_against:
            continue
        call = signature_call(version_dir, signature)
        base = None
        for batch in map(int, args.batches.split(",")):
            ms = per_window_ms(call, args.window, batch, args.repeats)
            base = base or ms
            print(f"| {signature} ({tta}) | batch {batch} | {ms:.0f} | {base / ms:.2f} |", flush=True)
        try:
            xla = xla_call(version_dir, tta)
            ms = per_window_ms(xla, args.window, 1, args.repeats)
            print(f"| {signature} ({tta}) | xla, batch 1 | {ms:.0f} | {base / ms:.2f} |", flush=True)
        except Exception as exc:  # noqa: BLE001 - report what XLA refuses instead of stopping the bench
            print(f"| {signature} ({tta}) | xla, batch 1 | failed: {type(exc).__name__} | |", flush=True)
        ms = first_call_ms(call, args.window + 16)
        print(f"| {signature} ({tta}) | first call, new shape | {ms:.0f} | {base / ms:.2f} |", flush=True)
        for pair in args.threads.split(","):
            intra, inter = pair.split("/")
            ms = child_ms(args, signature, intra, inter, {})
            print(
                f"| {signature} ({tta}) | threads {intra}/{inter}, batch 1 | {ms:.0f} | {base / ms:.2f} |", flush=True
            )
        ms = child_ms(args, signature, "0", "0", {"TF_ENABLE_ONEDNN_OPTS": "0"})
        print(f"| {signature} ({tta}) | oneDNN off, batch 1 | {ms:.0f} | {base / ms:.2f} |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
