"""PyTorch Geometric integration (optional extra ``pointcanon[pyg]``): a ``Canonicalize`` transform for
``Data`` / ``Batch`` objects and its inverse.

    import torch_geometric.transforms as T
    from pointcanon.pyg import Canonicalize

    transform = T.Compose([T.Center(), Canonicalize()])   # the shipped upright canonicalizer
    data = transform(data)                                 # data.pos, data.normal now canonical
    original = Canonicalize.inverse(data)                  # back: pos, normal as they came in

The transform stores ``canon_frame`` ``(1, 3, 3)``, ``canon_origin`` ``(1, 3)``, ``canon_degenerate``
``(1,)`` and (for canonicalizers with up hypotheses) ``canon_fragile`` ``(1,)`` on the object; PyG's collation stacks them to ``(B, 3, 3)``, ``(B, 3)``, ``(B,)`` in a ``Batch``,
so :meth:`Canonicalize.inverse` works on batches too. Applied to a ``Batch`` (anything with a ``batch``
vector) it canonicalizes every cloud in one ragged call (no loop over clouds), with exactly the frame each
cloud gets alone.

kNN and subsampling are pointcanon's own (plain torch): PyG's ``knn``/``fps`` need ``pyg-lib`` or
``torch-cluster``, which the package registry may not carry; pointcanon never calls them.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

try:
    from torch_geometric.transforms import BaseTransform
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("pointcanon.pyg needs torch-geometric: pip install 'pointcanon[pyg]'") from e

__all__ = ["Canonicalize", "FRAME_KEY", "ORIGIN_KEY", "DEGENERATE_KEY", "FRAGILE_KEY"]

FRAME_KEY, ORIGIN_KEY, DEGENERATE_KEY = "canon_frame", "canon_origin", "canon_degenerate"
FRAGILE_KEY = "canon_fragile"


class Canonicalize(BaseTransform):
    """Move ``data.pos`` into the canonical pose of ``model`` and rotate the per-point vectors named in
    ``vector_attrs`` (default ``("normal",)``; missing ones are skipped) with it.

    Args:
        model: a canonicalizer taking ragged batches (:class:`~pointcanon.nn.CandidateCanonicalizer`), a
            canonicalizer file, or ``None`` for the shipped upright ModelNet40 one. A copy runs in
            ``data.pos``'s dtype, in eval mode, without gradients; ``model`` itself is not changed.
        vector_attrs: per-point ``(N, 3)`` attributes that are directions (normals, flow): rotated, not
            translated.
    """

    def __init__(self, model: nn.Module | str | None = None, vector_attrs: tuple[str, ...] = ("normal",)):
        from .mesh import load_canonicalizer, load_default_canonicalizer

        if model is None:
            model = load_default_canonicalizer()
        elif not isinstance(model, nn.Module):
            model = load_canonicalizer(model)
        self.model = copy.deepcopy(model).eval()
        self.vector_attrs = tuple(vector_attrs)
        self._by_dtype: dict[torch.dtype, nn.Module] = {}

    def _model(self, dtype: torch.dtype) -> nn.Module:
        if dtype not in self._by_dtype:
            self._by_dtype[dtype] = copy.deepcopy(self.model).to(dtype)
        return self._by_dtype[dtype]

    def forward(self, data):
        pos = getattr(data, "pos", None)
        if not isinstance(pos, Tensor) or pos.ndim != 2 or pos.shape[-1] != 3:
            raise ValueError(f"Canonicalize needs data.pos of shape (N, 3), got {getattr(pos, 'shape', pos)!r}")
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        with torch.no_grad():
            c = self._model(pos.dtype)(pos, batch=batch)
        data.pos = c.canonical
        for key in self.vector_attrs:
            v = getattr(data, key, None)
            if v is not None:
                _check_vectors(key, v, pos)
                data[key] = (v.unsqueeze(1) @ c.frame[batch]).squeeze(1)
        data[FRAME_KEY], data[ORIGIN_KEY], data[DEGENERATE_KEY] = c.frame, c.origin, c.degenerate
        if c.fragile is not None:
            data[FRAGILE_KEY] = c.fragile
        return data

    @staticmethod
    def inverse(data, vector_attrs: tuple[str, ...] = ("normal",)):
        """Undo :class:`Canonicalize` on ``data`` (a ``Data`` or ``Batch``; changed in place and returned):
        ``pos @ frame.T + origin``, vectors ``v @ frame.T``; the stored frame is removed."""
        frame, origin = getattr(data, FRAME_KEY, None), getattr(data, ORIGIN_KEY, None)
        if frame is None or origin is None:
            raise ValueError(f"no {FRAME_KEY} / {ORIGIN_KEY} on this object: it was not canonicalized")
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(data.pos.shape[0], dtype=torch.long, device=data.pos.device)
        back = frame.transpose(-1, -2)[batch]  # (N, 3, 3)
        data.pos = (data.pos.unsqueeze(1) @ back).squeeze(1) + origin[batch]
        for key in vector_attrs:
            v = getattr(data, key, None)
            if v is not None:
                data[key] = (v.unsqueeze(1) @ back).squeeze(1)
        for key in (FRAME_KEY, ORIGIN_KEY, DEGENERATE_KEY, FRAGILE_KEY):
            if key in data:
                del data[key]
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__}, vector_attrs={self.vector_attrs})"


def _check_vectors(key: str, v: Tensor, pos: Tensor) -> None:
    if not isinstance(v, Tensor) or v.shape != pos.shape:
        raise ValueError(f"data.{key} must be per-point vectors of shape {tuple(pos.shape)} like pos, "
                         f"got {tuple(getattr(v, 'shape', ()))}")
    if v.dtype != pos.dtype:
        raise TypeError(f"data.{key} is {v.dtype} but data.pos is {pos.dtype}; use one dtype")
