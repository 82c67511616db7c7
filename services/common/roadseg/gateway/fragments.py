"""HTML fragments that htmx swaps into the page (model card, prediction result, errors).

Plain functions with escaped f-strings: the fragments are small, and keeping them next to the
API keeps the page free of client-side templating.
"""

from __future__ import annotations

from html import escape
from typing import Any

from roadseg.documents import ROADS_PENDING, ROADS_READY
from roadseg.jobs import DONE, FAILED

#: Human names of the downloadable outputs, in the order they are offered.
DOWNLOADS = {
    "mask.png": "Mask PNG (0/255)",
    "overlay.png": "Overlay PNG",
    "probability.tif": "Probability GeoTIFF",
    "probability.png": "Probability PNG",
    "mask.tif": "Mask GeoTIFF",
    "centerline.png": "Centreline PNG (0/255)",
    "centerline.tif": "Centreline GeoTIFF",
    "centerline_probability.tif": "Centreline probability GeoTIFF",
    "roads.geojson": "Roads GeoJSON",
}


def error(message: str) -> str:
    """An alert box with the escaped message, swapped in by htmx when a ``/ui/`` request fails."""
    return f'<div class="error" role="alert"><strong>Error:</strong> {escape(message)}</div>'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape(str(value))


#: Metrics worth a line on the page (the card may hold many more; /api/v1/model has them all).
SHOWN_METRICS = ("iou_road", "f1", "relaxed_f1")


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """Flat numbers as they are; one level of nesting (per evaluation set) limited to the headline metrics."""
    rows: list[tuple[str, Any]] = []
    for name, value in metrics.items():
        if isinstance(value, int | float):
            rows.append((name, value))
        elif isinstance(value, dict):
            rows += [(f"{name} {k}", v) for k, v in value.items() if k in SHOWN_METRICS and isinstance(v, int | float)]
    return rows


def model_card(card: dict[str, Any]) -> str:
    """Version, backbone, threshold and the card's flat metrics as a definition list."""
    serving = card.get("serving", {})
    rows = [
        ("Model", f"{card.get('name') or serving.get('model_name', '?')} v{serving.get('model_version', '?')}"),
        ("Backend", serving.get("backend", "?")),
        ("Backbone", card.get("backbone") or "unknown"),
        ("Threshold", card.get("threshold") or "?"),
    ]
    if card.get("outputs"):
        thresholds = card.get("thresholds") or {}
        names = {"surface": "road surface", "band": f"centreline band ({card.get('band_width_m') or '?'} m)"}
        outputs = [
            f"{names.get(o, o)} at {thresholds[o]:.2f}" if o in thresholds else names.get(o, o) for o in card["outputs"]
        ]
        rows[-1] = ("Outputs (threshold)", "; ".join(outputs))
    if card.get("pixel_size_range_m"):
        low, high = card["pixel_size_range_m"]
        rows.append(("Pixel size", f"{low:g}\u2013{high:g} m"))
    elif card.get("pixel_size_m"):
        rows.append(("Pixel size", f"{card['pixel_size_m']:g} m"))
    if (card.get("tta") or "none") != "none":
        rows.append(("Test-time augmentation", card["tta"]))
    rows += _metric_rows(card.get("metrics") or {})
    items = "".join(f"<dt>{escape(str(k))}</dt><dd>{_fmt(v)}</dd>" for k, v in rows)
    created = f'<p class="muted">Created {escape(str(card["created"]))}</p>' if card.get("created") else ""
    return f"<dl>{items}</dl>{created}"


#: Stages of a prediction as the page names them, in order (keys of the record's ``timings``).
STAGES = {"upload": "upload", "predict": "predict", "pngs": "outputs", "roads": "road graph", "store": "store"}


def timings(record: dict[str, Any]) -> str:
    """Where the time went, one line: seconds per stage (and the test-time augmentation that ran)."""
    spent = record.get("timings") or {}
    parts = [f"{label} {spent[key]:.1f} s" for key, label in STAGES.items() if key in spent]
    if not parts:
        return ""
    tta = f" &middot; test-time augmentation: {escape(record['tta'])}" if record.get("tta") else ""
    return f'<p class="muted" id="timings">Time: {" &middot; ".join(parts)}{tta}</p>'


def roads_status(record: dict[str, Any], oob_timings: bool = False) -> str:
    """The road network's line: polls every second while it is built, then says so (and what it cost).

    Only this line polls, so the viewer (opacity, clicked points) is never re-rendered. With
    ``oob_timings`` the answer also replaces the timings line out of band (htmx ``hx-swap-oob``).
    """
    job_id = escape(record["id"])
    if record.get("roads") == ROADS_PENDING:
        return (
            f'<p class="muted" id="roads-status" hx-get="/ui/predictions/{job_id}/roads" hx-trigger="every 1s" '
            'hx-swap="outerHTML">Road network: being built; a route asked for now waits for it.</p>'
        )
    if record.get("roads") != ROADS_READY:
        return ""
    line = '<p class="muted" id="roads-status">Road network: ready.</p>'
    return line + (timings(record).replace('id="timings"', 'id="timings" hx-swap-oob="true"') if oob_timings else "")


#: The road layers the viewer stacks on the image: (file, element id, label). The centreline band's
#: overlay only exists for models with that output.
ROAD_LAYERS = (
    ("overlay.png", "overlay", "Road surface"),
    ("centerline_overlay.png", "centerline-overlay", "Centreline"),
)


def _road_layers(links: dict[str, str], width: int, height: int) -> tuple[str, str]:
    """(the overlay images, a checkbox per overlay to show or hide it) for the layers a prediction has."""
    present = [(name, ident, label) for name, ident, label in ROAD_LAYERS if name in links]
    images = "".join(
        f'<img id="{ident}" class="layer" src="{escape(links[name])}" alt="{label.lower()}" '
        f'width="{width}" height="{height}">'
        for name, ident, label in present
    )
    if len(present) < 2:
        return images, ""
    boxes = "".join(
        f'<label><input type="checkbox" data-layer="{ident}" checked> {label}</label>' for _, ident, label in present
    )
    return images, f'<span class="layers" role="group" aria-label="layers">{boxes}</span>'


def prediction(record: dict[str, Any]) -> str:
    """A running job polls itself every second; a finished one shows the viewer and the downloads."""
    job_id = escape(record["id"])
    if record["status"] == FAILED:
        return error(f"prediction {record['id']} failed: {record.get('error')}")
    if record["status"] != DONE:
        pct = round(100 * float(record.get("progress") or 0))
        windows = ""
        if record.get("windows_total"):
            windows = f" &middot; window {record.get('windows_done') or 0} of {record['windows_total']}"
        return (
            f'<div class="status" hx-get="/ui/predictions/{job_id}" hx-trigger="every 1s" hx-swap="outerHTML">'
            f"<p>{escape(record.get('stage') or record['status'])}: {pct}%{windows}</p>"
            f'<progress max="100" value="{pct}" aria-label="prediction progress">{pct}%</progress></div>'
        )
    info, links = record["info"], record["links"]
    width, height = info["width"], info["height"]
    unit = "m" if info["georeferenced"] else "px"
    downloads = "".join(
        f'<li><a class="button" href="{escape(links[name])}" download>{label}</a></li>'
        for name, label in DOWNLOADS.items()
        if name in links
    )
    if info["georeferenced"]:  # tiles from the COGs, routes in lon/lat: the map page (gateway/endpoints/map_page.py)
        downloads = f'<li><a class="button" href="/map?prediction={job_id}">Open on the map</a></li>' + downloads
    roads_note = f'<p class="muted">{escape(record["roads_note"])}</p>' if record.get("roads_note") else ""
    roads_note += roads_status(record)
    roads_note += timings(record)
    resampling = record.get("resampling")
    if resampling:
        roads_note += (
            f'<p class="muted" id="resampling">Predicted at the model\'s {resampling["model_pixel_size_m"]:g} m '
            f"pixels (this image: {resampling['image_pixel_size_m']:.2f} m), then mapped back to every pixel.</p>"
        )
    layers, toggles = _road_layers(links, width, height)
    return f"""
<section class="viewer" data-id="{job_id}" data-width="{width}" data-height="{height}" data-unit="{unit}"
         aria-label="prediction result">
  <div class="controls">
    <label>Overlay opacity <input type="range" id="opacity" min="0" max="100" value="70"></label>
    {toggles}
    <span>{width} &times; {height} px &middot; roads {100 * record["road_fraction"]:.1f}% &middot;
      threshold {record["threshold"]:.2f} &middot; {record["seconds"]:.1f} s</span>
  </div>
  <div class="stack" id="stack" title="Click two points on a road">
    <img id="base" src="{escape(links["image.png"])}" alt="uploaded image" width="{width}" height="{height}">
    {layers}
    <svg id="route-layer" viewBox="0 0 {width} {height}" preserveAspectRatio="none" aria-hidden="true"></svg>
  </div>
  {roads_note}
  <form id="route-form" class="route-form">
    <fieldset>
      <legend>Route: click two points on a road, or type pixel coordinates</legend>
      <label>Start x <input name="sx" type="number" min="0" max="{width}" step="any" required></label>
      <label>y <input name="sy" type="number" min="0" max="{height}" step="any" required></label>
      <label>End x <input name="ex" type="number" min="0" max="{width}" step="any" required></label>
      <label>y <input name="ey" type="number" min="0" max="{height}" step="any" required></label>
      <button type="submit">Find route</button>
      <button type="reset">Clear</button>
    </fieldset>
  </form>
  <p id="route-info" aria-live="polite"></p>
  <ul class="downloads" aria-label="downloads">{downloads}</ul>
</section>"""
