"""The JSON documents roadseg writes and reads back, as versioned Pydantic models (docs/contracts.md).

Every document is written from one of these models and read back through the same model, so a
field's type and meaning are written down once and ``/docs`` shows the real schemas. Each carries
``schema_version``:

- version 1: files written before the documents were typed (no ``schema_version`` field). They
  have the same fields, so they read as they are; a record rewritten by an update becomes version 2.
- version 2 (:data:`SCHEMA_VERSION`): the current layout.

A file from a *newer* roadseg is refused with a message that says so instead of being misread.
Unknown fields are kept (``extra="allow"``): a rolling upgrade never loses what a newer writer added.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roadseg.errors import InvalidInput

#: The layout written by this code.
SCHEMA_VERSION = 2
#: Files written before ``schema_version`` existed.
LEGACY_VERSION = 1


class Status(StrEnum):
    """Where a job is: the one status type of every job record (stored and served as its string value)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Document(BaseModel):
    """Base of every stored JSON document: versioned, unknown fields kept."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = Field(default=SCHEMA_VERSION, description="Layout version of this document.")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: object) -> object:
        """A file without ``schema_version`` predates typed documents: version 1, same fields."""
        if isinstance(data, dict) and "schema_version" not in data:
            return {**data, "schema_version": LEGACY_VERSION}
        return data

    @field_validator("schema_version")
    @classmethod
    def _readable(cls, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"written by a newer roadseg (schema_version {version}; this one reads up to {SCHEMA_VERSION})"
            )
        return version

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> Self:
        """Read a stored document; a malformed one raises :class:`InvalidInput` naming ``where`` it is."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(document)'}: {e['msg']}" for e in exc.errors())
            raise InvalidInput(f"{where} is not a valid {cls.__name__}: {problems}") from exc

    def dump(self) -> dict[str, Any]:
        """The JSON-ready dict that is written (and returned by the APIs)."""
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- job records


class TileProgress(BaseModel):
    """Tiles finished out of the scene's total."""

    done: int
    total: int


class JobRecord(Document):
    """The status record of one job (``<kind>/<id>/status.json``), written by the API then its one task."""

    id: str
    status: Status
    created: float = Field(description="Unix time the job was created.")
    updated: float = Field(description="Unix time of the last change.")
    error: str | None = Field(default=None, description="Why the job failed, for the user.")


class ImageInfo(BaseModel):
    """Header facts of a raster (:func:`roadseg.raster.scene_info`)."""

    model_config = ConfigDict(extra="allow")

    georeferenced: bool
    crs: str | None = None
    transform: list[float] = Field(description="Affine a, b, c, d, e, f (pixel -> CRS or pixel coordinates).")
    width: int
    height: int
    bands: int
    dtype: str
    bounds: list[float] | None = Field(default=None, description="[minx, miny, maxx, maxy] in the CRS.")
    pixel_size: list[float] | None = None
    driver: str | None = None


class ShardPlan(BaseModel):
    """How a queued job was cut (:mod:`roadseg.shards`): fixed when it is planned, whatever the workers."""

    count: int = Field(description="Shards (Celery tasks) of the job.")
    per_shard: int = Field(description="Work units per shard: tiles, or rows of prediction windows.")


class SceneRecord(JobRecord, ImageInfo):
    """A scene submitted to ingest: where it comes from, how it is cut, how far the tiling got."""

    source_key: str | None = Field(default=None, description="Uploaded source, inside the scene's folder.")
    source_url: str | None = Field(default=None, description="Or the gs:// / file:// URI it is read from in place.")
    filename: str | None = None
    bytes: int | None = None
    tile_size: int
    overlap: int
    percentiles: list[float]
    progress: TileProgress
    tile_count: int | None = None
    skipped_empty: int | None = None
    manifest_key: str | None = None
    mosaic_files: int | None = Field(
        default=None, description="Files of a multi-file scene, whose source is the VRT mosaic of them."
    )
    stretch: dict[str, Any] | None = Field(default=None, description="The scene's stretch, fixed for all shards.")
    shards: ShardPlan | None = None


class LabelRunRecord(JobRecord):
    """A label run: one scene, one set of road vectors and options, one mask per tile."""

    scene_id: str
    scene_storage: str | None = Field(default=None, description="Storage URL of the scene when not the run's own.")
    vectors_key: str
    edge_vectors_key: str | None = None
    options: dict[str, Any] = Field(description="LabelOptions (roadseg.labeler.run) as a dict.")
    progress: TileProgress
    started: float | None = None
    manifest_key: str | None = None
    counts: dict[str, int] | None = Field(default=None, description="Tiles, flagged, and tiles per QC reason.")
    vectors: dict[str, Any] | None = Field(
        default=None, description="What was read from the vector files over the whole scene (planned once)."
    )
    reach_m: float | None = Field(
        default=None, description="How far the widest road's buffer reaches beyond its centerline (m)."
    )
    shards: ShardPlan | None = None


class Roads(StrEnum):
    """``roads`` of a prediction record (stored and served as its string value): its road network.

    To be built, built (``roads.geojson`` in its files), or failed. Records from before large masks were
    built in shards may also say ``skipped`` (too large then).
    """

    PENDING = "pending"
    READY = "ready"
    SKIPPED = "skipped"
    FAILED = "failed"


#: A prediction made for a missing-roads job gets that job's candidate missing roads beside its own files,
#: as written by :mod:`roadseg.missing` (RFC 7946 lon/lat; ``properties``: id, rank, score, length_m, ...):
#: the gateway serves it to the map page without knowing the missing-roads room.
MISSING_CANDIDATES_FILE = "missing.geojson"


class PredictionRecord(JobRecord):
    """An uploaded image's prediction: progress while it runs, outputs and timings when done."""

    input_name: str
    input_bytes: int
    info: ImageInfo
    progress: float = Field(ge=0.0, le=1.0, description="Fraction of the windows predicted.")
    stage: str
    windows_done: int | None = None
    windows_total: int | None = None
    files: list[str] = Field(default_factory=list, description="Output files (see the files/{name} route).")
    threshold: float | None = None
    centerline_threshold: float | None = Field(
        default=None, description="Threshold of the centreline mask (models with a centreline output)."
    )
    pixel_size_m: Annotated[float, Field(gt=0)] | Literal["auto"] | None = Field(
        default=None,
        description="Ground pixel size (m) the caller gave for a plain (not georeferenced) image, or 'auto' (the "
        "model chose the scale: see resampling).",
    )
    road_fraction: float | None = None
    seconds: float | None = None
    timings: dict[str, float] | None = Field(
        default=None, description="Seconds per stage: upload (store and check), predict, pngs, roads, store."
    )
    tta: str | None = Field(
        default=None, description="Test-time augmentation asked for (None: the card's); once done, the one that ran."
    )
    model: dict[str, Any] | None = Field(default=None, description="Backend and model version that served it.")
    resampling: dict[str, Any] | None = Field(
        default=None,
        description="Set when the image was resampled to the model's resolution: both pixel sizes and the factor "
        "('estimated' when the model chose the scale of a plain image, pixel size 'auto' or none and the card's "
        "plain_pixel_size 'auto': recorded once, when a "
        "queued job is planned, and used by all its parts).",
    )
    roads: Roads | None = Field(
        default=None,
        description="Road network: built right after the job is done, or on the first route or download at the latest.",
    )
    roads_note: str | None = Field(default=None, description="Why there is no road network, when there is none.")
    shards: ShardPlan | None = None
    scene_id: str | None = Field(
        default=None,
        description="Set when the input is an ingested scene read in place (a large image or a mosaic), not an "
        "upload: such a prediction has GeoTIFF outputs only (no PNGs for the page).",
    )


# ---------------------------------------------------------------- manifests


class SceneManifest(Document):
    """``scenes/<id>/manifest.json``: the tiles of a scene (docs/contracts.md §1); written last."""

    scene_id: str
    source_key: str
    georeferenced: bool
    crs: str | None
    transform: list[float]
    width: int
    height: int
    bands: int
    dtype: str
    tile_size: int
    overlap: int
    stretch: dict[str, Any]
    tiles: list[dict[str, Any]] = Field(description="id, key, window, bounds, edge and valid-pixel facts per tile.")
    skipped_empty: int


class LabelRunManifest(Document):
    """``labels/<id>/manifest.json``: a label run's masks (values: docs/contracts.md §2), QC flags; written last."""

    run_id: str
    scene_id: str
    scene_storage: str | None = None
    crs: str | None
    tile_size: int
    overlap: int = 0
    mode: str
    options: dict[str, Any]
    ignore_value: int
    vectors: dict[str, Any] = Field(description="What was read from the vector files (kept/dropped features).")
    counts: dict[str, int]
    reasons: dict[str, str] = Field(description="QC flag -> what it means.")
    tiles: list[dict[str, Any]]
    created: float


class DatasetSplit(BaseModel):
    """One split of a TFRecord dataset."""

    examples: int
    shards: list[str]
    road_fraction: float | None


class DatasetManifest(Document):
    """``<dataset>/manifest.json``: TFRecord shards per split (docs/contracts.md §3); written last."""

    format: str
    created: float
    features: dict[str, str]
    mask_values: str
    splits: dict[str, DatasetSplit]
    sources: list[str]
    examples: list[dict[str, Any]] = Field(description="tile_id, split, shard and source of each example.")


class ModelCard(Document):
    """``model_card.json`` beside each exported SavedModel (docs/contracts.md §5): how it was made and how good it is.

    Only ``tta`` has a default: a card written by hand (or by an older export) may leave out the rest,
    and the gateway then falls back to its settings (threshold, model name, resolution matching off).
    """

    name: str | None = Field(default=None, description="Name it is served under (ROADSEG_MODEL_NAME at export).")
    version: int | None = None
    created: str | None = None
    code_version: str | None = None
    backbone: str | None = None
    threshold: float | None = Field(default=None, description="Probability above which a pixel is road.")
    outputs: list[str] | None = Field(
        default=None,
        description='Outputs in channel order: ["surface", "band"] for two-output models; absent: one road output.',
    )
    thresholds: dict[str, float] | None = Field(
        default=None, description="Per output, the probability above which a pixel is that output's road."
    )
    band_width_m: float | None = Field(default=None, description="Ground width of the centreline band output.")
    tta: str = Field(default="none", description="Test-time augmentation of the default signature.")
    tta_options: list[str] | None = Field(
        default=None, description="Test-time augmentations offered per request (signatures tta_<name>)."
    )
    pixel_size_m: float | None = Field(default=None, description="Ground resolution the model was trained for.")
    pixel_size_range_m: list[float] | None = Field(default=None, description="Resolutions seen in training.")
    plain_pixel_size: Literal["auto"] | None = Field(
        default=None,
        description="What a plain image given no pixel size is predicted at: 'auto' (the model chooses the scale, "
        "as if the user had given auto; chosen on val); absent: the model's own resolution.",
    )
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Evaluation reports by data:splits.")
    val_iou_road: dict[str, float] | None = Field(default=None, description="Validation road IoU per source.")
    val_mean_iou_road: float | None = None
    threshold_selected_on: list[str] | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None
    command: str | None = None
    export_command: str | None = None
