"""ShapeNetPart: part segmentation of 16,881 ShapeNet shapes in 16 categories with 50 parts.

Yi et al., "A Scalable Active Framework for Region Annotation in 3D Shape Collections", SIGGRAPH Asia
2016 (https://cs.stanford.edu/~ericyi/project_page/part_annotation/). Two release layouts are read:

* :class:`ShapeNetPartHDF5`: the ``hdf5_data`` folder of PointNet (Qi et al., CVPR 2017,
  https://arxiv.org/abs/1612.00593), 2,048 points per shape;
* :class:`ShapeNetPartNormal`: ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` of
  PointNet++ (Qi et al., NeurIPS 2017), one text file per shape with a varying number of points.

Every item is ``(points, category, parts)``: ``points`` a float32 tensor ``(N, 3)`` (rows are points),
**z up**; ``category`` an int64 scalar tensor in ``[0, 16)``; ``parts`` an int64 tensor ``(N,)`` of
*global* part ids in ``[0, 50)``, each inside its category's range (``category_parts[category]``).
Category ids and part ranges follow the benchmark's standard table (:data:`CATEGORIES`,
:data:`PARTS_PER_CATEGORY`), which is fixed here and checked against the files that describe it.
No download happens here.

Orientation: ShapeNet files are **y up**. ``up_axis`` names the up axis *in the files* (default
``'y'``); points are mapped to z-up by the proper rotation of :func:`pointcanon.datasets.up_to_z_matrix`
(``'y'``: ``(x, y, z) -> (x, -z, y)``; ``'z'``: unchanged). ``frame_axes = "zx"``: after that mapping the
typical mirror plane of ShapeNet shapes contains z (up) and x; canonicalizers may use it to order axes.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..core.segmentation import category_parts as _category_parts, check_part_labels
from ._common import check_num_points, check_up_axis, hdf5_labels, hdf5_points, missing_hdf5_keys, to_z_up, unreadable_hdf5
from .modelnet import _read_file_list, _read_id2file, _read_text_lines, _repr_transform

__all__ = ["ShapeNetPartHDF5", "ShapeNetPartNormal", "CATEGORIES", "SYNSETS", "PARTS_PER_CATEGORY", "PART_OFFSETS",
           "NUM_PARTS", "SHAPENET_SPLITS"]

# The benchmark's standard table: category id = position, with its ShapeNet synset and part count.
_TABLE = (
    ("Airplane", "02691156", 4), ("Bag", "02773838", 2), ("Cap", "02954340", 2), ("Car", "02958343", 4),
    ("Chair", "03001627", 4), ("Earphone", "03261776", 3), ("Guitar", "03467517", 3), ("Knife", "03624134", 2),
    ("Lamp", "03636649", 4), ("Laptop", "03642806", 2), ("Motorbike", "03790512", 6), ("Mug", "03797390", 2),
    ("Pistol", "03948459", 3), ("Rocket", "04099429", 3), ("Skateboard", "04225987", 3), ("Table", "04379243", 3),
)
CATEGORIES: tuple[str, ...] = tuple(name for name, _, _ in _TABLE)
SYNSETS: tuple[str, ...] = tuple(synset for _, synset, _ in _TABLE)
PARTS_PER_CATEGORY: tuple[int, ...] = tuple(k for _, _, k in _TABLE)
PART_OFFSETS: tuple[int, ...] = tuple(int(o) for o in np.cumsum((0,) + PARTS_PER_CATEGORY[:-1]))
NUM_PARTS = sum(PARTS_PER_CATEGORY)  # 50
SHAPENET_SPLITS = ("train", "val", "test")

HDF5_DIRNAME = "hdf5_data"
NORMAL_DIRNAME = "shapenetcore_partanno_segmentation_benchmark_v0_normal"


def _check_split(split) -> str:
    if split not in SHAPENET_SPLITS:
        raise ValueError(f"split must be one of {SHAPENET_SPLITS}, got {split!r}")
    return split


def _find_folder(root: Path, marker: str, dirname: str, what: str) -> Path:
    """``root`` itself, or ``root/dirname`` when ``marker`` is only there (the folder of the archive)."""
    if not root.exists():
        raise FileNotFoundError(f"{what} root {root} does not exist")
    if not root.is_dir():
        raise FileNotFoundError(f"{what} root {root} is not a folder")
    if not (root / marker).exists() and (root / dirname / marker).exists():
        return root / dirname
    return root


class _ShapeNetPart(Dataset):
    """What both layouts share: the category / part table and the item protocol of ``task="partseg"``."""

    task = "partseg"
    num_parts = NUM_PARTS
    num_categories = len(CATEGORIES)
    classes = list(CATEGORIES)
    synsets = list(SYNSETS)
    category_parts = _category_parts(PART_OFFSETS, NUM_PARTS)  # [range(0, 4), range(4, 6), ...]
    frame_axes = "zx"

    def _setup(self, root, split, up_axis, transform) -> None:
        self.split = _check_split(split)
        self.up_axis = check_up_axis(up_axis)
        if root is None:
            raise ValueError(f"{type(self).__name__} needs a root folder")
        self.root = Path(root).expanduser()
        self.transform = transform
        self.classes = list(CATEGORIES)
        self.synsets = list(SYNSETS)

    def _check_parts(self, parts: np.ndarray, categories: np.ndarray, where: str) -> None:
        try:
            check_part_labels(torch.from_numpy(parts), torch.from_numpy(categories), self.category_parts)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def _item(self, points: np.ndarray, category: int, parts: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(to_z_up(points, self.up_axis), dtype=np.float32))
        x = x if self.transform is None else self.transform(x)
        return x, torch.tensor(category, dtype=torch.int64), torch.from_numpy(parts.astype(np.int64))


# ------------------------------------------------------------------------------------------------
# the hdf5_data layout


class ShapeNetPartHDF5(_ShapeNetPart):
    """ShapeNetPart in the ``hdf5_data`` layout of PointNet.

    Layout of ``root`` (or of ``root/hdf5_data``)::

        all_object_categories.txt          16 lines "<Name> <synset>" in the standard order (label i = line i)
        {train,val,test}_hdf5_file_list.txt one HDF5 file per line (any directory prefix is ignored;
                                            the file is looked up by name in the same folder)
        ply_data_{split}K.h5               'data' (n, P, 3) float, 'label' (n, 1) or (n,) category 0-15,
                                            'pid' (n, P) global part id 0-49, optional 'normal' (n, P, 3)
        ply_data_{split}_K_id2file.json    optional: "<synset>/<id>" of every shape -> ``shape_ids``
        part_ids.json                      optional: {"part_offsets": [0, 4, 6, ...], ...}; checked
                                            against the standard table when present

    Any point count ``P`` (2,048 in the release). The points of these files are in random order, so
    ``num_points`` keeps the **first** ``num_points`` points of every shape (as PointNet does; default:
    all ``P``). All arrays are read once into memory; files are opened read-only.

    Args:
        root: the data folder (see above).
        split: ``'train'``, ``'val'`` or ``'test'`` (whichever list files exist).
        num_points: points kept per shape (the first ones; default all).
        up_axis: the up axis in the files (default ``'y'``, ShapeNet's), mapped to z-up.
        transform: optional callable applied to the points ``(N, 3)`` of every item (after the z-up map).

    Shapes:
        item: ``(points (N, 3) float32, category () int64, parts (N,) int64)``; attributes ``points``
        ``(n, N, 3)`` (z-up), ``categories`` ``(n,)``, ``parts`` ``(n, N)``, ``normals`` ``(n, N, 3)`` (z-up) or
        ``None``.

    Errors (each naming the file or value): a missing root, list file, ``all_object_categories.txt`` or
    HDF5 file (``FileNotFoundError``); a corrupt HDF5 file, missing ``data`` / ``label`` / ``pid``,
    wrong shapes or dtypes, mismatched shape or point counts, a category outside 0-15, a part id outside
    its category's parts, NaN/inf points, a category file or ``part_ids.json`` that disagrees with the
    standard table, a bad ``split``, ``up_axis`` or ``num_points`` (``ValueError``).
    """

    def __init__(self, root, split: str = "train", num_points: int | None = None, up_axis: str = "y",
                 transform=None):
        self._setup(root, split, up_axis, transform)
        num_points = check_num_points(num_points, allow_none=True)
        listing = f"{split}_hdf5_file_list.txt"
        self.folder = _find_folder(self.root, listing, HDF5_DIRNAME, "ShapeNetPart")
        _check_category_file(self.folder / "all_object_categories.txt")
        _check_part_ids(self.folder / "part_ids.json")
        self.files = _read_file_list(self.folder, self.folder / listing)

        points, cats, parts, normals, point_count = [], [], [], [], None
        for path in self.files:
            x, c, p, nrm = _read_part_h5(path, num_points)
            if point_count is None:
                point_count = x.shape[1]
            elif x.shape[1] != point_count:
                raise ValueError(f"{path}: shapes have {x.shape[1]} points, but {self.files[0]} has {point_count}; "
                                 "all files of a split must have the same point count (or give num_points)")
            bad = (c < 0) | (c >= self.num_categories)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{path}: category label {int(c[j])} (at index {j}) is out of range for the "
                                 f"{self.num_categories} ShapeNetPart categories")
            self._check_parts(p, c, str(path))
            points.append(x)
            cats.append(c)
            parts.append(p)
            normals.append(nrm)
        self.point_count = point_count
        self.points: Tensor = torch.from_numpy(np.ascontiguousarray(to_z_up(np.concatenate(points), self.up_axis)))
        self.num_points = self.points.shape[1]
        self.categories: Tensor = torch.from_numpy(np.concatenate(cats))  # (n,)
        self.parts: Tensor = torch.from_numpy(np.concatenate(parts))  # (n, N)
        self.normals: Tensor | None = None
        if all(n is not None for n in normals):
            self.normals = torch.from_numpy(np.ascontiguousarray(to_z_up(np.concatenate(normals), self.up_axis)))
        self.shape_ids = _read_id2file(self.files, [len(c) for c in cats])

    def __len__(self) -> int:
        return len(self.categories)

    def __getitem__(self, i) -> tuple[Tensor, Tensor, Tensor]:
        x = self.points[i]
        x = x.clone() if self.transform is None else self.transform(x)
        return x, self.categories[i].clone(), self.parts[i].clone()

    def __repr__(self) -> str:
        return (f"ShapeNetPartHDF5(root='{self.root}', split={self.split!r}, shapes={len(self)}, "
                f"num_points={self.num_points}, categories={self.num_categories}, parts={self.num_parts}, "
                f"up_axis={self.up_axis!r}{_repr_transform(self.transform)})")


def _check_category_file(path: Path) -> None:
    lines = _read_text_lines(path, "category list")
    if len(lines) != len(_TABLE):
        raise ValueError(f"category list {path} has {len(lines)} lines; ShapeNetPart has {len(_TABLE)} categories "
                         f"({', '.join(CATEGORIES)})")
    for k, (line, (name, synset, _)) in enumerate(zip(lines, _TABLE)):
        fields = line.split()
        if len(fields) != 2 or fields[0].lower() != name.lower() or fields[1] != synset:
            raise ValueError(f"category list {path}, line {k + 1}: {line!r}, expected '{name} {synset}' "
                             "(the standard ShapeNetPart order, which the category labels refer to)")


def _check_part_ids(path: Path) -> None:
    if not path.is_file():
        return
    try:
        meta = json.loads(path.read_text())
        offsets = [int(o) for o in meta["part_offsets"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a valid part table: expected {{\"part_offsets\": [...]}} "
                         f"({type(e).__name__}: {e})") from None
    if offsets != list(PART_OFFSETS):
        raise ValueError(f"{path}: part_offsets {offsets} differ from the standard ShapeNetPart table {list(PART_OFFSETS)}")
    counts = meta.get("parts_per_category")
    if counts is not None and list(counts) != list(PARTS_PER_CATEGORY):
        raise ValueError(f"{path}: parts_per_category {counts} differ from the standard table {list(PARTS_PER_CATEGORY)}")
    names = meta.get("category_names")
    if names is not None and [str(n).lower() for n in names] != [n.lower() for n in CATEGORIES]:
        raise ValueError(f"{path}: category_names {names} differ from the standard table {list(CATEGORIES)}")


def _read_part_h5(path: Path, num_points: int | None):
    """``data`` (n, N, 3) float32, ``label`` (n,) int64, ``pid`` (n, N) int64 and ``normal`` (n, N, 3)
    float32 or None of one HDF5 file, shape-checked (ranges are checked by the caller)."""
    import h5py

    need = ("data", "label", "pid")
    missing, keys, shapes = [], [], {}
    try:
        with h5py.File(path, "r") as f:
            keys = sorted(f.keys())
            missing = [k for k in need if k not in keys]
            if not missing:
                shapes = {k: f[k].shape for k in keys if k in need + ("normal",)}
                if len(shapes["data"]) != 3 or shapes["data"][-1] != 3:
                    raise _ShapeError(f"{path}: 'data' must have shape (n, P, 3), got {shapes['data']}")
                n, p = shapes["data"][:2]
                if num_points is not None and num_points > p:
                    raise _ShapeError(f"num_points={num_points} is more than the {p} points per shape in {path}")
                cut = slice(None) if num_points is None else slice(0, num_points)
                x = np.asarray(f["data"][:, cut])
                y = np.asarray(f["label"][()])
                pid = np.asarray(f["pid"][()])
                nrm = np.asarray(f["normal"][()]) if "normal" in keys else None
    except _ShapeError as e:
        raise ValueError(str(e)) from None
    except Exception as e:  # h5py raises OSError (and others) for garbage, truncated or locked files
        raise unreadable_hdf5(path, e) from None
    if missing:
        raise missing_hdf5_keys(path, missing, keys, "'data' (n, P, 3), 'label' (n, 1) and 'pid' (n, P)")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{path}: 'data' must be floating point, got {x.dtype}")
    y = hdf5_labels(path, y)
    if not np.issubdtype(pid.dtype, np.integer):
        raise ValueError(f"{path}: 'pid' must hold integers, got {pid.dtype}")
    if len(y) != n:
        raise ValueError(f"{path}: 'data' has {n} shapes but 'label' has {len(y)}")
    if pid.shape != (n, p):
        raise ValueError(f"{path}: 'pid' has shape {pid.shape} but 'data' has {(n, p, 3)}; "
                         "expected one part id per point, (n, P)")
    if nrm is not None and nrm.shape != (n, p, 3):
        raise ValueError(f"{path}: 'normal' has shape {nrm.shape}, expected {(n, p, 3)} like 'data'")
    x = hdf5_points(path, x)
    pid = pid[:, : x.shape[1]].astype(np.int64)
    if nrm is not None:
        nrm = nrm[:, : x.shape[1]].astype(np.float32)
        if not np.isfinite(nrm).all():
            raise ValueError(f"{path}: 'normal' contains NaN or inf")
    return x, y, pid, nrm


class _ShapeError(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# the shapenetcore_partanno_segmentation_benchmark_v0_normal layout


class ShapeNetPartNormal(_ShapeNetPart):
    """ShapeNetPart in the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` layout of PointNet++.

    Layout of ``root`` (or of ``root/shapenetcore_partanno_segmentation_benchmark_v0_normal``)::

        synsetoffset2category.txt          lines "<Name> <synset>" (a subset of the standard 16 is allowed)
        <synset>/<id>.txt                  one shape per file, rows "x y z nx ny nz part" (global part id)
        train_test_split/shuffled_{train,val,test}_file_list.json
                                           ["shape_data/<synset>/<id>", ...]

    Shapes have varying point counts (about 2,000-3,000), so every item is a deterministic sample of
    ``num_points`` points (default 2,048): a random choice without replacement seeded by the item's
    index (the same index gives the same points in every epoch); a shape with fewer points keeps all of
    them plus a seeded choice *with* replacement for the rest. Files are read (read-only) when an item
    is requested; the constructor only checks the lists and that every listed file exists. The normals
    columns are read but not returned.

    Args:
        root: the data folder (see above).
        split: ``'train'``, ``'val'`` or ``'test'``.
        num_points: points per item (default 2,048; ``None`` means the default).
        up_axis: the up axis in the files (default ``'y'``, ShapeNet's), mapped to z-up.
        transform: optional callable applied to the points ``(N, 3)`` of every item (after the z-up map).

    Shapes:
        item: ``(points (num_points, 3) float32, category () int64, parts (num_points,) int64)``;
        ``categories`` attribute ``(n,)``.

    Errors (each naming the file or value): a missing root, ``synsetoffset2category.txt``, split list or
    shape file (``FileNotFoundError``); a split list that is not a JSON list of ``"shape_data/<synset>/<id>"``,
    a synset outside ``synsetoffset2category.txt`` or the standard table, a bad ``split`` / ``up_axis`` /
    ``num_points`` (``ValueError`` at construction); an unreadable shape file, rows without 7 columns, no
    points, NaN/inf coordinates, non-integer part ids or part ids outside the shape's category
    (``ValueError`` when the item is read).
    """

    def __init__(self, root, split: str = "train", num_points: int | None = 2048, up_axis: str = "y",
                 transform=None):
        self._setup(root, split, up_axis, transform)
        self.num_points = check_num_points(2048 if num_points is None else num_points)
        listing = Path("train_test_split") / f"shuffled_{split}_file_list.json"
        self.folder = _find_folder(self.root, "synsetoffset2category.txt", NORMAL_DIRNAME, "ShapeNetPart")
        present = _read_synset_file(self.folder / "synsetoffset2category.txt")
        self.listing = self.folder / listing
        entries = _read_split_list(self.listing)
        files, cats, ids = [], [], []
        for entry in entries:
            fields = entry.replace("\\", "/").strip("/").split("/")
            if len(fields) < 2 or not fields[-1]:
                raise ValueError(f"{self.listing}: entry {entry!r} is not of the form 'shape_data/<synset>/<id>'")
            synset, shape_id = fields[-2], fields[-1]
            if synset not in present:
                raise ValueError(f"{self.listing}: entry {entry!r} names synset {synset!r}, which is not in "
                                 f"{self.folder / 'synsetoffset2category.txt'}")
            path = self.folder / synset / f"{shape_id}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"shape file {path} (listed in {self.listing} as {entry!r}) does not exist")
            files.append(path)
            cats.append(SYNSETS.index(synset))
            ids.append(f"{synset}/{shape_id}")
        self.files: list[Path] = files
        self.categories: Tensor = torch.tensor(cats, dtype=torch.int64)
        self.shape_ids: list[str] = ids

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All points ``(P, 3)`` float32, normals ``(P, 3)`` float32 and parts ``(P,)`` int64 of shape ``i``,
        in the file's own axes (not sampled, not mapped to z-up), validated."""
        i = range(len(self))[i]  # negative indices, IndexError
        path, category = self.files[i], int(self.categories[i])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy warns on empty files; reported below
                rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except Exception as e:
            raise ValueError(f"{path} is not a readable ShapeNetPart shape file ({type(e).__name__}: {e})") from None
        if rows.size == 0:
            raise ValueError(f"{path} has no points")
        if rows.shape[1] != 7:
            raise ValueError(f"{path}: rows must have 7 columns 'x y z nx ny nz part', got {rows.shape[1]}")
        bad = ~np.isfinite(rows[:, :6]).all(1)
        if bad.any():
            raise ValueError(f"{path} contains NaN or inf coordinates or normals (row {int(np.flatnonzero(bad)[0]) + 1})")
        part = rows[:, 6]
        if not (np.isfinite(part).all() and (part == np.round(part)).all()):
            raise ValueError(f"{path}: the part column must hold integer part ids")
        parts = part.astype(np.int64)
        self._check_parts(parts[None], np.array([category]), f"{path} ({CATEGORIES[category]})")
        return rows[:, :3].astype(np.float32), rows[:, 3:6].astype(np.float32), parts

    def sample_indices(self, i: int, count: int) -> np.ndarray:
        """The deterministic choice of ``num_points`` of ``count`` points for item ``i`` (see the class)."""
        rng = np.random.default_rng(i)
        if count >= self.num_points:
            return rng.choice(count, self.num_points, replace=False)
        return np.concatenate([np.arange(count), rng.choice(count, self.num_points - count, replace=True)])

    def __getitem__(self, i) -> tuple[Tensor, Tensor, Tensor]:
        i = range(len(self))[int(i)]
        x, _, parts = self.load(i)
        idx = self.sample_indices(i, len(x))
        return self._item(x[idx], int(self.categories[i]), parts[idx])

    def __repr__(self) -> str:
        return (f"ShapeNetPartNormal(root='{self.root}', split={self.split!r}, shapes={len(self)}, "
                f"num_points={self.num_points}, categories={self.num_categories}, parts={self.num_parts}, "
                f"up_axis={self.up_axis!r}{_repr_transform(self.transform)})")


def _read_synset_file(path: Path) -> set[str]:
    lines = _read_text_lines(path, "category list")
    if not lines:
        raise ValueError(f"category list {path} is empty")
    present = set()
    for k, line in enumerate(lines):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"category list {path}, line {k + 1}: {line!r}, expected '<Name> <synset>'")
        name, synset = fields
        if synset not in SYNSETS or CATEGORIES[SYNSETS.index(synset)].lower() != name.lower():
            raise ValueError(f"category list {path}, line {k + 1}: {line!r} is not in the standard ShapeNetPart "
                             f"table ({', '.join(f'{n} {s}' for n, s in zip(CATEGORIES, SYNSETS))})")
        present.add(synset)
    return present


def _read_split_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"split list {path} does not exist")
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"split list {path} is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ValueError(f"split list {path} must be a JSON list of strings 'shape_data/<synset>/<id>'")
    if not entries:
        raise ValueError(f"split list {path} is empty")
    return entries
