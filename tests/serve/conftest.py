"""Fixtures of the service tests: a real uvicorn server on a free loopback port, running the real analysis with
tiny (untrained) models, and the pydicom test radiographs (RG1 = chest, RG3 = tibia)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import TINY_UNTRAINED, LiveServer


@pytest.fixture(scope="session")
def rg1() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("RG1_UNCI.dcm"))


@pytest.fixture(scope="session")
def rg3() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("RG3_UNCI.dcm"))


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real Pipeline with tiny random models (an empty weights folder + allow_untrained)."""
    import torch

    from cxrassist.pipeline import Pipeline

    torch.manual_seed(0)
    empty = tmp_path_factory.mktemp("no-weights")
    return Pipeline.load(empty, allow_untrained=True, untrained_kwargs=TINY_UNTRAINED)


@pytest.fixture
def start_server(tiny_pipeline: Any) -> Iterator[Callable[..., LiveServer]]:
    """``start_server(data_dir, **settings)`` -> a started LiveServer with the tiny pipeline; stopped at teardown."""
    from cxrassist.serve.app import create_app
    from cxrassist.serve.settings import Settings

    servers: list[LiveServer] = []

    def start(data_dir: Path, **overrides: Any) -> LiveServer:
        settings = Settings(data_dir=data_dir, **overrides)
        server = LiveServer(create_app(settings, pipeline_factory=lambda: tiny_pipeline)).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        if s._thread.is_alive():
            s.stop()


@pytest.fixture(scope="session")
def small_chest_png(rg1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RG1 (a real chest CR) downscaled to a 320-px PNG: same anatomy, a fraction of the analysis time."""
    import numpy as np
    from PIL import Image

    from cxrassist.io import read_xray

    pixels = read_xray(rg1).pixels
    img = Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8), mode="L")
    img.thumbnail((320, 320), Image.Resampling.LANCZOS)
    path = tmp_path_factory.mktemp("small") / "chest-small.png"
    img.save(path)
    return path


CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium; never `playwright install`
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium for one test module (the browser tests of the viewer); fails instead of skipping when
    CXR_REQUIRE_BROWSER=1 (CI)."""
    if not CHROMIUM.exists():
        if os.environ.get("CXR_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CXR_REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import expect, sync_playwright

    # Expectations wait on the local server (an upload's reply, a study fetched on click), which a 2-core machine
    # that is busy with other work answered in more than Playwright's default 5 s; the waits for an analysis to end
    # keep their own longer timeouts.
    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()
