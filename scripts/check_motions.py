"""Exactness under many random rigid motions: every (shape, motion) pair must be either flagged degenerate
or have a canonical cloud that moves by at most ``--tol`` of the shape's radius. Prints the counts and
writes them to ``--out`` (JSON); the exit code is 1 if any pair fails unflagged.

    .venv/bin/python scripts/check_motions.py                         # 100 shapes x 10,000 motions, float32
    .venv/bin/python scripts/check_motions.py --shapes 8 --motions 100  # a quick look

Shapes: ``--shapes`` real ModelNet40 test shapes spread over the split (1,024 points, as stored).
Motions: a random rotation (Haar) and a random translation of up to the shape's radius per pair,
reflections too for a canonicalizer with ``group="E3"``. Model: the shipped canonicalizer (or ``--model``),
in ``--dtype`` (default float32, the precision users run). A pair counts as flagged when the
canonicalizer flags the moved cloud or the unmoved one as degenerate (then no equivariance is promised).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from tqdm.auto import tqdm

from pointcanon.core.io import check_output_file, write_json
from pointcanon.core import apply_rigid, random_rigid_motion
from pointcanon.datasets import ModelNet40HDF5
from pointcanon.mesh import DEFAULT_WEIGHTS, load_canonicalizer


def check(canon, shapes: torch.Tensor, motions: int, *, tol: float, chunk: int, seed: int, progress: bool) -> dict:
    """Counts over ``shapes`` ``(S, N, 3)`` x ``motions``: flagged pairs, unflagged failures, worst error."""
    group = canon.group
    gen = torch.Generator().manual_seed(seed)
    flagged = failures = 0
    worst = 0.0
    failed: list[dict] = []
    flagged_shapes = set()
    with torch.no_grad():
        base = canon(shapes)
        radius = base.canonical.norm(dim=-1).amax(-1)  # (S,)
        bar = tqdm(total=len(shapes) * motions, desc="motions", unit="cloud", disable=None if progress else True, mininterval=5)
        for s in range(len(shapes)):
            x = shapes[s:s + 1]
            for start in range(0, motions, chunk):
                n = min(chunk, motions - start)
                q, t = random_rigid_motion(n, group, generator=gen, dtype=shapes.dtype)
                moved = canon(apply_rigid(x.expand(n, -1, -1), q, t * radius[s]))
                err = (moved.canonical - base.canonical[s]).abs().amax((1, 2)) / radius[s]
                flag = moved.degenerate | base.degenerate[s]
                bad = ~flag & ~(err <= tol)
                flagged += int(flag.sum())
                failures += int(bad.sum())
                if flag.any():
                    flagged_shapes.add(s)
                ok = ~flag
                if ok.any():
                    worst = max(worst, float(err[ok].max()))
                for i in bad.nonzero().flatten().tolist()[:3]:
                    if len(failed) < 20:
                        failed.append({"shape": s, "motion": start + i, "error": float(err[i])})
                bar.update(n)
        bar.close()
    return {"pairs": len(shapes) * motions, "flagged_pairs": flagged, "flagged_shapes": len(flagged_shapes),
            "unflagged_failures": failures, "worst_unflagged_error": worst, "first_failures": failed}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_WEIGHTS), help="canonicalizer file (default: the shipped one)")
    p.add_argument("--data-root", default="../shared/data/modelnet40_hdf5_1024")
    p.add_argument("--shapes", type=int, default=100)
    p.add_argument("--motions", type=int, default=10_000)
    p.add_argument("--tol", type=float, default=1e-4, help="largest allowed move, relative to the radius")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--chunk", type=int, default=100, help="moved copies per forward pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="runs/check_motions.json")
    a = p.parse_args(argv)
    if a.shapes < 1 or a.motions < 1 or a.chunk < 1 or not a.tol > 0:
        p.error("--shapes, --motions and --chunk must be positive, --tol > 0")
    check_output_file(a.out, "--out")
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    canon = load_canonicalizer(a.model).to(dtype).eval()
    test = ModelNet40HDF5(a.data_root, "test").points
    idx = torch.linspace(0, len(test) - 1, min(a.shapes, len(test))).round().long()
    t0 = time.time()
    result = check(canon, test[idx].to(dtype), a.motions, tol=a.tol, chunk=a.chunk, seed=a.seed,
                   progress=sys.stderr.isatty())
    result.update({"model": a.model, "group": canon.group, "dtype": a.dtype, "shapes": len(idx), "motions": a.motions,
                   "tol": a.tol, "seconds": round(time.time() - t0, 1),
                   "command": "python scripts/check_motions.py " + " ".join(argv if argv is not None else sys.argv[1:])})
    write_json(a.out, result)
    print(f"{result['pairs']:,} pairs ({len(idx)} shapes x {a.motions:,} motions, {a.dtype}, group {canon.group}): "
          f"{result['unflagged_failures']} unflagged failures (move > {a.tol:g} of the radius), "
          f"{result['flagged_pairs']:,} pairs flagged degenerate ({result['flagged_shapes']} shapes); worst unflagged "
          f"move {result['worst_unflagged_error']:.2e}; {result['seconds']:.0f} s -> {a.out}")
    return 1 if result["unflagged_failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
