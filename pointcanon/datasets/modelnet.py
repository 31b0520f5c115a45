"""ModelNet40 in the official HDF5 layout, and raw ModelNet ``.off`` folders sampled to points.

ModelNet: Wu et al., "3D ShapeNets: A Deep Representation for Volumetric Shapes", CVPR 2015
(https://modelnet.cs.princeton.edu/). The HDF5 release (``modelnet40_ply_hdf5_2048``) is the one of
PointNet (Qi et al., CVPR 2017, https://arxiv.org/abs/1612.00593).

Every item is ``(points, label)``: ``points`` a float32 tensor ``(N, 3)`` (rows are points), **z up**,
``label`` an int64 scalar tensor. No download happens here: see :mod:`pointcanon.datasets.download`.
"""
from __future__ import annotations

import io
import json
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._common import (InMemoryClouds, atomic_save_npy, check_num_points, check_split, check_up_axis, hdf5_labels,
                      check_scale, hdf5_points, missing_hdf5_keys, normalize_unit_sphere, to_z_up, unreadable_hdf5)

__all__ = ["ModelNet40HDF5", "ModelNetOFF", "load_off", "sample_mesh_points", "OFFICIAL_DIRNAME", "METADATA_FILE"]

OFFICIAL_DIRNAME = "modelnet40_ply_hdf5_2048"
METADATA_FILE = "pointcanon.json"  # written by download_modelnet40 next to the files: {"up_axis": "y", ...}


def _repr_transform(transform) -> str:
    return "" if transform is None else f", transform={transform!r}"


class ModelNet40HDF5(InMemoryClouds):
    """ModelNet40 in the official HDF5 layout of PointNet's ``modelnet40_ply_hdf5_2048`` release.

    Layout of ``root`` (or of ``root/modelnet40_ply_hdf5_2048``, as extracted by
    :func:`~pointcanon.datasets.download.download_modelnet40`)::

        shape_names.txt                 one class name per line (label i = line i)
        train_files.txt, test_files.txt one HDF5 file per line; any directory prefix in the line is
                                        ignored, the file is looked up by its name in the same folder
        ply_data_{train,test}K.h5       'data' (n, P, 3) float, 'label' (n, 1) or (n,) int
        ply_data_{split}_K_id2file.json optional: the source mesh of every shape -> ``shape_ids``

    Any point count ``P`` (1,024 in the copy used for tests, 2,048 in the official release). All arrays
    are read once into memory (read-only file access; about 150 MB for all of ModelNet40 at 1,024
    points). The official release has 9,840 training shapes (3 fewer than ModelNet40's 9,843).

    Orientation: items are always **z-up**. ``up_axis`` names the axis that is up *in the files*; the
    points are mapped to z-up by a proper rotation (a signed axis permutation with det +1, never a
    reflecting axis swap; see :func:`pointcanon.datasets.up_to_z_matrix`):

    * ``'z'``: unchanged;
    * ``'y'``: +90 degrees about x, ``(x, y, z) -> (x, -z, y)`` (the official release is y-up);
    * ``'x'``: -90 degrees about y, ``(x, y, z) -> (-z, y, x)``.

    ``up_axis=None`` (default) reads it from ``pointcanon.json`` in the data folder, which
    ``pointcanon data modelnet40`` writes (``'y'`` for the official archive), and otherwise assumes ``'z'``.

    Args:
        root: the data folder (see above).
        split: ``'train'`` or ``'test'``.
        num_points: keep the first ``num_points`` points of every shape (default: all ``P``).
        up_axis: the up axis in the files, ``'x'``, ``'y'``, ``'z'`` or ``None`` (see above).
        transform: optional callable applied to the points ``(N, 3)`` of every item.
        normalize: ``True`` centres and scales every shape to the unit sphere (a user's own scans at raw
            scale); ``None`` (default) warns when the shapes are not so; ``False`` skips the check.

    Shapes:
        item: ``(points (N, 3) float32, label () int64)``; ``points`` attribute ``(n, N, 3)``,
        ``labels`` ``(n,)``.

    Errors (each naming the file or value): a missing root, list file, ``shape_names.txt`` or HDF5 file
    (``FileNotFoundError``); a corrupt / unreadable HDF5 file, missing ``data`` / ``label`` keys, wrong
    array shapes, mismatched lengths, labels outside ``shape_names.txt``, NaN/inf points, a bad
    ``split``, ``up_axis`` or ``num_points`` (``ValueError``).
    """

    task = "cls"

    def __init__(self, root, split: str = "train", num_points: int | None = None, up_axis: str | None = None,
                 transform=None, normalize: bool | None = None):
        self.split = check_split(split)
        num_points = check_num_points(num_points, allow_none=True)
        if up_axis is not None:
            up_axis = check_up_axis(up_axis)
        if root is None:
            raise ValueError("ModelNet40HDF5 needs a root folder (download it with `pointcanon data modelnet40 --root DIR`)")
        self.root = Path(root).expanduser()
        self.folder = _find_hdf5_folder(self.root, split)
        self.classes = _read_names(self.folder / "shape_names.txt")
        if up_axis is None:
            up_axis = _metadata_up_axis(self.folder)
        self.up_axis = up_axis
        self.transform = transform
        self.files = _read_file_list(self.folder, self.folder / f"{split}_files.txt")

        data, labels, point_count = [], [], None
        for path in self.files:
            x, y = _read_h5(path)
            if point_count is None:
                point_count = x.shape[1]
            elif x.shape[1] != point_count:
                raise ValueError(f"{path}: shapes have {x.shape[1]} points, but {self.files[0]} has {point_count}; "
                                 "all files of a split must have the same point count")
            bad = (y < 0) | (y >= len(self.classes))
            if bad.any():
                raise ValueError(f"{path}: label {int(y[bad][0])} (at index {int(np.flatnonzero(bad)[0])}) is out of range "
                                 f"for the {len(self.classes)} classes of {self.folder / 'shape_names.txt'}")
            if num_points is not None:
                if num_points > point_count:
                    raise ValueError(f"num_points={num_points} is more than the {point_count} points per shape in {path}")
                x = x[:, :num_points]
            data.append(np.ascontiguousarray(x, dtype=np.float32))
            labels.append(y.astype(np.int64))
        points = check_scale(np.concatenate(data) if len(data) > 1 else data[0], f"ModelNet40 {split} in {self.folder}", normalize)
        self.point_count = point_count  # P in the files
        self.num_points = points.shape[1]
        self.points: Tensor = torch.from_numpy(np.ascontiguousarray(to_z_up(points, up_axis)))  # (n, N, 3)
        self.labels: Tensor = torch.from_numpy(np.concatenate(labels))  # (n,)
        self.shape_ids = _read_id2file(self.files, [len(y) for y in labels])

    def __repr__(self) -> str:
        return (f"ModelNet40HDF5(root='{self.root}', split={self.split!r}, shapes={len(self)}, "
                f"num_points={self.num_points}, classes={self.num_classes}, up_axis={self.up_axis!r}"
                f"{_repr_transform(self.transform)})")


def _find_hdf5_folder(root: Path, split: str) -> Path:
    if not root.exists():
        raise FileNotFoundError(f"ModelNet40 root {root} does not exist "
                                "(download it with `pointcanon data modelnet40 --root DIR`)")
    if not root.is_dir():
        raise FileNotFoundError(f"ModelNet40 root {root} is not a folder")
    listing = f"{split}_files.txt"
    if not (root / listing).exists() and (root / OFFICIAL_DIRNAME / listing).exists():
        return root / OFFICIAL_DIRNAME
    return root


def _read_text_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is unreadable ({type(e).__name__}: {e})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_names(path: Path) -> list[str]:
    names = _read_text_lines(path, "class list")
    if not names:
        raise ValueError(f"class list {path} is empty")
    return names


def _read_file_list(folder: Path, listing: Path) -> list[Path]:
    lines = _read_text_lines(listing, "file list")
    if not lines:
        raise ValueError(f"file list {listing} is empty")
    files = []
    for line in lines:
        path = folder / line.replace("\\", "/").rsplit("/", 1)[-1]
        if not path.is_file():
            raise FileNotFoundError(f"HDF5 file {path} (listed in {listing} as {line!r}) does not exist")
        files.append(path)
    return files


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``data`` (n, P, 3) float32 and ``label`` (n,) int64 of one HDF5 file, validated."""
    import h5py

    missing, keys = [], []
    try:
        with h5py.File(path, "r") as f:
            keys = sorted(f.keys())
            missing = [k for k in ("data", "label") if k not in keys]
            if not missing:
                x, y = np.asarray(f["data"][()]), np.asarray(f["label"][()])
    except Exception as e:  # h5py raises OSError (and others) for garbage, truncated or locked files
        raise unreadable_hdf5(path, e) from None
    if missing:
        raise missing_hdf5_keys(path, missing, keys, "'data' (n, P, 3) and 'label' (n, 1)")
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{path}: 'data' must have shape (n, P, 3), got {x.shape}")
    y = hdf5_labels(path, y)
    if len(x) != len(y):
        raise ValueError(f"{path}: 'data' has {len(x)} shapes but 'label' has {len(y)}")
    return hdf5_points(path, x), y


def _metadata_up_axis(folder: Path) -> str:
    meta = folder / METADATA_FILE
    if not meta.is_file():
        return "z"
    try:
        value = json.loads(meta.read_text()).get("up_axis", "z")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{meta} is not a valid pointcanon metadata file ({type(e).__name__}: {e})") from None
    try:
        return check_up_axis(value)
    except ValueError as e:
        raise ValueError(f"{meta}: {e}") from None


def _read_id2file(files: list[Path], counts: list[int]) -> list[str] | None:
    """Source mesh names from ``ply_data_{split}_K_id2file.json`` when every file has one."""
    ids = []
    for path, n in zip(files, counts):
        m = re.fullmatch(r"(.*?)(\d+)\.h5", path.name)
        sidecar = path.with_name(f"{m.group(1)}_{m.group(2)}_id2file.json") if m else None
        if sidecar is None or not sidecar.is_file():
            return None
        try:
            names = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            warnings.warn(f"ignoring unreadable {sidecar} ({e}); shape_ids is None", stacklevel=3)
            return None
        if not isinstance(names, list) or len(names) != n:
            warnings.warn(f"ignoring {sidecar}: it lists {len(names) if isinstance(names, list) else '?'} shapes, "
                          f"{path.name} has {n}; shape_ids is None", stacklevel=3)
            return None
        ids.extend(str(s) for s in names)
    return ids


# ------------------------------------------------------------------------------------------------
# raw ModelNet meshes

_BROKEN_HEADER = re.compile(rb"\A(\s*)(C?OFF)[ \t]*(?=[-+.\d])")


def load_off(path, *, require_faces: bool = True):
    """Read an ``.off`` mesh with trimesh (no processing: vertices and faces as in the file).

    ModelNet has files whose header runs into the counts line, ``OFF8 6 0`` for ``OFF\\n8 6 0``; the
    header is split in memory before parsing (trimesh 5.2 copes with it too, but not every version).
    Raises ``ValueError`` naming the file when it cannot be parsed or has no faces (with
    ``require_faces=False``, a point set, ``OFF N 0 0``, is returned as a ``Trimesh`` with ``(0, 3)`` faces).
    """
    import trimesh

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"cannot read mesh {path} ({e})") from None
    fixed = _BROKEN_HEADER.sub(rb"\1\2\n", raw, count=1)
    try:
        mesh = trimesh.load(io.BytesIO(fixed), file_type="off", force="mesh", process=False, validate=False)
    except Exception as e:
        raise ValueError(f"{path} is not a readable OFF mesh ({type(e).__name__}: {e})") from None
    if not require_faces and isinstance(mesh, trimesh.Trimesh) and len(mesh.vertices) and len(mesh.faces) == 0:
        mesh = trimesh.Trimesh(mesh.vertices, np.zeros((0, 3), np.int64), process=False)
    elif not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{path} has no faces")
    if not np.isfinite(mesh.vertices).all():
        raise ValueError(f"{path} has NaN or inf vertex coordinates")
    return mesh


def sample_mesh_points(mesh, num_points: int, seed: int, *, what: str = "mesh") -> np.ndarray:
    """Area-weighted uniform samples on the surface of a trimesh mesh, ``(num_points, 3)`` float32,
    centred on their mean and scaled into the unit sphere. Deterministic for a given ``seed``."""
    import trimesh

    if not mesh.area > 0:
        raise ValueError(f"{what} has zero surface area; cannot sample points")
    points, _ = trimesh.sample.sample_surface(mesh, num_points, seed=seed)
    return normalize_unit_sphere(np.asarray(points, dtype=np.float64), what=what).astype(np.float32)


class ModelNetOFF(Dataset):
    """Raw ModelNet folders (``ModelNet10`` / ``ModelNet40`` as released): ``root/<class>/<split>/<name>.off``.

    Every mesh is read with trimesh (:func:`load_off`, which also reads ModelNet's broken ``OFF8 6 0``
    headers), sampled with ``num_points`` area-weighted surface points with a fixed seed per file
    (derived from ``<class>/<split>/<name>``, so the same file always gives the same points), centred
    on the points' mean and scaled into the unit sphere. The points are cached as
    ``cache_dir/<class>/<split>/<name>.n<num_points>.v1.npy`` (written atomically; a cache file older
    than its mesh is rebuilt); the first pass over the data is slow, later ones read the cache. Call
    :meth:`prepare` to fill the cache up front. If the cache folder is not writable, a warning is given
    and the points are kept in memory instead.

    Classes are the sub-folders of ``root`` (sorted; hidden folders ignored) that have a ``train`` or
    ``test`` folder, so labels agree between the splits. Raw ModelNet meshes are z-up; give
    ``up_axis`` for other data (mapped to z-up as in :class:`ModelNet40HDF5`).

    Shapes:
        item: ``(points (num_points, 3) float32, label () int64)``.
    """

    task = "cls"
    CACHE_VERSION = 1

    def __init__(self, root, split: str = "train", num_points: int = 1024, transform=None, cache_dir=None,
                 up_axis: str = "z"):
        self.split = check_split(split)
        self.num_points = check_num_points(num_points)
        self.up_axis = check_up_axis(up_axis)
        if root is None:
            raise ValueError("ModelNetOFF needs a root folder holding <class>/<split>/*.off")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"ModelNet root {self.root} does not exist or is not a folder")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else self.root / ".pointcanon_cache"
        self.transform = transform
        self.classes = sorted(d.name for d in self.root.iterdir()
                              if d.is_dir() and not d.name.startswith(".") and
                              ((d / "train").is_dir() or (d / "test").is_dir()))
        files, labels = [], []
        for label, name in enumerate(self.classes):
            folder = self.root / name / split
            if folder.is_dir():
                found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".off" and p.is_file())
                files += found
                labels += [label] * len(found)
        if not files:
            raise ValueError(f"no meshes found: expected {self.root}/<class>/{split}/*.off")
        self.files: list[Path] = files
        self.labels: Tensor = torch.tensor(labels, dtype=torch.int64)
        self._memory: dict[int, np.ndarray] = {}
        self._cache_writable = True

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def _key(self, i: int) -> str:
        p = self.files[i]
        return f"{p.parent.parent.name}/{self.split}/{p.name}"

    def cache_path(self, i: int) -> Path:
        p = self.files[i]
        return self.cache_dir / p.parent.parent.name / self.split / f"{p.stem}.n{self.num_points}.v{self.CACHE_VERSION}.npy"

    def _cached(self, i: int) -> np.ndarray | None:
        path = self.cache_path(i)
        try:
            if path.stat().st_mtime < self.files[i].stat().st_mtime:
                return None  # the mesh changed after the cache was written
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # missing or unreadable: rebuild
        if x.shape != (self.num_points, 3) or x.dtype != np.float32 or not np.isfinite(x).all():
            return None
        return x

    def load_points(self, i: int) -> np.ndarray:
        """The normalised sample of mesh ``i`` in the file's own axes, ``(num_points, 3)`` float32,
        from the cache when possible."""
        i = range(len(self))[i]  # negative indices, IndexError
        if i in self._memory:
            return self._memory[i]
        x = self._cached(i)
        if x is None:
            path = self.files[i]
            seed = zlib.crc32(self._key(i).encode())
            x = sample_mesh_points(load_off(path), self.num_points, seed, what=str(path))
            if self._cache_writable:
                try:
                    atomic_save_npy(self.cache_path(i), x)
                except OSError as e:
                    self._cache_writable = False
                    warnings.warn(f"cannot write the point cache in {self.cache_dir} ({e}); keeping points in memory",
                                  stacklevel=3)
            if not self._cache_writable:
                self._memory[i] = x
        return x

    def prepare(self, progress: bool = True) -> "ModelNetOFF":
        """Sample every mesh now (filling the cache); returns ``self``."""
        from tqdm.auto import tqdm

        for i in tqdm(range(len(self)), desc=f"sampling {self.split} meshes", disable=None if progress else True):
            self.load_points(i)
        return self

    def __getitem__(self, i) -> tuple[Tensor, Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(to_z_up(self.load_points(int(i)), self.up_axis)))
        x = x.clone() if self.transform is None else self.transform(x)
        return x, self.labels[i].clone()

    def __repr__(self) -> str:
        return (f"ModelNetOFF(root='{self.root}', split={self.split!r}, shapes={len(self)}, num_points={self.num_points}, "
                f"classes={self.num_classes}, up_axis={self.up_axis!r}, cache_dir='{self.cache_dir}'"
                f"{_repr_transform(self.transform)})")
