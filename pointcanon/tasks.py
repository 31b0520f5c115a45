"""What differs between classification and part segmentation in training and evaluation: the batch
layout, the backbone, the loss and the metrics. Everything else (rotations, canonicalization, priors,
resuming, data parallelism) is shared in :mod:`pointcanon.train`.

Dataset items: classification ``(points (N, 3), label)``; part segmentation
``(points (N, 3), category, parts (N,))`` from a dataset with ``num_parts``, ``num_categories`` and
``category_parts`` (a list of part-id ranges per category).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core.metrics import mean_class_accuracy
from .core.segmentation import miou, restrict_to_category, shape_ious
from .nn import build_backbone, build_segmenter


def _stack(items, i):
    return torch.stack([torch.as_tensor(it[i]) for it in items])


class Classification:
    name = "cls"

    @staticmethod
    def sizes(dataset) -> dict:
        return {"num_classes": dataset.num_classes}

    @staticmethod
    def build_backbone(name: str, sizes: dict, kwargs: dict) -> nn.Module:
        return build_backbone(name, sizes["num_classes"], **kwargs)

    @staticmethod
    def collate(dataset, indices) -> tuple[Tensor, tuple, Tensor]:
        items = [dataset[int(i)] for i in indices]
        return _stack(items, 0), (), _stack(items, 1).long()

    @staticmethod
    def logits(out) -> Tensor:
        return out  # (B, C)

    @staticmethod
    def loss(out, target: Tensor) -> Tensor:
        return F.cross_entropy(out, target)

    @staticmethod
    def correct(out, target: Tensor) -> tuple[float, int]:
        return (out.argmax(-1) == target).sum().item(), target.numel()

    @staticmethod
    def eval_batch(out, args, target: Tensor, dataset) -> dict:
        return {"pred": out.argmax(-1).cpu(), "label": target.cpu()}

    @staticmethod
    def summary(g: dict, dataset) -> dict:
        num = getattr(dataset, "num_classes", int(g["label"].max()) + 1)
        return {"acc": (g["pred"] == g["label"]).double().mean().item(),
                "macc": mean_class_accuracy(g["pred"], g["label"], num)}


class PartSegmentation:
    name = "partseg"

    @staticmethod
    def sizes(dataset) -> dict:
        return {"num_parts": dataset.num_parts, "num_categories": dataset.num_categories}

    @staticmethod
    def build_backbone(name: str, sizes: dict, kwargs: dict) -> nn.Module:
        return build_segmenter(name, sizes["num_parts"], sizes["num_categories"], **kwargs)

    @staticmethod
    def collate(dataset, indices) -> tuple[Tensor, tuple, Tensor]:
        items = [dataset[int(i)] for i in indices]
        return _stack(items, 0), (_stack(items, 1).long(),), _stack(items, 2).long()

    @staticmethod
    def logits(out) -> Tensor:
        return out["logits"]  # (B, N, P)

    @staticmethod
    def loss(out, target: Tensor) -> Tensor:
        return F.cross_entropy(out["logits"].flatten(0, 1), target.flatten())

    @staticmethod
    def correct(out, target: Tensor) -> tuple[float, int]:
        return (out["logits"].argmax(-1) == target).sum().item(), target.numel()

    @staticmethod
    def eval_batch(out, args, target: Tensor, dataset) -> dict:
        category = args[0].cpu()
        pred = restrict_to_category(out["logits"].cpu(), category, dataset.category_parts)
        return {"iou": shape_ious(pred, target.cpu(), category, dataset.category_parts), "category": category,
                "correct": (pred == target.cpu()).double().mean(1)}

    @staticmethod
    def summary(g: dict, dataset) -> dict:
        return {**miou(g["iou"], g["category"]), "acc": g["correct"].mean().item()}


TASKS = {t.name: t for t in (Classification, PartSegmentation)}


def get_task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name]
