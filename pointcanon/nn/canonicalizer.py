"""What every point-cloud canonicalizer of pointcanon shares (:class:`Canonicalizer`): ``forward(x, batch=None)``
returns a :class:`~pointcanon.core.result.Canonicalization`, and :meth:`Canonicalizer.prior_loss` is the term a
training run adds to the task loss to teach it the orientation of in-distribution data, whatever the kind
(:class:`~pointcanon.nn.vn_canonicalizer.VNCanonicalizer`: a prior on its frame;
:class:`~pointcanon.nn.candidates.CandidateCanonicalizer`: a cross-entropy over its candidates).
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from ..core.groups import random_rotations
from ..core.priors import PRIORS, EmpiricalPrior
from ..core.result import Canonicalization


def frame_prior_loss(name: str, frame: Tensor, train_rotation: str = "none") -> Tensor:
    """Mean prior loss ``()`` of a batch of frames ``(B, 3, 3)`` (z-up data): ``"identity"`` / ``"upright"``
    (:data:`~pointcanon.core.priors.PRIORS`), ``"empirical"`` (distance to the nearest of 256 orientations
    drawn from the training augmentation ``train_rotation``, the orientations the backbone was trained on),
    or 0 for any other name (``"none"``)."""
    if name == "empirical":
        return _empirical(train_rotation)(frame).mean()
    if name in PRIORS:  # identity, upright (z up)
        return PRIORS[name](frame).mean()
    return frame.new_zeros(())


@functools.lru_cache(maxsize=None)
def _empirical(train_rotation: str) -> EmpiricalPrior:
    return EmpiricalPrior.from_sampler(lambda n, g: random_rotations(n, train_rotation, generator=g,
                                                                     dtype=torch.float64))


class Canonicalizer(nn.Module):
    """Base of the point-cloud canonicalizers: subclasses implement ``forward(x (B, N, 3), batch=None) ->
    Canonicalization`` and may override :meth:`prior_loss` (the default is a prior on the frame)."""

    def prior_loss(self, x: Tensor, prior: str, result: Canonicalization, *, train_rotation: str = "none") -> Tensor:
        """Mean prior loss ``()`` that teaches this canonicalizer the orientation of the training inputs ``x``
        ``(B, N, 3)``, given ``result = self(x)`` (computed once, in the training step's forward) and
        ``train_rotation``, the rotation augmentation of the run (``"none"``, ``"z"``, ``"SO3"``). Here
        :func:`frame_prior_loss` of ``result.frame``; 0 for ``prior="none"``."""
        return frame_prior_loss(prior, result.frame, train_rotation)
