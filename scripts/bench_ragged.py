"""Ragged vs dense batches at equal total points, printed side by side in one run: inference time of the
canonicalizers alone and of canonicalized PointNet / DGCNN on B clouds of N points as a dense
``(B, N, 3)`` tensor, as a ragged batch of the same clouds (``(B*N, 3)`` + batch vector), and as a ragged
batch of B clouds of different sizes with the same total (N/2 .. 3N/2 points).

    .venv/bin/python scripts/bench_ragged.py [--threads 2] [--batch 32] [--points 1024] [--dgcnn]
"""
from __future__ import annotations

import argparse
import torch

from bench_canonicalizer import timeit  # scripts/ is on the path when this script runs
from pointcanon.nn import CandidateCanonicalizer, CanonicalizedModel, VNCanonicalizer, build_backbone


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dgcnn", action="store_true", help="also canonicalized DGCNN (k=20; slow on a CPU)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b, n = a.batch, a.points
    dense = torch.randn(b, n, 3)
    equal_batch = torch.arange(b).repeat_interleave(n)
    sizes = torch.linspace(n // 2, 3 * n // 2, b).round().long()
    sizes[-1] += b * n - sizes.sum()  # same total
    mixed_batch = torch.arange(b).repeat_interleave(sizes)
    mixed = torch.randn(int(sizes.sum()), 3)
    recipe = dict(local_k=10, normal_k=0, views=2, pooling="max")  # the settings of the figures in docs/results.md
    models = {"candidate canonicalizer": CandidateCanonicalizer("SE3", **recipe),
              "VN canonicalizer": VNCanonicalizer("SE3"),
              "candidate + PointNet": CanonicalizedModel(CandidateCanonicalizer("SE3", **recipe),
                                                         build_backbone("pointnet", 40))}
    if a.dgcnn:
        models["candidate + DGCNN"] = CanonicalizedModel(CandidateCanonicalizer("SE3", **recipe),
                                                         build_backbone("dgcnn", 40))
    print(f"B={b}, N={n} ({b * n:,} points), {a.threads} threads, best of {a.repeats}")
    print(f"{'model':<24}{'dense':>10}{'ragged, equal':>16}{'ratio':>8}{'ragged, mixed':>16}{'ratio':>8}")
    for name, model in models.items():
        model.eval()
        t_dense = timeit(model, dense, a.repeats)
        t_equal = timeit(lambda x: model(x, batch=equal_batch), dense.reshape(-1, 3), a.repeats)
        t_mixed = timeit(lambda x: model(x, batch=mixed_batch), mixed, a.repeats)
        print(f"{name:<24}{t_dense * 1e3:>8.1f}ms{t_equal * 1e3:>14.1f}ms{t_equal / t_dense:>7.2f}x"
              f"{t_mixed * 1e3:>14.1f}ms{t_mixed / t_dense:>7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
