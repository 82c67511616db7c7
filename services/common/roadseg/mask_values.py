"""The values of a road mask (docs/contracts.md §2), in a module light enough for settings to import.

0 is background and 255 road; every other value is *ignore* and never counts in a loss or a metric.
roadseg writes :data:`IGNORE` where a tile has no data, and the trainer pads crops with it.
"""

BACKGROUND = 0
ROAD = 255
#: What roadseg writes for pixels to ignore (any value other than 0 and 255 is ignored when read).
IGNORE = 127
