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


# Coordinates far from the origin relative to the cloud's size: the input's own rounding, eps(dtype) * max|x|,
# is then a material part of the shape, and another rounding of the same surface (another pose, another
# pipeline) may get another frame. Canonicalizers flag such clouds as degenerate above this fraction of the
# cloud radius. In float32 (eps 1.2e-7) a cloud of radius 1 is flagged from about 8,000 away from the origin
# on; at 1e3 away its rounding is about 1.2e-4 of the radius, at 1e4 about 1.2e-3, at 1e5 about 1.2e-2.
ROUNDING_TOL = 1e-3


def coordinate_limit(dtype: torch.dtype) -> float:
    """The largest coordinate magnitude a canonicalizer takes in ``dtype``: a quarter of the dtype's largest
    finite value (8.5e37 in float32, 4.5e307 in float64), so that centred and rotated coordinates, at most
    2 sqrt(3) times larger, stay finite."""
    return torch.finfo(dtype).max / 4


def check_range(x: Tensor, name: str = "points") -> Tensor:
    """Raise ``ValueError`` when a coordinate of ``x`` is beyond :func:`coordinate_limit` of its dtype."""
    top, limit = float(x.detach().abs().max()), coordinate_limit(x.dtype)
    if top > limit:
        fix = " or convert them to float64 (x.double())" if x.dtype == torch.float32 else ""
        raise ValueError(f"{name} reach |x| = {top:.3g}, beyond the {limit:.3g} that {x.dtype} canonical coordinates "
                         f"can hold (centring and rotating may double them): rescale them{fix}")
    return x


def power_of_two_scale(top: Tensor) -> Tensor:
    """A power of two within a factor 2 of each of ``top`` ``(...)`` (>= 0; 0.5 for 0), float64: dividing by
    it is exact (short of subnormals) and brings values up to ``top`` into [-2, 2] without overflow."""
    two = torch.tensor(2.0, dtype=torch.float64, device=top.device)
    return torch.pow(two, (torch.frexp(top.double()).exponent - 1).double())


def centre(x: Tensor) -> tuple[Tensor, Tensor]:
    """Centroid ``(B, 3)`` and centred clouds ``(B, N, 3)`` of ``x`` ``(B, N, 3)``, in ``x``'s dtype, both
    computed in float64 after an exact power-of-two scaling: no overflow for any finite input (float32
    sums of 1e36 overflow), float64 results equal ``x - x.mean(1)`` bit for bit, and a float32 cloud far from
    the origin is centred before it is rounded to float32 again (the input's own rounding stays)."""
    with torch.no_grad():
        m = power_of_two_scale(x.detach().abs().amax((1, 2)))[:, None, None]
    x64 = x.double() / m
    c = x64.mean(1, keepdim=True)
    return (c * m).squeeze(1).to(x.dtype), ((x64 - c) * m).to(x.dtype)


def coarse_rounding(top: Tensor, radius: Tensor, dtype: torch.dtype, tol: float = ROUNDING_TOL) -> Tensor:
    """``(B,)``: the rounding of coordinates as large as ``top`` ``(B,)`` (the largest ``|x|`` of each cloud) in
    ``dtype`` exceeds ``tol`` (:data:`ROUNDING_TOL`) times the cloud ``radius`` ``(B,)``."""
    return torch.finfo(dtype).eps * top.double() > tol * radius.double()
