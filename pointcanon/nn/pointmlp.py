"""The shared point MLP of the candidate canonicalizer's scorers: layers, head and masked pooling."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class PointBatchNorm(nn.BatchNorm1d):
    """Batch norm over the last (channel) dimension of ``(..., C)`` features. Its statistics are
    pooled over all sign flips of all inputs, a set that moves with the inputs: invariance holds in
    training mode too."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


def point_mlp(hidden: tuple[int, ...], batch_norm: bool, width: int = 3) -> nn.Sequential:
    """Linear (+ batch norm) + ReLU layers of sizes ``hidden`` on ``(..., width)`` point features; the last
    layer has no ReLU (pooling follows)."""
    layers = []
    for h in hidden:
        layers += [nn.Linear(width, h)] + ([PointBatchNorm(h)] if batch_norm else []) + [nn.ReLU()]
        width = h
    return nn.Sequential(*layers[:-1])


def head(width: int, out: int) -> nn.Sequential:
    """ReLU, 128 hidden units, ``out`` outputs: a pooled feature ``(..., width)`` to scores."""
    return nn.Sequential(nn.ReLU(), nn.Linear(width, 128), nn.ReLU(), nn.Linear(128, out))


def pooled(trunk: nn.Module, pts: Tensor, mask: Tensor | None, mean: bool) -> Tensor:
    """Pooled ``trunk`` features ``(B, F, S, H)`` of ``(B, F, S, M, C)`` points (max, and with ``mean`` the mean
    beside it: ``H`` = twice the trunk's width); with a ``(B, M)`` mask, of the real points only (the trunk,
    batch norm included, never sees the padding)."""
    if mask is None:
        feats = trunk(pts)
        top = feats.amax(-2)
        return torch.cat([top, feats.mean(-2)], -1) if mean else top
    moved = pts.permute(0, 3, 1, 2, 4)  # (B, M, F, S, C)
    feats = trunk(moved[mask])  # (P', F, S, H)
    full = feats.new_full(moved.shape[:-1] + feats.shape[-1:], float("-inf"))
    full[mask] = feats
    top = full.amax(1)
    if not mean:
        return top
    zeros = feats.new_zeros(moved.shape[:-1] + feats.shape[-1:])
    zeros[mask] = feats
    count = mask.sum(1).to(feats.dtype).clamp_min(1)[:, None, None, None]
    return torch.cat([top, zeros.sum(1) / count], -1)
