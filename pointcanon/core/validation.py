"""Argument checks shared by every entry point: clear errors instead of silent NaNs."""
from __future__ import annotations

import torch
from torch import Tensor


def check_points(x, name: str = "points", *, dim: int = 3) -> Tensor:
    """Validate a batch of point clouds ``(B, N, dim)``: a floating tensor, N >= 1, all finite."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, N, {dim}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got {x.dtype}")
    if x.ndim != 3 or x.shape[-1] != dim:
        hint = " (add a batch axis with x.unsqueeze(0))" if x.ndim == 2 and x.shape[-1] == dim else ""
        raise ValueError(f"{name} must have shape (B, N, {dim}), got {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B = 0)")
    if x.shape[1] == 0:
        raise ValueError(f"{name} is an empty point cloud (N = 0)")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).any(-1).any(-1).nonzero().flatten().tolist()
        raise ValueError(f"{name} contains NaN or inf coordinates (batch items {bad[:10]})")
    return x
