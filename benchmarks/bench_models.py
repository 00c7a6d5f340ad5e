"""Model cost table and the CAM resolution trade-off (prints tables; CPU, about a minute).

1. Parameters and GFLOPs (torch.utils.flop_counter, meta device: no compute) of every named configuration at its
   working size (512; the bone generator also at its 256 training crop).
2. CAM resolution: the classifier predicts with the normal 4x4 map at 1.85 GFLOPs; explaining with
   ``dense_levels`` L recomputes the last L transitions without pooling (same weights) -> 4*2**L cells per side.
   For each L: map size, cell size, GFLOPs of the explanation pass, and the localisation of a tiny classifier trained
   on synthetic blob images (median distance CAM peak -> blob centre, hit rate within 2 sigma).

Run: ``.venv/bin/python benchmarks/bench_models.py [--skip-train]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cxrassist.explain import class_activation_maps
from cxrassist.models import create_model, get_model_spec, list_models
from cxrassist.preprocess import normalize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))


def gflops(fn, *args) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 1e9


def cost_table() -> None:
    print(f"{'model':28s} {'params (M)':>10s} {'input':>12s} {'GFLOPs':>8s}")
    for name in list_models():
        with torch.device("meta"):
            model = create_model(name).eval()
            params = sum(p.numel() for p in model.parameters()) / 1e6
            sizes = [256, 512] if get_model_spec(name).task == "bone" else [512]
            for size in sizes:
                x = torch.empty(1, model.in_chans, size, size)
                args = (x, torch.empty(1, model.lateral_in_chans, size, size)) if hasattr(model, "lateral") else (x,)
                print(f"{name:28s} {params:10.2f} {f'{size}x{size}':>12s} {gflops(model, *args):8.2f}")
    with torch.device("meta"):
        from cxrassist.models import create_discriminator

        for name in ("bone-gan", "bone-gan-compact"):
            d = create_discriminator(name)
            x = torch.empty(1, 1, 256, 256)
            p = sum(q.numel() for q in d.parameters()) / 1e6
            print(f"{name + ' (discriminator)':28s} {p:10.2f} {'256x256':>12s} {gflops(d, x, x):8.2f}")


def cam_table(train: bool) -> None:
    with torch.device("meta"):
        full = create_model("dn121-512").eval()
        x = torch.empty(1, 1, 512, 512)
        base = gflops(full, x)
        rows = [(0, 4, base, base)]
        for levels in (1, 2, 3):
            rows.append((levels, 4 * 2**levels, base, gflops(full.forward_features_dense, x, levels)))
    loc = {}
    if train:
        from blobs import blob_batch

        torch.manual_seed(0)
        size, radius = 128, 8.0
        model = create_model(
            "dn121-512", num_classes=1, growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2
        )
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(1)
        for _ in range(150):
            xb, yb, _ = blob_batch(16, size, generator=g, radius=radius)
            loss = F.binary_cross_entropy_with_logits(model(normalize(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        xt, _, centres = blob_batch(
            64, size, generator=torch.Generator().manual_seed(9), radius=radius, positive_fraction=1.0
        )
        for levels in (0, 1, 2):
            out = class_activation_maps(model, normalize(xt), dense_levels=levels)
            up = out.upsampled("frontal", (size, size))[:, 0].flatten(1).argmax(1)
            d = ((up // size - centres[:, 0]) ** 2 + (up % size - centres[:, 1]) ** 2).float().sqrt()
            loc[levels] = (float(d.median()), float((d <= 2 * radius).float().mean()))
        print(f"\n(tiny classifier, 128-px blob images, sigma {radius:.0f} px; its map is 2x2 at L=0)")
    print("\nCAM resolution trade-off, dn121-512 at 512x512 (prediction always uses the 4x4 map)")
    print(
        f"{'dense_levels':>12s} {'map':>7s} {'cell px':>8s} {'predict GF':>10s} {'explain GF':>10s} "
        f"{'blob median px':>14s} {'hit@2sigma':>10s}"
    )
    for levels, side, pred, expl in rows:
        med, hit = loc.get(levels, (float("nan"), float("nan")))
        print(f"{levels:12d} {f'{side}x{side}':>7s} {512 // side:8d} {pred:10.2f} {expl:10.2f} {med:14.1f} {hit:10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-train", action="store_true", help="only the FLOPs columns")
    args = parser.parse_args()
    cost_table()
    cam_table(train=not args.skip_train)


if __name__ == "__main__":
    main()
