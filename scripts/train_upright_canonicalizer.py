"""Train the shipped canonicalizer (``pointcanon/weights/upright_modelnet40.pt``): a small SE(3)
VNCanonicalizer trained on upright ModelNet40 with the upright prior alone (the tilt of the up axis;
yaw is free), then scored on the test split by the angle between the predicted up axis and the true up.

    .venv/bin/python scripts/train_upright_canonicalizer.py [--data-root ../shared/data/modelnet40_hdf5_1024]
        [--steps 3000] [--out pointcanon/weights/upright_modelnet40.pt]

The canonicalizer is exactly equivariant, so training on upright shapes is all it needs: any rotated
copy of a shape gets the rotated frame.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch
from tqdm.auto import tqdm

from pointcanon.core import upright_prior
from pointcanon.datasets import ModelNet40HDF5
from pointcanon.mesh import DEFAULT_WEIGHTS, save_canonicalizer
from pointcanon.nn import VNCanonicalizer


def up_angles_deg(canon: VNCanonicalizer, points: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Angle between the canonical up axis and the input's up (z) per shape ``(n,)``, in degrees."""
    canon.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(points), batch):
            frame = canon(points[i:i + batch]).frame  # columns: canonical axes in input coordinates
            out.append(torch.rad2deg(torch.acos(frame[:, 2, 2].clamp(-1, 1))))
    return torch.cat(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data/modelnet40_hdf5_1024")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", default="16,32,64")
    p.add_argument("--num-points", type=int, default=256, help="points the canonicalizer sees")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train = ModelNet40HDF5(a.data_root, "train").points
    test = ModelNet40HDF5(a.data_root, "test").points
    canon = VNCanonicalizer("SE3", hidden=tuple(int(h) for h in a.hidden.split(",")), num_points=a.num_points)
    opt = torch.optim.Adam(canon.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    bar = tqdm(range(a.steps), desc="upright prior")
    for step in bar:
        canon.train()
        idx = torch.randint(0, len(train), (a.batch_size,), generator=g)
        loss = upright_prior(canon(train[idx]).frame, "z").mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    seconds = time.time() - t0
    angles = up_angles_deg(canon, test)
    scores = {"test_shapes": len(test), "up_within_10deg": (angles < 10).double().mean().item(),
              "up_within_5deg": (angles < 5).double().mean().item(),
              "mean_up_angle_deg": angles.mean().item(), "median_up_angle_deg": angles.median().item()}
    info = {"data": "ModelNet40 train split (9,843 upright shapes, 1,024 points, z up)", "prior": "upright",
            "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed, "train_seconds": round(seconds, 1),
            "parameters": sum(p.numel() for p in canon.parameters()), "test": scores,
            "command": "python scripts/train_upright_canonicalizer.py " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))}
    save_canonicalizer(canon.eval(), a.out, info)
    print(f"wrote {a.out}: {info['parameters']} parameters, {seconds:.0f} s")
    print(f"ModelNet40 test ({len(test)} shapes): up axis within 10 deg {100 * scores['up_within_10deg']:.1f}%, "
          f"within 5 deg {100 * scores['up_within_5deg']:.1f}%, mean {scores['mean_up_angle_deg']:.1f} deg, "
          f"median {scores['median_up_angle_deg']:.1f} deg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
