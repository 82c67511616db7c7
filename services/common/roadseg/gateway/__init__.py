"""gateway: the web page, prediction and route API, map tiles and STAC (port 8000, Celery queue ``predict``).

``predictor`` runs the model (the SavedModel in-process, or TF Serving over REST/gRPC), ``windows`` and
``predictions`` predict an image in overlapping windows and write its outputs and job record
(docs/contracts.md §4), ``sharded`` and ``tasks`` predict large images and whole scenes in bands on the
workers, ``routing`` answers routes on a prediction's road network (traced by roadnet), ``tiles`` serves
XYZ tiles; ``api``, ``endpoints``, ``fragments`` and ``static`` are the HTTP service and its page; ``cli``
is ``roadseg predict`` and ``roadseg serve``. Documentation: docs/serving.md.
"""
