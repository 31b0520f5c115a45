"""Canonicalizer + any backbone = an exactly invariant (or equivariant) model."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.result import Canonicalization
# the hypothesis names also stay importable from here for pointcanon.config, .cli and .cliconfig
from .hypotheses import (HYPOTHESIS_RULES, HYPOTHESIS_TRAINING, TRAINING_RULES, HypothesisSelector,  # noqa: F401
                         check_hypotheses, combine_hypotheses)


class CanonicalizedModel(nn.Module):
    """``backbone(canonicalizer(x).canonical, *args)``: exactly invariant to the canonicalizer's group,
    whatever ``backbone`` is (any module taking points ``(B, N, 3)`` first).

    If the backbone returns a dict, the entries named in ``vector_keys`` (per-point vectors
    ``(B, N, 3)`` predicted in canonical coordinates, e.g. normals) are mapped back to the input frame
    with ``v @ frame.T``, which makes them equivariant; everything else is invariant.

    ``forward(x, *args)`` returns the backbone's output; with ``return_canonicalization=True`` also the
    :class:`Canonicalization` (for prior losses and diagnostics). Ragged batches (PyTorch Geometric's
    convention): ``forward(points (P, 3), *args, batch=batch (P,))``; the canonicalizer and the backbone
    must both accept ``batch=`` (:class:`CandidateCanonicalizer`, PointNet, DGCNN do).

    ``hypotheses=k`` (2..6, :mod:`pointcanon.nn.hypotheses`; a :class:`CandidateCanonicalizer` and a classifier
    backbone): instead of the one best frame, the backbone sees the cloud in the canonicalizer's k most likely up
    hypotheses and the class probabilities are combined by ``hypothesis_rule`` (:func:`combine_hypotheses`;
    exactly invariant; k backbone passes). ``hypothesis_training``: ``"sample"`` shows each training cloud in one
    hypothesis drawn with its weight (one backbone pass); ``"mixture"`` trains on the combined output (k passes),
    so that the task loss also reaches the canonicalizer's scores through the weights. ``hypothesis_rule=
    "selector"`` needs ``selector``, a :class:`HypothesisSelector` (part of the model's state).

    Never NaN silently: the canonicalizers give finite canonical clouds for coordinates up to a quarter of
    the dtype's largest value and raise ``ValueError`` beyond; where the backbone (with finite weights)
    still returns NaN or inf for canonical coordinates beyond the square root of that value (their squares
    overflow: DGCNN on float32 clouds scaled by 1e38), ``forward`` raises ``ValueError`` naming their range.
    """

    def __init__(self, canonicalizer: nn.Module, backbone: nn.Module, vector_keys: tuple[str, ...] = ("normals",),
                 hypotheses: int = 1, hypothesis_rule: str = "weights", hypothesis_training: str = "sample",
                 selector: HypothesisSelector | None = None):
        super().__init__()
        if (hypothesis_rule == "selector") != (selector is not None):
            raise ValueError("hypothesis_rule 'selector' and a HypothesisSelector go together: pass both or neither "
                             "(a checkpoint gets its selector from `pointcanon fit-selector`)")
        if selector is not None and not isinstance(selector, HypothesisSelector):
            raise TypeError(f"selector must be a HypothesisSelector, got {type(selector).__name__}")
        check_hypotheses(hypotheses)
        if hypothesis_rule not in HYPOTHESIS_RULES:
            raise ValueError(f"hypothesis_rule must be one of {HYPOTHESIS_RULES}, got {hypothesis_rule!r}")
        if hypothesis_training not in HYPOTHESIS_TRAINING:
            raise ValueError(f"hypothesis_training must be one of {HYPOTHESIS_TRAINING}, got {hypothesis_training!r}")
        if hypotheses == 1 and (hypothesis_rule, hypothesis_training) != ("weights", "sample"):
            raise ValueError("hypothesis_rule / hypothesis_training apply to hypotheses > 1 "
                             "(one frame: nothing to combine)")
        if hypotheses > 1 and not hasattr(canonicalizer, "hypotheses"):
            raise ValueError(f"hypotheses > 1 needs a canonicalizer with up hypotheses (CandidateCanonicalizer), "
                             f"got {type(canonicalizer).__name__}")
        self.canonicalizer = canonicalizer
        self.backbone = backbone
        self.vector_keys = tuple(vector_keys)
        self.num_hypotheses = hypotheses
        self.hypothesis_rule, self.hypothesis_training = hypothesis_rule, hypothesis_training
        self.selector = selector

    def hypothesis_logits(self, x: Tensor, *args) -> tuple[Tensor, Tensor, Canonicalization]:
        """The backbone on each of the ``num_hypotheses`` up hypotheses of dense clouds ``x`` ``(B, N, 3)``:
        their weights ``(B, k)``, the logits ``(B, k, C)`` and the best frame's :class:`Canonicalization`."""
        _, weights, canonical, best = self.canonicalizer.hypotheses(x, self.num_hypotheses)
        b, k = weights.shape
        out = self.backbone(canonical.flatten(0, 1), *(a.repeat_interleave(k, 0) for a in args))
        if not isinstance(out, Tensor) or out.ndim != 2:
            raise ValueError("hypotheses > 1 averages class probabilities: the backbone must return (B, C) logits")
        return weights, out.view(b, k, -1), best

    def _over_hypotheses(self, x: Tensor, args: tuple) -> tuple[Tensor, Canonicalization]:
        """Classification over the canonicalizer's ``num_hypotheses`` up hypotheses: the combined class
        log-probabilities ``(B, C)`` (see the class doc for training), with the best frame's
        :class:`Canonicalization`."""
        if self.training and self.hypothesis_training == "sample":
            _, weights, canonical, best = self.canonicalizer.hypotheses(x, self.num_hypotheses)
            pick = torch.multinomial(weights.detach().float(), 1).squeeze(1)
            return self.backbone(canonical[torch.arange(len(x), device=x.device), pick], *args), best
        weights, logits, best = self.hypothesis_logits(x, *args)
        return combine_hypotheses(weights, logits, self.hypothesis_rule, self.selector), best

    def forward(self, x: Tensor, *args, batch: Tensor | None = None, return_canonicalization: bool = False):
        if self.num_hypotheses > 1:
            if batch is not None:
                raise ValueError("hypotheses > 1 takes dense (B, N, 3) batches")
            out, canon = self._over_hypotheses(x, args)
            self._check_finite(out, canon)
            return (out, canon) if return_canonicalization else out
        if batch is None:
            canon: Canonicalization = self.canonicalizer(x)
            out = self.backbone(canon.canonical, *args)
        else:
            canon = self.canonicalizer(x, batch=batch)
            out = self.backbone(canon.canonical, *args, batch=batch)
        self._check_finite(out, canon)
        if isinstance(out, dict):
            out = {k: canon.vectors_from_canonical(v) if k in self.vector_keys else v for k, v in out.items()}
        return (out, canon) if return_canonicalization else out

    def _check_finite(self, out, canon: Canonicalization) -> None:
        """Raise ``ValueError`` when the backbone's output ``out`` (a tensor or a dict of them) holds NaN or inf
        for canonical coordinates beyond the square root of the dtype's largest value, with finite weights:
        coordinates that large overflowed it. (Non-finite outputs of ordinary clouds, e.g. from a diverged
        training run, are left to the training loop's own check.)"""
        values = out.values() if isinstance(out, dict) else (out,)
        if all(torch.isfinite(v).all() for v in values if isinstance(v, Tensor) and v.is_floating_point()):
            return
        reach = float(canon.canonical.detach().abs().max())
        if reach > torch.finfo(canon.canonical.dtype).max ** 0.5 and \
                all(torch.isfinite(p).all() for p in self.backbone.parameters()):
            raise ValueError(f"the backbone returned NaN or inf for canonical clouds with coordinates up to "
                             f"{reach:.3g}: coordinates that large overflow it; rescale the input "
                             "(e.g. to unit radius)")
