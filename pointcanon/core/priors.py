"""Prior losses that pull the canonical orientation of in-distribution data towards the orientation
the pretrained backbone saw in training (Mondal et al., "Equivariant Adaptation of Large Pretrained
Models", NeurIPS 2023). One module serves point clouds (continuous frames) and images (discrete C_n).

Each loss returns one value per input, ``(B,)``; reduce it as you like.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .groups import axis_index


def _check_frame(frame: Tensor) -> None:
    if frame.ndim != 3 or frame.shape[-1] != frame.shape[-2]:
        raise ValueError(f"frame must be (B, d, d), got shape {tuple(frame.shape)}")


def identity_prior(frame: Tensor) -> Tensor:
    """``||R - I||_F^2`` ``(B,)``: for backbones trained on upright, unaugmented data.
    Zero exactly at the identity; equals ``2 * (d - trace R)`` for orthogonal R."""
    _check_frame(frame)
    eye = torch.eye(frame.shape[-1], dtype=frame.dtype, device=frame.device)
    return (frame - eye).pow(2).sum((-1, -2))


def upright_prior(frame: Tensor, up_axis: str | int = "z") -> Tensor:
    """``||R^T e_up - e_up||^2`` ``(B,)``: only the tilt of the up axis is penalised, any yaw is free.
    For backbones trained with rotations about the up axis. The input's up direction lands on
    ``e_up @ R = (R^T e_up)^T`` in canonical coordinates."""
    _check_frame(frame)
    i = axis_index(up_axis)
    up_in_canonical = frame[:, i, :]  # row i of R = R^T e_up
    e = torch.zeros_like(up_in_canonical)
    e[:, i] = 1
    return (up_in_canonical - e).pow(2).sum(-1)


def discrete_prior(logits: Tensor, target: Tensor | None = None) -> Tensor:
    """KL(target || softmax(logits)) ``(B,)`` over the elements of a discrete group.

    ``target`` is a distribution over the ``|G|`` elements, ``(|G|,)`` or ``(B, |G|)``; by default all
    mass on element 0 (the identity, i.e. "upright"), which makes this the cross-entropy towards it.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, |G|), got shape {tuple(logits.shape)}")
    n = logits.shape[-1]
    if target is None:
        target = F.one_hot(torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device), n).to(logits.dtype)
    target = torch.as_tensor(target, dtype=logits.dtype, device=logits.device).expand_as(logits)
    if (target < 0).any() or not torch.allclose(target.sum(-1), torch.ones((), dtype=target.dtype, device=target.device)):
        raise ValueError("target must be a probability distribution over the group elements (non-negative, sums to 1)")
    log_p = F.log_softmax(logits, dim=-1)
    plogp = torch.where(target > 0, target * torch.log(target.clamp_min(1e-30)), torch.zeros_like(target))
    return (plogp - target * log_p).sum(-1)


class EmpiricalPrior:
    """Squared distance ``min_j ||R - R_j||_F^2`` ``(B,)`` from a frame to the nearest orientation the
    data was actually seen in, fitted from a sample ``R_j`` ``(M, 3, 3)`` of them.

    This is the continuous counterpart of :func:`discrete_prior` with an :func:`empirical_distribution`
    target: fitted from ``{I}`` it is :func:`identity_prior`; from yaw rotations (data augmented about
    the up axis) it approaches :func:`upright_prior` as ``M`` grows; every fitted orientation is a zero.
    """

    def __init__(self, rotations: Tensor, *, atol: float = 1e-4):
        rotations = torch.as_tensor(rotations)
        if rotations.ndim != 3 or rotations.shape[1:] != (3, 3) or len(rotations) == 0:
            raise ValueError(f"rotations must be (M, 3, 3) with M >= 1, got shape {tuple(rotations.shape)}")
        if not torch.isfinite(rotations).all():
            raise ValueError("rotations contain NaN or inf")
        eye = torch.eye(3, dtype=rotations.dtype)
        err = (rotations.transpose(1, 2) @ rotations - eye).abs().amax((1, 2))
        if (err > atol).any() or (torch.linalg.det(rotations) < 0).any():
            raise ValueError(f"rotations must be proper rotations (R^T R = I within {atol}, det +1); "
                             f"worst orthogonality error {err.max().item():.3g}")
        self.rotations = rotations

    @classmethod
    def from_sampler(cls, sample, num_samples: int = 256, seed: int = 0) -> "EmpiricalPrior":
        """Fit from ``sample(n, generator) -> (n, 3, 3)``, e.g. the training augmentation:
        ``EmpiricalPrior.from_sampler(lambda n, g: random_rotations(n, "z", generator=g))``."""
        return cls(sample(num_samples, torch.Generator().manual_seed(seed)))

    def __call__(self, frame: Tensor) -> Tensor:
        _check_frame(frame)
        r = self.rotations.to(frame.dtype).to(frame.device)
        # ||R - R_j||^2 = 6 - 2 tr(R_j^T R) for rotations: one matrix product, no (B, M, 3, 3) tensor
        dots = torch.einsum("mij,bij->bm", r, frame)  # tr(R_j^T R)
        dist = (frame.pow(2).sum((1, 2))[:, None] + r.pow(2).sum((1, 2))[None]) - 2 * dots
        return dist.amin(1).clamp_min(0)

    def __repr__(self) -> str:
        return f"EmpiricalPrior({len(self.rotations)} orientations)"


def empirical_distribution(indices: Tensor, num_elements: int, *, smoothing: float = 0.0) -> Tensor:
    """Distribution ``(|G|,)`` of the discrete orientations (group-element indices) a dataset actually
    has, with additive ``smoothing`` per element: the ``target`` of :func:`discrete_prior`."""
    indices = torch.as_tensor(indices).reshape(-1)
    if indices.numel() == 0:
        raise ValueError("no orientations given")
    if indices.dtype.is_floating_point or indices.min() < 0 or indices.max() >= num_elements:
        raise ValueError(f"indices must be integers in [0, {num_elements}), got range "
                         f"[{indices.min().item()}, {indices.max().item()}]")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    counts = torch.bincount(indices.long(), minlength=num_elements).double() + smoothing
    return counts / counts.sum()


PRIORS = {"identity": identity_prior, "upright": upright_prior}
