"""Vector-neuron layers (Deng et al., "Vector Neurons: A General Framework for SO(3)-Equivariant
Networks", ICCV 2021, https://arxiv.org/abs/2104.12229).

Every feature is a list of 3D vectors: tensors are ``(B, C, 3, ...)`` (channels, xyz, then any number
of point / neighbour axes). A rotation or reflection ``Q`` acts on dim 2; each layer commutes with it:
``layer(Q . x) = Q . layer(x)``. None of them has a bias (a bias vector would not rotate).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

EPS = 1e-6


class VNLinear(nn.Module):
    """Channel mixing ``(B, C_in, 3, ...) -> (B, C_out, 3, ...)``; equivariant under O(3)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be positive, got {in_channels} -> {out_channels}")
        bound = 1 / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        out = self.weight @ x.reshape(b, c, -1)  # (B, C_out, 3 * ...)
        return out.view(b, -1, *x.shape[2:])

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}"


class VNCross(nn.Module):
    """Pseudovector features ``(B, C_in, 3, ...) -> (B, C_out, 3, ...)``: ``a x b / (|a| + |b| + eps)``
    of two learned channel mixes ``a = W_a x``, ``b = W_b x`` (degree-1 homogeneous in ``x``).

    Equivariant under rotations only: a reflection flips the sign (``(Qa) x (Qb) = det(Q) Q (a x b)``).
    That is the point: plain VN layers are O(3)-equivariant, so for a mirror-symmetric input every
    feature lies in the mirror plane; a cross product reaches the normal of the plane, which a frame
    needs when the data's canonical axes are not all in it."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.a = VNLinear(in_channels, out_channels)
        self.b = VNLinear(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.a(x), self.b(x)
        scale = a.norm(dim=2, keepdim=True) + b.norm(dim=2, keepdim=True) + EPS
        return torch.linalg.cross(a, b, dim=2) / scale


class VNLeakyReLU(nn.Module):
    """Vector leaky ReLU: a learned direction ``k = U x`` per channel; the component of ``x`` against
    ``k`` is removed where ``<x, k> < 0`` (kept with weight ``negative_slope``)."""

    def __init__(self, channels: int, negative_slope: float = 0.2, share_direction: bool = False):
        super().__init__()
        if not 0 <= negative_slope < 1:
            raise ValueError(f"negative_slope must be in [0, 1), got {negative_slope}")
        self.direction = VNLinear(channels, 1 if share_direction else channels)
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        k = self.direction(x)
        dot = (x * k).sum(2, keepdim=True)
        k_sq = (k * k).sum(2, keepdim=True)
        projected = x - (dot / (k_sq + EPS)) * k
        rectified = torch.where(dot >= 0, x, projected)
        return self.negative_slope * x + (1 - self.negative_slope) * rectified


class VNBatchNorm(nn.Module):
    """Batch norm of the vector lengths (invariant), directions untouched."""

    def __init__(self, channels: int, momentum: float = 0.1):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, momentum=momentum)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        length = torch.sqrt(x.pow(2).sum(2) + EPS)  # (B, C, ...)
        scaled = self.norm(length.reshape(b, c, -1)).view_as(length)
        return x * (scaled / length).unsqueeze(2)


class VNLinearLeakyReLU(nn.Sequential):
    """``VNLinear -> VNBatchNorm (optional) -> VNLeakyReLU``."""

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool = True,
                 negative_slope: float = 0.2, share_direction: bool = False):
        layers = [VNLinear(in_channels, out_channels)]
        if batch_norm:
            layers.append(VNBatchNorm(out_channels))
        layers.append(VNLeakyReLU(out_channels, negative_slope, share_direction))
        super().__init__(*layers)


def vn_mean_pool(x: Tensor, dim: int = -1) -> Tensor:
    """Mean over a point / neighbour axis; equivariant and permutation invariant."""
    return x.mean(dim)


class VNMaxPool(nn.Module):
    """Per channel, the vector (over the last axis) with the largest projection on a learned
    direction: ``(B, C, 3, N) -> (B, C, 3)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.direction = VNLinear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        score = (x * self.direction(x)).sum(2)  # (B, C, N), invariant
        idx = score.argmax(-1)  # (B, C)
        return torch.gather(x, -1, idx[:, :, None, None].expand(-1, -1, 3, 1)).squeeze(-1)


class VNInvariant(nn.Module):
    """Invariant scalars from vector features: coordinates of every vector in a learned equivariant
    frame of 3 vectors, ``(B, C, 3, ...) -> (B, C, 3, ...)`` (last dims are now invariant)."""

    def __init__(self, channels: int):
        super().__init__()
        self.frame = VNLinear(channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        z = self.frame(x)  # (B, 3, 3, ...)
        return torch.einsum("bc i..., bk i... -> bck...".replace(" ", ""), x, z)
