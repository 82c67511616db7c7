"""HTML fragments that htmx swaps into the gateway's page (model card, prediction result, errors).

The markup is in Jinja2 templates (``gateway/templates``, autoescaped, as the labeler's pages are);
this module chooses what they show: which rows, layers and downloads, with the numbers formatted.
Each function returns the fragment as text, which the ``/ui/`` routes answer as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.templating import Jinja2Templates

from roadseg.documents import PredictionRecord, Roads, Status
from roadseg.pixel_size import AUTO

if TYPE_CHECKING:
    from roadseg.gateway.endpoints.predictions import Prediction

#: The fragments' templates (``.html``: autoescaped).
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))

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


def _render(template: str, **context: object) -> str:
    return templates.get_template(template).render(**context)


def error(message: str) -> str:
    """An alert box with the (escaped) message, swapped in by htmx when a ``/ui/`` request fails."""
    return _render("_error.html", message=message)


def _text(value: object) -> str:
    """A model card value as shown: floats with three decimals, anything else as it is."""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


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
    """Version, backbone, threshold and the card's flat metrics as a definition list.

    A card whose ``plain_pixel_size`` is ``auto`` marks the list (``data-plain-pixel-size``): the page's
    pixel size field then says that its default is the model's choice (app.js).
    """
    serving = card.get("serving", {})
    rows: list[tuple[str, Any]] = [
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
    plain_auto = card.get("plain_pixel_size") == AUTO
    if plain_auto:
        rows.append(("Plain images", "scale chosen by the model (auto) unless a pixel size is given"))
    if (card.get("tta") or "none") != "none":
        rows.append(("Test-time augmentation", card["tta"]))
    rows += _metric_rows(card.get("metrics") or {})
    shown = [(str(name), _text(value)) for name, value in rows]
    return _render("_model_card.html", rows=shown, created=card.get("created"), plain_auto=plain_auto)


#: Stages of a prediction as the page names them, in order (keys of the record's ``timings``).
STAGES = {"upload": "upload", "predict": "predict", "pngs": "outputs", "roads": "road graph", "store": "store"}


def _timings_context(record: PredictionRecord) -> dict[str, Any]:
    """What ``_timings.html`` shows: seconds per stage, and the test-time augmentation that ran."""
    spent = record.timings or {}
    return {"timings": [(label, spent[key]) for key, label in STAGES.items() if key in spent], "tta": record.tta}


def timings(record: PredictionRecord) -> str:
    """Where the time went, one line: seconds per stage (and the test-time augmentation that ran)."""
    return _render("_timings.html", **_timings_context(record))


def _roads_context(record: PredictionRecord) -> dict[str, Any]:
    """What ``_roads_status.html`` shows: whether the road network is being built or ready."""
    roads = record.roads
    return {"job_id": record.id, "roads_pending": roads == Roads.PENDING, "roads_ready": roads == Roads.READY}


def roads_status(record: PredictionRecord, oob_timings: bool = False) -> str:
    """The road network's line: polls every second while it is built, then says so (and what it cost).

    Only this line polls, so the viewer (opacity, clicked points) is never re-rendered. With
    ``oob_timings`` the answer also replaces the timings line out of band (htmx ``hx-swap-oob``).
    """
    return _render("_roads_status.html", **_roads_context(record), **_timings_context(record), oob_timings=oob_timings)


#: The road layers the viewer stacks on the image: (file, element id, label). The centreline band's
#: overlay only exists for models with that output.
ROAD_LAYERS = (
    ("overlay.png", "overlay", "Road surface"),
    ("centerline_overlay.png", "centerline-overlay", "Centreline"),
)


def prediction(record: Prediction) -> str:
    """A running job polls itself every second; a finished one shows the viewer and the downloads."""
    if record.status == Status.FAILED:
        return error(f"prediction {record.id} failed: {record.error}")
    if record.status != Status.DONE:
        return _render(
            "_progress.html",
            job_id=record.id,
            stage=record.stage or record.status,
            pct=round(100 * float(record.progress or 0)),
            windows_done=record.windows_done or 0,
            windows_total=record.windows_total,
        )
    info, links = record.info, record.links
    return _render(
        "_prediction.html",
        **_roads_context(record),
        **_timings_context(record),
        width=info.width,
        height=info.height,
        unit="m" if info.georeferenced else "px",
        # Tiles from the COGs, routes in lon/lat: the map page (gateway/endpoints/map_page.py).
        georeferenced=info.georeferenced,
        image_src=links["image.png"],
        layers=[(ident, label, links[name]) for name, ident, label in ROAD_LAYERS if name in links],
        downloads=[(links[name], label) for name, label in DOWNLOADS.items() if name in links],
        roads_note=record.roads_note,
        resampling=record.resampling,
        # No pixel size given, yet the scale estimated: the card's plain_pixel_size auto chose it.
        card_auto=record.pixel_size_m is None,
        road_fraction=record.road_fraction,
        threshold=record.threshold,
        seconds=record.seconds,
    )
