// Study page: the radiograph on a canvas with window/level, zoom, pan, heatmap overlays and the lung contour.
// Window/level uses the presets and the formula of cxrassist.preprocess (served by /api/presets):
//   out = clip((v - (center - width/2)) / width, 0, 1), v = pixel / 255.
"use strict";
(() => {
  const { json, bitmap, objectUrl, el, pct, level, modelBanner } = CXR;
  const FINAL = new Set(["done", "refused", "failed"]);
  const studyId = new URLSearchParams(window.location.search).get("id") || "";
  const canvas = document.getElementById("view");
  const ctx = canvas.getContext("2d");
  const opacity = document.getElementById("opacity");

  const S = {
    detail: null, presets: {}, center: 0.5, width: 1.0, zoom: 1, panX: 0, panY: 0,
    view: "radiograph", views: {}, base: null, overlay: null, overlayCode: "", contour: null,
    cache: new Map(), drawQueued: false,
  };

  // ---------------------------------------------------------------- images → pixels
  function toCanvas(img) {
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    c.getContext("2d").drawImage(img, 0, 0);
    return c;
  }

  async function loadGray(name) {
    const key = "gray:" + name;
    if (!S.cache.has(key)) {
      S.cache.set(key, bitmap(studyId, name).then((img) => {
        const c = toCanvas(img);
        const rgba = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const gray = new Uint8ClampedArray(c.width * c.height);
        for (let i = 0; i < gray.length; i++) gray[i] = rgba[4 * i];
        const out = document.createElement("canvas");
        out.width = c.width; out.height = c.height;
        return { name, gray, w: c.width, h: c.height, canvas: out };
      }));
    }
    return S.cache.get(key);
  }

  // A grey heat map (0..255) -> RGBA canvas drawn like the report's PNGs (report/images.py): the report's
  // heatmap_legend colours interpolated linearly (these anchors are the same, for reports without a legend), and a
  // per-pixel alpha that is 0 below the legend's floor and grows to 1 at the map's maximum; the opacity slider
  // (default = the legend's opacity, 50 %) scales it, as the PNG blend does.
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
    const box = document.getElementById("heatmap-legend");
    if (!box) return;
    const lut = heatLut(legend);
    const bar = document.createElement("canvas");
    bar.width = 256; bar.height = 1; bar.className = "legend-bar";
    const ctx = bar.getContext("2d");
    const img = ctx.createImageData(256, 1);
    lut.forEach(([r, g, b, a], i) => img.data.set([r, g, b, a], 4 * i));
    ctx.putImageData(img, 0, 0);
    const floor = legend && typeof legend.transparent_below === "number" ? legend.transparent_below : HEAT_FLOOR;
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
      S.cache.set(key, loadGray(name).then(({ gray, w, h }) => {
        const c = document.createElement("canvas");
        c.width = w; c.height = h;
        const cc = c.getContext("2d");
        const id = cc.createImageData(w, h);
        const d = id.data;
        const t = Math.max(1, Math.round(Math.max(w, h) / 400));
        const inside = (x, y) => x >= 0 && y >= 0 && x < w && y < h && gray[y * w + x] > 127;
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
  function applyWindow() {
    const b = S.base;
    if (!b) return;
    const lut = new Uint8ClampedArray(256);
    for (let i = 0; i < 256; i++) lut[i] = Math.round(255 * level(i / 255, S.center, S.width));
    const cc = b.canvas.getContext("2d");
    const id = cc.createImageData(b.w, b.h);
    const d = id.data;
    for (let i = 0; i < b.gray.length; i++) {
      const v = lut[b.gray[i]]; const j = 4 * i;
      d[j] = v; d[j + 1] = v; d[j + 2] = v; d[j + 3] = 255;
    }
    cc.putImageData(id, 0, 0);
    canvas.dataset.window = `${S.center.toFixed(3)},${S.width.toFixed(3)}`;
  }

  function geometry() {
    const b = S.base;
    const cw = canvas.width; const ch = canvas.height;
    const fit = Math.min(cw / b.w, ch / b.h);
    const scale = fit * S.zoom;
    return { scale, x: (cw - b.w * scale) / 2 + S.panX, y: (ch - b.h * scale) / 2 + S.panY };
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
    if (S.overlay) {
      ctx.globalAlpha = opacity.value / 100;
      ctx.drawImage(S.overlay, 0, 0, S.base.w, S.base.h);
      ctx.globalAlpha = 1;
    }
    if (S.contour && document.getElementById("contour").checked) ctx.drawImage(S.contour, 0, 0, S.base.w, S.base.h);
    document.getElementById("readout").textContent =
      `W ${S.width.toFixed(2)}  L ${S.center.toFixed(2)}  zoom ${S.zoom.toFixed(2)}×`;
    canvas.dataset.ready = "1";
  }

  function redraw() {
    if (!S.drawQueued) { S.drawQueued = true; requestAnimationFrame(draw); }
  }

  function setWindow(center, width) {
    S.center = Math.min(1.5, Math.max(-0.5, center));
    S.width = Math.min(2, Math.max(0.01, width));
    for (const b of document.querySelectorAll("#presets button")) {
      const p = S.presets[b.dataset.preset];
      b.classList.toggle("active", Math.abs(p.center - S.center) < 1e-6 && Math.abs(p.width - S.width) < 1e-6);
    }
    applyWindow(); redraw();
  }

  // ---------------------------------------------------------------- interaction
  let drag = null;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, mode: e.button === 0 && !e.shiftKey ? "wl" : "pan" };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x; const dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    if (drag.mode === "wl") {
      // horizontal = width, vertical = level; one canvas width/height of drag = the whole [0, 1] range
      setWindow(S.center + dy / canvas.clientHeight, S.width + dx / canvas.clientWidth);
    } else {
      const dpr = window.devicePixelRatio || 1;
      S.panX += dx * dpr; S.panY += dy * dpr; redraw();
    }
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (!S.base) return;
    const dpr = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    const mx = (e.clientX - rect.left) * dpr; const my = (e.clientY - rect.top) * dpr;
    const before = geometry();
    const ix = (mx - before.x) / before.scale; const iy = (my - before.y) / before.scale;
    S.zoom = Math.min(40, Math.max(0.2, S.zoom * Math.exp(-e.deltaY * 0.0015)));
    const after = geometry();
    S.panX += mx - (after.x + ix * after.scale); S.panY += my - (after.y + iy * after.scale);
    redraw();
  }, { passive: false });
  opacity.addEventListener("input", redraw);
  document.getElementById("contour").addEventListener("change", redraw);
  document.getElementById("clear-overlay").addEventListener("click", () => selectFinding(""));
  document.getElementById("reset").addEventListener("click", () => {
    S.zoom = 1; S.panX = 0; S.panY = 0;
    const d = S.presets.default || { center: 0.5, width: 1 };
    setWindow(d.center, d.width);
  });
  window.addEventListener("resize", redraw);

  // ---------------------------------------------------------------- views and findings
  async function showView(key) {
    const v = S.views[key];
    if (!v) return;
    S.view = key;
    canvas.dataset.view = key;
    for (const b of document.querySelectorAll("#views button")) b.classList.toggle("active", b.dataset.view === key);
    S.base = await loadGray(v.image);
    S.contour = v.contour ? await loadContour(v.contour) : null;
    document.getElementById("contour").disabled = !v.contour;
    await selectFinding(S.overlayCode);
    applyWindow(); redraw();
  }

  function overlaySource(f) {
    if (!f) return null;
    if (S.view === "lateral") return f.heatmap_lateral ? ["rgb", f.heatmap_lateral] : null;
    if (!S.views[S.view].frontalGrid) return null;
    if (f.heatmap_map) return ["map", f.heatmap_map];
    return f.heatmap ? ["rgb", f.heatmap] : null;
  }

  async function selectFinding(code) {
    S.overlayCode = code;
    const f = (S.detail.findings || []).find((x) => x.code === code);
    const src = overlaySource(f);
    S.overlay = src ? await loadOverlay(src[0], src[1]) : null;
    canvas.dataset.overlay = S.overlay ? code : "";
    for (const tr of document.querySelectorAll("#findings tr")) tr.classList.toggle("selected", tr.dataset.code === code && !!code);
    const label = document.getElementById("overlay-label");
    label.textContent = f ? `${f.name} ${pct(f.probability)}${S.overlay ? "" : " (no heatmap on this view)"}` : "";
    label.classList.toggle("hidden", !f);
    redraw();
  }

  function findingRow(f) {
    const bar = el("div", { class: "bar" }, el("span"), el("i"));
    bar.firstChild.style.width = `${100 * f.probability}%`;
    bar.lastChild.style.left = `${100 * f.threshold}%`;
    const name = el("td", {}, el("span", { class: f.positive ? "pos" : "", text: f.name }));
    if (f.critical) name.append(el("span", { class: "tag", text: "critical" }));
    if (!f.validated) name.append(el("span", { class: "tag", text: "not validated", title: "no measured accuracy for this finding" }));
    name.append(bar);
    return el("tr", { "data-code": f.code, onclick: () => selectFinding(S.overlayCode === f.code ? "" : f.code) },
      name,
      el("td", { class: f.positive ? "pos" : "muted", text: `${pct(f.probability)} / thr ${pct(f.threshold)}` }));
  }

  function flatten(obj, prefix = "", out = []) {
    for (const [k, v] of Object.entries(obj || {})) {
      if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, `${prefix}${k}.`, out);
      else out.push(`${prefix}${k}: ${typeof v === "number" ? +v.toFixed(4) : JSON.stringify(v)}`);
    }
    return out;
  }

  function renderModels(models) {
    const rows = (models || []).map((m) => el("tr", {},
      el("td", {}, el("b", { text: m.role || "" }), el("br"), `${m.name || ""} ${m.version || ""}`,
        m.status !== "trained" ? el("span", { class: "tag", text: m.status }) : null,
        el("br"), el("span", { class: "muted", text: m.sha256 ? `sha256 ${m.sha256.slice(0, 12)}…` : "no hash" })),
      el("td", {}, el("div", { class: "metrics", text: flatten(m.metrics).slice(0, 40).join("\n") || "no measured metrics" }))));
    document.getElementById("models").replaceChildren(...rows);
  }

  async function renderDone(d) {
    const t = d.triage || {};
    const pr = document.getElementById("priority");
    pr.textContent = `${t.priority} ${Number(t.priority_score).toFixed(2)}`;
    pr.className = `badge ${t.priority}`;
    document.getElementById("triage-line").textContent = `abnormal ${pct(t.abnormal_probability)} (threshold ${pct(t.threshold)})`;
    const triageLines = [
      el("div", {}, "Priority ", el("b", { text: t.priority }), ` (score ${Number(t.priority_score).toFixed(2)})`),
      el("div", { text: `Abnormal probability ${pct(t.abnormal_probability)}, threshold ${pct(t.threshold)}` }),
    ];
    if ((t.critical_findings || []).length) {
      triageLines.push(el("div", { class: "pos", text: `Critical: ${t.critical_findings.join(", ")}` }));
    }
    if (d.ood) {
      const o = d.ood;
      triageLines.push(el("div", { class: o.passed ? "muted" : "pos", text:
        `Out-of-distribution score ${Number(o.score).toFixed(2)} (threshold ${Number(o.threshold).toFixed(2)}): ` +
        (o.passed ? "like the training films" : "OVER the threshold, analysed only because forced") }));
    }
    document.getElementById("triage").replaceChildren(...triageLines);
    document.getElementById("warnings").replaceChildren(...(d.warnings || []).map((w) => el("li", { text: w })));
    document.querySelector("#findings tbody").replaceChildren(...(d.findings || []).map(findingRow));
    renderLegend(d.heatmap_legend);
    const bone = d.bone || {};
    if (bone.subtracted && bone.suppressed) {
      document.getElementById("bones-card").classList.remove("hidden");
      document.getElementById("bone-sub").src = await objectUrl(studyId, bone.subtracted);
      document.getElementById("bone-sup").src = await objectUrl(studyId, bone.suppressed);
    }
    const lung = d.lung || {};
    if (lung.area) {
      const a = lung.area;
      const cm = (v) => (v === null || v === undefined ? "" : ` (${v.toFixed(1)} cm²)`);
      document.getElementById("lung-card").classList.remove("hidden");
      document.getElementById("lung").textContent =
        `right ${a.right_px} px${cm(a.right_cm2)}, left ${a.left_px} px${cm(a.left_cm2)}. ${lung.side_convention || ""}`;
    }
  }

  function buildViews(d) {
    const imgs = new Set(d.image_names || []);
    const reportImages = d.images || {};
    const pick = (...names) => names.find((n) => n && imgs.has(n));
    const contour = (d.lung || {}).mask && imgs.has(d.lung.mask) ? d.lung.mask : null;
    const views = {};
    const radiograph = pick("radiograph.png", reportImages.radiograph);
    if (radiograph) views.radiograph = { label: "Radiograph", image: radiograph, contour, frontalGrid: true };
    const bone = d.bone || {};
    if (pick(bone.subtracted)) views.bone_subtracted = { label: "Bone-subtracted", image: bone.subtracted, contour, frontalGrid: true };
    if (pick(bone.suppressed)) views.bone_suppressed = { label: "Bone-suppressed", image: bone.suppressed, contour, frontalGrid: true };
    const lateral = pick("lateral.png", reportImages.lateral);
    if (lateral) views.lateral = { label: "Lateral", image: lateral, contour: null, frontalGrid: false };
    S.views = views;
    document.getElementById("views").replaceChildren(...Object.entries(views).map(([k, v]) =>
      el("button", { "data-view": k, text: v.label, onclick: () => showView(k) })));
  }

  async function load() {
    let d;
    try { d = await json(`/api/studies/${encodeURIComponent(studyId)}`); } catch (e) {
      document.getElementById("triage").textContent = `Cannot open this study: ${e.message}`; return;
    }
    S.detail = d;
    document.getElementById("title").textContent = `Study ${studyId.slice(0, 8)}`;
    const st = document.getElementById("status");
    st.textContent = d.status; st.className = `badge status-${d.status}`;
    if (d.disclaimer) document.getElementById("disclaimer").textContent = d.disclaimer;
    if (d.status === "refused" || d.status === "failed") {
      document.getElementById("refusal-card").classList.remove("hidden");
      document.getElementById("refusal").textContent = d.reason || d.status;
      document.getElementById("triage-card").classList.add("hidden");
      document.getElementById("findings-card").classList.add("hidden");
    }
    if (d.status === "done") {
      modelBanner(document.getElementById("banner"), d.models, null);
      renderModels(d.models);
      await renderDone(d);
    }
    buildViews(d);
    if (!FINAL.has(d.status)) {
      if (S.views.radiograph && !S.base) await showView("radiograph");
      setTimeout(load, 1500);
      return;
    }
    if (S.views.radiograph) await showView("radiograph");
  }

  async function init() {
    try {
      S.presets = (await json("/api/presets")).presets;
      const h = await json("/api/health");
      document.getElementById("disclaimer").textContent = h.disclaimer;
      modelBanner(document.getElementById("banner"), h.models, h.pipeline_error);
      renderModels(h.models);
    } catch (e) { S.presets = S.presets || {}; }
    document.getElementById("presets").replaceChildren(...Object.entries(S.presets).map(([k, p]) =>
      el("button", { "data-preset": k, text: k.replace("_", " "), title: `center ${p.center}, width ${p.width}`,
        onclick: () => setWindow(p.center, p.width) })));
    const d = S.presets.default || { center: 0.5, width: 1 };
    S.center = d.center; S.width = d.width;
    await load();
    setWindow(S.center, S.width);
  }

  window.cxrViewer = S; // for tests and the curious
  init();
})();
