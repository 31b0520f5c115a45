"""The embedded demo: plain vs canonicalized PointNet on the project's synthetic shapes, no download.

Both are trained on upright shapes only and evaluated upright and under random SO(3) rotations;
the canonicalized one must keep its accuracy, the plain one loses it.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .core.io import atomic_write, write_json
from .config import TrainConfig
from .train import accuracy_vs_angle, evaluate, train

ANGLES = list(range(0, 181, 15))


def demo_configs(seed: int = 0, quick: bool = False) -> dict[str, TrainConfig]:
    common = dict(dataset="synthetic", backbone="pointnet", backbone_kwargs={"width": 256, "input_transform": False},
                  num_points=128 if quick else 256, epochs=1 if quick else 5, batch_size=32, lr=2e-3, seed=seed,
                  eval_every=0, train_rotation="none")
    return {"plain": TrainConfig(canonicalizer="none", **common),
            "canonicalized": TrainConfig(canonicalizer="vn", canonicalizer_kwargs={"num_points": 128}, **common)}


def _plot(path: Path, curves: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, accs in curves.items():
        ax.plot(ANGLES, [100 * a for a in accs], marker="o", label=name)
    ax.set(xlabel="rotation of the test shapes about x (degrees)", ylabel="accuracy (%)", ylim=(0, 100),
           title="Synthetic shapes, trained upright")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def run_demo(out: str | Path = "runs/demo", *, seed: int = 0, quick: bool = False, log=print) -> dict:
    """Train both models, print the table, write ``metrics.json`` and ``accuracy_vs_angle.png`` to ``out``."""
    from .datasets import SyntheticShapes

    out = Path(out)
    t0 = time.time()
    configs = demo_configs(seed, quick)
    n = configs["plain"].num_points
    train_set = SyntheticShapes("train", num_points=n, seed=seed, num_samples=96 if quick else 960)
    test_set = SyntheticShapes("test", num_points=n, seed=seed, num_samples=48 if quick else 400)
    log(f"train: {train_set}\ntest:  {test_set}")
    metrics, curves = {}, {}
    for name, cfg in configs.items():
        log(f"training {name} PointNet ({cfg.epochs} epochs, {n} points)")
        torch.manual_seed(seed)
        model, _ = train(cfg, train_set, test_set, log=lambda s: None)
        metrics[name] = {p: evaluate(model, test_set, p, seed=seed)["acc"] for p in ("upright", "SO3")}
        curves[name] = accuracy_vs_angle(model, test_set, ANGLES)
    seconds = round(time.time() - t0, 1)
    log(f"\n{'model':<16}{'upright':>10}{'SO(3)':>10}")
    for name, m in metrics.items():
        log(f"{name:<16}{100 * m['upright']:>9.1f}%{100 * m['SO3']:>9.1f}%")
    log(f"\n{seconds} s; wrote {out / 'metrics.json'} and {out / 'accuracy_vs_angle.png'}")
    write_json(out / "metrics.json", metrics)
    write_json(out / "details.json", {"seconds": seconds, "angles_deg": ANGLES, "accuracy_vs_angle": curves,
                                      "configs": {k: v.__dict__ for k, v in configs.items()}})
    _plot(out / "accuracy_vs_angle.png", curves)
    return metrics
