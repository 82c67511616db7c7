"""STAC items and the scene collection from the gateway (real app, local storage), read back with pystac."""

from __future__ import annotations

import datetime as dt

import pystac
import pytest
import rasterio
from rasterio.warp import transform as warp
from roadseg.storage import get_storage
from shapely.geometry import Point, shape
from utils.map_data import predict_geotiff, register_mosaic_scene


def round_trip(body: dict, cls: type) -> pystac.STACObject:
    """pystac reads the document and writes it back unchanged."""
    obj = cls.from_dict(body)
    assert obj.to_dict(transform_hrefs=False) == body
    return obj


def unordered_links(body: dict) -> dict:
    """A document with its links sorted (pystac reading from a file puts ``self`` first)."""
    return {**body, "links": sorted(body["links"], key=lambda link: (link["rel"], link["href"]))}


def lonlat_bbox(crs: str, bounds: list[float]) -> list[float]:
    """The lon/lat box of a small projected rectangle: the extremes of its four corners (pyproj)."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    left, bottom, right, top = bounds
    lons, lats = to_lonlat.transform([left, right, right, left], [bottom, bottom, top, top])
    return [min(lons), min(lats), max(lons), max(lats)]


def centre_lonlat(path) -> Point:
    with rasterio.open(path) as ds:
        x, y = (ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2
        (lon,), (lat,) = warp(ds.crs, "EPSG:4326", [x], [y])
    return Point(lon, lat)


def test_prediction_item_round_trips_and_its_hrefs_answer(client, tmp_path):
    record, src = predict_geotiff(client, tmp_path)
    r = client.get(f"/api/v1/predictions/{record['id']}/item.json")
    assert r.status_code == 200, r.text
    item = round_trip(r.json(), pystac.Item)
    assert item.id == record["id"] and item.datetime == dt.datetime.fromtimestamp(record["created"], dt.UTC)
    assert shape(item.geometry).contains(centre_lonlat(src))
    # 512 px of 0.5 m from (500000, 4000000) in UTM 11N: 256 m square, to about a centimetre
    assert item.bbox == pytest.approx(lonlat_bbox("EPSG:32611", [500000, 3999744, 500256, 4000000]), abs=1e-7)
    assert shape(item.geometry).bounds == pytest.approx(item.bbox, abs=1e-9)
    props = item.properties
    assert props["proj:code"] == "EPSG:32611" and props["proj:shape"] == [512, 512]
    assert props["proj:transform"] == [0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0]
    assert props["roadseg:model_version"] == 1 and props["roadseg:model_name"] == "roads"
    assets = item.get_assets()
    assert assets["mask_tif"].media_type == pystac.MediaType.COG and assets["mask_tif"].roles == ["data"]
    assert assets["roads_geojson"].media_type == pystac.MediaType.GEOJSON
    for asset in assets.values():  # every href is this API's, and answers
        assert client.get(asset.href).status_code == 200, asset.href
    xyz = {link.title: link.href for link in item.links if link.rel == "xyz"}
    assert set(xyz) == {"image", "surface", "centerline", "probability"}
    tile = client.get(xyz["surface"].format(z=0, x=0, y=0))
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    assert item.get_self_href().endswith(f"/api/v1/predictions/{record['id']}/item.json")


class ClientIO(pystac.StacIO):
    """pystac reading through the test client: links are followed as a STAC browser follows them."""

    def __init__(self, client) -> None:
        super().__init__()
        self.client = client

    def read_text(self, source, *args, **kwargs) -> str:
        href = source if isinstance(source, str) else source.get_absolute_href()
        r = self.client.get(href)
        assert r.status_code == 200, (href, r.text)
        return r.text

    def write_text(self, dest, txt, *args, **kwargs) -> None:
        raise NotImplementedError("read only")


def test_scene_items_and_the_collection_a_stac_browser_opens(client, tmp_path):
    record, _ = register_mosaic_scene(get_storage(), tmp_path)
    body = client.get("/api/v1/stac/catalog.json").json()
    collection = pystac.Collection.from_file("http://localhost/api/v1/stac/catalog.json", stac_io=ClientIO(client))
    assert unordered_links(collection.to_dict(transform_hrefs=False)) == unordered_links(body)  # round trip
    (item,) = list(collection.get_items())  # the item link, followed through the API
    assert item.id == record["id"]
    assert round_trip(client.get(f"/api/v1/scenes/{record['id']}/item.json").json(), pystac.Item).id == item.id
    assert item.properties["proj:shape"] == [400, 600] and item.properties["roadseg:mosaic_files"] == 2
    assert item.assets["source"].href.endswith("source.vrt") and item.assets["source"].roles == ["data"]
    # two 300 x 400 px parts of 0.5 m side by side from (500000, 4000000): 300 m x 200 m
    assert item.bbox == pytest.approx(lonlat_bbox("EPSG:32611", [500000, 3999800, 500300, 4000000]), abs=1e-7)
    assert collection.extent.spatial.bboxes[0] == pytest.approx(item.bbox)
    (xyz,) = [link.href for link in item.links if link.rel == "xyz"]
    assert client.get(xyz.format(z=0, x=0, y=0)).status_code == 200
    assert client.get("/api/v1/scenes/nope/item.json").status_code == 404
