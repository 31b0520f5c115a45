"""How to combine a candidate-canonicalized classifier's up hypotheses: accuracy of each rule.

For every shape the canonicalizer's 6 up hypotheses are shown to the backbone; the rules of
``pointcanon.nn.wrapper.combine_hypotheses`` combine the first k (exactly invariant). Measured on the test split under the ``--protocol`` rotations (those of ``pointcanon eval``)
and on a subset of the *training* split under z rotations, the split on which a rule should be chosen.

    .venv/bin/python scripts/hypothesis_rules.py --classifier runs/mn40/plain_z/last.pt \
        --canonicalizer runs/mn40/canon/upright.pt --out runs/mn40/hyp_rules.json

``--classifier``: a plain checkpoint (its backbone is put behind ``--canonicalizer``) or a candidate-
canonicalized one (its own canonicalizer is used unless ``--canonicalizer`` is given).
"""
import argparse
import json
import sys
from pathlib import Path

import torch

from pointcanon.core.groups import apply_rigid, random_rotations
from pointcanon.core.io import write_json
from pointcanon.datasets import build_dataset
from pointcanon.models import load_canonicalizer, load_model
from pointcanon.nn import CanonicalizedModel
from pointcanon.nn.wrapper import HYPOTHESIS_RULES, combine_hypotheses
from pointcanon.train import _generator

RULES = HYPOTHESIS_RULES + ("oracle",)  # oracle: any of the k hypotheses classified right (a ceiling)


@torch.no_grad()
def dump(model: CanonicalizedModel, dataset, indices: torch.Tensor, rotations: torch.Tensor, k: int = 6,
         batch_size: int = 64) -> dict:
    """Hypothesis weights ``(S, k)``, backbone logits ``(S, k, C)`` and labels ``(S,)``."""
    weights, logits, labels = [], [], []
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        items = [dataset[int(i)] for i in idx]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        x = apply_rigid(x, rotations[start:start + len(idx)].to(x.dtype))
        _, w, canonical, _ = model.canonicalizer.hypotheses(x, k)
        out = model.backbone(canonical.flatten(0, 1)).view(len(idx), k, -1)
        weights.append(w)
        logits.append(out)
        labels.append(torch.tensor([int(it[1]) for it in items]))
        print(f"\r{start + len(idx)}/{len(indices)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {"weights": torch.cat(weights), "logits": torch.cat(logits), "labels": torch.cat(labels)}


def table(d: dict) -> dict:
    res = {}
    for rule in RULES:
        for k in range(1, d["weights"].shape[1] + 1):
            if rule == "oracle":
                hit = (d["logits"][:, :k].argmax(-1) == d["labels"][:, None]).any(1)
            else:
                w = d["weights"][:, :k] / d["weights"][:, :k].sum(1, keepdim=True)
                hit = combine_hypotheses(w, d["logits"][:, :k], rule).argmax(-1) == d["labels"]
            res[f"{rule}_k{k}"] = round(100 * hit.double().mean().item(), 2)
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier", required=True)
    p.add_argument("--canonicalizer", default=None)
    p.add_argument("--protocol", default="SO3")
    p.add_argument("--train-shapes", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model, cfg, _ = load_model(a.classifier)
    canon = load_canonicalizer(a.canonicalizer) if a.canonicalizer else model.canonicalizer
    backbone = model.backbone if isinstance(model, CanonicalizedModel) else model
    model = CanonicalizedModel(canon, backbone).eval()
    kw = dict(num_points=cfg.num_points, **cfg.dataset_kwargs)
    results = {}
    for split, protocol, count in (("test", a.protocol, None), ("train", "z", a.train_shapes)):
        ds = build_dataset(cfg.dataset, cfg.data_root, split, **kw)
        n = len(ds)
        idx = torch.arange(n) if count is None else torch.randperm(n, generator=torch.Generator().manual_seed(0))[:count]
        rots = random_rotations(n, protocol, generator=_generator(0, 7919))[idx]
        results[f"{split}_{protocol}"] = table(dump(model, ds, idx, rots))
    for name, res in results.items():
        print(name)
        for rule in RULES:
            print(f"  {rule:11s}" + " ".join(f"{res[f'{rule}_k{k}']:6.2f}" for k in range(1, 7)))
    if a.out:
        write_json(Path(a.out), results)


if __name__ == "__main__":
    main()
