"""Loaders (generic manifest, official trees), labels policy, splits, augmentation, image loader, config."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrassist.data.augment import AugmentConfig, JointAugment, random_crop
from cxrassist.data.dataset import CxrDataset
from cxrassist.data.labeling import findings_and_triage
from cxrassist.data.manifest import load_manifest, load_manifests
from cxrassist.data.official import load_chestxray14, load_chexpert, load_mimic_cxr
from cxrassist.data.records import Record
from cxrassist.data.segsets import load_bse_jsrt, load_montgomery
from cxrassist.data.splits import check_disjoint, patient_split
from cxrassist.errors import ConfigError, DatasetError
from cxrassist.labels import index_of

CHEX_COLS = [
    "Path",
    "Sex",
    "Age",
    "Frontal/Lateral",
    "AP/PA",
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]


def _png(path: Path, value: int = 100, size: tuple[int, int] = (40, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_manifest_labels_and_paths(cls_manifest: Path, seg_manifest: Path) -> None:
    recs = load_manifests([cls_manifest, seg_manifest])
    assert {r.dataset for r in recs} == {"cls", "seg"}
    sick = next(r for r in recs if r.id == "c1")
    well = next(r for r in recs if r.id == "c0")
    assert sick.image.is_file() and sick.abnormal == 1.0 and sick.findings[index_of("LL")] == 1.0
    assert well.abnormal == 0.0 and well.findings[index_of("LL")] == 0.0
    assert math.isnan(well.findings[index_of("SD")])  # "No Finding" says nothing about devices
    seg = next(r for r in recs if r.dataset == "seg")
    assert seg.mask is not None and seg.mask.is_file() and seg.split in ("train", "val")


def test_label_policy_rows() -> None:
    f, a = findings_and_triage({"label": "tb"})
    assert a == 1.0 and f[index_of("AO")] == 1.0 and math.isnan(f[index_of("CA")])
    f, a = findings_and_triage({"label": "abnormal", "finding": "COVID-19"})
    assert a == 1.0 and f[index_of("PN")] == 1.0
    f, a = findings_and_triage({"No Finding": "0", "Pneumonia": "1"})  # covid_chestxray style
    assert a == 1.0 and f[index_of("PN")] == 1.0
    f, a = findings_and_triage({"No Finding": ""})
    assert math.isnan(a) and all(math.isnan(v) for v in f)


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_manifest(tmp_path / "nope.csv")
    _csv(tmp_path / "m.csv", ["id", "foo"], [["a", "b"]])
    with pytest.raises(DatasetError, match="image"):
        load_manifest(tmp_path / "m.csv")
    _csv(tmp_path / "n.csv", ["image"], [["missing.png"]])
    with pytest.raises(DatasetError, match="missing"):
        load_manifest(tmp_path / "n.csv")


def test_chexpert_tree(tmp_path: Path) -> None:
    root = tmp_path / "CheXpert-v1.0-small"
    rows = []
    for pat, study, view, vals in [
        ("patient00001", "study1", "Frontal", {"Atelectasis": "-1.0", "Cardiomegaly": "-1.0", "Edema": "1.0"}),
        ("patient00001", "study1", "Lateral", {}),
        ("patient00002", "study1", "Frontal", {"No Finding": "1.0"}),
    ]:
        rel = f"CheXpert-v1.0-small/train/{pat}/{study}/view{1 if view == 'Frontal' else 2}_{view.lower()}.jpg"
        _png(tmp_path / rel)
        rows.append(
            [rel, "Male", "60", view, "PA" if view == "Frontal" else ""] + [vals.get(c, "") for c in CHEX_COLS[5:]]
        )
    _csv(root / "train.csv", CHEX_COLS, rows)
    _csv(root / "valid.csv", CHEX_COLS, [])
    recs = load_chexpert(root)
    assert len(recs) == 2  # laterals are attached, not separate cases
    r1 = next(r for r in recs if r.patient_id == "patient00001")
    assert r1.image.is_file() and r1.lateral is not None and r1.lateral.is_file()
    assert r1.findings[index_of("AT")] == 1.0  # U-Ones (default for Atelectasis)
    assert r1.findings[index_of("CA")] == 0.0  # U-Zeros (default for the others)
    assert r1.findings[index_of("PX")] == 0.0  # blank = not mentioned = negative
    assert r1.abnormal == 1.0
    ign = next(r for r in load_chexpert(root, policy="ignore") if r.patient_id == "patient00001")
    assert math.isnan(ign.findings[index_of("AT")]) and math.isnan(ign.findings[index_of("CA")])
    r2 = next(r for r in recs if r.patient_id == "patient00002")
    assert r2.abnormal == 0.0 and r2.lateral is None and r2.split == "train"


def test_mimic_tree(tmp_path: Path) -> None:
    root = tmp_path / "mimic"
    meta = [
        ["d1", "10000032", "50414267", "PA"],
        ["d2", "10000032", "50414267", "LATERAL"],
        ["d3", "11000011", "50000001", "AP"],
    ]
    for d, subj, study, _ in meta:
        _png(root / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}" / f"{d}.jpg")
    _csv(root / "mimic-cxr-2.0.0-metadata.csv", ["dicom_id", "subject_id", "study_id", "ViewPosition"], meta)
    _csv(
        root / "mimic-cxr-2.0.0-split.csv",
        ["dicom_id", "study_id", "subject_id", "split"],
        [
            ["d1", "50414267", "10000032", "train"],
            ["d2", "50414267", "10000032", "train"],
            ["d3", "50000001", "11000011", "validate"],
        ],
    )
    lab = ["subject_id", "study_id", *CHEX_COLS[5:]]
    _csv(
        root / "mimic-cxr-2.0.0-chexpert.csv",
        lab,
        [
            ["10000032", "50414267"] + ["1.0" if c == "Pneumothorax" else "" for c in CHEX_COLS[5:]],
            ["11000011", "50000001"] + ["1.0" if c == "No Finding" else "" for c in CHEX_COLS[5:]],
        ],
    )
    recs = {r.id: r for r in load_mimic_cxr(root)}
    assert set(recs) == {"d1", "d3"}
    assert recs["d1"].lateral is not None and recs["d1"].lateral.name == "d2.jpg" and recs["d1"].image.is_file()
    assert recs["d1"].findings[index_of("PX")] == 1.0 and recs["d1"].abnormal == 1.0
    assert recs["d3"].split == "val" and recs["d3"].abnormal == 0.0 and recs["d3"].view == "AP"


def test_chestxray14_tree(tmp_path: Path) -> None:
    root = tmp_path / "nih"
    rows = []
    for i in range(20):
        name = f"{i:08d}_000.png"
        _png(root / "images_001" / "images" / name)
        labels = "No Finding" if i % 2 else "Cardiomegaly|Effusion"
        rows.append([name, labels, "0", str(i // 2), "50", "M", "PA"])
    _csv(
        root / "Data_Entry_2017_v2020.csv",
        [
            "Image Index",
            "Finding Labels",
            "Follow-up #",
            "Patient ID",
            "Patient Age",
            "Patient Gender",
            "View Position",
        ],
        rows,
    )
    (root / "test_list.txt").write_text("00000000_000.png\n00000001_000.png\n")
    recs = load_chestxray14(root, val_fraction=0.25, seed=3)
    assert len(recs) == 20
    by = {r.id: r for r in recs}
    assert by["00000000_000"].split == "test" and by["00000001_000"].split == "test"
    assert {r.split for r in recs} == {"train", "val", "test"}
    check_disjoint([r for r in recs if r.split != "test"])
    sick = by["00000002_000"]
    assert sick.findings[index_of("CA")] == 1.0 and sick.findings[index_of("PE")] == 1.0 and sick.abnormal == 1.0
    assert by["00000003_000"].abnormal == 0.0
    again = load_chestxray14(root, val_fraction=0.25, seed=3)
    assert [r.split for r in again] == [r.split for r in recs]  # same seed, same split


def test_montgomery_and_bse_trees(tmp_path: Path) -> None:
    root = tmp_path / "MontgomerySet"
    _png(root / "CXR_png" / "MCUCXR_0001_0.png")
    left = np.zeros((40, 48), np.uint8)
    left[5:30, 5:20] = 255
    right = np.zeros((40, 48), np.uint8)
    right[5:30, 28:44] = 255
    (root / "ManualMask" / "leftMask").mkdir(parents=True)
    (root / "ManualMask" / "rightMask").mkdir(parents=True)
    Image.fromarray(left).save(root / "ManualMask" / "leftMask" / "MCUCXR_0001_0.png")
    Image.fromarray(right).save(root / "ManualMask" / "rightMask" / "MCUCXR_0001_0.png")
    _png(root / "CXR_png" / "MCUCXR_0002_1.png")
    recs = load_montgomery(root)
    assert [r.abnormal for r in recs] == [0.0, 1.0]
    from cxrassist.data.images import load_mask

    m = load_mask(recs[0].mask)
    assert m.sum() == (left > 0).sum() + (right > 0).sum()
    ds = CxrDataset([r.with_(split="train") for r in recs], task="segmentation", size=32)
    assert len(ds) == 1 and ds[0]["mask"].sum() > 0
    _png(tmp_path / "bse" / "a" / "JPCLN001.png", 120)
    _png(tmp_path / "bse" / "b" / "JPCLN001.png", 100)
    _png(tmp_path / "bse" / "a" / "JPCLN002.png", 120)
    bse = load_bse_jsrt(tmp_path / "bse" / "a", tmp_path / "bse" / "b")
    assert len(bse) == 1 and bse[0].bone_suppressed is not None
    item = CxrDataset(bse, task="bone", size=32)[0]
    assert torch.allclose(item["bone"][0, 16, 16], torch.tensor(20 / 255), atol=1e-4)


def test_patient_split_is_disjoint_and_seeded() -> None:
    recs = [Record(id=f"r{i}", image=Path(f"/x/{i}.png"), dataset="d", patient_id=f"p{i // 3}") for i in range(60)]
    a = patient_split(recs, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)
    check_disjoint(a)
    counts = {s: sum(r.split == s for r in a) for s in ("train", "val", "test")}
    assert sum(counts.values()) == 60 and 36 <= counts["train"] <= 48 and counts["val"] > 0 and counts["test"] > 0
    splits = [r.split for r in a]
    assert splits == [r.split for r in patient_split(recs, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)]
    assert splits != [r.split for r in patient_split(recs, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=2)]
    state = np.random.get_state()[1].copy()
    patient_split(recs, {"train": 1.0}, seed=5)
    assert np.array_equal(state, np.random.get_state()[1])  # global RNG untouched
    with pytest.raises(ConfigError):
        check_disjoint([recs[0].with_(split="train"), recs[1].with_(split="val")])


def test_augmentation_joint_seeded_and_no_flip() -> None:
    size = 64
    img = torch.zeros(1, size, size)
    img[:, 10:30, 5:20] = 0.8  # an off-centre "left" structure
    mask = (img > 0).float()
    aug = JointAugment(AugmentConfig(level_prob=1.0), size)
    out1 = aug(np.random.default_rng([0, 1, 2]), img, masks=mask)
    out2 = aug(np.random.default_rng([0, 1, 2]), img, masks=mask)
    assert torch.equal(out1["image"], out2["image"]) and torch.equal(out1["masks"], out2["masks"])
    assert set(out1["masks"].unique().tolist()) <= {0.0, 1.0}
    # geometry is shared: the mask still sits where the bright structure went
    inside = out1["image"][out1["masks"] > 0].mean()
    outside = out1["image"][out1["masks"] == 0].mean()
    assert inside > outside + 0.3
    # no left-right flip by default: the structure stays on the image's left half, over many draws
    for seed in range(20):
        m = aug(np.random.default_rng(seed), img, masks=mask)["masks"][0]
        cols = torch.nonzero(m.sum(0)).flatten()
        assert cols.float().mean() < size / 2
    crop = random_crop(np.random.default_rng(0), {"a": img, "b": mask}, 32)
    assert crop["a"].shape == (1, 32, 32) and torch.equal((crop["a"] > 0).float(), crop["b"])


def test_paired_augmentation_keeps_difference_consistent() -> None:
    x = torch.rand(1, 32, 32) * 0.5 + 0.3
    s = (x - 0.1).clamp(0, 1)
    cfg = AugmentConfig(
        level_prob=0.0, rotate_deg=0, scale=(1, 1), ratio=(1, 1), translate=0, contrast=0.2, brightness=0.05
    )
    out = JointAugment(cfg, 32)(np.random.default_rng(7), x, paired=s)
    diff = out["image"] - out["paired"]
    assert torch.allclose(diff, diff.flatten().median() * torch.ones_like(diff), atol=2e-3)  # stays uniform


def test_fast_loader_matches_read_xray(tmp_path: Path) -> None:
    from cxrassist.data.images import load_image01
    from cxrassist.io import read_xray

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (300, 280), dtype=np.uint8)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(arr).save(tmp_path / name, quality=95)
        ours = load_image01(tmp_path / name)
        ref = read_xray(tmp_path / name).pixels
        assert ours.dtype == np.float32 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_config_yaml_and_overrides(tmp_path: Path) -> None:
    from cxrassist.training.config import load_config

    p = tmp_path / "c.yaml"
    p.write_text("task: bone\ndata:\n  manifests: [a.csv]\n  size: 128\noptim.lr: 0.01\n")
    cfg = load_config(p, ["data.batch_size=3", "augment.scale=[0.5, 1.0]", "run.max_steps=null"])
    assert cfg.task == "bone" and cfg.data.size == 128 and cfg.optim.lr == 0.01 and cfg.data.batch_size == 3
    assert cfg.augment.scale == (0.5, 1.0) and cfg.data.manifests == ("a.csv",)
    with pytest.raises(AttributeError):
        cfg.data.size = 3  # frozen
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(p, ["data.sise=3"])
    with pytest.raises(ConfigError, match="integer"):
        load_config(p, ["data.size=big"])
    with pytest.raises(ConfigError, match="task"):
        load_config(p, ["task=detect"])
    # YAML 1.1 reads "1e-3" (no dot) as a string: as --set or in a file it still means the number (the CLI's own
    # help shows --set optim.lr=1e-3)
    assert load_config(p, ["optim.lr=1e-3"]).optim.lr == pytest.approx(1e-3)
    (tmp_path / "e.yaml").write_text("task: triage\ndata:\n  manifests: [a.csv]\noptim:\n  lr: 5e-4\n")
    assert load_config(tmp_path / "e.yaml").optim.lr == pytest.approx(5e-4)
    with pytest.raises(ConfigError, match="number"):
        load_config(p, ["optim.lr=fast"])
    # YAML 1.1 reads off/on as booleans: the documented values of run.amp and model.sync_bn must still work
    assert load_config(p, ["run.amp=off", "model.sync_bn=on"]).run.amp == "off"
    assert load_config(p, ["model.sync_bn=off"]).model.sync_bn == "off"
    with pytest.raises(ConfigError, match=r"run\.amp"):
        load_config(p, ["run.amp=on"])  # "on" is not one of auto/bf16/off: refused by name, not taken as true


def test_exposure_and_detail_augmentation_leaves_masks_and_older_recipes_alone() -> None:
    """Gamma and blur (the heart model's recipe) change the radiograph only; a recipe without them draws exactly the
    random numbers it drew before they existed, so a shipped config still reproduces its weights."""
    from cxrassist.data.augment import sample_params

    base = AugmentConfig()
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    sample_params(base, a)
    b.random(10), b.random(3), b.random(2)  # the draws of the recipe before gamma/blur existed
    assert a.random() == b.random()
    assert sample_params(base, np.random.default_rng(0)).gamma == 1.0

    cfg = AugmentConfig(
        rotate_deg=0,
        translate=0,
        scale=(1, 1),
        ratio=(1, 1),
        brightness=0,
        contrast=0,
        level_prob=0,
        gamma=(0.5, 0.5),
        blur_prob=1.0,
        blur_scale=0.25,
    )
    _, xx = np.mgrid[0:64, 0:64]
    image = torch.from_numpy(((xx // 4) % 2 * 0.8 + 0.1).astype(np.float32))[None]  # fine stripes
    mask = torch.from_numpy((xx < 32).astype(np.float32))[None]
    out = JointAugment(cfg, 64)(np.random.default_rng(0), image, masks=mask)
    assert torch.equal(out["masks"], mask)  # geometry is the identity and masks are never blurred
    plain = JointAugment(AugmentConfig(**{**cfg.__dict__, "blur_prob": 0.0}), 64)(np.random.default_rng(0), image)
    assert float(plain["image"].std()) > 2 * float(out["image"].std())  # the stripes are blurred away
    assert torch.allclose(plain["image"], image.clamp(0, 1) ** 0.5, atol=1e-5)  # gamma 0.5 brightens the film
