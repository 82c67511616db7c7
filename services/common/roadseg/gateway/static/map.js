// The map page: one georeferenced prediction (?prediction=<id>) or ingested scene (?scene=<id>) on MapLibre.
// Extent and tile URL templates come from the resource's STAC item (xyz links); the basemap from the settings.
import * as maplibregl from "/vendor/maplibre-gl/maplibre-gl.mjs";

const params = new URLSearchParams(location.search);
const prediction = params.get("prediction");
const scene = params.get("scene");
const api = prediction ? `/api/v1/predictions/${encodeURIComponent(prediction)}`
  : `/api/v1/scenes/${encodeURIComponent(scene || "")}`;
// Drawn on top of each other in this order; the image is opaque, the rest over it.
const DEFAULT_OPACITY = { image: 1, probability: 0.6, surface: 0.8, centerline: 0.9 };
const SHOWN = { image: true, surface: true };

function status(text) { document.getElementById("status").textContent = text; }

async function json(url, options) {
  const r = await fetch(url, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}

function toggle(map, id, text, checked) {
  // A row of the layer panel whose checkbox shows or hides map layer `id`; returned for more controls.
  const row = document.createElement("div");
  row.className = "layer";
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = checked;
  box.id = `toggle-${id}`;
  box.addEventListener("change", () => map.setLayoutProperty(id, "visibility", box.checked ? "visible" : "none"));
  label.append(box, ` ${text}`);
  row.append(label);
  document.getElementById("layers").append(row);
  return row;
}

function layerControls(map, name) {
  // A raster layer: its toggle and an opacity slider.
  const row = toggle(map, name, name, Boolean(SHOWN[name]));
  const slider = document.createElement("input");
  slider.type = "range";
  slider.min = "0";
  slider.max = "1";
  slider.step = "0.05";
  slider.value = String(DEFAULT_OPACITY[name] ?? 1);
  slider.setAttribute("aria-label", `${name} opacity`);
  slider.addEventListener("input", () => map.setPaintProperty(name, "raster-opacity", Number(slider.value)));
  row.append(slider);
}

function roadLines(map) {
  // The predicted road network as vector lines (GeoJSON in lon/lat, built on first use), with a toggle.
  map.addSource("roads", { type: "geojson", data: `${api}/roads.geojson` });
  map.addLayer({ id: "roads", type: "line", source: "roads", paint: { "line-color": "#4363d8", "line-width": 2 } });
  toggle(map, "roads", "road network (lines)", true);
}

async function missingRoads(map) {
  // A prediction made by a missing-roads job lists its candidates among its files (lon/lat, best first):
  // drawn thicker where the score is higher, with a toggle; a click shows one's rank, score and length.
  const candidates = await json(`${api}/files/missing.geojson`);
  map.addSource("missing", { type: "geojson", data: candidates });
  map.addLayer({
    id: "missing",
    type: "line",
    source: "missing",
    paint: {
      "line-color": "#f58231",
      "line-width": ["interpolate", ["linear"], ["get", "score"], 0, 2, 1, 6],
      "line-dasharray": [2, 1],
    },
  });
  toggle(map, "missing", `missing-road candidates (${candidates.features.length})`, true);
  map.on("click", "missing", (event) => {
    const p = event.features[0].properties;
    status(`Candidate ${p.id}: rank ${p.rank + 1}, score ${p.score}, ${Math.round(p.length_m)} m` +
      (p.connected ? "" : " (not joined to the map's roads)"));
  });
}

function routing(map) {
  // Two clicks in lon/lat -> POST .../route with crs EPSG:4326 -> the path drawn and its length in metres.
  document.getElementById("route-panel").hidden = false;
  map.addSource("route", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "route", type: "line", source: "route", paint: { "line-color": "#e6194b", "line-width": 4 } });
  let start = null;
  map.on("click", async (event) => {
    // A click on a missing-road candidate shows it (missingRoads); a route point is a click beside one.
    if (map.getLayer("missing") && map.queryRenderedFeatures(event.point, { layers: ["missing"] }).length) return;
    const point = [event.lngLat.lng, event.lngLat.lat];
    const result = document.getElementById("route-result");
    if (!start) { start = point; result.textContent = "Start set: click the end."; return; }
    const body = { start, end: point, crs: "EPSG:4326" };
    start = null;
    try {
      const route = await json(`${api}/route`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      map.getSource("route").setData(route);
      result.textContent = `${Math.round(route.properties.length_m)} m`;
    } catch (error) { result.textContent = error.message; }
  });
}

async function main() {
  const [item, config] = await Promise.all([json(`${api}/item.json`), json("/ui/map/config")]);
  document.getElementById("title").textContent = `${prediction ? "Prediction" : "Scene"} ${item.id}`;
  const sources = {}, layers = [];
  if (config.basemap_url) {
    sources.basemap = { type: "raster", tiles: [config.basemap_url], tileSize: 256 };
    layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  const [west, south, east, north] = item.bbox;
  const xyz = item.links.filter((link) => link.rel === "xyz");
  for (const link of xyz) {
    const tiles = [new URL(link.href, location.href).href.replace(/%7B/g, "{").replace(/%7D/g, "}")];
    sources[link.title] = { type: "raster", tiles, tileSize: 256, bounds: [west, south, east, north], maxzoom: 22 };
    layers.push({
      id: link.title, type: "raster", source: link.title,
      layout: { visibility: SHOWN[link.title] ? "visible" : "none" },
      paint: { "raster-opacity": DEFAULT_OPACITY[link.title] ?? 1, "raster-resampling": "nearest" },
    });
  }
  const map = new maplibregl.Map({
    container: "map",
    style: { version: 8, sources, layers },
    bounds: [[west, south], [east, north]],
    fitBoundsOptions: { padding: 20 },
    maxZoom: 22,
    attributionControl: false,
  });
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  window.roadsegMap = map;  // for the browser test and the console
  for (const link of xyz) layerControls(map, link.title);
  map.on("load", () => {
    if (prediction) { roadLines(map); routing(map); }
    status("Map ready.");
    if (item.assets.missing_geojson) missingRoads(map).catch((error) => status(`Missing roads: ${error.message}`));
  });
  map.on("error", (event) => status(event.error ? event.error.message : "map error"));
}

main().catch((error) => status(error.message));
