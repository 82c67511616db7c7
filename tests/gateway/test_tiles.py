"""Map tiles from the gateway (real app, dark test model, local storage) against rasterio's own warped reads.

The reference for every tile is a rasterio ``WarpedVRT`` onto the tile's Web Mercator grid (256 px, nearest,
alpha for the data's extent) and a plain read of it: the served PNG must be that read, drawn in the layer's
colours, pixel for pixel.
"""

from __future__ import annotations

import io

import morecantile
import numpy as np
import rasterio
import rasterio.warp
from PIL import Image
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform as warp
from roadseg.gateway.tile_render import ROAD_COLOURS, probability_lut
from roadseg.raster import Stretch, to_uint8_rgb, trusted_mosaics
from roadseg.storage import get_storage
from utils.gateway import road_image
from utils.map_data import predict_geotiff, register_mosaic_scene

TMS = morecantile.tms.get("WebMercatorQuad")
#: 0.5 m pixels at 36 deg N are 0.62 m in Web Mercator: zoom 17 (1.19 m) reads an overview-free COG down, 18 close.
ZOOM = 17


def reference_read(path, tile: morecantile.Tile, bands: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(data ``[C, 256, 256]``, valid ``[256, 256]``) of a raster warped onto the tile's grid by rasterio."""
    left, bottom, right, top = TMS.xy_bounds(tile)
    with rasterio.open(path) as ds:
        vrt = WarpedVRT(
            ds,
            crs="EPSG:3857",
            transform=from_bounds(left, bottom, right, top, 256, 256),
            width=256,
            height=256,
            resampling=Resampling.nearest,
            add_alpha=True,
        )
        with vrt:
            data = vrt.read(bands)
            valid = vrt.read(vrt.count) > 0
    return data, valid


def get_png(client, url: str, **headers) -> np.ndarray:
    r = client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))


def corner_tile(path) -> morecantile.Tile:
    """The zoom-17 tile holding the raster's north-west corner: part data, part outside."""
    with rasterio.open(path) as ds:
        (lon,), (lat,) = warp(ds.crs, "EPSG:4326", [ds.bounds.left + 1], [ds.bounds.top - 1])
    return TMS.tile(lon, lat, ZOOM)


def test_prediction_tiles_are_the_warped_cogs_drawn_with_cache_headers(client, tmp_path):
    record, src = predict_geotiff(client, tmp_path)
    job_id = record["id"]
    folder = get_storage().path(f"predictions/{job_id}")
    tile = corner_tile(src)
    base = f"/api/v1/predictions/{job_id}/tiles"
    url = f"{{}}/{tile.z}/{tile.x}/{tile.y}.png"

    image = get_png(client, url.format(f"{base}/image"))
    data, valid = reference_read(folder / "input" / "scene.tif", tile, (1, 2, 3))
    assert 0 < valid.sum() < valid.size  # the corner: data and outside
    assert np.array_equal(image[..., 3], np.where(valid, 255, 0))
    assert np.array_equal(image[..., :3], to_uint8_rgb(data, valid, Stretch()))

    (probability,), valid = reference_read(folder / "probability.tif", tile, (1,))
    served = get_png(client, url.format(f"{base}/probability"))
    expected = probability_lut()[np.clip(probability * 255 + 0.5, 0, 255).astype(np.uint8)]
    expected[..., 3] = np.where(valid, 255, 0)
    assert np.array_equal(served, expected)

    (mask,), valid = reference_read(folder / "mask.tif", tile, (1,))
    roads = (mask > 0) & valid
    assert 0 < roads.sum() < valid.sum()
    for layer in ("surface", "mask", "centerline"):  # a one-output model: the centreline layer is the surface
        served = get_png(client, url.format(f"{base}/{layer}"))
        assert np.array_equal(served[..., 3] > 0, roads), layer
        assert (served[roads] == ROAD_COLOURS["mask"]).all()

    # Cache headers: private (behind auth), an ETag, and 304 for a client that holds it.
    r = client.get(url.format(f"{base}/surface"))
    assert r.headers["cache-control"] == "private, max-age=3600"
    etag = r.headers["etag"]
    again = client.get(url.format(f"{base}/surface"), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    assert client.get(url.format(f"{base}/probability")).headers["etag"] != etag

    # Far from the data: a transparent tile; nonsense: 404/422 with the reason.
    far = get_png(client, f"{base}/surface/{ZOOM}/0/0.png")
    assert far.shape == (256, 256, 4) and not far[..., 3].any()
    assert client.get(f"{base}/roads/{ZOOM}/0/0.png").status_code == 404
    assert client.get(f"{base}/surface/3/8/0.png").status_code == 404
    assert client.get(f"{base}/surface/25/0/0.png").status_code == 422
    assert client.get("/api/v1/predictions/nope/tiles/surface/1/0/0.png").status_code == 404


def test_plain_images_have_no_tiles(client):
    buffer = io.BytesIO()
    Image.fromarray(road_image(200, 200)).save(buffer, format="PNG")
    r = client.post("/api/v1/predictions", files={"file": ("photo.png", buffer.getvalue(), "image/png")})
    assert r.status_code == 201, r.text
    r = client.get(f"/api/v1/predictions/{r.json()['id']}/tiles/surface/0/0/0.png")
    assert r.status_code == 400 and "georeferenced" in r.json()["detail"]


def test_multi_file_scene_tiles_are_its_mosaic_stretched_as_ingest_does(client, tmp_path):
    storage = get_storage()
    record, key = register_mosaic_scene(storage, tmp_path)
    scene_id, stretch = record["id"], Stretch.from_dict(record["stretch"])
    # The tile holding the seam between the two files, at the top edge of the scene.
    (lon,), (lat,) = warp("EPSG:32611", "EPSG:4326", [500150.0], [3999999.0])
    tile = TMS.tile(lon, lat, ZOOM)
    served = get_png(client, f"/api/v1/scenes/{scene_id}/tiles/image/{tile.z}/{tile.x}/{tile.y}.png")
    with trusted_mosaics():
        data, valid = reference_read(storage.path(key), tile, (1, 2, 3))
    assert 0 < valid.sum() < valid.size
    assert np.array_equal(served[..., 3], np.where(valid, 255, 0))
    assert np.array_equal(served[..., :3], to_uint8_rgb(data, valid, stretch))
    assert client.get(f"/api/v1/scenes/{scene_id}/tiles/surface/1/0/0.png").status_code == 404


def test_road_network_in_lonlat_for_maps(client, tmp_path):
    record, src = predict_geotiff(client, tmp_path)
    r = client.get(f"/api/v1/predictions/{record['id']}/roads.geojson")
    assert r.status_code == 200, r.text
    roads = r.json()
    assert roads["type"] == "FeatureCollection" and roads["features"] and "crs" not in roads
    with rasterio.open(src) as ds:
        west, south, east, north = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    coords = np.array([c for f in roads["features"] for c in f["geometry"]["coordinates"]])
    assert (coords[:, 0] >= west - 1e-6).all() and (coords[:, 0] <= east + 1e-6).all()
    assert (coords[:, 1] >= south - 1e-6).all() and (coords[:, 1] <= north + 1e-6).all()
    assert all(f["properties"]["length_m"] > 0 for f in roads["features"])


def test_tiles_read_from_gcs_through_storage_equal_the_local_ones(client, tmp_path, fake_gcs):
    import uuid

    from roadseg.gateway.tile_render import TileSource, render_tile
    from roadseg.storage import GCSStorage

    record, src = predict_geotiff(client, tmp_path)
    local = get_storage()
    gcs = GCSStorage(f"test-{uuid.uuid4().hex[:8]}", "tiles")
    key = f"predictions/{record['id']}/probability.tif"
    gcs.write_bytes(key, local.read_bytes(key))
    tile = corner_tile(src)
    on_disk = render_tile(TileSource(local, key, "probability", "1"), tile.z, tile.x, tile.y)
    in_bucket = render_tile(TileSource(gcs, key, "probability", "1"), tile.z, tile.x, tile.y)
    decoded = [np.asarray(Image.open(io.BytesIO(png))) for png in (on_disk, in_bucket)]
    assert decoded[0][..., 3].any() and np.array_equal(decoded[0], decoded[1])
