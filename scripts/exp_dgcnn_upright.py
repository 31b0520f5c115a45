"""A DGCNN trained upright with the standard ModelNet40 recipe (scaling and translation, no rotation), then
adapted with a canonicalizer so that it works in any pose (issue "2 of 4", acceptance item 4).

    .venv/bin/python scripts/exp_dgcnn_upright.py runs/dgcnn_upright            # GPU: 100 epochs, 1,024 points
    .venv/bin/python scripts/exp_dgcnn_upright.py runs/dgcnn_upright --epochs 250 --seeds 0 1 2  # the paper's length
    .venv/bin/python scripts/exp_dgcnn_upright.py /tmp/smoke --smoke --canonicalizer upright  # CPU, ~40 shapes

For each seed, three runs of the ``pointcanon`` command (OUT/seedS/...):
  1. ``plain``: ``train --backbone dgcnn --backbone.k K --canonicalizer none --train-rotation none --augment
     scale-shift`` (Adam, cosine schedule; the published recipe uses SGD for 250 epochs);
  2. ``frozen``: ``adapt --canonicalizer-weights W --freeze-canonicalizer --epochs 0`` (nothing trained: the
     canonicalizer W in front of the plain backbone);
  3. ``finetuned``: the same, backbone fine-tuned (``--finetune-backbone --backbone-lr``) for a few epochs with
     the plain run's augmentation.
Each run evaluates itself under every rotation protocol (upright, z, SO3) on the device it trained on (its
``eval.json``; ``pointcanon eval`` would run on the CPU). Then the inference time of each model is measured
on one batch of test shapes, and OUT/summary.json (every row, per seed and the mean) and OUT/table.md (printed)
are written. Every row is one backbone pass per shape. OUT must be new (or an empty folder): nothing is
overwritten and a second run into it is refused (exit 2) before any work.

W (``--canonicalizer``) is a canonicalizer file or a shipped name: ``full`` (default; up axis and a learned front,
for a backbone trained without rotations) or ``upright`` (up axis; yaw from its candidates). ``--smoke``: a CPU check of the whole pipeline on ``--max-shapes`` (40) shapes
per split with tiny settings; flags given explicitly override the preset.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "modelnet40_hdf5_1024"
PROTOCOLS = ("upright", "z", "SO3")
STAGES = ("plain", "frozen", "finetuned")
LABELS = {"plain": "DGCNN trained upright (no canonicalizer)", "frozen": "+ canonicalizer, nothing trained",
          "finetuned": "+ canonicalizer, backbone fine-tuned"}
# values of the GPU run, and of --smoke (a few dozen shapes on one CPU core)
GPU = dict(epochs=100, num_points=1024, batch_size=32, k=20, finetune_epochs=5, max_shapes=None, timing_repeats=20)
SMOKE = dict(epochs=1, num_points=128, batch_size=8, k=4, finetune_epochs=1, max_shapes=40, timing_repeats=1)
HELP = dict(epochs="epochs of the plain run", num_points="points per shape", batch_size="shapes per step",
            k="DGCNN neighbours per EdgeConv", finetune_epochs="epochs of the fine-tuned adaptation (1 to 5)",
            max_shapes="shapes per split, spread evenly (none: all)", timing_repeats="timed calls per model")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", help="output folder (must not exist, or be empty)")
    p.add_argument("--data-root", default=str(DEFAULT_DATA), help="ModelNet40 HDF5 folder (default: %(default)s)")
    p.add_argument("--canonicalizer", default="full", help="canonicalizer file or shipped name (default: full)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one plain run and its adaptations per seed")
    p.add_argument("--backbone-lr", type=float, default=1e-4, help="learning rate of the fine-tuned backbone")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of every stage")
    p.add_argument("--smoke", action="store_true", help="tiny CPU settings: " + json.dumps(SMOKE))
    for name, value in GPU.items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"{HELP[name]}; default {value} ({SMOKE[name]} with --smoke)")
    a = p.parse_args(argv)
    for name in GPU:
        if getattr(a, name) is None:
            setattr(a, name, (SMOKE if a.smoke else GPU)[name])
    return a


def check_args(a) -> Path:
    """``ValueError`` for a bad value, before any work; returns the output folder."""
    from pointcanon.cliconfig import canonicalizer_file, check_int
    from pointcanon.core.io import check_output_dir

    out = check_output_dir(a.out, "OUT")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"OUT {out} already exists and is not empty; nothing is overwritten: choose another folder "
                         "(or delete this one to start again)")
    for name in ("epochs", "num_points", "batch_size", "k", "timing_repeats"):
        check_int(getattr(a, name), "--" + name.replace("_", "-"))
    check_int(a.batch_size, "--batch-size", 2, hint=" (batch norm needs two shapes)")
    check_int(a.finetune_epochs, "--finetune-epochs", 1, 5, " (a short fine-tune; 0 is the frozen row)")
    if a.max_shapes is not None:
        check_int(a.max_shapes, "--max-shapes", 2)
    for seed in a.seeds:
        check_int(seed, "--seeds", 0)
    if len(set(a.seeds)) != len(a.seeds):
        raise ValueError(f"--seeds must differ, got {a.seeds}")
    if not (a.backbone_lr > 0):
        raise ValueError(f"--backbone-lr must be positive, got {a.backbone_lr}")
    if a.threads is not None:
        check_int(a.threads, "--threads")
    if not Path(a.data_root).is_dir():
        raise ValueError(f"--data-root {a.data_root} is not a folder (a ModelNet40 HDF5 folder)")
    try:
        _, _, path = canonicalizer_file(a.canonicalizer, "none")
    except FileNotFoundError:
        raise ValueError(f"--canonicalizer {a.canonicalizer!r} is neither a shipped name nor a file") from None
    a.canonicalizer_path = path
    return out


def stage_commands(a, run: Path, seed: int) -> dict[str, list[str]]:
    """The ``pointcanon`` arguments of the three stages of one seed, by stage."""
    common = ["--batch-size", str(a.batch_size), "--seed", str(seed)]
    common += ["--max-shapes", str(a.max_shapes)] if a.max_shapes else []
    adapt = ["adapt", "--pretrained", str(run / "plain" / "last.pt"), "--canonicalizer-weights", a.canonicalizer_path,
             "--freeze-canonicalizer"] + common
    return {"plain": ["train", "--dataset", "modelnet40", "--data-root", str(a.data_root), "--backbone", "dgcnn",
                      "--backbone.k", str(a.k), "--canonicalizer", "none", "--train-rotation", "none",
                      "--augment", "scale-shift", "--epochs", str(a.epochs), "--num-points", str(a.num_points)]
            + common,
            "frozen": adapt + ["--epochs", "0"],
            "finetuned": adapt + ["--finetune-backbone", "--backbone-lr", str(a.backbone_lr), "--augment",
                                  "scale-shift", "--epochs", str(a.finetune_epochs)]}


def run_stage(argv: list[str], out: Path, threads: int | None) -> dict:
    """Run ``pointcanon ARGV --out OUT``; its ``eval.json``. ``RuntimeError`` when it fails."""
    cmd = [sys.executable, "-m", "pointcanon.cli"] + (["--threads", str(threads)] if threads else []) + argv
    cmd += ["--out", str(out)]
    print("$ pointcanon " + " ".join(cmd[3:]), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    if rc != 0:
        raise RuntimeError(f"stage {out.name} failed (exit {rc}): {' '.join(cmd)}")
    return json.loads((out / "eval.json").read_text())


def ms_per_shape(checkpoint: Path, a, repeats: int) -> tuple[float, str]:
    """Median milliseconds per shape of the model of ``checkpoint`` on one batch of SO(3)-rotated test shapes
    ``(batch_size, num_points, 3)`` (CUDA if available), and the device's name."""
    import torch

    from pointcanon.core.groups import apply_rigid
    from pointcanon.datasets import build_dataset
    from pointcanon.models import load_model
    from pointcanon.train import protocol_rotations

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(checkpoint)[0].to(device).eval()
    test = build_dataset("modelnet40", a.data_root, "test", a.num_points)
    x = torch.stack([test[i][0] for i in range(min(a.batch_size, len(test)))])
    x = apply_rigid(x, protocol_rotations(len(x), "SO3", 0).to(x.dtype)).to(device)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):  # the first call warms up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return 1000 * statistics.median(times) / len(x), name


def summarise(a, per_seed: dict[int, dict[str, dict]], timing: dict[str, float], device: str) -> dict:
    """The summary: one row per stage with accuracy per protocol (mean over seeds, and per seed)."""
    rows = []
    for stage in STAGES:
        accs = {p: [per_seed[s][stage]["protocols"][p]["acc"] for s in a.seeds] for p in PROTOCOLS}
        maccs = {p: [per_seed[s][stage]["protocols"][p]["macc"] for s in a.seeds] for p in PROTOCOLS}
        rows.append({"model": stage, "label": LABELS[stage], "acc": {p: statistics.mean(v) for p, v in accs.items()},
                     "acc_std": {p: statistics.stdev(v) if len(v) > 1 else 0.0 for p, v in accs.items()},
                     "macc": {p: statistics.mean(v) for p, v in maccs.items()}, "acc_per_seed": accs,
                     "backbone_passes": 1, "ms_per_shape": round(timing[stage], 3),
                     "train_seconds": [per_seed[s][stage]["train_seconds"] for s in a.seeds]})
    settings = {k: getattr(a, k) for k in ("data_root", "canonicalizer", "canonicalizer_path", "seeds", "epochs",
                                           "num_points", "batch_size", "k", "finetune_epochs", "backbone_lr",
                                           "max_shapes", "smoke")}
    return {"setting": "DGCNN trained upright (scale-shift, no rotation), adapted with a canonicalizer",
            "settings": settings, "device": device, "timing": f"median of {a.timing_repeats} calls on one batch of "
            f"{a.batch_size} SO(3)-rotated test shapes", "rows": rows}


def table(summary: dict) -> str:
    """The markdown table of ``summary``: accuracy (%) per test protocol and the cost of one shape."""
    lines = ["| model | upright | z | SO(3) | backbone passes | ms / shape |", "|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        cells = [f"{100 * r['acc'][p]:.1f}" + (f" ± {100 * r['acc_std'][p]:.1f}" if r["acc_std"][p] else "")
                 for p in PROTOCOLS]
        cost = f" | {r['backbone_passes']} | {r['ms_per_shape']:.2f} |"
        lines.append(f"| {r['label']} | " + " | ".join(cells) + cost)
    s = summary["settings"]
    shapes = f"{s['max_shapes']} test shapes" if s["max_shapes"] else "the ModelNet40 test set"
    lines.append(f"\nAccuracy (%) on {shapes}"
                 f", trained upright; mean over seeds {s['seeds']}; canonicalizer {s['canonicalizer']}; "
                 f"{s['num_points']} points, {s['epochs']} epochs (+{s['finetune_epochs']} fine-tuning); "
                 f"times on {summary['device']}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        out = check_args(a)
    except ValueError as e:
        print(f"exp_dgcnn_upright: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    per_seed: dict[int, dict[str, dict]] = {}
    try:
        for seed in a.seeds:
            run = out / f"seed{seed}"
            per_seed[seed] = {stage: run_stage(argv_, run / stage, a.threads)
                              for stage, argv_ in stage_commands(a, run, seed).items()}
    except RuntimeError as e:
        print(f"exp_dgcnn_upright: error: {e}", file=sys.stderr)
        return 1
    timing, device = {}, ""
    for stage in STAGES:
        timing[stage], device = ms_per_shape(out / f"seed{a.seeds[0]}" / stage / "last.pt", a, a.timing_repeats)
    summary = summarise(a, per_seed, timing, device)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = table(summary)
    (out / "table.md").write_text(text + "\n")
    print(text)
    print(f"wrote {out / 'summary.json'} and {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
