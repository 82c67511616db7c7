"""Storage backends: local filesystem and GCS (real fake-gcs-server), same behaviour on both."""

from __future__ import annotations

import io
import threading
import uuid

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from roadseg.errors import NotFound, TooLarge, UnsafeName
from roadseg.storage import GCSStorage, LocalStorage, Storage, safe_filename, safe_key, storage_from_url


@pytest.fixture(params=["local", "gcs"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    request.getfixturevalue("fake_gcs")
    return GCSStorage(f"test-{uuid.uuid4().hex[:8]}", "some/prefix")


def test_write_read_list_delete(storage: Storage):
    storage.write_bytes("a/b/one.bin", b"1234")
    storage.write_text("a/two.txt", "hello")
    storage.write_bytes("other/x", b"x")
    assert storage.read_bytes("a/b/one.bin") == b"1234"
    assert storage.read_text("a/two.txt") == "hello"
    assert storage.size("a/b/one.bin") == 4
    assert storage.list("a") == ["a/b/one.bin", "a/two.txt"]
    assert storage.list("a/b/one.bin") == ["a/b/one.bin"]
    assert "other/x" in storage.list()
    assert storage.exists("a/two.txt") and not storage.exists("a/three")
    storage.delete("a/two.txt")
    storage.delete("a/two.txt")  # idempotent
    assert storage.list("a") == ["a/b/one.bin"]
    assert storage.delete_prefix("a") == 1
    assert storage.list("a") == []
    with pytest.raises(NotFound):
        storage.read_bytes("a/b/one.bin")


def test_size_limit_stores_nothing(storage: Storage):
    with pytest.raises(TooLarge):
        storage.write_stream("big.bin", io.BytesIO(b"x" * 5000), max_bytes=4096)
    assert not storage.exists("big.bin")
    assert storage.list() == []


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs/path", "a/../../b", "a\\b", "a//b", "a/./b", "nul\x00"])
def test_path_tricks_are_refused(storage: Storage, bad: str):
    with pytest.raises(UnsafeName):
        storage.write_bytes(bad, b"x")
    assert storage.list() == []


def test_safe_names():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\x\\scene 1.tif") == "scene_1.tif"
    assert safe_filename("..") == "upload"
    assert safe_key("scenes", "abc", "tiles/t.tif") == "scenes/abc/tiles/t.tif"


def test_local_write_is_atomic(tmp_path):
    """A reader never sees a partial object: the final name appears only after the last byte."""
    storage = LocalStorage(tmp_path)
    seen_sizes: list[int] = []
    stop = threading.Event()

    def watch():
        path = storage.path("obj.bin")
        while not stop.is_set():
            if path.exists():
                seen_sizes.append(path.stat().st_size)

    class Slow(io.RawIOBase):
        def __init__(self):
            self.left = 40

        def read(self, n=-1):
            if self.left == 0:
                return b""
            self.left -= 1
            return b"y" * 65536

    watcher = threading.Thread(target=watch)
    watcher.start()
    storage.write_stream("obj.bin", Slow())
    stop.set()
    watcher.join()
    assert set(seen_sizes) <= {40 * 65536}
    assert [p.name for p in tmp_path.iterdir()] == ["obj.bin"]


def test_a_batch_shows_files_only_whole_and_on_disk_in_groups(storage: Storage):
    """Files of a batch (a scene's tiles) appear in groups once durable; a failed block leaves no part behind."""
    with storage.batch(size=2) as write:
        write("b/one", b"1")
        if isinstance(storage, LocalStorage):  # made durable with the second file
            assert storage.list("b") == [] and list((storage.root / "b").glob(".one.*.part"))
        write("b/two", b"22")
        assert storage.list("b") == ["b/one", "b/two"]
        write("b/three", b"333")
    assert storage.read_bytes("b/three") == b"333"  # the rest at the end of the block

    with pytest.raises(RuntimeError), storage.batch(size=2) as write:
        write("c/one", b"1")
        raise RuntimeError("the worker's task failed")
    if isinstance(storage, LocalStorage):
        assert storage.list("c") == [] and not list((storage.root / "c").iterdir())


def test_raster_windows_are_read_from_both_backends(storage: Storage, tmp_path):
    data = np.arange(3 * 300 * 200, dtype=np.uint16).reshape(3, 300, 200) % 6000
    path = tmp_path / "scene.tif"
    profile = dict(
        driver="GTiff",
        width=200,
        height=300,
        count=3,
        dtype="uint16",
        crs="EPSG:32611",
        transform=from_origin(500000, 4000000, 0.5, 0.5),
        tiled=True,
        blockxsize=64,
        blockysize=64,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    storage.write_file("scenes/s1/source.tif", path)
    with storage.open_raster("scenes/s1/source.tif") as ds:
        assert ds.crs.to_epsg() == 32611
        assert ds.transform == profile["transform"]
        window = ds.read(window=Window(50, 100, 64, 32))
    np.testing.assert_array_equal(window, data[:, 100:132, 50:114])


def test_storage_from_url(tmp_path, fake_gcs):
    assert isinstance(storage_from_url(tmp_path.as_uri()), LocalStorage)
    gcs = storage_from_url("gs://roadseg-url-test/models")
    assert isinstance(gcs, GCSStorage) and gcs.url == "gs://roadseg-url-test/models"
    with pytest.raises(ValueError):
        storage_from_url("s3://bucket/x")


def test_a_bucket_created_by_a_peer_in_between_is_used(fake_gcs, monkeypatch):
    """Services starting together race to create the emulator bucket: the loser's 409 is not an error."""
    from google.cloud import storage as gcs

    name = f"race-{uuid.uuid4().hex[:8]}"
    GCSStorage(name).write_text("peer.txt", "first")
    # Our existence check runs before the peer's create lands: it says "missing", create gets 409.
    monkeypatch.setattr(gcs.Bucket, "exists", lambda self, *args, **kwargs: False)
    late = GCSStorage(name)
    assert late.read_text("peer.txt") == "first"
