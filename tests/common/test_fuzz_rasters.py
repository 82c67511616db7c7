"""Fuzzing the raster parsing every upload goes through (property-based, bounded, reproducible).

Property: whatever bytes arrive, opening, checking and reading them the way ingest and the gateway
do either works or raises a :class:`RoadsegError` (a 4xx the user can act on) — never another
exception (a 500), never a hang. Inputs are valid small images of each accepted format, mutated
(bytes flipped, cut short, spliced, header fields overwritten), plus arbitrary bytes. Hypothesis runs
derandomized (the same cases in every CI run, no flaky discoveries); ``ROADSEG_FUZZ_EXAMPLES`` raises
the count for a longer local session, e.g. ``ROADSEG_FUZZ_EXAMPLES=5000 pytest tests/common/test_fuzz_rasters.py``.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from rasterio.transform import from_origin
from rasterio.windows import Window
from roadseg import raster
from roadseg.errors import RoadsegError

EXAMPLES = int(os.environ.get("ROADSEG_FUZZ_EXAMPLES", "150"))
MAX_PIXELS = 4096 * 4096


def _pil(fmt: str, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (40, 48, 3 if mode == "RGB" else 1), dtype=np.uint8).squeeze()
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def _gdal(driver: str, dtype: str, count: int, **options) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed"
        data = (np.random.default_rng(1).random((count, 40, 48)) * 3000).astype(dtype)
        profile = {"driver": driver, "width": 48, "height": 40, "count": count, "dtype": dtype}
        profile |= {"crs": "EPSG:32611", "transform": from_origin(500000, 4000000, 0.5, 0.5)} | options
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
        return path.read_bytes()


SEEDS = {
    "png": _pil("PNG"),
    "png-gray": _pil("PNG", "L"),
    "jpeg": _pil("JPEG"),
    "geotiff-uint16": _gdal("GTiff", "uint16", 4, tiled=True, blockxsize=16, blockysize=16, compress="deflate"),
    "geotiff-float32": _gdal("GTiff", "float32", 1, compress="lzw", nodata=-9999),
    "jp2": _gdal("JP2OpenJPEG", "uint8", 3),
}


@st.composite
def mutated(draw) -> bytes:
    """A seed image with a few random edits, or plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=0, max_size=512))
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "overwrite", "truncate", "splice", "header"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if edit == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        elif edit == "truncate":
            del data[at:]
        elif edit == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # the first 64 bytes hold the sizes, offsets and counts parsers trust most
            head = draw(st.integers(0, min(63, max(0, len(data) - 4))))
            data[head : head + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
            )
    return bytes(data)


def parse_like_a_service(path: Path) -> None:
    """What ingest and the gateway do with an upload: open and check it, describe it, stretch it, read it all."""
    with raster.open_checked(path, MAX_PIXELS) as ds:
        raster.scene_info(ds)
        stretch = raster.compute_stretch(ds)
        for row in range(0, ds.height, 16):
            raster.read_rgb_window(ds, Window(0, row, ds.width, min(16, ds.height - row)), stretch)


def test_every_seed_is_a_valid_image(tmp_path):
    for name, data in SEEDS.items():
        (tmp_path / name).write_bytes(data)
        parse_like_a_service(tmp_path / name)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=mutated())
def test_any_bytes_are_read_or_refused_with_a_clear_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        try:
            parse_like_a_service(path)
        except RoadsegError as exc:
            assert str(exc)  # a message for the user
        except Exception as exc:  # noqa: BLE001 - the property under test
            pytest.fail(f"{type(exc).__name__} instead of a clear error: {exc}")


@pytest.fixture(scope="module")
def gateway_client(tmp_path_factory):
    """The gateway app in-process (open local mode, the dark test model, its own storage)."""
    from roadseg.gateway.api import create_app
    from roadseg.inference.predictor import EmbeddedPredictor
    from roadseg.storage import LocalStorage
    from utils.clients import local_client
    from utils.gateway import dark_model

    storage = LocalStorage(tmp_path_factory.mktemp("fuzz") / "storage")
    with local_client(create_app(predictor=EmbeddedPredictor(dark_model() / "1"), storage=storage)) as client:
        yield client, storage


@settings(
    max_examples=max(10, EXAMPLES // 5),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=mutated())
def test_uploads_of_any_bytes_are_predicted_or_refused_and_leave_nothing(gateway_client, data):
    """Through the API: 201 with outputs, or a 4xx naming the problem; a refused upload stores nothing."""
    client, storage = gateway_client
    before = set(storage.list("predictions"))
    r = client.post("/api/v1/predictions", files={"file": ("upload.tif", data, "application/octet-stream")})
    assert r.status_code in (201, 400, 413), r.text
    if r.status_code == 201:
        assert r.json()["status"] == "done" and "mask.png" in r.json()["files"]
    else:
        assert r.json()["detail"] and set(storage.list("predictions")) == before
