"""Road widths in metres for each centerline feature.

Three ways, chosen by :class:`WidthSpec`:

* a fixed width for every road (``--width 6``; default :data:`DEFAULT_WIDTH_M`);
* a numeric attribute, either metres (``--width-attr width``) or a lane count multiplied by a
  lane width (``--width-attr lane_number --lane-width 3.7``);
* a per-class table keyed by an attribute (``--width-table road_type`` for SpaceNet,
  ``--width-table highway`` for OSM, or any column with ``--width-table-file table.json``).

Features whose attribute is missing, non-numeric, non-positive or not in the table get the
fallback width (``--width``, default 6 m), so one odd feature never stops a run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from roadseg.errors import InvalidInput

#: Width used when nothing else applies (a two-lane local street is about 6 m of asphalt).
DEFAULT_WIDTH_M = 6.0

#: SpaceNet 3 ``road_type`` codes: 1 motorway, 2 primary, 3 secondary, 4 tertiary, 5 residential,
#: 6 unclassified, 7 cart track. Typical paved widths in metres.
SPACENET_ROAD_TYPE_M: dict[str, float] = {"1": 16.0, "2": 12.0, "3": 10.0, "4": 8.0, "5": 7.0, "6": 6.0, "7": 3.5}

#: OSM ``highway`` values that are roads or paths, with typical widths in metres.
OSM_HIGHWAY_M: dict[str, float] = {
    "motorway": 16.0,
    "trunk": 14.0,
    "primary": 12.0,
    "secondary": 10.0,
    "tertiary": 8.0,
    "motorway_link": 7.0,
    "trunk_link": 7.0,
    "primary_link": 7.0,
    "secondary_link": 6.0,
    "tertiary_link": 6.0,
    "residential": 7.0,
    "unclassified": 6.0,
    "living_street": 5.0,
    "road": 6.0,
    "service": 4.0,
    "busway": 7.0,
    "track": 3.0,
    "pedestrian": 4.0,
    "footway": 2.0,
    "path": 2.0,
    "cycleway": 2.0,
    "bridleway": 2.0,
    "steps": 2.0,
}

#: Built-in tables by column name.
BUILTIN_TABLES: dict[str, dict[str, float]] = {"road_type": SPACENET_ROAD_TYPE_M, "highway": OSM_HIGHWAY_M}


@dataclass
class WidthSpec:
    """How to get each feature's width; serialisable into the label run record."""

    width: float = DEFAULT_WIDTH_M
    width_attr: str | None = None
    lane_width: float | None = None
    table_attr: str | None = None
    table: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse contradictory or impossible width rules, and fill ``table`` from a built-in one when named."""
        if not self.width > 0:
            raise InvalidInput(f"road width must be positive, got {self.width}")
        if self.lane_width is not None and not self.lane_width > 0:
            raise InvalidInput(f"lane width must be positive, got {self.lane_width}")
        if self.lane_width is not None and self.width_attr is None:
            raise InvalidInput("--lane-width needs --width-attr (the lane-count attribute, e.g. lane_number)")
        if self.width_attr and self.table_attr:
            raise InvalidInput("use either --width-attr or --width-table, not both")
        if self.table_attr and not self.table:
            if self.table_attr not in BUILTIN_TABLES:
                raise InvalidInput(
                    f"no built-in width table for {self.table_attr!r} (built-in: {', '.join(BUILTIN_TABLES)}); "
                    "give one with --width-table-file"
                )
            self.table = dict(BUILTIN_TABLES[self.table_attr])

    @classmethod
    def from_options(
        cls,
        width: float | None = None,
        width_attr: str | None = None,
        lane_width: float | None = None,
        width_table: str | None = None,
        width_table_file: str | None = None,
    ) -> WidthSpec:
        """Build from CLI/task options; a table file is a JSON object ``{"class value": metres}``."""
        table: dict[str, float] = {}
        if width_table_file:
            if not width_table:
                raise InvalidInput("--width-table-file needs --width-table COLUMN (the attribute it is keyed by)")
            try:
                raw = json.loads(Path(width_table_file).read_text())
                table = {str(k): float(v) for k, v in raw.items()}
            except (OSError, ValueError, AttributeError) as exc:
                raise InvalidInput(f"cannot read width table {width_table_file}: {exc}") from exc
        return cls(
            width=DEFAULT_WIDTH_M if width is None else float(width),
            width_attr=width_attr,
            lane_width=lane_width,
            table_attr=width_table,
            table=table,
        )

    @property
    def max_width(self) -> float:
        """An upper bound only used to size clipping margins (attribute widths are checked per tile)."""
        return max([self.width, *self.table.values()])

    def widths(self, frame: pd.DataFrame) -> np.ndarray:
        """Width in metres for each row of ``frame`` (always positive, fallback where unknown)."""
        n = len(frame)
        if self.width_attr:
            if self.width_attr not in frame.columns:
                return np.full(n, self.width)
            values = pd.to_numeric(frame[self.width_attr], errors="coerce").to_numpy(dtype=float)
            if self.lane_width is not None:
                values = values * self.lane_width
        elif self.table_attr:
            if self.table_attr not in frame.columns:
                return np.full(n, self.width)
            keys = frame[self.table_attr].map(_table_key)
            values = keys.map(self.table).to_numpy(dtype=float)
        else:
            return np.full(n, self.width)
        return np.where(np.isfinite(values) & (values > 0), values, self.width)

    def check_columns(self, columns: Iterable[object]) -> str | None:
        """A warning text when the chosen attribute is not in the data (every road then gets the fallback)."""
        attr = self.width_attr or self.table_attr
        if attr and attr not in columns:
            return f"attribute {attr!r} not found (columns: {', '.join(map(str, columns))}); using {self.width} m"
        return None


def _table_key(value: object) -> str | None:
    """Table keys are strings; SpaceNet stores ``road_type`` as "5" or 5 or 5.0 depending on the file."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
