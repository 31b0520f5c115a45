"""Strict vs approximately equivariant vs no canonicalizer on real ModelNet40 (issue 7).

Three PointNet classifiers, all trained with random rotations about z (the z-up data's yaw):
  none    PointNet alone;
  strict  VN canonicalizer + PointNet (exactly SE(3)-invariant);
  approx  the same with ``--num-fixed`` learned fixed vectors in the canonicalizer (dropped out with
          probability ``--fixed-dropout`` in training), evaluated with them on and zeroed (``exact``).
Each is evaluated z/z and z/SO(3) on the test set and measured: invariance error of the logits and the
learned-equivariance measure of every layer (pointcanon.core.equivariance) under SO(3) and under z.
Writes OUT/results.json, OUT/summary.md, OUT/approx_equivariance.png and one checkpoint per model
(OUT/<name>/last.pt, readable by ``pointcanon measure --checkpoint``); a rerun resumes at the last
finished epoch of each model and skips finished ones.

    .venv/bin/python scripts/exp_approx_equivariance.py --out runs/exp_approx            # full run
    .venv/bin/python scripts/exp_approx_equivariance.py --out /tmp/approx_tiny --max-train 256 \\
        --max-test 128 --epochs 1 --num-points 256 --width 128 --measure-shapes 8     # smoke test
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pointcanon.core.io import atomic_write, load_checkpoint, save_checkpoint, write_json
from pointcanon.core.groups import apply_rigid, random_rotations
from pointcanon.datasets import build_dataset
from pointcanon.measure import measure_point_model
from pointcanon.train import build_model
from pointcanon.tasks import Classification
from pointcanon.testing import equivariance_error
from pointcanon.train import TrainConfig, evaluate

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "modelnet40_hdf5_1024"
MODELS = ("none", "strict", "approx")
CANONICALIZER = {"none": "none", "strict": "vn", "approx": "vn-approx"}


class Subset(torch.utils.data.Dataset):
    """The first ``n`` shapes of a classification dataset, keeping its ``num_classes`` / ``classes``."""

    task = "cls"

    def __init__(self, dataset, n: int | None):
        self.dataset, self.n = dataset, len(dataset) if n is None else min(n, len(dataset))
        self.num_classes, self.classes = dataset.num_classes, list(getattr(dataset, "classes", []))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.dataset[i]

    def __repr__(self):
        return f"first {self.n} of {self.dataset!r}"


def _gen(*parts: int) -> torch.Generator:
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**62)
    return torch.Generator().manual_seed(seed)


def config_for(name: str, a) -> TrainConfig:
    canon_kwargs = {"hidden": (16, 32, 64), "num_points": min(256, a.num_points)}
    if name == "approx":
        canon_kwargs.update(num_fixed=a.num_fixed, fixed_dropout=a.fixed_dropout)
    return TrainConfig(dataset="modelnet40", data_root=str(a.data_root), backbone="pointnet",
                       backbone_kwargs={"width": a.width}, canonicalizer=CANONICALIZER[name],
                       canonicalizer_kwargs=canon_kwargs if name != "none" else {}, train_rotation="z",
                       epochs=a.epochs, batch_size=a.batch_size, num_points=a.num_points, lr=a.lr, seed=a.seed)


def train_one(name: str, cfg: TrainConfig, train_set, out: Path, log) -> tuple[torch.nn.Module, dict]:
    """Train with random z rotations (no prior); checkpoint after every epoch, resume from it."""
    subset = {"train_shapes": len(train_set)}
    sizes = {"num_classes": train_set.num_classes}
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, sizes)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr * 0.01)
    ckpt = out / name / "last.pt"
    epoch, history, seconds = 0, [], 0.0
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["config"] != dataclasses.asdict(cfg) or state.get("subset") != subset:
            raise ValueError(f"{ckpt} was written with another configuration; remove it or use another --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch, history, seconds = state["epoch"], state["history"], state["train_seconds"]
        if epoch < cfg.epochs:
            log(f"{name}: resuming at epoch {epoch + 1}")
    steps = len(train_set) // cfg.batch_size
    if steps == 0:
        raise ValueError(f"{len(train_set)} training shapes are fewer than one batch of {cfg.batch_size}")
    while epoch < cfg.epochs:
        model.train()
        t0 = time.time()
        order = torch.randperm(len(train_set), generator=_gen(cfg.seed, epoch, 0))
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(steps):
            torch.manual_seed(_gen(cfg.seed, epoch, step, 1).initial_seed())  # dropout, fixed-input dropout
            x, _, y = Classification.collate(train_set, order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
            rots = random_rotations(len(x), "z", generator=_gen(cfg.seed, epoch, step, 2))
            logits = model(apply_rigid(x, rots))
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(-1) == y).sum().item()
            seen += len(y)
        sched.step()
        epoch += 1
        seconds += time.time() - t0
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                        "seconds": round(time.time() - t0, 1)})
        log(f"{name}: {json.dumps(history[-1])}")
        save_checkpoint(ckpt, {"config": dataclasses.asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "epoch": epoch, "history": history, "sizes": sizes,
                               "train_seconds": seconds, "classes": train_set.classes, "subset": subset})
    return model.eval(), {"history": history, "train_seconds": round(seconds, 1)}


def measure_batch(test_set, n: int, num_points: int) -> torch.Tensor:
    """``n`` test shapes spread over the test set (and so over the classes), first ``num_points`` points."""
    idx = torch.linspace(0, len(test_set) - 1, min(n, len(test_set))).round().long().unique()
    x, _, _ = Classification.collate(test_set, idx)
    return x[:, :num_points]


def assess(name: str, model, test_set, a, log) -> dict:
    res = {"acc": {}, "macc": {}}
    for protocol in ("z", "so3"):
        m = evaluate(model, test_set, protocol, batch_size=64, seed=a.seed)
        res["acc"][protocol], res["macc"][protocol] = m["acc"], m["macc"]
    x = measure_batch(test_set, a.measure_shapes, a.measure_points)
    res["measure"] = {g: measure_point_model(model, x, group=g, num_samples=a.measure_samples, seed=a.seed).to_dict()
                      for g in ("SO3", "z")}
    canon = getattr(model, "canonicalizer", None)
    if canon is not None:  # how far the frame is from exactly equivariant (float64, with translations)
        res["canonicalizer_error"] = equivariance_error(canon, x, group="SE3", output="canonicalization", num_samples=4)
    if hasattr(canon, "symmetry_breaking"):
        res["fixed_vector_rms"] = canon.symmetry_breaking()
    so3 = res["measure"]["SO3"]
    log(f"{name}: z/z {100 * res['acc']['z']:.1f}%, z/SO(3) {100 * res['acc']['so3']:.1f}%, logit invariance "
        f"error {so3['output_error']:.2e}, mean measure SO(3) {so3['mean_measure']:.4f}")
    return res


def _backbone_layers(report: dict) -> list[dict]:
    prefix = "backbone."
    rows = [lay for lay in report["layers"] if lay["name"].startswith(prefix)]
    if rows:
        return [{**lay, "name": lay["name"][len(prefix):]} for lay in rows]
    return [lay for lay in report["layers"]]  # the plain model: its layers are the backbone's


def summary_markdown(results: dict) -> str:
    lines = ["| model | z/z acc. | z/SO(3) acc. | logit inv. error (SO(3)) | mean measure SO(3) | same-channel SO(3) "
             "| mean measure z | canonicalizer error |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        so3, z = r["measure"]["SO3"], r["measure"]["z"]
        ce = r.get("canonicalizer_error")
        lines.append(f"| {name} | {100 * r['acc']['z']:.1f} | {100 * r['acc']['so3']:.1f} | {so3['output_error']:.2e} | "
                     f"{so3['mean_measure']:.4f} | {so3['mean_same_channel']:.4f} | {z['mean_measure']:.4f} | "
                     f"{'-' if ce is None else f'{ce:.2e}'} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1, 2.2]})
    names = list(results)
    xs = range(len(names))
    for k, (protocol, label) in enumerate((("z", "z/z"), ("so3", "z/SO(3)"))):
        vals = [100 * results[n]["acc"][protocol] for n in names]
        ax1.bar([x + (k - 0.5) * 0.38 for x in xs], vals, width=0.38, label=label)
    ax1.set_xticks(list(xs), names, rotation=20, fontsize=8)
    ax1.set(ylabel="test accuracy (%)", ylim=(0, 100), title="ModelNet40, trained with z rotations")
    ax1.legend(fontsize=8)
    ax1.grid(axis="y", alpha=0.3)
    ref = None
    for i, n in enumerate(names):
        layers = _backbone_layers(results[n]["measure"]["SO3"])
        ref = ref or [lay["name"] for lay in layers]
        ax2.plot(range(len(layers)), [lay["measure"] for lay in layers], "-", marker="os^vD"[i % 5], ms=6 - i,
                 lw=2.2 - 0.4 * i, color=f"C{i}",
                 label=f"{n} (all layers: {results[n]['measure']['SO3']['mean_measure']:.3f})")
        ax2.plot(range(len(layers)), [lay["same_channel"] for lay in layers], "--", lw=1, color=f"C{i}", alpha=0.5)
    ax2.set_xticks(range(len(ref)), ref, rotation=90, fontsize=6)
    ax2.set(ylabel="learned equivariance under SO(3)", title="backbone layers (solid: best channel, dashed: same channel)")
    ax2.axhline(1, color="grey", lw=0.5)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130))
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--out", type=Path, default=Path("runs/exp_approx"))
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-points", type=int, default=512)
    p.add_argument("--width", type=int, default=1024, help="PointNet feature width")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-fixed", type=int, default=4, help="fixed vectors of the approximate canonicalizer")
    p.add_argument("--fixed-dropout", type=float, default=0.5)
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training shapes")
    p.add_argument("--max-test", type=int, default=None, help="use only the first N test shapes")
    p.add_argument("--measure-shapes", type=int, default=32, help="test shapes for the per-layer measure")
    p.add_argument("--measure-points", type=int, default=512, help="points per shape for the measure")
    p.add_argument("--measure-samples", type=int, default=4, help="random group elements for the measure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.measure_shapes < 2:
        p.error("--measure-shapes must be at least 2")
    log = print
    t0 = time.time()
    train_set = Subset(build_dataset("modelnet40", str(a.data_root), "train", a.num_points), a.max_train)
    test_set = Subset(build_dataset("modelnet40", str(a.data_root), "test", a.num_points), a.max_test)
    log(f"train: {train_set}\ntest:  {test_set}")
    results = {}
    for name in a.models:
        cfg = config_for(name, a)
        model, info = train_one(name, cfg, train_set, a.out, log)
        results[name] = {**assess(name, model, test_set, a, log), **info}
        if name == "approx":  # the same network with its fixed inputs zeroed: exact again
            model.canonicalizer.exact = True
            results["approx (zeroed)"] = {**assess("approx (zeroed)", model, test_set, a, log), **info}
            model.canonicalizer.exact = False
    table = summary_markdown(results)
    meta = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
            "train_shapes": len(train_set), "test_shapes": len(test_set), "seconds": round(time.time() - t0, 1)}
    write_json(a.out / "results.json", {**meta, "results": results})
    atomic_write(a.out / "summary.md", lambda tmp: Path(tmp).write_text(table))
    plot(results, a.out / "approx_equivariance.png",
         f"{len(train_set)} training / {len(test_set)} test shapes, {a.num_points} points, {a.epochs} epochs, "
         f"PointNet width {a.width}; approx: {a.num_fixed} fixed vectors, dropout {a.fixed_dropout}")
    log("\n" + table)
    log(f"wrote {a.out / 'results.json'}, {a.out / 'summary.md'}, {a.out / 'approx_equivariance.png'} "
        f"({meta['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
