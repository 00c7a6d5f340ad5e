"""Take the README's picture of the viewer: `cxr serve` with the SHIPPED models, the bundled chest film, a finding.

    python scripts/screenshot_viewer.py [--out docs/images/viewer-study.png] [--finding "Pleural Effusion"]

Needs Debian's chromium at /usr/bin/chromium (apt-get install chromium) and the python playwright package.
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

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/images/viewer-study.png"))
    ap.add_argument("--finding", default="Lung Opacity")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        server = subprocess.Popen([sys.executable, "-m", "cxrassist.cli", "serve", "--port", str(port),
                                   "--data-dir", data_dir])
        try:
            for _ in range(120):
                try:
                    if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            with open(get_testdata_file("RG1_UNCI.dcm"), "rb") as fh:
                study = httpx.post(f"{url}/api/studies", files={"files": ("RG1_UNCI.dcm", fh)}).json()
            study_id = study["id"]
            for _ in range(240):
                if httpx.get(f"{url}/api/studies/{study_id}").json()["status"] in ("done", "failed", "refused"):
                    break
                time.sleep(0.5)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"{url}/study.html?id={study_id}")
                page.locator("#findings tr", has_text=args.finding).first.click()
                page.locator("#contour").check()
                page.wait_for_timeout(800)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
