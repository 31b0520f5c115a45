"""Orthonormal frames from predicted equivariant vectors, with a degeneracy diagnostic."""
from __future__ import annotations

import torch
from torch import Tensor

TINY = 1e-30
AXIS_NAMES = "xyz"


def parse_axes(axes: str | tuple[int, int]) -> tuple[int, int, int]:
    """``"zy"`` or ``(2, 1)`` -> the frame columns ``(a, b, c)`` filled by the first, second and
    completing Gram–Schmidt axis. Raises ``ValueError`` unless the two axes are distinct x/y/z."""
    idx = tuple(AXIS_NAMES.index(a) if isinstance(a, str) and a in AXIS_NAMES else a for a in axes)
    if len(idx) != 2 or any(not isinstance(i, int) or isinstance(i, bool) or i not in (0, 1, 2) for i in idx) \
            or idx[0] == idx[1]:
        raise ValueError(f"axes must name two distinct axes of x, y, z (e.g. 'zy'), got {axes!r}")
    return idx[0], idx[1], 3 - idx[0] - idx[1]


def _unit(u: Tensor) -> tuple[Tensor, Tensor]:
    n = u.norm(dim=-1)
    return u / n.clamp_min(TINY).unsqueeze(-1), n


def frame_from_vectors(vectors: Tensor, *, proper: bool = True, tol: float = 1e-3,
                       axes: str | tuple[int, int] = "xy") -> tuple[Tensor, Tensor, Tensor]:
    """Gram–Schmidt frame from equivariant vectors.

    Args:
        vectors: ``(B, K, 3)`` rows ``v_k`` with ``v_k(x @ Q.T) = v_k(x) @ Q.T``. The first two give
            ``e1``, ``e2`` by Gram–Schmidt and ``e3 = e1 x e2`` (det = +1, SO(3)). With
            ``proper=False`` a third vector picks the handedness: ``e3 = sign(v3 . (e1 x e2)) e1 x e2``,
            which is Gram–Schmidt on three vectors (O(3), det = ±1).
        tol: an input is degenerate when a Gram–Schmidt residual is below ``tol`` times the longest
            vector (or all vectors vanish). Then no unique frame exists (a symmetric input) and a finite
            deterministic fallback is returned and flagged: the identity if ``e1``/``e2`` are undefined,
            the proper frame ``e1, e2, e1 x e2`` if only the handedness is (a mirror-symmetric input in
            O(3) mode; that fallback is still exactly rotation-equivariant).
        axes: which frame columns the first two Gram–Schmidt axes become; the third column completes
            the frame (right-handed unless ``v3`` says otherwise). Default ``"xy"``: ``e1, e2, e1 x e2``.
            It matters for priors: a vector-neuron network is O(3)-equivariant, so for a
            mirror-symmetric input its vectors lie *in the mirror plane*, and only the third axis can
            leave it. Choose the two axes that span the data's usual mirror plane, up axis first (e.g.
            ``"zy"`` for ModelNet40, whose shapes mostly mirror across x = 0); with the default, a
            chair's frame could never be the identity and a prior could not be learned.

    Returns:
        frame ``(B, 3, 3)`` with the axes as columns (``frame(x @ Q.T) = Q @ frame(x)``),
        degenerate ``(B,)`` bool, conditioning ``(B,)`` = smallest residual / longest vector in [0, 1].
    """
    order = parse_axes(axes)
    need = 2 if proper else 3
    if vectors.ndim != 3 or vectors.shape[-1] != 3 or vectors.shape[1] < need:
        raise ValueError(f"vectors must be (B, >={need}, 3), got shape {tuple(vectors.shape)}")
    vectors = vectors[:, :need]
    with torch.no_grad():
        finite = torch.isfinite(vectors).all(-1).all(-1)
        residuals = _gram_schmidt(torch.where(finite[:, None, None], vectors, 0.0))[1]
        scale = vectors.norm(dim=-1).amax(-1).clamp_min(TINY)  # (B,)
        relative = residuals / scale.unsqueeze(-1)  # (B, 2) or (B, 3)
        tiny_abs = torch.finfo(vectors.dtype).tiny ** 0.5
        no_axes = (relative[:, :2].amin(-1) < tol) | (scale <= tiny_abs) | ~finite
        no_hand = (relative[:, 2] < tol) & ~no_axes if not proper else torch.zeros_like(no_axes)
        conditioning = torch.where(no_axes | no_hand, 0.0, relative.amin(-1).clamp(0, 1))
    # Degenerate items run through well-separated stand-in vectors so that no gradient is inf/NaN.
    eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)
    safe = torch.where(no_axes[:, None, None], eye[:need].expand_as(vectors), vectors)
    frame, _ = _gram_schmidt(safe)
    if not proper:
        frame = torch.where(no_hand[:, None, None], _gram_schmidt(safe[:, :2])[0], frame)
    frame = _assign_columns(frame, order)
    frame = torch.where(no_axes[:, None, None], eye.expand_as(frame), frame)
    return frame, no_axes | no_hand, conditioning


def _assign_columns(frame: Tensor, order: tuple[int, int, int]) -> Tensor:
    """Move Gram–Schmidt axes ``k`` to columns ``order[k]``; flip the third when the permutation is odd,
    so that a proper frame stays proper (det unchanged)."""
    if order == (0, 1, 2):
        return frame
    odd = sum(order[i] > order[j] for i in range(3) for j in range(i + 1, 3)) % 2 == 1
    if odd:
        frame = torch.cat([frame[..., :2], -frame[..., 2:]], -1)
    inverse = [order.index(j) for j in range(3)]
    return frame[..., inverse]


def _gram_schmidt(v: Tensor) -> tuple[Tensor, Tensor]:
    """Frame ``(B, 3, 3)`` (axes as columns) from 2 vectors (``e3 = e1 x e2``) or 3 (``e3`` with the
    handedness of ``v3``), and the Gram–Schmidt residual lengths ``(B, K)``."""
    e1, n1 = _unit(v[:, 0])
    e2, n2 = _unit(v[:, 1] - (v[:, 1] * e1).sum(-1, keepdim=True) * e1)
    e3 = torch.linalg.cross(e1, e2)
    if v.shape[1] == 2:
        return torch.stack([e1, e2, e3], dim=-1), torch.stack([n1, n2], -1)
    along = (v[:, 2] * e3).sum(-1)  # the part of v3 off the e1-e2 plane: the GS residual, signed
    e3 = e3 * torch.where(along < 0, -1.0, 1.0).to(v.dtype).unsqueeze(-1)
    return torch.stack([e1, e2, e3], dim=-1), torch.stack([n1, n2, along.abs()], -1)
