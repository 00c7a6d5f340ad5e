"""The viewer's bone view is a picture, not a black square (issue 13), in real headless Chromium.

RG1 (a real chest CR) analysed by the SHIPPED lung and bone models (tiny untrained classifier and triage: only the
bone pictures matter here). Skipped when Chromium is absent, unless CXR_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import TINY_UNTRAINED, LiveServer, upload, wait_final

pytestmark = pytest.mark.browser


# Grey-level statistics (R channel) of the main canvas, and of an <img> drawn onto a scratch canvas.
CANVAS_STATS = """() => {
  const c = document.getElementById('view');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, s = 0, s2 = 0, bright = 0;
  for (let i = 0; i < d.length; i += 4) { const v = d[i]; n++; s += v; s2 += v * v; if (v > 128) bright++; }
  const mean = s / n;
  return {mean, std: Math.sqrt(Math.max(0, s2 / n - mean * mean)), bright: bright / n};
}"""
IMG_STATS = """(id) => {
  const img = document.getElementById(id);
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0, s = 0, s2 = 0;
  for (let i = 0; i < d.length; i += 4) { const v = d[i]; n++; s += v; s2 += v * v; }
  const mean = s / n;
  return {mean, std: Math.sqrt(Math.max(0, s2 / n - mean * mean)), width: c.width};
}"""


@pytest.fixture(scope="module")
def bone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service with the shipped lung and bone models (the others tiny and untrained)."""
    from cxrassist.pipeline import Pipeline
    from cxrassist.serve.app import create_app
    from cxrassist.serve.settings import Settings
    from cxrassist.weights import shipped_dir

    root = tmp_path_factory.mktemp("weights")
    for name in ("lungseg", "bone"):
        shutil.copytree(shipped_dir() / name, root / name)
    pipe = Pipeline.load(root, allow_untrained=True, untrained_kwargs=TINY_UNTRAINED)
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    server = LiveServer(create_app(settings, pipeline_factory=lambda: pipe)).start()
    yield server
    server.stop()


def test_bone_view_is_not_blank(browser: Any, bone_server: LiveServer, rg1: Path) -> None:
    from playwright.sync_api import expect

    with bone_server.client() as client:
        response = upload(client, rg1)
        assert response.status_code in (200, 201, 202), response.text
        study_id = response.json()["id"]
        detail = wait_final(client, study_id, timeout=240)
    assert detail["status"] == "done", detail

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"{bone_server.url}/study.html?id={study_id}")
    canvas = page.locator("#view")
    expect(canvas).to_have_attribute("data-ready", "1", timeout=60_000)
    page.locator("#views button[data-view='bone_subtracted']").click()
    expect(canvas).to_have_attribute("data-view", "bone_subtracted")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    shown = page.evaluate(CANVAS_STATS)
    # Before issue 13 the raw bone image was drawn: mean 1.7 of 255, max 42 (a black square).
    assert shown["mean"] > 8 and shown["std"] > 20 and shown["bright"] > 0.02, shown

    page.wait_for_function("() => document.getElementById('bone-sub').naturalWidth > 0")
    expect(page.locator("#bones-card figcaption").first).to_contain_text("window 0.0")  # the stated window
    side = page.evaluate(IMG_STATS, "bone-sub")
    assert side["width"] > 0 and side["mean"] > 8 and side["std"] > 20, side
    page.close()
