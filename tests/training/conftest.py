"""Synthetic datasets in the shared manifest layout (tiny PNGs), and tiny model settings, for the training tests."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from cxrassist.labels import CHESTXRAY14_LABELS

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TINY_SEG = {"width": 1 / 16}
TINY_GAN = {"base_channels": 4}
TINY_DN = {"growth_rate": 4, "block_config": [1, 1, 1, 1], "num_init_features": 8}
NIH = list(CHESTXRAY14_LABELS)  # the 14 NIH label columns, in the manifest's order


def _save(arr01: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(arr01 * 255), 0, 255).astype(np.uint8), mode="L").save(path)
    return str(path.relative_to(path.parents[1]))


def _lungs(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:s, 0:s] / s
    mask = np.zeros((s, s), bool)
    for cx in (0.3 + rng.uniform(-0.03, 0.03), 0.7 + rng.uniform(-0.03, 0.03)):
        mask |= ((xx - cx) / 0.14) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1
    img = 0.7 - 0.45 * mask + rng.normal(0, 0.04, (s, s))
    return np.clip(img, 0, 1), mask


def _write(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def make_seg(root: Path, n_train: int = 12, n_val: int = 4, s: int = 64) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n_train + n_val):
        img, mask = _lungs(rng, s)
        rows.append(
            {
                "id": f"s{i}",
                "image": _save(img, root / "images" / f"s{i}.png"),
                "mask": _save(mask.astype(float), root / "masks" / f"s{i}.png"),
                "label": "normal",
                "patient_id": f"p{i}",
                "split": "train" if i < n_train else "val",
            }
        )
    return _write(root / "manifest.csv", rows)


def make_bone(root: Path, n_train: int = 8, n_val: int = 3, s: int = 64) -> Path:
    rng = np.random.default_rng(2)
    rows = []
    yy, xx = np.mgrid[0:s, 0:s] / s
    for i in range(n_train + n_val):
        soft = 0.3 + 0.3 * yy + rng.normal(0, 0.02, (s, s))
        ribs = 0.15 * (np.sin((yy * 10 + 0.3 * xx + rng.uniform(0, 1)) * 2 * np.pi) > 0.6)
        img = np.clip(soft + ribs, 0, 1)
        rows.append(
            {
                "id": f"b{i}",
                "image": _save(img, root / "images" / f"b{i}.png"),
                "bone_suppressed": _save(np.clip(soft, 0, 1), root / "bone_suppressed" / f"b{i}.png"),
                "patient_id": f"b{i}",
                "split": "train" if i < n_train else "val",
            }
        )
    return _write(root / "manifest.csv", rows)


def make_cls(root: Path, n_train: int = 16, n_val: int = 8, s: int = 64, lateral: bool = False) -> Path:
    """Abnormal cases carry a bright blob; NIH-style columns (Nodule/Mass -> Lung Lesion) plus No Finding."""
    rng = np.random.default_rng(3)
    rows = []
    yy, xx = np.mgrid[0:s, 0:s] / s
    for i in range(n_train + n_val):
        img, _ = _lungs(rng, s)
        sick = i % 2 == 1
        if sick:
            img = np.clip(img + 0.5 * (((xx - 0.3) ** 2 + (yy - 0.45) ** 2) < 0.01), 0, 1)
        row = {
            "id": f"c{i}",
            "image": _save(img, root / "images" / f"c{i}.png"),
            "patient_id": f"c{i}",
            "split": "train" if i < n_train else "val",
        }
        if lateral:
            row["lateral"] = _save(np.flipud(img), root / "lateral" / f"c{i}.png") if i % 3 else ""
        row.update(dict.fromkeys(NIH, 0))
        row["Nodule"] = int(sick)
        row["No Finding"] = int(not sick)
        rows.append(row)
    return _write(root / "manifest.csv", rows)


@pytest.fixture
def seg_manifest(tmp_path: Path) -> Path:
    return make_seg(tmp_path / "seg")


@pytest.fixture
def bone_manifest(tmp_path: Path) -> Path:
    return make_bone(tmp_path / "bone")


@pytest.fixture
def cls_manifest(tmp_path: Path) -> Path:
    return make_cls(tmp_path / "cls")


@pytest.fixture(autouse=True)
def _threads():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Tiny:
    seg = TINY_SEG
    gan = TINY_GAN
    dn = TINY_DN
    make_seg = staticmethod(make_seg)
    make_bone = staticmethod(make_bone)
    make_cls = staticmethod(make_cls)
    shared = SHARED


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Import a maintainer's script (``scripts/<name>.py``, not a package module) by name, for testing its logic."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def tiny() -> type[Tiny]:
    """Tiny model kwargs and the fake-data writers (test modules cannot import conftest)."""
    return Tiny
