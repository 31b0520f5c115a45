"""k-nearest neighbours and point subsampling in plain torch (torch-geometric's knn/fps need pyg-lib,
which PyPI does not carry). Memory is bounded by chunking the queries."""
from __future__ import annotations

import torch
from torch import Tensor


def knn(x: Tensor, k: int, *, chunk_size: int | None = None, include_self: bool = True) -> Tensor:
    """Indices of the ``k`` nearest neighbours of every point, ``(B, N, k)``, nearest first.

    Args:
        x: ``(B, N, D)`` coordinates or features.
        k: neighbours per point (clipped to N).
        chunk_size: queries per block; the distance block is ``(B, chunk_size, N)``. Defaults to a size
            that keeps the block near 64 M entries.
        include_self: whether a point counts as its own neighbour (it is always the nearest).
    """
    if x.ndim != 3:
        raise ValueError(f"knn expects (B, N, D), got shape {tuple(x.shape)}")
    b, n, _ = x.shape
    k_eff = min(k + (0 if include_self else 1), n)
    if chunk_size is None:
        chunk_size = max(1, min(n, (64 * 2**20) // max(1, b * n)))
    sq = x.pow(2).sum(-1)  # (B, N)
    out = []
    for start in range(0, n, chunk_size):
        q = x[:, start:start + chunk_size]  # (B, c, D)
        d = sq[:, start:start + chunk_size, None] - 2 * q @ x.transpose(1, 2) + sq[:, None, :]  # (B, c, N)
        idx = d.topk(k_eff, dim=-1, largest=False).indices
        out.append(idx if include_self else idx[..., 1:])
    return torch.cat(out, 1)


def gather_neighbours(x: Tensor, idx: Tensor) -> Tensor:
    """``x`` ``(B, N, ...)`` gathered at ``idx`` ``(B, M, k)`` -> ``(B, M, k, ...)``."""
    b = x.shape[0]
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return x[batch, idx]


def farthest_point_sample(x: Tensor, m: int, *, start: int = 0) -> Tensor:
    """Farthest-point sampling from a fixed start index, ``(B, m)`` indices. Rigid-motion equivariant
    (it only uses distances) but it depends on the point order through ``start``."""
    b, n, _ = x.shape
    m = min(m, n)
    idx = torch.empty(b, m, dtype=torch.long, device=x.device)
    dist = torch.full((b, n), float("inf"), dtype=x.dtype, device=x.device)
    far = torch.full((b,), start, dtype=torch.long, device=x.device)
    rows = torch.arange(b, device=x.device)
    for i in range(m):
        idx[:, i] = far
        d = (x - x[rows, far].unsqueeze(1)).pow(2).sum(-1)
        dist = torch.minimum(dist, d)
        far = dist.argmax(-1)
    return idx


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_MIX = (_signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB))


def subset_priority(local: Tensor, seed: int) -> Tensor:
    """A fixed pseudo-random 40-bit priority per point index (a splitmix64-style hash of the index and
    the seed, int64 arithmetic wrapping around); it depends on nothing else, so every cloud, dense or in
    a ragged batch, ranks its first n indices the same way."""
    h = local.long() * _MIX[0] + (int(seed) * 0x9E3779B1 + 0x7F4A7C15)
    h = (h ^ (h >> 30)) * _MIX[1]
    h = (h ^ (h >> 27)) * _MIX[2]
    h = h ^ (h >> 31)
    return (h >> 20) & ((1 << 40) - 1)


def fixed_index_sample(n: int, m: int, *, seed: int = 0, device=None) -> Tensor:
    """A fixed pseudo-random subset of ``m`` of ``n`` indices, ``(min(m, n),)`` ascending: the ``m``
    indices of smallest :func:`subset_priority` (ties: the smaller index). It depends only on
    ``(n, m, seed)``, never on the coordinates (exactly equivariant to rigid motions), and a ragged batch
    picks the same points per cloud (:func:`pointcanon.nn.ragged.ragged_subset`)."""
    if m >= n:
        return torch.arange(n, device=device)
    order = torch.argsort(subset_priority(torch.arange(n, device=device), seed), stable=True)
    return order[:m].sort().values


def surface_normals(queries: Tensor, points: Tensor, k: int, mask: Tensor | None = None) -> Tensor:
    """Unit surface normals ``(B, M, 3)`` at ``queries`` ``(B, M, 3)``: the least-variance axis of their ``k``
    nearest ``points`` ``(B, N, 3)`` (only the real ones where a ``(B, N)`` ``mask`` is given), oriented away
    from the origin (the clouds are centred). Equivariant to rotations of both (the sign rule uses only
    dot products); detached."""
    with torch.no_grad():
        sq_q, sq_p = queries.pow(2).sum(-1), points.pow(2).sum(-1)
        d = sq_q[:, :, None] - 2 * queries @ points.transpose(1, 2) + sq_p[:, None, :]
        if mask is not None:
            d = d.masked_fill(~mask[:, None, :], float("inf"))
        dist, idx = d.topk(min(k, points.shape[1]), dim=-1, largest=False)
        w = torch.isfinite(dist).to(points.dtype).unsqueeze(-1)  # (B, M, k, 1)
        nbr = gather_neighbours(points, idx)
        mean = (nbr * w).sum(2, keepdim=True) / w.sum(2, keepdim=True).clamp_min(1)
        dev = (nbr - mean) * w
        normal = torch.linalg.eigh(dev.transpose(-1, -2) @ dev).eigenvectors[..., 0]  # (B, M, 3)
        sign = torch.where((normal * queries).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(normal.dtype)
        return normal * sign


def sign_undefined(normals: Tensor, queries: Tensor, mask: Tensor | None = None) -> Tensor:
    """``(B,)``: some normal ``(B, M, 3)`` of :func:`surface_normals` is orthogonal to its query point's
    position ``(B, M, 3)`` to rounding (only real points where a ``(B, M)`` mask is given), so that its sign
    is undefined (e.g. a flat shape whose plane holds the centroid). Invariant: dot products only."""
    unsigned = (normals * queries).sum(-1).abs() <= 100 * torch.finfo(queries.dtype).eps * queries.norm(dim=-1)
    return (unsigned if mask is None else unsigned & mask).any(-1)
