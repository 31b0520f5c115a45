"""Collect the ModelNet40 runs of scripts/exp_modelnet40.sh into one table (markdown) and plot the
angle between the predicted canonical frame and the identity on upright test shapes.

    .venv/bin/python scripts/report_modelnet40.py runs/mn40
"""
import argparse
import json
import math
import sys
from pathlib import Path

import torch

from pointcanon.checkpoint import atomic_write, write_json
from pointcanon.core import geodesic_angle
from pointcanon.datasets import build_dataset
from pointcanon.nn import CanonicalizedModel
from pointcanon.tasks import Classification
from pointcanon.train import load_model

ROWS = [  # (run folder, label, protocols to show)
    ("plain_z", "PointNet, trained z", ("upright", "z", "so3")),
    ("canon_z", "VN-canonicalized PointNet, trained z", ("upright", "z", "so3")),
    ("plain_so3", "PointNet, trained SO(3)", ("upright", "z", "so3")),
    ("canon_so3", "VN-canonicalized PointNet, trained SO(3)", ("upright", "z", "so3")),
    ("adapt_noprior", "pretrained PointNet (z) + canonicalizer, prior weight 0", ("upright", "z", "so3")),
    ("adapt_prior", "pretrained PointNet (z) + canonicalizer, upright prior", ("upright", "z", "so3")),
]


@torch.no_grad()
def frame_angles(model: CanonicalizedModel, dataset, batch_size: int = 64) -> dict:
    """Angles (degrees) of the canonical frame vs the identity, and of its up axis vs z, on upright shapes."""
    full, tilt = [], []
    for start in range(0, len(dataset), batch_size):
        x, _, _ = Classification.collate(dataset, range(start, min(len(dataset), start + batch_size)))
        frame = model.canonicalizer(x).frame
        full.append(geodesic_angle(frame))
        tilt.append(torch.acos(frame[:, 2, 2].clamp(-1, 1)))  # angle between R^T e_z and e_z
    full, tilt = torch.cat(full), torch.cat(tilt)
    return {"frame_deg": (full * 180 / math.pi).tolist(), "tilt_deg": (tilt * 180 / math.pi).tolist()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path)
    a = p.parse_args()
    lines = ["| model | z/upright | z/z | z/SO(3) | train time |", "|---|---|---|---|---|"]
    angles = {}
    test_set = None
    for folder, label, protocols in ROWS:
        ev = a.runs / folder / "eval.json"
        if not ev.exists():
            print(f"missing {ev}; skipped", file=sys.stderr)
            continue
        res = json.loads(ev.read_text())
        accs = " | ".join(f"{100 * res['protocols'][p]['acc']:.1f}" for p in protocols)
        if folder.endswith("so3"):
            label = label.replace("trained SO(3)", "trained SO(3) (columns: SO(3)/upright, SO(3)/z, SO(3)/SO(3))")
        lines.append(f"| {label} | {accs} | {res['train_seconds'] / 60:.0f} min |")
        if folder.startswith("adapt"):
            model, cfg, _ = load_model(a.runs / folder / "last.pt")
            if test_set is None:
                test_set = build_dataset(cfg.dataset, cfg.data_root, "test", cfg.num_points)
            angles[folder] = frame_angles(model, test_set)
    table = "\n".join(lines)
    print(table)
    atomic_write(a.runs / "table.md", lambda tmp: Path(tmp).write_text(table + "\n"))
    if angles:
        write_json(a.runs / "frame_angles.json", angles)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for key, ax, title in (("frame_deg", axes[0], "angle(frame, identity)"),
                               ("tilt_deg", axes[1], "tilt of the up axis")):
            for name, d in angles.items():
                ax.hist(d[key], bins=36, range=(0, 180), alpha=0.6, label=name)
            ax.set(xlabel="degrees", ylabel="test shapes (upright)", title=title)
            ax.legend()
        fig.tight_layout()
        atomic_write(a.runs / "frame_angles.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        for name, d in angles.items():
            t = torch.tensor(d["tilt_deg"])
            print(f"{name}: median tilt {t.median():.1f} deg, {100 * (t < 10).double().mean():.1f}% of shapes within 10 deg")


if __name__ == "__main__":
    main()
