"""Part-segmentation metrics with the ShapeNetPart convention (Qi et al., PointNet, 2017).

A shape of category c is scored on c's parts only: ``IoU_p = |pred=p and true=p| / |pred=p or true=p|``
for every part p of c, where a part absent from both prediction and truth counts as 1; the shape's IoU
is the mean over c's parts. Instance mIoU averages shapes; class mIoU averages categories (each the
mean of its shapes).
"""
from __future__ import annotations

import torch
from torch import Tensor


def category_parts(part_offsets: list[int] | Tensor, num_parts: int) -> list[range]:
    """Part-id ranges per category from the first part id of each category, e.g. ShapeNetPart's
    ``[0, 4, 6, ...]`` with 50 parts."""
    offs = [int(o) for o in part_offsets] + [num_parts]
    if any(b <= a for a, b in zip(offs[:-1], offs[1:])) or offs[0] != 0:
        raise ValueError(f"part offsets must start at 0 and increase strictly below {num_parts}, got {offs[:-1]}")
    return [range(a, b) for a, b in zip(offs[:-1], offs[1:])]


def check_part_labels(labels: Tensor, category: Tensor, parts: list[range]) -> None:
    """Raise ``ValueError`` if a point label is outside its shape's category parts. Shapes ``(B, N)``, ``(B,)``."""
    if labels.ndim != 2 or category.ndim != 1 or labels.shape[0] != category.shape[0]:
        raise ValueError(f"labels must be (B, N) and category (B,), got {tuple(labels.shape)} and {tuple(category.shape)}")
    if category.min() < 0 or category.max() >= len(parts):
        raise ValueError(f"category ids must be in [0, {len(parts)}), got range [{category.min()}, {category.max()}]")
    lo = torch.tensor([parts[c].start for c in category.tolist()], device=labels.device)[:, None]
    hi = torch.tensor([parts[c].stop for c in category.tolist()], device=labels.device)[:, None]
    bad = (labels < lo) | (labels >= hi)
    if bad.any():
        b = int(bad.any(1).nonzero()[0])
        raise ValueError(f"shape {b} (category {int(category[b])}) has part ids {sorted(set(labels[b][bad[b]].tolist()))[:5]} "
                         f"outside its parts {parts[int(category[b])].start}..{parts[int(category[b])].stop - 1}")


def restrict_to_category(logits: Tensor, category: Tensor, parts: list[range]) -> Tensor:
    """Predicted part ids ``(B, N)`` from logits ``(B, N, P)``, choosing only among each shape's category parts."""
    mask = torch.full_like(logits[:, 0], float("-inf"))  # (B, P)
    for b, c in enumerate(category.tolist()):
        mask[b, parts[c].start:parts[c].stop] = 0
    return (logits + mask[:, None]).argmax(-1)


def shape_ious(pred: Tensor, labels: Tensor, category: Tensor, parts: list[range]) -> Tensor:
    """Per-shape IoU ``(B,)`` (float64) with the convention above. ``pred``, ``labels``: ``(B, N)``."""
    if pred.shape != labels.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and labels {tuple(labels.shape)} differ in shape")
    check_part_labels(labels, category, parts)
    out = torch.empty(len(category), dtype=torch.float64)
    for b, c in enumerate(category.tolist()):
        ious = []
        for p in parts[c]:
            pp, tp = pred[b] == p, labels[b] == p
            union = (pp | tp).sum().item()
            ious.append(1.0 if union == 0 else (pp & tp).sum().item() / union)
        out[b] = sum(ious) / len(ious)
    return out


def miou(ious: Tensor, category: Tensor) -> dict[str, float]:
    """Instance mIoU and class mIoU from per-shape IoUs ``(S,)`` and categories ``(S,)``."""
    if len(ious) == 0:
        raise ValueError("mIoU of no shapes is undefined")
    per_class = [ious[category == c].mean().item() for c in category.unique().tolist()]
    return {"instance_miou": ious.mean().item(), "class_miou": sum(per_class) / len(per_class)}
