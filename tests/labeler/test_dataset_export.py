"""Datasets: spatial-block split without leakage, review decisions respected, folder import (docs/contracts.md §3).

Scenes and image folders are the synthetic stand-ins in tests/data (utils.geodata), in the formats of ../shared.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from roadseg.cli import main
from roadseg.labeler.split import block_of, grid_position, split_grid_tiles
from roadseg.storage import get_storage
from utils.clients import local_client
from utils.labeler import VEGAS_IMAGE, VEGAS_ROADS, ingest_scene
from utils.paths import DATA


def _read_dataset(folder):
    """{tile_id: (split, image, mask)} from every shard listed in the manifest."""
    import tensorflow as tf
    from roadseg.tfrecords import parse_example, parse_metadata

    manifest = json.loads((folder / "manifest.json").read_text())
    result = {}
    for split, part in manifest["splits"].items():
        for shard in part["shards"]:
            for raw in tf.data.TFRecordDataset(str(folder / shard)):
                image, mask = parse_example(raw)
                tile_id = parse_metadata(raw)["tile_id"]
                assert tile_id not in result, f"{tile_id} exported twice"
                result[tile_id] = (split, image.numpy(), mask.numpy()[..., 0])
    return manifest, result


def test_block_split_has_no_leakage_and_is_seeded():
    tiles = [(scene, f"r{r:04d}_c{c:04d}") for scene in ("a", "b") for r in range(12) for c in range(12)]
    splits = split_grid_tiles(tiles, block_tiles=3, seed=5)
    assert set(splits) == set(tiles)  # every tile in exactly one split
    counts = Counter(splits.values())
    assert counts["train"] == pytest.approx(0.8 * len(tiles), abs=9) and counts["val"] > 0 and counts["test"] > 0
    by_block: dict = {}
    for (scene, tile_id), split in splits.items():
        by_block.setdefault(block_of(scene, tile_id, 3), set()).add(split)
    assert all(len(s) == 1 for s in by_block.values())  # neighbours inside a block share the split
    # Every tile has a same-split neighbour: no tile is isolated from its block.
    for (scene, tile_id), split in splits.items():
        row, col = grid_position(tile_id)
        steps = ((0, 1), (0, -1), (1, 0), (-1, 0))
        near = [splits.get((scene, f"r{row + dr:04d}_c{col + dc:04d}")) for dr, dc in steps]
        assert split in near
    assert split_grid_tiles(tiles, block_tiles=3, seed=5) == splits
    assert split_grid_tiles(tiles, block_tiles=3, seed=6) != splits
    # Overlapping tiles: val/test tiles next to another split are dropped, train keeps its tiles.
    guarded = split_grid_tiles(tiles, block_tiles=3, seed=5, overlap=16)
    assert {k for k, v in guarded.items() if v is None} and all(guarded[k] in (None, v) for k, v in splits.items())
    assert all(guarded[k] == "train" for k, v in splits.items() if v == "train")


def test_review_decisions_over_http_are_respected_by_the_export(settings_env, tmp_path, capsys):
    from roadseg.label_service import create_app

    storage = get_storage()
    folder = DATA / "spacenet-vegas"
    ingest_scene(storage, "vegas", folder, VEGAS_IMAGE, 64)
    assert (
        main(
            [
                "label",
                "vegas",
                "--vectors",
                str(folder / VEGAS_ROADS),
                "--width-attr",
                "lane_number",
                "--lane-width",
                "3.7",
            ]
        )
        == 0
    )
    run_id = capsys.readouterr().out.split()[2]
    manifest = json.loads(storage.read_text(f"labels/{run_id}/manifest.json"))
    flagged = [e["id"] for e in manifest["tiles"] if e["flags"]]
    clean = [e["id"] for e in manifest["tiles"] if not e["flags"]]
    # 25 tiles: the desert, the padded edges and the tiles the main road fills are flagged; the west street
    # is painted 1.5 m east of its vector, so its two unpadded tiles are flagged misaligned.
    assert clean == ["r0001_c0001", "r0001_c0002", "r0002_c0003", "r0003_c0002", "r0003_c0003"]
    assert [e["id"] for e in manifest["tiles"] if e["flags"] == ["misaligned"]] == ["r0002_c0000", "r0003_c0000"]
    reject, accept = clean[0], "r0002_c0000"

    client = local_client(create_app())
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert page.text.index(f'data-tile="{flagged[0]}"') < page.text.index(f'data-tile="{clean[0]}"')  # flagged first
    assert "/static/vendor/htmx.min.js" in page.text and client.get("/static/vendor/htmx.min.js").status_code == 200
    png = client.get(f"/runs/{run_id}/tiles/{accept}/overlay.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    card = client.post(f"/runs/{run_id}/tiles/{reject}/decision", data={"decision": "reject"})
    assert card.status_code == 200 and "rejected" in card.text and f'id="tile-{reject}"' in card.text
    assert "accepted" in client.post(f"/runs/{run_id}/tiles/{accept}/decision", data={"decision": "accept"}).text
    assert client.post(f"/runs/{run_id}/tiles/{accept}/decision", data={"decision": "maybe"}).status_code == 400
    assert client.post(f"/runs/{run_id}/tiles/nope/decision", data={"decision": "accept"}).status_code == 404
    decisions = client.get(f"/api/v1/label-runs/{run_id}/decisions").json()
    assert decisions["decisions"] == {reject: "reject", accept: "accept"} and decisions["undecided"] == 23
    assert client.get("/docs").status_code == 200

    out = tmp_path / "dataset"
    assert main(["dataset", "export", run_id, "--out", str(out), "--block-tiles", "2", "--shard-size", "8"]) == 0
    ds_manifest, examples = _read_dataset(out)
    exported = {tile_id.split("/")[1] for tile_id in examples}
    assert exported == (set(clean) - {reject}) | {accept}
    assert ds_manifest["excluded"] == {"rejected": 1, "flagged": len(flagged) - 1}
    assert sum(p["examples"] for p in ds_manifest["splits"].values()) == len(exported)
    assert all(
        name.endswith(f"-of-{len(p['shards']):05d}.tfrecord")
        for p in ds_manifest["splits"].values()
        for name in p["shards"]
    )
    split, image, mask = examples[f"vegas/{accept}"]
    with storage.open_raster(f"labels/{run_id}/masks/{accept}.tif") as ds:
        np.testing.assert_array_equal(mask, ds.read(1))
    with storage.open_raster(f"scenes/vegas/tiles/{accept}.tif") as ds:
        np.testing.assert_array_equal(image, np.moveaxis(ds.read([1, 2, 3]), 0, -1))


def _subset(source, dest, splits, per_split):
    """A small copy (symlinks) of an image/mask folder tree, so the test stays fast."""
    for split in splits:
        for kind in ("images", "masks"):
            (dest / split / kind).mkdir(parents=True)
        for image in sorted((source / split / "images").iterdir())[:per_split]:
            mask = next((source / split / "masks").glob(image.stem + ".*"))
            (dest / split / "images" / image.name).symlink_to(image)
            (dest / split / "masks" / mask.name).symlink_to(mask)
    return dest


@pytest.mark.parametrize(
    ("name", "splits"), [("massachusetts-crops", ("train", "val", "test")), ("cil-2022", ("train", "val"))]
)
def test_import_folder_keeps_splits_and_pixels(tmp_path, name, splits):
    from PIL import Image

    source = DATA / name
    folder = _subset(source, tmp_path / name, splits, 3)
    out = tmp_path / "out"
    assert main(["dataset", "import-folder", str(folder), "--out", str(out)]) == 0
    manifest, examples = _read_dataset(out)
    assert {s: p["examples"] for s, p in manifest["splits"].items() if p["examples"]} == {s: 3 for s in splits}
    tile_id, (split, image, mask) = sorted(examples.items())[0]
    stem = tile_id.split("/")[-1]
    original = next((source / split / "images").glob(stem + ".*"))
    np.testing.assert_array_equal(image, np.asarray(Image.open(original).convert("RGB")))
    assert image.shape == (64, 64, 3) and set(np.unique(mask)) == {0, 255}  # every stand-in crop has a road
