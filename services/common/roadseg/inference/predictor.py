"""One interface, three backends that turn RGB windows into road probabilities.

- :class:`EmbeddedPredictor` loads the SavedModel in-process (default: the latest version under
  ``ROADSEG_MODEL_DIR``) and switches to a newer version directory as soon as one appears, so a
  freshly exported model serves without a restart.
- :class:`RestPredictor` and :class:`GrpcPredictor` call TF Serving (``ROADSEG_TFSERVING_URL``
  ``http://host:8501`` or ``grpc://host:8500``), which reads the same versioned directory.

Every backend takes uint8 ``[N, H, W, 3]`` and returns float32 ``[N, H, W, C]`` (docs/contracts.md §5 of
the SavedModel: signature ``serving_default``, input ``images``, output ``probabilities``), one channel
per output the model card lists (:attr:`Predictor.outputs`: ``road``, or ``surface`` and ``band``).
``tta`` picks the signature of another test-time augmentation (``tta_none``: about half the cost of ``flip``).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from roadseg.config import Settings, get_settings
from roadseg.errors import NotFound, RoadsegError

log = logging.getLogger(__name__)

INPUT, OUTPUT = "images", "probabilities"
#: Used when neither ROADSEG_THRESHOLD nor the model card gives a threshold.
DEFAULT_THRESHOLD = 0.5
#: The outputs of a model whose card does not list them: one road channel (every version up to 3).
SINGLE_OUTPUT = ["road"]
#: A TF Serving gRPC reply (a protobuf message; its type depends on the method called).
_Reply = TypeVar("_Reply")


class BackendError(RoadsegError):
    """TF Serving refused or failed a request; the gateway answers 502 Bad Gateway."""

    status_code = 502


class ModelUnavailable(RoadsegError):
    """No model to serve yet (empty model folder); the service answers 503 until one appears."""

    status_code = 503


class Predictor(ABC):
    """A road model behind some transport."""

    backend: str

    def __init__(self, name: str, version: int | None = None) -> None:
        """A model called ``name``; ``version`` stays None until a load or ``refresh`` knows it (unless pinned)."""
        self.name = name
        self._version: int | None = version
        self._card: dict[str, Any] = {}

    @abstractmethod
    def predict(self, images: np.ndarray, tta: str | None = None) -> np.ndarray:
        """Probabilities float32 ``[N, H, W, C]`` (C: :attr:`outputs`) for uint8 RGB windows ``[N, H, W, 3]``.

        ``tta`` (``none``, ``flip``; None: the card's own) selects the signature; a version that does
        not offer it raises :class:`~roadseg.errors.InvalidInput`.
        """

    def signature(self, tta: str | None) -> str:
        """The signature for ``tta`` on the serving version (see :func:`roadseg.model_versions.signature_for`)."""
        from roadseg.model_versions import signature_for

        return signature_for(tta, self.card)

    @property
    def version(self) -> int | None:
        """The model version currently serving (set by ``refresh``)."""
        return self._version

    @property
    def card(self) -> dict[str, Any]:
        """The model card (docs/contracts.md §5), or a minimal one when the card cannot be read."""
        return self._card

    @abstractmethod
    def refresh(self) -> None:
        """Pick up a newer model version if the backend can (called before each job and by /healthz)."""

    @property
    def outputs(self) -> list[str]:
        """The model's outputs in channel order: ``["road"]``, or ``["surface", "band"]`` (the card's ``outputs``)."""
        return list(self.card.get("outputs") or SINGLE_OUTPUT)

    def threshold(self, override: float | None = None, output: str | None = None) -> float:
        """``override`` (ROADSEG_THRESHOLD or --threshold) wins, then the card's best-F1 threshold of ``output``.

        ``output`` None is the first output (road, or road surface): what the mask shows.
        """
        if override is not None:
            return float(override)
        chosen = (self.card.get("thresholds") or {}).get(output or self.outputs[0])
        return float(chosen or self.card.get("threshold") or DEFAULT_THRESHOLD)

    def describe(self) -> dict[str, Any]:
        """Backend, model name and serving version, as ``/healthz`` and the model card report them."""
        return {"backend": self.backend, "model_name": self.name, "model_version": self.version}


def load_card(version_dir: str | Path, name: str, version: int | None) -> dict[str, Any]:
    """The model card beside the SavedModel; a minimal one when it is missing or unreadable."""
    from roadseg.model_versions import read_card

    try:
        card = read_card(version_dir)
    except Exception as exc:  # noqa: BLE001 - the card is optional metadata; storage errors vary by backend
        log.warning("unreadable model card in %s: %s", version_dir, exc)
        card = {}
    return card or {"name": name, "version": version}


def _version_of(path: Path) -> int | None:
    return int(path.name) if path.name.isdigit() else None


class EmbeddedPredictor(Predictor):
    """The SavedModel loaded with TensorFlow in this process.

    ``path`` is either one SavedModel directory (pinned) or a TF Serving style folder of integer
    version directories; in the latter case the latest (or ``version``) is served and
    :meth:`refresh` switches to a newer version when one appears. A version that fails to load
    (e.g. still being written) is logged and retried at the next refresh.

    With ``require=False`` (the service) an empty folder is not an error: the gateway starts,
    answers 503 until the first version is exported, then serves it without a restart.
    """

    backend = "embedded"

    def __init__(self, path: str | Path, name: str = "roads", version: int | None = None, require: bool = True) -> None:
        """Load the pinned or latest version now; with ``require=False`` an empty folder is accepted and watched."""
        super().__init__(name)
        self.path = Path(path)
        self.pinned = version is not None or (self.path / "saved_model.pb").is_file()
        self._lock = threading.Lock()
        self._loaded: Any = None
        if require or self.pinned:
            self._load(self._pick(version))
        else:
            self.refresh()

    def _pick(self, version: int | None) -> Path:
        if (self.path / "saved_model.pb").is_file():
            return self.path
        if version is None:
            from roadseg.model_versions import latest_version

            version = latest_version(self.path)
            if version is None:
                raise NotFound(f"no model versions under {self.path}")
        candidate = self.path / str(version)
        if not (candidate / "saved_model.pb").is_file():
            raise NotFound(f"no SavedModel at {candidate}")
        return candidate

    def _load(self, version_dir: Path) -> None:
        import tensorflow as tf

        log.info("loading SavedModel %s", version_dir)
        loaded = tf.saved_model.load(str(version_dir))
        version = _version_of(version_dir)
        card = load_card(version_dir, self.name, version)
        with self._lock:
            # Keep ``loaded`` alive with its signatures: their variables belong to it.
            self._loaded, self._version, self._card = loaded, version, card

    def refresh(self) -> None:
        """Load a newer version directory if one appeared; a failed load leaves the current model serving."""
        if self.pinned:
            return
        from roadseg.model_versions import latest_version

        latest = latest_version(self.path)
        if latest is None or (self._version is not None and latest <= self._version):
            return
        try:
            self._load(self._pick(latest))
        except Exception:  # a half-written export must not take the service down
            log.exception("could not load model version %s; still serving %s", latest, self._version)

    def predict(self, images: np.ndarray, tta: str | None = None) -> np.ndarray:
        """Run the loaded signature; raises :class:`ModelUnavailable` (503) while no version is loaded yet."""
        import tensorflow as tf

        loaded = self._loaded
        if loaded is None:
            raise ModelUnavailable(f"no model version under {self.path} yet (export one, it is picked up)")
        fn = loaded.signatures[self.signature(tta)]
        out = fn(**{INPUT: tf.constant(images, tf.uint8)})[OUTPUT]
        return out.numpy()


class _ServingPredictor(Predictor):
    """Shared part of the TF Serving clients: version discovery and the model card."""

    def __init__(self, name: str, version: int | None, model_dir: str) -> None:
        super().__init__(name, version)
        self.pinned_version = version
        self.model_dir = model_dir.rstrip("/")  # a folder or a gs:// URL: TF Serving reads the same place

    @abstractmethod
    def _available_versions(self) -> list[int]:
        """Versions TF Serving reports as AVAILABLE for the model."""

    def refresh(self) -> None:
        if self.pinned_version is None:
            versions = self._available_versions()
            if not versions:
                raise BackendError(f"TF Serving has no available version of model {self.name!r}")
            self._version = max(versions)
        if not self._card or self._card.get("version") != self._version:
            # TF Serving does not serve the card; read it from the shared model folder when mounted.
            self._card = load_card(f"{self.model_dir}/{self._version}", self.name, self._version)


class RestPredictor(_ServingPredictor):
    """TF Serving's REST API: ``POST /v1/models/{name}[/versions/{v}]:predict`` (columnar ``inputs``)."""

    backend = "tfserving-rest"

    def __init__(self, url: str, name: str, version: int | None, model_dir: str, timeout: float = 300.0) -> None:
        """Talk to TF Serving's REST API at ``url`` and look up the served version (raises if none is available)."""
        import httpx

        super().__init__(name, version, model_dir)
        self.base = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)
        self.refresh()

    def _model_url(self) -> str:
        url = f"{self.base}/v1/models/{self.name}"
        return f"{url}/versions/{self.pinned_version}" if self.pinned_version is not None else url

    def _available_versions(self) -> list[int]:
        body = self._request("GET", f"{self.base}/v1/models/{self.name}")
        return [int(s["version"]) for s in body.get("model_version_status", []) if s.get("state") == "AVAILABLE"]

    def _request(self, method: str, url: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        try:
            response = self.client.request(method, url, json=json)
        except httpx.HTTPError as exc:
            raise BackendError(f"TF Serving at {self.base} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise BackendError(f"TF Serving answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def predict(self, images: np.ndarray, tta: str | None = None) -> np.ndarray:
        """One ``:predict`` request with the windows as JSON lists; raises :class:`BackendError` on failure."""
        payload = {"signature_name": self.signature(tta), "inputs": {INPUT: images.tolist()}}
        outputs = self._request("POST", f"{self._model_url()}:predict", json=payload)["outputs"]
        # A signature with a single output comes back unnamed; with several, as a dict.
        if isinstance(outputs, dict):
            outputs = outputs[OUTPUT]
        return np.asarray(outputs, np.float32)


class GrpcPredictor(_ServingPredictor):
    """TF Serving's gRPC PredictionService (``tensorflow-serving-api``), binary tensors, no JSON cost."""

    backend = "tfserving-grpc"

    def __init__(self, target: str, name: str, version: int | None, model_dir: str, timeout: float = 300.0) -> None:
        """Open a channel to ``target`` (512 MiB messages, for big batches) and look up the served version."""
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        super().__init__(name, version, model_dir)
        self.target, self.timeout = target, timeout
        limit = 512 * 1024 * 1024
        channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
        )
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(channel)
        self.refresh()

    def _call(self, method: Callable[..., _Reply], request: object) -> _Reply:
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise BackendError(f"TF Serving at {self.target}: {exc.code().name}: {exc.details()}") from exc

    def _available_versions(self) -> list[int]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.name
        response = self._call(self.models.GetModelStatus, request)
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return [int(s.version) for s in response.model_version_status if s.state == available]

    def predict(self, images: np.ndarray, tta: str | None = None) -> np.ndarray:
        """One Predict RPC with the windows as a uint8 tensor; raises :class:`BackendError` on failure."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.name
        request.model_spec.signature_name = self.signature(tta)
        if self.pinned_version is not None:
            request.model_spec.version.value = self.pinned_version
        request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(images, dtype=tf.uint8))
        response = self._call(self.predictions.Predict, request)
        return tf.make_ndarray(response.outputs[OUTPUT]).astype(np.float32)


def make_predictor(settings: Settings, model: str | None = None, require: bool = True) -> Predictor:
    """The backend the settings select; ``model`` (a path, from ``--model``) forces the embedded one.

    ``require=False`` lets the embedded backend start with an empty model folder (see EmbeddedPredictor).
    """
    if model is not None or not settings.tfserving_url:
        set_tf_threads(settings.tf_threads)
    if model is not None:
        return EmbeddedPredictor(model, settings.model_name)
    url = settings.tfserving_url
    if not url:
        from roadseg.model_versions import seed_model_dir

        seed_model_dir(settings.model_dir, settings.shipped_model_dir)
        return EmbeddedPredictor(settings.model_dir, settings.model_name, settings.model_version, require)
    if url.startswith(("http://", "https://")):
        return RestPredictor(url, settings.model_name, settings.model_version, settings.model_dir)
    if url.startswith("grpc://"):
        target = url.removeprefix("grpc://")
        return GrpcPredictor(target, settings.model_name, settings.model_version, settings.model_dir)
    raise ValueError(f"unsupported ROADSEG_TFSERVING_URL {url!r}: use http://host:8501 or grpc://host:8500")


def set_tf_threads(threads: int) -> None:
    """Size TensorFlow's thread pools (``ROADSEG_TF_THREADS``; 0 keeps its default) before it first runs.

    TensorFlow fixes them when its runtime starts; asked later (a process that already ran a model),
    it keeps the ones it has, which is logged.
    """
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:
        log.warning("ROADSEG_TF_THREADS=%d not applied: TensorFlow is already running (%s)", threads, exc)
        return
    log.info("TensorFlow threads: %d intra-op, %d inter-op", threads, threads)


_shared: Predictor | None = None
_shared_lock = threading.Lock()


def warm_up(predictor: Predictor, window: int, ttas: list[str] | None = None) -> None:
    """Run one blank window through the signatures of an embedded model, so the first job does not pay it.

    Loading TensorFlow and the SavedModel and the first call of each signature take seconds (1.3 s on a
    64 px window, most of it TensorFlow optimizing the function once); a predict worker does it for every
    signature when it starts (:mod:`roadseg.gateway.tasks`), like a pod before it takes traffic, and
    ``roadseg predict`` for the one it will use (``ttas``). TF Serving backends are already warm; a model
    not exported yet is loaded by the first job.
    """
    if not isinstance(predictor, EmbeddedPredictor) or predictor.version is None:
        return
    started = time.perf_counter()
    blank = np.zeros((1, window, window, 3), np.uint8)
    options = ttas or predictor.card.get("tta_options") or [predictor.card.get("tta") or "none"]
    for tta in options:
        predictor.predict(blank, tta)
    log.info(
        "model %s v%s warm in %.1f s (%d px window, tta %s)",
        predictor.name,
        predictor.version,
        time.perf_counter() - started,
        window,
        ", ".join(options),
    )


def get_predictor() -> Predictor:
    """The process-wide predictor (loading a SavedModel takes seconds; do it once per process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = make_predictor(get_settings(), require=False)
        return _shared
