"""Ragged batches in PyTorch Geometric's convention: the points of all clouds stacked, ``(P, 3)``, and a
``batch`` vector ``(P,)`` giving each point's cloud (0, 0, ..., 1, 1, ..., B-1; sorted, no empty cloud).

Everything is vectorised over clouds (segment reductions and padded, masked blocks); nothing loops over
clouds in Python. The helpers here are what the ragged paths of the canonicalizers and backbones share.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..core.validation import check_points, power_of_two_scale
from .knn import subset_priority


def check_ragged(x: Tensor, batch: Tensor, name: str = "points") -> tuple[Tensor, Tensor]:
    """Validate a ragged batch; returns the point count of every cloud ``(B,)`` and the offset of its first
    point ``(B,)``. Raises ``TypeError`` / ``ValueError`` naming the problem."""
    if isinstance(x, Tensor) and x.ndim == 2 and x.is_floating_point() and x.shape[0] and not torch.isfinite(x).all():
        if isinstance(batch, Tensor) and batch.shape == x.shape[:1] and not batch.is_floating_point():
            bad = (~torch.isfinite(x)).any(-1).nonzero().flatten()
            raise ValueError(f"{name} contains NaN or inf coordinates (clouds {batch[bad].unique()[:10].tolist()} "
                             f"of the ragged batch; points {bad[:10].tolist()})")
    check_points(x.unsqueeze(0) if isinstance(x, Tensor) and x.ndim == 2 else x, name)
    if not isinstance(batch, Tensor) or batch.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"batch must be an integer torch.Tensor of shape (P,), got {getattr(batch, 'dtype', type(batch))}")
    if batch.ndim != 1 or batch.shape[0] != x.shape[0]:
        raise ValueError(f"batch must have shape ({x.shape[0]},) like the points, got {tuple(batch.shape)}")
    batch = batch.long()
    if batch[0] != 0 or (batch[1:] - batch[:-1] < 0).any() or (batch[1:] - batch[:-1] > 1).any():
        raise ValueError("batch must be sorted, start at 0 and skip no cloud (0, 0, 1, 1, 1, 2, ...): "
                         "PyTorch Geometric's Batch.batch has this form")
    counts = torch.bincount(batch)
    offsets = torch.cumsum(counts, 0) - counts
    return counts, offsets


def segment_amax(src: Tensor, batch: Tensor, size: int) -> Tensor:
    """Largest value per cloud: ``src`` ``(P, ...)`` -> ``(size, ...)``."""
    index = batch.view(-1, *([1] * (src.ndim - 1))).expand_as(src)
    out = src.new_empty((size,) + src.shape[1:])
    return out.scatter_reduce(0, index, src, reduce="amax", include_self=False)


def segment_sum(src: Tensor, batch: Tensor, size: int) -> Tensor:
    """Sum per cloud: ``src`` ``(P, ...)`` -> ``(size, ...)``."""
    return src.new_zeros((size,) + src.shape[1:]).index_add_(0, batch, src)


def ragged_subset(counts: Tensor, offsets: Tensor, m: int | None, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Per cloud, the points :func:`~pointcanon.nn.knn.fixed_index_sample` would pick (all of them when ``m`` is None or the cloud
    has at most ``m``), as a padded block: indices into the stacked points ``(B, M)`` and a mask ``(B, M)``
    of the real entries (``M`` = the largest subset). Padding entries index point 0 and are masked."""
    b = counts.shape[0]
    device = counts.device
    batch = torch.repeat_interleave(torch.arange(b, device=device), counts)
    local = torch.arange(batch.shape[0], device=device) - offsets[batch]
    if m is None:
        keep = torch.ones_like(batch, dtype=torch.bool)
    else:
        key = batch * (1 << 40) + subset_priority(local, seed)  # sorted by cloud, then by priority
        order = torch.argsort(key, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.shape[0], device=device) - offsets[batch[order]]
        keep = rank < m
    chosen = keep.nonzero().flatten()  # ascending: by cloud, then by local index
    sizes = torch.bincount(batch[chosen], minlength=b)
    slot = torch.arange(chosen.shape[0], device=device) - (torch.cumsum(sizes, 0) - sizes)[batch[chosen]]
    width = int(sizes.max())
    idx = torch.zeros(b, width, dtype=torch.long, device=device)
    mask = torch.zeros(b, width, dtype=torch.bool, device=device)
    idx[batch[chosen], slot] = chosen
    mask[batch[chosen], slot] = True
    return idx, mask


def masked_knn(x: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest neighbours within each padded cloud ``x`` ``(B, M, D)`` among its real points ``mask``
    ``(B, M)``, the point itself included (nearest first): indices ``(B, M, k')`` with ``k' = min(k, M)``
    and which of them are real ``(B, M, k')`` (a cloud with fewer than ``k`` points has fewer)."""
    b, m, _ = x.shape
    k_eff = min(k, m)
    sq = x.pow(2).sum(-1)
    d = sq[:, :, None] - 2 * x @ x.transpose(1, 2) + sq[:, None, :]
    d = d.masked_fill(~mask[:, None, :], float("inf"))
    dist, idx = d.topk(k_eff, dim=-1, largest=False)
    return idx, torch.isfinite(dist) & mask[:, :, None]


def segment_mean(src: Tensor, batch: Tensor, size: int, counts: Tensor | None = None) -> Tensor:
    """Mean per cloud: ``src`` ``(P, ...)`` -> ``(size, ...)``."""
    counts = torch.bincount(batch, minlength=size) if counts is None else counts
    return segment_sum(src, batch, size) / counts.to(src.dtype).clamp_min(1).view(-1, *([1] * (src.ndim - 1)))


def ragged_centre(x: Tensor, batch: Tensor, counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Centroids ``(B, 3)``, the centred points ``(P, 3)`` and every cloud's radius ``(B,)`` (largest point
    norm), without overflow: centred in float64 after an exact power-of-two scaling, like
    :func:`~pointcanon.core.validation.centre`, the radius like :func:`~pointcanon.core.validation.cloud_radius`."""
    b = counts.shape[0]
    tiny = torch.finfo(x.dtype).tiny
    with torch.no_grad():
        m = power_of_two_scale(segment_amax(x.detach().abs().amax(-1), batch, b))[:, None]  # (B, 1)
    x64 = x.double() / m[batch]
    c = segment_mean(x64, batch, b, counts)
    centroid, centred = (c * m).to(x.dtype), ((x64 - c[batch]) * m[batch]).to(x.dtype)
    with torch.no_grad():
        top = segment_amax(centred.detach().abs().amax(-1), batch, b).clamp_min(tiny)
        radius = (segment_amax((centred.detach() / top[batch, None]).norm(dim=-1), batch, b) * top).clamp_min(tiny)
    return centroid, centred, radius
