"""Datasets and transforms: ModelNet40 (official HDF5 layout), raw ModelNet ``.off`` folders, the
project's procedural synthetic shapes, ShapeNetPart (PointNet's HDF5 layout and PointNet++'s text
layout), and the ModelNet40 download (:mod:`.download`, never called implicitly).

Every classification dataset yields ``(points, label)`` with ``points`` a float32 tensor ``(N, 3)``
(rows are points, **z up**) and ``label`` an int64 scalar tensor, and has ``root``, ``split``,
``transform``, ``classes``, ``num_classes`` and ``task = "cls"``. Every part-segmentation dataset
yields ``(points (N, 3), category (), parts (N,))`` and has ``task = "partseg"``, ``num_parts``,
``num_categories``, ``category_parts`` and ``classes`` (the category names).
"""
from __future__ import annotations

import inspect

from ._common import SPLITS, Subsample, up_to_z_matrix
from .download import download_modelnet40
from .modelnet import ModelNet40HDF5, ModelNetOFF, load_off
from .shapenet import ShapeNetPartHDF5, ShapeNetPartNormal
from .posed import POSES, PosedShapes
from .synthetic import SYNTHETIC_CLASSES, SyntheticShapes
from .transforms import Compose, Jitter, NormalizeUnitSphere, RandomRotate, RandomScale, RandomTranslate

__all__ = ["DATASETS", "POSES", "PosedShapes", "SPLITS", "SYNTHETIC_CLASSES", "Compose", "Jitter", "ModelNet40HDF5", "ModelNetOFF",
           "NormalizeUnitSphere", "RandomRotate", "RandomScale", "RandomTranslate", "SyntheticShapes",
           "ShapeNetPartHDF5", "ShapeNetPartNormal", "DATASET_TASKS", "Subsample", "build_dataset",
           "download_modelnet40", "load_off", "up_to_z_matrix"]


# the named datasets (``--dataset``), name -> class; every class has ``task`` ("cls" or "partseg")
DATASETS = {"modelnet40": ModelNet40HDF5, "modelnet-off": ModelNetOFF, "synthetic": SyntheticShapes,
            "posed": PosedShapes, "shapenetpart": ShapeNetPartHDF5, "shapenetpart-normal": ShapeNetPartNormal}
DATASET_TASKS = {name: cls.task for name, cls in DATASETS.items()}  # the task of each named dataset


def build_dataset(name: str, root=None, split: str = "train", num_points: int | None = None, **kw):
    """Build the dataset ``name`` of :data:`DATASETS` (``--dataset``) with its class; ``root`` goes to the
    classes that read files (the synthetic and posed shapes are generated in memory and ignore it), and
    ``num_points=None`` keeps the class's default. Extra keyword arguments go to the class (e.g.
    ``up_axis``, ``transform``, ``cache_dir``, ``seed``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    cls = DATASETS[name]
    if num_points is not None:
        kw["num_points"] = num_points
    if "root" in inspect.signature(cls).parameters:
        return cls(root, split, **kw)
    return cls(split, **kw)  # generated in memory: no root

