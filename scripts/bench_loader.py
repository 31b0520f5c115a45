"""Training steps per second with batches built in the training loop (before: ``task.collate`` called
inline, as pointcanon did up to issue 14) and through :func:`pointcanon.loader.batch_loader` (a
DataLoader, after) with 0, 1 and 2 worker processes, printed side by side in one run. Each step is
fetch + rotate + forward + backward + Adam step of a PointNet classifier (T-Net) on B clouds of N points.

Data: the ModelNet40 HDF5 copy in ../shared/data (in memory, so this measures the loader's overhead;
workers pay off when items are expensive, e.g. ``modelnet-off`` sampling meshes while training).

    .venv/bin/python scripts/bench_loader.py [--threads 2] [--steps 15] [--repeats 3] [--data-root DIR]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pointcanon.core.groups import apply_rigid, random_rotations
from pointcanon.datasets import build_dataset
from pointcanon.loader import batch_loader
from pointcanon.nn import build_backbone
from pointcanon.tasks import Classification

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "modelnet40_hdf5_1024"


def run(batches, model, opt, steps: int) -> float:
    """Steps per second over ``steps`` steps after one warm-up step."""
    it = iter(batches)
    t0 = None
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        x, _, y = next(it)
        x = apply_rigid(x, random_rotations(len(x), "z", generator=torch.Generator().manual_seed(i)))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--repeats", type=int, default=3, help="rounds over the variants, in turn; the best round counts")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = build_dataset("modelnet40", str(a.data_root), "train", a.points)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()
    keys = [(i, [order[(i * a.batch + j) % len(data)] for j in range(a.batch)]) for i in range(a.steps + 1)]
    results = {}

    def fresh():
        torch.manual_seed(0)
        model = build_backbone("pointnet", data.num_classes).train()
        return model, torch.optim.Adam(model.parameters(), 1e-3)

    variants = {"before: collate in the loop": None, **{f"after: DataLoader, {w} workers": w for w in (0, 1, 2)}}
    for _ in range(a.repeats):  # in turn, so that a slow spell of a shared machine hits every variant
        for name, workers in variants.items():
            batches = ((Classification.collate(data, torch.tensor(idx)) for _, idx in keys) if workers is None
                       else batch_loader(data, Classification.collate, keys, num_workers=workers))
            results[name] = max(results.get(name, 0.0), run(batches, *fresh(), a.steps))
    base = results["before: collate in the loop"]
    print(f"ModelNet40, PointNet, B={a.batch}, N={a.points}, {a.threads} threads, best of {a.repeats} rounds of "
          f"{a.steps} steps")
    for name, sps in results.items():
        print(f"  {name:<32} {sps:6.2f} steps/s   {sps / base:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
