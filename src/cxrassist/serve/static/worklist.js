// Worklist page: studies with what identifies them (patient, date, description, accession, views, source), status,
// priority with its reason and the validated findings; sortable columns, a status and a text filter; refreshed every
// 1.5 s. Upload by drag and drop or the file input, with a progress bar and the fate of the uploaded study.
"use strict";
(() => {
  const { json, api, upload: send, el, pct, modelBanner } = CXR;
  const tbody = document.querySelector("#worklist tbody");
  const msg = document.getElementById("upload-msg");
  const bar = document.getElementById("upload-progress");
  const filter = document.getElementById("status-filter");
  const text = document.getElementById("text-filter");
  const drop = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const RANK = { critical: 3, high: 2, routine: 1 };
  const FINAL = new Set(["done", "refused", "failed"]);
  let studies = [];
  let sortKey = "priority"; let sortDir = -1;
  let lastUpload = null; // {id, status}: the study this page uploaded last, followed until it is final

  function say(t, isError = false) { msg.replaceChildren(t); msg.classList.toggle("error", isError); }

  const header = (s) => s.header || {};
  const dateOf = (s) => {
    const h = header(s); const d = h.study_date || "";
    if (d.length !== 8) return "";
    const t = (h.study_time || "").replace(/[^0-9]/g, "");
    return `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` + (t.length >= 4 ? ` ${t.slice(0, 2)}:${t.slice(2, 4)}` : "");
  };
  const SORTS = {
    priority: (s) => (s.status === "done" ? (RANK[s.priority] || 0) * 10 + (s.priority_score || 0) : -1),
    patient: (s) => (header(s).patient_name || header(s).patient_id || "").toLowerCase(),
    date: (s) => dateOf(s),
    description: (s) => (header(s).description || "").toLowerCase(),
    accession: (s) => header(s).accession || "",
    source: (s) => s.source || "upload",
    status: (s) => s.status,
    id: (s) => s.id,
    received: (s) => s.received_at,
  };

  function priorityCell(s) {
    if (s.status !== "done") return el("span", { class: "muted", text: "–" });
    return el("span", {}, el("span", { class: `badge ${s.priority || ""}`, text: s.priority || "?" }),
      el("div", { class: "muted small reason", text: s.priority_reason || "" }));
  }

  function findingsCell(s) {
    if (s.status === "refused" || s.status === "failed") return el("span", { class: "muted", text: s.reason || "" });
    const box = el("span");
    const shown = (s.top_findings || []).filter((f) => f.validated !== false);
    for (const f of shown) {
      box.append(el("span", { class: f.positive ? "pos" : "muted", text: `${f.name} ${pct(f.probability)}` }), " · ");
    }
    if (box.lastChild) box.lastChild.remove();
    const hidden = (s.top_findings || []).length - shown.length;
    if (s.status === "done" && !shown.length) box.append(el("span", { class: "muted", text: "none validated in the top 3" }));
    if (hidden > 0) box.append(el("span", { class: "tag", text: `+${hidden} not validated`, title: "findings without measured accuracy: on the study page" }));
    return box;
  }

  function viewsText(s) {
    const v = header(s).views || {};
    const roles = Object.keys(v).length ? v : { frontal: "", ...(s.has_lateral ? { lateral: "" } : {}) };
    return Object.entries(roles).map(([role, view]) => (view && view !== "UNKNOWN" ? `${role} ${view}` : role)).join(", ");
  }

  function row(s) {
    const h = header(s);
    const open = () => { window.location.href = `study.html?id=${s.id}`; };
    const del = el("button", { text: "Delete", "aria-label": `Delete study ${s.id.slice(0, 8)}`, onclick: async (ev) => {
      ev.stopPropagation();
      if (!window.confirm("Delete this study and its files?")) return;
      const r = await api(`/api/studies/${s.id}`, { method: "DELETE" });
      if (!r.ok) say((await r.json()).detail || `HTTP ${r.status}`, true);
      refresh();
    } });
    const link = el("a", { href: `study.html?id=${s.id}`, text: s.id.slice(0, 8), onclick: (ev) => ev.stopPropagation() });
    return el("tr", { class: "study-row", "data-id": s.id, "data-status": s.status, onclick: open },
      el("td", {}, priorityCell(s)),
      el("td", {}, el("div", { text: h.patient_name || "—" }), el("div", { class: "muted small", text: h.patient_id ? `ID ${h.patient_id}` : "" })),
      el("td", { text: dateOf(s) || "—" }),
      el("td", { text: h.description || "—" }),
      el("td", { text: h.accession || "—" }),
      el("td", { text: viewsText(s) }),
      el("td", { text: s.source || "upload" }),
      el("td", { class: `status-${s.status}`, text: s.status }),
      el("td", {}, findingsCell(s)),
      el("td", {}, link),
      el("td", { class: "muted", text: new Date(s.received_at).toLocaleString() }),
      el("td", {}, del));
  }

  function visible() {
    const q = text.value.trim().toLowerCase();
    const rows = studies.filter((s) => {
      if (!q) return true;
      const h = header(s);
      return [h.patient_name, h.patient_id, h.accession, h.description, s.id, s.source]
        .some((v) => v && String(v).toLowerCase().includes(q));
    });
    const key = SORTS[sortKey];
    return rows.sort((a, b) => {
      const x = key(a); const y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
  }

  function render() {
    const rows = visible();
    tbody.replaceChildren(...rows.map(row));
    document.getElementById("empty").classList.toggle("hidden", rows.length > 0);
    for (const th of document.querySelectorAll("#worklist th[data-sort]")) {
      if (th.dataset.sort === sortKey) th.setAttribute("aria-sort", sortDir < 0 ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
  }

  function followUpload() {
    if (!lastUpload) return;
    const s = studies.find((x) => x.id === lastUpload.id);
    if (!s || s.status === lastUpload.status) return;
    lastUpload.status = s.status;
    const link = el("a", { href: `study.html?id=${s.id}`, text: `study ${s.id.slice(0, 8)}` });
    if (s.status === "done") say(el("span", {}, "Analysis of ", link, ` done: priority ${s.priority}.`));
    else if (s.status === "refused" || s.status === "failed") say(el("span", {}, link, ` ${s.status}: ${s.reason || ""}`), true);
    else say(el("span", {}, link, ` ${s.status === "running" ? "being analysed…" : "queued…"}`));
    if (FINAL.has(s.status)) lastUpload = null;
  }

  async function refresh() {
    try {
      const q = filter.value ? `?status=${encodeURIComponent(filter.value)}` : "";
      studies = (await json(`/api/studies${q}`)).studies;
      render();
      followUpload();
    } catch (e) { say(`Could not load the worklist: ${e.message}`, true); }
  }

  async function health() {
    try {
      const h = await json("/api/health");
      document.getElementById("disclaimer").textContent = h.disclaimer;
      modelBanner(document.getElementById("banner"), h.models, h.pipeline_error);
    } catch (e) { /* shown by refresh */ }
  }

  async function upload(files) {
    if (!files || !files.length) return;
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    const lateral = document.getElementById("lateral-choice").value;
    if (lateral && files.length > 1) form.append("lateral", lateral);
    const total = files.reduce((n, f) => n + f.size, 0);
    say(`Uploading ${files.length} file(s), ${(total / 1048576).toFixed(1)} MB…`);
    bar.value = 0; bar.classList.remove("hidden");
    try {
      const r = await send("/api/studies", form, (done, all) => {
        bar.value = all ? Math.round((100 * done) / all) : 0;
        if (done >= all) say("Uploaded; checking the file…");
      });
      lastUpload = { id: r.id, status: "" };
      say(el("span", {}, "Queued ", el("a", { href: `study.html?id=${r.id}`, text: `study ${r.id.slice(0, 8)}` }), ": analysis running in the background."));
    } catch (e) { say(`Upload refused: ${e.message}`, true); }
    bar.classList.add("hidden");
    input.value = "";
    refresh();
  }

  for (const th of document.querySelectorAll("#worklist th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      if (sortKey === th.dataset.sort) sortDir = -sortDir; else { sortKey = th.dataset.sort; sortDir = sortKey === "priority" || sortKey === "received" || sortKey === "date" ? -1 : 1; }
      render();
    });
  }
  input.addEventListener("change", () => upload(Array.from(input.files)));
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => upload(Array.from(e.dataTransfer.files)));
  filter.addEventListener("change", refresh);
  text.addEventListener("input", render);

  refresh(); health();
  setInterval(refresh, 1500);
  setInterval(health, 10000);
})();
