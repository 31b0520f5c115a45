"""Teach a canonicalizer the front of its up axis: the full frame a backbone trained without rotations needs.

    .venv/bin/python scripts/fit_front.py runs/mn40/plain_upright/last.pt --cache runs/front --out runs/front/full.pt

The up axis comes from a trained canonicalizer (``--canonicalizer``, default the shipped ``upright`` one, frozen);
a front scorer (``CandidateCanonicalizer(front=..., front_turns=T)``) learns which of T turns about that up axis
(``360 k / T`` deg) puts the shape in the pose of the upright training data: the identity prior of Mondal et al.
(2023) restricted to the turns, a cross-entropy towards ``softmax(sharpness * cos(angle to the true pose))``.
Its inputs (the canonical point inputs of every training shape under a random rotation, ``--draws`` point
samplings per shape) and the true pose relative to the canonical one are computed once and cached in ``--cache``
(the up-axis canonicalizer never changes here).

Reports, on the ModelNet40 test split in the evaluation protocol (first points, one random rotation per shape,
``protocol_rotations(.., "SO3", 0)``), the frozen backbone ``CHECKPOINT`` (trained without rotations) behind the
canonicalizer, one backbone pass: with the learned front, with the candidate's own front (no front prior), with the
turn nearest the true pose (what a perfect front scorer would give) and the best of the T turns (an oracle).
``--out`` (never overwritten) gets a canonicalizer file: the given one with the front scorer.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pointcanon import load_canonicalizer
from pointcanon.core.groups import apply_rigid, random_so3
from pointcanon.core.io import atomic_write, check_output_file, safe_load
from pointcanon.datasets import ModelNet40HDF5
from pointcanon.models import load_model, save_canonicalizer
from pointcanon.nn import CandidateCanonicalizer
from pointcanon.nn.axes import yaw_turns
from pointcanon.train import protocol_rotations



def cache_split(canon, backbone, points: torch.Tensor, labels: torch.Tensor, rotations: torch.Tensor,
                num_points: int, random_subset: bool, generator: torch.Generator, turns: int,
                batch: int = 64) -> dict:
    """Canonical point inputs ``(n, S, M, C)`` (float16) and ``G = frame.T @ rotation`` ``(n, 3, 3)`` (the true pose
    seen from the canonical one: the identity when the canonical cloud is the upright shape); with a backbone also
    its prediction at each of the ``turns`` fronts ``(n, T)``."""
    n = len(points)
    if random_subset:  # another sampling of the same surface for every shape
        idx = torch.rand(n, points.shape[1], generator=generator).argsort(1)[:, :num_points]
        points = points.gather(1, idx[..., None].expand(-1, -1, 3))
    else:
        points = points[:, :num_points]
    yaws = yaw_turns(turns, torch.float32)
    out = {k: [] for k in ("inputs", "pose", "pred", "degenerate")}
    with torch.no_grad():
        for i in range(0, n, batch):
            x, rot = points[i:i + batch], rotations[i:i + batch]
            moved = apply_rigid(x, rot)
            prep = canon.prepare(moved)
            res = canon._choose(moved, None, prep, canon.candidate_logits(prep.point_inputs, prep.mask))
            out["inputs"].append(canon.canonical_inputs(prep.point_inputs, canon.candidates64[res.index]).half())
            out["pose"].append(res.frame.transpose(1, 2) @ rot)
            out["degenerate"].append(res.degenerate)
            if backbone is not None:  # the canonical cloud at front k: canonical @ yaw_k.T
                out["pred"].append(torch.stack([backbone(res.canonical @ q.T).argmax(-1) for q in yaws], 1))
    res = {k: torch.cat(v) for k, v in out.items() if v}
    res["labels"] = labels.clone()
    return res


def closeness(pose: torch.Tensor, turns: int) -> torch.Tensor:
    """Cosine of the angle between the true pose and each front ``(n, T)``: front k is the canonical frame turned by
    ``yaw_k.T``, from which the true pose is ``yaw_k @ G``."""
    g = yaw_turns(turns, pose.dtype)[None] @ pose[:, None]
    return (g.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2


def build_cache(a, canon, backbone, num_points: int) -> tuple[dict, dict]:
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    files = {"train": cache / f"front_cache_train_{a.turns}turns_{a.draws}draws_seed{a.seed}.pt",
             "test": cache / f"front_cache_test_{a.turns}turns.pt"}  # the cache is reused only for the same values
    if all(f.is_file() for f in files.values()):
        return tuple(safe_load(files[s], "front cache") for s in ("train", "test"))
    g = torch.Generator().manual_seed(a.seed)
    result = {}
    for split in ("train", "test"):
        ds = ModelNet40HDF5(a.data_root, split)
        pts, labels = ds.points[:a.limit], ds.labels[:a.limit]
        t0 = time.time()
        if split == "test":  # the evaluation protocol: first points, one rotation per shape
            parts = [cache_split(canon, backbone, pts, labels, protocol_rotations(len(ds), "SO3", 0)[:len(pts)],
                                 num_points, False, g, a.turns)]
        else:
            parts = [cache_split(canon, None, pts, labels, random_so3(len(pts), generator=g), num_points, d > 0, g,
                                 a.turns) for d in range(a.draws)]
        result[split] = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        torch.save(result[split], files[split])
        print(f"cached {split}: {len(result[split]['labels'])} clouds in {time.time() - t0:.0f} s", flush=True)
    return result["train"], result["test"]


def front_loss(logits: torch.Tensor, near: torch.Tensor, sharpness: float) -> torch.Tensor:
    """Cross-entropy of the front scores ``(B, T)`` towards ``softmax(sharpness * closeness)``."""
    return -(F.softmax(sharpness * near, -1) * F.log_softmax(logits, -1)).sum(-1).mean()


def evaluate(canon, data: dict, batch: int = 256) -> dict:
    canon.eval()
    with torch.no_grad():
        chosen = torch.cat([canon.front_logits(data["inputs"][i:i + batch].float()).argmax(-1)
                            for i in range(0, len(data["labels"]), batch)])
    rows = torch.arange(len(chosen))
    right = data["pred"] == data["labels"][:, None]
    near = closeness(data["pose"], right.shape[1])
    ok = near >= math.cos(math.radians(15))
    nearest = near.argmax(1)
    return {"acc_front_learned": right[rows, chosen].double().mean().item(),
            "acc_front_candidate": right[:, 0].double().mean().item(),
            "acc_front_nearest_true_pose": right[rows, nearest].double().mean().item(),
            "acc_front_oracle": right.any(1).double().mean().item(),
            "frame_within_15deg_learned": ok[rows, chosen].double().mean().item(),
            "frame_within_15deg_candidate": ok[:, 0].double().mean().item(),
            "frame_within_15deg_best_turn": ok.any(1).double().mean().item()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a plain classifier trained without rotations (--canonicalizer none)")
    p.add_argument("--canonicalizer", default="upright", help="the canonicalizer of the up axis (file or shipped name)")
    p.add_argument("--data-root", default="../shared/data/modelnet40_hdf5_1024")
    p.add_argument("--cache", default="runs/front", help="folder of the cached inputs (reused when present)")
    p.add_argument("--draws", type=int, default=2, help="point samplings (each randomly rotated) per training shape")
    p.add_argument("--front", default="32,64,128", help="channels of the front scorer's point MLP")
    p.add_argument("--turns", type=int, default=12, help="fronts scored per up axis (360 / turns deg apart)")
    p.add_argument("--sharpness", type=float, default=200.0)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # first shapes only (smoke runs)
    p.add_argument("--out", default=None, help="canonicalizer file to write (never overwritten)")
    p.add_argument("--summary", default=None, help="JSON of the test figures (never overwritten)")
    a = p.parse_args(argv)
    outs = [check_output_file(f, n) if f else None for f, n in ((a.out, "--out"), (a.summary, "--summary"))]
    for f, n in zip(outs, ("--out", "--summary")):
        if f is not None and f.exists():
            p.error(f"{n} {f} exists: choose another file")
    front = tuple(int(h) for h in a.front.split(","))
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    backbone, cfg, _ = load_model(a.checkpoint)
    if cfg.canonicalizer != "none":
        p.error(f"{a.checkpoint} is a canonicalized model; give a plain backbone's checkpoint")
    base = load_canonicalizer(a.canonicalizer)
    if not isinstance(base, CandidateCanonicalizer):
        p.error("--canonicalizer must be a CandidateCanonicalizer")
    train, test = build_cache(a, base.eval(), backbone.eval(), cfg.num_points)
    hp = {k: v for k, v in base.hparams.items() if k not in ("group", "front", "front_turns")}
    canon = CandidateCanonicalizer(base.hparams["group"], **hp, front=front, front_turns=a.turns)
    canon.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("front_")}, strict=False)
    params = list(canon.front_trunk.parameters()) + list(canon.front_score.parameters())
    opt = torch.optim.Adam(params, lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    n = len(train["labels"])
    t0, history = time.time(), []
    for step in range(1, a.steps + 1):
        canon.train()
        idx = torch.randint(n, (a.batch_size,))
        logits = canon.front_logits(train["inputs"][idx].float())
        loss = front_loss(logits, closeness(train["pose"][idx], a.turns), a.sharpness)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == a.steps:
            figs = evaluate(canon, test)
            history.append({"step": step, "loss": loss.item(), **figs})
            print(f"step {step}: loss {loss.item():.3f}, test acc learned front "
                  f"{100 * figs['acc_front_learned']:.1f} % "
                  f"(candidate's {100 * figs['acc_front_candidate']:.1f}, nearest the true pose "
                  f"{100 * figs['acc_front_nearest_true_pose']:.1f}, oracle {100 * figs['acc_front_oracle']:.1f}); "
                  f"frame <= 15 deg {100 * figs['frame_within_15deg_learned']:.1f} % (candidate's "
                  f"{100 * figs['frame_within_15deg_candidate']:.1f}, best turn "
                  f"{100 * figs['frame_within_15deg_best_turn']:.1f}); {time.time() - t0:.0f} s", flush=True)
    info = {"recipe": "scripts/fit_front.py", "checkpoint": str(a.checkpoint), "base": str(a.canonicalizer),
            "turns": a.turns, "steps": a.steps, "draws": a.draws, "front": list(front), "seed": a.seed,
            "test": history[-1]}
    if outs[0] is not None:
        canon.eval()
        save_canonicalizer(canon, outs[0], info)
        print(f"wrote {outs[0]}")
    if outs[1] is not None:
        atomic_write(outs[1], lambda tmp: Path(tmp).write_text(json.dumps({**info, "history": history}, indent=1)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
