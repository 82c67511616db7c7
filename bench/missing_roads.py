"""How well `roadseg missing` finds roads a map lacks: a known share of each truth network is hidden from it.

    nice -n 5 .venv/bin/python bench/missing_roads.py [--model models/roads/3] [--tta none] [--seed 0]
        [--screenshot docs/images/missing-review.png]

For every validation tile with a truth mask (Massachusetts Roads valid, 14 tiles at 1 m; CIL-2022 val, 10
tiles, pixel size not published: taken as 0.5 m) and for the SpaceNet Vegas tile with its centrelines:

1. the truth road network: the mask traced by roadseg's own vectorizer (skeleton, cleaning), or Vegas's
   centrelines split where they meet;
2. 20 % of its edges, drawn at random (seeded per tile), are removed: they are the "missing" roads; the
   rest is written to a GeoJSON as the map's existing roads (pixel coordinates for the plain images,
   EPSG:4326 for Vegas);
3. the image goes through the same path as `roadseg missing`: prediction (centreline probabilities),
   existing roads read from the file, predicted network, comparison (default tolerance: half the band + 6 px);
4. recall = length of the removed edges within the tolerance of a missing candidate / removed length;
   precision = candidate length within the tolerance of a removed edge / candidate length (a candidate
   on a road the truth lacks counts as wrong); candidates per km² of image.

Figures are sums over each source's tiles (length-weighted), with the model version that predicted.
``--screenshot`` also serves the review page of the first Massachusetts tile's job (the sources' most
candidates per tile) and saves a Chromium screenshot of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from shapely.geometry import LineString, mapping

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VEGAS = SHARED / "spacenet-vegas"
REMOVED_SHARE = 0.2


@dataclass
class Totals:
    tiles: int = 0
    removed_m: float = 0.0
    removed_found_m: float = 0.0
    candidate_m: float = 0.0
    candidate_right_m: float = 0.0
    candidates: int = 0
    area_km2: float = 0.0
    tolerance_m: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, name: str, model: str) -> str:
        recall = self.removed_found_m / self.removed_m if self.removed_m else float("nan")
        precision = self.candidate_right_m / self.candidate_m if self.candidate_m else float("nan")
        tolerance = sorted(set(self.tolerance_m))
        tol = f"{tolerance[0]:g}" if len(tolerance) == 1 else f"{tolerance[0]:g}-{tolerance[-1]:g}"
        return (
            f"| {name} | {self.tiles} | {self.removed_m / 1000:.2f} | {tol} | {recall:.3f} | {precision:.3f} | "
            f"{self.candidates / self.area_km2:.1f} | {model} | {self.seconds:.0f} |"
        )


def mask_network(mask_path: Path, pixel_size_m: float) -> list[LineString]:
    """The truth mask's road network (pixel coordinates), traced by roadseg's vectorizer."""
    from PIL import Image
    from roadseg.roadnet.graph import mask_to_graph
    from roadseg.roadnet.params import GraphParams

    mask = np.array(Image.open(mask_path).convert("L")) >= 128
    graph = mask_to_graph(mask, params=GraphParams(pixel_size_m=pixel_size_m))
    return [d["geometry"] for _, _, d in graph.edges(data=True)]


def vegas_network(frame) -> list[LineString]:
    """Vegas's centrelines (EPSG:4326, the image's CRS) split where they meet, clipped to the image."""
    from roadseg.roadnet.graph import graph_from_geojson

    graph = graph_from_geojson(json.loads((VEGAS / "AOI_2_Vegas_img0_roads.geojson").read_text()))
    footprint = frame.footprint()
    lines = []
    for _, _, d in graph.edges(data=True):
        part = d["geometry"].intersection(footprint)
        lines.extend(p for p in getattr(part, "geoms", [part]) if isinstance(p, LineString) and p.length > 0)
    return lines


def run_tile(image: Path, truth, pixel_size_m, predictor, settings, rng, storage, tta, tmp: Path, totals: Totals):
    from roadseg import raster
    from roadseg.missing.compare import centreline_probabilities
    from roadseg.missing.frame import Frame
    from roadseg.missing.records import MISSING, all_candidates
    from roadseg.missing.run import prepare_job, run_comparison

    started = time.perf_counter()
    with raster.open_checked(image) as ds:
        info = raster.scene_info(ds)
        frame = Frame.of(info, pixel_size_m)
        lines = truth(frame) if callable(truth) else truth
        removed_index = set(rng.choice(len(lines), size=round(REMOVED_SHARE * len(lines)), replace=False).tolist())
        removed = [line for i, line in enumerate(lines) if i in removed_index]
        existing = [line for i, line in enumerate(lines) if i not in removed_index]
        vectors = tmp / f"{image.stem}.existing.geojson"
        features = [{"type": "Feature", "properties": {}, "geometry": mapping(line)} for line in existing]
        vectors.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        record = prepare_job(
            storage,
            settings,
            info,
            vectors,
            input_name=image.name,
            pixel_size_m=pixel_size_m,
            image_url=image.resolve().as_uri(),
        )
        probabilities = centreline_probabilities(ds, predictor, settings, tmp, tta)
    threshold = predictor.threshold(settings.threshold)
    with rasterio.open(probabilities) as prob:
        record = run_comparison(storage, record["id"], prob, settings, threshold, predictor.describe())
    tolerance = record["tolerance_m"]
    candidates = [frame.to_metric(LineString(c.coordinates)) for c in all_candidates(storage, record, MISSING)]
    removed_m = shapely.union_all([frame.to_metric(line) for line in removed]) if removed else LineString()
    found = shapely.union_all(candidates) if candidates else LineString()
    totals.tiles += 1
    totals.removed_m += removed_m.length
    if candidates:
        totals.removed_found_m += removed_m.intersection(found.buffer(tolerance)).length
        totals.candidate_right_m += found.intersection(removed_m.buffer(tolerance)).length if removed else 0.0
    totals.candidate_m += found.length
    totals.candidates += len(candidates)
    totals.area_km2 += frame.width * frame.height * frame.pixel_size_m**2 / 1e6
    totals.tolerance_m.append(tolerance)
    totals.seconds += time.perf_counter() - started
    return record


def screenshot(storage, job_id: str, out: Path) -> None:
    import os

    import uvicorn
    from PIL import Image
    from playwright.sync_api import sync_playwright
    from roadseg.config import get_settings
    from roadseg.label_service import create_app

    os.environ["ROADSEG_AUTH_MODE"] = "open-local"  # as `make up` serves the page: no sign-in
    get_settings.cache_clear()

    sys.path.insert(0, str(REPO / "tests"))
    from utils.processes import free_port, wait_for_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(storage), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1180, "height": 820})
        page.goto(f"http://127.0.0.1:{port}/missing/{job_id}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#tiles img')].slice(0, 8)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        page.keyboard.press("a")  # one decision, so the page shows one
        page.wait_for_timeout(500)
        shot = out.with_suffix(".full.png")
        page.screenshot(path=str(shot))
        browser.close()
    server.should_exit = True
    thread.join(10)
    image = Image.open(shot).convert("RGB")
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
    image.quantize(colors=64).save(out, optimize=True)  # a small PNG for the README
    shot.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "models" / "roads" / "3"))
    parser.add_argument("--tta", default="none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cil-pixel-size", type=float, default=0.5)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="at most this many tiles per source (0: all)")
    args = parser.parse_args()

    from roadseg.config import get_settings
    from roadseg.inference.predictor import make_predictor
    from roadseg.storage import LocalStorage

    settings = get_settings()
    predictor = make_predictor(settings, args.model)
    model = f"{predictor.name} v{predictor.version} (tta {args.tta})"
    sources = {
        "Massachusetts valid (1 m)": (sorted((SHARED / "massachusetts-valid" / "val" / "images").iterdir()), 1.0),
        f"CIL-2022 val ({args.cil_pixel_size} m assumed)": (
            sorted((SHARED / "cil-2022" / "val" / "images").iterdir()),
            args.cil_pixel_size,
        ),
        "SpaceNet Vegas img0 (0.3 m)": ([VEGAS / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"], None),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-missing-") as tmp:
        storage = LocalStorage(Path(tmp) / "storage")
        first_job = None
        for index, (name, (images, pixel_size_m)) in enumerate(sources.items()):
            totals = Totals()
            for number, image in enumerate(images[: args.limit or None]):
                rng = np.random.default_rng([args.seed, index, number])
                if pixel_size_m is None:
                    truth = vegas_network
                else:
                    mask = image.parent.parent / "masks" / f"{image.stem}.png"
                    truth = mask_network(mask, pixel_size_m)
                work = Path(tmp) / f"{index}-{number}"
                work.mkdir()
                record = run_tile(image, truth, pixel_size_m, predictor, settings, rng, storage, args.tta, work, totals)
                first_job = first_job or record["id"]
                print(f"{name}: {image.name} done ({totals.seconds:.0f} s)", file=sys.stderr, flush=True)
            rows.append(totals.row(name, model))
        print("| source | tiles | removed km | tolerance m | recall | precision | candidates / km² | model | s |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        if args.screenshot and first_job:
            screenshot(storage, first_job, args.screenshot)
            print(f"screenshot: {args.screenshot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
