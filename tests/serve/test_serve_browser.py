"""The viewer in real headless Chromium (Debian's /usr/bin/chromium, driven by the playwright package).

Skipped when Chromium is absent, unless CXR_REQUIRE_BROWSER=1 (CI), which turns the absence into a failure.
Writes test-artifacts/study-page.png and worklist-page.png (the README picture is taken with the shipped models by
scripts/screenshot_viewer.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]

# A cheap fingerprint of what the canvas shows (every 61st byte of its RGBA data).
CANVAS_HASH = """() => {
  const c = document.getElementById('view');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 61) h = (h * 31 + d[i]) % 1000000007;
  return h;
}"""


def _hash_after_paint(page: Any) -> int:
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return page.evaluate(CANVAS_HASH)


def test_viewer_upload_open_overlay_and_window(browser: Any, start_server: Any, tmp_path: Path, rg1: Path):
    from playwright.sync_api import expect

    server = start_server(tmp_path / "data")
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on(
        "request",
        lambda r: (
            problems.append(f"external request {r.url}")
            if not r.url.startswith((server.url, "data:", "blob:"))
            else None
        ),
    )

    # worklist: upload through the file input, watch the study appear and finish
    page.goto(server.url + "/")
    expect(page.locator("#disclaimer")).to_contain_text("not a diagnosis")
    page.set_input_files("#file-input", str(rg1))
    expect(page.locator("#upload-msg")).to_contain_text("study ")  # the uploaded study's id, followed
    row = page.locator("tr.study-row").first
    expect(row).to_be_visible()
    expect(row).to_have_attribute("data-status", "done", timeout=150_000)
    expect(page.locator("#upload-msg")).to_contain_text("done")  # no stale "analysis running" message
    expect(row.locator(".badge")).to_be_visible()  # triage priority
    expect(page.locator("#banner")).to_be_visible()  # untrained models: red banner
    expect(page.locator("#banner")).to_contain_text("UNTRAINED")
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(REPO / "test-artifacts" / "worklist-page.png"))

    # study page
    row.click()
    page.wait_for_url("**/study.html?id=*")
    canvas = page.locator("#view")
    expect(canvas).to_have_attribute("data-ready", "1")
    expect(page.locator("#findings li")).to_have_count(13)
    expect(page.locator("#findings .tag", has_text="not validated").first).to_be_visible()
    expect(page.locator("#banner")).to_contain_text("UNTRAINED")
    expect(page.locator("#models tr")).to_have_count(4)
    expect(page.locator("#triage")).not_to_contain_text("null")
    expect(page.locator("#bone-sub")).to_be_visible()
    page.wait_for_function("() => document.getElementById('bone-sup').naturalWidth > 0")
    plain = _hash_after_paint(page)

    # a finding's heatmap overlays the radiograph; opacity 0 takes it away again
    page.locator("#findings li[data-code='CA'] button.f-name").click()
    expect(canvas).to_have_attribute("data-overlay", "CA")
    expect(page.locator("#overlay-label")).to_contain_text("Cardiomegaly")
    overlaid = _hash_after_paint(page)
    assert overlaid != plain
    page.locator("#opacity").fill("0")
    assert _hash_after_paint(page) == plain
    page.locator("#opacity").fill("60")
    overlaid = _hash_after_paint(page)
    assert overlaid != plain

    # the viewer's window/level function is cxrassist.preprocess.apply_level, value for value, at every preset
    import numpy as np

    from cxrassist.preprocess import LEVEL_PRESETS, apply_level

    v = np.linspace(-0.1, 1.1, 49)
    for center, width in [*LEVEL_PRESETS.values(), (0.42, 0.13)]:
        js = page.evaluate("([v, c, w]) => v.map((x) => CXR.level(x, c, w))", [v.tolist(), center, width])
        np.testing.assert_allclose(js, apply_level(v, center, width), atol=1e-12)

    # window/level on RG1's stored values: a preset fitted to the film, then a mouse drag (horizontal = width,
    # vertical = level; one canvas side = the film's value range)
    lung = page.evaluate("() => cxrViewer.base.meta.presets.lung")
    value_range = page.evaluate("() => cxrViewer.base.meta.max - cxrViewer.base.meta.min")
    page.locator("#presets button[data-preset='lung']").click()
    expect(canvas).to_have_attribute("data-window", f"{lung['center']:.1f},{lung['width']:.1f}")
    leveled = _hash_after_paint(page)
    assert leveled != overlaid
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + box["width"] / 5, cy + box["height"] / 10, steps=6)
    page.mouse.up()
    center, width = (float(v) for v in canvas.get_attribute("data-window").split(","))
    assert width == pytest.approx(lung["width"] + 0.2 * value_range, rel=0.03)
    assert center == pytest.approx(lung["center"] + 0.1 * value_range, rel=0.03)
    dragged = _hash_after_paint(page)
    assert dragged != leveled

    # zoom with the wheel, other views, then a screenshot of the whole page
    page.mouse.wheel(0, -400)
    expect(page.locator("#readout")).not_to_contain_text("zoom 1.00×")
    page.locator("#views button[data-view='bone_suppressed']").click()
    expect(canvas).to_have_attribute("data-view", "bone_suppressed")
    page.locator("#views button[data-view='radiograph']").click()
    page.locator("#reset").click()
    page.locator("#contour").check()
    page.locator("#presets button[data-preset='default']").click()
    expect(canvas).to_have_attribute("data-window", "15000.0,30000.0")  # RG1's own VOI window
    _hash_after_paint(page)

    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "study-page.png"))
    # (The README's picture is taken with the shipped models by scripts/screenshot_viewer.py, not with these tiny
    # untrained ones.)
    assert (artifacts / "study-page.png").stat().st_size > 10_000
    assert not problems, problems
    page.close()


def test_viewer_shows_a_refusal(browser: Any, start_server: Any, tmp_path: Path, rg3: Path):
    from playwright.sync_api import expect

    server = start_server(tmp_path / "data")
    page = browser.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#file-input", str(rg3))
    row = page.locator("tr.study-row").first
    expect(row).to_have_attribute("data-status", "refused", timeout=60_000)
    expect(row).to_contain_text("chest")
    row.click()
    expect(page.locator("#refusal")).to_contain_text("chest")
    expect(page.locator("#view")).to_be_hidden()  # a refused study offers no image tools
    # garbage through the file input: the refusal message from the API, no study
    bad = tmp_path / "garbage.png"
    bad.write_bytes(b"not an image at all" * 20)
    page.goto(server.url + "/")
    page.set_input_files("#file-input", str(bad))
    expect(page.locator("#upload-msg")).to_contain_text("Upload refused")
    expect(page.locator("tr.study-row")).to_have_count(1)
    page.close()
