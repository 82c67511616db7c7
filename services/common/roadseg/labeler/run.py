"""A labeling run: every tile of a scene gets a mask, a quality record, and the run a manifest.

Storage layout of run ``{run}`` (all keys deterministic, all writes atomic):

* ``labels/{run}/status.json``: the JobStore record (options, progress, counts, error);
* ``labels/{run}/vectors/...``: the road vectors (and ``edge-vectors/`` for ``edges`` mode),
  copied into storage so a worker on another machine reads the same file;
* ``labels/{run}/masks/{tile}.tif``: the road surface mask, and ``labels/{run}/bands/{tile}.tif`` the
  centreline band mask (every line at ``band_width_m``), written first;
* ``labels/{run}/tiles/{tile}.json``: the tile's quality record, written after its mask, so a
  record means "this tile is done";
* ``labels/{run}/shards/{n}.json``: the tile records of shard ``n`` once it is done (:mod:`roadseg.shards`:
  the run is cut into shards of ``ROADSEG_SHARD_TILES`` tiles, one Celery task each);
* ``labels/{run}/manifest.json``: all tile records, written last by the shard that completes the set;
* ``labels/{run}/review/{tile}.json``: reviewer decisions (see :mod:`roadseg.labeler.decisions`).

A worker killed mid-run leaves finished tiles with records; the next run of the same id skips
them and redoes at most the tile in flight (same key, same bytes), so nothing is duplicated.
The run id is derived from the scene, the vector file contents and the options, so running the
same command twice reuses the finished work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import geopandas as gpd
import numpy as np
import rasterio
from pyproj import CRS
from rasterio.io import DatasetReader, MemoryFile
from rasterio.windows import Window

from roadseg.documents import LabelRunManifest, LabelRunRecord, SceneManifest, Status
from roadseg.errors import InvalidInput, NotFound
from roadseg.geotiff import mask_geotiff
from roadseg.jobs import JobStore
from roadseg.labeler import MODES, quality
from roadseg.labeler.edges import edge_road_polygons
from roadseg.labeler.rasterize import TileGrid, burn, centerline_shapes, expand_bounds
from roadseg.labeler.vectors import VectorSource, query_tile
from roadseg.labeler.widths import WidthSpec
from roadseg.mask_values import IGNORE
from roadseg.raster import compute_stretch, read_rgb_window
from roadseg.shards import TileJob, tile_plan
from roadseg.storage import LocalStorage, Storage, safe_filename, storage_from_url

log = logging.getLogger(__name__)

KIND = "labels"


def run_store(storage: Storage) -> JobStore[LabelRunRecord]:
    """The status records of label runs, kept at ``labels/<id>/status.json`` beside the masks."""
    return JobStore(storage, KIND, LabelRunRecord)


#: Files that belong to a shapefile and must travel with it.
SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")

Progress = Callable[[int, int], None]

#: Ground width (m) of the centreline band mask: the Massachusetts Roads convention (~7 px at 1 m).
BAND_WIDTH_M = 7.0


@dataclass
class LabelOptions:
    """Everything that decides a run's masks; stored in the run record so a worker can redo it."""

    mode: str = "centerline"
    layer: str | None = None
    assume_crs: str | None = None
    where: str | None = None
    #: Keep only features whose attribute is one of the values, e.g. ``{"highway": ["primary", "residential"]}``:
    #: compared as data after reading, never handed to the driver as SQL (the API accepts this, not ``where``).
    attribute_filter: dict[str, list[str | int | float]] | None = None
    edge_layer: str | None = None
    widths: WidthSpec = field(default_factory=WidthSpec)
    #: Ground width of the centreline band mask written beside the surface mask (None: BAND_WIDTH_M).
    band_width_m: float | None = None
    ignore_value: int = IGNORE
    quality: quality.QualityParams = field(default_factory=quality.QualityParams)

    def __post_init__(self) -> None:
        """Refuse an unknown mode or an ignore value that collides with road (255) or background (0)."""
        if self.mode not in MODES:
            raise InvalidInput(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if not 0 < self.ignore_value < 255:
            raise InvalidInput(f"ignore value must be between 1 and 254, got {self.ignore_value}")
        if self.band_width_m is not None and not 0 < self.band_width_m <= 100:
            raise InvalidInput(f"band width must be above 0 and at most 100 m, got {self.band_width_m}")

    def to_dict(self) -> dict:
        """The options as plain JSON-ready data, for the run record and the run id.

        Unset ``attribute_filter`` and ``band_width_m`` are left out, so the ids of runs made before these
        options existed stay the same.
        """
        data = asdict(self)
        for name in ("attribute_filter", "band_width_m"):
            if data[name] is None:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LabelOptions:
        """Rebuild options from :meth:`to_dict` output (a run record), nested width and quality settings included."""
        data = dict(data)
        data["widths"] = WidthSpec(**data.get("widths", {}))
        data["quality"] = quality.QualityParams(**data.get("quality", {}))
        return cls(**data)


# ---------------------------------------------------------------- keys
def mask_key(run_id: str, tile_id: str) -> str:
    """Storage key of a tile's mask GeoTIFF."""
    return f"{KIND}/{run_id}/masks/{tile_id}.tif"


def band_key(run_id: str, tile_id: str) -> str:
    """Storage key of a tile's centreline band mask GeoTIFF (beside its surface mask)."""
    return f"{KIND}/{run_id}/bands/{tile_id}.tif"


def tile_record_key(run_id: str, tile_id: str) -> str:
    """Storage key of a tile's quality record; written after its mask, so it marks the tile done."""
    return f"{KIND}/{run_id}/tiles/{tile_id}.json"


def manifest_key(run_id: str) -> str:
    """Storage key of a run's manifest, written last."""
    return f"{KIND}/{run_id}/manifest.json"


def read_manifest(storage: Storage, run_id: str) -> dict:
    """A finished label run's manifest; raises :class:`NotFound` giving the likely reasons when it is missing."""
    key = manifest_key(run_id)
    try:
        text = storage.read_text(key)
    except NotFound as exc:
        raise NotFound(f"label run {run_id!r} has no manifest yet (still running, failed, or wrong id)") from exc
    return LabelRunManifest.parse(text, storage.url_for(key)).dump()


def review_key(run_id: str, tile_id: str) -> str:
    """Storage key of a reviewer's decision on one tile."""
    return f"{KIND}/{run_id}/review/{tile_id}.json"


# ---------------------------------------------------------------- scenes
def resolve_scene(ref: str, storage: Storage) -> tuple[Storage, dict]:
    """A scene id in ``storage``, or a path/URL of a ``.../scenes/{id}/manifest.json`` anywhere.

    Returns (the storage the scene's tile keys are relative to, the scene manifest).
    """
    suffix = "manifest.json"
    if ref.endswith(suffix):
        parts = PurePosixPath(ref.replace("\\", "/")).parts
        if len(parts) < 4 or parts[-3] != "scenes":
            raise InvalidInput(f"a scene manifest path must end in scenes/<scene_id>/manifest.json, got {ref}")
        root = ref[: -len("/".join(parts[-3:]))].rstrip("/") or "/"
        scene_storage = storage_from_url(root)
        key = "/".join(parts[-3:])
    else:
        scene_storage, key = storage, f"scenes/{ref}/manifest.json"
    try:
        text = scene_storage.read_text(key)
    except NotFound as exc:
        raise NotFound(f"no scene {ref!r}: ingest the scene first") from exc  # names what was sent, not where
    raw = json.loads(text)
    if not raw.get("georeferenced") or not raw.get("crs"):  # the likeliest problem, said first
        raise InvalidInput(f"scene {raw.get('scene_id')} is not georeferenced; vector labels need a CRS")
    return scene_storage, SceneManifest.parse(text, scene_storage.url_for(key)).dump()


def scene_bounds(manifest: dict) -> tuple[float, float, float, float]:
    """Union of the tile bounds (scene CRS)."""
    b = np.array([t["bounds"] for t in manifest["tiles"]], dtype=float)
    return (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())


# ---------------------------------------------------------------- vectors in storage
def vector_files(path: str | Path) -> list[Path]:
    """The file plus its shapefile sidecars (same stem), which GDAL needs beside it."""
    path = Path(path)
    if path.suffix.lower() != ".shp":
        return [path]
    return sorted(p for p in path.parent.glob(path.stem + ".*") if p.suffix.lower() in SHAPEFILE_SIDECARS)


def files_digest(paths: list[Path]) -> str:
    """SHA-256 over the file names and contents, so the run id changes when any vector file does."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def upload_vectors(storage: Storage, prefix: str, path: str | Path) -> str:
    """Copy a vector file (with sidecars) under ``prefix``; return the main file's key. Skips existing files."""
    main_key = ""
    for file in vector_files(path):
        key = f"{prefix}/{safe_filename(file.name)}"
        if not (storage.exists(key) and storage.size(key) == file.stat().st_size):
            storage.write_file(key, file)
        if file.name == Path(path).name:
            main_key = key
    return main_key


@contextlib.contextmanager
def local_vectors(storage: Storage, key: str) -> Iterator[Path]:
    """A local path of a stored vector file with its sidecars (downloaded from GCS into a temp folder)."""
    if isinstance(storage, LocalStorage):
        yield storage.path(key)
        return
    prefix = str(PurePosixPath(key).parent)
    with tempfile.TemporaryDirectory(prefix="roadseg-vectors-") as tmp:
        for item in storage.list(prefix):
            storage.download(item, Path(tmp) / PurePosixPath(item).name)
        yield Path(tmp) / PurePosixPath(key).name


# ---------------------------------------------------------------- one tile
def write_mask_bytes(mask: np.ndarray, grid: TileGrid) -> bytes:
    """The mask as a compressed single-band GeoTIFF with the tile's CRS and transform.

    Written directly (:mod:`roadseg.geotiff`) when the grid is north-up in a CRS with an EPSG code, else by GDAL.
    """
    crs_wkt = grid.crs.to_wkt()
    direct = mask_geotiff(mask, grid.transform, crs_wkt)
    if direct is not None:
        return direct
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "uint8",
        "crs": crs_wkt,
        "transform": grid.transform,
        "compress": "deflate",
    }
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dst:
            dst.write(mask, 1)
        return bytes(memfile.getbuffer())


class TileLabeler:
    """Turns the features of a scene into one tile's mask; reused for every tile of the run."""

    def __init__(
        self,
        options: LabelOptions,
        roads: gpd.GeoDataFrame,
        edges: gpd.GeoDataFrame | None = None,
        reach_m: float | None = None,
    ) -> None:
        """Hold the features; for centerlines, also how far the widest road's buffer reaches.

        ``reach_m`` is the whole scene's (from the run's plan), so that a shard holding only part
        of the roads queries each tile exactly as far out as one holding all of them.
        """
        self.options = options
        self.roads = roads
        self.edges = edges
        # How far (m) a road's buffer reaches beyond its centerline: roads just outside a tile still count.
        centerline = options.mode == "centerline" and not roads.empty
        own_reach = float(options.widths.widths(roads).max()) / 2 + 1.0 if centerline else 0.0
        self.reach_m = own_reach if reach_m is None else reach_m

    def mask(
        self, grid: TileGrid, valid: np.ndarray | None, query_bounds: tuple[float, float, float, float] | None = None
    ) -> tuple[np.ndarray, int]:
        """(road surface mask, number of road features used) for a tile; ``query_bounds`` in the features' CRS."""
        surface, _, used = self.masks(grid, valid, query_bounds)
        return surface, used

    def masks(
        self, grid: TileGrid, valid: np.ndarray | None, query_bounds: tuple[float, float, float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """(road surface mask, centreline band mask, number of road features used) for a tile.

        The surface is each road at its width (or the edge polygons); the band is every centreline at
        one ground width (``band_width_m``): the two road definitions a two-output model learns.
        """
        bounds = query_bounds or grid.bounds
        if not self.roads.empty:
            bounds = expand_bounds(bounds, max(self.reach_m, self.band_reach_m), self.roads.crs)
        roads = self._in_tile_crs(query_tile(self.roads, bounds), grid)
        if self.options.mode == "edges":
            edges = self._in_tile_crs(query_tile(self.edges, bounds), grid)
            shapes = edge_road_polygons(edges, roads, grid)
        else:
            shapes = centerline_shapes(roads, self.options.widths, grid)
        band = centerline_shapes(roads, WidthSpec(width=self.band_width_m), grid)
        ignore = self.options.ignore_value
        return burn(shapes, grid, valid, ignore), burn(band, grid, valid, ignore), len(roads)

    @property
    def band_width_m(self) -> float:
        """The centreline band's ground width (the option, else :data:`BAND_WIDTH_M`)."""
        return self.options.band_width_m or BAND_WIDTH_M

    @property
    def band_reach_m(self) -> float:
        """How far (m) the band reaches beyond a centreline."""
        return self.band_width_m / 2 + 1.0

    @staticmethod
    def _in_tile_crs(frame: gpd.GeoDataFrame, grid: TileGrid) -> gpd.GeoDataFrame:
        return frame if frame.empty or frame.crs == grid.crs else frame.to_crs(grid.crs)

    def label_dataset(
        self, ds: DatasetReader, query_bounds: tuple[float, float, float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict, TileGrid]:
        """Surface mask, band mask and quality record for an open tile (its per-dataset mask marks nodata)."""
        grid = TileGrid.from_dataset(ds)
        image, valid = read_rgb_window(ds, Window(0, 0, ds.width, ds.height), compute_stretch(ds))
        mask, band, n_features = self.masks(grid, valid, query_bounds)
        record = quality.assess(mask, image, valid, self.options.quality)
        record["features"] = n_features
        return mask, band, record, grid


def open_sources(
    options: LabelOptions,
    roads_path: str | Path,
    edges_path: str | Path | None,
    bounds: tuple[float, float, float, float],
    crs: CRS | str,
    reach_m: float | None = None,
) -> tuple[TileLabeler, dict]:
    """Read the features of a scene area; returns the labeler and a report for the manifest.

    ``reach_m``: the whole scene's road reach when ``bounds`` are only part of it (a shard).
    """
    roads_src = VectorSource.open(
        roads_path, options.layer, options.assume_crs, options.where, options.attribute_filter
    )
    roads, roads_report = roads_src.read(bounds, crs)
    warnings: list[str] = []
    report = {"roads": {"file": Path(roads_path).name, "layer": roads_src.layer, **roads_report}, "warnings": warnings}
    edges = None
    if options.mode == "edges":
        if edges_path is None:
            raise InvalidInput("mode 'edges' needs --edge-vectors (the street edge / curb lines)")
        edges_src = VectorSource.open(edges_path, options.edge_layer, options.assume_crs)
        edges, edges_report = edges_src.read(bounds, crs)
        report["edges"] = {"file": Path(edges_path).name, "layer": edges_src.layer, **edges_report}
    if roads_src.feature_count == 0:
        warnings.append(f"the vector file {Path(roads_path).name} has no features")
    elif roads.empty:
        warnings.append("no road features intersect the scene (wrong file, area or CRS?)")
    missing = options.widths.check_columns(roads.columns) if not roads.empty else None
    if missing:
        warnings.append(missing)
    if reach_m is None:  # the whole scene: its warnings are the run's (a shard's part may well be empty)
        for warning in report["warnings"]:
            log.warning("%s", warning)
    return TileLabeler(options, roads, edges, reach_m), report


# ---------------------------------------------------------------- whole runs
def run_id_for(scene_id: str, options: LabelOptions, vector_paths: list[Path]) -> str:
    """Deterministic id: same scene + same vector bytes + same options = same run (work is reused)."""
    digest = hashlib.sha256(json.dumps(options.to_dict(), sort_keys=True).encode())
    digest.update(files_digest(vector_paths).encode())
    return f"{safe_filename(scene_id)}-{digest.hexdigest()[:12]}"


def prepare_run(
    storage: Storage,
    scene_ref: str,
    vectors: str | Path,
    options: LabelOptions,
    edge_vectors: str | Path | None = None,
    run_id: str | None = None,
) -> LabelRunRecord:
    """Validate the inputs, copy the vectors into storage and create (or reuse) the run record.

    Vector problems (missing layer, no CRS, unreadable) are raised here, before any work is queued.
    """
    scene_storage, scene = resolve_scene(scene_ref, storage)
    VectorSource.open(vectors, options.layer, options.assume_crs, options.where, options.attribute_filter)
    paths = vector_files(vectors)
    if options.mode == "edges":
        if edge_vectors is None:
            raise InvalidInput("mode 'edges' needs --edge-vectors (the street edge / curb lines)")
        VectorSource.open(edge_vectors, options.edge_layer, options.assume_crs)
        paths += vector_files(edge_vectors)
    elif edge_vectors is not None:
        raise InvalidInput("--edge-vectors is only used with --mode edges")
    run_id = run_id or run_id_for(scene["scene_id"], options, paths)
    jobs = run_store(storage)
    with contextlib.suppress(NotFound):
        record = jobs.get(run_id)
        log.info("run %s exists (%s); finished tiles will be reused", run_id, record.status)
        return record
    fields = {
        "scene_id": scene["scene_id"],
        "scene_storage": None if scene_storage.url == storage.url else scene_storage.url,
        "vectors_key": upload_vectors(storage, f"{KIND}/{run_id}/vectors", vectors),
        "edge_vectors_key": upload_vectors(storage, f"{KIND}/{run_id}/edge-vectors", edge_vectors)
        if edge_vectors
        else None,
        "options": options.to_dict(),
        "progress": {"done": 0, "total": len(scene["tiles"])},
    }
    return jobs.create(run_id, **fields)


def label_run(storage: Storage, run_id: str, progress: Progress | None = None, shard_tiles: int | None = None) -> dict:
    """Label every tile of a prepared run in this process, shard after shard as queued workers would.

    Skips finished tiles and shards; writes and returns the manifest. Marks the record failed (with
    the message) on any error and re-raises. ``shard_tiles`` (default ``ROADSEG_SHARD_TILES``) only
    matters for a new plan.
    """
    for index in plan_label_run(storage, run_id, shard_tiles):
        label_shard(storage, run_id, index, progress)
    return finish_label_run(storage, run_id)


def _scene_of(storage: Storage, record: LabelRunRecord) -> tuple[Storage, dict]:
    scene_storage = storage_from_url(record.scene_storage) if record.scene_storage else storage
    return resolve_scene(record.scene_id, scene_storage)


def _reach_m(record: LabelRunRecord) -> float:
    """The widest road's reach, fixed by the run's planner for all its shards."""
    if record.reach_m is None:
        raise InvalidInput(f"label run {record.id} has no road reach yet (it was not planned)")
    return record.reach_m


@contextlib.contextmanager
def _vector_paths(storage: Storage, record: LabelRunRecord) -> Iterator[tuple[Path, Path | None]]:
    """Local paths of the run's road (and edge) vector files, downloaded from GCS when needed."""
    with contextlib.ExitStack() as stack:
        roads = stack.enter_context(local_vectors(storage, record.vectors_key))
        edges = (
            stack.enter_context(local_vectors(storage, record.edge_vectors_key)) if record.edge_vectors_key else None
        )
        yield roads, edges


def plan_label_run(storage: Storage, run_id: str, shard_tiles: int | None = None) -> list[int]:
    """Mark the run running; once per run, read the vectors over the whole scene and cut it into shards.

    The whole-scene read gives the manifest's vector report and the widest road's reach, which
    every shard then uses. Returns the shards still to run.
    """
    jobs = run_store(storage)
    job = TileJob(jobs, run_id)
    record = job.start(started=time.time())
    if record.shards is None:
        with job.failing():
            _, scene = _scene_of(storage, record)
            options = LabelOptions.from_dict(record.options)
            with _vector_paths(storage, record) as (roads_path, edges_path):
                labeler, report = open_sources(options, roads_path, edges_path, scene_bounds(scene), scene["crs"])
        total = len(scene["tiles"])
        record = jobs.update(
            run_id,
            vectors=report,
            reach_m=labeler.reach_m,
            progress={"done": 0, "total": total},
            shards=tile_plan(total, shard_tiles),
        )
    cut, pending = job.pending(record)
    log.info(
        "run %s: %d tiles in %d shards (%d to run), %d road features in the scene",
        run_id,
        record.progress.total,
        len(cut),
        len(pending),
        (record.vectors or {}).get("roads", {}).get("kept"),
    )
    return pending


def label_shard(storage: Storage, run_id: str, index: int, progress: Progress | None = None) -> bool:
    """Label the tiles of shard ``index`` (skipping finished tiles); returns whether all shards have finished.

    The shard reads only the features around its own tiles (its bounds grown by the scene's road reach).
    """
    job = TileJob(run_store(storage), run_id)
    shard = job.shard(index, progress)
    if shard.settled is not None:
        return shard.settled
    record, span = shard.record, shard.span

    with job.failing():
        scene_storage, scene = _scene_of(storage, record)
        tiles = scene["tiles"][span.start : span.stop]
        options = LabelOptions.from_dict(record.options)
        crs = scene["crs"]
        reach_m = _reach_m(record)
        bounds = expand_bounds(scene_bounds({"tiles": tiles}), 2 * reach_m + 1.0, crs)
        with _vector_paths(storage, record) as (roads_path, edges_path):
            labeler, _ = open_sources(options, roads_path, edges_path, bounds, crs, reach_m)
        done_keys = set(storage.list(f"{KIND}/{run_id}/tiles"))
        entries = []
        with rasterio.Env():  # one GDAL environment for the loop, not one per read, rasterize and encode
            for i, tile in enumerate(tiles, 1):
                rec_key = tile_record_key(run_id, tile["id"])
                if rec_key in done_keys:
                    entry = json.loads(storage.read_text(rec_key))
                else:
                    entry = _label_tile(storage, scene_storage, labeler, run_id, tile)
                    storage.write_text(rec_key, json.dumps(entry))
                entries.append(entry)
                shard.progress(i, len(tiles))
        return shard.finish({"tiles": entries})


def finish_label_run(storage: Storage, run_id: str) -> dict:
    """Join the shards' tile records (scene order) into the manifest, written last, and mark the run done."""
    jobs = run_store(storage)
    job = TileJob(jobs, run_id)
    record = jobs.get(run_id)
    with job.failing():
        _, scene = _scene_of(storage, record)
        entries = [entry for result in job.results(record) for entry in result["tiles"]]
        options = LabelOptions.from_dict(record.options)
        flagged = [e for e in entries if e["flags"]]
        counts = {"tiles": len(entries), "flagged": len(flagged)}
        for reason in quality.REASONS:
            counts[reason] = sum(reason in e["flags"] for e in entries)
        manifest = {
            "run_id": run_id,
            "scene_id": scene["scene_id"],
            "scene_storage": record.scene_storage,
            "crs": scene["crs"],
            "tile_size": scene["tile_size"],
            "overlap": scene.get("overlap", 0),
            "mode": options.mode,
            "options": options.to_dict(),
            "ignore_value": options.ignore_value,
            "vectors": record.vectors,
            "counts": counts,
            "reasons": quality.REASONS,
            "tiles": entries,
            "created": time.time(),
        }
        manifest = LabelRunManifest.model_validate(manifest).dump()
        storage.write_text(manifest_key(run_id), json.dumps(manifest, indent=1))
    jobs.update(
        run_id,
        status=Status.DONE,
        manifest_key=manifest_key(run_id),
        counts=counts,
        progress={"done": counts["tiles"], "total": counts["tiles"]},
    )
    return manifest


def _label_tile(storage: Storage, scene_storage: Storage, labeler: TileLabeler, run_id: str, tile: dict) -> dict:
    with scene_storage.open_raster(tile["key"]) as ds:
        mask, band, qc, grid = labeler.label_dataset(ds, query_bounds=tuple(tile["bounds"]))
    key = mask_key(run_id, tile["id"])
    storage.write_bytes(band_key(run_id, tile["id"]), write_mask_bytes(band, grid))  # both before the record
    storage.write_bytes(key, write_mask_bytes(mask, grid))
    return {
        "id": tile["id"],
        "tile_key": tile["key"],
        "mask_key": key,
        "band_key": band_key(run_id, tile["id"]),
        "bounds": tile["bounds"],
        "window": tile["window"],
        **qc,
    }


# ---------------------------------------------------------------- one raster file
def label_raster_file(
    image_path: str | Path,
    vectors: str | Path,
    out_path: str | Path,
    options: LabelOptions,
    edge_vectors: str | Path | None = None,
) -> dict:
    """Label a single georeferenced raster (no ingest): writes the mask GeoTIFF and returns its quality record."""
    with rasterio.open(image_path) as ds:
        grid = TileGrid.from_dataset(ds)
        labeler, report = open_sources(options, vectors, edge_vectors, grid.bounds, grid.crs)
        mask, band, record, grid = labeler.label_dataset(ds)
    out_path = Path(out_path)
    band_path = out_path.with_name(f"{out_path.stem}.centerline{out_path.suffix}")
    band_path.write_bytes(write_mask_bytes(band, grid))
    out_path.write_bytes(write_mask_bytes(mask, grid))
    return {**record, "vectors": report, "mask": str(out_path), "centerline_mask": str(band_path)}
