"""How to combine a candidate-canonicalized classifier's up hypotheses: accuracy of each rule.

For every shape the canonicalizer's 6 up hypotheses are shown to the backbone; the rules of
``pointcanon.nn.wrapper.combine_hypotheses`` combine the first k (exactly invariant).
Measured on the test split under the ``--protocol`` rotations (those of ``pointcanon eval``) and on the
*training* split under z rotations, the split on which a rule should be chosen (and the "selector" rule,
a small network over each hypothesis' class log-probabilities, is fitted).

    .venv/bin/python scripts/hypothesis_rules.py --classifier runs/mn40/plain_z/last.pt \
        --canonicalizer runs/mn40/canon/upright.pt --out runs/mn40/hyp_rules_frozen.json

``--classifier``: a plain checkpoint (its backbone is put behind ``--canonicalizer``) or a candidate-
canonicalized one (its own canonicalizer is used unless ``--canonicalizer`` is given).
"""
import argparse
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pointcanon.core.groups import apply_rigid
from pointcanon.core.io import write_json
from pointcanon.datasets import build_dataset
from pointcanon.models import load_canonicalizer, load_model
from pointcanon.nn import CanonicalizedModel
from pointcanon.nn.wrapper import HYPOTHESIS_RULES, combine_hypotheses
from pointcanon.train import protocol_rotations

# selector: a small network fitted on the training shapes that reads each hypothesis' class log-probabilities
# (an experiment, not a library rule); oracle: any of the k hypotheses classified right (a ceiling)
RULES = HYPOTHESIS_RULES + ("selector", "oracle")


class Selector(torch.nn.Module):
    """Posterior over k hypotheses: ``log w_k + MLP([log p_k, log w_k, one-hot rank k])`` (invariant inputs)."""

    def __init__(self, num_classes: int, hidden: int = 64):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(num_classes + 7, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 1))

    def forward(self, weights: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        b, k = weights.shape
        log_w = weights.clamp_min(1e-12).log()
        rank = torch.eye(6, dtype=logits.dtype)[:k].expand(b, k, 6)
        x = torch.cat([torch.log_softmax(logits, -1), log_w.unsqueeze(-1), rank], -1)
        return torch.softmax(log_w + self.mlp(x).squeeze(-1), -1)


def fit_selector(d: dict, k: int, epochs: int = 30, seed: int = 0) -> Selector:
    """A :class:`Selector` for the first ``k`` hypotheses, trained on the mixture's likelihood of dump ``d``."""
    torch.manual_seed(seed)
    w, lg, y = _first(d["weights"], k), d["logits"][:, :k].float(), d["labels"]
    sel = Selector(lg.shape[-1])
    opt = torch.optim.Adam(sel.parameters(), 1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            j = perm[i:i + 64]
            loss = -combine_hypotheses(sel(w[j], lg[j]), lg[j]).gather(1, y[j, None]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return sel.eval()


def _first(weights: torch.Tensor, k: int) -> torch.Tensor:
    return (weights[:, :k] / weights[:, :k].sum(1, keepdim=True)).float()


@torch.no_grad()
def dump(model: CanonicalizedModel, dataset, indices: torch.Tensor, rotations: torch.Tensor,
         batch_size: int = 64) -> dict:
    """Weights ``(S, k)`` of the ``model.num_hypotheses`` hypotheses, backbone logits ``(S, k, C)`` and labels
    ``(S,)``."""
    weights, logits, labels = [], [], []
    for start in tqdm(range(0, len(indices), batch_size), desc="hypotheses", disable=None, leave=False):
        idx = indices[start:start + batch_size]
        items = [dataset[int(i)] for i in idx]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        x = apply_rigid(x, rotations[start:start + len(idx)].to(x.dtype))
        w, out, _ = model.hypothesis_logits(x)
        weights.append(w)
        logits.append(out)
        labels.append(torch.tensor([int(it[1]) for it in items]))
    return {"weights": torch.cat(weights), "logits": torch.cat(logits), "labels": torch.cat(labels)}


@torch.no_grad()
def table(d: dict, selectors: dict | None = None) -> dict:
    """Accuracy (%) of every rule for k = 1..6; ``selectors`` {k: Selector} for the "selector" rule."""
    res = {}
    for rule in RULES:
        for k in range(1, d["weights"].shape[1] + 1):
            w, lg = _first(d["weights"], k), d["logits"][:, :k].float()
            if rule == "oracle":
                hit = (lg.argmax(-1) == d["labels"][:, None]).any(1)
            elif rule == "selector":
                if not selectors or k not in selectors:
                    continue
                hit = combine_hypotheses(selectors[k](w, lg), lg).argmax(-1) == d["labels"]
            else:
                hit = combine_hypotheses(w, lg, rule).argmax(-1) == d["labels"]
            res[f"{rule}_k{k}"] = round(100 * hit.double().mean().item(), 2)
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier", required=True)
    p.add_argument("--canonicalizer", default=None)
    p.add_argument("--protocol", default="SO3")
    p.add_argument("--train-shapes", type=int, default=None, help="training shapes used (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model, cfg, _ = load_model(a.classifier)
    canon = load_canonicalizer(a.canonicalizer) if a.canonicalizer else model.canonicalizer
    backbone = model.backbone if isinstance(model, CanonicalizedModel) else model
    model = CanonicalizedModel(canon, backbone, hypotheses=6).eval()
    kw = dict(num_points=cfg.num_points, **cfg.dataset_kwargs)
    dumps = {}
    for split, protocol, count in (("train", "z", a.train_shapes), ("test", a.protocol, None)):
        ds = build_dataset(cfg.dataset, cfg.data_root, split, **kw)
        n = len(ds)
        idx = torch.arange(n) if count is None else torch.randperm(n, generator=torch.Generator().manual_seed(0))[:count]
        rots = protocol_rotations(n, protocol)[idx]  # those of `pointcanon eval` (the canonical clouds do not depend on them)
        dumps[f"{split}_{protocol}"] = dump(model, ds, idx, rots)
    selectors = {k: fit_selector(dumps["train_z"], k) for k in (2, 3, 6)}  # fitted on training shapes only
    results = {name: table(d, selectors) for name, d in reversed(dumps.items())}
    for name, res in results.items():
        print(name)
        for rule in RULES:
            print(f"  {rule:11s}" + " ".join(f"{res[f'{rule}_k{k}']:6.2f}" if f"{rule}_k{k}" in res else "     -"
                                             for k in range(1, 7)))
    if a.out:
        write_json(Path(a.out), results)


if __name__ == "__main__":
    main()
