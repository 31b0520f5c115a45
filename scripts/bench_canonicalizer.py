"""Cost of the canonicalizers (candidate, VN) beside the backbones they serve, printed side by side in one run:
inference time ratio canonicalized/plain (B=32, N=1024), training-step time ratio, and (``--memory``)
the peak memory of a DGCNN forward at N=8,192, B=8, plain and canonicalized.

    .venv/bin/python scripts/bench_canonicalizer.py [--threads 2] [--batch 32] [--points 1024] [--dgcnn] [--memory]
        [--canonicalizers candidate vn shipped FILE ...] [--hypotheses 1 3]

``--hypotheses K ...``: also the canonicalized model over its K most likely up hypotheses (K backbone
passes at inference; the training step shows one drawn hypothesis per cloud, ``hypothesis_training="sample"``).

Peak memory: each configuration runs in a fresh subprocess; on a CPU the figure is the largest growth of
the resident set size during the forward pass over its size just before (sampled every 2 ms from
``/proc/self/statm``), on a GPU ``torch.cuda.max_memory_allocated``.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import torch

from pointcanon import CanonicalizedModel, VNCanonicalizer, build_backbone
from pointcanon.mesh import load_canonicalizer, load_default_canonicalizer
from pointcanon.nn import CandidateCanonicalizer

CANONICALIZERS = {"candidate": lambda: CandidateCanonicalizer("SE3"), "vn": lambda: VNCanonicalizer("SE3"),
                  "shipped": load_default_canonicalizer}


def make_canonicalizer(spec: str) -> torch.nn.Module:
    """A canonicalizer by name (:data:`CANONICALIZERS`: fresh ones at their defaults, the shipped weights)
    or from a canonicalizer file."""
    return CANONICALIZERS[spec]() if spec in CANONICALIZERS else load_canonicalizer(spec)


def canonicalizer_spec(text: str) -> str:
    if text in CANONICALIZERS or os.path.isfile(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is neither one of {sorted(CANONICALIZERS)} nor a canonicalizer file")


def timeit(fn, x, repeats):
    with torch.no_grad():
        fn(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - t)
    return best


def train_step_time(model, x, y, repeats):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t)
    return best


def peak_memory_child(spec: str) -> None:
    """Run in a subprocess: one no-grad forward of ``spec`` ('plain' or 'canon'); print peak MB as JSON."""
    cfg = json.loads(spec)
    torch.set_num_threads(cfg["threads"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_backbone("dgcnn", 40)
    if cfg["canon"]:
        model = CanonicalizedModel(make_canonicalizer(cfg["canon"]), model)
    model = model.eval().to(device)
    x = torch.randn(cfg["batch"], cfg["points"], 3, device=device)
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page_mb

    before, highest, running = rss_mb(), [0.0], [True]

    def sample():
        while running[0]:
            highest[0] = max(highest[0], rss_mb())
            time.sleep(0.002)

    watcher = threading.Thread(target=sample, daemon=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        watcher.start()
    t = time.perf_counter()
    with torch.no_grad():
        model(x)
    seconds = time.perf_counter() - t
    running[0] = False
    if device == "cpu":
        watcher.join()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else max(highest[0], rss_mb()) - before
    print(json.dumps({"peak_mb": peak, "seconds": seconds, "device": device}))


def peak_memory(canon: str | None, threads: int, batch: int = 8, points: int = 8192) -> dict:
    spec = json.dumps({"canon": canon, "threads": threads, "batch": batch, "points": points})
    out = subprocess.run([sys.executable, __file__, "--_peak-child", spec], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dgcnn", action="store_true", help="also time DGCNN (slow on a CPU)")
    p.add_argument("--memory", action="store_true", help="peak memory of DGCNN at N=8192, B=8 (about a minute on a CPU)")
    p.add_argument("--canonicalizers", nargs="+", type=canonicalizer_spec, default=["candidate", "vn"],
                   help=f"names ({', '.join(CANONICALIZERS)}) or canonicalizer files")
    p.add_argument("--hypotheses", nargs="+", type=int, default=[1],
                   help="time the canonicalized model over each K up hypotheses (K >= 1)")
    p.add_argument("--_peak-child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._peak_child:
        return peak_memory_child(a._peak_child)
    if min(a.hypotheses) < 1:
        p.error(f"--hypotheses must be >= 1, got {a.hypotheses}")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, a.points, 3)
    print(f"B={a.batch} N={a.points} threads={a.threads}; best of {a.repeats}")
    y = torch.randint(0, 40, (a.batch,))
    width = max(22, *(len(k) + 18 for k in a.canonicalizers))
    print(f"{'model':<{width}}{'plain s':>9}{'canon s':>9}{'canon+plain s':>15}{'infer ratio':>13}"
          f"{'train step plain s':>20}{'canon s':>9}{'train ratio':>13}")
    for name in ["pointnet"] + (["dgcnn"] if a.dgcnn else []):
        torch.manual_seed(0)
        backbone = build_backbone(name, 40).eval()
        t_plain = timeit(backbone, x, a.repeats)
        s_plain = train_step_time(backbone, x, y, a.repeats)
        backbone.eval()
        for kind in a.canonicalizers:
            canon = make_canonicalizer(kind).eval()
            t_canon = timeit(canon, x, a.repeats)
            for k in a.hypotheses:
                if k > 1 and not hasattr(canon, "hypotheses"):
                    print(f"{name} + {kind} K={k}: skipped ({type(canon).__name__} has no up hypotheses)")
                    continue
                wrapped = CanonicalizedModel(canon, build_backbone(name, 40), hypotheses=k).eval()
                wrapped.backbone.load_state_dict(backbone.state_dict())
                t_wrapped = timeit(wrapped, x, a.repeats)
                s_wrapped = train_step_time(wrapped, x, y, a.repeats)
                label = f"{name} + {kind}" + (f" K={k}" if k > 1 else "")
                print(f"{label:<{width}}{t_plain:>9.4f}{t_canon:>9.4f}{t_wrapped:>15.4f}{t_wrapped / t_plain:>13.3f}"
                      f"{s_plain:>20.4f}{s_wrapped:>9.4f}{s_wrapped / s_plain:>13.3f}")
    for kind in a.canonicalizers:
        print(f"{kind} canonicalizer parameters: {sum(p.numel() for p in make_canonicalizer(kind).parameters())}")
    if a.memory:
        plain = peak_memory(None, a.threads)
        for kind in a.canonicalizers:
            wrapped = peak_memory(kind, a.threads)
            print(f"DGCNN forward, N=8192, B=8 ({plain['device']}): peak plain {plain['peak_mb']:.0f} MB "
                  f"({plain['seconds']:.1f} s), + {kind} {wrapped['peak_mb']:.0f} MB ({wrapped['seconds']:.1f} s), "
                  f"ratio {wrapped['peak_mb'] / plain['peak_mb']:.3f}")


if __name__ == "__main__":
    main()
