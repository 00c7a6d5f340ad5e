"""The reading room (issue 16) in real headless Chromium with the SHIPPED models: the findings panel ranked with its
measured figures, priority in words, worklist columns with sort and filter, window/level on RG1's 15-bit stored
values (the page's level = cxrassist.preprocess.apply_level on pydicom's pixel_array), keyboard shortcuts and their
help, axe-core (vendored, tests/fixtures/axe-core) without serious or critical violations, and the layout at
1280x720 and 1920x1080.

One browser and one server (RG1 done, RG1 as PNG done, the tibia RG3 refused) for the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_helpers import LiveServer, upload, wait_final

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[1] / "fixtures" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def room(
    tmp_path_factory: pytest.TempPathFactory, rg1: Path, rg3: Path, small_chest_png: Path
) -> Iterator[dict[str, Any]]:
    """A server with the shipped models and four studies: RG1 (done), RG1 as a small PNG (done), RG3 (refused), and
    the small PNG with a second copy sent as its lateral (done; the shipped classifier reads the frontal only)."""
    from cxrassist.pipeline import Pipeline
    from cxrassist.serve.app import create_app
    from cxrassist.serve.settings import Settings

    pipeline = Pipeline.load()
    settings = Settings(data_dir=tmp_path_factory.mktemp("room"))
    server = LiveServer(create_app(settings, pipeline_factory=lambda: pipeline)).start()
    try:
        with server.client() as c:
            ids = {
                name: upload(c, path).json()["id"]
                for name, path in (("rg1", rg1), ("png", small_chest_png), ("rg3", rg3))
            }
            ids["lat"] = upload(c, small_chest_png, small_chest_png, lateral="1").json()["id"]
            details = {name: wait_final(c, sid, timeout=300) for name, sid in ids.items()}
            order = [s["id"] for s in c.get("/api/studies").json()["studies"]]
        assert details["rg1"]["status"] == "done", details["rg1"].get("reason")
        assert details["rg3"]["status"] == "refused"
        yield {"server": server, "ids": ids, "details": details, "order": order}
    finally:
        server.stop()


def _page(browser: Any, room: dict[str, Any], path: str, width: int = 1440, height: int = 900) -> tuple[Any, list]:
    page = browser.new_page(viewport={"width": width, "height": height}, bypass_csp=True)  # bypass: axe is inline
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(room["server"].url + path)
    return page, problems


def _study(browser: Any, room: dict[str, Any], name: str = "rg1", **kw: Any) -> tuple[Any, list]:
    page, problems = _page(browser, room, f"/study.html?id={room['ids'][name]}", **kw)
    page.wait_for_selector("body[data-loaded='1']", timeout=60_000)
    page.wait_for_selector("#view[data-ready='1']")
    return page, problems


def _ranked(detail: dict[str, Any]) -> list[str]:
    return [f["code"] for f in sorted(detail["findings"], key=lambda f: (not f["validated"], -f["probability"]))]


def test_findings_ranked_with_their_measured_figures(browser: Any, room: dict[str, Any]):
    from playwright.sync_api import expect

    detail = room["details"]["rg1"]
    page, problems = _study(browser, room)
    codes = page.locator("#findings li").evaluate_all("els => els.map(e => e.dataset.code)")
    assert codes == _ranked(detail)
    validated = [f for f in detail["findings"] if f["validated"]]
    assert validated and codes[: len(validated)] == [c for c in codes if c in {f["code"] for f in validated}]
    for f in detail["findings"]:
        row = page.locator(f"#findings li[data-code='{f['code']}']")
        m = f["measured"]
        if m and m["auroc"] is not None:  # AUROC [CI] and sensitivity/specificity at the threshold, in the row
            ci = m["auroc_ci95"]
            expect(row.locator(".f-metrics")).to_contain_text(f"AUROC {m['auroc']:.2f} [{ci[0]:.2f}–{ci[1]:.2f}]")
            expect(row.locator(".f-metrics")).to_contain_text(
                f"sens {m['sensitivity']:.2f} / spec {m['specificity']:.2f}"
            )
        else:
            expect(row.locator(".f-metrics")).to_contain_text("AUROC not measured")
        if f["threshold_measured"]:
            expect(row.locator(".f-prob")).to_contain_text(f"thr {100 * f['threshold']:.1f}%")
        else:  # the 0.5 placeholder is never shown as a threshold
            expect(row.locator(".f-prob")).to_contain_text("no threshold measured")
        if not f["validated"]:
            expect(row.locator(".f-note")).to_contain_text(f"Not validated: {f['validation_note']}")
        if f.get("method"):  # report 1.7: a finding scored from a measurement says how, in its row
            expect(row.locator(".f-method")).to_contain_text(f"Scored {f['method']}")
        else:
            expect(row.locator(".f-method")).to_have_count(0)
    # priority in words, colour class and reason; the impression is the report's
    t = detail["triage"]
    expect(page.locator("#priority")).to_have_text(t["priority"])
    expect(page.locator("#priority")).to_have_class(f"badge {t['priority']}")
    expect(page.locator("#priority-reason")).to_have_text(t["reason"])
    assert page.locator("#impression").inner_text().strip() == detail["impression"].strip()
    assert not problems, problems
    page.close()


def test_window_level_on_stored_16_bit_values(browser: Any, room: dict[str, Any], rg1: Path):
    import pydicom

    from cxrassist.preprocess import apply_level

    ds = pydicom.dcmread(rg1)
    stored = ds.pixel_array
    assert ds.BitsStored == 15 and ds.PhotometricInterpretation == "MONOCHROME1"
    page, problems = _study(browser, room)
    # default window: the DICOM's own VOI (WindowCenter / WindowWidth)
    state = page.evaluate("() => [cxrViewer.center, cxrViewer.width]")
    assert state == [float(ds.WindowCenter), float(ds.WindowWidth)]
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, stored.shape[0], 60), rng.integers(0, stored.shape[1], 60)

    def check() -> None:
        c, w = page.evaluate("() => [cxrViewer.center, cxrViewer.width]")
        expected = 1.0 - apply_level(stored[ys, xs].astype(np.float64), c, w)  # MONOCHROME1: shown inverted
        got = page.evaluate("([xs, ys]) => xs.map((x, i) => cxrViewer.levelAt(x, ys[i]))", [xs.tolist(), ys.tolist()])
        np.testing.assert_allclose(got, expected, atol=1e-9)
        shown = page.evaluate(
            "([xs, ys]) => xs.map((x, i) => cxrViewer.base.canvas.getContext('2d')"
            ".getImageData(x, ys[i], 1, 1).data[0])",
            [xs.tolist(), ys.tolist()],
        )
        assert np.abs(np.array(shown) - np.round(255 * expected)).max() <= 1

    check()
    page.keyboard.press("2")  # lung preset: fitted to this film's values
    lung = room["details"]["rg1"]["view_pixels"]["frontal"]["presets"]["lung"]
    assert page.evaluate("() => [cxrViewer.center, cxrViewer.width]") == [lung["center"], lung["width"]]
    check()
    # a drag: a narrow window, as a reader would set it (many distinct grey levels out of the 15 bits)
    box = page.locator("#view").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - box["width"] / 2, cy + box["height"] / 20, steps=5)
    page.mouse.up()
    check()
    c, w = page.evaluate("() => [cxrViewer.center, cxrViewer.width]")
    assert w < lung["width"]
    # invert: the same level, the other way round
    page.keyboard.press("i")
    got = page.evaluate("([x, y]) => cxrViewer.levelAt(x, y)", [int(xs[0]), int(ys[0])])
    assert got == pytest.approx(float(apply_level(np.float64(stored[ys[0], xs[0]]), c, w)), abs=1e-9)
    # the read-out gives the stored value under the mouse
    page.mouse.move(cx + 13, cy + 7)
    x, y = page.evaluate("() => [cxrViewer.pointer.x, cxrViewer.pointer.y]")
    assert f"({x}, {y}) {int(stored[y, x])}" in page.locator("#readout").inner_text()
    assert not problems, problems
    page.close()


def test_keyboard_shortcuts_and_help(browser: Any, room: dict[str, Any]):
    from playwright.sync_api import expect

    ranked = _ranked(room["details"]["rg1"])
    page, problems = _study(browser, room)
    canvas = page.locator("#view")
    page.keyboard.press("ArrowDown")
    expect(canvas).to_have_attribute("data-overlay", ranked[0])
    expect(page.locator(f"#findings li[data-code='{ranked[0]}']")).to_have_class("validated selected")
    page.keyboard.press("ArrowDown")
    expect(canvas).to_have_attribute("data-overlay", ranked[1])
    page.keyboard.press("ArrowUp")
    expect(canvas).to_have_attribute("data-overlay", ranked[0])
    page.keyboard.press("o")
    expect(canvas).to_have_attribute("data-overlay-on", "0")
    page.keyboard.press("o")
    expect(canvas).to_have_attribute("data-overlay-on", "1")
    invert = canvas.get_attribute("data-invert")
    page.keyboard.press("i")
    expect(canvas).not_to_have_attribute("data-invert", invert)
    expect(page.locator("#invert")).to_be_checked()
    presets = room["details"]["rg1"]["view_pixels"]["frontal"]["presets"]
    for key, name in zip("1234", presets, strict=False):
        page.keyboard.press(key)
        assert page.evaluate("() => [cxrViewer.center, cxrViewer.width]") == [
            presets[name]["center"],
            presets[name]["width"],
        ]
        expect(page.locator(f"#presets button[data-preset='{name}']")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("+")
    expect(page.locator("#readout")).not_to_contain_text("zoom 1.00×")
    page.keyboard.press("r")
    expect(page.locator("#readout")).to_contain_text("zoom 1.00×")
    assert page.evaluate("() => [cxrViewer.center, cxrViewer.width]") == [
        presets["default"]["center"],
        presets["default"]["width"],
    ]
    # help overlay lists the keys; Esc closes it
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    for key in ("N", "P", "O", "I", "R", "1"):
        expect(page.locator("#help kbd", has_text=key).first).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    # every finding reachable with Tab (a labelled button each)
    names = page.locator("#findings li button.f-name")
    assert names.count() == 13
    names.nth(1).focus()
    page.keyboard.press("Enter")
    expect(canvas).to_have_attribute("data-overlay", ranked[1])
    page.keyboard.press("Tab")
    assert (
        page.evaluate("() => document.activeElement.textContent")
        == page.locator(f"#findings li[data-code='{ranked[2]}'] button.f-name").inner_text()
    )
    # next / previous study in worklist order
    order = room["order"]
    i = order.index(room["ids"]["rg1"])
    if i + 1 < len(order):
        page.keyboard.press("n")
        page.wait_for_url(f"**/study.html?id={order[i + 1]}")
        page.keyboard.press("p")
        page.wait_for_url(f"**/study.html?id={order[i]}")
    assert not problems, problems
    page.close()


def test_worklist_columns_sort_and_filter(browser: Any, room: dict[str, Any]):
    from playwright.sync_api import expect

    page, problems = _page(browser, room, "/")
    expect(page.locator("tr.study-row")).to_have_count(4)
    headings = page.locator("#worklist thead th").all_inner_texts()
    for name in (
        "Priority",
        "Patient",
        "Study date",
        "Description",
        "Accession",
        "Views",
        "Source",
        "Status",
        "Validated findings",
        "Study",
    ):
        assert any(h.strip().lower().startswith(name.lower()) for h in headings), (name, headings)
    rg1 = page.locator(f"tr[data-id='{room['ids']['rg1']}']")
    for text in (
        "CompressedSamples RG1",
        "ID 9RG1",
        "2004-08-26 18:50",
        "THORAX",
        "exam Number",
        "frontal",
        "upload",
        "done",
        room["ids"]["rg1"][:8],
    ):
        expect(rg1).to_contain_text(text)
    detail = room["details"]["rg1"]
    expect(rg1.locator(".badge")).to_have_text(detail["triage"]["priority"])
    expect(rg1).to_contain_text(detail["triage"]["reason"])
    # the findings column lists validated findings only; unvalidated ones are counted, tagged
    shown = rg1.locator("td").nth(8).inner_text()
    for f in detail["study"]["top_findings"]:
        assert (f["name"] in shown) == bool(f["validated"]), (f, shown)
    # default: highest priority first; sorting by patient, then filtering
    ids = page.locator("tr.study-row").evaluate_all("els => els.map(e => e.dataset.id)")
    assert ids[-1] == room["ids"]["rg3"]  # refused: no priority
    expect(page.locator(f"tr[data-id='{room['ids']['lat']}']")).to_contain_text("frontal, lateral")
    page.locator("#worklist th[data-sort='patient'] button").click()
    expect(page.locator("#worklist th[data-sort='patient']")).to_have_attribute("aria-sort", "ascending")
    names = page.locator("tr.study-row td:nth-child(2)").evaluate_all("els => els.map(e => e.innerText.trim())")
    assert names == sorted(names, key=lambda n: "" if n.startswith("—") else n.lower())
    page.locator("#text-filter").fill("9RG1")
    expect(page.locator("tr.study-row")).to_have_count(1)
    page.locator("#text-filter").fill("")
    page.select_option("#status-filter", "refused")
    expect(page.locator("tr.study-row")).to_have_count(1)
    expect(page.locator("tr.study-row")).to_have_attribute("data-id", room["ids"]["rg3"])
    assert not problems, problems
    page.close()


def test_refused_study_page_says_why_and_offers_nothing_else(browser: Any, room: dict[str, Any]):
    from playwright.sync_api import expect

    page, problems = _page(browser, room, f"/study.html?id={room['ids']['rg3']}")
    expect(page.locator("#refusal")).to_contain_text("chest")
    expect(page.locator("#refusal-title")).to_contain_text("refused")
    expect(page.locator("#study-layout")).to_be_hidden()
    expect(page.locator("#view")).to_be_hidden()
    expect(page.locator("#presets")).to_be_hidden()
    assert not problems, problems
    page.close()


def test_lateral_is_shown_and_said_not_analysed(browser: Any, room: dict[str, Any]):
    from playwright.sync_api import expect

    assert room["details"]["lat"]["status"] == "done"
    page, problems = _study(browser, room, "lat")
    page.locator("#views button[data-view='lateral']").click()
    expect(page.locator("#view")).to_have_attribute("data-view", "lateral")
    expect(page.locator("#view-note")).to_contain_text("not analysed")
    page.locator("#views button[data-view='radiograph']").click()
    expect(page.locator("#view-note")).to_be_hidden()
    assert not problems, problems
    page.close()


def _axe(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_core_finds_no_serious_violation(browser: Any, room: dict[str, Any]):
    found: dict[str, Any] = {}
    page, _ = _page(browser, room, "/")
    page.wait_for_selector("tr.study-row")
    found["worklist"] = _axe(page)
    page.close()
    page, _ = _study(browser, room)
    page.keyboard.press("ArrowDown")
    found["study"] = _axe(page)
    page.keyboard.press("?")
    found["study+help"] = _axe(page)
    page.close()
    page, _ = _page(browser, room, f"/study.html?id={room['ids']['rg3']}")
    page.wait_for_selector("#refusal-card:not(.hidden)")
    found["refused"] = _axe(page)
    page.close()
    assert not any(found.values()), found


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_layout_fits_the_screen(browser: Any, room: dict[str, Any], size: tuple[int, int]):
    w, h = size
    page, problems = _study(browser, room, width=w, height=h)
    no_scroll = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert no_scroll[0] <= w and no_scroll[1] <= h, no_scroll
    toolbar = page.locator(".toolbar")
    tb = toolbar.bounding_box()
    assert tb["height"] <= 40, tb  # one line, no wrap
    assert page.evaluate(
        "() => { const t = document.querySelector('.toolbar'); return t.scrollWidth <= t.clientWidth; }"
    )
    canvas = page.locator("#view").bounding_box()
    assert canvas["height"] >= 0.78 * h and canvas["width"] >= 0.6 * w, canvas
    # the highest-ranked finding, with its figures, is on screen without scrolling
    first = page.locator("#findings li").first.bounding_box()
    assert first["y"] + first["height"] <= h, first
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / f"study-{w}x{h}.png"))
    assert not problems, problems
    page.close()


def test_study_header_stays_behind_the_token(start_server: Any, tmp_path: Path, rg1: Path):
    """Patient name and ID are in the worklist's data: without the API token nothing of it is served."""
    server = start_server(tmp_path / "data", api_token="s3cret-token-0123456789")
    auth = {"Authorization": "Bearer s3cret-token-0123456789"}
    with server.client() as c:
        sid = upload(c, rg1, headers=auth).json()["id"]
        listed = c.get("/api/studies", headers=auth).json()["studies"]
        assert listed[0]["header"]["patient_id"] == "9RG1"
        for path in ("/api/studies", f"/api/studies/{sid}", f"/api/studies/{sid}/pixels/frontal"):
            r = c.get(path)
            assert r.status_code == 401 and "RG1" not in r.text, path
