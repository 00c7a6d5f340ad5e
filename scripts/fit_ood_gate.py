"""Fit the out-of-distribution gate (cxrassist.ood) on the triage weights, set its threshold, measure it, write it.

    python scripts/fit_ood_gate.py                       # shipped triage -> src/cxrassist/weights/shipped/ood/
    python scripts/fit_ood_gate.py --weights DIR         # a weights folder with triage/ -> DIR/ood/

Run it again whenever the triage weights change: the gate records their sha256 and the pipeline refuses a gate
fitted on other weights. What it does (a few minutes on 2 CPU cores):
1. pooled triage features of the chest films of ``--data`` (../shared/data), split ``train`` (at most
   ``--per-set`` films per set, a fixed random subset) -> mean + Ledoit-Wolf covariance;
2. the threshold: the smallest distance under which >= 99 % of the ``val`` chest films pass;
3. the rejection table: RG3 (tibia) and every other non-chest image of pydicom / pydicom-data, natural photos
   (scikit-learn's and, when installed, scikit-image's sample images), noise, blank, inverted, lateral views fed as
   frontal, heavily cropped and rotated val films: share refused by the gate alone, and by the whole input path
   (reader + pixel/chest check + gate);
4. writes ``ood/stats.safetensors``, ``ood/gate.json`` (threshold, triage sha256, data, table) and
   ``ood/MODEL_CARD.md``, and prints the table (Markdown) for the README.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cxrassist import ood  # noqa: E402

#: Frontal chest sets of ../shared/data and the manifest column holding the frontal image (bse_jsrt repeats jsrt).
CHEST_SETS: dict[str, str] = {
    "montgomery": "image",
    "shenzhen": "image",
    "jsrt": "image",
    "covid19_gb_seg": "image",
    "nih_cxr14_sample": "image",
    "covid_radiography": "image",
    "rsna_lung_opacity": "image",
    "rsna_normal": "image",
    "covid_chestxray": "frontal",
}
EFFECTIVE_SIZE = 224
PASS_FRACTION = 0.99
#: The layers read and their pooling: the last block's mean (content). An early block's mean + std (texture) caught
#: noise and blank images (which the pixel checks refuse anyway) but also refused real DICOM chest films, whose
#: texture differs from the 8-bit PNG/JPEG training sets (pydicom-data's RG1: 2.44 against a threshold of 2.31).
LAYERS: tuple[tuple[str, str], ...] = (("norm5", "mean"),)


def chest_files(data: Path, split: str, per_set: int | None, seed: int = 0) -> list[tuple[str, Path]]:
    """(set, path) of the frontal films of one split; at most ``per_set`` per set (a fixed random subset)."""
    out: list[tuple[str, Path]] = []
    for name, column in CHEST_SETS.items():
        manifest = data / name / "manifest.csv"
        if not manifest.is_file():
            continue
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("split") == split and r.get(column)]
        rows.sort(key=lambda r: r[column])
        random.Random(seed).shuffle(rows)
        out += [(name, data / name / r[column]) for r in rows[: per_set or None]]
    return out


class Scorer:
    """Pooled features of images (per layer) with the triage model, in batches."""

    def __init__(self, model: Any, gate: ood.OodGate, batch: int = 32) -> None:
        self.model, self.gate, self.batch = model, gate, batch

    def features(self, images: Iterable[np.ndarray]) -> list[np.ndarray]:
        chunks: list[list[np.ndarray]] = []
        planes: list[np.ndarray] = []
        for img in images:
            planes.append(self.gate.planes(img))
            if len(planes) == self.batch:
                chunks.append(self.gate.features(self.model, np.stack(planes)))
                planes = []
        if planes:
            chunks.append(self.gate.features(self.model, np.stack(planes)))
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(self.gate.layers))]

    def plane_features(self, planes: list[np.ndarray] | np.ndarray) -> list[np.ndarray]:
        """Pooled features of planes [1, S, S] already reduced and letterboxed (:meth:`OodGate.planes`)."""
        chunks = [
            self.gate.features(self.model, np.stack(planes[i : i + self.batch]))
            for i in range(0, len(planes), self.batch)
        ]
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(self.gate.layers))]

    def scores(self, images: Iterable[np.ndarray]) -> np.ndarray:
        return self.gate.scores(self.features(images))


def read_pixels(path: Path) -> np.ndarray:
    from cxrassist.io import read_xray

    return read_xray(path).pixels


def progress(items: list[Any], label: str) -> Iterable[Any]:
    t0 = time.time()
    for i, item in enumerate(items):
        if i and i % 500 == 0:
            print(f"  {label}: {i}/{len(items)} ({time.time() - t0:.0f} s)", file=sys.stderr)
        yield item


# ------------------------------------------------------------------------------------------- out-of-distribution
def any_pixels(path: Path) -> np.ndarray | None:
    """Grey pixels in [0, 1] of any image pydicom or Pillow decodes (first frame, channel mean), or None."""
    try:
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"):
            from PIL import Image

            arr = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
        else:
            import pydicom

            ds = pydicom.dcmread(path)
            arr = np.asarray(ds.pixel_array, dtype=np.float64)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            if frames > 1:
                arr = arr[frames // 2]
            if arr.ndim == 3:
                arr = arr.mean(axis=-1)
    except Exception:  # noqa: BLE001 - a test file that does not decode is simply not in the table
        return None
    if arr.ndim != 2 or min(arr.shape) < 32:
        return None
    lo, hi = np.percentile(arr, [0.5, 99.5])
    return np.clip((arr - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)


def pydicom_test_images() -> tuple[list[Path], list[Path]]:
    """(RG3 tibia files, every other non-chest image) shipped with pydicom and pydicom-data, one per distinct image."""
    import pydicom

    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # pydicom-data

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    rg3, others, seen = [], [], set()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.name.startswith("RG1_"):
                continue  # the one chest film
            pixels = any_pixels(path)
            if pixels is None:
                continue
            from cxrassist.preprocess import resize

            key = hashlib.sha1(np.round(resize(pixels, (16, 16)) * 8).astype(np.uint8).tobytes()).hexdigest()
            if key in seen:
                continue  # the same image in another encoding
            seen.add(key)
            (rg3 if path.name.startswith("RG3_") else others).append(path)
    return rg3, others


def pydicom_chest_films() -> list[Path]:
    try:
        import data_store  # pydicom-data

        path = Path(data_store.__file__).parent / "data" / "RG1_UNCI.dcm"
    except ImportError:
        return []
    return [path] if path.is_file() else []


def natural_photos() -> list[np.ndarray]:
    out = []
    try:
        from sklearn.datasets import load_sample_images

        out += [img.mean(axis=-1) / 255.0 for img in load_sample_images().images]
    except Exception:  # noqa: BLE001
        pass
    try:
        import skimage.data as skd

        for name in (
            "astronaut",
            "camera",
            "coffee",
            "chelsea",
            "rocket",
            "moon",
            "page",
            "text",
            "brick",
            "grass",
            "gravel",
            "coins",
            "horse",
            "hubble_deep_field",
            "immunohistochemistry",
            "retina",
            "clock",
        ):
            try:
                img = np.asarray(getattr(skd, name)(), dtype=np.float64)
            except Exception:  # noqa: BLE001 - some need a download
                continue
            img = img.mean(axis=-1) if img.ndim == 3 else img
            out.append((img - img.min()) / max(img.max() - img.min(), 1e-9))
    except ImportError:
        pass
    return [np.asarray(o, dtype=np.float32) for o in out]


def synthetic(n: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    uniform = [rng.random((512, 512)).astype(np.float32) for _ in range(n)]
    smooth = []
    for _ in range(n):
        g = gaussian_filter(rng.standard_normal((512, 512)), sigma=float(rng.uniform(2, 24)))
        smooth.append(((g - g.min()) / max(np.ptp(g), 1e-9)).astype(np.float32))
    blank = [np.full((512, 512), v, np.float32) for v in np.linspace(0, 1, n)]
    return {"noise (uniform)": uniform, "noise (smoothed)": smooth, "blank / constant": blank}


def crop(img: np.ndarray, frac: float, rng: random.Random) -> np.ndarray:
    h, w = img.shape
    ch, cw = max(32, int(h * frac)), max(32, int(w * frac))
    y, x = rng.randrange(0, h - ch + 1), rng.randrange(0, w - cw + 1)
    return img[y : y + ch, x : x + cw]


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    from scipy.ndimage import rotate as nd_rotate

    if degrees % 90 == 0:
        return np.rot90(img, int(degrees // 90)).copy()
    return nd_rotate(img, degrees, reshape=False, order=1, mode="constant", cval=0.0).astype(np.float32)


def load_lung(folder: Path) -> tuple[Any, Any] | None:
    """(model, settings) of the lung model whose mask the pipeline's rotation check reads, None without one."""
    from cxrassist.weights import load_model
    from cxrassist.weights.settings import card_settings

    if not folder.is_dir():
        return None
    model, card = load_model(folder, inference=True)
    return model, card_settings(card)


def lungs_turned(pixels: np.ndarray, lung: tuple[Any, Any] | None) -> bool:
    """The pipeline's rotation check (after the gate) with the lung model ``lung``; False without one."""
    from cxrassist.channels import predict_lung_mask
    from cxrassist.pipeline import lungs_turned as turned
    from cxrassist.postprocess import lung_tilt_deg

    if lung is None:
        return False
    mask = predict_lung_mask(lung[0], lung[1], np.clip(pixels, 0, 1).astype(np.float32))[0]
    return turned(lung_tilt_deg(mask))


def whole_path_refuses(pixels: np.ndarray, gate_refused: bool, lung: tuple[Any, Any] | None) -> bool:
    """Refused by the pixel/chest check (image statistics: these arrays carry no metadata), by the gate or by the
    lungs' rotation check, in the pipeline's order."""
    from cxrassist.io import check_chest
    from cxrassist.types import XRay

    check = check_chest(XRay(pixels=np.clip(pixels, 0, 1).astype(np.float32), source_format="png"))
    return gate_refused or not check.is_chest or check.is_frontal is False or lungs_turned(pixels, lung)


def file_path_refuses(path: Path, gate: ood.OodGate, model: Any, lung: tuple[Any, Any] | None) -> tuple[bool, bool]:
    """(refused by the gate alone, refused by reader + check + gate + lung rotation check) for a file."""
    from cxrassist.errors import InputError
    from cxrassist.io import check_chest, read_xray

    pixels = any_pixels(path)
    gate_refused = pixels is not None and not gate.check(model, pixels).passed
    try:
        xray = read_xray(path)
    except InputError:
        return gate_refused, True
    check = check_chest(xray)
    refused = not check.is_chest or check.is_frontal is False or not gate.check(model, xray.pixels).passed
    return gate_refused, refused or lungs_turned(xray.pixels, lung)


# ------------------------------------------------------------------------------------------------- view head
#: What the view head learns to refuse: transformed copies of train films, cycled in this order (plus the train
#: lateral views). Mild positioning changes (a few degrees, a slightly tight collimation, a mirror image) are
#: positives: they are readable films.
NEGATIVE_KINDS = ("rot90", "rot180", "rot270", "rot_any", "crop", "crop", "invert")


def negative(img: np.ndarray, kind: str, rng: random.Random) -> np.ndarray:
    if kind in ("rot90", "rot180", "rot270"):
        return rotate(img, float(kind[3:]))
    if kind == "rot_any":
        angle = rng.uniform(25, 155) * rng.choice((-1, 1))
        return rotate(img, angle)
    if kind == "crop":
        return crop(img, rng.uniform(0.3, 0.7), rng)
    if kind == "invert":
        return 1.0 - img
    raise ValueError(kind)


def mild(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """A readable variation of a film: rotated by at most 10 degrees, collimated to >= 85 % a side, maybe mirrored,
    another grey-scale rendering (gamma 0.6-1.6, window 90-100 %: DICOM films are processed unlike the PNG sets)."""
    out = rotate(img, rng.uniform(-10, 10)) if rng.random() < 0.7 else img
    if rng.random() < 0.7:
        lo, hi = rng.uniform(0, 0.05), rng.uniform(0.95, 1.0)
        out = np.clip((out - lo) / (hi - lo), 0, 1) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.6:
        out = crop(out, rng.uniform(0.85, 0.97), rng)
    if rng.random() < 0.5:
        out = out[:, ::-1].copy()
    return np.asarray(out, dtype=np.float32)


def choose_c(pos: np.ndarray, neg: np.ndarray, grid: tuple[float, ...] = (0.01, 0.05, 0.2)) -> float:
    """The regularisation with the best 3-fold cross-validated log-loss on the train features (never val)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.concatenate([pos, neg]), np.r_[np.zeros(len(pos)), np.ones(len(neg))]
    best, best_c = -np.inf, grid[0]
    for c in grid:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000))
        score = float(np.mean(cross_val_score(model, x, y, cv=3, scoring="neg_log_loss")))
        print(f"  view head C={c}: cv log-loss {-score:.4f}", file=sys.stderr)
        if score > best:
            best, best_c = score, c
    return best_c


def set_thresholds(d: np.ndarray, v: np.ndarray, view_pass: float = 0.995) -> tuple[float, float]:
    """(distance threshold, view threshold): the view head lets ``view_pass`` of the films through, then the
    distance threshold is the smallest under which >= PASS_FRACTION pass both."""
    t_view = ood.threshold_for(v, view_pass)
    ok_view = v <= t_view
    for t in np.sort(d):
        if np.mean((d <= t) & ok_view) >= PASS_FRACTION:
            return float(t), float(t_view)
    return float(np.max(d)), float(t_view)


def planes_of(gate: ood.OodGate, images: Iterable[np.ndarray]) -> np.ndarray:
    return np.stack([gate.planes(np.clip(np.asarray(img, dtype=np.float32), 0, 1)) for img in images])


# ------------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--weights", type=Path, default=None, help="folder with triage/ (default: the shipped weights)")
    ap.add_argument("--out", type=Path, default=None, help="gate folder (default: <weights>/ood)")
    ap.add_argument("--per-set", type=int, default=800, help="most train films per data set (default 800)")
    ap.add_argument("--negatives", type=int, default=2100, help="transformed train films for the view head")
    ap.add_argument("--transform", choices=ood.TRANSFORMS, default="sqrt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-synthetic", type=int, default=40)
    ap.add_argument("--n-table", type=int, default=200, help="val films transformed for each row of the table")
    ap.add_argument("--val-per-set", type=int, default=None, help="at most this many val films per set (smoke runs)")
    args = ap.parse_args(argv)

    import torch

    from cxrassist.channels import card_input_size
    from cxrassist.evaluation.operating import fold_of
    from cxrassist.pipeline import MAX_LUNG_TILT_DEG, channel_names
    from cxrassist.weights import load_model, shipped_dir

    torch.set_num_threads(args.threads)
    weights = args.weights or shipped_dir()
    out = args.out or weights / ood.GATE_DIR
    model, card = load_model(weights / "triage")
    model.eval()
    lung = load_lung(weights / "lungseg")
    if channel_names(card) != ["radiograph"]:
        raise SystemExit("the gate needs a triage model whose only input channel is the radiograph")
    size = card_input_size(card)
    t0 = time.time()

    probe = ood.OodGate(
        [ood.LayerStats(n, p, np.zeros(1), np.eye(1)) for n, p in LAYERS], 0.0, EFFECTIVE_SIZE, size, args.transform
    )
    scorer = Scorer(model, probe)
    train = chest_files(args.data, "train", args.per_set)
    val = chest_files(args.data, "val", args.val_per_set)
    if not train or not val:
        raise SystemExit(f"no chest films with split train/val under {args.data}")

    # ---- train films, their mild variations (positives) and transformed copies (negatives) for the view head
    rng = random.Random(1)
    neg_idx = set(rng.sample(range(len(train)), min(args.negatives, len(train))))
    mild_idx = set(rng.sample(range(len(train)), min(args.negatives // 3, len(train))))
    pos_planes, mild_planes, neg_planes, neg_kinds = [], [], [], []
    for i, (_, path) in enumerate(progress(train, "train")):
        img = read_pixels(path)
        pos_planes.append(probe.planes(img))
        if i in mild_idx:
            mild_planes.append(probe.planes(mild(img, rng)))
        if i in neg_idx:
            kind = NEGATIVE_KINDS[len(neg_kinds) % len(NEGATIVE_KINDS)]
            neg_planes.append(probe.planes(np.clip(negative(img, kind, rng), 0, 1)))
            neg_kinds.append(kind)
    lat_rows: list[tuple[str, Path]] = []
    lat_manifest = args.data / "covid_chestxray" / "manifest.csv"
    if lat_manifest.is_file():
        with open(lat_manifest, newline="", encoding="utf-8") as fh:
            lat_rows = [
                (r["patient_id"], args.data / "covid_chestxray" / r["lateral"])
                for r in csv.DictReader(fh)
                if r.get("lateral")
            ]
    lat_imgs = [read_pixels(p) for _, p in lat_rows]
    lat_aug = [[img] + [mild(img, rng) for _ in range(7)] for img in lat_imgs]  # 8 views of each lateral
    print(
        f"features of {len(train)} train films, {len(mild_planes)} mild variations, {len(neg_planes)} "
        f"transformed copies, {len(lat_imgs)} laterals x 8 and {len(val)} val films ...",
        file=sys.stderr,
    )
    f_train = scorer.plane_features(pos_planes)
    f_mild = scorer.plane_features(mild_planes)
    f_neg = scorer.plane_features(neg_planes)
    f_lat = [scorer.plane_features(planes_of(probe, views))[0] for views in lat_aug]
    del pos_planes, mild_planes, neg_planes
    f_val = scorer.features(read_pixels(p) for _, p in progress(val, "val"))

    layers, shrinkage = [], {}
    for (name, pool), ft, fv in zip(LAYERS, f_train, f_val, strict=True):
        mean, precision, shrink = ood.fit_statistics(ft)
        layer = ood.LayerStats(name, pool, mean, precision)
        layer.scale = float(np.median(layer.distances(fv)))
        if not layer.scale > 1e-9:
            raise SystemExit(f"layer {name} is constant on the val films: it cannot tell films apart")
        layers.append(layer)
        shrinkage[name] = round(shrink, 5)

    # ---- the view head (layer 0 = norm5): train films + mild variations against transformed copies + laterals
    view_layer = 0
    positives = np.concatenate([f_train[view_layer], f_mild[view_layer]])
    lat_all = np.concatenate(f_lat) if f_lat else np.zeros((0, positives.shape[1]))
    negatives = np.concatenate([f_neg[view_layer], lat_all])
    c = choose_c(positives, negatives)
    view = ood.fit_view_head(positives, negatives, view_layer, c)

    gate = ood.OodGate(layers, 0.0, EFFECTIVE_SIZE, size, args.transform, view=view)
    d_val, v_val = gate.scores(f_val), view.probability(f_val)
    threshold, view.threshold = set_thresholds(d_val, v_val)
    gate.threshold = threshold
    scorer.gate = gate
    # held-out pass rate: thresholds chosen on one half of the val patients, applied to the other half
    folds = np.array([fold_of(str(p)) for _, p in val])
    held = []
    for k in (0, 1):
        td, tv = set_thresholds(d_val[folds == k], v_val[folds == k])
        other = folds != k
        held.append(float(np.mean((d_val[other] <= td) & (v_val[other] <= tv))))
    passed_val = (d_val <= threshold) & (v_val <= view.threshold)

    val_sets = [s for s, _ in val]
    per_set = {}
    for name in dict.fromkeys(val_sets):
        idx = [i for i, s in enumerate(val_sets) if s == name]
        per_set[name] = {"n": len(idx), "passed": round(float(np.mean(passed_val[idx])), 4)}
    print(
        f"threshold {threshold:.3f}, view {view.threshold:.3f} (C={c}); val pass {np.mean(passed_val):.4f}; "
        f"held-out halves {held}",
        file=sys.stderr,
    )

    # ---- rejection table
    rng = random.Random(0)
    rows: list[dict[str, Any]] = []

    def add_row(what: str, images: list[np.ndarray], verdicts: list[ood.OodResult], target: str) -> None:
        refused = [not v.passed for v in verdicts]
        whole = [whole_path_refuses(img, r, lung) for img, r in zip(images, refused, strict=True)]
        rows.append(
            {
                "input": what,
                "n": len(images),
                "gate_refused": round(float(np.mean(refused)), 4),
                "refused": round(float(np.mean(whole)), 4),
                "median_score": round(float(np.median([v.score for v in verdicts])), 2),
                "median_view": round(float(np.median([v.view_score for v in verdicts])), 3),
                "target": target,
            }
        )

    def add_arrays(what: str, images: list[np.ndarray], target: str = "refuse") -> None:
        if images:
            add_row(what, images, gate.verdicts(scorer.features(images)), target)

    def add_files(what: str, paths: list[Path]) -> None:
        results = [file_path_refuses(p, gate, model, lung) for p in paths]
        if not results:
            return
        pix = [px for px in (any_pixels(p) for p in paths) if px is not None]
        verdicts = gate.verdicts(scorer.features(pix)) if pix else []
        rows.append(
            {
                "input": what,
                "n": len(results),
                "gate_refused": round(float(np.mean([r[0] for r in results])), 4),
                "refused": round(float(np.mean([r[1] for r in results])), 4),
                "median_score": round(float(np.median([v.score for v in verdicts])), 2) if verdicts else None,
                "median_view": round(float(np.median([v.view_score for v in verdicts])), 3) if verdicts else None,
                "target": "refuse",
            }
        )

    rg3, others = pydicom_test_images()
    add_files("RG3 (tibia CR, pydicom-data)", rg3)
    add_files("other pydicom / pydicom-data images (CT, MR, US, NM, OT, SC)", others)
    add_arrays("natural photos (scikit-learn / scikit-image samples)", natural_photos())
    for what, images in synthetic(args.n_synthetic).items():
        add_arrays(what, images)
    sample = [read_pixels(p) for _, p in rng.sample(val, min(args.n_table, len(val)))]
    add_arrays("val films inverted (negative)", [1.0 - img for img in sample])
    if lat_imgs:  # the view head saw the laterals: score each with a head fitted without its patient's laterals
        patients = sorted({pid for pid, _ in lat_rows})
        verdicts: list[ood.OodResult | None] = [None] * len(lat_imgs)
        for k in range(5):
            held_out = {pid for j, pid in enumerate(patients) if j % 5 == k}
            keep = [f for (pid, _), f in zip(lat_rows, f_lat, strict=True) if pid not in held_out]
            neg_k = np.concatenate([f_neg[view_layer], *keep])
            head_k = ood.fit_view_head(positives, neg_k, view_layer, c)
            head_k.threshold = view.threshold
            gate_k = ood.OodGate(layers, threshold, EFFECTIVE_SIZE, size, args.transform, view=head_k)
            idx = [j for j, (pid, _) in enumerate(lat_rows) if pid in held_out]
            if idx:
                for j, v in zip(idx, gate_k.verdicts([np.stack([f_lat[j][0] for j in idx])]), strict=True):
                    verdicts[j] = v
        add_row(
            "lateral views fed as frontal (covid_chestxray; view head fitted without the patient)",
            lat_imgs,
            [v for v in verdicts if v is not None],
            "refuse",
        )
    add_arrays("val films cropped to 40 % of the side", [crop(img, 0.4, rng) for img in sample])
    add_arrays("val films cropped to 60 % of the side", [crop(img, 0.6, rng) for img in sample])
    add_arrays("val films rotated 90 degrees", [rotate(img, 90) for img in sample])
    add_arrays("val films upside down (180 degrees)", [rotate(img, 180) for img in sample])
    add_arrays("val films rotated 30 degrees", [rotate(img, 30) for img in sample])
    add_arrays("val films rotated 45 degrees", [rotate(img, -45) for img in sample])
    add_arrays("val films rotated 15 degrees (borderline; no target)", [rotate(img, 15) for img in sample], "none")
    add_arrays(
        "val films, mild changes (<= 10 degrees, >= 85 % crop, mirrored; must pass)",
        [mild(img, rng) for img in sample],
        "pass",
    )
    rg1 = list(pydicom_chest_films())
    add_arrays("real DICOM chest film (RG1, pydicom-data; must pass)", [read_pixels(p) for p in rg1], "pass")
    val_refused = [  # what a user sees on the val films: the checks, the gate, then the lungs' rotation check
        whole_path_refuses(read_pixels(p), not ok, lung)
        for (_, p), ok in zip(progress(val, "val, whole path"), passed_val, strict=True)
    ]
    rows.append(
        {
            "input": "val chest films (thresholds set here)",
            "n": int(d_val.size),
            "gate_refused": round(float(np.mean(~passed_val)), 4),
            "refused": round(float(np.mean(val_refused)), 4),
            "median_score": round(float(np.median(d_val)), 2),
            "median_view": round(float(np.median(v_val)), 3),
            "target": "pass",
        }
    )

    gate_card = {
        "name": "cxrassist-ood",
        "version": "1.1.0",
        "method": "largest over layers (" + ", ".join(f"{n} pooled {p}" for n, p in LAYERS) + ") of the "
        "Mahalanobis distance / sqrt(D) of the triage network's pooled features (signed square root) to "
        "the train films' mean under their Ledoit-Wolf covariance, divided by its median on the val films; "
        "plus a view head (logistic regression on the same features) against lateral, rotated, "
        "upside-down, cropped and inverted films",
        "shrinkage": shrinkage,
        "transform": args.transform,
        "effective_size": EFFECTIVE_SIZE,
        "input_size": size,
        "threshold": threshold,
        "threshold_rule": f"view head: lets 99.5 % of the val chest films through; distance: the smallest under "
        f"which >= {PASS_FRACTION:.0%} of the val chest films pass both",
        "view": {
            "C": c,
            "fitted_on": {
                "positives": {"train films": len(f_train[0]), "mild variations": len(f_mild[0])},
                "negatives": {
                    **{k: neg_kinds.count(k) for k in dict.fromkeys(neg_kinds)},
                    "lateral views x 8 (covid_chestxray, all splits)": len(lat_imgs),
                },
            },
            "C_rule": "best 3-fold cross-validated log-loss on the train features",
        },
        "triage": {"name": str(card.name), "version": str(card.version), "sha256": card.sha256},
        "training": {
            "data": {name: sum(1 for s, _ in train if s == name) for name in CHEST_SETS},
            "split": "train",
            "per_set_max": args.per_set,
            "command": "python scripts/fit_ood_gate.py" + (f" --weights {args.weights}" if args.weights else ""),
        },
        "validation": {
            "split": "val",
            "n": int(d_val.size),
            "passed": round(float(np.mean(passed_val)), 4),
            "held_out_passed": round(float(np.mean(held)), 4),
            "held_out_rule": "thresholds chosen on one half of the val films (by patient hash), pass rate "
            "on the other half, mean of the two",
            "per_set": per_set,
        },
        "rejection": rows,
        "lung_tilt_limit_deg": MAX_LUNG_TILT_DEG if lung is not None else None,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.time() - t0, 1),
    }
    written = ood.save_gate(out, layers, gate_card, view)
    (out / "MODEL_CARD.md").write_text(model_card_md(written), encoding="utf-8")
    print(table_md(rows))
    print(f"\nwrote {out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


def table_md(rows: list[dict[str, Any]]) -> str:
    pct: Callable[[Any], str] = lambda v: "—" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    num: Callable[[Any], str] = lambda v: "—" if v is None else str(v)  # noqa: E731
    lines = [
        "| input | n | should be | refused by the gate | refused overall (reader + checks + gate + lungs turned) | "
        "median distance | median view p |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['input']} | {r['n']} | {r.get('target', 'refuse')} | {pct(r['gate_refused'])} | "
            f"{pct(r['refused'])} | {num(r['median_score'])} | {num(r.get('median_view'))} |"
        )
    return "\n".join(lines)


#: Every model card states the terms of the data behind it (the gate's statistics come from the training films).
DATA_TERMS = """
## Data terms

Fitted on the train films of the chest sets of `../shared/data`, which carry non-commercial or research-only terms
(RSNA challenge data: non-commercial research; Shenzhen masks CC BY-NC-SA 4.0; JSRT: research/education, commercial
use needs JSRT's permission; COVID-19 image collections: per-image licences, many CC BY-NC-SA). The statistics are
computed from those films through the triage weights, which carry the same terms: treat them as research-use only.
"""


def model_card_md(card: dict[str, Any]) -> str:
    v = card["validation"]
    per_set = ", ".join(f"{k} {100 * s['passed']:.1f} % of {s['n']}" for k, s in v["per_set"].items())
    train = ", ".join(f"{k} {n}" for k, n in card["training"]["data"].items() if n)
    view = card.get("view") or {}
    view_text = ""
    if view:
        fitted = view["fitted_on"]
        negs = ", ".join(f"{k} {n}" for k, n in fitted["negatives"].items())
        view_text = f"""
**View head.** A logistic regression (C = {view["C"]}, {view["C_rule"]}) on the same features gives the
probability that the film is not a whole, upright frontal chest film; over **{view["threshold"]:.3f}** the study is
refused. Fitted on {fitted["positives"]["train films"]} train films and {fitted["positives"]["mild variations"]} mild
variations of them (rotated <= 10 degrees, collimated to >= 85 %, mirrored) against {negs}.
"""
    return f"""# {card["name"]} {card["version"]} — out-of-distribution gate

**What it is.** {card["method"]}; films reduced to a long side of {card["effective_size"]} px, letterboxed to
{card["input_size"]} px like the triage input. Distance ~1 for a typical training film; over the threshold
**{card["threshold"]:.3f}** a study is refused (`cxr analyze --force` analyses it anyway and marks the report).
{view_text}
**Bound to** triage `{card["triage"]["name"]}` {card["triage"]["version"]}, weights sha256
`{card["triage"]["sha256"]}`. The pipeline refuses this gate with any other triage weights; refit with
`{card["training"]["command"]}`.

**Fitted on** the `train` split of the chest sets of `../shared/data` ({train}; at most
{card["training"]["per_set_max"]} per set).

**Threshold rule:** {card["threshold_rule"]}. Val pass rate {100 * v["passed"]:.1f} % of {v["n"]} films
({per_set}). Held out: {100 * v.get("held_out_passed", v["passed"]):.1f} % ({v.get("held_out_rule", "not measured")}).

**Measured rejection** (`scripts/fit_ood_gate.py`, {card["date"]}; the transformed films are val films, never seen
in fitting; each lateral is scored by a view head fitted without that patient's laterals):

{table_md(card["rejection"])}

"Refused overall" is what a user sees: the reader's refusals (modality, colour, size...), the pixel and chest
checks (these arrays carry no metadata, so the image statistics decide), this gate, then the pipeline's check that
the two lungs are not turned more than {card.get("lung_tilt_limit_deg", "?")} degrees
(`cxrassist.pipeline.MAX_LUNG_TILT_DEG`).
Stats file sha256 `{card["sha256"]}`.
{DATA_TERMS}"""


if __name__ == "__main__":
    raise SystemExit(main())
