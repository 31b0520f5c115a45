"""How to combine a candidate-canonicalized classifier's up hypotheses: accuracy of each rule.

For every shape the canonicalizer's 6 up hypotheses are shown to the backbone; the rules of
``pointcanon.nn.wrapper.combine_hypotheses`` combine the first k (exactly invariant).
Measured on the test split under the ``--protocol`` rotations (those of ``pointcanon eval``) and on the
*training* split under z rotations, the split on which a rule should be chosen (and the "selector" rule,
pointcanon's HypothesisSelector, is fitted).

    .venv/bin/python scripts/hypothesis_rules.py --classifier runs/mn40/plain_z/last.pt \
        --canonicalizer runs/mn40/canon/upright.pt --out runs/mn40/hyp_rules_frozen.json

``--classifier``: a plain checkpoint (its backbone is put behind ``--canonicalizer``) or a candidate-
canonicalized one (its own canonicalizer is used unless ``--canonicalizer`` is given).
"""
import argparse
from pathlib import Path

import torch

from pointcanon.core.io import atomic_write, write_json
from pointcanon.datasets import Subsample, build_dataset
from pointcanon.models import load_canonicalizer, load_model
from pointcanon.nn import CanonicalizedModel
from pointcanon.selector import fit_selector, hypothesis_outputs, rule_accuracies
from pointcanon.train import protocol_rotations

# selector: pointcanon's HypothesisSelector, fitted on the training shapes (`pointcanon fit-selector` does the
# same for a checkpoint); oracle: any of the k hypotheses classified right (a ceiling)
RULES = ("weights", "evidence", "oracle")


def _first(weights: torch.Tensor, k: int) -> torch.Tensor:
    return (weights[:, :k] / weights[:, :k].sum(1, keepdim=True)).float()


@torch.no_grad()
def table(d: dict, selectors: dict | None = None) -> dict:
    """Accuracy (%) of every rule for k = 1..6 (keys ``{rule}_k{k}``); ``selectors`` {(k, seed): selector}
    give ``selector_s{seed}_k{k}``."""
    res = {}
    for k in range(1, d["weights"].shape[1] + 1):
        first = {"weights": _first(d["weights"], k), "logits": d["logits"][:, :k].float(), "labels": d["labels"]}
        hit = (first["logits"].argmax(-1) == first["labels"][:, None]).any(1)
        res[f"oracle_k{k}"] = round(100 * hit.double().mean().item(), 2)
        res.update({f"{rule}_k{k}": acc for rule, acc in rule_accuracies(first).items() if rule in RULES})
        for (kk, seed), sel in (selectors or {}).items():
            if kk == k:
                res[f"selector_s{seed}_k{k}"] = rule_accuracies(first, sel)["selector"]
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier", required=True)
    p.add_argument("--canonicalizer", default=None)
    p.add_argument("--protocol", default="SO3")
    p.add_argument("--train-shapes", type=int, default=None, help="training shapes used (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--selector-seeds", type=int, nargs="+", default=[0], help="fit the selector from each seed")
    p.add_argument("--dumps", default=None, help="also save the weights / logits / labels of both splits here "
                                                  "(torch.save; reused when the file exists)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model, cfg, _ = load_model(a.classifier)
    canon = load_canonicalizer(a.canonicalizer) if a.canonicalizer else model.canonicalizer
    backbone = model.backbone if isinstance(model, CanonicalizedModel) else model
    model = CanonicalizedModel(canon, backbone, hypotheses=6).eval()
    kw = dict(num_points=cfg.num_points, **cfg.dataset_kwargs)
    dumps = torch.load(a.dumps, weights_only=True) if a.dumps and Path(a.dumps).exists() else {}
    for split, protocol, count in (("train", "z", a.train_shapes), ("test", a.protocol, None)):
        if f"{split}_{protocol}" in dumps:
            continue
        ds = build_dataset(cfg.dataset, cfg.data_root, split, **kw)
        ds = ds if count is None else Subsample(ds, count)
        rots = protocol_rotations(len(ds), protocol)  # those of `pointcanon eval` (the canonical clouds do not depend on them)
        dumps[f"{split}_{protocol}"] = hypothesis_outputs(model, ds, rots, progress=True)
        if a.dumps:
            atomic_write(a.dumps, lambda tmp: torch.save(dumps, tmp))
    train = dumps["train_z"]
    selectors = {(k, seed): fit_selector(_first(train["weights"], k), train["logits"][:, :k].float(), train["labels"],
                                         seed=seed)
                 for k in range(2, 7) for seed in a.selector_seeds}  # fitted on training shapes only
    results = {name: table(d, selectors) for name, d in reversed(dumps.items())}
    rows = list(RULES) + [f"selector_s{seed}" for seed in a.selector_seeds]
    for name, res in results.items():
        print(name)
        for rule in rows:
            print(f"  {rule:12s}" + " ".join(f"{res[f'{rule}_k{k}']:6.2f}" if f"{rule}_k{k}" in res else "     -"
                                             for k in range(1, 7)))
    if a.out:
        write_json(Path(a.out), results)


if __name__ == "__main__":
    main()
