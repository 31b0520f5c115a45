"""Group elements and sampling: SO(3), O(3), rotations about an up axis, cyclic C_n.

Conventions (shared by every module, see DESIGN.md): points are row vectors ``(..., N, 3)`` and a
rigid motion acts as ``x -> x @ Q.T + s``. Matrices here are ``(B, 3, 3)`` (or ``(B, 2, 2)`` for C_n).
"""
from __future__ import annotations

import math
from enum import Enum

import torch
from torch import Tensor

AXES = {"x": 0, "y": 1, "z": 2}


class GroupName(str, Enum):
    """The one vocabulary of the 3D symmetry groups used everywhere (configs, CLI, tests, the measure).

    A ``str`` enum: ``GroupName.SO3 == "SO3"``. Parse user input with :meth:`parse` (any case, so the
    older spellings ``"so3"``/``"se3"`` are accepted and normalised).
    """

    SO3 = "SO3"  # rotations
    O3 = "O3"  # rotations and reflections
    SE3 = "SE3"  # rigid motions (rotations + translations)
    E3 = "E3"  # rigid motions and reflections
    Z = "z"  # rotations about the up axis (yaw)
    NONE = "none"  # the identity only

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value) -> "GroupName":
        """``value`` as a :class:`GroupName` (case-insensitive); ``ValueError`` naming the choices."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            for g in cls:
                if g.value.lower() == value.lower():
                    return g
        raise ValueError(f"unknown group {value!r}; expected one of {[g.value for g in cls]}")

    @property
    def rotations(self) -> "GroupName":
        """The group's rotation part (SE3 -> SO3, E3 -> O3; the others are their own)."""
        return {GroupName.SE3: GroupName.SO3, GroupName.E3: GroupName.O3}.get(self, self)

    @property
    def translations(self) -> bool:
        return self in (GroupName.SE3, GroupName.E3)

    @property
    def reflections(self) -> bool:
        return self in (GroupName.O3, GroupName.E3)


GROUPS = tuple(g.value for g in GroupName)


def axis_index(axis: str | int) -> int:
    """Index 0/1/2 of an axis given as ``"x"``, ``"y"``, ``"z"`` or an int."""
    if isinstance(axis, str) and axis.lower() in AXES:
        return AXES[axis.lower()]
    if isinstance(axis, int) and not isinstance(axis, bool) and axis in (0, 1, 2):
        return axis
    raise ValueError(f"axis must be one of 'x', 'y', 'z' or 0, 1, 2, got {axis!r}")


def _gaussian(shape, generator, dtype, device) -> Tensor:
    return torch.randn(*shape, generator=generator, dtype=dtype, device=device)


def random_o3(n: int, *, generator: torch.Generator | None = None, dtype=torch.float32, device=None) -> Tensor:
    """Haar-uniform samples of O(3), ``(n, 3, 3)``: QR of a Gaussian matrix with the sign fix of
    Mezzadri (2007), so that half have det -1."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    a = _gaussian((n, 3, 3), generator, torch.float64, device)
    q, r = torch.linalg.qr(a)
    d = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    d = torch.where(d == 0, torch.ones_like(d), d)
    return (q * d.unsqueeze(-2)).to(dtype)


def random_so3(n: int, *, generator: torch.Generator | None = None, dtype=torch.float32, device=None) -> Tensor:
    """Haar-uniform samples of SO(3), ``(n, 3, 3)``, det = +1."""
    q = random_o3(n, generator=generator, dtype=torch.float64, device=device)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det.unsqueeze(-1)  # flipping one column of a reflection keeps Haar measure
    return q.to(dtype)


def rotation_about_axis(angle: Tensor | float, axis: str | int = "z", *, dtype=None, device=None) -> Tensor:
    """Right-handed rotation by ``angle`` radians about a coordinate axis, ``(*angle.shape, 3, 3)``."""
    i = axis_index(axis)
    if dtype is None:
        dtype = angle.dtype if isinstance(angle, Tensor) and angle.is_floating_point() else torch.get_default_dtype()
    angle = torch.as_tensor(angle, dtype=dtype, device=device)
    c, s = torch.cos(angle), torch.sin(angle)
    j, k = (i + 1) % 3, (i + 2) % 3
    m = torch.zeros(*angle.shape, 3, 3, dtype=angle.dtype, device=angle.device)
    m[..., i, i] = 1
    m[..., j, j] = c
    m[..., k, k] = c
    m[..., k, j] = s
    m[..., j, k] = -s
    return m


def random_rotation_about_axis(n: int, axis: str | int = "z", *, generator=None, dtype=torch.float32, device=None) -> Tensor:
    """Uniform random rotations about one axis (the yaw group SO(2)), ``(n, 3, 3)``."""
    angle = torch.rand(n, generator=generator, dtype=torch.float64, device=device) * (2 * math.pi)
    return rotation_about_axis(angle, axis).to(dtype)


def random_rotations(n: int, group: str, *, up_axis: str | int = "z", generator=None, dtype=torch.float32, device=None) -> Tensor:
    """``(n, 3, 3)`` samples of ``group``: ``"SO3"``/``"SE3"`` (proper), ``"O3"``/``"E3"`` (with
    reflections), ``"z"`` (about ``up_axis``) or ``"none"`` (identities)."""
    g = GroupName.parse(group).rotations
    if g is GroupName.SO3:
        return random_so3(n, generator=generator, dtype=dtype, device=device)
    if g is GroupName.O3:
        return random_o3(n, generator=generator, dtype=dtype, device=device)
    if g is GroupName.Z:
        return random_rotation_about_axis(n, up_axis, generator=generator, dtype=dtype, device=device)
    return torch.eye(3, dtype=dtype, device=device).expand(n, 3, 3).clone()


def random_rigid_motion(n: int, group: str = "SE3", *, translation_scale: float = 1.0, generator=None,
                        dtype=torch.float32, device=None) -> tuple[Tensor, Tensor]:
    """Random rigid motions ``(Q (n,3,3), s (n,3))``; translations are Gaussian with std ``translation_scale``."""
    q = random_rotations(n, group, generator=generator, dtype=dtype, device=device)
    s = _gaussian((n, 3), generator, torch.float64, device).to(dtype) * translation_scale
    return q, s


def apply_rigid(x: Tensor, rotation: Tensor, translation: Tensor | None = None) -> Tensor:
    """``x @ Q.T + s`` for points ``x`` ``(B, N, 3)``, ``Q`` ``(B, 3, 3)``, ``s`` ``(B, 3)``."""
    y = x @ rotation.transpose(-1, -2)
    if translation is not None:
        y = y + translation.unsqueeze(-2)
    return y


def geodesic_angle(r1: Tensor, r2: Tensor | None = None) -> Tensor:
    """Angle in radians of the rotation ``r1^T r2`` (or of ``r1`` alone), ``(B,)``, in [0, pi].

    Uses ``atan2(|skew|, trace part)``, which stays accurate near 0 and pi where ``acos`` does not.
    Both inputs must be proper rotations.
    """
    m = r1 if r2 is None else r1.transpose(-1, -2) @ r2
    cos = (torch.diagonal(m, dim1=-2, dim2=-1).sum(-1) - 1) / 2
    skew = torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    sin = skew.norm(dim=-1) / 2
    return torch.atan2(sin, cos)


def cyclic_rotations(n: int, *, dtype=torch.float32, device=None) -> Tensor:
    """The 2D rotation matrices of C_n, ``(n, 2, 2)``; element k rotates by ``2*pi*k/n`` counter-clockwise."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"cyclic group order must be a positive int, got {n!r}")
    a = torch.arange(n, dtype=torch.float64, device=device) * (2 * math.pi / n)
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2).to(dtype)


def cyclic_compose(a: Tensor | int, b: Tensor | int, n: int):
    """Index of the product of C_n elements ``a`` and ``b`` (rotation by a then b)."""
    return (a + b) % n


def cyclic_inverse(a: Tensor | int, n: int):
    """Index of the inverse of C_n element ``a``."""
    return (-a) % n
