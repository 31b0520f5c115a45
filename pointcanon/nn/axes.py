"""Principal axes of point clouds, and the signed axis permutations and tilts that make the candidate
frames of :class:`~pointcanon.nn.CandidateCanonicalizer` (its up hypotheses: :mod:`pointcanon.nn.hypotheses`).
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from ..core.validation import power_of_two_scale
from .ragged import segment_amax, segment_sum


def yaw_turns(n: int, dtype=torch.float64) -> Tensor:
    """``(n, 3, 3)``: rotations about z by ``360 k / n`` degrees, ``k = 0..n-1`` (entries of quarter turns exact)."""
    angle = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    c, s = torch.cos(angle), torch.sin(angle)
    c, s = (torch.where((v - v.round()).abs() < 1e-12, v.round(), v) for v in (c, s))
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rows = [torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1), torch.stack([zero, zero, one], -1)]
    return torch.stack(rows, 1).to(dtype)


# turns by 0, 90, 180, 270 deg about z (exact integer matrices): the 4 fronts of one up axis
TURNS = yaw_turns(4)


def signed_permutations(proper: bool = True, dtype=torch.float64) -> Tensor:
    """The 3x3 signed permutation matrices ``(24, 3, 3)`` with det +1 (``proper``) or all 48.
    The identity comes first."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3, dtype=torch.float64)
            for col, row in enumerate(perm):
                m[row, col] = signs[col]
            if not proper or torch.linalg.det(m) > 0:
                mats.append(m)
    return torch.stack(mats).to(dtype)


def tilt_rotations(tilts_deg, dtype=torch.float64) -> Tensor:
    """``R_x(a) @ R_y(b)`` for every pair ``(a, b)`` of ``tilts_deg`` (degrees): ``(T*T, 3, 3)``. They tilt
    a candidate's z axis by ``a`` about its x axis and ``b`` about its y axis; 0 gives the identity."""
    t = torch.deg2rad(torch.as_tensor(tuple(tilts_deg), dtype=torch.float64))
    c, s = torch.cos(t), torch.sin(t)
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    rx = torch.stack([one, zero, zero, zero, c, -s, zero, s, c], -1).view(-1, 3, 3)
    ry = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], -1).view(-1, 3, 3)
    return (rx[:, None] @ ry[None, :]).reshape(-1, 3, 3).to(dtype)


def principal_frames(centred: Tensor, batch: Tensor | None = None, counts: Tensor | None = None
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Principal axes of centred clouds ``(B, N, 3)`` (or a ragged ``(P, 3)`` with ``batch`` ``(P,)`` and the
    point ``counts`` ``(B,)``): frames ``(B, 3, 3)`` (columns by ascending eigenvalue, det +1, float64,
    detached), the relative eigengap ``(B,)`` in [0, 1] (``min(l2 - l1, l3 - l2) / l3``; 0 for a cloud
    with no extent) and the extent ``(B,)``, the square root of the largest eigenvalue (float64).

    The covariance is taken of the cloud divided by a power of two near its largest coordinate (exact), so
    that coordinates up to float64's limit do not overflow its squares."""
    with torch.no_grad():
        x = centred.detach().double()
        if batch is None:
            m = power_of_two_scale(x.abs().amax((1, 2)))  # (B,)
            x = x / m[:, None, None]
            cov = x.transpose(1, 2) @ x / x.shape[1]
        else:
            m = power_of_two_scale(segment_amax(x.abs().amax(-1), batch, counts.shape[0]))
            x = x / m[batch, None]
            cov = segment_sum(x[:, :, None] * x[:, None, :], batch, counts.shape[0]) / counts.double()[:, None, None]
        evals, evecs = torch.linalg.eigh(cov)
        flip = torch.where(torch.linalg.det(evecs) < 0, -1.0, 1.0).to(evecs.dtype)
        evecs = torch.cat([evecs[..., :2], evecs[..., 2:] * flip[:, None, None]], -1)
        top = evals[:, 2]
        gap = torch.minimum(evals[:, 1] - evals[:, 0], evals[:, 2] - evals[:, 1])
        tiny = torch.finfo(torch.float64).tiny ** 0.5
        rel = torch.where(top > tiny, gap / top.clamp_min(tiny), torch.zeros_like(top)).clamp(0, 1)
    return evecs, rel, top.clamp_min(0).sqrt() * m

