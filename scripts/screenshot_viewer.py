"""Take the README's pictures of the viewer: `cxr serve` with the SHIPPED models, the bundled chest film RG1, a few
films of ../shared/data when it is there (and the tibia RG3, refused), then the worklist and the study page.

    python scripts/screenshot_viewer.py [--out-dir docs/images] [--finding "Lung Opacity"] [--shared 4]

Writes worklist.png (1440x900), viewer-study.png (1440x900: a finding's heatmap, the lung contour) and
viewer-study-1280x720.png (the smallest layout the viewer is made for). Needs Debian's chromium at
/usr/bin/chromium (apt-get install chromium) and the python playwright package.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright
from pydicom.data import get_testdata_file

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def films(n_shared: int) -> list[Path]:
    """RG1 first, then the first n films of the NIH sample (if present), then RG3 (a tibia: refused)."""
    out = [Path(get_testdata_file("RG1_UNCI.dcm"))]
    folder = SHARED / "nih_cxr14_sample" / "images"
    if n_shared and folder.is_dir():
        out += sorted(folder.glob("*.jpg"))[:n_shared]
    out.append(Path(get_testdata_file("RG3_UNCI.dcm")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=Path("docs/images"))
    ap.add_argument("--finding", default="Lung Opacity")
    ap.add_argument("--shared", type=int, default=4, help="films of ../shared/data/nih_cxr14_sample to add")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        server = subprocess.Popen(
            [sys.executable, "-m", "cxrassist.cli", "serve", "--port", str(port), "--data-dir", data_dir]
        )
        try:
            for _ in range(240):
                try:
                    if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            ids = []
            for path in films(args.shared):
                with open(path, "rb") as fh:
                    ids.append(
                        httpx.post(f"{url}/api/studies", files={"files": (path.name, fh)}, timeout=60).json()["id"]
                    )
            for sid in ids:
                for _ in range(600):
                    if httpx.get(f"{url}/api/studies/{sid}").json()["status"] in ("done", "failed", "refused"):
                        break
                    time.sleep(0.5)
            args.out_dir.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"{url}/")
                page.wait_for_selector("tr.study-row")
                page.wait_for_timeout(600)
                page.screenshot(path=str(args.out_dir / "worklist.png"))
                for (w, h), name in (((1440, 900), "viewer-study.png"), ((1280, 720), "viewer-study-1280x720.png")):
                    page.set_viewport_size({"width": w, "height": h})
                    page.goto(f"{url}/study.html?id={ids[0]}")
                    page.wait_for_selector("body[data-loaded='1']", timeout=60_000)
                    page.locator("#findings li", has_text=args.finding).first.locator("button.f-name").click()
                    page.locator("#contour").check()
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(args.out_dir / name))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote worklist.png, viewer-study.png, viewer-study-1280x720.png in {args.out_dir}")


if __name__ == "__main__":
    main()
