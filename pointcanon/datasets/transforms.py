"""Small, non-mutating point-cloud transforms (in the spirit of PyTorch Geometric's ``transforms``).

Every transform is a callable on a points tensor ``(N, 3)`` or a batch ``(B, N, 3)`` (rows are points)
and returns a new tensor of the same shape, dtype and device; the input is never modified. On a batch,
each cloud gets its own random draw. Random numbers come from the optional ``generator`` (a CPU
``torch.Generator``; draws are made on the CPU in float64 and then moved to the points' device/dtype,
so a seeded generator gives the same result on every device).

Shapes:
    input: ``(N, 3)`` or ``(B, N, 3)`` floating tensor; output: the same shape.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core.groups import GroupName, axis_index, random_rotations

__all__ = ["Compose", "Jitter", "NormalizeUnitSphere", "RandomRotate", "RandomScale", "RandomTranslate"]


def _check(x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"points must be a torch.Tensor of shape (N, 3) or (B, N, 3), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"points must have a floating dtype, got {x.dtype}")
    if x.ndim not in (2, 3) or x.shape[-1] != 3:
        raise ValueError(f"points must have shape (N, 3) or (B, N, 3), got {tuple(x.shape)}")
    return x


def _batch(x: Tensor) -> tuple[Tensor, bool]:
    """``(B, N, 3)`` view of ``x`` and whether it was a single cloud."""
    return (x.unsqueeze(0), True) if x.ndim == 2 else (x, False)


def _unbatch(y: Tensor, single: bool) -> Tensor:
    return y.squeeze(0) if single else y


def _uniform(shape, lo: float, hi: float, generator, like: Tensor) -> Tensor:
    u = torch.rand(*shape, generator=generator, dtype=torch.float64)
    return (lo + (hi - lo) * u).to(dtype=like.dtype, device=like.device)


def _gen_repr(generator) -> str:
    return "" if generator is None else ", generator=<torch.Generator>"


class RandomRotate:
    """Random rotation of each cloud: ``x -> x @ Q.T``, ``Q`` uniform on SO(3) (``group="SO3"``), on O(3)
    (``"O3"``) or a uniform angle about ``up_axis`` (``group="z"``, the yaw group of upright data). For
    transforming a dataset's items (``transform=``); training's own augmentation is
    :func:`pointcanon.train.rotate_batch`. Both draw with :func:`pointcanon.core.groups.random_rotations`.

    Args:
        group: ``"z"``, ``"SO3"`` or ``"O3"`` (a :class:`~pointcanon.core.groups.GroupName`, any case).
        up_axis: the up axis for ``group="z"`` (``"x"``, ``"y"``, ``"z"``); datasets of this package are z-up.
        generator: optional ``torch.Generator`` (CPU).
    """

    def __init__(self, group: str = "z", up_axis: str = "z", *, generator: torch.Generator | None = None):
        g = GroupName.parse(group)
        if g not in (GroupName.Z, GroupName.SO3, GroupName.O3):
            raise ValueError(f"group must be 'z' (about the up axis), 'SO3' or 'O3', got {group!r}")
        self.group = g.value
        self.up_axis = "xyz"[axis_index(up_axis)]
        self.generator = generator

    def matrices(self, n: int) -> Tensor:
        """``n`` rotation matrices ``(n, 3, 3)`` float64 drawn as this transform would."""
        return random_rotations(n, self.group, up_axis=self.up_axis, generator=self.generator, dtype=torch.float64)

    def __call__(self, x: Tensor) -> Tensor:
        xb, single = _batch(_check(x))
        q = self.matrices(xb.shape[0]).to(dtype=x.dtype, device=x.device)  # (B, 3, 3)
        return _unbatch(xb @ q.transpose(-1, -2), single)

    def __repr__(self) -> str:
        return f"RandomRotate(group={self.group!r}, up_axis={self.up_axis!r}{_gen_repr(self.generator)})"


class Jitter:
    """Per-point Gaussian noise of std ``sigma``, clipped to ``[-clip, clip]`` (PointNet's augmentation)."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05, *, generator: torch.Generator | None = None):
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a non-negative number, got {sigma!r}")
        if not (clip > 0):
            raise ValueError(f"clip must be positive, got {clip!r}")
        self.sigma, self.clip, self.generator = float(sigma), float(clip), generator

    def __call__(self, x: Tensor) -> Tensor:
        _check(x)
        noise = torch.randn(*x.shape, generator=self.generator, dtype=torch.float64) * self.sigma
        noise = noise.clamp_(-self.clip, self.clip).to(dtype=x.dtype, device=x.device)
        return x + noise

    def __repr__(self) -> str:
        return f"Jitter(sigma={self.sigma}, clip={self.clip}{_gen_repr(self.generator)})"


class RandomScale:
    """Scale each cloud by a factor uniform in ``[lo, hi]``; ``anisotropic=True`` draws one factor per
    axis (this breaks rotation equivariance of the data on purpose: use it with care)."""

    def __init__(self, lo: float = 0.8, hi: float = 1.25, *, anisotropic: bool = False,
                 generator: torch.Generator | None = None):
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"need 0 < lo <= hi, got lo={lo!r}, hi={hi!r}")
        self.lo, self.hi, self.anisotropic, self.generator = float(lo), float(hi), bool(anisotropic), generator

    def __call__(self, x: Tensor) -> Tensor:
        xb, single = _batch(_check(x))
        s = _uniform((xb.shape[0], 1, 3 if self.anisotropic else 1), self.lo, self.hi, self.generator, x)
        return _unbatch(xb * s, single)

    def __repr__(self) -> str:
        return f"RandomScale(lo={self.lo}, hi={self.hi}, anisotropic={self.anisotropic}{_gen_repr(self.generator)})"


class RandomTranslate:
    """Translate each cloud by a vector uniform in ``[-scale, scale]^3``."""

    def __init__(self, scale: float = 0.1, *, generator: torch.Generator | None = None):
        if not (scale >= 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a non-negative number, got {scale!r}")
        self.scale, self.generator = float(scale), generator

    def __call__(self, x: Tensor) -> Tensor:
        xb, single = _batch(_check(x))
        t = _uniform((xb.shape[0], 1, 3), -self.scale, self.scale, self.generator, x)
        return _unbatch(xb + t, single)

    def __repr__(self) -> str:
        return f"RandomTranslate(scale={self.scale}{_gen_repr(self.generator)})"


class NormalizeUnitSphere:
    """Centre each cloud on its mean and scale it so its farthest point has norm 1 (deterministic)."""

    def __call__(self, x: Tensor) -> Tensor:
        _check(x)
        c = x - x.mean(dim=-2, keepdim=True)
        r = c.norm(dim=-1, keepdim=True).amax(dim=-2, keepdim=True)
        return c / r.clamp_min(torch.finfo(x.dtype).tiny)

    def __repr__(self) -> str:
        return "NormalizeUnitSphere()"


class Compose:
    """Apply transforms in order: ``Compose([a, b])(x) == b(a(x))``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"every transform must be callable, got {t!r}")

    def __call__(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])" if inner else "Compose([])"
