"""ingest: scenes in, georeferenced tiles out (the ingest service, port 8001, Celery queue ``ingest``).

A scene (GeoTIFF, COG, JPEG 2000, PNG, JPEG, or many files as one VRT mosaic) is read window by window and
cut into 3-band 8-bit GeoTIFF tiles with a per-tile mask, then a manifest (docs/contracts.md §1); the work is
split into shards so every ingest worker helps with the same scene. ``tiling`` cuts, ``scenes`` keeps the
scene records, ``tasks`` runs shards on Celery, ``api`` and ``endpoints`` are the HTTP service, ``cli`` is
``roadseg ingest``. Documentation: docs/ingest.md.
"""
