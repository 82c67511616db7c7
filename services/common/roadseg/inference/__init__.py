"""inference: the road model applied to images, shared by the gateway, the trainer's evaluation and the CLI.

``predictor`` runs the model (the SavedModel in-process, or TF Serving over REST/gRPC); ``windows``
predicts an image of any size in overlapping, Hann-weighted windows, streamed row of windows by row.
It knows nothing of jobs, queues or HTTP (those are the gateway's).
"""
