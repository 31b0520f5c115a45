"""Training throughput of 1 process vs 2 processes (torchrun, gloo) on this machine, same global batch.

    .venv/bin/python scripts/bench_ddp.py [--epochs 2] [--num-samples 960] [--batch-size 32] [--num-points 256]

Runs ``pointcanon train`` on the synthetic set three ways: 1 process x 2 threads, 1 process x 1 thread,
and ``torchrun --nproc_per_node 2`` x 1 thread each (global batch = --batch-size, split over ranks), and
prints shapes per second of the last epoch (the first pays start-up costs) and the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(procs: int, threads: int, a, out: Path) -> float:
    train = ["--threads", str(threads), "train", "--dataset", "synthetic", "--canonicalizer", a.canonicalizer, "--epochs", str(a.epochs),
             "--batch-size", str(a.batch_size), "--num-points", str(a.num_points), "--max-shapes", str(a.num_samples),
             "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if procs == 1:
        cmd = [sys.executable, "-m", "pointcanon.cli"] + train
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_addr",
               "127.0.0.1", "--master_port", str(_free_port()), "-m", "pointcanon.cli"] + train
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = [r for r in rows if "seconds" in r][-1]
    steps = a.num_samples // a.batch_size
    return steps * a.batch_size / last["seconds"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--num-samples", type=int, default=960)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-points", type=int, default=256)
    p.add_argument("--canonicalizer", default="vn", choices=("none", "vn"))
    a = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, procs, threads in [("1 proc x 2 threads", 1, 2), ("1 proc x 1 thread", 1, 1),
                                     ("2 procs x 1 thread (DDP)", 2, 1)]:
            results[name] = run(procs, threads, a, Path(tmp) / name.replace(" ", "_"))
            print(f"{name:<28}{results[name]:>10.1f} shapes/s", flush=True)
    base = results["1 proc x 2 threads"]
    print(f"ratio DDP / 1 proc x 2 threads: {results['2 procs x 1 thread (DDP)'] / base:.2f}; "
          f"DDP / 1 proc x 1 thread: {results['2 procs x 1 thread (DDP)'] / results['1 proc x 1 thread']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
