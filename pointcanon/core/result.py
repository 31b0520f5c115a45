"""The result every canonicalizer returns from ``forward`` (never stashed on ``self``)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass(frozen=True)
class Canonicalization:
    """A predicted frame per input and the input expressed in it.

    Shapes (``d`` = 3 for point clouds, 2 for images):
        frame: ``(B, d, d)``, columns are the predicted orthonormal axes. Equivariance:
            ``frame(g.x) = Q_g @ frame(x)``.
        origin: ``(B, d)`` or ``None``; ``origin(x @ Q.T + s) = origin(x) @ Q.T + s``.
        canonical: the input in canonical coordinates, e.g. ``(x - origin) @ frame`` ``(B, N, 3)``;
            exactly invariant.
        degenerate: ``(B,)`` bool, True where the input is (nearly) symmetric so the frame is not
            unique and is a deterministic fallback instead of a prediction.
        conditioning: ``(B,)`` in [0, 1], how far from degenerate (0 = degenerate).
        logits: ``(B, |G|)`` scores over the elements of a discrete group, or ``None``.
        index: ``(B,)`` chosen element of a discrete group, or ``None``.
        batch: for a ragged batch (points ``(P, 3)``), the cloud of every point ``(P,)``; ``None`` when dense.
            The point / vector maps below then take ``(P, d)`` rows of those clouds.
        fragile: ``(B,)`` bool, True where the frame is exact but its up axis was chosen by a small margin
            over another (``CandidateCanonicalizer.fragile_margin``): another sampling of the same surface
            (another density or scanner) may put another axis up. ``None`` where the canonicalizer has no
            up hypotheses.
    """

    frame: Tensor
    canonical: Tensor
    origin: Tensor | None = None
    degenerate: Tensor | None = None
    conditioning: Tensor | None = None
    logits: Tensor | None = None
    index: Tensor | None = None
    batch: Tensor | None = None
    fragile: Tensor | None = None

    def points_to_canonical(self, points: Tensor) -> Tensor:
        """Map points ``(B, M, d)`` into canonical coordinates: ``(p - origin) @ frame``."""
        if self.batch is not None and points.ndim == 2:
            if self.origin is not None:
                points = points - self.origin[self.batch]
            return (points.unsqueeze(-2) @ self.frame[self.batch]).squeeze(-2)
        if self.origin is not None:
            points = points - self.origin.unsqueeze(-2)
        return points @ self.frame

    def points_from_canonical(self, points: Tensor) -> Tensor:
        """Map canonical points ``(B, M, d)`` back: ``p @ frame.T + origin``."""
        out = self.vectors_from_canonical(points)
        if self.origin is not None:
            out = out + (self.origin[self.batch] if self.batch is not None and points.ndim == 2
                         else self.origin.unsqueeze(-2))
        return out

    def vectors_from_canonical(self, vectors: Tensor) -> Tensor:
        """Map canonical vectors ``(B, M, d)`` (normals, flow) back: ``v @ frame.T`` (no translation)."""
        if self.batch is not None and vectors.ndim == 2:
            return (vectors.unsqueeze(-2) @ self.frame[self.batch].transpose(-1, -2)).squeeze(-2)
        return vectors @ self.frame.transpose(-1, -2)

    def rigid_transform(self) -> Tensor:
        """The ``(B, d+1, d+1)`` homogeneous matrix taking input points to canonical points."""
        b, d = self.frame.shape[0], self.frame.shape[-1]
        t = torch.zeros(b, d + 1, d + 1, dtype=self.frame.dtype, device=self.frame.device)
        rt = self.frame.transpose(-1, -2)
        t[:, :d, :d] = rt
        if self.origin is not None:
            t[:, :d, d] = -(rt @ self.origin.unsqueeze(-1)).squeeze(-1)
        t[:, d, d] = 1
        return t

    def detach(self) -> "Canonicalization":
        return Canonicalization(**{f.name: (v.detach() if isinstance(v, Tensor) else v)
                                   for f in fields(self) for v in [getattr(self, f.name)]})
