"""inference: the road model applied to images, below every room that predicts.

``predictor`` runs the model (the SavedModel in-process, or TF Serving over REST/gRPC); ``windows`` cuts an
image of any size into overlapping windows and blends their probabilities (Hann-weighted, streamed row of
windows by row); ``predict`` is :func:`~roadseg.inference.predict.predict_raster`, which reads an image band
by band and writes the ``layers`` (probabilities, masks, the page's PNGs) to local files; ``scale`` lets the
model choose a plain image's scale (``--pixel-size auto``); ``road_graph`` traces a predicted mask's road
network (docs/contracts.md §7).

The gateway's prediction jobs, ``roadseg predict``, the trainer's ``roadseg evaluate`` and ``roadseg
validate``, and the missing-roads comparison all predict through it, so they measure what users get. It
knows nothing of jobs, queues or HTTP, and imports no other room but ``roadnet``.
"""
