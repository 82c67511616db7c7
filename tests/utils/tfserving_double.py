"""TEST DOUBLES of TF Serving's REST and gRPC APIs (not TF Serving): serve a real SavedModel folder.

It implements the part of https://www.tensorflow.org/tfx/serving/api_rest the gateway uses, with
TF Serving's request/response shapes and error bodies:

* ``GET  /v1/models/{name}`` and ``/v1/models/{name}/versions/{v}``: ``model_version_status``
* ``POST /v1/models/{name}[/versions/{v}]:predict``: columnar ``{"inputs": ...}`` or row
  ``{"instances": [...]}`` requests; a single-output signature answers ``{"outputs": <tensor>}``
  (unnamed, as TF Serving does) or ``{"predictions": [...]}`` for row requests.
* Errors: ``{"error": "..."}`` with 404 for an unknown model/version, 400 for a bad request.

:class:`TFServingGrpcDouble` does the same for the gRPC ``PredictionService.Predict`` and
``ModelService.GetModelStatus`` calls (``tensorflow-serving-api`` protos, NOT_FOUND for unknown models).

The versions are the integer sub-folders of the model folder, loaded with TensorFlow in-process,
so the gateway's clients are tested against our real SavedModel and its real signature.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>:predict)?$")


def load_versions(model_dir: Path) -> dict:
    import tensorflow as tf

    return {int(p.name): tf.saved_model.load(str(p)) for p in Path(model_dir).iterdir() if p.name.isdigit()}


class TFServingDouble:
    """``with TFServingDouble(model_dir, "roads") as url:`` serves ``model_dir/<version>/`` on a free port."""

    def __init__(self, model_dir: Path, name: str):
        self.name = name
        self.models = load_versions(model_dir)
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _status(self, versions: list[int]) -> dict:
        return {
            "model_version_status": [
                {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                for v in versions
            ]
        }

    def _predict(self, version: int, body: dict) -> dict:
        import tensorflow as tf

        fn = self.models[version].signatures[body.get("signature_name", "serving_default")]
        (input_name,) = fn.structured_input_signature[1].keys()
        rows = "instances" in body
        value = body["instances"] if rows else body["inputs"]
        if isinstance(value, dict):
            value = value[input_name]
        outputs = fn(**{input_name: tf.constant(np.asarray(value), tf.uint8)})
        named = {k: v.numpy().tolist() for k, v in outputs.items()}
        if rows:
            return {"predictions": next(iter(named.values())) if len(named) == 1 else named}
        return {"outputs": next(iter(named.values())) if len(named) == 1 else named}

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, want_predict: bool):
                double.requests.append(f"{self.command} {self.path}")
                match = _PATH.match(self.path)
                if not match or bool(match["verb"]) != want_predict:
                    self._send(404, {"error": f"Malformed request: {self.command} {self.path}"})
                    return None
                if match["name"] != double.name:
                    self._send(404, {"error": f"Servable not found for request: Latest({match['name']})"})
                    return None
                version = int(match["version"]) if match["version"] else max(double.models)
                if version not in double.models:
                    self._send(404, {"error": f"Servable not found for request: Specific({double.name}, {version})"})
                    return None
                return version, match["version"] is not None

            def do_GET(self) -> None:
                found = self._route(want_predict=False)
                if found:
                    version, specific = found
                    self._send(200, double._status([version] if specific else sorted(double.models)))

            def do_POST(self) -> None:
                found = self._route(want_predict=True)
                if not found:
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    self._send(200, double._predict(found[0], body))
                except Exception as exc:  # TF Serving answers bad requests with 400 + error text
                    self._send(400, {"error": f"{type(exc).__name__}: {exc}"})

        return Handler


class TFServingGrpcDouble:
    """``with TFServingGrpcDouble(model_dir, "roads") as target:`` (``127.0.0.1:PORT``) over gRPC."""

    def __init__(self, model_dir: Path, name: str):
        self.name = name
        self.models = load_versions(model_dir)
        limit = 512 * 1024 * 1024
        self.server = grpc.server(
            ThreadPoolExecutor(4),
            options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Predictions(self), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Models(self), self.server)
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self) -> str:
        self.server.start()
        return self.target

    def __exit__(self, *exc) -> None:
        self.server.stop(grace=None)

    def version(self, spec, context) -> int:
        """The requested (or latest) version; NOT_FOUND like TF Serving for unknown models/versions."""
        version = spec.version.value if spec.HasField("version") else max(self.models)
        if spec.name != self.name or version not in self.models:
            message = f"Servable not found for request: Specific({spec.name}, {version})"
            context.abort(grpc.StatusCode.NOT_FOUND, message)
        return version


class _Predictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, double: TFServingGrpcDouble):
        self.double = double

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        import tensorflow as tf

        version = self.double.version(request.model_spec, context)
        fn = self.double.models[version].signatures[request.model_spec.signature_name or "serving_default"]
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        for key, value in fn(**inputs).items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        response.model_spec.name = self.double.name
        response.model_spec.version.value = version
        return response


class _Models(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, double: TFServingGrpcDouble):
        self.double = double

    def GetModelStatus(self, request, context):  # noqa: N802 - gRPC method name
        self.double.version(request.model_spec, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        for version in sorted(self.double.models):
            response.model_version_status.add(version=version, state=available)
        return response
