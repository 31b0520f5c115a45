"""Part-segmentation backbones: PointNet and DGCNN heads with the category one-hot input of the
standard ShapeNetPart models, and optional per-point vector outputs (e.g. normals).

Shapes: ``forward(points (B, N, 3), category (B,))`` returns ``{"logits": (B, N, num_parts)}`` plus
``"normals": (B, N, 3)`` when ``predict_normals=True``. Inside a :class:`CanonicalizedModel` the
logits are invariant and the normals are mapped back to the input frame (equivariant).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import EdgeConv, _mlp1d


class _SegHead(nn.Module):
    def __init__(self, in_channels: int, num_parts: int, predict_normals: bool, dropout: float):
        super().__init__()
        self.trunk = nn.Sequential(_mlp1d([in_channels, 256, 256, 128]), nn.Dropout(dropout))
        self.parts = nn.Conv1d(128, num_parts, 1)
        self.normals = nn.Conv1d(128, 3, 1) if predict_normals else None

    def forward(self, h: Tensor) -> dict:
        h = self.trunk(h)
        out = {"logits": self.parts(h).transpose(1, 2)}  # (B, N, P)
        if self.normals is not None:
            out["normals"] = F.normalize(self.normals(h).transpose(1, 2), dim=-1, eps=1e-8)  # (B, N, 3)
        return out


def _check_category(category: Tensor, num_categories: int, batch: int) -> Tensor:
    category = torch.as_tensor(category)
    if category.shape != (batch,) or category.is_floating_point():
        raise ValueError(f"category must be an integer tensor of shape ({batch},), got {tuple(category.shape)} {category.dtype}")
    if category.min() < 0 or category.max() >= num_categories:
        raise ValueError(f"category ids must be in [0, {num_categories}), got [{category.min()}, {category.max()}]")
    return category


class PointNetSeg(nn.Module):
    """PointNet part segmenter (Qi et al., 2017): per-point features, the global max feature and the
    category one-hot, then a shared per-point MLP.

    Args:
        width: channels of the global feature.
        dropout: dropout of the per-point head.
    """

    def __init__(self, num_parts: int = 50, num_categories: int = 16, *, width: int = 1024,
                 predict_normals: bool = False, dropout: float = 0.3):
        super().__init__()
        self.hparams = dict(num_parts=num_parts, num_categories=num_categories, width=width,
                            predict_normals=predict_normals, dropout=dropout)
        self.num_categories = num_categories
        self.local = _mlp1d([3, 64, 128, 128])
        self.glob = _mlp1d([128, 512, width])
        self.head = _SegHead(128 + width + num_categories, num_parts, predict_normals, dropout)

    def forward(self, x: Tensor, category: Tensor) -> dict:
        b, n, _ = x.shape
        category = _check_category(category, self.num_categories, b)
        local = self.local(x.transpose(1, 2))  # (B, 128, N)
        g = self.glob(local).amax(-1)  # (B, width)
        onehot = F.one_hot(category.to(x.device), self.num_categories).to(x.dtype)
        h = torch.cat([local, torch.cat([g, onehot], 1).unsqueeze(-1).expand(-1, -1, n)], 1)
        return self.head(h)


class DGCNNSeg(nn.Module):
    """DGCNN part segmenter (Wang et al., 2019): three EdgeConvs, a global feature and the category.

    Args:
        k: neighbours of each EdgeConv.
        emb_dims: channels of the global embedding.
        dropout: dropout of the per-point head.
    """

    def __init__(self, num_parts: int = 50, num_categories: int = 16, *, k: int = 20, emb_dims: int = 1024,
                 predict_normals: bool = False, dropout: float = 0.5):
        super().__init__()
        self.hparams = dict(num_parts=num_parts, num_categories=num_categories, k=k, emb_dims=emb_dims,
                            predict_normals=predict_normals, dropout=dropout)
        self.num_categories = num_categories
        self.edges = nn.ModuleList([EdgeConv(3, 64, k), EdgeConv(64, 64, k), EdgeConv(64, 64, k)])
        self.embed = _mlp1d([192, emb_dims])
        self.category = nn.Linear(num_categories, 64)
        self.head = _SegHead(192 + emb_dims + 64, num_parts, predict_normals, dropout)

    def forward(self, x: Tensor, category: Tensor) -> dict:
        b, n, _ = x.shape
        category = _check_category(category, self.num_categories, b)
        h, feats = x.transpose(1, 2), []
        for edge in self.edges:
            h = edge(h)
            feats.append(h)
        local = torch.cat(feats, 1)  # (B, 192, N)
        g = self.embed(local).amax(-1)  # (B, emb)
        c = self.category(F.one_hot(category.to(x.device), self.num_categories).to(x.dtype))
        return self.head(torch.cat([local, torch.cat([g, c], 1).unsqueeze(-1).expand(-1, -1, n)], 1))


SEGMENTERS = {"pointnet": PointNetSeg, "dgcnn": DGCNNSeg}


def build_segmenter(name: str, num_parts: int = 50, num_categories: int = 16, **kwargs) -> nn.Module:
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmentation backbone {name!r}; choose from {sorted(SEGMENTERS)}")
    return SEGMENTERS[name](num_parts, num_categories, **kwargs)
