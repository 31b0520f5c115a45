"""Errors that matter: where a canonicalizer's frame is not the pose a backbone trained upright (without
rotation augmentation) expects, per class, and whether that changes the backbone's answer.

    .venv/bin/python scripts/frame_errors.py runs/mn40/plain_upright/last.pt --canonicalizer shipped \\
        --out runs/mn40/frame_errors_shipped.json

For every ModelNet40 test shape: the frame the canonicalizer gives the upright shape (geodesic angle to
the identity, up-axis angle), the backbone's answer upright (the plain model's own protocol), under a
random rotation (SO(3), no canonicalizer) and behind the canonicalizer under that rotation. A wrong frame
on a shape symmetric under it (a vase turned about its axis) changes nothing; what counts is whether the
answer changes. Prints a per-class table and writes the figures to ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from pointcanon import load_canonicalizer
from pointcanon.core.groups import apply_rigid
from pointcanon.core.io import atomic_write, check_output_file
from pointcanon.datasets import ModelNet40HDF5
from pointcanon.models import load_model
from pointcanon.nn.axes import TURNS  # the 4 quarter turns about z (exact)
from pointcanon.train import protocol_rotations


def answers(backbone, canon, x: torch.Tensor, rot: torch.Tensor, batch: int = 64) -> dict[str, torch.Tensor]:
    """Per shape: predictions upright / rotated / canonicalized-rotated, the canonicalizer's frame angles
    on the upright shape (degrees), and the backbone's probabilities ``(4, C)`` for the canonical cloud
    turned by 0 / 90 / 180 / 270 deg about the up axis (the four fronts of its up axis)."""
    out = {k: [] for k in ("upright", "rotated", "canonicalized", "frame_deg", "up_deg", "flagged", "yaw_probs")}
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb, rb = x[i:i + batch], rot[i:i + batch]
            moved = apply_rigid(xb, rb.to(xb.dtype))
            c_up, c_moved = canon(xb), canon(moved)
            out["upright"].append(backbone(xb).argmax(-1))
            out["rotated"].append(backbone(moved).argmax(-1))
            out["canonicalized"].append(backbone(c_moved.canonical).argmax(-1))
            # the canonical cloud turned by k * 90 deg about the up axis: the other fronts of the same up axis
            out["yaw_probs"].append(torch.stack([backbone(c_moved.canonical @ q.T).softmax(-1) for q in TURNS.to(xb.dtype)], 1))
            cos = ((c_up.frame.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
            out["frame_deg"].append(torch.rad2deg(torch.acos(cos)))
            out["up_deg"].append(torch.rad2deg(torch.acos(c_up.frame[:, 2, 2].clamp(-1, 1))))
            flags = c_moved.degenerate | (c_moved.fragile if c_moved.fragile is not None else False)
            out["flagged"].append(flags)
    return {k: torch.cat(v) for k, v in out.items()}


def table(res: dict[str, torch.Tensor], labels: torch.Tensor, classes: list[str]) -> list[dict]:
    rows = []
    off = res["frame_deg"] > 15
    changed = res["canonicalized"] != res["upright"]
    for k, name in enumerate(classes):
        m = labels == k
        n = int(m.sum())
        if n == 0:
            continue
        rows.append({"class": name, "shapes": n,
                     "acc_upright": (res["upright"][m] == k).double().mean().item(),
                     "acc_canonicalized_SO3": (res["canonicalized"][m] == k).double().mean().item(),
                     "frame_within_15deg": 1 - off[m].double().mean().item(),
                     "up_within_10deg": (res["up_deg"][m] < 10).double().mean().item(),
                     "frame_off": int(off[m].sum()), "answer_changed": int(changed[m].sum()),
                     "frame_off_answer_changed": int((off & changed)[m].sum()),
                     "frame_off_answer_kept": int((off & ~changed)[m].sum())})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a plain classifier's checkpoint (pointcanon train --canonicalizer none)")
    p.add_argument("--canonicalizer", default="shipped", help="a canonicalizer file or a shipped name (upright; shipped is an alias)")
    p.add_argument("--data-root", default="../shared/data/modelnet40_hdf5_1024")
    p.add_argument("--seed", type=int, default=0, help="seed of the SO(3) rotations (the eval protocol's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="JSON output (never overwritten)")
    a = p.parse_args(argv)
    out = check_output_file(a.out, "--out") if a.out else None
    if out is not None and out.exists():
        p.error(f"--out {out} exists: choose another file")
    torch.set_num_threads(a.threads)
    backbone, cfg, _ = load_model(a.checkpoint)
    if cfg.canonicalizer != "none":
        p.error(f"{a.checkpoint} is a canonicalized model; give a plain backbone's checkpoint")
    canon = load_canonicalizer(a.canonicalizer)  # a file or a shipped name ('upright', alias 'shipped')
    test = ModelNet40HDF5(a.data_root, "test", num_points=cfg.num_points)
    x, labels = torch.stack([test[i][0] for i in range(len(test))]), torch.as_tensor(test.labels)
    res = answers(backbone.eval(), canon.eval(), x, protocol_rotations(len(test), "SO3", a.seed))
    rows = table(res, labels, list(test.classes))
    off, changed = res["frame_deg"] > 15, res["canonicalized"] != res["upright"]
    yaw_pred, yaw_best = res["yaw_probs"].argmax(-1), res["yaw_probs"].amax(-1).argmax(1)
    summary = {"checkpoint": a.checkpoint, "canonicalizer": a.canonicalizer, "shapes": len(test),
               "acc_upright": (res["upright"] == labels).double().mean().item(),
               "acc_plain_SO3": (res["rotated"] == labels).double().mean().item(),
               "acc_canonicalized_SO3": (res["canonicalized"] == labels).double().mean().item(),
               "frame_within_15deg": 1 - off.double().mean().item(),
               "up_within_10deg": (res["up_deg"] < 10).double().mean().item(),
               "answer_changed": int(changed.sum()), "frame_off_answer_changed": int((off & changed).sum()),
               "frame_off_answer_kept": int((off & ~changed).sum()),
               "flagged": int(res["flagged"].sum()),
               # 4 backbone passes over the fronts: the most confident one (evidence), and whether any is right
               "acc_front_evidence_SO3": (yaw_pred.gather(1, yaw_best[:, None])[:, 0] == labels).double().mean().item(),
               "acc_front_oracle_SO3": (yaw_pred == labels[:, None]).any(1).double().mean().item(),
               "acc_canonicalized_SO3_unflagged": (res["canonicalized"] == labels)[~res["flagged"]].double().mean().item()
               if bool((~res["flagged"]).any()) else math.nan,
               "per_class": rows}
    print(f"upright {100 * summary['acc_upright']:.1f} %, plain SO(3) {100 * summary['acc_plain_SO3']:.1f} %, "
          f"canonicalized SO(3) {100 * summary['acc_canonicalized_SO3']:.1f} %; frame within 15 deg of I "
          f"{100 * summary['frame_within_15deg']:.1f} %; frame off and answer changed {summary['frame_off_answer_changed']}, "
          f"frame off and answer kept {summary['frame_off_answer_kept']}; over the 4 fronts (4 passes): most "
          f"confident {100 * summary['acc_front_evidence_SO3']:.1f} %, any right {100 * summary['acc_front_oracle_SO3']:.1f} %")
    print("| class | shapes | upright | canonicalized SO(3) | frame ≤ 15° | up ≤ 10° | off, answer changed | off, answer kept |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["frame_off_answer_changed"]):
        print(f"| {r['class']} | {r['shapes']} | {100 * r['acc_upright']:.1f} | {100 * r['acc_canonicalized_SO3']:.1f} | "
              f"{100 * r['frame_within_15deg']:.0f} | {100 * r['up_within_10deg']:.0f} | {r['frame_off_answer_changed']} | "
              f"{r['frame_off_answer_kept']} |")
    if out is not None:
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
