"""One configuration system for every service: environment variables prefixed ``ROADSEG_``.

Every setting has an embedded default that makes ``make up`` work on a fresh machine
(local storage under ``var/``, Redis on localhost, the shipped model under ``models/roads``).
``.env.example`` documents each variable; a test checks that list stays complete.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from roadseg.errors import RoadsegError
from roadseg.mask_values import IGNORE

#: The model's total stride: prediction windows and tiles for training must be multiples of it.
STRIDE = 16


class InvalidSettings(RoadsegError):
    """A ``ROADSEG_*`` setting that cannot work; the process stops at start-up with this message."""

    status_code = 500


#: Repository root when running from a checkout (services/common/roadseg/config.py -> repo).
REPO_ROOT = Path(__file__).resolve().parents[3]


#: Default pixel budgets per role (ROADSEG_PREDICT_PIXELS_PER_REQUEST, ROADSEG_QUEUED_PREDICT_PIXELS): a viewer's
#: 25 Mpx image is about a minute of one predict worker; operators predict whole scenes.
DEFAULT_PREDICT_PIXELS_PER_REQUEST = {
    "viewer": 25_000_000,
    "labeler": 25_000_000,
    "operator": 2_500_000_000,
    "admin": 2_500_000_000,
}
DEFAULT_QUEUED_PREDICT_PIXELS = {
    "viewer": 100_000_000,
    "labeler": 100_000_000,
    "operator": 20_000_000_000,
    "admin": 20_000_000_000,
}
ROLE_NAMES = ("viewer", "labeler", "operator", "admin")


def _default_storage_url() -> str:
    return (REPO_ROOT / "var" / "storage").as_uri()


class Settings(BaseSettings):
    """All runtime settings. Read once per process through :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="ROADSEG_", extra="ignore")

    # --- infrastructure
    storage_url: str = Field(
        default_factory=_default_storage_url,
        description="Object storage root: file:///abs/path (default var/storage) or gs://bucket/prefix.",
    )
    redis_url: str = Field(default="redis://localhost:6379/0", description="Celery broker and result backend.")
    log_level: str = Field(default="INFO", description="Python logging level for every service.")
    log_json: bool = Field(default=False, description="Log one JSON object per line (for Cloud Logging).")
    celery_eager: bool = Field(
        default=False, description="Run Celery tasks in-process (only for debugging; tests use real workers)."
    )

    # --- who may do what (roadseg.auth)
    auth_mode: Literal["required", "open-local"] = Field(
        default="required",
        description="required: every route but /healthz and static files needs an API key (header or /login) "
        "or an IAP identity; open-local (make up): no authentication, and only requests from this machine "
        "(loopback) are answered.",
    )
    api_keys_file: str | None = Field(
        default=None,
        description="File of API keys, one 'name role sha256-hex [revoked]' per line (`roadseg keys create`); "
        "re-read when it changes, so revoking needs no restart. On GKE: the roadseg-api-keys Secret.",
    )
    api_keys: str = Field(default="", description="More API keys in the same format, ';' between entries.")
    iap_audience: str | None = Field(
        default=None,
        description="Identity-Aware Proxy audience, /projects/NUMBER/global/backendServices/ID: set it to accept "
        "IAP's signed x-goog-iap-jwt-assertion header (unset: the header is not trusted).",
    )
    iap_keys_file: str | None = Field(
        default=None,
        description="IAP's public keys as a JWK set file (tests, air-gapped); default: fetched from Google.",
    )
    iap_keys_refetch_seconds: int = Field(
        default=300,
        ge=1,
        description="An IAP assertion signed with an unknown key id refetches IAP's public keys at most once in "
        "this many seconds; until then such assertions get a plain 401 (no outbound fetch per request).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (JSON list, the Host header without its port) the services answer; others get 400 "
        "(DNS rebinding). Empty: loopback names (localhost, 127.0.0.1, ::1) in open-local mode, any host when "
        "authentication is required.",
    )
    iap_roles: dict[str, str] = Field(
        default_factory=dict,
        description='E-mail (or "@domain") -> role for IAP identities, JSON: {"ana@example.com": "admin", '
        '"@example.com": "viewer"}. Roles: viewer, labeler, operator, admin.',
    )

    # --- ingest
    max_upload_bytes: int = Field(default=2 * 1024**3, description="Largest accepted upload in bytes.")
    max_json_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest body of a route that takes no upload (JSON and forms), counted on the bytes received "
        "whatever the headers say; beyond it 413.",
    )
    max_scene_pixels: int = Field(
        default=50_000 * 50_000, description="Largest accepted scene (width x height); bigger headers are refused."
    )
    tile_size: int = Field(default=512, description="Tile edge in pixels.")
    tile_overlap: int = Field(default=0, description="Overlap between neighbouring tiles in pixels.")
    stretch_percentiles: tuple[float, float] = Field(
        default=(2.0, 98.0), description="Percentile stretch applied to non-uint8 bands (low, high)."
    )

    # --- model and prediction
    model_dir: str = Field(
        default=str(REPO_ROOT / "var" / "models" / "roads"),
        description="Directory (or storage URL) holding versioned SavedModels: <model_dir>/<version>/. Versions "
        "exported by the demo or by you go here; a local folder starts with the shipped versions.",
    )
    shipped_model_dir: str = Field(
        default=str(REPO_ROOT / "models" / "roads"),
        description="The versions shipped with roadseg (read only): copied into a local ROADSEG_MODEL_DIR that "
        "lacks them, so nothing a command does changes the checkout.",
    )
    model_name: str = Field(default="roads", description="Model name, as TF Serving knows it.")
    model_version: int | None = Field(default=None, description="Pinned model version; latest when unset.")
    tfserving_url: str | None = Field(
        default=None,
        description="TF Serving address: http://host:8501 (REST) or grpc://host:8500. Unset: embedded model.",
    )
    threshold: float | None = Field(
        default=None, description="Road probability threshold; unset uses the model card's best threshold."
    )
    predict_window: int = Field(
        default=1024,
        description="Largest sliding window for prediction (multiple of 16); windows are fitted to each image so "
        "the fewest cover it with ROADSEG_PREDICT_OVERLAP (1024/128: 0.72x the model pixels of 512/128 on "
        "1500 px images for -0.002 road IoU, README).",
    )
    predict_overlap: int = Field(default=128, description="Overlap between prediction windows in pixels.")
    tf_threads: int = Field(
        default=0,
        ge=0,
        description="TensorFlow threads of an embedded model (roadseg predict, a gateway without TF Serving). "
        "0: TensorFlow's default, one per CPU it sees (fastest on the 2-core bench machine, bench/model_call.py); "
        "in a container with a CPU limit below the node's cores, set the limit.",
    )
    predict_batch: int = Field(
        default=1,
        description="Windows per model call. 1 on CPUs: bench/model_call.py measured batch 4 at 1.5-2x the cost "
        "per window of batch 1 (GPUs want larger batches).",
    )
    match_resolution: bool = Field(
        default=True,
        description="Resample georeferenced images to the model card's pixel_size_m before predicting.",
    )
    sync_predict_max_pixels: int = Field(
        default=1024 * 1024,
        description="Uploads up to this many pixels are predicted during the request (about a second of gateway "
        "CPU); larger ones are queued on the predict workers and count against ROADSEG_QUEUED_PREDICT_PIXELS.",
    )
    predict_pixels_per_request: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_PREDICT_PIXELS_PER_REQUEST),
        description="Largest image (pixels) one prediction request may upload, per role, JSON; roles left out keep "
        "their default. Bigger ones get 413. Also bounded by ROADSEG_MAX_SCENE_PIXELS.",
    )
    queued_predict_pixels: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_QUEUED_PREDICT_PIXELS),
        description="Pixels of queued or running predictions one identity may have at a time, per role, JSON; roles "
        "left out keep their default. A submission while the identity's queued pixels reach it gets 429.",
    )

    # --- service addresses (used by the demo and the page)
    ingest_url: str = Field(default="http://127.0.0.1:8001", description="Base URL of the ingest API.")
    gateway_url: str = Field(default="http://127.0.0.1:8000", description="Base URL of the gateway API.")
    api_key: str | None = Field(
        default=None, description="API key roadseg's own clients (`roadseg demo`) send to services that require one."
    )
    labeler_url: str = Field(default="http://127.0.0.1:8002", description="Base URL of the labeler review page.")
    shared_dir: str = Field(
        default=str(REPO_ROOT.parent / "shared"), description="Folder with the shared data and weights."
    )
    graph_max_pixels: int = Field(
        default=6000 * 6000,
        description="Largest prediction (pixels) whose road graph is built in one process, right after it or on "
        "first use; larger ones are built by the predict workers in shards (one row of graph windows each).",
    )
    graph_window: int = Field(
        default=2048,
        ge=64,
        description="Masks larger than this (pixels, either side) are vectorized window by window (with 64 px of "
        "context); the pieces meet at seam nodes. A sharded road network traces one row of windows per shard.",
    )
    max_queued_tasks: int = Field(
        default=1000,
        description="Tasks a queue (ingest, label, predict) may hold; beyond it submissions get 503 + Retry-After. "
        "0: no limit.",
    )
    rate_limit_per_minute: int = Field(
        default=600,
        description="Requests per minute one identity (API key or e-mail) may send; beyond it 429 + Retry-After. "
        "0: no limit. Not applied in open local mode.",
    )
    broker_visibility_timeout: int = Field(
        default=600,
        description="Seconds before Redis re-delivers a task whose worker died (acks_late); long enough for one task.",
    )
    ingest_file_roots: list[str] = Field(
        default_factory=lambda: [str(REPO_ROOT.parent / "shared")],
        description="Folders from which any service may read a file:// URI a user gives (scenes, tiles, road "
        "vectors), JSON list; others are refused without being looked at.",
    )
    ingest_gs_buckets: list[str] = Field(
        default_factory=list,
        description="Buckets from which any service may read a gs:// URI a user gives (scenes, tiles, road "
        "vectors), JSON list, besides the bucket of ROADSEG_STORAGE_URL; others are refused.",
    )
    shard_tiles: int = Field(
        default=64,
        ge=1,
        description="Tiles per shard of an ingest or label job: one Celery task each, so the workers of a queue "
        "share one scene. The cut depends on the scene and this value only, never on the number of workers.",
    )
    shard_window_rows: int = Field(
        default=8,
        ge=1,
        description="Rows of prediction windows per shard of a queued prediction. Neighbouring shards both run "
        "the window row on their seam (the halo), so smaller shards spread wider but cost more model calls.",
    )
    ignore_value: int = Field(
        default=IGNORE, description="Label mask value for pixels to ignore (tile nodata); masks use 0/255 otherwise."
    )

    # --- map: tiles and STAC (roadseg.gateway.tile_render, roadseg.stac)
    tile_max_age_s: int = Field(
        default=3600,
        ge=0,
        description="Cache-Control max-age (seconds) of map tiles; they are private (behind auth) and carry an ETag, "
        "so a browser revalidates an expired tile without the gateway reading the raster again.",
    )
    map_basemap_url: str | None = Field(
        default=None,
        description="XYZ basemap under the map page's layers, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png. "
        "Unset: no basemap (nothing leaves the network).",
    )

    # --- missing roads (roadseg.missing): predicted network vs existing vectors
    missing_band_width_m: float | None = Field(
        default=None,
        gt=0,
        description="Width (m) of the centreline band: an accepted candidate's band in a correction dataset, and "
        "half of it the base of the default tolerance. Unset: the labeler's band (7 m), the one the model learns.",
    )
    missing_tolerance_m: float | None = Field(
        default=None,
        gt=0,
        description="A predicted road farther than this (m) from every existing road is missing, and an existing "
        "road that far from every predicted one is unsupported. Unset: half the band width plus 6 pixels of the image.",
    )
    missing_min_length_m: float = Field(
        default=20.0, gt=0, description="Shorter stretches are not reported as candidates (m)."
    )
    missing_page_size: int = Field(
        default=50, ge=1, le=1000, description="Candidates per stored page (the review page shows one page at a time)."
    )
    missing_max_vector_bytes: int = Field(
        default=512 * 1024**2,
        ge=1,
        description="Largest road vector file accepted by the missing-roads API (bytes); larger ones get 413.",
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        """Refuse combinations that would only fail later, deep in a job, naming each variable."""
        problems = []
        for name in ("predict_window", "tile_size"):
            value = getattr(self, name)
            if value <= 0 or value % STRIDE:
                problems.append(f"{_env(name)}={value} must be a positive multiple of {STRIDE}")
        for overlap, size in (("predict_overlap", "predict_window"), ("tile_overlap", "tile_size")):
            if not 0 <= getattr(self, overlap) < getattr(self, size):
                problems.append(
                    f"{_env(overlap)}={getattr(self, overlap)} must be at least 0 and smaller than "
                    f"{_env(size)}={getattr(self, size)}"
                )
        if self.predict_batch < 1:
            problems.append(f"{_env('predict_batch')}={self.predict_batch} must be at least 1")
        low, high = self.stretch_percentiles
        if not 0 <= low < high <= 100:
            percentiles = list(self.stretch_percentiles)
            problems.append(f"{_env('stretch_percentiles')}={percentiles} needs 0 <= low < high <= 100")
        if self.storage_url.partition("://")[0] not in ("file", "gs") and "://" in self.storage_url:
            problems.append(f"{_env('storage_url')}={self.storage_url!r}: use file:///path or gs://bucket/prefix")
        if self.tfserving_url and not self.tfserving_url.startswith(("http://", "https://", "grpc://")):
            problems.append(f"{_env('tfserving_url')}={self.tfserving_url!r}: use http://host:8501 or grpc://host:8500")
        if self.ignore_value in (0, 255) or not 0 <= self.ignore_value <= 255:
            problems.append(f"{_env('ignore_value')}={self.ignore_value} must be 1..254 (0 and 255 are labels)")
        for name, defaults in (
            ("predict_pixels_per_request", DEFAULT_PREDICT_PIXELS_PER_REQUEST),
            ("queued_predict_pixels", DEFAULT_QUEUED_PREDICT_PIXELS),
        ):
            budgets = getattr(self, name)
            if unknown := sorted(set(budgets) - set(ROLE_NAMES)):
                problems.append(f"{_env(name)}: unknown role {', '.join(unknown)}; use {', '.join(ROLE_NAMES)}")
            if any(value < 1 for value in budgets.values()):
                problems.append(f"{_env(name)}: every budget must be at least 1 pixel")
            setattr(self, name, {**defaults, **budgets})
        for who, role in self.iap_roles.items():
            if role not in ROLE_NAMES:
                problems.append(f"{_env('iap_roles')}: {who} has role {role!r}; use viewer, labeler, operator or admin")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _env(name: str) -> str:
    return f"ROADSEG_{name.upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings. Tests call ``get_settings.cache_clear()`` after changing the environment.

    Every service and command reads them when it starts, so an impossible setting stops the process
    there, with the variable's name (:class:`InvalidSettings`), instead of failing a job later.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _env(str(error["loc"][0])) if error["loc"] else ""
            problems.append(f"{where}: {error['msg']}" if where else error["msg"].removeprefix("Value error, "))
        raise InvalidSettings("invalid settings: " + "; ".join(problems)) from exc
