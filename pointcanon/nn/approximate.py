"""An approximately equivariant VN canonicalizer: the exact one plus a few learned, fixed,
symmetry-breaking input vectors (Ashman et al., "Approximately Equivariant Neural Processes", 2024,
https://arxiv.org/abs/2406.13488).

The fixed vectors ``v_1..v_K`` are parameters, not features of the input: they do not rotate with it, so
they let the frame depend on the absolute orientation (e.g. on gravity in z-up scans) where the data
demands it. They enter the global VN layer as ``K`` extra channels beside the per-point and pooled
features. Zeroed, they contribute exactly nothing (``W @ 0 = 0``) and the network is the strict, exactly
equivariant canonicalizer again.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .vn_canonicalizer import VNCanonicalizer
from .vn import VNLinearLeakyReLU


class FixedInputs(nn.Module):
    """Appends ``num_fixed`` learned, fixed (input-independent) channels of shape ``shape`` to a feature
    map: ``(B, C, *shape, *rest) -> (B, C + K, *shape, *rest)`` (broadcast over the batch and ``rest``).
    The symmetry-breaking piece of Ashman et al. (2024), shared by the approximate VN canonicalizer
    (``shape=(3,)``: fixed vectors beside VN features ``(B, C, 3, M)``) and the approximately
    translation-equivariant ConvCNP (``shape=(G,)``: fixed functions on its grid beside ``(B, C, G)``).

    In training each sample's fixed inputs are all zeroed with probability ``dropout`` (no rescaling: the
    zeroed model is a meaningful, exact model, not a noisy version of the full one). At inference they are
    multiplied by ``scale`` (1 = as trained, 0 = exact); ``exact=True`` zeroes them whatever the mode.
    ``exact`` and ``scale`` are buffers: saved and loaded with the state dict.
    """

    def __init__(self, num_fixed: int, dropout: float = 0.5, init_std: float = 1 / math.sqrt(3),
                 shape: tuple[int, ...] = (3,)):
        super().__init__()
        if not isinstance(num_fixed, int) or num_fixed < 1:
            raise ValueError(f"num_fixed must be a positive int (use the exact model for none), got {num_fixed!r}")
        if not 0 <= dropout <= 1:
            raise ValueError(f"fixed_dropout must be in [0, 1], got {dropout!r}")
        if not init_std >= 0:
            raise ValueError(f"fixed_init_std must be non-negative, got {init_std!r}")
        shape = tuple(int(d) for d in shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"shape must be one or more positive sizes, got {shape}")
        self.shape = shape
        self.vectors = nn.Parameter(torch.randn(num_fixed, *shape) * init_std)  # (K, *shape): not moved with the input
        self.dropout = float(dropout)
        # the switches are buffers, so that a saved model keeps them (state_dict)
        self.register_buffer("exact_flag", torch.tensor(False))
        self.register_buffer("scale_value", torch.tensor(1.0, dtype=torch.float64))

    @property
    def exact(self) -> bool:
        return bool(self.exact_flag)

    @exact.setter
    def exact(self, value: bool) -> None:
        self.exact_flag.fill_(bool(value))

    @property
    def _scale(self) -> float:
        return float(self.scale_value)

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        if not 0 <= value <= 1:
            raise ValueError(f"fixed_scale must be in [0, 1], got {value!r}")
        self.scale_value.fill_(float(value))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("exact_flag", "scale_value"):  # files written before the switches were saved
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, recurse=True):  # .to(dtype) must not round the switches' dtypes
        exact, scale = self.exact_flag.clone(), self.scale_value.clone()
        out = super()._apply(fn, recurse)
        self.exact_flag = exact.to(self.vectors.device)
        self.scale_value = scale.to(self.vectors.device)
        return out

    def forward(self, h: Tensor) -> Tensor:
        b, k, d = h.shape[0], self.vectors.shape[0], len(self.shape)
        if tuple(h.shape[2:2 + d]) != self.shape:
            raise ValueError(f"features must be (B, C, {', '.join(map(str, self.shape))}, ...), got {tuple(h.shape)}")
        rest = h.shape[2 + d:]
        if self.exact or self._scale == 0:
            v = h.new_zeros(b, k, *self.shape)
        else:
            v = self.vectors.to(h.dtype).unsqueeze(0).expand(b, k, *self.shape)
            if self._scale != 1:
                v = v * self._scale
            if self.training and self.dropout > 0:
                keep = (torch.rand(b, device=h.device) >= self.dropout).to(h.dtype)  # (B,)
                v = v * keep.view(b, *([1] * (v.ndim - 1)))
        v = v.reshape(b, k, *self.shape, *([1] * len(rest))).expand(b, k, *self.shape, *rest)
        return torch.cat([h, v], 1)  # (B, C + K, *shape, *rest)

    def extra_repr(self) -> str:
        return f"num_fixed={self.vectors.shape[0]}, dropout={self.dropout}, exact={self.exact}, scale={self._scale}"


class ApproximateVNCanonicalizer(VNCanonicalizer):
    """:class:`VNCanonicalizer` whose global layer also sees ``num_fixed`` learned fixed vectors.

    The dial from exact to free: ``fixed_dropout`` = 1 trains the strict model (the vectors are always
    dropped), 0 never drops them; ``num_fixed`` sets how much orientation information they can carry; at
    inference ``fixed_scale`` in [0, 1] blends them in and ``exact=True`` (same as ``fixed_scale=0``)
    zeroes them, which makes the canonicalizer exactly equivariant again (to float64 round-off).

    Args:
        num_fixed: number ``K >= 1`` of fixed vectors.
        fixed_dropout: per-sample probability of zeroing all of them in training.
        fixed_init_std: std of their Gaussian initialisation (about unit length by default).
        exact: start in exact mode.
        **kwargs: everything :class:`VNCanonicalizer` takes (``group``, ``hidden``, ``k``, ...).

    Shapes: as :class:`VNCanonicalizer`, input ``(B, N, 3)`` -> :class:`Canonicalization`. The global
    layer ``fuse`` is ``Sequential(FixedInputs, VNLinearLeakyReLU(2 * C2 + K, C3))``.
    """

    def __init__(self, group: str = "SE3", *, num_fixed: int = 4, fixed_dropout: float = 0.5,
                 fixed_init_std: float = 1 / math.sqrt(3), exact: bool = False, **kwargs):
        super().__init__(group, **kwargs)
        fixed = FixedInputs(num_fixed, fixed_dropout, fixed_init_std)
        _, c2, c3 = self.hparams["hidden"]
        self.fuse = nn.Sequential(fixed, VNLinearLeakyReLU(2 * c2 + num_fixed, c3,
                                                           negative_slope=self.hparams["negative_slope"]))
        fixed.exact = bool(exact)
        self.hparams.update(num_fixed=num_fixed, fixed_dropout=fixed_dropout, fixed_init_std=fixed_init_std)

    @property
    def fixed(self) -> FixedInputs:
        return self.fuse[0]

    @property
    def exact(self) -> bool:
        """True: the fixed vectors are zeroed and the canonicalizer is exactly equivariant."""
        return self.fixed.exact

    @exact.setter
    def exact(self, value: bool) -> None:
        self.fixed.exact = bool(value)

    @property
    def fixed_scale(self) -> float:
        """Inference weight of the fixed vectors in [0, 1] (0 = exact)."""
        return self.fixed.scale

    @fixed_scale.setter
    def fixed_scale(self, value: float) -> None:
        self.fixed.scale = value

    def symmetry_breaking(self) -> float:
        """Root-mean-square length of the learned fixed vectors (0 = no symmetry breaking possible)."""
        return self.fixed.vectors.detach().square().sum(-1).mean().sqrt().item()
