"""Submit work to every service while the task queue is down; print what each answered as JSON.

Run as ``python -m utils.queue_down <folder>`` (``tests/`` on the path) with ``ROADSEG_REDIS_URL``
at a port where nothing listens: a fresh process, so the Celery app reads that broker URL when it
is first imported, exactly as a service started while Redis is down. Nothing here is mocked.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from roadseg.storage import get_storage

from utils.clients import local_client
from utils.gateway import dark_model, road_image, write_geotiff
from utils.labeler import line_feature, write_geojson


def main(folder: Path) -> dict:
    """What ingest, the labeler and the gateway answered, and what each left in storage."""
    from PIL import Image
    from roadseg.gateway.api import create_app as gateway_app
    from roadseg.inference.predictor import EmbeddedPredictor
    from roadseg.ingest.api import create_app as ingest_app
    from roadseg.ingest.scene_jobs import run_scene, scene_store
    from roadseg.label_service import create_app as labeler_app
    from roadseg.labeler.run import run_store

    storage = get_storage()
    out: dict = {}

    scene = write_geotiff(folder / "scene.tif", road_image(128, 128))
    with local_client(ingest_app()) as client:
        answer = client.post("/api/v1/scenes", files={"file": ("scene.tif", scene.read_bytes(), "image/tiff")})
        scene_id = next(key.split("/")[1] for key in storage.list("scenes") if key.endswith("status.json"))
        out["ingest"] = {
            "status": answer.status_code,
            "body": answer.json(),
            "record": scene_store(storage).get(scene_id).dump(),
        }
        out["ingest"]["keys"] = sorted(storage.list(f"scenes/{scene_id}"))

    run_scene(storage, scene_id)  # tiled in this process, so that a label run has a scene to label
    x0, y0 = 500000.0, 4000000.0
    roads = write_geojson(
        folder / "roads.geojson", [line_feature([[x0 + 5, y0 - 32], [x0 + 60, y0 - 32]])], crs="EPSG:32611"
    )
    with local_client(labeler_app()) as client:
        answer = client.post(
            "/api/v1/label-runs",
            data={"scene_id": scene_id},
            files={"vectors": ("roads.geojson", roads.read_bytes(), "application/geo+json")},
        )
        records = run_store(storage).list()
        out["labeler"] = {
            "status": answer.status_code,
            "body": answer.json(),
            "record": records[0].dump() if records else None,
        }

    png = io.BytesIO()
    Image.fromarray(road_image(64, 64)).save(png, format="PNG")
    with local_client(gateway_app(predictor=EmbeddedPredictor(dark_model()), storage=storage)) as client:
        answer = client.post("/api/v1/predictions", files={"file": ("a.png", png.getvalue(), "image/png")})
        out["gateway"] = {"status": answer.status_code, "body": answer.json(), "keys": storage.list("predictions")}
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]))))
