"""``roadseg demo``'s driver: the whole chain against running services, scene + vectors in, a better model out.

Each step talks to the services the way a user's program would: the ingest, labeler and gateway
HTTP APIs (whose work runs on the Celery workers), and the trainer as a batch job (``roadseg
train`` / ``roadseg export`` in a subprocess, as the k8s Job runs it). Nothing is copied by hand:
tiles, masks and datasets move through object storage; the new model version appears in the
model folder the gateway (embedded backend) or TF Serving watches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from roadseg.errors import RoadsegError

Echo = Callable[[str], None]


class PipelineError(RoadsegError):
    """A pipeline step failed; the message says which and why."""


@dataclass
class Endpoints:
    """Base URLs of the ingest, labeler and gateway services."""

    ingest: str
    labeler: str
    gateway: str
    api_key: str | None = None

    @classmethod
    def from_settings(cls) -> Endpoints:
        """The service URLs (``ROADSEG_INGEST_URL``, ``_LABELER_URL``, ``_GATEWAY_URL``) and ``ROADSEG_API_KEY``."""
        from roadseg.config import get_settings

        s = get_settings()
        return cls(s.ingest_url, s.labeler_url, s.gateway_url, s.api_key)


@dataclass
class FinetuneParams:
    """A short fine-tuning run of the current model on the new dataset."""

    epochs: int = 1
    steps_per_epoch: int = 4
    batch_size: int = 2
    crop_size: int = 256
    learning_rate: float = 1e-4
    extra_args: list[str] = field(default_factory=list)


class Pipeline:
    """Runs the steps one by one, printing what each produced."""

    def __init__(self, endpoints: Endpoints, echo: Echo = print, poll_s: float = 1.0, timeout_s: float = 1800) -> None:
        """Talk to ``endpoints``; ``echo`` shows progress; waits poll every ``poll_s`` s for up to ``timeout_s`` s."""
        self.endpoints = endpoints
        self.echo = echo
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {endpoints.api_key}"} if endpoints.api_key else {}
        self.http = httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0), headers=headers)

    # ------------------------------------------------------------ helpers
    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code >= 400:
            raise PipelineError(f"{what} failed: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def wait_record(self, url: str, what: str, on_progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
        """Poll a job record until done/failed; connection errors (a restarting service) are retried."""
        deadline = time.monotonic() + self.timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                record = self._json(self.http.get(url), what)
            except httpx.TransportError:
                time.sleep(self.poll_s)
                continue
            if record.get("status") == "failed":
                raise PipelineError(f"{what} failed: {record.get('error')}")
            if record.get("status") == "done":
                return record
            progress = record.get("progress")
            if on_progress and progress != last:
                on_progress(record)
                last = progress
            time.sleep(self.poll_s)
        raise PipelineError(f"{what} did not finish within {self.timeout_s:.0f} s")

    def _progress(self, what: str) -> Callable[[dict], None]:
        def show(record: dict) -> None:
            p = record.get("progress") or {}
            if isinstance(p, dict) and p.get("total"):
                self.echo(f"  {what}: {p.get('done', 0)}/{p['total']}")
            elif isinstance(p, float):
                self.echo(f"  {what}: {p:.0%}")

        return show

    # ------------------------------------------------------------ steps
    def ingest(self, scene: Path, tile_size: int | None = None) -> dict[str, Any]:
        """Upload a scene to the ingest API and wait until it is tiled; returns the scene record."""
        self.echo(f"[1/6] ingest {scene.name} -> {self.endpoints.ingest}")
        data = {"tile_size": str(tile_size)} if tile_size else {}
        with open(scene, "rb") as fh:
            record = self._json(
                self.http.post(f"{self.endpoints.ingest}/api/v1/scenes", files={"file": (scene.name, fh)}, data=data),
                "ingest upload",
            )
        record = self.wait_record(
            f"{self.endpoints.ingest}/api/v1/scenes/{record['id']}", "tiling", self._progress("tiles")
        )
        self.echo(f"  scene {record['id']}: {record.get('tile_count')} tiles, CRS {record.get('crs')}")
        return record

    def label(self, scene_id: str, vectors: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Start a label run of the scene with the road ``vectors`` and wait for its masks; returns the run record."""
        self.echo(f"[2/6] label scene {scene_id} with {vectors.name} -> {self.endpoints.labeler}")
        with open(vectors, "rb") as fh:
            record = self._json(
                self.http.post(
                    f"{self.endpoints.labeler}/api/v1/label-runs",
                    data={"scene_id": scene_id, "options": json.dumps(options)},
                    files={"vectors": (vectors.name, fh)},
                ),
                "label request",
            )
        return self.wait_label(record["id"])

    def wait_label(self, run_id: str) -> dict[str, Any]:
        """Wait for label run ``run_id`` to finish; returns its record with the tile counts."""
        url = f"{self.endpoints.labeler}/api/v1/label-runs/{run_id}"
        record = self.wait_record(url, "labeling", self._progress("masks"))
        self.echo(f"  label run {run_id}: {json.dumps(record.get('counts', {}))}")
        return record

    def export(
        self,
        run_ids: list[str],
        name: str,
        fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
        block_tiles: int = 2,
    ) -> dict[str, Any]:
        """Export the runs as a dataset, flagged tiles included (no one reviews a demo); returns its manifest."""
        self.echo(f"[3/6] export dataset {name!r} from runs {', '.join(run_ids)}")
        manifest = self._json(
            self.http.post(
                f"{self.endpoints.labeler}/api/v1/datasets",
                json={
                    "runs": run_ids,
                    "name": name,
                    "fractions": list(fractions),
                    "block_tiles": block_tiles,
                    "include_flagged": True,
                },
            ),
            "dataset export",
        )
        splits = {k: v["examples"] for k, v in manifest.get("splits", {}).items()}
        self.echo(f"  dataset {manifest['url']}: {splits}")
        return manifest

    def finetune(self, dataset_url: str, model_dir: Path, run_dir: Path, params: FinetuneParams) -> int:
        """Train version N+1 from version N on the dataset, then export it into ``model_dir``."""
        from roadseg.model_versions import latest_version

        current = latest_version(str(model_dir))
        if current is None:
            raise PipelineError(f"no model version in {model_dir} to fine-tune")
        new = current + 1
        self.echo(f"[4/6] fine-tune version {current} -> {new} on {dataset_url}")
        train = [
            "train",
            "--init-from",
            str(model_dir / str(current)),
            "--train-data",
            dataset_url,
            "--val-data",
            dataset_url,
            "--output",
            str(run_dir),
            "--epochs",
            str(params.epochs),
            "--steps-per-epoch",
            str(params.steps_per_epoch),
            "--batch-size",
            str(params.batch_size),
            "--crop-size",
            str(params.crop_size),
            "--learning-rate",
            str(params.learning_rate),
            "--weights",
            "none",
            *params.extra_args,
        ]
        self._roadseg(train, "training")
        export = [
            "export",
            "--checkpoint",
            str(run_dir / "checkpoints" / "last.keras"),
            "--model-dir",
            str(model_dir),
            "--version",
            str(new),
            "--evaluate",
            f"{dataset_url}:val,test",
        ]
        self._roadseg(export, "export")
        self.echo(f"  exported {model_dir / str(new)}")
        return new

    def _roadseg(self, args: list[str], what: str) -> None:
        cmd = [sys.executable, "-m", "roadseg.cli", *args]
        proc = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise PipelineError(f"{what} failed ({' '.join(args[:1])}, exit {proc.returncode}):\n{proc.stderr[-3000:]}")

    def wait_for_model(self, version: int) -> dict[str, Any]:
        """Poll the gateway's ``/healthz`` until it serves ``version`` (restarts are tolerated); returns the health."""
        self.echo(f"[5/6] wait for the gateway to serve version {version}")
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            try:
                health = self.http.get(f"{self.endpoints.gateway}/healthz").json()
                if int(health.get("model_version") or -1) == version:
                    self.echo(f"  gateway: {health.get('backend')} backend serves version {version}")
                    return health
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(self.poll_s)
        raise PipelineError(f"the gateway did not pick up model version {version}")

    def predict(self, image: Path) -> dict[str, Any]:
        """Upload an image to the gateway, waiting for the prediction if it was queued; returns the record."""
        self.echo(f"[6/6] predict {image.name} -> {self.endpoints.gateway}")
        with open(image, "rb") as fh:
            record = self._json(
                self.http.post(f"{self.endpoints.gateway}/api/v1/predictions", files={"file": (image.name, fh)}),
                "prediction upload",
            )
        if record.get("status") != "done":
            record = self.wait_record(
                f"{self.endpoints.gateway}/api/v1/predictions/{record['id']}", "prediction", self._progress("windows")
            )
        self.echo(
            f"  prediction {record['id']}: model version {record.get('model', {}).get('model_version')}, "
            f"road fraction {record.get('road_fraction')}"
        )
        return record

    def evaluate(self, model_version_dir: Path, dataset_url: str, splits: str = "val,test") -> dict[str, Any]:
        """Metrics of one model version on the dataset (the same evaluation as ``roadseg evaluate``)."""
        from roadseg.trainer.evaluate import evaluate_model

        return evaluate_model(str(model_version_dir), [dataset_url], splits.split(","))["summary"]
