"""Fixtures of the pipeline/report/batch tests: tiny random models (saved as a weights folder) and test images.

The tiny models are the real architectures shrunk by kwargs; their outputs are meaningless but flow through the
very same code as the shipped models. The classifier needs >= 128 px (stride-4 stem + DenseNet strides).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

TINY_DN = {"growth_rate": 4, "block_config": (1, 1, 1, 1), "num_init_features": 8}
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "lung": {"width": 1 / 16, "size": 64},
    "bone": {"base_channels": 4, "size": 64},
    "classifier": {**TINY_DN, "size": 128},
    "triage": {**TINY_DN, "size": 128},
}
VALIDATED = ("Pleural Effusion", "Cardiomegaly")


def phantom(h: int = 320, w: int = 300, seed: int = 0) -> np.ndarray:
    """A crude frontal chest in [0, 1]: bright body, two dark lungs, rib-like texture, a little noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.full((h, w), 0.05, np.float32)
    img[((xx - w / 2) / (0.46 * w)) ** 2 + ((yy - 0.55 * h) / (0.62 * h)) ** 2 < 1] = 0.75
    for cx in (0.3 * w, 0.7 * w):
        img[((xx - cx) / (0.15 * w)) ** 2 + ((yy - 0.42 * h) / (0.28 * h)) ** 2 < 1] = 0.3
    img += 0.05 * np.sin(yy / 6.0)
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, 0.01, (h, w)), 0, 1).astype(np.float32)


def save_png(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_kwargs() -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in TINY_KWARGS.items()}


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder (lungseg/, bone/, classifier/, triage/) of tiny random models with "trained" cards."""
    import torch

    from cxrassist.pipeline import DEFAULT_NAMES, ROLES, build_untrained
    from cxrassist.weights import save_weights

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-weights")
    for role in ROLES:
        model, card = build_untrained(role, **dict(TINY_KWARGS[role]))
        card = dataclasses.replace(
            card,
            name=f"tiny-{role}",
            version="0.0.1-test",
            status="trained",
            validated={k: k in VALIDATED for k in card.validated},
            metrics={"auroc": {"Pleural Effusion": 0.91, "Cardiomegaly": 0.88}, "n_test": 123},
            intended_use="tests only",
            notes="tiny random test model",
        )
        save_weights(model, root / DEFAULT_NAMES[role], card)
    return root


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_weights_dir: Path) -> Any:
    from cxrassist.pipeline import Pipeline

    return Pipeline.load(tiny_weights_dir)


@pytest.fixture(scope="session")
def rg1_file() -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCI.dcm")
    if path is None:
        pytest.skip("pydicom-data RG1_UNCI.dcm not available")
    return Path(path)


@pytest.fixture(scope="session")
def rg3_file() -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG3_UNCI.dcm")
    if path is None:
        pytest.skip("pydicom-data RG3_UNCI.dcm not available")
    return Path(path)


@pytest.fixture(scope="session")
def make_phantom():
    """``make_phantom(h, w, seed) -> float32 [0, 1]`` chest-like image."""
    return phantom


@pytest.fixture
def phantom_png(tmp_path: Path) -> Path:
    return save_png(phantom(), tmp_path / "frontal.png")


@pytest.fixture
def lateral_png(tmp_path: Path) -> Path:
    """A second image used as the lateral view (content irrelevant: the pipeline must route it to the branch)."""
    return save_png(phantom(300, 280, seed=1)[:, ::-1], tmp_path / "lateral.png")


@pytest.fixture(scope="session")
def rg1_report(tiny_pipeline: Any, rg1_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """ONE full-size end-to-end analysis of the real RG1 with every format (shared: it is the slow one)."""
    from cxrassist.analysis import analyze_paths

    out = tmp_path_factory.mktemp("rg1") / "report"
    report = analyze_paths(rg1_file, None, out, pipeline=tiny_pipeline, formats="json,html,png,dicom")
    return out, report


@pytest.fixture
def copy_to(tmp_path: Path):
    def copy(src: Path, name: str) -> Path:
        dst = tmp_path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst

    return copy
