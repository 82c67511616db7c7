# roadseg images: one multi-stage Dockerfile, one target per service image. Build from the repository root:
#   docker build --target ingest -t roadseg/ingest .      (likewise labeler, gateway, trainer)
# docker-compose.yml builds the same targets (build: {context: ., target: <service>}).
#
# Stages: `builder` (an empty virtualenv and the requirements files); one `<name>-venv` stage per image
# that installs its requirements set and then roadseg (last: it changes most often, so the dependency
# layers stay cached); `runtime` (the non-root user, storage folder and container paths every image
# shares); and the four targets, each `runtime` plus its virtualenv, its thin main.py and its command.
# scripts/validate_deploy.py (`make deploy-check`) checks every target statically: pinned slim base,
# numeric non-root USER, HEALTHCHECK and CMD on the EXPOSEd port, hadolint clean.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --------------------------------------------------------------------------- build stages
FROM ${PYTHON_IMAGE} AS builder
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/ /src/requirements/

# No TensorFlow: ingest only reads rasters and writes tiles.
FROM builder AS ingest-venv
RUN pip install --no-cache-dir -r /src/requirements/runtime.txt
COPY services/common/ /src/services/common/
RUN pip install --no-cache-dir --no-deps /src/services/common

# TensorFlow (CPU), shared by the labeler and gateway virtualenvs (one cached layer for both).
FROM builder AS tensorflow-venv
RUN pip install --no-cache-dir -r /src/requirements/tensorflow.txt

FROM tensorflow-venv AS labeler-venv
COPY services/common/ /src/services/common/
RUN pip install --no-cache-dir --no-deps /src/services/common

# tensorflow-serving-api's wheel pins the full `tensorflow` package; tensorflow-cpu provides the same
# modules, so it goes in without dependencies (as in the Makefile).
FROM tensorflow-venv AS gateway-venv
RUN pip install --no-cache-dir --no-deps tensorflow-serving-api==2.21.0
COPY services/common/ /src/services/common/
RUN pip install --no-cache-dir --no-deps /src/services/common

# The CUDA build of TensorFlow from PyPI (its nvidia-* wheels bring CUDA and cuDNN).
FROM builder AS trainer-venv
RUN pip install --no-cache-dir -r /src/requirements/trainer.txt
COPY services/common/ /src/services/common/
RUN pip install --no-cache-dir --no-deps /src/services/common

# --------------------------------------------------------------------------- common runtime base
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 roadseg \
    && useradd --system --uid 10001 --gid roadseg --no-create-home --home-dir /tmp --shell /usr/sbin/nologin roadseg \
    && install -d -o 10001 -g 10001 /var/lib/roadseg/storage
WORKDIR /app
# Settings whose built-in defaults point into a source checkout get container paths here;
# compose and Kubernetes set the real storage (gs://...) on top.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    ROADSEG_STORAGE_URL=file:///var/lib/roadseg/storage \
    ROADSEG_MODEL_DIR=/app/models/roads \
    ROADSEG_SHIPPED_MODEL_DIR=/app/models/shipped \
    ROADSEG_SHARED_DIR=/app/shared \
    ROADSEG_INGEST_FILE_ROOTS='["/app/shared"]'
# Files copied in by the targets below stay owned by root (COPY ignores USER): the code is read-only to it.
USER 10001:10001

# --------------------------------------------------------------------------- targets
# roadseg/ingest: the upload API (default command, port 8001) and, with
# `celery -A roadseg.celery_app worker -Q ingest` as command, the tiling worker.
FROM runtime AS ingest
COPY --from=ingest-venv /opt/venv /opt/venv
COPY services/ingest/main.py /app/services/ingest/main.py
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=4)"]
CMD ["uvicorn", "--app-dir", "services/ingest", "main:app", "--host", "0.0.0.0", "--port", "8001"]

# roadseg/labeler: the label review page (default command, port 8002) and, with
# `celery -A roadseg.celery_app worker -Q label` as command, the labeling worker.
# TensorFlow (CPU) is here because the worker writes the TFRecord training dataset.
FROM runtime AS labeler
COPY --from=labeler-venv /opt/venv /opt/venv
COPY services/labeler/main.py /app/services/labeler/main.py
EXPOSE 8002
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/healthz', timeout=4)"]
CMD ["uvicorn", "--app-dir", "services/labeler", "main:app", "--host", "0.0.0.0", "--port", "8002"]

# roadseg/gateway: the prediction API and web page (default command, port 8000) and, with
# `celery -A roadseg.celery_app worker -Q predict` as command, the prediction worker.
# TensorFlow (CPU) runs the embedded model when ROADSEG_TFSERVING_URL is unset; the
# tensorflow-serving-api stubs talk to TF Serving over gRPC when it is set.
FROM runtime AS gateway
COPY --from=gateway-venv /opt/venv /opt/venv
COPY services/gateway/main.py /app/services/gateway/main.py
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "--app-dir", "services/gateway", "main:app", "--host", "0.0.0.0", "--port", "8000"]

# roadseg/trainer: the `roadseg` command as entrypoint, `train` by default (a batch job: the compose
# `train` profile and the Kubernetes Job/CronJob). On GKE the node's driver is mounted under
# /usr/local/nvidia; without a GPU it trains on CPU. KERAS_HOME caches ImageNet weights.
FROM runtime AS trainer
COPY --from=trainer-venv /opt/venv /opt/venv
ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib64 \
    KERAS_HOME=/tmp/keras
ENTRYPOINT ["roadseg"]
CMD ["train", "--help"]
