"""Fitting a :class:`~pointcanon.nn.hypotheses.HypothesisSelector` to a trained candidate-canonicalized
classifier (``pointcanon fit-selector``): the classifier is run once over its training shapes in each of
its k up hypotheses, and the selector (a few thousand parameters) learns from those outputs which pose to
believe. The canonicalizer and the backbone are not changed; the result is a new checkpoint whose
``hypothesis_rule`` is ``"selector"``.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .core.groups import apply_rigid
from .core.io import check_output_file, save_checkpoint
from .nn import CanonicalizedModel
from .nn.hypotheses import TRAINING_RULES, HypothesisSelector, check_hypotheses, combine_hypotheses


@torch.no_grad()
def hypothesis_outputs(model: CanonicalizedModel, dataset, rotations: Tensor, *, batch_size: int = 64,
                       progress: bool = False) -> dict[str, Tensor]:
    """Run ``model`` over every shape of a classification ``dataset`` (shape i turned by ``rotations[i]``
    ``(S, 3, 3)``) in its ``model.num_hypotheses`` up hypotheses: ``{"weights": (S, k), "logits": (S, k, C),
    "labels": (S,)}``."""
    from .tasks import get_task

    if not isinstance(model, CanonicalizedModel) or model.num_hypotheses < 2:
        raise ValueError("hypothesis_outputs needs a CanonicalizedModel with hypotheses >= 2")
    if len(rotations) != len(dataset):
        raise ValueError(f"one rotation per shape: {len(rotations)} rotations for {len(dataset)} shapes")
    task = get_task("cls")
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {"weights": [], "logits": [], "labels": []}
    for start in tqdm(range(0, len(dataset), batch_size), desc="hypotheses", disable=None if progress else True,
                      leave=False):
        idx = torch.arange(start, min(start + batch_size, len(dataset)))
        x, args, y = task.collate(dataset, idx)
        w, logits, _ = model.hypothesis_logits(apply_rigid(x, rotations[idx].to(x.dtype)), *args)
        for k, v in (("weights", w), ("logits", logits), ("labels", y)):
            parts[k].append(v.cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def _mixture_nll(selector: HypothesisSelector, weights: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
    return -combine_hypotheses(weights, logits, "selector", selector).gather(1, labels[:, None]).mean()


def fit_selector(weights: Tensor, logits: Tensor, labels: Tensor, *, epochs: int = 30, lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 64, hidden: int = 64, seed: int = 0,
                 progress: bool = False) -> HypothesisSelector:
    """A :class:`HypothesisSelector` fitted by Adam to the mixture's likelihood of the true classes
    ``labels`` ``(S,)``, given the hypotheses' ``weights`` ``(S, k)`` and backbone ``logits`` ``(S, k, C)``
    (of training shapes: :func:`hypothesis_outputs`). Deterministic for a given ``seed``."""
    if weights.ndim != 2 or logits.shape[:2] != weights.shape or labels.shape != weights.shape[:1]:
        raise ValueError(f"expected weights (S, k), logits (S, k, C), labels (S,); got {tuple(weights.shape)}, "
                         f"{tuple(logits.shape)}, {tuple(labels.shape)}")
    if not (torch.isfinite(weights).all() and torch.isfinite(logits).all()):
        raise ValueError("weights and logits must be finite")
    if labels.min() < 0 or labels.max() >= logits.shape[-1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[-1]}), got {int(labels.min())}..{int(labels.max())}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        selector = HypothesisSelector(logits.shape[-1], hidden).to(logits.dtype)
    opt = torch.optim.Adam(selector.parameters(), lr, weight_decay=weight_decay)
    selector.train()
    for _ in tqdm(range(epochs), desc="fit selector", disable=None if progress else True, leave=False):
        perm = torch.randperm(len(labels), generator=gen)
        for i in range(0, len(labels), batch_size):
            j = perm[i:i + batch_size]
            loss = _mixture_nll(selector, weights[j], logits[j], labels[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return selector.eval()


@torch.no_grad()
def rule_accuracies(outputs: dict[str, Tensor], selector: HypothesisSelector | None = None) -> dict[str, float]:
    """Accuracy (%) of each hypothesis rule on ``outputs`` (:func:`hypothesis_outputs`), and of the single
    best frame ("frame"); "selector" only with ``selector``."""
    w, lg, y = outputs["weights"], outputs["logits"], outputs["labels"]
    res = {"frame": lg[:, 0].argmax(-1)}
    for rule in TRAINING_RULES:
        res[rule] = combine_hypotheses(w, lg, rule).argmax(-1)
    if selector is not None:
        res["selector"] = combine_hypotheses(w, lg, "selector", selector).argmax(-1)
    return {k: round(100 * (v == y).double().mean().item(), 2) for k, v in res.items()}


def fit_selector_checkpoint(checkpoint, out, hypotheses: int | None = None, *, epochs: int = 30, seed: int = 0,
                            max_shapes: int | None = None, batch_size: int = 64, progress: bool = False,
                            overwrite: bool = False, log=print) -> dict:
    """Fit a selector to the classifier of ``checkpoint`` over its ``hypotheses`` most likely up hypotheses
    (default: as trained, or 3 for a one-frame classifier) on its training split, each shape turned as in
    its training (``train_rotation``), and write the classifier with it to ``out`` (a new checkpoint;
    ``hypothesis_rule="selector"``; an existing file is replaced only with ``overwrite``, never the input).
    Returns the settings, the fit's ``seconds`` and the training-split accuracy of every rule
    (``"train_accuracy"``), also stored in the checkpoint as ``"selector_fit"``."""
    from .datasets import Subsample, build_dataset
    from .models import load_model
    from .train import protocol_rotations

    t0 = time.time()
    if Path(out).expanduser().resolve() == Path(checkpoint).resolve():
        raise ValueError(f"--out {out} is the checkpoint being read; write the fitted classifier elsewhere")
    out = check_output_file(out, "--out", overwrite=overwrite)
    model, cfg, state = load_model(checkpoint)
    if not (isinstance(model, CanonicalizedModel) and cfg.canonicalizer == "candidate" and cfg.task == "cls"):
        raise ValueError(f"{checkpoint} must hold a classifier with a candidate canonicalizer (trained with "
                         f"--canonicalizer candidate); it has canonicalizer {cfg.canonicalizer!r}, task {cfg.task!r}")
    hypotheses = (cfg.hypotheses if cfg.hypotheses > 1 else 3) if hypotheses is None else hypotheses
    check_hypotheses(hypotheses, "--hypotheses", low=2)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"--epochs must be a positive int, got {epochs!r}")
    if max_shapes is not None and (isinstance(max_shapes, bool) or not isinstance(max_shapes, int) or max_shapes < 1):
        raise ValueError(f"--max-shapes must be a positive number of shapes, got {max_shapes!r}")
    train_set = build_dataset(cfg.dataset, cfg.data_root, "train", cfg.num_points, **cfg.dataset_kwargs)
    train_set = train_set if max_shapes is None else Subsample(train_set, max_shapes)
    runner = CanonicalizedModel(model.canonicalizer, model.backbone, hypotheses=hypotheses).eval()
    protocol = "upright" if cfg.train_rotation == "none" else cfg.train_rotation
    log(f"running {checkpoint} over {hypotheses} up hypotheses on {len(train_set)} training shapes ({protocol})")
    outputs = hypothesis_outputs(runner, train_set, protocol_rotations(len(train_set), protocol, seed),
                                 batch_size=batch_size, progress=progress)
    selector = fit_selector(outputs["weights"], outputs["logits"], outputs["labels"], epochs=epochs, seed=seed,
                            progress=progress)
    fitted = CanonicalizedModel(model.canonicalizer, model.backbone, hypotheses=hypotheses,
                                hypothesis_rule="selector", selector=selector.float()).eval()
    fit = rule_accuracies(outputs, selector)
    info = {"source": str(checkpoint), "hypotheses": hypotheses, "epochs": epochs, "seed": seed,
            "training_shapes": len(train_set), "rotation": protocol, "train_accuracy": fit,
            "seconds": round(time.time() - t0, 1)}
    new_cfg = dataclasses.replace(cfg, hypotheses=hypotheses, hypothesis_rule="selector",
                                  hypothesis_training="sample")
    kept = {k: v for k, v in state.items() if k not in ("format", "optimizer", "scheduler", "config", "model")}
    save_checkpoint(out, {**kept, "config": dataclasses.asdict(new_cfg), "model": fitted.state_dict(),
                          "selector_fit": info})
    return info
