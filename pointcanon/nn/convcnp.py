"""A 1-D ConvCNP (Gordon et al., ICLR 2020): translation-equivariant, approximately equivariant (Ashman et
al., 2024: fixed learned inputs on the grid, :class:`~pointcanon.nn.approximate.FixedInputs`) or
non-equivariant (the grid's absolute position as an input channel), with one architecture for all three.

Encoder: a set convolution puts the context ``(x_i, y_i)`` on a uniform grid ``t_j`` as a density channel
``sum_i phi(t_j - x_i)`` and a data channel ``sum_i y_i phi(t_j - x_i) / density`` (RBF ``phi`` with a
learned length scale). A CNN with circular padding maps them to two channels; a second set convolution
reads the predictive mean and standard deviation at the targets. Shifting every input by a whole number
of grid steps shifts the grid features by as many places, so the strict model is exactly equivariant to
those shifts (up to the RBF tails at the grid's ends, below 1e-20 for inputs well inside it).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .approximate import FixedInputs

CNP_MODES = ("strict", "approximate", "non-equivariant")


class ConvCNP1d(nn.Module):
    """Args:
        mode: ``"strict"`` (translation equivariant), ``"approximate"`` (``num_fixed`` learned functions on
            the grid beside the CNN input, dropped per task with ``fixed_dropout`` in training, zeroed by
            ``model.exact = True``) or ``"non-equivariant"`` (the grid coordinate as an extra channel).
        grid: ``(lo, hi, G)``: G grid points from lo to hi; keep inputs at least ~10 length scales inside.
        channels, layers, kernel: the CNN (``layers`` convolutions of width ``kernel``, ReLU between).

    Shapes: ``forward(xc (B, Nc), yc (B, Nc), xt (B, Nt), mask (B, Nc) or None)`` -> mean, std ``(B, Nt)``.
    """

    def __init__(self, mode: str = "strict", *, grid: tuple[float, float, int] = (-4.0, 4.0, 161),
                 channels: int = 32, layers: int = 5, kernel: int = 9, num_fixed: int = 4,
                 fixed_dropout: float = 0.5):
        super().__init__()
        if mode not in CNP_MODES:
            raise ValueError(f"mode must be one of {CNP_MODES}, got {mode!r}")
        lo, hi, size = float(grid[0]), float(grid[1]), int(grid[2])
        if not (hi > lo and size >= 8):
            raise ValueError(f"grid must be (lo, hi, G) with hi > lo and G >= 8, got {grid}")
        if layers < 1 or kernel < 1 or kernel % 2 == 0 or channels < 1:
            raise ValueError("need layers >= 1, channels >= 1 and an odd kernel")
        self.mode, self.hparams = mode, dict(mode=mode, grid=(lo, hi, size), channels=channels, layers=layers,
                                             kernel=kernel, num_fixed=num_fixed, fixed_dropout=fixed_dropout)
        self.step = (hi - lo) / (size - 1)
        self.register_buffer("grid", lo + torch.arange(size, dtype=torch.float64) * self.step, persistent=False)
        self.log_scale_in = nn.Parameter(torch.tensor(math.log(2 * self.step)))
        self.log_scale_out = nn.Parameter(torch.tensor(math.log(2 * self.step)))
        self.fixed = FixedInputs(num_fixed, fixed_dropout, 1.0, shape=(size,)) if mode == "approximate" else None
        width = 2 + (num_fixed if mode == "approximate" else 0) + (1 if mode == "non-equivariant" else 0)
        convs = []
        for i in range(layers):
            convs.append(nn.Conv1d(width if i == 0 else channels, channels if i < layers - 1 else 2, kernel,
                                   padding=kernel // 2, padding_mode="circular"))
        self.convs = nn.ModuleList(convs)

    @property
    def exact(self) -> bool:
        """Approximate mode: True zeroes the fixed inputs (exactly equivariant again)."""
        return self.fixed is None or self.fixed.exact

    @exact.setter
    def exact(self, value: bool) -> None:
        if self.fixed is None:
            raise ValueError(f"only an approximate ConvCNP has fixed inputs to switch off (mode {self.mode!r})")
        self.fixed.exact = bool(value)

    def forward(self, xc: Tensor, yc: Tensor, xt: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        for name, t in (("xc", xc), ("yc", yc), ("xt", xt)):
            if not isinstance(t, Tensor) or t.ndim != 2 or not t.is_floating_point():
                raise TypeError(f"{name} must be a floating (B, N) tensor, got {getattr(t, 'shape', type(t))}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or inf")
        if xc.shape != yc.shape or xt.shape[0] != xc.shape[0]:
            raise ValueError(f"xc, yc must be (B, Nc) alike and xt (B, Nt): got {tuple(xc.shape)}, {tuple(yc.shape)}, "
                             f"{tuple(xt.shape)}")
        grid = self.grid.to(xc.dtype)
        w = torch.ones_like(xc) if mask is None else mask.to(xc.dtype)
        phi = torch.exp(-0.5 * ((grid[None, :, None] - xc[:, None, :]) / self.log_scale_in.exp()) ** 2)  # (B, G, Nc)
        density = (phi * w[:, None, :]).sum(-1)
        data = (phi * (w * yc)[:, None, :]).sum(-1) / (density + 1e-8)
        h = torch.stack([density, data], 1)  # (B, 2, G)
        if self.fixed is not None:
            h = self.fixed(h)
        elif self.mode == "non-equivariant":
            h = torch.cat([h, (grid / grid.abs().max()).expand(h.shape[0], 1, -1)], 1)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.relu(h)
        psi = torch.exp(-0.5 * ((xt[:, :, None] - grid[None, None, :]) / self.log_scale_out.exp()) ** 2)  # (B, Nt, G)
        out = psi @ h.transpose(1, 2)  # (B, Nt, 2)
        return out[..., 0], 0.01 + 0.99 * F.softplus(out[..., 1])


def gaussian_log_likelihood(y: Tensor, mean: Tensor, std: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean Gaussian log-density per target point ``(B,)`` (over the ``mask``-ed targets)."""
    ll = -0.5 * ((y - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
    w = torch.ones_like(y) if mask is None else mask.to(y.dtype)
    return (ll * w).sum(-1) / w.sum(-1).clamp_min(1)
