"""``report.html``: ONE self-contained page a radiologist can open from disk (images embedded as data URIs).

No scripts, no external fonts or styles: the page works offline and from a PACS export folder.
"""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#111;color:#eee}
main{max-width:1200px;margin:auto;padding:1rem}
h1{font-size:1.4rem;margin:.2rem 0} h2{font-size:1.15rem;border-bottom:1px solid #444;padding-bottom:.2rem}
.banner{padding:.8rem 1rem;margin:.5rem 0;border-radius:6px;font-weight:600}
.disclaimer{background:#fff3cd;color:#4a3700;border:2px solid #e0a800}
.untrained{background:#b00020;color:#fff;font-size:1.2rem;border:3px solid #ff5c5c}
.forced{background:#6a1b9a;color:#fff}
.warn{color:#ffcc80}
.grid{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;flex:1 1 300px;max-width:560px} figure img{width:100%;background:#000;border:1px solid #333}
figcaption{font-size:.85rem;color:#bbb;margin-top:.2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{border-bottom:1px solid #333;padding:.3rem .4rem;text-align:left;vertical-align:top}
.tag{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:.75rem;font-weight:700;margin-left:.3rem}
.small{font-size:.8rem;color:inherit;opacity:.85}
.nv{background:#ff9800;color:#000} .crit{background:#d32f2f;color:#fff} .pos{background:#1976d2;color:#fff}
.bar{background:#333;width:120px;height:10px;display:inline-block;vertical-align:middle;margin-right:.4rem}
.bar span{display:block;height:10px;background:#4fc3f7}
.prio{font-size:1.3rem;font-weight:800;text-transform:uppercase}
.prio-critical{color:#ff5252} .prio-high{color:#ffb74d} .prio-routine{color:#81c784}
.thumb{width:160px} details summary{cursor:pointer;color:#90caf9} details img{width:100%;max-width:900px}
code{font-size:.8rem;color:#bbb}
.impression{white-space:pre-wrap;background:#1b1b1b;border:1px solid #333;padding:.6rem;font-size:.85rem}
.legend{display:inline-block;width:200px;height:12px;vertical-align:middle;border:1px solid #666;background-color:#555}
"""


def _img(previews: dict[str, str], key: str, alt: str, cls: str = "") -> str:
    uri = previews.get(key)
    if not uri:
        return f"<em>({escape(alt)} not available)</em>"
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{uri}" alt="{escape(alt)}">'


def _figure(previews: dict[str, str], key: str, caption: str) -> str:
    return f"<figure>{_img(previews, key, caption)}<figcaption>{escape(caption)}</figcaption></figure>"


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    if isinstance(value, dict) and depth < 3:
        rows: list[tuple[str, str]] = []
        for k, v in value.items():
            rows += _flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}", depth + 1)
        return rows
    if isinstance(value, float):
        return [(prefix.rstrip("."), f"{value:.4g}")]
    return [(prefix.rstrip("."), str(value))]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _metrics(metrics: dict[str, Any]) -> str:
    """The card's summary sentence (else its top-level figures): the full tables, with their training-data
    provenance, stay in report.json and the model card, not in a page read at the workstation."""
    if isinstance(metrics.get("summary"), str):
        return f'<span class="small">{escape(metrics["summary"])}</span>'
    rows = [(k, v) for k, v in _flatten(metrics) if k.count(".") <= 1 and _is_number(v)][:8]
    if not rows:
        return "<em>no measured figures</em>"
    return '<span class="small">' + "; ".join(f"{escape(k)} {escape(v)}" for k, v in rows) + "</span>"


def _measured_cell(m: Any) -> str:
    """AUROC with its CI, sensitivity/specificity at the threshold and the counts behind them, or a plain 'never'."""
    if not m:
        return "<em>never measured</em>"

    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    ci = m.get("auroc_ci95") or [None, None]
    text = (
        f"AUROC {num(m.get('auroc'))} (95% CI {num(ci[0])}–{num(ci[1])}); sens {num(m.get('sensitivity'))}, "
        f"spec {num(m.get('specificity'))} at the threshold; {m.get('n_pos')} positives / {m.get('n')} films "
        f"({escape(str(m.get('measured_on') or ''))})"
    )
    if m.get("teacher_auroc") is not None:
        text += f"; reference CheXNet on {escape(str(m.get('teacher_set')))}: {num(m.get('teacher_auroc'))}"
    return f'<span class="small">{text}</span>'


def _heatmap_legend(legend: dict[str, Any] | None) -> str:
    """The colour bar and the sentence that says what the heatmap colours mean (from report.json)."""
    if not legend:
        return "<p>Heatmaps show where the model found evidence for each finding, not how likely it is.</p>"
    floor = float(legend["transparent_below"])
    colors = legend["colors"]
    # colour at heat v is the anchors interpolated at v (anchor i at i / (n - 1)); below the floor nothing is drawn
    rgb = [tuple(int(c[k : k + 2], 16) for k in (1, 3, 5)) for c in colors]
    pos = floor * (len(rgb) - 1)
    lo = min(int(pos), len(rgb) - 1)
    hi, frac = min(lo + 1, len(rgb) - 1), pos - int(pos)
    at_floor = "#" + "".join(f"{round(a * (1 - frac) + b * frac):02x}" for a, b in zip(rgb[lo], rgb[hi], strict=True))
    stops = [f"transparent {100 * floor:.1f}%", f"{at_floor} {100 * floor:.1f}%"]
    stops += [f"{c} {100 * i / (len(colors) - 1):.1f}%" for i, c in enumerate(colors) if i / (len(colors) - 1) > floor]
    bar = (
        f'<span class="legend" style="background-image:linear-gradient(to right, transparent 0%, '
        f'{", ".join(stops)})"></span>'
    )
    return (
        f'<p class="legend-row"><b>Heatmap colours</b> &nbsp; 0 {bar} 1 &nbsp; '
        f"<small>(0 = {escape(legend['zero'])}; 1 = {escape(legend['one'])}; "
        f"below {floor:g} not coloured)</small><br>{escape(legend['meaning'])} Click a heatmap to enlarge.</p>"
    )


def render_html(report: dict[str, Any], previews: dict[str, str]) -> str:
    """The page for one report dict (see json_report.build_report) and its image previews."""
    r = report
    parts: list[str] = []
    parts.append(f'<div class="banner disclaimer">⚠ {escape(r["disclaimer"])}</div>')
    if r["untrained"]:
        untrained = ", ".join(m["role"] for m in r["models"] if m["status"] != "trained")
        parts.append(
            f'<div class="banner untrained">UNTRAINED MODEL — outputs are meaningless '
            f"(untrained: {escape(untrained)}). Do not use for any clinical purpose.</div>"
        )
    if r["forced"]:
        parts.append(
            f'<div class="banner forced">FORCED analysis: the input check refused this image '
            f"({escape(r['chest_check']['reason'])}). Results are unreliable.</div>"
        )
    if r["warnings"]:
        parts.append("<ul>" + "".join(f'<li class="warn">{escape(w)}</li>' for w in r["warnings"]) + "</ul>")
    ood = r.get("ood")
    if ood:
        far = ood["score"] > ood["threshold"]
        verdict = "OVER the threshold: unlike the training films" if far else "like the training films"
        view = ood.get("view")
        view_text = ""
        if view:
            view_text = f"; view check {view['score']:.2f} (threshold {view['threshold']:.2f}): " + (
                "a whole, upright frontal film"
                if view["passed"]
                else "OVER the threshold: lateral, rotated, cropped or inverted?"
            )
        parts.append(
            f'<p class="small">Input check: out-of-distribution score {ood["score"]:.2f} (threshold '
            f"{ood['threshold']:.2f}): {verdict}{escape(view_text)}.</p>"
        )

    t = r["triage"]
    crit = ", ".join(t["critical_findings"])
    parts.append(
        f'<h2>Triage</h2><p><span class="prio prio-{escape(t["priority"])}">{escape(t["priority"])}</span> '
        f"&nbsp; abnormal probability {t['abnormal_probability']:.3f} (threshold {t['threshold']:.3f})"
        + (f" &nbsp; critical findings: <b>{escape(crit)}</b>" if crit else "")
        + "</p>"
        + (f'<p class="small">Why: {escape(t["reason"])}</p>' if t.get("reason") else "")
        + (
            f'<p class="small">Triage model measured: {_measured_cell(t.get("measured"))}</p>'
            if t.get("measured")
            else ""
        )
    )
    if r.get("impression"):
        parts.append(
            f'<h2>Impression (plain text, to copy)</h2><pre class="impression">{escape(r["impression"])}</pre>'
        )

    parts.append('<h2>Radiograph</h2><div class="grid">')
    parts.append(_figure(previews, "lung_contour", "Frontal radiograph with the lung segmentation contour"))
    if r["input"]["lateral"] is not None:
        parts.append(_figure(previews, "lateral", "Lateral radiograph"))
    parts.append("</div>")

    rows = []
    for f in sorted(r["findings"], key=lambda f: (not f["validated"], -f["probability"])):
        tags = ""
        if f["positive"]:
            tags += '<span class="tag pos">above threshold</span>'
        if f.get("critical"):
            tags += '<span class="tag crit">critical</span>'
        if not f["validated"]:
            note = f.get("validation_note") or ""
            tags += f'<span class="tag nv" title="{escape(note)}">not validated</span>'
            if note:
                tags += f'<br><span class="small">not validated: {escape(note)}</span>'
        if f.get("heatmap_empty"):
            tags += '<br><span class="small">heatmap empty: the map is flat, no region stands out</span>'
        if f.get("method"):  # scored from a measurement, not by the classifier (its map is the heart outline)
            tags += f'<br><span class="small">scored {escape(f["method"])}; its map is the heart outline</span>'
        pct = max(0.0, min(100.0, 100.0 * f["probability"]))
        thr = f"{f['threshold']:.3f}" if f.get("threshold_measured", True) else "<em>never measured</em>"
        key, lat_key = f"heatmap:{f['code']}", f"heatmap_lateral:{f['code']}"
        cell = "<em>—</em>"
        if previews.get(key):
            lateral = _img(previews, lat_key, f["name"] + " lateral heatmap") if previews.get(lat_key) else ""
            cell = (
                f"<details><summary>{_img(previews, key, f['name'] + ' heatmap', 'thumb')}</summary>"
                f"{_img(previews, key, f['name'] + ' heatmap')}{lateral}</details>"
            )
        rows.append(
            f"<tr><td><b>{escape(f['name'])}</b> <code>{escape(f['code'])}</code>{tags}</td>"
            f'<td><span class="bar"><span style="width:{pct:.1f}%"></span></span>{f["probability"]:.3f}</td>'
            f"<td>{thr}</td><td>{_measured_cell(f.get('measured'))}</td><td>{cell}</td></tr>"
        )
    parts.append(
        "<h2>Findings (validated first, then by probability)</h2>"
        + _heatmap_legend(r.get("heatmap_legend"))
        + "<table><tr><th>Finding</th><th>Probability</th><th>Threshold</th><th>How well it was measured</th>"
        "<th>Heatmap</th></tr>" + "".join(rows) + "</table>"
    )

    a = r["lung"]["area"]

    def cm(v: float | None) -> str:
        return f"{v:.1f} cm²" if v is not None else "— (pixel spacing unknown)"

    parts.append(
        '<h2>Lungs</h2><div class="grid">'
        + _figure(previews, "lung_segmented", "Lung-segmented image")
        + "</div><table><tr><th></th><th>pixels</th><th>area</th></tr>"
        f"<tr><td>Right lung</td><td>{a['right_px']}</td><td>{cm(a['right_cm2'])}</td></tr>"
        f"<tr><td>Left lung</td><td>{a['left_px']}</td><td>{cm(a['left_cm2'])}</td></tr></table>"
        f"<p><small>{escape(r['lung']['side_convention'])}</small></p>"
    )
    heart = r.get("heart")
    if heart:
        parts.append(
            f"<h2>Heart</h2><p>Cardiothoracic ratio <b>{heart['ratio']:.2f}</b> (heart {heart['heart_width_px']} px "
            f"wide, thorax {heart['thorax_width_px']} px)</p><p><small>{escape(heart['method'])}</small></p>"
        )
    windows = r["bone"].get("display_window") or {}

    def shown(key: str) -> str:  # the display window each bone picture was drawn with (report 1.5)
        w = windows.get(key)
        return f", display window {w['low']:.3f}-{w['high']:.3f}: {w['method']}" if w else ""

    parts.append(
        '<h2>Bones</h2><div class="grid">'
        + _figure(previews, "bone_subtracted", "Bone-subtracted (bone image)" + shown("subtracted"))
        + _figure(previews, "bone_suppressed", "Bone-suppressed (soft tissue)" + shown("suppressed"))
        + "</div>"
    )

    mrows = []
    for m in r["models"]:
        status = m["status"] if m["status"] == "trained" else f'<span class="tag crit">{escape(m["status"])}</span>'
        sha = escape((m.get("sha256") or "—")[:16])
        mrows.append(
            f"<tr><td>{escape(m['role'])}</td><td>{escape(m['name'])} {escape(m['version'])}</td>"
            f"<td>{status}</td><td><code>{sha}</code></td><td>{_metrics(m.get('metrics') or {})}</td></tr>"
        )
    parts.append(
        "<h2>Models and their validation figures</h2><table><tr><th>Role</th><th>Model</th><th>Status"
        "</th><th>sha256</th><th>Measured (model card)</th></tr>" + "".join(mrows) + "</table>"
    )

    inp = r["input"]["frontal"]
    parts.append(
        "<h2>Input</h2><table>"
        + "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in inp.items())
        + "</table>"
        + "<h2>Timings (ms)</h2><p>"
        + ", ".join(f"{escape(k)} {v:.0f}" for k, v in r["timings_ms"].items())
        + "</p>"
    )
    parts.append(f'<div class="banner disclaimer">{escape(r["disclaimer"])}</div>')
    title = "cxrassist report" + (" — UNTRAINED MODEL" if r["untrained"] else "")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head><body><main>'
        f"<h1>{escape(title)}</h1><p><small>{escape(r['generator']['name'])} {escape(r['generator']['version'])}"
        f" · report schema {escape(r['schema_version'])} · {escape(r['created'])}</small></p>"
        + "\n".join(parts)
        + "</main></body></html>\n"
    )
