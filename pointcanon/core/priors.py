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


PRIORS = {"identity": identity_prior, "upright": upright_prior}
