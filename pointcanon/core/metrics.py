"""Basic metrics shared by every modality."""
from __future__ import annotations

import torch
from torch import Tensor


def accuracy(logits_or_pred: Tensor, target: Tensor) -> float:
    """Fraction of correct predictions; accepts logits ``(B, C)`` or predicted labels ``(B,)``."""
    pred = logits_or_pred.argmax(-1) if logits_or_pred.ndim == target.ndim + 1 else logits_or_pred
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target {tuple(target.shape)}")
    if target.numel() == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return (pred == target).double().mean().item()


def mean_class_accuracy(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """Mean over classes present in ``target`` of per-class accuracy (ModelNet's 'mAcc')."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target {tuple(target.shape)}")
    correct = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    total.index_add_(0, target.long().cpu(), torch.ones(target.numel(), dtype=torch.float64))
    correct.index_add_(0, target.long().cpu(), (pred == target).double().cpu())
    present = total > 0
    if not present.any():
        raise ValueError("mean class accuracy of an empty batch is undefined")
    return (correct[present] / total[present]).mean().item()
