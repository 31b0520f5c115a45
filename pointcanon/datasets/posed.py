"""Shapes whose class is partly defined by how they stand: the controlled task for approximate equivariance.

Classes ``0 .. len(poses) - 1`` are the same objects (chairs by default) in different poses — upright,
on its side, upside down — so they differ *only* by a rotation: an exactly rotation-invariant model cannot
tell them apart, not even on the training set (at best 1 / len(poses) on them). The remaining classes are other objects in uniformly
random 3D orientations, so their orientation carries no information. Rotations about z (yaw) are the
nuisance a model must be robust to; they are applied by the training / evaluation protocol (``"z"``),
not here. The symmetry of the task is therefore SO(2) about z, and SO(3) only approximately: SO(3)
holds for the orientation-free classes and is broken by the posed ones.

Deterministic: the shapes come from :func:`pointcanon.datasets.synthetic.generate_shapes`, the free
classes' orientations from ``numpy.random.SeedSequence([seed, split, 99, class])``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._common import InMemoryClouds, check_num_points, check_split
from .synthetic import SYNTHETIC_CLASSES, generate_shapes

__all__ = ["POSES", "PosedShapes"]


def _axis_rotation(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


POSES: dict[str, np.ndarray] = {"upright": np.eye(3), "on its side": _axis_rotation(1, math.pi / 2),
                                "upside down": _axis_rotation(0, math.pi)}  # pose name -> rotation (3, 3)


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3, 3)`` uniform on SO(3) (QR of a Gaussian matrix with the sign fix)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


class PosedShapes(InMemoryClouds):
    """One object in several poses (one class per pose) plus orientation-free objects (module docstring).

    Args:
        split: ``'train'`` or ``'test'`` (independent shapes and orientations).
        num_points: points per shape.
        per_class: shapes per class (default 64 for ``'train'``, 50 for ``'test'``).
        seed: a non-negative int; the data is a deterministic function of all arguments.
        posed: the object shown in every pose (a name from :data:`SYNTHETIC_CLASSES`).
        poses: names from :data:`POSES`, one class each (at least two).
        free: the orientation-free objects (names from :data:`SYNTHETIC_CLASSES`, not ``posed``).
        noise: coordinate noise std, as :class:`SyntheticShapes`.
        transform: optional callable on each item's points ``(N, 3)``.

    Shapes: item ``(points (N, 3) float32, label () int64)``; ``points`` ``(n, N, 3)``, ``labels`` ``(n,)``,
    ``posed_classes`` the labels of the posed classes.
    """

    task = "cls"
    root = None
    DEFAULT_PER_CLASS = {"train": 64, "test": 50}

    def __init__(self, split: str = "train", num_points: int = 1024, per_class: int | None = None, seed: int = 0, *,
                 posed: str = "chair", poses=("upright", "on its side", "upside down"),
                 free=("desk", "lamp", "mug", "airplane", "car"), noise: float = 0.005, transform=None):
        self.split = check_split(split)
        self.num_points = check_num_points(num_points)
        per_class = self.DEFAULT_PER_CLASS[self.split] if per_class is None else per_class
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"per_class must be a positive int, got {per_class!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        poses, free = tuple(poses), tuple(free)
        unknown = [p for p in poses if p not in POSES]
        if unknown or len(poses) < 2 or len(set(poses)) != len(poses):
            raise ValueError(f"poses must be at least two distinct names from {list(POSES)}, got {list(poses)}")
        names = (posed, *free)
        if any(n not in SYNTHETIC_CLASSES for n in names) or len(set(names)) != len(names):
            raise ValueError(f"posed and free must be distinct names from {list(SYNTHETIC_CLASSES)}, got {posed!r}, "
                             f"{list(free)}")
        self.seed, self.transform = seed, transform
        self.classes = [f"{posed} {p}" for p in poses] + list(free)
        self.posed_classes = list(range(len(poses)))
        s = ("train", "test").index(self.split)
        points, labels = [], []
        base = generate_shapes(SYNTHETIC_CLASSES.index(posed), per_class, self.num_points, seed, self.split,
                               noise=noise).astype(np.float64)
        for c, p in enumerate(poses):  # the same objects in every pose: only the pose tells the classes apart
            points.append(base @ POSES[p].T)
            labels += [c] * per_class
        for c, name in enumerate(free, start=len(poses)):
            x = generate_shapes(SYNTHETIC_CLASSES.index(name), per_class, self.num_points, seed, self.split,
                                noise=noise).astype(np.float64)
            rng = np.random.default_rng(np.random.SeedSequence([seed, s, 99, c]))
            points.append(np.einsum("bij,bnj->bni", _random_rotations(per_class, rng), x))
            labels += [c] * per_class
        self.points: Tensor = torch.from_numpy(np.concatenate(points).astype(np.float32))  # (n, N, 3)
        self.labels: Tensor = torch.tensor(labels, dtype=torch.int64)  # (n,)

    def __repr__(self) -> str:
        return (f"PosedShapes(split={self.split!r}, shapes={len(self)}, num_points={self.num_points}, "
                f"classes={self.classes}, seed={self.seed})")
