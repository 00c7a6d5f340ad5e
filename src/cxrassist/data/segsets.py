"""Official folder layouts of the lung-mask and bone-suppression sets -> records (no official split: pass one to
:func:`cxrassist.data.splits.patient_split`; each of these sets has one image per patient).

* Montgomery: ``CXR_png/MCUCXR_0001_0.png`` + ``ManualMask/{leftMask,rightMask}/<same name>`` (suffix _1 = TB).
* Shenzhen: ``CXR_png/CHNCXR_0001_0.png`` + a mask folder with ``<name>_mask.png`` (Kaggle shcxr-lung-mask).
* JSRT: images converted to PNG (the raw ``.IMG`` files are not read) + SCR masks ``<scr>/{left lung,right lung}/
  <name>.gif`` (JPCLN = nodule, JPCNN = normal).
* BSE-JSRT: two folders with the same file names, radiographs and their bone-suppressed versions.
Left and right lung masks are united on load (``Record.mask`` may be a tuple of paths).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cxrassist.data.labeling import findings_and_triage
from cxrassist.data.official import index_by_stem
from cxrassist.data.records import Record
from cxrassist.errors import DatasetError


def _records(
    images: dict[str, Path],
    dataset: str,
    *,
    masks: dict[str, tuple[Path, ...]] | None = None,
    suppressed: dict[str, Path] | None = None,
    label_of: Callable[[str], str] | None = None,
) -> list[Record]:
    out = []
    for stem, path in sorted(images.items()):
        label = label_of(stem) if label_of else ""
        findings, abnormal = findings_and_triage({"label": label}) if label else findings_and_triage({})
        m = (masks or {}).get(stem)
        out.append(
            Record(
                id=stem,
                image=path,
                dataset=dataset,
                patient_id=stem,
                mask=(m[0] if m and len(m) == 1 else m) or None,
                bone_suppressed=(suppressed or {}).get(stem),
                findings=findings,
                abnormal=abnormal,
                extra={"label": label} if label else {},
            )
        )
    if not out:
        raise DatasetError(f"no images found for {dataset}")
    return out


def _tb(stem: str) -> str:
    return "tb" if stem.endswith("_1") else "normal"


def load_montgomery(root: str | Path) -> list[Record]:
    root = Path(root)
    images = index_by_stem(root / "CXR_png", (".png",))
    left = index_by_stem(root / "ManualMask" / "leftMask", (".png",))
    right = index_by_stem(root / "ManualMask" / "rightMask", (".png",))
    masks = {s: tuple(p for p in (left.get(s), right.get(s)) if p) for s in images if s in left or s in right}
    return _records(images, "montgomery", masks=masks, label_of=_tb)


def load_shenzhen(root: str | Path, mask_dir: str | Path | None = None) -> list[Record]:
    root = Path(root)
    images = index_by_stem(root / "CXR_png" if (root / "CXR_png").is_dir() else root, (".png",))
    masks: dict[str, tuple[Path, ...]] = {}
    if mask_dir:
        for stem, p in index_by_stem(Path(mask_dir), (".png",)).items():
            masks[stem.removesuffix("_mask")] = (p,)
    return _records(images, "shenzhen", masks=masks, label_of=_tb)


def load_jsrt(image_dir: str | Path, scr_masks: str | Path | None = None) -> list[Record]:
    images = index_by_stem(Path(image_dir), (".png",))
    masks = {}
    if scr_masks:
        left = index_by_stem(Path(scr_masks) / "left lung")
        right = index_by_stem(Path(scr_masks) / "right lung")
        masks = {s: tuple(p for p in (left.get(s), right.get(s)) if p) for s in images if s in left or s in right}
    return _records(
        images, "jsrt", masks=masks, label_of=lambda s: "nodule" if s.upper().startswith("JPCLN") else "normal"
    )


def load_bse_jsrt(image_dir: str | Path, suppressed_dir: str | Path) -> list[Record]:
    images = index_by_stem(Path(image_dir), (".png",))
    suppressed = index_by_stem(Path(suppressed_dir), (".png",))
    paired = {s: p for s, p in images.items() if s in suppressed}
    if not paired:
        raise DatasetError(f"no file names shared by {image_dir} and {suppressed_dir}")
    return _records(paired, "bse_jsrt", suppressed=suppressed)
