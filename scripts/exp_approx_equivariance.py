"""Approximate equivariance where the symmetry really is broken: a controlled point-cloud task (issue 16).

Data (:class:`pointcanon.datasets.PosedShapes`): a chair upright / on its side / upside down (three
classes that differ only by a rotation) and five orientation-free objects in random 3D orientations;
every shape is also turned by a random yaw (the nuisance), in training and in testing. The task is
therefore invariant to yaw and only approximately to SO(3).

Models, all PointNet (T-Net) trained the same way (``pointcanon.train.train``, random yaw, no prior):
  plain       PointNet alone: the free end of the dial;
  strict      VN canonicalizer + PointNet: exactly SO(3)-invariant, cannot see the pose classes;
  K=k p=q     the approximate VN canonicalizer with k learned fixed vectors, dropped out with
              probability q in training (the dial: k = 0 is strict; more vectors and less dropout
              break more symmetry); each also evaluated with its fixed vectors zeroed (exact again).
For every model and seed: held-out accuracy (overall, pose classes, free classes) under random yaw and
under random SO(3), and the learned-equivariance measure (Bruintjes et al.) of every layer under SO(3)
and under yaw, on 16 test shapes. Writes OUT/results.json, OUT/summary.md and OUT/approx_equivariance.png;
runs are checkpointed in OUT/<model>/seed<s>/ and a rerun resumes or skips finished ones.

    .venv/bin/python scripts/exp_approx_equivariance.py --out runs/exp_approx --threads 2  # docs/results.md table (~35 min)
    .venv/bin/python scripts/exp_approx_equivariance.py --out /tmp/approx_tiny --epochs 1 --per-class 8 \\
        --test-per-class 4 --seeds 0 --dial 1:0.5 --width 64 --measure-shapes 4             # smoke test
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from pointcanon.core.groups import apply_rigid, random_rotations
from pointcanon.core.io import atomic_write, write_json
from pointcanon.datasets import PosedShapes
from pointcanon.measure import measure_point_model
from pointcanon.config import TrainConfig
from pointcanon.train import train


def parse_dial(text: str) -> tuple[int, float]:
    try:
        k, p = text.split(":")
        k, p = int(k), float(p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a dial point is NUM_FIXED:DROPOUT (e.g. 1:0.5), got {text!r}") from None
    if k < 1 or not 0 <= p < 1:
        raise argparse.ArgumentTypeError(f"need NUM_FIXED >= 1 and 0 <= DROPOUT < 1, got {text!r}")
    return k, p


def model_specs(dial) -> dict[str, tuple[str, dict]]:
    """name -> (canonicalizer, canonicalizer kwargs), from the free end to the exact one."""
    specs = {"plain": ("none", {})}
    for k, p in sorted(dial, key=lambda kp: (-kp[0], kp[1])):
        specs[f"K={k} p={p:g}"] = ("vn-approx", {"num_fixed": k, "fixed_dropout": p})
    specs["strict"] = ("vn", {})
    return specs


@torch.no_grad()
def accuracy(model, test_set, protocol: str, seed: int) -> dict:
    """Accuracy over all / pose / free classes, each test shape turned by its own seeded rotation."""
    model.eval()
    rots = random_rotations(len(test_set), protocol, generator=torch.Generator().manual_seed(10_007 + seed))
    pred = torch.cat([model(apply_rigid(test_set.points[i:i + 64], rots[i:i + 64])).argmax(-1)
                      for i in range(0, len(test_set), 64)])
    ok = (pred == test_set.labels).float()
    posed = torch.isin(test_set.labels, torch.tensor(test_set.posed_classes))
    return {"all": ok.mean().item(), "pose": ok[posed].mean().item(), "free": ok[~posed].mean().item()}


def measure(model, x: torch.Tensor, a, seed: int) -> dict:
    out = {}
    for g in ("SO3", "z"):
        rep = measure_point_model(model, x, group=g, num_samples=a.measure_samples, seed=seed).to_dict()
        canon = [lay["measure"] for lay in rep["layers"] if lay["name"].startswith("canonicalizer.")]
        out[g] = {"output_error": rep["output_error"], "mean_measure": rep["mean_measure"],
                  "canonicalizer_measure": statistics.fmean(canon) if canon else None,
                  "layers": [{"name": lay["name"], "measure": lay["measure"]} for lay in rep["layers"]]}
    return out


def fixed_vector_tilt(canon) -> float | None:
    """Angle (degrees) between z and the longest learned fixed vector, folded to [0, 90]."""
    fixed = getattr(canon, "fixed", None)
    if fixed is None:
        return None
    v = fixed.vectors.detach().reshape(-1, 3).double()
    u = v[v.norm(dim=-1).argmax()]
    return math.degrees(math.acos(min(1.0, abs(u[2].item()) / u.norm().item())))


def run_one(name: str, spec, seed: int, data, a, log) -> dict:
    canon, kwargs = spec
    cfg = TrainConfig(dataset="posed", backbone="pointnet", backbone_kwargs={"width": a.width}, canonicalizer=canon,
                      canonicalizer_kwargs=dict(kwargs), train_rotation="z", epochs=a.epochs,
                      batch_size=a.batch_size, num_points=a.num_points, lr=a.lr, seed=seed, eval_every=0)
    out = a.out / name.replace("=", "").replace(" ", "_") / f"seed{seed}"
    t0 = time.time()
    model, history = train(cfg, data["train"], out=out, resume=(out / "last.pt").exists(), progress=a.progress,
                           log=lambda *_: None)
    model.eval()
    res = {"train_seconds": round(time.time() - t0, 1), "final_train_loss": history[-1]["train_loss"],
           "z": accuracy(model, data["test"], "z", seed), "so3": accuracy(model, data["test"], "SO3", seed),
           "measure": measure(model, data["measure"], a, seed)}
    if canon == "vn-approx":
        res["fixed_vector_tilt_deg"] = fixed_vector_tilt(model.canonicalizer)
        model.canonicalizer.exact = True
        res["zeroed"] = {"z": accuracy(model, data["test"], "z", seed)}
        res["zeroed"]["canonicalizer_error_SO3"] = measure(model, data["measure"], a, seed)["SO3"]["output_error"]
        model.canonicalizer.exact = False
    log(f"{name} seed {seed}: yaw acc {100 * res['z']['all']:.1f} (pose {100 * res['z']['pose']:.1f}, free "
        f"{100 * res['z']['free']:.1f}), SO(3) acc {100 * res['so3']['all']:.1f}, E_SO3 "
        f"{res['measure']['SO3']['mean_measure']:.3f}, E_z {res['measure']['z']['mean_measure']:.3f} "
        f"({res['train_seconds']} s)")
    return res


def _ms(values) -> str:
    values = [100 * v for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {sd:.1f}"


def _m(values, fmt="{:.3f}") -> str:
    values = [v for v in values if v is not None]
    return fmt.format(statistics.fmean(values)) if values else "–"


def summary_markdown(results: dict) -> str:
    lines = ["| model | held-out acc. (yaw) | pose classes | free classes | acc. under SO(3) | fixed inputs zeroed "
             "| E canonicalizer SO(3) | E canonicalizer yaw | E all layers SO(3) | E all layers yaw "
             "| fixed vector to z |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        runs = list(runs.values())
        col = lambda *keys: [_dig(r, keys) for r in runs]  # noqa: E731
        zeroed = _ms(col("zeroed", "z", "all")) if "zeroed" in runs[0] else "–"
        lines.append(f"| {name} | {_ms(col('z', 'all'))} | {_ms(col('z', 'pose'))} | {_ms(col('z', 'free'))} | "
                     f"{_ms(col('so3', 'all'))} | {zeroed} | {_m(col('measure', 'SO3', 'canonicalizer_measure'))} | "
                     f"{_m(col('measure', 'z', 'canonicalizer_measure'))} | {_m(col('measure', 'SO3', 'mean_measure'))} | "
                     f"{_m(col('measure', 'z', 'mean_measure'))} | {_m(col('fixed_vector_tilt_deg'), '{:.0f}°')} |")
    return "\n".join(lines) + "\n"


def _dig(d, keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.2, 1.6]})
    for k, (key, label) in enumerate((("all", "all classes"), ("pose", "pose classes"), ("free", "free classes"))):
        vals = [[100 * r["z"][key] for r in results[n].values()] for n in names]
        xs = [i + (k - 1) * 0.27 for i in range(len(names))]
        ax1.bar(xs, [statistics.fmean(v) for v in vals], width=0.27, label=label,
                yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in vals], capsize=2)
    ax1.set_xticks(range(len(names)), names, rotation=25, fontsize=8)
    ax1.set(ylabel="held-out accuracy under random yaw (%)", ylim=(0, 100), title="free  ←  dial  →  exact")
    ax1.legend(fontsize=8, loc="lower left")
    ax1.grid(axis="y", alpha=0.3)
    for i, n in enumerate(names):
        first = next(iter(results[n].values()))["measure"]
        for g, style in (("SO3", "-"), ("z", ":")):  # the PointNet's layers (the same in every model)
            layers = [lay for lay in first[g]["layers"]
                      if not lay["name"].startswith("canonicalizer") and lay["name"] != "backbone"]
            ax2.plot(range(len(layers)), [lay["measure"] for lay in layers], style, color=f"C{i}", lw=1.6,
                     marker="o" if g == "SO3" else None, ms=3, label=f"{n} ({'SO(3)' if g == 'SO3' else 'yaw'})")
    ax2.set(xlabel="PointNet layer (forward order; the canonicalizer's mean E is in the table)",
            ylabel="learned equivariance E", title="per-layer measure, first seed (solid: SO(3), dotted: yaw)")
    ax2.axhline(1, color="grey", lw=0.5)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=6, ncol=2, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/exp_approx"))
    p.add_argument("--dial", nargs="+", type=parse_dial, default=[(16, 0.0), (4, 0.0), (1, 0.0), (1, 0.5)],
                   metavar="K:P", help="approximate models: number of fixed vectors and their training dropout")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--per-class", type=int, default=16, help="training shapes per class")
    p.add_argument("--test-per-class", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-points", type=int, default=256)
    p.add_argument("--width", type=int, default=256, help="PointNet feature width")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--measure-shapes", type=int, default=16)
    p.add_argument("--measure-samples", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--progress", action="store_true", help="progress bars while training")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.measure_shapes < 2:
        p.error("--measure-shapes must be at least 2")
    t0 = time.time()
    test = PosedShapes("test", a.num_points, a.test_per_class, seed=1)
    idx = torch.linspace(0, len(test) - 1, min(a.measure_shapes, len(test))).round().long().unique()
    data = {"train": PosedShapes("train", a.num_points, a.per_class, seed=0), "test": test,
            "measure": test.points[idx]}
    print(f"train: {data['train']}\ntest:  {test}")
    results: dict = {}
    for name, spec in model_specs(a.dial).items():
        results[name] = {str(s): run_one(name, spec, s, data, a, print) for s in a.seeds}
    table = summary_markdown(results)
    meta = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
            "classes": data["train"].classes, "train_shapes": len(data["train"]), "test_shapes": len(test),
            "seconds": round(time.time() - t0, 1)}
    write_json(a.out / "results.json", {**meta, "results": results})
    atomic_write(a.out / "summary.md", lambda tmp: Path(tmp).write_text(table))
    plot(results, a.out / "approx_equivariance.png",
         f"PosedShapes: {len(data['train'])} training / {len(test)} test shapes, {a.num_points} points, {a.epochs} "
         f"epochs, PointNet width {a.width}, seeds {a.seeds}; mean ± std over seeds")
    print("\n" + table)
    print(f"wrote {a.out / 'results.json'}, {a.out / 'summary.md'}, {a.out / 'approx_equivariance.png'} "
          f"({meta['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
