"""Canonicalizer + any backbone = an exactly invariant (or equivariant) model."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.result import Canonicalization


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

    ``hypotheses=k`` (2..6; a :class:`CandidateCanonicalizer` and a classifier backbone): instead of the
    one best frame, the backbone sees the cloud in the canonicalizer's k most likely up hypotheses and the
    class probabilities are averaged with their weights (exactly invariant; k backbone passes). In training
    each cloud is shown in one hypothesis drawn with its weight.
    """

    def __init__(self, canonicalizer: nn.Module, backbone: nn.Module, vector_keys: tuple[str, ...] = ("normals",),
                 hypotheses: int = 1):
        super().__init__()
        if isinstance(hypotheses, bool) or not isinstance(hypotheses, int) or not 1 <= hypotheses <= 6:
            raise ValueError(f"hypotheses must be an int from 1 to 6, got {hypotheses!r}")
        if hypotheses > 1 and not hasattr(canonicalizer, "hypotheses"):
            raise ValueError(f"hypotheses > 1 needs a canonicalizer with up hypotheses (CandidateCanonicalizer), "
                             f"got {type(canonicalizer).__name__}")
        self.canonicalizer = canonicalizer
        self.backbone = backbone
        self.vector_keys = tuple(vector_keys)
        self.num_hypotheses = hypotheses

    def _over_hypotheses(self, x: Tensor, args: tuple) -> tuple[Tensor, Canonicalization]:
        """Classification over the canonicalizer's ``num_hypotheses`` up hypotheses. Training: each cloud is
        seen in one hypothesis drawn with its weight (the backbone learns every likely pose); evaluation:
        the weight-averaged class probabilities, returned as log-probabilities ``(B, C)``; with the best
        frame's :class:`Canonicalization`."""
        _, weights, canonical, best = self.canonicalizer.hypotheses(x, self.num_hypotheses)
        b, k = weights.shape
        if self.training:
            pick = torch.multinomial(weights.detach().float(), 1).squeeze(1)
            return self.backbone(canonical[torch.arange(b, device=x.device), pick], *args), best
        out = self.backbone(canonical.flatten(0, 1), *(a.repeat_interleave(k, 0) for a in args))
        if not isinstance(out, Tensor) or out.ndim != 2:
            raise ValueError("hypotheses > 1 averages class probabilities: the backbone must return (B, C) logits")
        probs = torch.softmax(out.view(b, k, -1), -1)
        return torch.log((weights.unsqueeze(-1) * probs).sum(1).clamp_min(torch.finfo(probs.dtype).tiny)), best

    def forward(self, x: Tensor, *args, batch: Tensor | None = None, return_canonicalization: bool = False):
        if self.num_hypotheses > 1:
            if batch is not None:
                raise ValueError("hypotheses > 1 takes dense (B, N, 3) batches")
            out, canon = self._over_hypotheses(x, args)
            return (out, canon) if return_canonicalization else out
        if batch is None:
            canon: Canonicalization = self.canonicalizer(x)
            out = self.backbone(canon.canonical, *args)
        else:
            canon = self.canonicalizer(x, batch=batch)
            out = self.backbone(canon.canonical, *args, batch=batch)
        if isinstance(out, dict):
            out = {k: canon.vectors_from_canonical(v) if k in self.vector_keys else v for k, v in out.items()}
        return (out, canon) if return_canonicalization else out
