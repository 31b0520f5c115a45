"""Accuracy/cost curve of a CandidateCanonicalizer over its ``views`` (point subsets whose scores are
averaged), and rewrite the file with the chosen number of views (its ``info`` gets the curve and the
test scores at that setting).

    .venv/bin/python scripts/choose_views.py runs/mn40/canon/upright.pt --views 2 [--threads 1]
"""
import argparse

import torch
from bench_canonicalizer import timeit  # scripts/ is on the path when this script runs

from pointcanon import build_backbone, load_canonicalizer, save_canonicalizer
from pointcanon.measure import UPRIGHT_DATASETS as DATASETS, frame_scores


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("--views", type=int, required=True, help="the number of views to keep in the file")
    p.add_argument("--candidates", default="1,2,4", help="views to measure, comma separated")
    p.add_argument("--dataset", choices=tuple(DATASETS), default="modelnet40")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    reader, root, _ = DATASETS[a.dataset]
    test = reader(root, "test").points
    canon = load_canonicalizer(a.file)
    x = torch.randn(32, 1024, 3)
    backbone = build_backbone("pointnet", num_classes=40).eval()
    t_backbone = timeit(backbone, x, 3)
    curve = []
    for v in sorted({int(s) for s in a.candidates.split(",")} | {a.views}):
        canon.views = v
        s = frame_scores(canon, test)
        t = timeit(canon, x, 3)
        curve.append({"views": v, "seconds_b32_n1024": round(t, 4), "share_of_pointnet": round(t / t_backbone, 3), **s})
        print(f"views {v}: up within 10 deg {100 * s['up_within_10deg']:.1f}%, within 20 deg "
              f"{100 * s['up_within_20deg']:.1f}%, {t:.3f} s per batch (B=32, N=1024) = "
              f"{100 * t / t_backbone:.0f}% of PointNet's {t_backbone:.3f} s", flush=True)
    canon.views = a.views
    info = dict(canon.info)
    info["test"] = next(dict(c) for c in curve if c["views"] == a.views)
    info["views_curve"] = curve
    save_canonicalizer(canon, a.file, info)
    print(f"wrote {a.file} with views={a.views}")


if __name__ == "__main__":
    main()
