"""labeler: see the modules in this package."""

#: How road masks are drawn: buffered centerlines, or the surface between street edge/curb lines.
#: Here (not in ``run``, which imports GDAL and geopandas) so the CLI lists it cheaply.
MODES = ("centerline", "edges")
