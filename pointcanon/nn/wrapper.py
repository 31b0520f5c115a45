"""Canonicalizer + any backbone = an exactly invariant (or equivariant) model."""
from __future__ import annotations

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
    """

    def __init__(self, canonicalizer: nn.Module, backbone: nn.Module, vector_keys: tuple[str, ...] = ("normals",)):
        super().__init__()
        self.canonicalizer = canonicalizer
        self.backbone = backbone
        self.vector_keys = tuple(vector_keys)

    def forward(self, x: Tensor, *args, batch: Tensor | None = None, return_canonicalization: bool = False):
        if batch is None:
            canon: Canonicalization = self.canonicalizer(x)
            out = self.backbone(canon.canonical, *args)
        else:
            canon = self.canonicalizer(x, batch=batch)
            out = self.backbone(canon.canonical, *args, batch=batch)
        if isinstance(out, dict):
            out = {k: canon.vectors_from_canonical(v) if k in self.vector_keys else v for k, v in out.items()}
        return (out, canon) if return_canonicalization else out
