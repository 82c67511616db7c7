"""Locust users of the gateway, as people and scripts use it (run by bench/load.py; loopback only).

Each user uploads images (small ones are predicted during the request, larger ones are queued for
the prediction worker and polled), asks for routes on its predictions, reads records, the model
card and the page. Answers the API documents as the client's fault for a route (no road nearby:
422, no path: 404) count as successes: they are correct answers, not errors.
"""

from __future__ import annotations

import io
import random
import time

import numpy as np
from locust import HttpUser, between, task
from PIL import Image


def road_png(size: int, seed: int) -> bytes:
    """Light textured ground with dark roads every 96 px (what any road model or the dark test model finds)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(150, 220, size=(size, size, 3), dtype=np.uint8)
    for offset in range(40, size, 96):
        img[offset : offset + 10, :] = 40
        img[:, offset : offset + 10] = 40
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


SMALL = [road_png(256, seed) for seed in range(4)]  # 65 kpx: predicted in the request
LARGE = road_png(640, 9)  # 410 kpx: above the bench's sync limit, queued for the worker


class GatewayUser(HttpUser):
    """One person or script using the gateway: think time 0.5-2 s between actions."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.done: list[str] = []

    @task(4)
    def predict_small(self) -> None:
        files = {"file": ("small.png", random.choice(SMALL), "image/png")}
        with self.client.post(
            "/api/v1/predictions",
            files=files,
            data={"tta": "none"},
            name="POST predictions (sync)",
            catch_response=True,
        ) as r:
            if r.status_code == 201:
                self.done.append(r.json()["id"])
                r.success()
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task(1)
    def predict_large(self) -> None:
        files = {"file": ("large.png", LARGE, "image/png")}
        r = self.client.post("/api/v1/predictions", files=files, data={"tta": "none"}, name="POST predictions (queued)")
        if r.status_code != 202:
            return
        url = r.json()["links"]["self"]
        started = time.monotonic()
        while time.monotonic() - started < 120:
            record = self.client.get(url, name="GET prediction (poll)").json()
            if record["status"] in ("done", "failed"):
                ok = record["status"] == "done"
                self.environment.events.request.fire(
                    request_type="JOB",
                    name="queued prediction, submit to done",
                    response_time=1000 * (time.monotonic() - started),
                    response_length=0,
                    exception=None if ok else RuntimeError(record.get("error")),
                    context={},
                )
                if ok:
                    self.done.append(record["id"])
                return
            time.sleep(1.0)

    @task(4)
    def route(self) -> None:
        if not self.done:
            return
        job = random.choice(self.done)
        body = {"start": [45, random.randint(10, 200)], "end": [random.randint(10, 200), 141]}
        with self.client.post(
            f"/api/v1/predictions/{job}/route", json=body, name="POST route", catch_response=True
        ) as r:
            if r.status_code in (200, 404, 422):
                r.success()

    @task(2)
    def status(self) -> None:
        if self.done:
            self.client.get(f"/api/v1/predictions/{random.choice(self.done)}", name="GET prediction")

    @task(1)
    def model_card(self) -> None:
        self.client.get("/api/v1/model", name="GET model card")

    @task(1)
    def page(self) -> None:
        self.client.get("/", name="GET page")
