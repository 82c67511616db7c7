"""Vectorization settings, kept import-light so ``roadseg --help`` can show the defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GraphParams:
    """Vectorization settings.

    Distances are metres for georeferenced masks; for plain images they are pixels, unless ``pixel_size_m`` says
    how big a pixel is.

    Defaults follow the SpaceNet 3 winning solutions (roads 4-20 m wide, 0.3-1 m pixels).
    """

    threshold: float = 0.5  #: probability >= threshold is road (boolean masks are used as they are)
    hole_area_m2: float = 30.0  #: holes in the mask smaller than this are filled (they would become loops)
    spur_m: float = 10.0  #: dead-end edges shorter than this hanging off a junction are skeleton whiskers
    loop_m: float = 15.0  #: self-loops shorter than this are holes, not roundabouts
    gap_m: float = 6.0  #: a dead end this close to another road is joined to it
    collinear_gap_m: float = 25.0  #: dead ends this close that point at each other are joined...
    collinear_angle_deg: float = 25.0  #: ...when both directions are within this angle of the gap
    direction_m: float = 8.0  #: the direction of a dead end is measured over this last stretch
    min_component_m: float = 20.0  #: connected pieces with less road than this are dropped
    simplify_m: float = 1.0  #: Douglas-Peucker tolerance for edge geometry
    junction_merge_px: float = 3.0  #: edges shorter than this (pixels) are contracted: split junction blobs
    pixel_size_m: float | None = None  #: ground size of a pixel for masks without georeferencing
    window: int = 2048  #: masks larger than this (either side) are processed window by window
    overlap: int = 64  #: context around each window; must exceed the widest road and hole
