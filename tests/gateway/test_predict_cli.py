"""``roadseg predict``: the file contract other tools call, bad inputs, and memory on a 6000 x 6000 image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from PIL import Image
from roadseg.cli import build_parser, main
from utils.gateway import dark_model, road_image, with_card, write_geotiff

#: Allowed peak-RSS growth for predicting 6000 x 6000 (36 Mpx) after a warm-up run. Holding the image
#: as uint8 RGB (108 MB) plus float32 probabilities (144 MB) alone would need 252 MB.
MEMORY_BOUND_MB = 200


def roadseg(*args: str) -> subprocess.CompletedProcess:
    """The command as other tools run it (a fresh process)."""
    return subprocess.run([sys.executable, "-m", "roadseg.cli", *args], capture_output=True, text=True, timeout=300)


def run_inline(capsys, *args: str) -> tuple[int, str, str]:
    """The same command in this process (TensorFlow is already imported: saves seconds per call)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_writes_the_contract_files(tmp_path, capsys):
    model = dark_model()
    inputs = tmp_path / "in"
    inputs.mkdir()
    geo = write_geotiff(inputs / "geo.tif", road_image(300, 400))
    Image.fromarray(road_image(190, 257)).save(inputs / "plain.png")
    Image.fromarray(road_image(333, 200)).save(inputs / "photo.jpg", quality=95)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with rasterio.open(geo) as src:
        rasterio.shutil.copy(src, inputs / "ortho.jp2", driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE=True)
    out = tmp_path / "out"
    files = [geo, inputs / "plain.png", inputs / "broken.png", inputs / "photo.jpg", inputs / "ortho.jp2"]
    args = [*map(str, files), "--out", str(out), "--model", str(model), "--geojson"]
    code, _, err = run_inline(capsys, "predict", *args)
    assert code == 2, err  # one input failed, the others were still written
    assert "broken.png: error:" in err
    expected = {
        "geo.png",
        "geo.tif",
        "geo.geojson",
        "plain.png",
        "plain.geojson",
        "photo.png",
        "photo.geojson",
        "ortho.png",
        "ortho.tif",
        "ortho.geojson",
    }
    assert {p.name for p in out.iterdir()} == expected  # no temp folders, no .aux.xml sidecars
    for stem, (h, w) in {"geo": (300, 400), "plain": (190, 257), "photo": (333, 200), "ortho": (300, 400)}.items():
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) == {0, 255}
        assert (mask[66, 100:180] == 255).all() and (mask[100:140, 100:140] == 0).all()
    for stem in ("geo", "ortho"):
        with rasterio.open(geo) as src, rasterio.open(out / f"{stem}.tif") as dst:
            assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
            assert (dst.read(1) == np.asarray(Image.open(out / f"{stem}.png"))).all()
    roads = json.loads((out / "geo.geojson").read_text())
    assert roads["features"] and roads["roadseg"]["crs"] == "EPSG:32611"


def test_threshold_option_changes_the_mask(tmp_path, capsys):
    Image.fromarray(road_image(200, 200)).save(tmp_path / "a.png")
    sizes = {}
    for t in ("0.01", "0.99"):
        code, _, err = run_inline(
            capsys,
            "predict",
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / t),
            "--model",
            str(dark_model()),
            "--threshold",
            t,
        )
        assert code == 0, err
        assert f"threshold {float(t):.3f}" in err
        sizes[t] = int((np.asarray(Image.open(tmp_path / t / "a.png")) > 0).sum())
    assert sizes["0.01"] > sizes["0.99"]


def test_help_documents_the_contract():
    result = roadseg("predict", "--help")
    assert result.returncode == 0
    assert "DIR/<stem>.png" in result.stdout and "--geojson" in result.stdout and "examples:" in result.stdout
    assert roadseg("serve", "--help").returncode == 0


@pytest.mark.parametrize("given", ["0", "-1", "nan", "inf", "1001", "abc", "automatic"])
def test_a_bad_pixel_size_is_refused_before_any_work(tmp_path, capsys, given):
    """``--pixel-size`` is read as the API reads ``pixel_size_m``: a bad value is argparse's exit 2, nothing done."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        main(["predict", str(tmp_path / "a.png"), "--out", str(out), "--pixel-size", given])
    assert refused.value.code == 2
    assert "argument --pixel-size: the pixel size must be" in capsys.readouterr().err
    assert not out.exists()


def test_pixel_size_auto_and_metres_are_accepted():
    parser = build_parser()
    for given, read in (("auto", "auto"), ("Auto", "auto"), ("0.3", 0.3), ("1000", 1000.0)):
        assert parser.parse_args(["predict", "a.png", "--out", "out", "--pixel-size", given]).pixel_size == read
    assert parser.parse_args(["predict", "a.png", "--out", "out"]).pixel_size is None


def test_a_card_with_plain_pixel_size_auto_predicts_a_plain_image_given_none_as_auto(tmp_path, capsys):
    """``plain_pixel_size: auto`` in the card: no ``--pixel-size`` is ``--pixel-size auto`` (same mask, same
    line); without it a plain image is still taken to be at the model's own resolution, nothing estimated.

    The dark test model finds the 12 px roads of this image surest at half its size (factor 0.5), so the
    chosen scale changes the mask.
    """
    auto_card = with_card(dark_model(), tmp_path / "auto-card", plain_pixel_size="auto")
    Image.fromarray(road_image(300, 300)).save(tmp_path / "a.png")
    runs = {
        "card": (auto_card, []),
        "given": (auto_card, ["--pixel-size", "auto"]),
        "plain card": (dark_model(), []),
    }
    masks, lines, estimated, roads = {}, {}, {}, {}
    for name, (model, extra) in runs.items():
        out = tmp_path / name
        args = [str(tmp_path / "a.png"), "--out", str(out), "--model", str(model), "--geojson", *extra]
        code, lines[name], err = run_inline(capsys, "predict", *args)
        assert code == 0, err
        masks[name] = np.asarray(Image.open(out / "a.png"))
        estimated[name] = err.count("scale chosen by the model: factor")  # the log line of each estimate
        roads[name] = json.loads((out / "a.geojson").read_text())

    def note(line: str) -> str:
        return line[line.index("scale chosen by the model: ") :].strip()

    assert note(lines["card"]) == note(lines["given"]) == "scale chosen by the model: resampling factor 0.5)"
    assert roads["card"] == roads["given"] and roads["card"]["features"]
    assert masks["card"].shape == (300, 300) and (masks["card"] == 255).any()
    assert np.array_equal(masks["card"], masks["given"]) and not np.array_equal(masks["card"], masks["plain card"])
    assert estimated == {"card": 1, "given": 1, "plain card": 0}
    assert "scale chosen" not in lines["plain card"]


def write_big_geotiff(path: Path, size: int, height: int | None = None) -> Path:
    """A ``size`` px wide (and ``height`` or ``size`` high) textured GeoTIFF written block by block."""
    height = height or size
    block = road_image(500, size)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=height,
        count=3,
        dtype="uint8",
        tiled=True,
        compress="deflate",
        crs="EPSG:32611",
        transform=rasterio.Affine(0.5, 0, 500000, 0, -0.5, 4000000),
    ) as ds:
        for row in range(0, height, 500):
            rows = min(500, height - row)
            ds.write(np.moveaxis(block[:rows], -1, 0), window=rasterio.windows.Window(0, row, size, rows))
    return path


MEASURE = textwrap.dedent(
    """
    import json, sys, threading, time
    import psutil
    from roadseg.cli import build_parser, main
    small, big, out, model = sys.argv[1:]
    assert main(["predict", small, "--out", out, "--model", model]) == 0  # warm-up: TF, model, traced shapes
    proc = psutil.Process()
    peak = proc.memory_info().rss
    running = True

    def sample():
        global peak
        while running:
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    assert main(["predict", small, "--out", out, "--model", model]) == 0  # the same width, 1024 rows
    base, peak = peak, proc.memory_info().rss
    started = time.perf_counter()
    assert main(["predict", big, "--out", out, "--model", model]) == 0
    seconds = time.perf_counter() - started
    running = False
    sampler.join()
    print(json.dumps({"base_mb": base / 2**20, "peak_mb": peak / 2**20, "seconds": seconds}))
    """
)


@pytest.mark.slow
def test_6000_square_image_predicts_within_bounded_memory(tmp_path):
    """Memory does not grow with the image's height: rows stream through one band of windows.

    The band is a row of windows across the whole width, so the baseline is the peak while predicting an
    image of the same width and 1024 rows; the 6000 rows may add little to it.
    """
    small = write_big_geotiff(tmp_path / "small.tif", 6000, height=1024)
    big = write_big_geotiff(tmp_path / "big.tif", 6000)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(small), str(big), str(out), str(dark_model())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    growth = measured["peak_mb"] - measured["base_mb"]
    print(
        f"6000x6000 in {measured['seconds']:.1f} s: RSS {measured['base_mb']:.0f} -> {measured['peak_mb']:.0f} MB, "
        f"growth {growth:.0f} MB (bound {MEMORY_BOUND_MB} MB)"
    )
    assert growth < MEMORY_BOUND_MB
    with rasterio.open(out / "big.tif") as ds:
        assert ds.shape == (6000, 6000)
        assert (ds.read(1, window=rasterio.windows.Window(0, 5500, 6000, 500)) == 255).any()
        # A Cloud-Optimized GeoTIFF: overviews down to one block, masks kept 0/255 at every zoom.
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1) == [2, 4, 8, 16]
        assert ds.block_shapes == [(512, 512)]
        overview = ds.read(1, out_shape=(375, 375))
        assert set(np.unique(overview)) <= {0, 255}


def test_images_in_flight_give_the_same_masks_in_the_order_of_the_inputs(tmp_path, capsys):
    """--jobs 3 overlaps reading and writing with the (one-at-a-time) model calls; nothing else changes."""
    inputs = [tmp_path / f"img{i}.png" for i in range(5)]
    for i, path in enumerate(inputs):
        Image.fromarray(road_image(180 + 40 * i, 220, seed=i)).save(path)
    printed = {}
    for jobs in ("1", "3"):
        args = [*map(str, inputs), "--out", str(tmp_path / jobs), "--model", str(dark_model()), "--jobs", jobs]
        code, out, err = run_inline(capsys, "predict", *args)
        assert code == 0, err
        printed[jobs] = [line.split(":")[0] for line in out.splitlines()]
    assert printed["1"] == printed["3"] == [str(p) for p in inputs]
    for path in inputs:
        one = np.asarray(Image.open(tmp_path / "1" / f"{path.stem}.png"))
        assert (one == np.asarray(Image.open(tmp_path / "3" / f"{path.stem}.png"))).all() and one.max() == 255


def test_tensorflow_threads_follow_the_setting(tmp_path):
    """ROADSEG_TF_THREADS sizes an embedded model's thread pools (a container's CPU limit, not the node's cores)."""
    image = tmp_path / "a.png"
    Image.fromarray(road_image(64, 64)).save(image)
    model = str(dark_model() / "1")
    code = (
        "import sys, tensorflow as tf; from roadseg.cli import main; rc = main(sys.argv[1:]); "
        "print('threads', tf.config.threading.get_intra_op_parallelism_threads(), "
        "tf.config.threading.get_inter_op_parallelism_threads()); sys.exit(rc)"
    )
    env = {**os.environ, "ROADSEG_TF_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, "predict", str(image), "--out", str(tmp_path / "out"), "--model", model],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "threads 1 1" in done.stdout and "TensorFlow threads: 1 intra-op, 1 inter-op" in done.stderr
