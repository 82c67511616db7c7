"""Masks from vectors: the solaris reference mask, SpaceNet Vegas lane widths, the edges method, width rules.

The solaris reference mask and the lane widths on the real Vegas imagery need ../shared (a published
reference output; roads checked by eye on the real image); the rest runs on tests/data or tiles made here.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from roadseg.labeler.run import LabelOptions, label_raster_file, label_run, prepare_run
from roadseg.labeler.widths import WidthSpec
from roadseg.storage import LocalStorage
from shapely.geometry import LineString, box
from utils.labeler import (
    VEGAS_BACKGROUND_PIXELS,
    VEGAS_IMAGE,
    VEGAS_ROAD_PIXELS,
    VEGAS_ROADS,
    ingest_scene,
    mosaic,
)
from utils.paths import DATA


def test_solaris_reference_mask_is_reproduced_exactly(shared_dir, tmp_path):
    folder = shared_dir / "data" / "solaris-road-mask"
    out = tmp_path / "mask.tif"
    record = label_raster_file(
        folder / "road_mask_input.tif",
        folder / "sample_roads_for_masking.geojson",
        out,
        LabelOptions(widths=WidthSpec(width=4.0)),
    )
    with rasterio.open(out) as got, rasterio.open(folder / "sample_road_raster_mask.tif") as expected:
        assert got.transform == expected.transform and got.crs == expected.crs
        mask, reference = got.read(1), expected.read(1)
    assert int((reference == 255).sum()) == 56_416
    np.testing.assert_array_equal(mask, reference)
    assert record["vectors"]["roads"]["kept"] == 9


def _lane_run(folder, tile_size, tmp_path_factory):
    """The scene in ``folder`` ingested as ``tile_size`` px tiles and labeled with lane_number x 3.7 m."""
    storage = LocalStorage(tmp_path_factory.mktemp("vegas") / "storage")
    ingest_scene(storage, "vegas", folder, VEGAS_IMAGE, tile_size)
    options = LabelOptions(widths=WidthSpec(width_attr="lane_number", lane_width=3.7))
    record = prepare_run(storage, "vegas", folder / VEGAS_ROADS, options)
    return storage, label_run(storage, record.id)


def test_vegas_lane_widths_put_road_pixels_on_visible_roads(shared_dir, artifacts_dir, tmp_path_factory):
    from roadseg.labeler.overlay import overlay, png_bytes

    storage, manifest = _lane_run(shared_dir / "data" / "spacenet-vegas", 256, tmp_path_factory)
    assert manifest["counts"]["tiles"] == 36
    with rasterio.open(shared_dir / "data" / "spacenet-vegas" / VEGAS_IMAGE) as ds:
        image = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
    full = mosaic(storage, manifest, 1300, 1300)
    (artifacts_dir / "label_vegas_overlay.png").write_bytes(png_bytes(overlay(image, full, alpha=0.4)))
    for row, col in VEGAS_ROAD_PIXELS:
        assert full[row - 3 : row + 4, col - 3 : col + 4].min() == 255, (row, col)
    for row, col in VEGAS_BACKGROUND_PIXELS:
        assert full[row - 3 : row + 4, col - 3 : col + 4].max() == 0, (row, col)
    # A 3-lane carriageway is 3 x 3.7 = 11.1 m wide: 37 px north-south at 2.7e-6 deg (0.30 m) per pixel.
    column = full[380:520, 300]
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, column == 255, 0])))[::2]
    assert max(runs) == pytest.approx(11.1 / (2.7e-6 * 111_000), abs=1.5)


def test_vegas_masks_align_with_tiles_and_mark_nodata(tmp_path_factory):
    """On the 280 px Vegas-like stand-in in 64 px tiles: the bottom row keeps 24 rows of 64 (62.5 % padding)."""
    storage, manifest = _lane_run(DATA / "spacenet-vegas", 64, tmp_path_factory)
    # The bottom row, padded (mostly nodata), where the south street (one lane, 3.7 m) leaves the scene.
    entry = next(e for e in manifest["tiles"] if e["id"] == "r0004_c0003")
    with storage.open_raster(entry["tile_key"]) as tile, storage.open_raster(entry["mask_key"]) as mask_ds:
        assert (mask_ds.transform, mask_ds.crs, mask_ds.shape) == (tile.transform, tile.crs, tile.shape)
        assert mask_ds.count == 1 and mask_ds.dtypes[0] == "uint8"
        mask, valid = mask_ds.read(1), tile.dataset_mask() > 0
    assert set(np.unique(mask[~valid])) == {127}
    assert set(np.unique(mask[valid])) == {0, 255}
    assert entry["flags"] == ["nodata"] and entry["nodata_fraction"] == 0.625
    # 3.7 m is 15.3 px of 0.24 m (east-west) around the centreline at x = 200: the 16 pixel centres 192.5 to
    # 207.5 are within 7.6 px of it, tile columns 0 to 15.
    assert np.flatnonzero(mask[0] == 255).tolist() == list(range(16))
    top = next(e for e in manifest["tiles"] if e["id"] == "r0000_c0002")  # desert: no road vectors
    assert top["flags"] == ["no_road"] and top["road_fraction"] == 0


def _grid_tile(tmp_path, size=100, crs="EPSG:32611"):
    """A blank 1 m/px GeoTIFF whose pixel (row, col) covers x in [col, col+1], y in [size-row-1, size-row] (+offset)."""
    from rasterio.transform import from_origin

    path = tmp_path / "tile.tif"
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": from_origin(500_000, 4_000_000 + size, 1.0, 1.0),
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((3, size, size), 90, np.uint8))
    return path


def _local(coords):
    """Tile-local metres to EPSG:32611 coordinates of the test tile."""
    return [(500_000 + x, 4_000_000 + y) for x, y in coords]


def test_edges_mode_street_grid_with_dead_end_and_border_crossings(tmp_path):
    """Streets: a through street along y=50 (crosses both side borders), a street up x=30 (crosses the top
    border), and a dead end down x=70 closed by a curb cap at y=15. Curbs bound three blocks."""
    import geopandas as gpd
    from roadseg.labeler.edges import edge_road_polygons
    from roadseg.labeler.rasterize import TileGrid

    curbs = [
        LineString(_local([(0, 56), (24, 56), (24, 100)])),  # top-left block
        LineString(_local([(36, 100), (36, 56), (100, 56)])),  # top-right block
        LineString(_local([(0, 44), (65, 44), (65, 15), (75, 15), (75, 44), (100, 44)])),  # bottom block + dead end
    ]
    centerlines = [
        LineString(_local([(-20, 50), (120, 50)])),  # leaves the tile on both sides
        LineString(_local([(30, 50), (30, 130)])),
        LineString(_local([(70, 50), (70, 15)])),  # ends ON the dead-end cap: touching a block is not entering it
    ]
    edges_file = tmp_path / "curbs.gpkg"
    roads_file = tmp_path / "centerlines.gpkg"
    gpd.GeoDataFrame(geometry=curbs, crs="EPSG:32611").to_file(edges_file)
    gpd.GeoDataFrame(geometry=centerlines, crs="EPSG:32611").to_file(roads_file)

    tile = _grid_tile(tmp_path)
    with rasterio.open(tile) as ds:
        grid = TileGrid.from_dataset(ds)
    polygons = edge_road_polygons(gpd.GeoDataFrame(geometry=curbs), gpd.GeoDataFrame(geometry=centerlines), grid)
    expected = shapely.union_all(
        [
            box(*_local([(0, 44), (100, 56)])[0], *_local([(0, 44), (100, 56)])[1]),
            box(*_local([(24, 56)])[0], *_local([(36, 100)])[0]),
            box(*_local([(65, 15)])[0], *_local([(75, 44)])[0]),
        ]
    )
    got = shapely.union_all(polygons)
    assert len(polygons) == 1  # one connected street face; no block was taken
    assert got.symmetric_difference(expected).area == pytest.approx(0, abs=1e-6)

    out = tmp_path / "mask.tif"
    label_raster_file(tile, roads_file, out, LabelOptions(mode="edges"), edge_vectors=edges_file)
    with rasterio.open(out) as ds:
        mask = ds.read(1)
    assert int((mask == 255).sum()) == 100 * 12 + 12 * 44 + 10 * 29
    row = lambda y: 100 - y - 1  # noqa: E731 - pixel row whose centre is at y + 0.5
    assert mask[row(20), 70] == 255  # inside the dead end
    assert mask[row(10), 70] == 0  # beyond its cap
    assert mask[row(50), 0] == 255 and mask[row(50), 99] == 255  # the street at both border crossings
    assert mask[row(99), 30] == 255 and mask[row(99), 10] == 0  # top border: street vs block


def test_width_rules_table_attribute_and_fallback():
    import pandas as pd

    frame = pd.DataFrame({"road_type": ["1", 5, 6.0, "9", None], "lanes": ["2", "x", None, 0, 3]})
    table = WidthSpec(table_attr="road_type")
    np.testing.assert_allclose(table.widths(frame), [16.0, 7.0, 6.0, 6.0, 6.0])  # unknown class -> fallback
    lanes = WidthSpec(width=5.0, width_attr="lanes", lane_width=3.5)
    np.testing.assert_allclose(lanes.widths(frame), [7.0, 5.0, 5.0, 5.0, 10.5])
    assert WidthSpec(width_attr="nope").check_columns(frame.columns).startswith("attribute 'nope' not found")


def test_width_is_metres_whatever_the_tile_crs(tmp_path):
    """The same 10 m road on a tile in UTM and on a tile in degrees covers the same ground width."""
    import geopandas as gpd
    from rasterio.transform import from_origin
    from roadseg.labeler.rasterize import TileGrid, burn, centerline_shapes

    line = LineString(_local([(0, 50), (100, 50)]))
    roads = gpd.GeoDataFrame(geometry=[line], crs="EPSG:32611")
    utm = TileGrid(from_origin(500_000, 4_000_100, 0.5, 0.5), rasterio.crs.CRS.from_epsg(32611), 200, 200)
    utm_mask = burn(centerline_shapes(roads, WidthSpec(width=10.0), utm), utm)
    assert (utm_mask[:, 100] == 255).sum() == 20  # 10 m at 0.5 m/px
    lonlat = roads.to_crs(4326)
    x0, y1 = lonlat.total_bounds[0], lonlat.total_bounds[3] + 0.0003
    deg = TileGrid(from_origin(x0, y1, 5e-6, 5e-6), rasterio.crs.CRS.from_epsg(4326), 200, 200)
    deg_mask = burn(centerline_shapes(lonlat, WidthSpec(width=10.0), deg), deg)
    rows = np.flatnonzero(deg_mask[:, 100] == 255)
    metres_per_px = 5e-6 * 111_000  # about 0.555 m north-south per 5e-6 degree
    assert len(rows) * metres_per_px == pytest.approx(10.0, abs=1.2)


def test_road_just_outside_the_tile_still_paints_its_edge():
    """A centerline 3 m north of the tile with a 10 m width reaches 2 m (2 px) into the tile."""
    import geopandas as gpd
    from rasterio.transform import from_origin
    from roadseg.labeler.rasterize import TileGrid
    from roadseg.labeler.run import TileLabeler

    grid = TileGrid(from_origin(500_000, 4_000_100, 1.0, 1.0), rasterio.crs.CRS.from_epsg(32611), 100, 100)
    roads = gpd.GeoDataFrame(geometry=[LineString(_local([(-50, 103), (150, 103)]))], crs="EPSG:32611")
    mask, used = TileLabeler(LabelOptions(widths=WidthSpec(width=10.0)), roads).mask(grid, None)
    assert used == 1
    assert (mask[:2] == 255).all() and (mask[2:] == 0).all()


def test_burn_matches_rasterio_on_holes_and_multipolygons():
    """Polygons reach rasterio as coordinate lists (not ``__geo_interface__``): the same pixels, holes included."""
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.features import rasterize
    from roadseg.labeler.rasterize import TileGrid, burn
    from shapely.geometry import MultiPolygon, Point

    grid = TileGrid(Affine(0.5, 0, 100.0, 0, -0.5, 200.0), CRS.from_epsg(32611), 96, 80)
    ring = Point(120, 180).buffer(15).difference(Point(121, 179).buffer(6))  # a polygon with a hole
    parts = MultiPolygon([box(101, 161, 110, 199), box(135, 165, 146, 170)])
    line = LineString([(100, 200), (148, 160)]).buffer(1.2)
    shapes = [ring, parts, line]
    expected = rasterize([(g, 255) for g in shapes], out_shape=(80, 96), transform=grid.transform, dtype="uint8")
    mask = burn(shapes, grid)
    assert (mask == expected).all() and 500 < (mask == 255).sum() < 80 * 96 and mask[40, 40] == 0  # hole stays 0


@pytest.mark.parametrize("epsg", [32611, 4326, 2154])
def test_mask_geotiff_reads_back_like_gdals(epsg):
    """The direct mask encoder: same pixels, CRS, transform and codec as GDAL's; GDAL where it cannot say it."""
    from affine import Affine
    from pyproj import CRS
    from rasterio.io import MemoryFile
    from roadseg.geotiff import mask_geotiff
    from roadseg.labeler.rasterize import TileGrid
    from roadseg.labeler.run import write_mask_bytes

    rng = np.random.default_rng(epsg)
    mask = np.where(rng.random((200, 256)) > 0.8, 255, 0).astype(np.uint8)
    mask[:5] = 3  # ignore value
    origin = (-115.3, 36.2) if epsg == 4326 else (650000.5, 6860000.25)
    size = 2.7e-6 if epsg == 4326 else 0.5
    grid = TileGrid(Affine(size, 0, origin[0], 0, -size, origin[1]), CRS.from_epsg(epsg), 256, 200)
    direct = write_mask_bytes(mask, grid)
    assert direct == mask_geotiff(mask, grid.transform, grid.crs.to_wkt())
    with MemoryFile(direct) as mf, mf.open() as ds:
        assert ds.crs.to_epsg() == epsg and ds.transform == grid.transform and ds.compression.value == "DEFLATE"
        assert ds.count == 1 and ds.dtypes == ("uint8",) and (ds.read(1) == mask).all()
    rotated = TileGrid(Affine(size, size / 10, origin[0], size / 10, -size, origin[1]), grid.crs, 256, 200)
    assert mask_geotiff(mask, rotated.transform, grid.crs.to_wkt()) is None
    with MemoryFile(write_mask_bytes(mask, rotated)) as mf, mf.open() as ds:  # GDAL wrote it
        assert ds.transform == rotated.transform and (ds.read(1) == mask).all()


def test_every_tile_gets_a_centreline_band_of_one_ground_width_beside_its_surface():
    """A 10 m wide road: 10 rows of surface, and a band of 4 m (the option) centred on its line."""
    import geopandas as gpd
    from rasterio.transform import from_origin
    from roadseg.labeler.rasterize import TileGrid
    from roadseg.labeler.run import TileLabeler

    grid = TileGrid(from_origin(500_000, 4_000_100, 1.0, 1.0), rasterio.crs.CRS.from_epsg(32611), 100, 100)
    roads = gpd.GeoDataFrame(geometry=[LineString(_local([(-50, 50), (150, 50)]))], crs="EPSG:32611")
    options = LabelOptions(widths=WidthSpec(width=10.0), band_width_m=4.0)
    surface, band, used = TileLabeler(options, roads).masks(grid, None)
    assert used == 1
    assert np.flatnonzero(surface[:, 50] == 255).tolist() == list(range(45, 55))
    assert np.flatnonzero(band[:, 50] == 255).tolist() == list(range(48, 52))
    assert "band_width_m" not in LabelOptions().to_dict()  # runs made before the option keep their ids
    with pytest.raises(Exception, match="band width"):
        LabelOptions(band_width_m=0)


def test_a_single_raster_gets_its_centreline_mask_beside_the_surface_mask(tmp_path):
    import geopandas as gpd

    tile = _grid_tile(tmp_path)
    lines = tmp_path / "roads.geojson"
    gpd.GeoDataFrame(geometry=[LineString(_local([(0, 50), (100, 50)]))], crs="EPSG:32611").to_file(lines)
    report = label_raster_file(tile, lines, tmp_path / "mask.tif", LabelOptions(widths=WidthSpec(width=10.0)))
    with rasterio.open(report["mask"]) as surface, rasterio.open(report["centerline_mask"]) as band:
        assert (surface.read(1)[:, 50] == 255).sum() == 10
        # The default band of 7 m: 8 pixel centres, both edges on one (the line lies on a pixel border).
        assert (band.read(1)[:, 50] == 255).sum() == 8
        assert band.transform == surface.transform
