"""Print the tables of scripts/exp_modelnet40.sh (markdown) from its run folder and save them as
``OUT/tables.md``; also plot the up-axis angle of the canonicalizers on the test shapes.

    .venv/bin/python scripts/report_modelnet40.py runs/mn40

Missing runs are reported on stderr and left out of the tables.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

from pointcanon.core.io import atomic_write

CANONICALIZERS = [  # (file stem, label)
    ("upright_normals", "**shipped**: candidate, upright prior, + surface normals, max+mean pooling"),
    ("upright", "the previous shipped recipe: candidate, upright prior (no normals, max pooling)"),
    ("upright256", "previous recipe trained on whole clouds, scored on 2 subsets of 256 points (not shipped)"),
    ("upright_all_ft", "the previous shipped weights trained on for 3,000 steps seeing every point (not shipped)"),
    ("identity", "candidate, identity prior"),
    ("abl_vn", "ablation: VN regression (the previous recipe), 256 points"),
    ("abl_no_tilt", "ablation: candidate, principal axes only (no tilt grid)"),
    ("abl_tilt", "ablation: candidate, tilt grid"),
    ("abl_local", "ablation: candidate, tilt grid + local offsets"),
    ("abl_local_refine", "ablation: as above + learned refinement"),
    ("shapenet_upright", "ShapeNetPart: candidate, upright prior"),
]
ADAPT = [
    ("plain_z", "(a) PointNet trained z (the pretrained backbone)"),
    ("adapt_frozen", "(b) + previous upright canonicalizer, both frozen (no training)"),
    ("adapt_finetune", "(c) + previous upright canonicalizer (frozen), backbone fine-tuned"),
    ("adapt_noprior", "(d) + candidate canonicalizer without prior (untrained choice)"),
    ("adapt_mixture", "(e) + upright canonicalizer fine-tuned on the mixture of 6 up hypotheses, backbone frozen"),
    ("adapt_all_frozen", "(f) + the canonicalizer that sees every point, both frozen"),
    ("adapt_normals_frozen", "(g) + the shipped canonicalizer (surface normals), both frozen (no training)"),
    ("adapt_normals_finetune", "(h) + the shipped canonicalizer (surface normals, frozen), backbone fine-tuned"),
    ("adapt_normals_hyp3", "(i) as (h), fine-tuned on its 3 up hypotheses, evaluated over them (evidence rule)"),
    ("adapt_normals_hyp3_long", "(j) as (i), 5 epochs at backbone lr 3e-4"),
    ("adapt_normals_hyp3_10ep", "(k) as (i), 10 epochs at backbone lr 3e-4"),
    ("adapt_normals_hyp3_10ep/selector3", "(l) (k) + a learned hypothesis selector over its 3 up hypotheses"),
]
SCRATCH = [("plain_z", "PointNet"), ("canon_z", "canonicalized PointNet (previous shipped canonicalizer, frozen)"),
           ("canon_all_z", "canonicalized PointNet (the every-point canonicalizer, frozen)"),
           ("canon_normals_z", "canonicalized PointNet (the shipped canonicalizer with surface normals, frozen)"),
           ("canon_normals_z_hyp3", "the same, trained on its 3 up hypotheses, evaluated over them (evidence rule)"),
           ("canon_normals_z/selector3", "canonicalized PointNet (surface normals), + learned selector over 3 up hypotheses"),
           ("canon_normals_z_hyp3/selector3", "the same trained on 3 up hypotheses, + learned selector over them")]
HYPOTHESES = [
    ("adapt_frozen", "adaptation, both frozen (b)"),
    ("adapt_finetune", "adaptation, backbone fine-tuned (c)"),
    ("canon_z", "from scratch (canonicalized PointNet)"),
    ("canon_z_hyp3", "from scratch, trained over 3 hypotheses"),
    ("canon_all_z", "from scratch, the every-point canonicalizer"),
    ("adapt_mixture", "adaptation, canonicalizer fine-tuned on the mixture (e)"),
]
SEG = [("seg_plain_z", "PointNet segmenter"), ("seg_canon_z", "canonicalized PointNet segmenter")]


def _eval(runs: Path, name: str) -> dict | None:
    """A run's eval.json; ``RUN/FILE`` names a checkpoint written beside a run (e.g. by fit-selector): its
    FILE.eval.json, with ``train_seconds`` the run's plus the checkpoint's fit."""
    run, _, extra = name.partition("/")
    path = runs / run / (f"{extra}.eval.json" if extra else "eval.json")
    if not path.is_file():
        print(f"missing {path}; row left out", file=sys.stderr)
        return None
    ev = json.loads(path.read_text())
    if extra:
        fit = torch.load(runs / run / f"{extra}.pt", map_location="cpu", weights_only=True).get("selector_fit", {})
        ev["train_seconds"] = (_eval(runs, run) or {}).get("train_seconds", 0) + fit.get("seconds", 0)
    return ev


def _config(runs: Path, name: str) -> dict:
    path = runs / name.partition("/")[0] / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def canonicalizer_table(runs: Path) -> list[str]:
    lines = ["| canonicalizer | steps | parameters | train time | up ≤ 10° | up ≤ 20° | median up angle | frame ≤ 15° of I |",
             "|---|---|---|---|---|---|---|---|"]
    for stem, label in CANONICALIZERS:
        path = runs / "canon" / f"{stem}.pt"
        if not path.is_file():
            print(f"missing {path}; row left out", file=sys.stderr)
            continue
        info = torch.load(path, map_location="cpu", weights_only=True)["info"]
        t = info["test"]
        lines.append(f"| {label} | {info['steps']} | {info['parameters']:,} | {info['train_seconds'] / 60:.1f} min "
                     f"| {100 * t['up_within_10deg']:.1f} | {100 * t['up_within_20deg']:.1f} | "
                     f"{t['median_up_angle_deg']:.1f}° | {100 * t['frame_within_15deg']:.1f} |")
    return lines


def transfer_table(runs: Path) -> list[str]:
    """The canonicalizers scored on ShapeNetPart's test shapes (scripts/score_canonicalizer.py)."""
    path = runs / "score_shapenet.json"
    if not path.is_file():
        print(f"missing {path}; table left out", file=sys.stderr)
        return []
    lines = ["| canonicalizer | setting | up ≤ 10° | up ≤ 20° | median up angle |", "|---|---|---|---|---|"]
    for r in json.loads(path.read_text()):
        lines.append(f"| {Path(r['file']).stem} | {r['setting']} | {100 * r['up_within_10deg']:.1f} | "
                     f"{100 * r['up_within_20deg']:.1f} | {r['median_up_angle_deg']:.1f}° |")
    return lines


def accuracy_table(runs: Path, rows, header: str) -> list[str]:
    lines = [f"| {header} | z/upright | z/z | z/SO(3) | epochs | train time |", "|---|---|---|---|---|---|"]
    for name, label in rows:
        ev = _eval(runs, name)
        if ev is None:
            continue
        p = ev["protocols"]
        epochs = _config(runs, name).get("epochs", "?")
        lines.append(f"| {label} | {100 * p['upright']['acc']:.1f} | {100 * p['z']['acc']:.1f} | "
                     f"{100 * p['SO3']['acc']:.1f} | {epochs} | {ev.get('train_seconds', 0) / 60:.0f} min |")
    return lines


def hypotheses_table(runs: Path) -> list[str]:
    """SO(3) accuracy of the canonicalized classifiers evaluated over K = 1..4 (and 6) up hypotheses."""
    ks = (1, 2, 3, 4, 6)
    lines = ["| model | trained over | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for name, label in HYPOTHESES:
        trained = _config(runs, name).get("hypotheses", 1)
        cells = []
        for k in ks:
            path = runs / name / f"hyp{k}.json"
            path = path if path.is_file() or k != trained else runs / name / "eval.json"
            cells.append(f"{100 * json.loads(path.read_text())['protocols']['SO3']['acc']:.1f}" if path.is_file() else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | {trained} | " + " | ".join(cells) + " |")
    return lines


EVIDENCE = [("adapt_all_frozen", "adaptation (f), both frozen"), ("adapt_normals_frozen", "adaptation (g), both frozen"),
            ("adapt_normals_finetune", "adaptation (h), backbone fine-tuned"), ("canon_all_z", "from scratch, the every-point canonicalizer"),
            ("adapt_normals_hyp3", "adaptation (i), fine-tuned over 3 hypotheses"),
            ("adapt_normals_hyp3_long", "adaptation (j), fine-tuned over 3 hypotheses, 5 epochs"),
            ("adapt_normals_hyp3_10ep", "adaptation (k), fine-tuned over 3 hypotheses, 10 epochs"),
            ("canon_normals_z", "from scratch, the shipped canonicalizer (surface normals)"),
            ("canon_normals_z_hyp3", "from scratch, the shipped canonicalizer, trained over 3 hypotheses")]


def evidence_table(runs: Path, ks=(2, 3, 4)) -> list[str]:
    """z/SO(3) accuracy over the K most likely up hypotheses, combined with the evidence rule ("–": not run)."""
    lines = ["| model | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for name, label in EVIDENCE:
        config = _config(runs, name)  # a run trained and evaluated over K hypotheses with the evidence rule
        own = config.get("hypotheses") if config.get("hypothesis_rule") == "evidence" else None
        paths = [runs / name / ("eval.json" if k == own else f"hyp{k}_evidence.json") for k in ks]
        if not any(p.is_file() for p in paths):
            print(f"missing {paths[0]}; row left out", file=sys.stderr)
            continue
        cells = [f"{100 * json.loads(p.read_text())['protocols']['SO3']['acc']:.1f}" if p.is_file() else "–" for p in paths]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def rules_table(runs: Path, name: str = "frozen") -> list[str]:
    """SO(3) test accuracy of a classifier (the frozen adaptation; ``name``: a run) for each way of
    combining its K up hypotheses (scripts/hypothesis_rules.py), and the same on training shapes under z."""
    path = runs / f"hyp_rules_{name}.json"
    if not path.is_file():
        print(f"missing {path}; table left out", file=sys.stderr)
        return []
    res = json.loads(path.read_text())
    ks = range(1, 7)
    lines = ["| rule | split | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for split, values in res.items():
        order = ("weights", "evidence", "selector", "oracle")
        for rule in sorted({key.rsplit("_k", 1)[0] for key in values}, key=lambda r: (order.index(r.split("_")[0]), r)):
            lines.append(f"| {rule} | {split} | " + " | ".join(
                f"{values[f'{rule}_k{k}']:.2f}" if f"{rule}_k{k}" in values else "–" for k in ks) + " |")
    return lines


def segmentation_table(runs: Path) -> list[str]:
    lines = ["| model | z/z instance mIoU | z/z class mIoU | z/SO(3) instance mIoU | z/SO(3) class mIoU | epochs | train time |",
             "|---|---|---|---|---|---|---|"]
    for name, label in SEG:
        ev = _eval(runs, name)
        if ev is None:
            continue
        p = ev["protocols"]
        epochs = _config(runs, name).get("epochs", "?")
        lines.append(f"| {label} | {100 * p['z']['instance_miou']:.1f} | {100 * p['z']['class_miou']:.1f} | "
                     f"{100 * p['SO3']['instance_miou']:.1f} | {100 * p['SO3']['class_miou']:.1f} | {epochs} | "
                     f"{ev.get('train_seconds', 0) / 60:.0f} min |")
    return lines


def plot_curves(runs: Path) -> None:
    """Up axis within 10 deg (500 test shapes) against training time, one line per canonicalizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for stem, label in CANONICALIZERS:
        path = runs / "canon" / f"{stem}.pt"
        if not path.is_file() or stem.startswith("shapenet"):
            continue
        curve = torch.load(path, map_location="cpu", weights_only=True)["info"].get("curve", [])
        if curve:
            ax.plot([c["seconds"] / 60 for c in curve], [100 * c["up_within_10deg"] for c in curve], "o-",
                    label=label.replace("**", ""), ms=3)
    ax.set(xlabel="training time (min, 1-2 CPU threads)", ylabel="up axis within 10° (%)",
           title="ModelNet40 test shapes")
    ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_write(runs / "canonicalizer_curves.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path)
    a = p.parse_args()
    parts = [("Canonicalizers (prior alone), ModelNet40 test split", canonicalizer_table(a.runs)),
             ("The same canonicalizers on ShapeNetPart's test shapes (2,048 points, sampled otherwise)",
              transfer_table(a.runs)),
             ("Adapting a pretrained PointNet", accuracy_table(a.runs, ADAPT, "model")),
             ("From scratch, side by side", accuracy_table(a.runs, SCRATCH, "model")),
             ("z/SO(3) over the K most likely up hypotheses, evidence rule", evidence_table(a.runs)),
             ("Up hypotheses: z/SO(3) accuracy over the K most likely up hypotheses", hypotheses_table(a.runs)),
             ("Combining the up hypotheses (frozen adaptation)", rules_table(a.runs)),
             ("Combining the up hypotheses (from scratch, trained over 3 hypotheses; selector from 3 seeds)",
              rules_table(a.runs, "canon_normals_z_hyp3")),
             ("Combining the up hypotheses (from scratch, trained on one frame; selector from 3 seeds)",
              rules_table(a.runs, "canon_normals_z")),
             ("ShapeNetPart (pseudo labels)", segmentation_table(a.runs))]
    text = "\n\n".join(f"### {title}\n\n" + "\n".join(lines) for title, lines in parts)
    print(text)
    atomic_write(a.runs / "tables.md", lambda tmp: Path(tmp).write_text(text + "\n"))
    plot_curves(a.runs)


if __name__ == "__main__":
    main()
