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


def _modelnet40(root, split, num_points, **kw):
    return ModelNet40HDF5(root, split, num_points=num_points, **kw)


def _modelnet_off(root, split, num_points, **kw):
    return ModelNetOFF(root, split, num_points=num_points if num_points is not None else 1024, **kw)


def _synthetic(root, split, num_points, **kw):  # generated in memory: root is not used
    return SyntheticShapes(split, num_points=num_points if num_points is not None else 1024, **kw)


def _posed(root, split, num_points, **kw):  # generated in memory: root is not used
    return PosedShapes(split, num_points=num_points if num_points is not None else 1024, **kw)


def _shapenetpart(root, split, num_points, **kw):
    return ShapeNetPartHDF5(root, split, num_points=num_points, **kw)


def _shapenetpart_normal(root, split, num_points, **kw):
    return ShapeNetPartNormal(root, split, num_points=num_points if num_points is not None else 2048, **kw)


DATASETS = {"modelnet40": _modelnet40, "modelnet-off": _modelnet_off, "synthetic": _synthetic, "posed": _posed,
            "shapenetpart": _shapenetpart, "shapenetpart-normal": _shapenetpart_normal}
DATASET_TASKS = {"modelnet40": "cls", "modelnet-off": "cls", "synthetic": "cls", "posed": "cls",
                 "shapenetpart": "partseg", "shapenetpart-normal": "partseg"}  # the task of each named dataset


def build_dataset(name: str, root=None, split: str = "train", num_points: int | None = None, **kw):
    """Build a dataset by name: ``'modelnet40'`` (:class:`ModelNet40HDF5`), ``'modelnet-off'``
    (:class:`ModelNetOFF`), ``'synthetic'`` (:class:`SyntheticShapes`, ``root`` is ignored),
    ``'posed'`` (:class:`PosedShapes`, ignores ``root``), ``'shapenetpart'`` (:class:`ShapeNetPartHDF5`) or ``'shapenetpart-normal'`` (:class:`ShapeNetPartNormal`).
    Extra keyword arguments go to the class (e.g. ``up_axis``, ``transform``, ``cache_dir``, ``seed``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](root, split, num_points, **kw)

