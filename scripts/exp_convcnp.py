"""Approximately equivariant neural processes, the seed paper's own setting at CPU size: a 1-D ConvCNP,
strict (translation equivariant) vs approximate (fixed learned inputs on the grid, dropped out in
training) vs non-equivariant (absolute position as an input), on GP tasks that are stationary except for a
localised, position-dependent term (pointcanon.datasets.gp1d). Held-out log-likelihood per target point,
over ``--seeds`` seeds; the approximate model is also scored with its fixed inputs zeroed (exact mode).

    .venv/bin/python scripts/exp_convcnp.py --out runs/convcnp          # table + docs figure, ~15 min on 1 thread

Writes OUT/results.json, prints a markdown table, and plots predictions on one held-out task
(``--figure``, default docs/figures/convcnp.png).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pointcanon.core.io import atomic_write, check_output_dir, write_json
from pointcanon.datasets.gp1d import sample_tasks
from pointcanon.nn.convcnp import ConvCNP1d, gaussian_log_likelihood

ROWS = [("strict", "strict (translation equivariant)"),
        ("approximate", "approximate (4 fixed inputs, dropout 0.5)"),
        ("approximate, exact mode", "approximate, fixed inputs zeroed"),
        ("non-equivariant", "non-equivariant (position as input)")]


def train(mode: str, seed: int, steps: int, batch: int, progress: bool) -> ConvCNP1d:
    torch.manual_seed(seed)
    model = ConvCNP1d(mode)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(1000 + seed)
    for _ in tqdm(range(steps), desc=f"{mode} seed {seed}", disable=None if progress else True, mininterval=5, leave=False):
        b = sample_tasks(batch, generator=g)
        loss = -gaussian_log_likelihood(b["yt"], *model(b["xc"], b["yc"], b["xt"], b["mask"])).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def score(model: ConvCNP1d, test: dict, near: torch.Tensor) -> dict:
    mean, std = model(test["xc"], test["yc"], test["xt"], test["mask"])
    ll = gaussian_log_likelihood(test["yt"], mean, std)
    near_ll = gaussian_log_likelihood(test["yt"], mean, std, near)
    far_ll = gaussian_log_likelihood(test["yt"], mean, std, ~near)
    return {"ll": ll.mean().item(), "ll_near": near_ll[near.any(1)].mean().item(),
            "ll_far": far_ll[(~near).any(1)].mean().item()}


def plot(models: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = sample_tasks(1, generator=torch.Generator().manual_seed(7), num_context=(15, 15))
    xs = torch.linspace(-2, 2, 400)[None]
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3), sharey=True)
    for ax, (label, model) in zip(axes, models.items()):
        with torch.no_grad():
            mean, std = model(task["xc"], task["yc"], xs)
        ax.plot(xs[0], mean[0], "C0")
        ax.fill_between(xs[0], mean[0] - 2 * std[0], mean[0] + 2 * std[0], color="C0", alpha=0.25)
        ax.scatter(task["xc"][0], task["yc"][0], c="k", s=12, zorder=3, label="context")
        ax.scatter(task["xt"][0], task["yt"][0], c="C3", s=6, alpha=0.6, label="targets")
        ax.axvspan(0.4, 1.6, color="0.9", zorder=0)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle("held-out task; grey: the position-dependent region", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/convcnp")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--test-tasks", type=int, default=1024)
    p.add_argument("--figure", default="docs/figures/convcnp.png")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.seeds < 1 or a.steps < 1 or a.batch < 1 or a.test_tasks < 1:
        p.error("--seeds, --steps, --batch and --test-tasks must be positive")
    out = check_output_dir(a.out, "--out")
    torch.set_num_threads(a.threads)
    test = sample_tasks(a.test_tasks, generator=torch.Generator().manual_seed(123456))
    near = (test["xt"] - 1.0).abs() < 0.6  # the position-dependent region (centre 1, width 0.3)
    results: dict[str, list[dict]] = {name: [] for name, _ in ROWS}
    t0 = time.time()
    kept = {}
    for seed in range(a.seeds):
        for mode in ("strict", "approximate", "non-equivariant"):
            model = train(mode, seed, a.steps, a.batch, sys.stderr.isatty())
            results[mode].append(score(model, test, near))
            if mode == "approximate":
                model.exact = True
                results["approximate, exact mode"].append(score(model, test, near))
                model.exact = False
            if seed == 0:
                kept[mode] = model
    table = ["| model | held-out log-likelihood | near the local term | elsewhere |", "|---|---|---|---|"]
    summary = {}
    for name, label in ROWS:
        cols = []
        for key in ("ll", "ll_near", "ll_far"):
            vals = [r[key] for r in results[name]]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cols.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}")
            summary.setdefault(name, {})[key] = {"mean": statistics.mean(vals), "std": sd, "seeds": vals}
        table.append(f"| {label} | " + " | ".join(cols) + " |")
    text = "\n".join(table)
    print(text)
    print(f"({a.seeds} seeds, mean ± std; {a.steps} steps of {a.batch} tasks; {a.test_tasks} held-out tasks; "
          f"{time.time() - t0:.0f} s)")
    write_json(out / "results.json", {"summary": summary, "steps": a.steps, "batch": a.batch, "seeds": a.seeds,
                                      "test_tasks": a.test_tasks, "seconds": round(time.time() - t0, 1),
                                      "command": "python scripts/exp_convcnp.py " + " ".join(argv or sys.argv[1:])})
    atomic_write(out / "table.md", lambda tmp: Path(tmp).write_text(text + "\n"))
    plot({"strict": kept["strict"], "approximate": kept["approximate"], "non-equivariant": kept["non-equivariant"]},
         Path(a.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
