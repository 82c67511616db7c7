"""Reviewed candidates out: GeoJSON for GIS tools and an OSM change file (``.osc``) that JOSM opens.

Accepted missing roads carry the tags an editor expects: ``highway=road`` (OSM's tag for a road whose
class is not known yet, for the mapper to refine), ``source=roadseg <model> v<version>`` and the score.
A plain image's candidates are in pixel coordinates: their GeoJSON says ``crs: null`` and no OSM
change file can be made of them (OSM needs longitude/latitude).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from roadseg.errors import InvalidInput
from roadseg.missing.frame import WGS84
from roadseg.missing.records import (
    MISSING,
    Candidate,
    MissingRecord,
    all_candidates,
    bulk_rule,
    decision_kinds,
    effective,
)
from roadseg.storage import Storage

#: OSM's tag for a road of unknown class: the placeholder a mapper refines.
PLACEHOLDER_TAGS = {"highway": "road"}


def model_label(record: MissingRecord) -> str:
    """``roadseg <model> v<version>``: the ``source`` tag of exported roads."""
    model = record.model or {}
    return f"roadseg {model.get('model_name') or 'roads'} v{model.get('model_version') or '?'}"


def candidates_geojson(candidates: Iterable[Candidate], record: MissingRecord, tags: bool = False) -> dict[str, Any]:
    """A FeatureCollection of candidates: EPSG:4326 lines (RFC 7946), or pixel lines for a plain image.

    Each feature also keeps the line in the scene's CRS as the foreign member ``scene_geometry``.
    ``tags`` adds the editor's tags (``highway``, ``source``) to the properties.
    """
    georeferenced = record.info.georeferenced
    source = model_label(record)
    features = []
    for c in candidates:
        coords = c.coordinates_wgs84 if georeferenced else c.coordinates
        properties: dict[str, Any] = {
            "id": c.id,
            "kind": c.kind,
            "rank": c.rank,
            "score": c.score,
            "length_m": c.length_m,
            "mean_probability": c.mean_probability,
            "connected": c.connected,
        }
        if tags:
            properties |= PLACEHOLDER_TAGS | {"source": source}
        features.append(
            {
                "type": "Feature",
                "properties": properties,
                "geometry": {"type": "LineString", "coordinates": coords},
                "scene_geometry": {"type": "LineString", "coordinates": c.coordinates},
            }
        )
    crs = WGS84 if georeferenced else None
    note = None if georeferenced else "plain image: coordinates are pixels (x = column, y = row), no CRS"
    meta = {"crs": crs, "scene_crs": record.info.crs, "job": record.id, "model": source, "note": note}
    return {"type": "FeatureCollection", "roadseg": meta, "features": features}


def decided(storage: Storage, record: MissingRecord, which: str) -> list[Candidate]:
    """The missing candidates whose effective decision is ``which`` (accept or reject), in rank order."""
    found = decision_kinds(storage, record.id)
    rule = bulk_rule(storage, record.id)
    return [c for c in all_candidates(storage, record, MISSING) if effective(c, found.get(c.id), rule) == which]


def osm_change(candidates: list[Candidate], record: MissingRecord) -> bytes:
    """An osmChange 0.6 document creating one way per candidate (new nodes and ways get negative ids)."""
    if not record.info.georeferenced:
        raise InvalidInput("the image has no georeference: its candidates are in pixels, which OSM cannot take")
    root = ET.Element("osmChange", version="0.6", generator="roadseg")
    create = ET.SubElement(root, "create")
    ways = []
    next_id = -1
    source = model_label(record)
    for candidate in candidates:
        refs = []
        for lon, lat in candidate.coordinates_wgs84 or []:
            ET.SubElement(create, "node", id=str(next_id), version="0", lat=f"{lat:.8f}", lon=f"{lon:.8f}")
            refs.append(next_id)
            next_id -= 1
        ways.append((candidate, refs))
    for candidate, refs in ways:
        way = ET.SubElement(create, "way", id=str(next_id), version="0")
        next_id -= 1
        for ref in refs:
            ET.SubElement(way, "nd", ref=str(ref))
        tags = PLACEHOLDER_TAGS | {"source": source, "roadseg:score": f"{candidate.score:.4f}"}
        for key, value in tags.items():
            ET.SubElement(way, "tag", k=key, v=value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
