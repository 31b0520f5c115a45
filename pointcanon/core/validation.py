"""Argument checks shared by every entry point: clear errors instead of silent NaNs."""
from __future__ import annotations

import torch
from torch import Tensor


def check_points(x, name: str = "points", *, dim: int = 3) -> Tensor:
    """Validate a batch of point clouds ``(B, N, dim)``: a floating tensor, N >= 1, all finite."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, N, {dim}), got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        hint = "; convert with x.float()" if x.is_floating_point() else ""
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got {x.dtype}{hint}")
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


def check_dtype(module: torch.nn.Module, x: Tensor, name: str = "points") -> None:
    """Raise ``TypeError`` when ``x`` and the floating parameters of ``module`` differ in dtype (instead of a
    raw matmul error deep inside the network)."""
    p = next((p for p in module.parameters() if p.is_floating_point()), None)
    if p is not None and p.dtype != x.dtype:
        fix = "x.double()" if p.dtype == torch.float64 else "x.float()"
        to = "double" if x.dtype == torch.float64 else "float"
        raise TypeError(f"{name} are {x.dtype} but {type(module).__name__}'s weights are {p.dtype}: "
                        f"convert the input ({fix}) or the model (model.{to}())")


def cloud_radius(centred: Tensor) -> Tensor:
    """Largest point norm ``(B,)`` of centred clouds ``(B, N, 3)``, invariant to rotations and free of
    overflow (squares are taken after dividing by the largest coordinate); at least the dtype's ``tiny``."""
    with torch.no_grad():
        top = centred.detach().abs().amax((1, 2)).clamp_min(torch.finfo(centred.dtype).tiny)
        return ((centred.detach() / top[:, None, None]).norm(dim=-1).amax(-1) * top).clamp_min(torch.finfo(centred.dtype).tiny)
