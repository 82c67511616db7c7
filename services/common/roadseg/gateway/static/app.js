// roadseg page: htmx does upload and polling; this file adds drag-and-drop, upload progress,
// the overlay opacity slider and layer toggles, and route picking (clicks or typed coordinates -> route API -> SVG).
"use strict";

// Swap error fragments (4xx/5xx) into the target too, so the user reads the server's message.
htmx.config.responseHandling = [
  { code: "204", swap: false },
  { code: "[2345]..", swap: true, error: false },
  { code: "...", swap: false },
];

const SVG_NS = "http://www.w3.org/2000/svg";

function setupUpload() {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file");
  const zone = document.getElementById("drop-zone");
  const progress = document.getElementById("upload-progress");
  input.addEventListener("change", () => { if (input.files.length) htmx.trigger(form, "submit"); });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    if (!e.dataTransfer.files.length) return;
    input.files = e.dataTransfer.files;
    htmx.trigger(form, "submit");
  });
  form.addEventListener("htmx:xhr:progress", (e) => {
    if (e.detail.lengthComputable) progress.value = (100 * e.detail.loaded) / e.detail.total;
  });
  form.addEventListener("htmx:beforeRequest", () => {
    progress.value = 0;
    document.getElementById("result").innerHTML = '<p class="muted">Uploading and predicting&hellip;</p>';
  });
  document.getElementById("example").addEventListener("htmx:beforeRequest", () => {
    document.getElementById("result").innerHTML = '<p class="muted">Predicting the example image&hellip;</p>';
  });
  // The pixel size field's default is the model card's: its own resolution, or auto where plain_pixel_size says so.
  document.getElementById("model-card").addEventListener("htmx:afterSwap", (e) => {
    const auto = e.target.querySelector("[data-plain-pixel-size='auto']");
    document.getElementById("pixel-size").placeholder = auto ? "auto (the model's default)" : "the model's";
  });
  form.addEventListener("htmx:sendError", () => {
    document.getElementById("result").innerHTML =
      '<div class="error" role="alert"><strong>Error:</strong> the gateway cannot be reached.</div>';
  });
}

function viewer() { return document.querySelector(".viewer"); }

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawMarkers(form) {
  const layer = document.getElementById("route-layer");
  layer.querySelectorAll("circle").forEach((c) => c.remove());
  const r = Math.max(4, Number(viewer().dataset.width) / 150);
  for (const [x, y] of [["sx", "sy"], ["ex", "ey"]]) {
    if (form[x].value === "" || form[y].value === "") continue;
    layer.appendChild(svgEl("circle", { cx: form[x].value, cy: form[y].value, r, class: "marker",
      fill: "#00e5ff", stroke: "#000", "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
  }
}

function clearRoute() {
  document.getElementById("route-layer").replaceChildren();
  document.getElementById("route-info").textContent = "";
}

async function findRoute(form) {
  const v = viewer();
  const info = document.getElementById("route-info");
  const body = {
    start: [Number(form.sx.value), Number(form.sy.value)],
    end: [Number(form.ex.value), Number(form.ey.value)],
    crs: "pixel",
  };
  info.textContent = "Finding the route…";
  let response;
  try {
    response = await fetch(`/api/v1/predictions/${v.dataset.id}/route`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (err) {
    info.textContent = "Error: the gateway cannot be reached.";
    return;
  }
  const data = await response.json();
  const layer = document.getElementById("route-layer");
  layer.querySelectorAll("polyline").forEach((p) => p.remove());
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    info.textContent = `No route: ${detail}`;
    return;
  }
  const props = data.properties;
  const points = props.pixel_coordinates.map(([x, y]) => `${x},${y}`).join(" ");
  layer.insertBefore(svgEl("polyline", { points, id: "route-line", fill: "none", stroke: "#00e5ff",
    "stroke-width": 4, "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke" }), layer.firstChild);
  const length = props.length_m !== undefined && props.length_m !== null
    ? `${props.length_m.toFixed(1)} m` : `${props.length_px.toFixed(1)} px`;
  info.textContent = `Route length: ${length}`;
  info.dataset.length = length;
}

function setupViewer() {
  document.addEventListener("input", (e) => {
    if (e.target.id === "opacity") setOpacity(e.target.value);
    if (e.target.dataset.layer) document.getElementById(e.target.dataset.layer).hidden = !e.target.checked;
  });
  document.addEventListener("click", (e) => {
    const stack = e.target.closest("#stack");
    if (!stack) return;
    const v = viewer();
    // Chromium reports clicks in whole CSS pixels while the image's box may start at a fraction of one, so a
    // click on its first row or column came out as y = -0.2 ("outside the image"): clamp to the image.
    const rect = stack.getBoundingClientRect();
    const width = Number(v.dataset.width), height = Number(v.dataset.height);
    const clamp = (value, max) => Math.min(Math.max(value, 0), max);
    const x = clamp(((e.clientX - rect.left) * width) / rect.width, width);
    const y = clamp(((e.clientY - rect.top) * height) / rect.height, height);
    const form = document.getElementById("route-form");
    const second = form.sx.value !== "" && form.ex.value === "";
    if (!second) { form.reset(); clearRoute(); }
    form[second ? "ex" : "sx"].value = x.toFixed(1);
    form[second ? "ey" : "sy"].value = y.toFixed(1);
    drawMarkers(form);
    if (second) findRoute(form);
  });
  document.addEventListener("submit", (e) => {
    if (e.target.id !== "route-form") return;
    e.preventDefault();
    drawMarkers(e.target);
    findRoute(e.target);
  });
  document.addEventListener("reset", (e) => { if (e.target.id === "route-form") clearRoute(); });
  document.body.addEventListener("htmx:afterSwap", () => {
    const slider = document.getElementById("opacity");
    if (slider) setOpacity(slider.value);
  });
}

// One opacity for every road layer (surface and centreline overlays).
function setOpacity(percent) {
  for (const layer of document.querySelectorAll("#stack .layer")) layer.style.opacity = percent / 100;
}

setupUpload();
setupViewer();
