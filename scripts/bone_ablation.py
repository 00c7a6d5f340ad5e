"""The bone generator ablation of issue 13: train each variant, evaluate it on bse_jsrt val, print the table.

    python scripts/bone_ablation.py run [VARIANT ...]     # train (resumable) + evaluate, one after the other
    python scripts/bone_ablation.py table                 # the markdown table of what has been evaluated

Every variant is configs/bone_ablation/base.yaml (the recipe of card 1.0.0) plus the --set overrides below (same
seed, same number of steps, 128-px crops of the 512-px pairs, from scratch): `residual`, `recon`, `full` add one
change each; `no-gan`, `no-gan-sigmoid` take the discriminator out; `no-sa-sn`, `no-fm-ttur-ms` take parts out of
the 1.0.0 GAN. Each row is the best of the validations within the steps. Evaluation is `cxr evaluate bone` on the
val split (the figures of a model card). Runs live in runs/bone-abl-<variant>/ (ignored by git). The shipped 2.0.0
is a warm start from 1.0.0 (configs/shipped/bone.yaml), not one of these rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BASE = "configs/bone_ablation/base.yaml"
MANIFEST = "../shared/data/bse_jsrt/manifest.csv"
RECON = ["loss.l1_weight=1000", "loss.grad_weight=1000"]
AUG = [
    "augment.hflip=true",
    "augment.rotate_deg=8",
    "augment.scale=[0.7,1.0]",
    "augment.level_prob=0.5",
    "augment.contrast=0.2",
]
FULL = ["model.kwargs.output=residual", *RECON, *AUG]
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "v1": ("recipe of card 1.0.0 (sigmoid head, L1x100, SN, SA, TTUR, 2-scale D + FM)", []),
    "residual": ("+ residual bone layer (linear head from 0)", ["model.kwargs.output=residual"]),
    "recon": ("+ L1x1000 and gradient L1x1000", ["model.kwargs.output=residual", *RECON]),
    "full": ("+ augmentation (h-flip, rot 8, scale 0.7, window 50 %, contrast 0.2) = full recipe", FULL),
    "no-gan": (
        "full recipe without D (no adversarial, no feature matching)",
        [*FULL, "loss.adv_weight=0", "loss.fm_weight=0"],
    ),
    "no-gan-sigmoid": (
        "no-gan with the sigmoid head of card 1.0.0 (what the residual head buys without D)",
        [*FULL, "model.kwargs.output=sigmoid", "loss.adv_weight=0", "loss.fm_weight=0"],
    ),
    "no-sa-sn": (
        "1.0.0 recipe without self-attention and spectral norm in G",
        ["model.kwargs.attention=false", "model.kwargs.spectral=false"],
    ),
    "no-fm-ttur-ms": (
        "1.0.0 recipe with a 1-scale D, no feature matching, one learning rate",
        ["model.discriminator_kwargs.num_scales=1", "loss.fm_weight=0", "optim.lr_d=2.0e-4"],
    ),
}


def run_dir(variant: str) -> Path:
    return Path("runs") / f"bone-abl-{variant}"


def run(variant: str) -> None:
    name = f"bone-abl-{variant}"
    sets = [a for s in VARIANTS[variant][1] for a in ("--set", s)]
    cmd = [sys.executable, "-m", "cxrassist.cli", "train", "bone", "--config", BASE, "--name", name, *sets]
    if (run_dir(variant) / "checkpoints" / "last.pt").is_file():
        cmd.append("--resume")
    subprocess.run(cmd, check=True)
    out = run_dir(variant) / "eval_val.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cxrassist.cli",
            "evaluate",
            "bone",
            "--manifest",
            MANIFEST,
            "--weights",
            str(run_dir(variant) / "export" / "cxrassist-bone"),
            "--json",
            str(out),
        ],
        check=True,
    )


def table() -> str:
    lines = [
        "| variant | what | soft-tissue PSNR over identity (dB) | suppression ratio | bone SSIM |",
        "|---|---|---|---|---|",
    ]
    for variant, (what, _) in VARIANTS.items():
        path = run_dir(variant) / "eval_val.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        lines.append(
            f"| {variant} | {what} | {m['psnr'] - m['identity_psnr']:+.2f} | "
            f"{m['bone_suppression_ratio']:.3f} | {m['bone_ssim']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("run", "table"):
        raise SystemExit(__doc__)
    if argv[0] == "run":
        unknown = [v for v in argv[1:] if v not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
        for variant in argv[1:] or list(VARIANTS):
            run(variant)
    print(table())


if __name__ == "__main__":
    main(sys.argv[1:])
