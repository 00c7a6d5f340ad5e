// Shared helpers of the viewer pages: API calls (with the optional bearer token), banners, formatting.
"use strict";

const CXR = (() => {
  const TOKEN_KEY = "cxr-api-token";

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  // fetch() under /api with the token; on 401 asks the reader for the token once and retries.
  async function api(path, options = {}, retried = false) {
    const headers = new Headers(options.headers || {});
    if (token()) headers.set("Authorization", "Bearer " + token());
    const resp = await fetch(path, { ...options, headers });
    if (resp.status === 401 && !retried) {
      const t = window.prompt("This server needs its API token (CXR_API_TOKEN):");
      if (t) { sessionStorage.setItem(TOKEN_KEY, t.trim()); return api(path, options, true); }
    }
    return resp;
  }

  async function json(path, options) {
    const resp = await api(path, options);
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const msg = body && body.detail ? body.detail : `HTTP ${resp.status}`;
      const err = new Error(msg); err.status = resp.status; err.body = body; throw err;
    }
    return body;
  }

  // POST a form with upload progress (fetch reports none): onProgress(sentBytes, totalBytes); resolves to the JSON
  // answer, rejects with the API's one-line detail.
  function upload(path, form, onProgress, retried = false) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      if (token()) xhr.setRequestHeader("Authorization", "Bearer " + token());
      xhr.upload.addEventListener("progress", (e) => { if (onProgress && e.lengthComputable) onProgress(e.loaded, e.total); });
      xhr.addEventListener("load", () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status === 401 && !retried) {
          const t = window.prompt("This server needs its API token (CXR_API_TOKEN):");
          if (t) { sessionStorage.setItem(TOKEN_KEY, t.trim()); resolve(upload(path, form, onProgress, true)); return; }
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(new Error(body && body.detail ? body.detail : `HTTP ${xhr.status}`));
      });
      xhr.addEventListener("error", () => reject(new Error("network error")));
      xhr.send(form);
    });
  }

  // An image of a study as an ImageBitmap (fetched with the token, so no <img src> is needed).
  async function bitmap(studyId, name) {
    const resp = await api(`/api/studies/${studyId}/images/${name}`);
    if (!resp.ok) throw new Error(`image ${name}: HTTP ${resp.status}`);
    return createImageBitmap(await resp.blob());
  }

  async function objectUrl(studyId, name) {
    const resp = await api(`/api/studies/${studyId}/images/${name}`);
    if (!resp.ok) throw new Error(`image ${name}: HTTP ${resp.status}`);
    return URL.createObjectURL(await resp.blob());
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  // cxrassist.preprocess.apply_level, the same formula: [center - width/2, center + width/2] -> [0, 1], clipped.
  function level(v, center, width) {
    const low = center - width / 2;
    return Math.min(1, Math.max(0, (v - low) / width));
  }

  const pct = (p) => (p === null || p === undefined ? "–" : (100 * p).toFixed(1) + "%");

  // Red banner when any model is untrained; the pipeline's load error too.
  function modelBanner(node, models, pipelineError) {
    const untrained = (models || []).filter((m) => m.status && m.status !== "trained");
    const parts = [];
    if (untrained.length) parts.push(`UNTRAINED MODEL (${untrained.map((m) => m.role || m.name).join(", ")}): outputs are meaningless, for trying the program only.`);
    if (pipelineError) parts.push(`The models could not be loaded: ${pipelineError}`);
    node.textContent = parts.join(" ");
    node.classList.toggle("hidden", parts.length === 0);
  }

  return { api, json, upload, bitmap, objectUrl, el, pct, level, modelBanner };
})();
