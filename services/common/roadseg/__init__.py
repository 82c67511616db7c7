"""roadseg: find roads in satellite and aerial images, from raw scene to routable road network.

The package is shared by every service (ingest, labeler, trainer, gateway); each service
process (``services/<name>/main.py``) is a thin entry point around the modules here. Its rooms:

* ``ingest``: scenes in, georeferenced RGB tiles and a manifest out (the ingest service, queue ``ingest``);
* ``labeler``: road masks from road vectors, their review page, TFRecord datasets (queue ``label``);
* ``trainer``: train, evaluate, validate and export versioned SavedModels (a batch job);
* ``gateway``: the web page, prediction jobs and the route API, map tiles, STAC (queue ``predict``);
* ``inference``: the model applied to an image (predictor backends, sliding windows, ``predict_raster``),
  below the gateway, the trainer's evaluation, ``missing`` and ``roadseg predict``, which all use it;
* ``roadnet``: road mask to road graph, shortest routes, APLS (used by the gateway and the CLI);
* ``missing``: roads a map lacks, from a prediction against the map's vectors (served by the labeler
  service, whose app ``label_service`` puts the two rooms together);
* ``auth``: who may do what: API keys, Identity-Aware Proxy, sign-in sessions, roles per route.

Beside them, shared modules: settings (``config``), ``storage``, job records (``jobs``, ``documents``),
the HTTP service skeleton (``http_api``, ``limits``), image reading (``raster``, ``geo``, ``mosaic``),
the user's pixel size read one way everywhere (``pixel_size``), ``celery_app`` and the one command,
``cli``. Documentation: README.md and docs/architecture.md.
"""

__version__ = "0.1.0"
