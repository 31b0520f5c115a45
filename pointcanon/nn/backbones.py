"""Unconstrained point-cloud backbones: PointNet and DGCNN classifiers, and a builder dict.

Both take points ``(B, N, 3)`` and return logits ``(B, num_classes)``; neither is equivariant on its own.
Both also take a ragged batch (PyTorch Geometric's convention): points ``(P, 3)`` and ``batch=`` ``(P,)``,
giving every cloud the logits a dense call on that cloud alone would give (in eval mode).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .knn import knn
from .ragged import check_ragged, masked_knn, ragged_subset, segment_amax, segment_sum


def _mlp1d(sizes, *, last_act=True, norm=True) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Conv1d(a, b, 1, bias=not norm))
        layers.append(nn.BatchNorm1d(b) if norm else nn.Identity())
        if last_act or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _per_point(mlp: nn.Sequential, x: Tensor) -> Tensor:
    """Run an :func:`_mlp1d` stack on stacked points ``(P, C)`` (channels last, as ragged batches keep
    them): the 1x1 convolutions as linear maps, batch norm over the points."""
    for layer in mlp:
        x = F.linear(x, layer.weight[:, :, 0], layer.bias) if isinstance(layer, nn.Conv1d) else layer(x)
    return x


def _head(sizes, num_classes, dropout, norm=True) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, bias=not norm), nn.BatchNorm1d(b) if norm else nn.Identity(), nn.ReLU(),
                   nn.Dropout(dropout)]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], num_classes))


class TNet(nn.Module):
    """PointNet's learned alignment: predicts a ``(B, d, d)`` matrix from features ``(B, d, N)``,
    initialised at the identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.features = _mlp1d([dim, 64, 128, 512])
        self.head = _head([512, 256], dim * dim, 0.0)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor, batch: Tensor | None = None, size: int | None = None) -> Tensor:
        """``x`` ``(B, d, N)``; or stacked points ``(P, d)`` with ``batch`` ``(P,)`` of ``size`` clouds."""
        g = self.features(x).amax(-1) if batch is None else segment_amax(_per_point(self.features, x), batch, size)
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return self.head(g).view(-1, self.dim, self.dim) + eye


class PointNet(nn.Module):
    """PointNet classifier (Qi et al., CVPR 2017, https://arxiv.org/abs/1612.00593).

    Args:
        num_classes: output classes.
        input_transform: the T-Net (a learned 3x3 transform of the input).
        width: channels of the last shared layer (the global feature).
        dropout: dropout of the classifier head.
        batch_norm: batch norm everywhere; ``False`` makes every sample's output independent of the rest
            of its batch (exact data-parallel equivalence, tiny batches).

    Shapes: ``(B, N, 3) -> (B, num_classes)``.
    """

    def __init__(self, num_classes: int = 40, *, input_transform: bool = True, width: int = 1024,
                 dropout: float = 0.4, batch_norm: bool = True):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.hparams = dict(num_classes=num_classes, input_transform=input_transform, width=width, dropout=dropout,
                            batch_norm=batch_norm)
        self.tnet = TNet(3) if input_transform else None
        self.features = _mlp1d([3, 64, 64, 64, 128, width], norm=batch_norm)
        self.head = _head([width, 512, 256], num_classes, dropout, norm=batch_norm)

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        """``(B, N, 3) -> (B, C)``, or ragged ``(P, 3)`` with ``batch`` ``(P,)`` ``-> (B, C)``."""
        if batch is not None:
            return self._forward_ragged(x, batch)
        x = x.transpose(1, 2)  # (B, 3, N)
        if self.tnet is not None:
            x = self.tnet(x).transpose(1, 2) @ x
        return self.head(self.features(x).amax(-1))

    def _forward_ragged(self, x: Tensor, batch: Tensor) -> Tensor:
        counts, _ = check_ragged(x, batch)
        batch, size = batch.long(), counts.shape[0]
        if self.tnet is not None:  # p -> p @ T, as the dense T^T @ x on columns
            t = self.tnet(x, batch, size)  # (B, 3, 3)
            x = (x.unsqueeze(1) @ t[batch]).squeeze(1)
        return self.head(segment_amax(_per_point(self.features, x), batch, size))


class EdgeConv(nn.Module):
    """``max_j MLP([x_j - x_i, x_i])`` over the k nearest neighbours j of i (in feature space).

    Shapes: ``(B, C, N) -> (B, C_out, N)``, or stacked points ``(P, C)`` with an ``edge_index`` ``(2, E)``
    -> ``(P, C_out)``. The 1x1 edge convolution is split into a neighbour and a centre part, applied per
    point before gathering, so no ``(B, 2C, N, k)`` edge tensor is built.
    """

    def __init__(self, in_channels: int, out_channels: int, k: int = 20):
        super().__init__()
        self.k = k
        self.conv = nn.Conv2d(2 * in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, idx: Tensor | None = None, edge_index: Tensor | None = None) -> Tensor:
        """Dense ``x`` ``(B, C, N)`` with neighbour indices ``idx`` ``(B, N, k)`` (default: kNN in feature
        space), or stacked points ``x`` ``(P, C)`` with a neighbour graph ``edge_index`` ``(2, E)`` (PyTorch
        Geometric's ``source_to_target`` flow: row 0 the neighbour j, row 1 the centre i; every point needs
        at least one edge, e.g. to itself) -> ``(P, C_out)``."""
        if edge_index is not None:
            return self._forward_edges(x, edge_index)
        b, c, n = x.shape
        if idx is None:
            idx = knn(x.transpose(1, 2), self.k)  # (B, N, k)
        # conv([x_j - x_i, x_i]) = W1 x_j + (W2 - W1) x_i: apply the conv per point, then gather.
        w = self.conv.weight.view(-1, 2 * c)
        w_nbr, w_ctr = w[:, :c], w[:, c:] - w[:, :c]
        nbr = w_nbr @ x  # (B, C_out, N)
        ctr = w_ctr @ x  # (B, C_out, N)
        batch = torch.arange(b, device=x.device).view(b, 1, 1)
        gathered = nbr.transpose(1, 2)[batch, idx]  # (B, N, k, C_out)
        edge = gathered.permute(0, 3, 1, 2) + ctr.unsqueeze(-1)  # (B, C_out, N, k)
        return F.leaky_relu(self.norm(edge), 0.2).amax(-1)

    def _forward_edges(self, x: Tensor, edge_index: Tensor) -> Tensor:
        if x.ndim != 2 or edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge mode needs x (P, C) and edge_index (2, E), got {tuple(x.shape)}, "
                             f"{tuple(edge_index.shape)}")
        c = x.shape[1]
        w = self.conv.weight.view(-1, 2 * c)
        src, dst = edge_index.long()
        edge = x[src] @ w[:, :c].T + x[dst] @ (w[:, c:] - w[:, :c]).T  # (E, C_out)
        edge = F.leaky_relu(self.norm(edge.T[None, :, :, None])[0, :, :, 0].T, 0.2)
        if torch.bincount(dst, minlength=x.shape[0]).min() == 0:
            raise ValueError("every point needs at least one incoming edge in edge_index (add self-loops)")
        return segment_amax(edge, dst, x.shape[0])


class DGCNN(nn.Module):
    """DGCNN classifier (Wang et al., "Dynamic Graph CNN", TOG 2019, https://arxiv.org/abs/1801.07829).

    Args:
        num_classes: output classes.
        k: neighbours of each EdgeConv (the graph is rebuilt in feature space at every layer).
        emb_dims: channels of the global embedding.
        dropout: dropout of the classifier head.

    Shapes: ``(B, N, 3) -> (B, num_classes)``. kNN is dense, in plain torch.
    """

    def __init__(self, num_classes: int = 40, *, k: int = 20, emb_dims: int = 1024, dropout: float = 0.5):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.hparams = dict(num_classes=num_classes, k=k, emb_dims=emb_dims, dropout=dropout)
        dims = [3, 64, 64, 128, 256]
        self.edges = nn.ModuleList(EdgeConv(a, b, k) for a, b in zip(dims[:-1], dims[1:]))
        self.embed = _mlp1d([sum(dims[1:]), emb_dims])
        self.head = _head([2 * emb_dims, 512, 256], num_classes, dropout)

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        """``(B, N, 3) -> (B, C)``, or ragged ``(P, 3)`` with ``batch`` ``(P,)`` ``-> (B, C)``: the same
        dynamic kNN graphs, built per cloud and passed to the edge convolutions as ``edge_index``."""
        if batch is not None:
            return self._forward_ragged(x, batch)
        h = x.transpose(1, 2)  # (B, 3, N)
        feats = []
        for edge in self.edges:
            h = edge(h)
            feats.append(h)
        e = self.embed(torch.cat(feats, 1))  # (B, emb, N)
        return self.head(torch.cat([e.amax(-1), e.mean(-1)], 1))

    def _forward_ragged(self, x: Tensor, batch: Tensor) -> Tensor:
        counts, offsets = check_ragged(x, batch)
        batch, size = batch.long(), counts.shape[0]
        slots, mask = ragged_subset(counts, offsets, None)  # every point, padded per cloud: (B, M)
        h, feats = x, []
        for edge in self.edges:
            h = edge(h, edge_index=knn_graph(h, slots, mask, edge.k))
            feats.append(h)
        e = _per_point(self.embed, torch.cat(feats, 1))  # (P, emb)
        mean = segment_sum(e, batch, size) / counts.to(e.dtype)[:, None]
        return self.head(torch.cat([segment_amax(e, batch, size), mean], 1))


def knn_graph(h: Tensor, slots: Tensor, mask: Tensor, k: int) -> Tensor:
    """``edge_index`` ``(2, E)`` joining each of the stacked points ``h`` ``(P, C)`` to its ``k`` nearest
    neighbours (itself included) within its own cloud; ``slots`` / ``mask`` ``(B, M)`` place the points of
    every cloud in a padded block (:func:`~pointcanon.nn.ragged.ragged_subset` with ``m=None``)."""
    nbr, real = masked_knn(h[slots], mask, k)  # (B, M, k')
    centre = slots.unsqueeze(-1).expand_as(nbr)
    source = torch.gather(slots.unsqueeze(1).expand(-1, slots.shape[1], -1), 2, nbr)
    return torch.stack([source[real], centre[real]])


BACKBONES = {"pointnet": PointNet, "dgcnn": DGCNN}


def build_backbone(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build a classifier by name (``"pointnet"``, ``"dgcnn"``)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    return BACKBONES[name](num_classes, **kwargs)
