"""Missing roads: the predicted road network against a map's existing road vectors (issue 29).

``compare`` matches the two in metres and ranks *candidate missing roads* (predicted, not mapped) and
*unsupported roads* (mapped, not predicted); ``records`` keeps them in storage page by page with the
reviewers' decisions; ``export`` turns accepted candidates into GeoJSON and an OSM change file, and
``dataset`` turns every decision into training labels.
"""
