"""Principal axes of point clouds, the signed axis permutations and tilts of candidate frames, and the
up hypotheses of :class:`~pointcanon.nn.CandidateCanonicalizer`.

An up hypothesis is one of the 6 signed principal axes a candidate frame stands on (its third column);
its mass is the log-sum-exp of the logits of all candidates standing on it, so ``softmax`` over the 6
masses is the probability the scorer gives each axis of being up. The gap between the two largest masses
(:func:`up_margin`) says how firmly the up axis was chosen: a small gap is a fragile choice, which another
sampling of the same surface (another density, another pipeline) may turn over.
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor

from ..core.validation import power_of_two_scale
from .ragged import segment_amax, segment_sum

NUM_UP_HYPOTHESES = 6


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


def up_masses(logits: Tensor, up_group: Tensor) -> tuple[Tensor, Tensor]:
    """The mass of every up hypothesis ``(B, 6)`` (log-sum-exp of the logits ``(B, K)`` of the candidates
    whose ``up_group`` ``(K,)`` it is) and the index of its best-scored candidate ``(B, 6)``."""
    groups = up_group.unsqueeze(0).expand_as(logits)
    masked = torch.stack([logits.masked_fill(groups != g, float("-inf")) for g in range(NUM_UP_HYPOTHESES)], 1)
    return masked.logsumexp(-1), masked.argmax(-1)  # (B, 6), (B, 6)


def up_margin(mass: Tensor) -> Tensor:
    """``(B,)``: the log-probability gap between the two most likely up hypotheses of masses ``(B, 6)``
    (>= 0; invariant, since the logits are)."""
    top2 = mass.topk(2, -1).values
    return top2[:, 0] - top2[:, 1]
