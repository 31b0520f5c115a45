"""Small helpers shared by the datasets: split checks, the up-axis mapping, unit-sphere normalisation,
atomic ``.npy`` writes."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SPLITS = ("train", "test")

# Proper rotations (det +1) taking each possible up axis of the stored files to z, as signed axis
# permutations so that applying them is exact (no rounding): new coordinate k = sign[k] * old[perm[k]].
#   'z': identity.
#   'y': +90 degrees about x, (x, y, z) -> (x, -z, y)  (the y-up -> z-up convention of glTF/Blender).
#   'x': -90 degrees about y, (x, y, z) -> (-z, y, x).
_UP_TO_Z = {
    "z": ((0, 1, 2), (1.0, 1.0, 1.0)),
    "y": ((0, 2, 1), (1.0, -1.0, 1.0)),
    "x": ((2, 1, 0), (-1.0, 1.0, 1.0)),
}


def check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def check_up_axis(up_axis) -> str:
    if isinstance(up_axis, str) and up_axis.lower() in _UP_TO_Z:
        return up_axis.lower()
    raise ValueError(f"up_axis must be one of 'x', 'y', 'z' (the axis that points up in the files), got {up_axis!r}")


def check_num_points(num_points, *, allow_none: bool = False):
    if num_points is None and allow_none:
        return None
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) or num_points < 1:
        raise ValueError(f"num_points must be a positive int, got {num_points!r}")
    return int(num_points)


def up_to_z_matrix(up_axis: str) -> Tensor:
    """The rotation ``R`` (det +1, ``(3, 3)`` float64) with ``x_zup = x @ R.T`` for rows ``x`` whose
    up axis is ``up_axis``."""
    perm, sign = _UP_TO_Z[check_up_axis(up_axis)]
    m = torch.zeros(3, 3, dtype=torch.float64)
    for k in range(3):
        m[k, perm[k]] = sign[k]
    return m


def to_z_up(points: np.ndarray, up_axis: str) -> np.ndarray:
    """Map points ``(..., 3)`` with the given up axis to z-up, exactly (signed permutation, a proper
    rotation: :func:`up_to_z_matrix`)."""
    perm, sign = _UP_TO_Z[check_up_axis(up_axis)]
    if perm == (0, 1, 2):
        return points
    out = points[..., list(perm)]
    return out * np.asarray(sign, dtype=points.dtype)


def normalize_unit_sphere(points: np.ndarray, *, what: str = "points") -> np.ndarray:
    """Centre ``(N, 3)`` points on their mean and scale them so the farthest point has norm 1."""
    c = points - points.mean(axis=0, keepdims=True)
    r = np.sqrt((c * c).sum(-1)).max()
    if not np.isfinite(r) or r <= 0:
        raise ValueError(f"{what}: cannot scale to the unit sphere (all points coincide or are not finite)")
    return c / r


def check_scale(points: np.ndarray, what: str, normalize: bool | None) -> np.ndarray:
    """Shapes ``(n, N, 3)`` as the models expect them. ``normalize=True``: each shape centred and scaled to
    the unit sphere; ``None``: unchanged, but a ``UserWarning`` when they are not (median radius outside
    [0.2, 5] or centroid off by more than half the radius: a user's own scans at raw scale, which train far
    worse, silently); ``False``: unchanged, no check."""
    if normalize is False:
        return points
    x = points.astype(np.float64)
    centre = x.mean(1, keepdims=True)
    radius = np.sqrt(((x - centre) ** 2).sum(-1)).max(-1)  # (n,)
    if normalize:
        if not (np.isfinite(radius).all() and (radius > 0).all()):
            raise ValueError(f"{what}: a shape cannot be scaled to the unit sphere (its points coincide)")
        return ((x - centre) / radius[:, None, None]).astype(points.dtype)
    med_r = float(np.median(radius))
    off = float(np.median(np.sqrt((centre[:, 0] ** 2).sum(-1)) / np.maximum(radius, np.finfo(np.float64).tiny)))
    if not 0.2 <= med_r <= 5.0 or off > 0.5:
        warnings.warn(f"{what}: the shapes are not centred on the unit sphere (median radius {med_r:.3g}, median "
                      f"centroid offset {off:.2g} radii), unlike the official release the models and shipped weights "
                      "expect; pass normalize=True (--dataset.normalize true) to centre and scale each shape",
                      UserWarning, stacklevel=3)
    return points


def atomic_save_npy(path: Path, array: np.ndarray) -> Path:
    """``np.save`` through :func:`pointcanon.core.io.atomic_write`: readers see the old file or the
    complete new one, never a half-written file."""
    from ..core.io import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


class InMemoryClouds(torch.utils.data.Dataset):
    """Base of the classification datasets held in memory: ``points`` ``(n, N, 3)``, ``labels`` ``(n,)``,
    ``classes``, an optional ``transform`` of each item's points; items ``(points (N, 3), label ())``."""

    task = "cls"
    points: Tensor
    labels: Tensor
    classes: list
    transform = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i) -> tuple[Tensor, Tensor]:
        x = self.points[i]
        x = x.clone() if self.transform is None else self.transform(x)
        return x, self.labels[i].clone()


class Subsample(torch.utils.data.Dataset):
    """``num_shapes`` items of ``dataset`` spread evenly over it (every item when it has fewer), for quick
    runs. The dataset's descriptive attributes (``task``, ``classes``, ``num_classes``, ``num_parts``,
    ``num_categories``, ``category_parts``, ``frame_axes``, ``root``, ``split``, ...) are passed through."""

    _PASSED = ("task", "classes", "num_classes", "num_parts", "num_categories", "category_parts", "frame_axes",
               "root", "split", "up_axis", "num_points", "transform")

    def __init__(self, dataset, num_shapes: int):
        if isinstance(num_shapes, bool) or not isinstance(num_shapes, (int, np.integer)) or num_shapes < 1:
            raise ValueError(f"num_shapes must be a positive int, got {num_shapes!r}")
        self.dataset = dataset
        n = len(dataset)
        self.indices = torch.linspace(0, n - 1, min(int(num_shapes), n)).round().long().tolist() if n else []

    def __getattr__(self, name):
        if name in Subsample._PASSED:
            return getattr(self.__dict__["dataset"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]

    def __repr__(self) -> str:
        return f"Subsample({self.dataset!r}, num_shapes={len(self)})"


# ---- shared checks of the official HDF5 layouts (ModelNet40, ShapeNetPart) -----------------------

def unreadable_hdf5(path, error: Exception) -> ValueError:
    """The error for a garbage, truncated or locked HDF5 file (h5py raises OSError and others)."""
    return ValueError(f"{path} is corrupt or not a readable HDF5 file ({type(error).__name__}: {error})")


def missing_hdf5_keys(path, missing: list[str], keys: list[str], expected: str) -> ValueError:
    return ValueError(f"{path} has no {' / '.join(repr(k) for k in missing)} dataset (found keys {keys}); "
                      f"expected {expected}")


def hdf5_labels(path, y: np.ndarray) -> np.ndarray:
    """``label`` of shape (n, 1) or (n,) -> (n,) int64, or ``ValueError`` naming the file."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{path}: 'label' must have shape (n, 1) or (n,), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: 'label' must hold integers, got {y.dtype}")
    return y.astype(np.int64)


def hdf5_points(path, x: np.ndarray) -> np.ndarray:
    """``data`` (n, P, 3) -> float32, or ``ValueError`` naming the file (non-float, empty, NaN / inf)."""
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{path}: 'data' must be floating point, got {x.dtype}")
    x = x.astype(np.float32, copy=False)
    from ..core.validation import check_points

    check_points(torch.from_numpy(x), name=f"{path}: 'data'")
    return x
