"""Canonicalizer + any backbone = an exactly invariant model."""
from __future__ import annotations

from torch import Tensor, nn

from ..core.result import Canonicalization


class CanonicalizedModel(nn.Module):
    """``backbone(canonicalizer(x).canonical)``: exactly invariant to the canonicalizer's group,
    whatever ``backbone`` is (any module taking points ``(B, N, 3)``).

    ``forward(x)`` returns the backbone's output; ``forward(x, return_canonicalization=True)`` also
    returns the :class:`Canonicalization` (for prior losses and diagnostics).
    """

    def __init__(self, canonicalizer: nn.Module, backbone: nn.Module):
        super().__init__()
        self.canonicalizer = canonicalizer
        self.backbone = backbone

    def forward(self, x: Tensor, return_canonicalization: bool = False):
        canon: Canonicalization = self.canonicalizer(x)
        out = self.backbone(canon.canonical)
        return (out, canon) if return_canonicalization else out
