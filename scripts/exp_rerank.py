"""Experiment: re-rank a candidate canonicalizer's top up hypotheses with a small "is it upright?" scorer.

The shipped canonicalizer's single choice is right (up within 10 deg) for ~81 % of ModelNet40 test
shapes, but the right up axis is among its 2 / 3 most likely up hypotheses for ~91 / ~93 %. This script
trains a second, cheap scorer that reads each of the K hypotheses' canonical clouds -- the points the
first stage already prepared (positions, local offsets, surface normals; no new neighbour search) --
through yaw-invariant features (height z, radius r, and the z and radial parts of the offset and the
normal) and picks ``argmax_h  a * log w_h + g(cloud_h)``. The hypotheses are a set that moves exactly
with the input and the features are invariant, so the choice stays exactly equivariant.

    .venv/bin/python scripts/exp_rerank.py --canonicalizer shipped --hypotheses 3 --epochs 30 --out runs/rerank

Writes ``OUT/result.json`` (top-1 before / after, the oracle over K, per-epoch curve) and ``OUT/reranker.pt``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from pointcanon.datasets import ModelNet40HDF5
from pointcanon.mesh import load_canonicalizer, load_default_canonicalizer
from pointcanon.nn.hypotheses import up_masses

COS10 = math.cos(math.radians(10))


def up_hypotheses(canon, x: torch.Tensor, k: int):
    """First stage on ``x`` (B, N, 3): the K best up hypotheses' candidate matrices in the principal frame
    (B, K, 3, 3), their frames (B, K, 3, 3), log weights (B, K) and the prepared views (B, S, M, C)."""
    _, cands, _, view, mask, _ = canon.prepare(x)
    logits = canon.candidate_logits(view, mask)
    mass, best = up_masses(logits, canon.up_group)  # (B, 6) each
    top = mass.topk(k, -1)
    index = best.gather(1, top.indices)  # (B, k)
    rows = torch.arange(x.shape[0])[:, None]
    return canon.candidates[index], cands[rows, index], torch.log_softmax(top.values, -1), view


def invariant_features(view: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Yaw-invariant per-point features (B, K, S*M, 6) of the views (B, S, M, C) in each hypothesis'
    frame ``local`` (B, K, 3, 3): z, r and the (z, radial) parts of every further 3-vector (offset, normal)."""
    b, s, m, c = view.shape
    vecs = view.reshape(b, 1, s * m, c // 3, 3) @ local[:, :, None]  # (B, K, P, V, 3)
    pos = vecs[..., 0, :]
    r = pos[..., :2].norm(dim=-1, keepdim=True)  # (B, K, P, 1)
    radial_dir = pos[..., :2] / r.clamp_min(1e-6)
    feats = [pos[..., 2:], r]
    for v in range(1, c // 3):
        feats += [vecs[..., v, 2:], (vecs[..., v, :2] * radial_dir).sum(-1, keepdim=True)]
    return torch.cat(feats, -1)


class UprightScorer(nn.Module):
    """g: a point MLP on invariant features, max+mean pooled, to one score per hypothesis."""

    def __init__(self, width: int = 6, hidden=(32, 64, 128)):
        super().__init__()
        layers, w = [], width
        for h in hidden:
            layers += [nn.Linear(w, h), nn.ReLU()]
            w = h
        self.trunk = nn.Sequential(*layers[:-1])
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(2 * w, 64), nn.ReLU(), nn.Linear(64, 1))
        self.prior_weight = nn.Parameter(torch.tensor(1.0))

    def forward(self, feats: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
        h = self.trunk(feats)  # (B, K, P, H)
        return self.prior_weight * log_w + self.head(torch.cat([h.amax(-2), h.mean(-2)], -1)).squeeze(-1)


def cache(canon, points: torch.Tensor, k: int, batch: int = 128):
    out = {"local": [], "frames": [], "log_w": [], "view": []}
    with torch.no_grad():
        for i in range(0, len(points), batch):
            local, frames, log_w, view = up_hypotheses(canon, points[i:i + batch], k)
            for key, v in zip(("local", "frames", "log_w", "view"), (local, frames, log_w, view)):
                out[key].append(v)
    out = {key: torch.cat(v) for key, v in out.items()}
    out["up_cos"] = out["frames"][:, :, 2, 2]  # each hypothesis' up vs the true up (z)
    return out


def accuracy(choice: torch.Tensor, up_cos: torch.Tensor) -> float:
    return (up_cos.gather(1, choice[:, None])[:, 0] > COS10).double().mean().item()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--canonicalizer", default="shipped")
    p.add_argument("--views", type=int, default=None, help="first-stage point subsets (default: the file's)")
    p.add_argument("--data-root", default="../shared/data/modelnet40_hdf5_1024")
    p.add_argument("--hypotheses", type=int, default=3)
    p.add_argument("--subsample", type=int, nargs="+", default=[1024, 512],
                   help="training clouds: first-stage passes over random subsets of these sizes")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/rerank")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    canon = (load_default_canonicalizer() if a.canonicalizer == "shipped" else load_canonicalizer(a.canonicalizer)).eval()
    if a.views:
        canon.views = a.views
    t0 = time.time()
    train = ModelNet40HDF5(a.data_root, "train").points
    test = ModelNet40HDF5(a.data_root, "test").points
    g = torch.Generator().manual_seed(a.seed)
    parts = []
    for n in a.subsample:
        keep = torch.randperm(train.shape[1], generator=g)[:n]
        parts.append(cache(canon, train[:, keep] + 0.005 * torch.randn(train[:, keep].shape, generator=g), a.hypotheses))
    tr = {key: torch.cat([q[key] for q in parts]) for key in parts[0]}
    te = cache(canon, test, a.hypotheses)
    print(f"cached in {time.time() - t0:.0f} s")
    good = tr["up_cos"] > COS10
    usable = good.any(1)
    target = torch.where(good, tr["up_cos"], torch.full_like(tr["up_cos"], -2)).argmax(1)
    feats_tr = invariant_features(tr["view"], tr["local"])
    feats_te = invariant_features(te["view"], te["local"])
    first = torch.zeros(len(test), dtype=torch.long)
    result = {"hypotheses": a.hypotheses, "canonicalizer": a.canonicalizer, "views": canon.views,
              "test_top1_first_stage": accuracy(first, te["up_cos"]),
              "test_oracle": (te["up_cos"] > COS10).any(1).double().mean().item(),
              "test_oracle_per_k": [(te["up_cos"][:, :k] > COS10).any(1).double().mean().item()
                                    for k in range(1, a.hypotheses + 1)],
              # angle of the chosen up axis to the true up, for the shapes whose first choice is wrong (20 deg bins)
              "test_wrong_angle_hist_20deg": torch.histc(torch.rad2deg(torch.acos(te["up_cos"][:, 0].clamp(-1, 1)))[
                  te["up_cos"][:, 0] <= COS10], bins=9, min=0, max=180).long().tolist(),
              "train_top1_first_stage": accuracy(torch.zeros(len(target), dtype=torch.long), tr["up_cos"]),
              "train_usable": usable.double().mean().item(), "curve": []}
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    model = UprightScorer(feats_tr.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    idx_all = usable.nonzero()[:, 0]
    steps = a.epochs * math.ceil(len(idx_all) / 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for epoch in range(a.epochs):
        model.train()
        perm = idx_all[torch.randperm(len(idx_all), generator=g)]
        total = 0.0
        for i in range(0, len(perm), 64):
            j = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(feats_tr[j], tr["log_w"][j]), target[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(j)
        model.eval()
        with torch.no_grad():
            choice = torch.cat([model(feats_te[i:i + 256], te["log_w"][i:i + 256]).argmax(-1) for i in range(0, len(test), 256)])
        row = {"epoch": epoch + 1, "train_loss": total / len(perm), "test_top1": accuracy(choice, te["up_cos"])}
        result["curve"].append(row)
        print(row, flush=True)
    result["test_top1_reranked"] = result["curve"][-1]["test_top1"]
    result["seconds"] = round(time.time() - t0, 1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "reranker.pt")
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"first stage {100 * result['test_top1_first_stage']:.1f} % -> reranked {100 * result['test_top1_reranked']:.1f} % "
          f"(oracle over {a.hypotheses}: {100 * result['test_oracle']:.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
