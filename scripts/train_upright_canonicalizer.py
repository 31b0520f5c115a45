"""Train a canonicalizer on upright ModelNet40 with a prior alone and score it on the test split.

    .venv/bin/python scripts/train_upright_canonicalizer.py                 # the shipped recipe -> runs/canon/upright.pt
    .venv/bin/python scripts/train_upright_canonicalizer.py --prior identity --out runs/identity.pt
    .venv/bin/python scripts/train_upright_canonicalizer.py --kind vn --steps 4000 --out runs/vn.pt  # VN regression

The defaults are the recipe of the shipped weights (``pointcanon/weights/upright_modelnet40.pt``: surface
normals from 16 neighbours, max+mean pooling, 20,000 steps, 2 point subsets at inference). The output file
is never overwritten (``--overwrite`` to replace it), so a bare run cannot replace the packaged weights.

``--kind candidate`` (default): :class:`~pointcanon.nn.CandidateCanonicalizer` trained with its
``fit_loss`` (scorer cross-entropy + refinement prior). ``--kind vn``: the VNCanonicalizer regressing
the frame under the prior loss (the previous release's recipe). Each step draws a batch of training
shapes, a random subset of their points (``--min-points`` to all) and a small jitter, so that the
canonicalizer does not depend on one sampling of the surface.

Scores on the 2,468 test shapes (written into the file's ``info``): the angle between the canonical up
axis and the true up (z) — within 10 / 20 deg, median — and the geodesic angle between the frame and
the identity (within 15 deg; meaningful for ``--prior identity``). The canonicalizer is exactly
equivariant, so training on upright shapes is all it needs: a rotated copy gets the rotated frame.
The learning curve (``info["curve"]``, every ``--eval-every`` steps and at the last step) keeps one
protocol throughout: every ~4th test shape (617), one point subset; the final figure (``info["test"]``)
is on all test shapes with ``--views`` subsets, so compare it with the curve's last point, not its trend.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pointcanon.core import identity_prior, upright_prior
from pointcanon.measure import UPRIGHT_DATASETS as DATASETS, frame_scores
from pointcanon.models import DEFAULT_WEIGHTS, load_canonicalizer, save_canonicalizer
from pointcanon.nn import CandidateCanonicalizer, VNCanonicalizer
from pointcanon.nn.candidates import POOLINGS
from pointcanon.registry import build_canonicalizer

RECIPE = build_canonicalizer("upright").hparams  # the shipped recipe: defaults of --local-k, --normal-k, --pooling, --views


def build(kind: str, a) -> torch.nn.Module:
    hidden = tuple(int(h) for h in a.hidden.split(",")) if a.hidden else None
    if kind == "vn":
        return VNCanonicalizer("SE3", num_points=a.num_points, **({"hidden": hidden} if hidden else {}))
    tilts = {} if a.tilts is None else {"tilts": tuple(float(t) for t in a.tilts.split(","))}
    # trained on 1 point subset; --views subsets are set for the final scores and the file
    return CandidateCanonicalizer("SE3", num_points=a.num_points, views=1, refine=a.refine, local_k=a.local_k, normal_k=a.normal_k, pooling=a.pooling,
                                  **({"hidden": hidden} if hidden else {}), **tilts)


def batch_of(train: torch.Tensor, a, g: torch.Generator) -> torch.Tensor:
    idx = torch.randint(0, len(train), (a.batch_size,), generator=g)
    n = int(torch.randint(min(a.min_points, train.shape[1]), train.shape[1] + 1, (1,), generator=g))
    keep = torch.randperm(train.shape[1], generator=g)[:n]
    x = train[idx][:, keep]
    return x + a.jitter * torch.randn(x.shape, generator=g)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=tuple(DATASETS), default="modelnet40")
    p.add_argument("--data-root", default=None, help="default: the shared copy of --dataset")
    p.add_argument("--kind", choices=("candidate", "vn"), default="candidate")
    p.add_argument("--prior", choices=("upright", "identity"), default="upright")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", default=None, help="channels, comma separated (default: the class's)")
    p.add_argument("--num-points", type=int, default=128, help="points the network sees")
    p.add_argument("--min-points", type=int, default=256, help="fewest points of a training cloud")
    p.add_argument("--jitter", type=float, default=0.005)
    p.add_argument("--refine", action="store_true", help="candidate: add the learned correction M")
    p.add_argument("--views", type=int, default=RECIPE["views"], help="candidate: point subsets scored at inference (training: 1)")
    p.add_argument("--local-k", type=int, default=RECIPE["local_k"], help="candidate: neighbours of the local offset feature (0: none)")
    p.add_argument("--normal-k", type=int, default=RECIPE["normal_k"],
                   help="candidate: neighbours (among all points) of the surface normal feature (0: none)")
    p.add_argument("--pooling", choices=POOLINGS, default=RECIPE["pooling"],
                   help="candidate: max (extents) or max+mean (also densities along each axis)")
    p.add_argument("--tilts", default=None, help="candidate: tilt grid in degrees, comma separated ('0': none)")
    p.add_argument("--eval-every", type=int, default=2000, help="score 500 test shapes every N steps (0: never)")
    p.add_argument("--init", default=None, help="start from this canonicalizer file (same kind and sizes; "
                                                 "--num-points and --views may differ), e.g. to show it more points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/canon/upright.pt")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    a = p.parse_args(argv)
    if Path(a.out).exists() and not a.overwrite:
        p.error(f"--out {a.out} exists: pass --overwrite to replace it, or choose another file")
    if Path(a.out).resolve() == Path(DEFAULT_WEIGHTS).resolve():
        p.error(f"--out {a.out} is the packaged weights file: write elsewhere and copy it deliberately")
    if a.steps < 1 or a.batch_size < 2 or a.num_points < 1 or a.min_points < 1:
        p.error("--steps, --num-points and --min-points must be positive and --batch-size at least 2")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    canon = build(a.kind, a)
    init = None
    if a.init:
        init = load_canonicalizer(a.init)
        differ = {k for k in set(canon.hparams) | set(init.hparams) if k not in ("num_points", "views")
                  and canon.hparams.get(k) != init.hparams.get(k)}
        if type(init) is not type(canon) or differ:
            p.error(f"--init {a.init} holds a {type(init).__name__} that differs in {sorted(differ)}; "
                    f"pass the same --kind/--hidden/--local-k/--tilts/--refine")
        canon.load_state_dict(init.state_dict())
    reader, root, description = DATASETS[a.dataset]
    train = reader(a.data_root or root, "train").points
    test = reader(a.data_root or root, "test").points
    opt = torch.optim.Adam(canon.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    g = torch.Generator().manual_seed(a.seed)
    curve = []
    t0 = time.time()
    bar = tqdm(range(a.steps), desc=f"{a.kind} / {a.prior} prior", mininterval=5, disable=None)
    for step in bar:
        canon.train()
        x = batch_of(train, a, g)
        if a.kind == "candidate":
            loss = canon.fit_loss(x, a.prior)["loss"]
        else:
            frame = canon(x).frame
            loss = (upright_prior(frame, "z") if a.prior == "upright" else identity_prior(frame)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if a.eval_every and ((step + 1) % a.eval_every == 0 or step + 1 == a.steps):
            # one protocol along the whole curve, the last step included: every ~4th test shape, 1 point subset
            s = frame_scores(canon, test[::max(1, len(test) // 500)])
            curve.append({"step": step + 1, "seconds": round(time.time() - t0, 1), "views": 1, **s})
            tqdm.write(f"step {step + 1}: up within 10 deg {100 * s['up_within_10deg']:.1f}% "
                       f"({s['shapes']} test shapes, 1 point subset)")
    seconds = time.time() - t0
    if a.kind == "candidate":
        canon.views = a.views
    scores = frame_scores(canon, test)  # the final figure: every test shape, --views subsets (not on the curve)
    info = {"data": description, "kind": a.kind,
            "prior": a.prior, "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
            "min_points": a.min_points, "jitter": a.jitter, "threads": a.threads,
            "train_seconds": round(seconds, 1), "parameters": sum(q.numel() for q in canon.parameters()),
            "test": scores, "curve": curve,
            **({"init": {"file": a.init, "steps": init.info.get("steps"),
                         "train_seconds": init.info.get("train_seconds")}} if init is not None else {}),
            "command": "python scripts/train_upright_canonicalizer.py " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))}
    save_canonicalizer(canon.eval(), a.out, info)
    print(f"wrote {a.out}: {info['parameters']} parameters, {seconds:.0f} s")
    print(f"{a.dataset} test ({len(test)} shapes): up axis within 10 deg {100 * scores['up_within_10deg']:.1f}%, "
          f"within 20 deg {100 * scores['up_within_20deg']:.1f}%, median {scores['median_up_angle_deg']:.1f} deg; "
          f"frame within 15 deg of the identity {100 * scores['frame_within_15deg']:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
