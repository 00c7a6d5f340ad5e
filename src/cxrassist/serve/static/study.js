// Study page: the radiograph on a canvas with window/level on its stored values, zoom, pan, heatmap overlays, the
// lung contour, the findings ranked with their measured figures, the impression, keyboard shortcuts.
// Window/level is cxrassist.preprocess.apply_level's formula (CXR.level) applied to the STORED pixel values the
// worker wrote at full bit depth (serve/viewimage.py; presets and the DICOM VOI window come in the study's
// view_pixels): out = clip((v - (center - width/2)) / width, 0, 1), then 1 - out when the display is inverted.
// Views without stored values (bone images) are 8-bit PNGs windowed the same way in 0..255.
"use strict";
(() => {
  const { api, json, bitmap, objectUrl, el, pct, level, modelBanner } = CXR;
  const FINAL = new Set(["done", "refused", "failed"]);
  const studyId = new URLSearchParams(window.location.search).get("id") || "";
  const canvas = document.getElementById("view");
  const ctx = canvas.getContext("2d");
  const opacity = document.getElementById("opacity");
  const $ = (id) => document.getElementById(id);

  const S = {
    detail: null, presets8: {}, center: 0.5, width: 1.0, userInvert: false, zoom: 1, panX: 0, panY: 0,
    view: "radiograph", views: {}, base: null, overlay: null, overlayCode: "", overlayOn: true, contour: null,
    cache: new Map(), drawQueued: false, order: [], started: Date.now(), pipeline: "",
  };

  // ---------------------------------------------------------------- images → pixels
  function toCanvas(img) {
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    c.getContext("2d").drawImage(img, 0, 0);
    return c;
  }

  function blankCanvas(w, h) {
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    return c;
  }

  // 8-bit PNG views (bone images): values 0..255, presets of cxrassist.preprocess.LEVEL_PRESETS scaled to 0..255.
  async function loadGray(name) {
    const key = "gray:" + name;
    if (!S.cache.has(key)) {
      S.cache.set(key, bitmap(studyId, name).then((img) => {
        const c = toCanvas(img);
        const rgba = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const values = new Uint8Array(c.width * c.height);
        for (let i = 0; i < values.length; i++) values[i] = rgba[4 * i];
        const presets = {};
        for (const [k, p] of Object.entries(S.presets8)) {
          presets[k] = { center: 255 * p.center, width: 255 * p.width, label: k.replace("_", " "), why: "8-bit picture" };
        }
        if (!presets.default) presets.default = { center: 127.5, width: 255, label: "default", why: "8-bit picture" };
        return { name, values, w: c.width, h: c.height, canvas: blankCanvas(c.width, c.height),
          meta: { min: 0, max: 255, invert: false, presets, units: "8-bit grey", rescale: null } };
      }));
    }
    return S.cache.get(key);
  }

  // Stored pixel values at full bit depth (raw little-endian, dtype and presets from view_pixels).
  async function loadRaw(role, meta) {
    const key = "raw:" + role;
    if (!S.cache.has(key)) {
      S.cache.set(key, (async () => {
        const resp = await api(`/api/studies/${encodeURIComponent(studyId)}/pixels/${role}`);
        if (!resp.ok) throw new Error(`pixels ${role}: HTTP ${resp.status}`);
        const buf = await resp.arrayBuffer();
        const T = { uint16: Uint16Array, int16: Int16Array, uint8: Uint8Array }[meta.dtype];
        const values = new T(buf);
        if (values.length !== meta.width * meta.height) throw new Error(`pixels ${role}: ${values.length} values`);
        return { name: role, values, w: meta.width, h: meta.height, canvas: blankCanvas(meta.width, meta.height),
          meta: { ...meta, units: `stored values, ${meta.bits_stored}-bit ${meta.photometric}` } };
      })());
    }
    return S.cache.get(key);
  }

  // A grey heat map (0..255) -> RGBA canvas drawn like the report's PNGs (report/images.py heatmap_picture): the
  // legend's colours interpolated linearly, alpha 0 below the legend's floor growing to 1 at the map's maximum; the
  // opacity slider (default = the legend's opacity, 50 %) scales it, as the PNG blend does.
  const HEAT_ANCHORS = ["#30123b", "#2978ed", "#1ad9bf", "#8cfc4d", "#facc2e", "#eb540d", "#7a0503"];
  const HEAT_FLOOR = 0.2;
  function heatLut(legend) {
    const hex = (legend && legend.colors && legend.colors.length > 1) ? legend.colors : HEAT_ANCHORS;
    const floor = legend && typeof legend.transparent_below === "number" ? legend.transparent_below : HEAT_FLOOR;
    const rgb = hex.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
    return Array.from({ length: 256 }, (_, v) => {
      const t = v / 255, pos = t * (rgb.length - 1), lo = Math.floor(pos), hi = Math.min(lo + 1, rgb.length - 1);
      const f = pos - lo;
      const c = rgb[lo].map((x, k) => x * (1 - f) + rgb[hi][k] * f);
      return [c[0], c[1], c[2], 255 * Math.min(1, Math.max(0, (t - floor) / Math.max(1e-6, 1 - floor)))];
    });
  }

  function renderLegend(legend) {
    const box = $("heatmap-legend");
    const lut = heatLut(legend);
    const bar = document.createElement("canvas");
    bar.width = 256; bar.height = 1; bar.className = "legend-bar";
    bar.setAttribute("role", "img");
    const floor = legend && typeof legend.transparent_below === "number" ? legend.transparent_below : HEAT_FLOOR;
    bar.setAttribute("aria-label", `heatmap colour scale from 0 (dark blue) to 1 (dark red), not coloured below ${floor}`);
    const bctx = bar.getContext("2d");
    const img = bctx.createImageData(256, 1);
    lut.forEach(([r, g, b, a], i) => img.data.set([r, g, b, a], 4 * i));
    bctx.putImageData(img, 0, 0);
    const meaning = (legend && legend.meaning) ||
      "Where the model found evidence for the finding, relative to this map; not how likely it is.";
    box.replaceChildren(el("div", { class: "legend-scale" }, el("span", { text: "0" }), bar, el("span", { text: "1" })),
      el("div", { text: `${meaning} Below ${floor} not coloured.` }));
  }

  async function loadOverlay(kind, name) {
    const key = `${kind}:${name}`;
    if (!S.cache.has(key)) {
      S.cache.set(key, bitmap(studyId, name).then((img) => {
        const c = toCanvas(img);
        if (kind === "map") {
          const cc = c.getContext("2d");
          const id = cc.getImageData(0, 0, c.width, c.height);
          const d = id.data;
          const lut = heatLut(S.detail && S.detail.heatmap_legend);
          for (let i = 0; i < d.length; i += 4) {
            const [r, g, b, a] = lut[d[i]];
            d[i] = r; d[i + 1] = g; d[i + 2] = b; d[i + 3] = a;
          }
          cc.putImageData(id, 0, 0);
        }
        return c;
      }));
    }
    return S.cache.get(key);
  }

  // Lung mask -> canvas with its outline (thick enough to stay visible when the image is scaled down).
  async function loadContour(name) {
    const key = "contour:" + name;
    if (!S.cache.has(key)) {
      S.cache.set(key, loadGray(name).then(({ values, w, h }) => {
        const c = blankCanvas(w, h);
        const cc = c.getContext("2d");
        const id = cc.createImageData(w, h);
        const d = id.data;
        const t = Math.max(1, Math.round(Math.max(w, h) / 400));
        const inside = (x, y) => x >= 0 && y >= 0 && x < w && y < h && values[y * w + x] > 127;
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            if (!inside(x, y)) continue;
            if (inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1)) continue;
            for (let yy = Math.max(0, y - t); yy <= Math.min(h - 1, y + t); yy++) {
              for (let xx = Math.max(0, x - t); xx <= Math.min(w - 1, x + t); xx++) {
                const j = 4 * (yy * w + xx);
                d[j] = 60; d[j + 1] = 255; d[j + 2] = 120; d[j + 3] = 255;
              }
            }
          }
        }
        cc.putImageData(id, 0, 0);
        return c;
      }));
    }
    return S.cache.get(key);
  }

  // ---------------------------------------------------------------- window/level + drawing
  const inverted = () => (S.base ? Boolean(S.base.meta.invert) !== S.userInvert : S.userInvert);
  const range = () => (S.base ? Math.max(1, S.base.meta.max - S.base.meta.min) : 1);

  // The displayed level in [0, 1] of one stored value (the test compares it with cxrassist's apply_level).
  function displayed(v) {
    const x = level(v, S.center, S.width);
    return inverted() ? 1 - x : x;
  }

  function applyWindow() {
    const b = S.base;
    if (!b) return;
    const lo = Math.floor(b.meta.min);
    const n = Math.max(1, Math.ceil(b.meta.max) - lo + 1);
    const lut = new Uint8ClampedArray(n);
    for (let i = 0; i < n; i++) lut[i] = Math.round(255 * displayed(lo + i));
    const cc = b.canvas.getContext("2d");
    const id = cc.createImageData(b.w, b.h);
    const d = id.data;
    const vals = b.values;
    for (let i = 0; i < vals.length; i++) {
      const v = lut[vals[i] - lo]; const j = 4 * i;
      d[j] = v; d[j + 1] = v; d[j + 2] = v; d[j + 3] = 255;
    }
    cc.putImageData(id, 0, 0);
    canvas.dataset.window = `${S.center.toFixed(1)},${S.width.toFixed(1)}`;
    canvas.dataset.invert = inverted() ? "1" : "0";
  }

  function geometry() {
    const b = S.base;
    const cw = canvas.width; const ch = canvas.height;
    const fit = Math.min(cw / b.w, ch / b.h);
    const scale = fit * S.zoom;
    return { scale, x: (cw - b.w * scale) / 2 + S.panX, y: (ch - b.h * scale) / 2 + S.panY };
  }

  let pointer = null; // image coordinates under the mouse, for the read-out
  function readout() {
    const parts = [];
    const b = S.base;
    if (b && pointer && pointer.x >= 0 && pointer.y >= 0 && pointer.x < b.w && pointer.y < b.h) {
      const v = b.values[pointer.y * b.w + pointer.x];
      let text = `(${pointer.x}, ${pointer.y}) ${v}`;
      if (b.meta.rescale) text += ` → ${(v * b.meta.rescale[0] + b.meta.rescale[1]).toFixed(1)} modality`;
      parts.push(text);
    }
    if (b) parts.push(`W ${S.width.toFixed(0)}  L ${S.center.toFixed(0)} (${b.meta.units})`);
    parts.push(`zoom ${S.zoom.toFixed(2)}×`);
    $("readout").textContent = parts.join("  ·  ");
  }

  function draw() {
    S.drawQueued = false;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, w, h);
    if (!S.base) return;
    const g = geometry();
    ctx.setTransform(g.scale, 0, 0, g.scale, g.x, g.y);
    ctx.imageSmoothingEnabled = g.scale < 2;
    ctx.drawImage(S.base.canvas, 0, 0);
    if (S.overlay && S.overlayOn) {
      ctx.globalAlpha = opacity.value / 100;
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(S.overlay, 0, 0, S.base.w, S.base.h);
      ctx.globalAlpha = 1;
    }
    if (S.contour && $("contour").checked) ctx.drawImage(S.contour, 0, 0, S.base.w, S.base.h);
    readout();
    canvas.dataset.ready = "1";
  }

  function redraw() {
    if (!S.drawQueued) { S.drawQueued = true; requestAnimationFrame(draw); }
  }

  function setWindow(center, width) {
    const lo = S.base ? S.base.meta.min : 0; const r = range();
    S.center = Math.min(lo + 2 * r, Math.max(lo - r, center));
    S.width = Math.min(4 * r, Math.max(1, width));
    const presets = S.base ? S.base.meta.presets : {};
    for (const b of document.querySelectorAll("#presets button")) {
      const p = presets[b.dataset.preset];
      b.setAttribute("aria-pressed", String(!!p && Math.abs(p.center - S.center) < 1e-6 && Math.abs(p.width - S.width) < 1e-6));
    }
    applyWindow(); redraw();
  }

  function applyPreset(index) {
    const entries = Object.entries(S.base ? S.base.meta.presets : {});
    if (index < entries.length) setWindow(entries[index][1].center, entries[index][1].width);
  }

  function renderPresets() {
    const entries = Object.entries(S.base ? S.base.meta.presets : {});
    $("presets").replaceChildren(...entries.map(([k, p], i) =>
      el("button", { "data-preset": k, "aria-pressed": "false", text: `${i + 1} ${p.label || k}`,
        title: `${p.why || ""} (key ${i + 1}): center ${p.center.toFixed(0)}, width ${p.width.toFixed(0)}`,
        onclick: () => setWindow(p.center, p.width) })));
  }

  function resetView() {
    S.zoom = 1; S.panX = 0; S.panY = 0;
    const d = (S.base && S.base.meta.presets.default) || { center: 127.5, width: 255 };
    setWindow(d.center, d.width);
  }

  function zoomBy(factor, mx, my) {
    if (!S.base) return;
    const before = geometry();
    const ix = (mx - before.x) / before.scale; const iy = (my - before.y) / before.scale;
    S.zoom = Math.min(40, Math.max(0.2, S.zoom * factor));
    const after = geometry();
    S.panX += mx - (after.x + ix * after.scale); S.panY += my - (after.y + iy * after.scale);
    redraw();
  }

  // ---------------------------------------------------------------- mouse
  let drag = null;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, mode: e.button === 0 && !e.shiftKey ? "wl" : "pan" };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (S.base) {
      const dpr = window.devicePixelRatio || 1;
      const rect = canvas.getBoundingClientRect();
      const g = geometry();
      pointer = { x: Math.floor(((e.clientX - rect.left) * dpr - g.x) / g.scale),
        y: Math.floor(((e.clientY - rect.top) * dpr - g.y) / g.scale) };
      S.pointer = pointer;
    }
    if (!drag) { readout(); return; }
    const dx = e.clientX - drag.x; const dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    if (drag.mode === "wl") {
      // horizontal = width, vertical = level; one canvas width/height of drag = the image's whole value range
      setWindow(S.center + (dy / canvas.clientHeight) * range(), S.width + (dx / canvas.clientWidth) * range());
    } else {
      const dpr = window.devicePixelRatio || 1;
      S.panX += dx * dpr; S.panY += dy * dpr; redraw();
    }
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointerleave", () => { pointer = null; readout(); });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const dpr = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    zoomBy(Math.exp(-e.deltaY * 0.0015), (e.clientX - rect.left) * dpr, (e.clientY - rect.top) * dpr);
  }, { passive: false });
  function showOpacity() {
    $("opacity-value").textContent = `${opacity.value} %`;
    opacity.setAttribute("aria-valuetext", `${opacity.value} %`);
  }
  opacity.addEventListener("input", () => { showOpacity(); redraw(); });
  $("contour").addEventListener("change", redraw);
  $("invert").addEventListener("change", () => { S.userInvert = $("invert").checked; applyWindow(); redraw(); });
  $("clear-overlay").addEventListener("click", () => selectFinding(""));
  $("reset").addEventListener("click", resetView);
  window.addEventListener("resize", redraw);

  // ---------------------------------------------------------------- keyboard
  function toggleHelp(show) {
    const box = $("help");
    const open = show === undefined ? box.classList.contains("hidden") : show;
    box.classList.toggle("hidden", !open);
    if (open) $("help-close").focus(); else $("help-button").focus();
  }
  $("help-button").addEventListener("click", () => toggleHelp(true));
  $("help-close").addEventListener("click", () => toggleHelp(false));

  function rankedFindings() { return S.ranked || []; }

  function stepFinding(delta) {
    const list = rankedFindings();
    if (!list.length) return;
    const i = list.findIndex((f) => f.code === S.overlayCode);
    const next = list[i < 0 ? (delta > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, i + delta))];
    selectFinding(next.code).then(() => {
      const li = document.querySelector(`#findings li[data-code='${next.code}']`);
      if (li) li.scrollIntoView({ block: "nearest" });
    });
  }

  async function stepStudy(delta) {
    try {
      if (!S.order.length) S.order = (await json("/api/studies?limit=5000")).studies.map((s) => s.id);
    } catch (e) { return; }
    const i = S.order.indexOf(studyId);
    const next = S.order[i + delta];
    if (i >= 0 && next) window.location.href = `study.html?id=${encodeURIComponent(next)}`;
  }
  $("prev-study").addEventListener("click", () => stepStudy(-1));
  $("next-study").addEventListener("click", () => stepStudy(1));

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const helpOpen = !$("help").classList.contains("hidden");
    if (e.key === "Escape" && helpOpen) { toggleHelp(false); e.preventDefault(); return; }
    if (e.key === "?") { toggleHelp(); e.preventDefault(); return; }
    if (helpOpen) return;
    const tag = (e.target && e.target.tagName) || "";
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return;
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const actions = {
      ArrowDown: () => stepFinding(1), j: () => stepFinding(1),
      ArrowUp: () => stepFinding(-1), k: () => stepFinding(-1),
      n: () => stepStudy(1), p: () => stepStudy(-1),
      o: () => { if (!S.overlayCode) stepFinding(1); else { S.overlayOn = !S.overlayOn; canvas.dataset.overlayOn = S.overlayOn ? "1" : "0"; redraw(); } },
      i: () => { $("invert").checked = !$("invert").checked; $("invert").dispatchEvent(new Event("change")); },
      c: () => { $("contour").checked = !$("contour").checked; redraw(); },
      r: resetView,
      "1": () => applyPreset(0), "2": () => applyPreset(1), "3": () => applyPreset(2), "4": () => applyPreset(3),
      "+": () => zoomBy(1.25, canvas.width / 2, canvas.height / 2), "=": () => zoomBy(1.25, canvas.width / 2, canvas.height / 2),
      "-": () => zoomBy(0.8, canvas.width / 2, canvas.height / 2),
    };
    if (actions[k]) { actions[k](); e.preventDefault(); }
  });

  // ---------------------------------------------------------------- views and findings
  function viewNote(key) {
    const note = $("view-note");
    const v = S.views[key];
    note.textContent = v && v.note ? v.note : "";
    note.classList.toggle("hidden", !(v && v.note));
  }

  async function showView(key) {
    const v = S.views[key];
    if (!v) return;
    S.view = key;
    canvas.dataset.view = key;
    for (const b of document.querySelectorAll("#views button")) b.setAttribute("aria-pressed", String(b.dataset.view === key));
    const keepWindow = S.base && v.raw && S.base.name === v.raw;
    const base = v.raw ? await loadRaw(v.raw, v.meta) : await loadGray(v.image);
    const contour = v.contour ? await loadContour(v.contour) : null;
    if (S.view !== key) return; // another view was chosen while this one loaded: that one wins
    S.base = base;
    S.contour = contour;
    canvas.setAttribute("aria-label", `${v.label}; drag to window, shift-drag to pan, wheel to zoom`);
    viewNote(key);
    renderPresets();
    if (keepWindow) setWindow(S.center, S.width); else resetView();
    if (S.overlayCode) await selectFinding(S.overlayCode);
    redraw();
  }

  function overlaySource(f) {
    if (!f) return null;
    if (S.view === "lateral") return f.heatmap_lateral ? ["rgb", f.heatmap_lateral] : null;
    if (!S.views[S.view] || !S.views[S.view].frontalGrid) return null;
    if (f.heatmap_map) return ["map", f.heatmap_map];
    return f.heatmap ? ["rgb", f.heatmap] : null;
  }

  async function selectFinding(code) {
    S.overlayCode = code;
    S.overlayOn = true;
    canvas.dataset.overlayOn = "1";
    const f = (S.detail.findings || []).find((x) => x.code === code);
    const src = f && !f.heatmap_empty ? overlaySource(f) : null;
    S.overlay = src ? await loadOverlay(src[0], src[1]) : null;
    canvas.dataset.overlay = S.overlay ? code : "";
    for (const li of document.querySelectorAll("#findings li")) {
      const on = li.dataset.code === code && !!code;
      li.classList.toggle("selected", on);
      li.querySelector("button").setAttribute("aria-pressed", String(on));
    }
    const label = $("overlay-label");
    let why = "";
    if (f && f.heatmap_empty) why = " — heatmap empty: the map is flat, no region stands out";
    else if (f && !S.overlay) why = " (no heatmap on this view)";
    label.textContent = f ? `${f.name} ${pct(f.probability)}${why}` : "";
    label.classList.toggle("hidden", !f);
    redraw();
  }

  const num = (v, d = 2) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(d));

  function findingItem(f) {
    const bar = el("div", { class: "bar", "aria-hidden": "true" }, el("span"), el("i"));
    bar.firstChild.style.width = `${100 * f.probability}%`;
    const thrMeasured = f.threshold_measured !== false;
    if (thrMeasured) bar.lastChild.style.left = `${100 * f.threshold}%`; else bar.lastChild.remove();
    const head = el("div", { class: "f-head" },
      el("button", { class: `f-name ${f.positive ? "pos" : ""}`, "aria-pressed": "false", text: f.name,
        title: "Show this finding's heatmap", onclick: () => selectFinding(S.overlayCode === f.code ? "" : f.code) }),
      f.critical ? el("span", { class: "tag", text: "critical" }) : null,
      f.positive ? el("span", { class: "tag pos-tag", text: "above threshold" }) : null,
      !f.validated ? el("span", { class: "tag", text: "not validated", title: f.validation_note || "no measured accuracy" }) : null,
      el("span", { class: `f-prob ${f.positive ? "pos" : ""}`,
        text: `${pct(f.probability)} · ${thrMeasured ? `thr ${pct(f.threshold)}` : "no threshold measured"}` }));
    const m = f.measured;
    const lines = [];
    if (m && m.auroc !== null && m.auroc !== undefined) {
      const ci = m.auroc_ci95 || [null, null];
      lines.push(`AUROC ${num(m.auroc)} [${num(ci[0])}–${num(ci[1])}] · sens ${num(m.sensitivity)} / spec ${num(m.specificity)} at thr · ${m.n_pos}+ / ${m.n} ${m.measured_on || ""}`);
    } else {
      lines.push("AUROC not measured");
    }
    const li = el("li", { "data-code": f.code, class: f.validated ? "validated" : "unvalidated" }, head, bar,
      el("div", { class: "f-metrics", text: lines.join(" ") }));
    if (!f.validated && f.validation_note) li.append(el("div", { class: "f-note", text: `Not validated: ${f.validation_note}` }));
    if (f.heatmap_empty) li.append(el("div", { class: "f-note", text: "Heatmap empty: the map is flat, no region stands out." }));
    // report 1.7: a finding scored from a measurement (Cardiomegaly from the cardiothoracic ratio); its map is the heart
    if (f.method) li.append(el("div", { class: "f-method", text: `Scored ${f.method}; its heatmap is the heart outline.` }));
    return li;
  }

  function compactMetrics(metrics) {
    if (!metrics || typeof metrics !== "object") return "";
    if (typeof metrics.summary === "string") return metrics.summary;
    const out = [];
    for (const [k, v] of Object.entries(metrics)) {
      if (typeof v === "number") out.push(`${k.replace(/_/g, " ")} ${+v.toFixed(3)}`);
      else if (v && typeof v === "object" && typeof v.summary === "string") out.push(v.summary);
      if (out.length >= 4) break;
    }
    return out.join(" · ");
  }

  function renderModels(models) {
    const rows = (models || []).map((m) => el("tr", {},
      el("th", { scope: "row" }, el("b", { text: m.role || "" })),
      el("td", {}, el("span", { text: `${m.name || ""} ${m.version || ""}` }),
        m.status !== "trained" ? el("span", { class: "tag", text: m.status }) : null,
        el("span", { class: "muted sha", text: m.sha256 ? ` sha256 ${m.sha256.slice(0, 12)}…` : " no hash" }),
        el("div", { class: "metrics", text: compactMetrics(m.metrics) || "no measured figures" }))));
    $("models").replaceChildren(...rows);
  }

  function renderPriority(t) {
    const pr = $("priority");
    pr.textContent = t.priority;
    pr.className = `badge ${t.priority}`;
    pr.title = t.reason || "";
    $("priority-reason").textContent = t.reason || "";
  }

  async function renderDone(d) {
    const t = d.triage || {};
    renderPriority(t);
    const triageLines = [
      el("div", {}, "Priority ", el("b", { class: `prio-${t.priority}`, text: t.priority }), `: ${t.reason || ""}`),
      el("div", { text: `Abnormal probability ${pct(t.abnormal_probability)}, threshold ${pct(t.threshold)}` }),
    ];
    const tm = t.measured;
    if (tm && tm.auroc !== null && tm.auroc !== undefined) {
      triageLines.push(el("div", { class: "f-metrics", text: `Triage AUROC ${num(tm.auroc)} [${num((tm.auroc_ci95 || [])[0])}–${num((tm.auroc_ci95 || [])[1])}], sens ${num(tm.sensitivity)} / spec ${num(tm.specificity)} at thr (${tm.measured_on || ""})` }));
    }
    if (d.ood) {
      const o = d.ood;
      triageLines.push(el("div", { class: o.passed ? "muted" : "pos", text:
        `Out-of-distribution score ${Number(o.score).toFixed(2)} (threshold ${Number(o.threshold).toFixed(2)}): ` +
        (o.passed ? "like the training films" : "OVER the threshold, analysed only because forced") }));
    }
    $("triage").replaceChildren(...triageLines);
    $("warnings").replaceChildren(...(d.warnings || []).map((w) => el("li", { text: w })));
    S.ranked = (d.findings || []).slice().sort((a, b) =>
      (b.validated - a.validated) || (b.probability - a.probability));
    $("findings").replaceChildren(...S.ranked.map(findingItem));
    renderLegend(d.heatmap_legend);
    if (d.impression) {
      $("impression-card").classList.remove("hidden");
      $("impression").textContent = d.impression;
    }
    const bone = d.bone || {};
    if (bone.subtracted && bone.suppressed) {
      $("bones-card").classList.remove("hidden");
      $("bone-sub").src = await objectUrl(studyId, bone.subtracted);
      $("bone-sup").src = await objectUrl(studyId, bone.suppressed);
      // the display window each picture was drawn with (report.json bone.display_window, since 1.5)
      const win = bone.display_window || {};
      for (const [id, key] of [["bone-sub", "subtracted"], ["bone-sup", "suppressed"]]) {
        const w = win[key];
        const cap = $(id).parentElement.querySelector("figcaption");
        if (!w || !cap) continue;
        cap.dataset.base = cap.dataset.base || cap.textContent;
        cap.textContent = `${cap.dataset.base} · window ${w.low.toFixed(3)}–${w.high.toFixed(3)}`;
        cap.title = w.method;
      }
    }
    const lung = d.lung || {};
    if (lung.area) {
      const a = lung.area;
      const cm = (v) => (v === null || v === undefined ? "" : ` (${v.toFixed(1)} cm²)`);
      $("lung-card").classList.remove("hidden");
      $("lung").textContent =
        `right ${a.right_px} px${cm(a.right_cm2)}, left ${a.left_px} px${cm(a.left_cm2)}. ${lung.side_convention || ""}`;
    }
  }

  $("copy-impression").addEventListener("click", async () => {
    const text = $("impression").textContent;
    let ok = false;
    try { await navigator.clipboard.writeText(text); ok = true; } catch (e) {
      const r = document.createRange(); r.selectNodeContents($("impression"));
      const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r);
      ok = document.execCommand && document.execCommand("copy");
    }
    $("copy-msg").textContent = ok ? "copied" : "select the text and copy it (Ctrl+C)";
  });

  function buildViews(d) {
    const imgs = new Set(d.image_names || []);
    const px = d.view_pixels || {};
    const reportImages = d.images || {};
    const pick = (...names) => names.find((n) => n && imgs.has(n));
    const contour = (d.lung || {}).mask && imgs.has(d.lung.mask) ? d.lung.mask : null;
    const views = {};
    const radiograph = pick("radiograph.png", reportImages.radiograph);
    if (px.frontal || radiograph) {
      views.radiograph = { label: "Radiograph", image: radiograph, raw: px.frontal ? "frontal" : null, meta: px.frontal,
        contour, frontalGrid: true };
    }
    const bone = d.bone || {};
    if (pick(bone.subtracted)) views.bone_subtracted = { label: "Bones", image: bone.subtracted, contour, frontalGrid: true };
    if (pick(bone.suppressed)) views.bone_suppressed = { label: "Soft tissue", image: bone.suppressed, contour, frontalGrid: true };
    const lateral = pick("lateral.png", reportImages.lateral);
    if (px.lateral || lateral) {
      const analysed = (d.findings || []).some((f) => f.heatmap_lateral);
      const note = d.status !== "done" ? "" : analysed ? "Lateral: read by the classifier's lateral branch"
        : "Lateral: shown for reading only — not analysed (the findings model reads the frontal view only)";
      views.lateral = { label: "Lateral", image: lateral, raw: px.lateral ? "lateral" : null, meta: px.lateral,
        contour: null, frontalGrid: false, note };
    }
    S.views = views;
    $("views").replaceChildren(...Object.entries(views).map(([k, v]) =>
      el("button", { "data-view": k, "aria-pressed": String(k === S.view), text: v.label, onclick: () => showView(k) })));
  }

  function showProgress(d) {
    const box = $("progress");
    if (FINAL.has(d.status)) { box.classList.add("hidden"); return; }
    const secs = Math.round((Date.now() - S.started) / 1000);
    const what = d.status === "queued"
      ? (S.pipeline === "loading" ? "Loading the models…" : "Queued: waiting for the analysis…")
      : "Analysing (chest check, lungs, bones, findings, triage)…";
    box.textContent = `${what} ${secs} s`;
    box.classList.remove("hidden");
  }

  function showRefused(d) {
    $("study-layout").classList.add("hidden");
    $("refusal-card").classList.remove("hidden");
    $("refusal-title").textContent = d.status === "failed" ? "Analysis failed" : "Not analysed: refused";
    $("refusal").textContent = d.reason || d.status;
    if (d.status === "failed") $("refusal-advice").textContent = "The analysis stopped with an error on our side; the server log has the details.";
    for (const id of ["prev-study", "next-study", "help-button"]) $(id).classList.add("hidden");
  }

  function titleOf(d) {
    const h = (d.study && d.study.header) || {};
    const date = h.study_date && h.study_date.length === 8
      ? `${h.study_date.slice(0, 4)}-${h.study_date.slice(4, 6)}-${h.study_date.slice(6)}` : "";
    return [h.patient_name, h.patient_id && `ID ${h.patient_id}`, date, h.description, `study ${studyId.slice(0, 8)}`]
      .filter(Boolean).join(" · ");
  }

  async function load() {
    let d;
    try { d = await json(`/api/studies/${encodeURIComponent(studyId)}`); } catch (e) {
      $("triage").textContent = `Cannot open this study: ${e.message}`; return;
    }
    S.detail = d;
    $("title").textContent = titleOf(d);
    document.title = `cxrassist — ${titleOf(d)}`;
    const st = $("status");
    st.textContent = d.status; st.className = `badge status-${d.status}`;
    if (d.disclaimer) $("disclaimer").textContent = d.disclaimer;
    showProgress(d);
    if (d.status === "refused" || d.status === "failed") { showRefused(d); return; }
    if (d.status === "done") {
      modelBanner($("banner"), d.models, null);
      renderModels(d.models);
      await renderDone(d);
    }
    buildViews(d);
    if (!FINAL.has(d.status)) {
      if (S.views.radiograph && !S.base) await showView("radiograph");
      setTimeout(load, 1500);
      return;
    }
    await showView(S.views[S.view] ? S.view : "radiograph");
    document.body.dataset.loaded = "1";
  }

  async function init() {
    showOpacity();
    try {
      S.presets8 = (await json("/api/presets")).presets;
      const h = await json("/api/health");
      S.pipeline = h.pipeline;
      $("disclaimer").textContent = h.disclaimer;
      modelBanner($("banner"), h.models, h.pipeline_error);
      renderModels(h.models);
    } catch (e) { S.presets8 = S.presets8 || {}; }
    await load();
  }

  // for tests and the curious: the state, and the displayed level of one stored pixel of the shown view
  S.levelAt = (x, y) => displayed(S.base.values[y * S.base.w + x]);
  S.storedAt = (x, y) => S.base.values[y * S.base.w + x];
  window.cxrViewer = S;
  init();
})();
