"""gateway: the web page, prediction jobs and the route API, map tiles and STAC (port 8000, Celery queue ``predict``).

``jobs`` keeps a prediction's job record (docs/contracts.md §4), queues it or predicts it during the request,
and stores its outputs; the prediction itself is :mod:`roadseg.inference`'s. ``road_network`` builds a done
job's ``roads.geojson``, ``sharded`` and ``tasks`` predict large images and whole scenes in bands on the
workers, ``routing`` answers routes on a prediction's road network (traced by roadnet), ``tiles`` serves
XYZ tiles; ``api``, ``endpoints``, ``fragments``, ``templates`` and ``static`` are the HTTP service and its
page; ``cli`` is ``roadseg predict`` and ``roadseg serve``. Documentation: docs/serving.md.
"""
