"""Inference time of the VN canonicalizer beside the backbones it serves, and the ratios.

    .venv/bin/python scripts/bench_canonicalizer.py [--threads 2] [--batch 32] [--points 1024] [--dgcnn]
"""
import argparse
import time

import torch

from pointcanon import CanonicalizedModel, VNCanonicalizer, build_backbone


def timeit(fn, x, repeats):
    with torch.no_grad():
        fn(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dgcnn", action="store_true", help="also time DGCNN (slow on a CPU)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, a.points, 3)
    canon = VNCanonicalizer("SE3").eval()
    t_canon = timeit(canon, x, a.repeats)
    print(f"B={a.batch} N={a.points} threads={a.threads}; best of {a.repeats}")
    print(f"{'model':<12}{'plain s':>10}{'canon s':>10}{'canon+plain s':>15}{'ratio':>8}")
    for name in ["pointnet"] + (["dgcnn"] if a.dgcnn else []):
        backbone = build_backbone(name, 40).eval()
        t_plain = timeit(backbone, x, a.repeats)
        t_wrapped = timeit(CanonicalizedModel(canon, backbone).eval(), x, a.repeats)
        print(f"{name:<12}{t_plain:>10.4f}{t_canon:>10.4f}{t_wrapped:>15.4f}{t_wrapped / t_plain:>8.3f}")
    print(f"canonicalizer parameters: {sum(p.numel() for p in canon.parameters())}")


if __name__ == "__main__":
    main()
