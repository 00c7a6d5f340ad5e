// Worklist page: studies by priority, refreshed every 1.5 s; upload by drag and drop or the file input.
"use strict";
(() => {
  const { json, api, el, pct, modelBanner } = CXR;
  const tbody = document.querySelector("#worklist tbody");
  const msg = document.getElementById("upload-msg");
  const filter = document.getElementById("status-filter");
  const drop = document.getElementById("dropzone");
  const input = document.getElementById("file-input");

  function say(text, isError = false) { msg.textContent = text; msg.classList.toggle("error", isError); }

  function priorityBadge(s) {
    if (s.status !== "done") return el("span", { class: "muted", text: "–" });
    const score = s.priority_score === null ? "" : ` ${s.priority_score.toFixed(2)}`;
    return el("span", { class: `badge ${s.priority || ""}`, text: `${s.priority || "?"}${score}` });
  }

  function findingsCell(s) {
    if (s.status === "refused" || s.status === "failed") return el("span", { class: "muted", text: s.reason || "" });
    const td = el("span");
    for (const f of s.top_findings || []) {
      td.append(el("span", { class: f.positive ? "pos" : "muted", text: `${f.name} ${pct(f.probability)}` }), " · ");
    }
    if (td.lastChild) td.lastChild.remove();
    return td;
  }

  function row(s) {
    const open = () => { window.location.href = `study.html?id=${s.id}`; };
    const del = el("button", { text: "Delete", title: "Delete this study", onclick: async (ev) => {
      ev.stopPropagation();
      if (!window.confirm("Delete this study and its files?")) return;
      const r = await api(`/api/studies/${s.id}`, { method: "DELETE" });
      if (!r.ok) say((await r.json()).detail || `HTTP ${r.status}`, true);
      refresh();
    } });
    return el("tr", { class: "study-row", "data-id": s.id, "data-status": s.status, onclick: open },
      el("td", {}, priorityBadge(s)),
      el("td", { class: `status-${s.status}`, text: s.status }),
      el("td", { text: s.status === "done" ? pct(s.abnormal_probability) : "–" }),
      el("td", {}, findingsCell(s)),
      el("td", { class: "muted", text: new Date(s.received_at).toLocaleString() }),
      el("td", {}, del));
  }

  async function refresh() {
    try {
      const q = filter.value ? `?status=${encodeURIComponent(filter.value)}` : "";
      const wl = await json(`/api/studies${q}`);
      tbody.replaceChildren(...wl.studies.map(row));
      document.getElementById("empty").classList.toggle("hidden", wl.studies.length > 0);
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
    say(`Uploading ${files.length} file(s)…`);
    try {
      const r = await json("/api/studies", { method: "POST", body: form });
      say(`Queued study ${r.id.slice(0, 8)}: analysis running in the background.`);
    } catch (e) { say(`Upload refused: ${e.message}`, true); }
    input.value = "";
    refresh();
  }

  input.addEventListener("change", () => upload(Array.from(input.files)));
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => upload(Array.from(e.dataTransfer.files)));
  filter.addEventListener("change", refresh);

  refresh(); health();
  setInterval(refresh, 1500);
  setInterval(health, 10000);
})();
