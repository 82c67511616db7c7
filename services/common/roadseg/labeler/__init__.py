"""labeler: road masks from road vectors, their review, and training datasets (port 8002, queue ``label``).

``vectors`` and ``widths`` read street lines and their widths, ``rasterize`` and ``edges`` draw each tile's
mask (buffered centrelines, or the surface between edge lines), ``quality`` flags doubtful tiles, ``run``
and ``tasks`` run a label run in shards, ``decisions`` keeps the reviewers' accept/reject, ``split`` and
``datasets`` export reviewed masks as TFRecords with a spatial split (docs/contracts.md §2, §3). ``api``,
``endpoints`` and ``templates`` are the review page and API; ``cli`` is ``roadseg label`` and
``roadseg dataset``. Documentation: docs/labeling.md.
"""

#: How road masks are drawn: buffered centerlines, or the surface between street edge/curb lines.
#: Here (not in ``run``, which imports GDAL and geopandas) so the CLI lists it cheaply.
MODES = ("centerline", "edges")
