"""Window size and overlap by measurement: validation accuracy against cost on full images.

    nice -n 10 .venv/bin/python bench/windows.py --model models/roads \
        --data ../shared/data/massachusetts-tiles [--windows 512,768,1024] [--overlaps 0,64,128] [--tta flip]

Each configuration runs ``roadseg evaluate``'s own code (``evaluate_model``) with
``ROADSEG_PREDICT_WINDOW``/``_OVERLAP`` set, on the ``val`` split: the same reading, sliding windows,
Hann blending and test-time augmentation as ``roadseg predict``, the API and the page; the window is
the largest, fitted to each image as they do (``inference.windows.fit_window``). Only images
larger than the window are affected, so use a source of full scenes (the Massachusetts val tiles are
1500 x 1500 px; the 400 px crops fit in any window).

Cost is reported two ways: ``model px / image px`` (pixels the model processes per image pixel,
exact, machine-independent) and seconds per image measured in this run (noisy on a shared machine:
compare rows of one run only). The last row, ``whole``, predicts each image in a single window.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def model_pixels_ratio(sizes: list[tuple[int, int]], largest: int, overlap: int) -> float:
    """Pixels the model sees per image pixel with these windows (1.0 = every pixel once)."""
    from roadseg.inference.windows import fit_window, window_starts

    seen = total = 0
    for height, width in sizes:
        window_h, window_w = fit_window(height, width, largest, overlap)
        rows, cols = window_starts(height, window_h, overlap), window_starts(width, window_w, overlap)
        seen += len(rows) * min(window_h, height) * len(cols) * min(window_w, width)
        total += height * width
    return seen / total


def run(model: str, data: str, window: int, overlap: int, tta: str | None) -> tuple[dict, float]:
    """(evaluation summary, seconds) of one configuration, through the settings users set."""
    from roadseg.config import get_settings
    from roadseg.trainer.evaluate import evaluate_model

    os.environ["ROADSEG_PREDICT_WINDOW"] = str(window)
    os.environ["ROADSEG_PREDICT_OVERLAP"] = str(overlap)
    get_settings.cache_clear()
    started = time.perf_counter()
    report = evaluate_model(model, [data], splits=["val"], tta=tta)
    return report["summary"], time.perf_counter() - started


def main() -> None:
    """Print one markdown row per configuration, then the whole-image row."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "models" / "roads"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "massachusetts-tiles"))
    parser.add_argument("--windows", default="512,768,1024")
    parser.add_argument("--overlaps", default="0,64,128")
    parser.add_argument("--tta", choices=["none", "flip"], help="default: the model card's")
    args = parser.parse_args()

    images = sorted((Path(args.data) / "val" / "images").glob("*"))
    sizes = [Image.open(p).size[::-1] for p in images]
    biggest = max(max(s) for s in sizes)
    whole = int(np.ceil(biggest / 16) * 16)
    print(f"{len(images)} val images of {sorted(set(sizes))} px from {args.data}; model {args.model}", flush=True)
    print("| window | overlap | windows / image | model px / image px | s / image | road IoU | relaxed F1 |")
    print("|---|---|---|---|---|---|---|")
    configs = [(w, o) for w in map(int, args.windows.split(",")) for o in map(int, args.overlaps.split(","))]
    for window, overlap in [*configs, (whole, 0)]:
        summary, seconds = run(args.model, args.data, window, overlap, args.tta)
        from roadseg.inference.windows import count_windows, fit_window

        windows = np.mean([count_windows(h, w, fit_window(h, w, window, overlap), overlap) for h, w in sizes])
        label = "whole" if window == whole else str(window)
        print(
            f"| {label} | {overlap} | {windows:.1f} | {model_pixels_ratio(sizes, window, overlap):.2f} | "
            f"{seconds / len(images):.1f} | {summary['iou_road']:.3f} | {summary['relaxed_f1']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
