"""Datasets (ModelNet40 HDF5, raw ModelNet OFF, synthetic shapes), transforms and the builder."""
import io
import math
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import MODELNET_HDF5, SHARED_DATA, require
from pointcanon.core.groups import rotation_about_axis
from pointcanon.datasets import (SYNTHETIC_CLASSES, Compose, Jitter, ModelNet40HDF5, ModelNetOFF, NormalizeUnitSphere,
                                 RandomRotate, RandomScale, RandomTranslate, SyntheticShapes, build_dataset, load_off,
                                 up_to_z_matrix)
from pointcanon.datasets import modelnet as modelnet_module

BATHTUBS = SHARED_DATA / "meshes" / "modelnet10_bathtub"

# official ModelNet40 test-split counts of a few classes
TEST_COUNTS = {"airplane": 100, "bench": 20, "desk": 86, "night_stand": 86, "xbox": 20}


# ------------------------------------------------------------------------------------------------
# helpers: a tiny dataset in the official HDF5 layout

def write_layout(folder: Path, files: dict, names=("a", "b", "c"), prefix="data/modelnet40_ply_hdf5_2048/",
                 lists=None) -> Path:
    """``files``: {h5 name: (data, label) or callable(h5py.File)}; ``lists``: {split: [h5 names]}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shape_names.txt").write_text("\n".join(names) + "\n")
    for name, content in files.items():
        with h5py.File(folder / name, "w") as f:
            if callable(content):
                content(f)
            else:
                f.create_dataset("data", data=content[0])
                f.create_dataset("label", data=content[1])
    if lists is None:
        lists = {"train": [n for n in files if "train" in n], "test": [n for n in files if "test" in n]}
    for split, names_ in lists.items():
        (folder / f"{split}_files.txt").write_text("".join(f"{prefix}{n}\n" for n in names_))
    return folder


def tiny(n=4, p=32, seed=0, num_classes=3):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, p, 3)).astype(np.float32), (np.arange(n) % num_classes).astype(np.uint8)[:, None]


@pytest.fixture(scope="module")
def mn40_train():
    return ModelNet40HDF5(require(MODELNET_HDF5), "train")


@pytest.fixture(scope="module")
def mn40_test():
    return ModelNet40HDF5(require(MODELNET_HDF5), "test")


# ------------------------------------------------------------------------------------------------
# ModelNet40 HDF5 on the real data

@pytest.mark.slow
def test_modelnet40_real_counts_and_classes(mn40_train, mn40_test):
    assert len(mn40_train) == 9843 and len(mn40_test) == 2468
    for ds in (mn40_train, mn40_test):
        assert ds.num_classes == 40 and len(ds.classes) == 40
        assert ds.classes[0] == "airplane" and ds.classes[-1] == "xbox" and ds.classes == sorted(ds.classes)
        assert ds.points.shape == (len(ds), 1024, 3) and ds.points.dtype == torch.float32
        assert ds.labels.dtype == torch.int64 and int(ds.labels.min()) == 0 and int(ds.labels.max()) == 39
        assert ds.task == "cls" and ds.up_axis == "z"
    counts = torch.bincount(mn40_test.labels, minlength=40)
    for name, n in TEST_COUNTS.items():
        assert counts[mn40_test.classes.index(name)] == n, name
    assert (torch.bincount(mn40_train.labels, minlength=40) > 0).all()
    # centred, unit sphere, as the README of the data says
    norms = mn40_test.points.norm(dim=-1).amax(-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-3)
    assert mn40_test.points.mean(1).abs().max() < 1e-3
    assert "split='train'" in repr(mn40_train) and "shapes=9843" in repr(mn40_train) and "classes=40" in repr(mn40_train)


def test_modelnet40_items_and_source_names(mn40_test):
    x, y = mn40_test[0]
    assert x.shape == (1024, 3) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.ndim == 0
    # the id2file sidecars agree with the labels for every shape
    assert len(mn40_test.shape_ids) == len(mn40_test)
    for sid, label in zip(mn40_test.shape_ids, mn40_test.labels.tolist()):
        assert sid.split("/")[0] == mn40_test.classes[label], sid
    # items are copies: mutating one leaves the dataset alone
    x += 1
    assert torch.equal(mn40_test[0][0], mn40_test.points[0])
    assert torch.equal(mn40_test[-1][0], mn40_test.points[-1])


def test_modelnet40_num_points_takes_the_first_points(mn40_test):
    small = ModelNet40HDF5(MODELNET_HDF5, "test", num_points=100)
    assert small.points.shape == (2468, 100, 3) and small.num_points == 100 and small.point_count == 1024
    assert torch.equal(small.points, mn40_test.points[:, :100])
    with pytest.raises(ValueError, match="num_points=1025 is more than the 1024 points"):
        ModelNet40HDF5(MODELNET_HDF5, "test", num_points=1025)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_points"):
            ModelNet40HDF5(MODELNET_HDF5, "test", num_points=bad)


def test_build_dataset_by_name(mn40_test):
    ds = build_dataset("modelnet40", MODELNET_HDF5, "test", 256)
    assert isinstance(ds, ModelNet40HDF5) and ds.points.shape[1:] == (256, 3) and len(ds) == len(mn40_test)
    syn = build_dataset("synthetic", None, "test", 64, num_samples=16, num_classes=4)
    assert isinstance(syn, SyntheticShapes) and syn[0][0].shape == (64, 3) and syn.num_classes == 4
    with pytest.raises(ValueError, match=r"unknown dataset 'shapenet'.*modelnet-off.*modelnet40.*synthetic"):
        build_dataset("shapenet", None, "train", 1024)


# ------------------------------------------------------------------------------------------------
# up axis

def test_up_axis_matrices_are_proper_rotations():
    for axis in "xyz":
        m = up_to_z_matrix(axis)
        assert torch.allclose(m @ m.T, torch.eye(3, dtype=torch.float64)) and torch.det(m).item() == pytest.approx(1.0)
        up = torch.zeros(3, dtype=torch.float64)
        up["xyz".index(axis)] = 1
        assert torch.equal(m @ up, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))  # the up axis goes to +z
    assert torch.allclose(up_to_z_matrix("y"), rotation_about_axis(math.pi / 2, "x", dtype=torch.float64), atol=1e-15)
    assert torch.allclose(up_to_z_matrix("x"), rotation_about_axis(-math.pi / 2, "y", dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize("axis", ["y", "x"])
def test_other_up_axis_copy_loads_like_the_z_up_original(tmp_path, axis):
    with h5py.File(require(MODELNET_HDF5) / "ply_data_test0.h5", "r") as f:
        x_z, labels = f["data"][:12], f["label"][:12]
    names = (MODELNET_HDF5 / "shape_names.txt").read_text().split()
    # the same shapes stored with `axis` up: x_z = x_other @ R.T, so x_other = x_z @ R (exact: R permutes axes)
    r = up_to_z_matrix(axis).numpy()
    x_other = (x_z.astype(np.float64) @ r).astype(np.float32)
    assert not np.array_equal(x_other, x_z)
    write_layout(tmp_path / "copy", {"ply_data_test0.h5": (x_other, labels)}, names=names)
    loaded = ModelNet40HDF5(tmp_path / "copy", "test", up_axis=axis)
    assert loaded.up_axis == axis
    assert torch.equal(loaded.points, torch.from_numpy(x_z))
    assert torch.equal(loaded.labels, torch.from_numpy(labels[:, 0].astype(np.int64)))
    assert not torch.equal(ModelNet40HDF5(tmp_path / "copy", "test", up_axis="z").points, loaded.points)
    # the up axis recorded by `pointcanon data` next to the files is used when up_axis is not given
    (tmp_path / "copy" / "pointcanon.json").write_text(f'{{"up_axis": "{axis}"}}')
    assert torch.equal(ModelNet40HDF5(tmp_path / "copy", "test").points, loaded.points)
    assert ModelNet40HDF5(tmp_path / "copy", "test", up_axis="z").up_axis == "z"  # an explicit value wins


def test_root_may_hold_the_official_folder_and_files_are_opened_read_only(tmp_path, monkeypatch):
    folder = write_layout(tmp_path / "modelnet40_ply_hdf5_2048", {"ply_data_train0.h5": tiny(), "ply_data_test0.h5": tiny(seed=1)})
    modes = []
    real_file = h5py.File

    def spy(path, mode="r", *args, **kwargs):
        modes.append(mode)
        return real_file(path, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", spy)
    for p in folder.iterdir():
        p.chmod(0o444)
    try:
        ds = ModelNet40HDF5(tmp_path, "train")  # the parent folder, as download_modelnet40 leaves it
        assert ds.folder == folder and len(ds) == 4 and ds.classes == ["a", "b", "c"]
    finally:
        for p in folder.iterdir():
            p.chmod(0o644)
    assert modes == ["r"]


def test_transform_is_applied_to_items_only(tmp_path):
    write_layout(tmp_path, {"ply_data_test0.h5": tiny()})
    ds = ModelNet40HDF5(tmp_path, "test", transform=lambda x: x * 2)
    assert torch.equal(ds[1][0], ds.points[1] * 2)
    assert "transform=" in repr(ds)


# ------------------------------------------------------------------------------------------------
# ModelNet40 HDF5: every bad input gives a clear error naming the file or value

def _bad_layouts():
    data, label = tiny()
    nan = data.copy()
    nan[2, 5, 1] = np.nan
    inf = data.copy()
    inf[0, 0, 0] = np.inf
    return {
        "corrupt": (lambda d: (d / "ply_data_test0.h5").write_bytes(b"this is not an HDF5 file" * 50),
                    ValueError, r"ply_data_test0\.h5 is corrupt or not a readable HDF5 file"),
        "truncated": (lambda d: (d / "ply_data_test0.h5").write_bytes((d / "ply_data_test0.h5").read_bytes()[:3000]),
                      ValueError, r"ply_data_test0\.h5 is corrupt"),
        "no data": (lambda d: _h5(d, label=label), ValueError, r"ply_data_test0\.h5 has no 'data' dataset"),
        "no label": (lambda d: _h5(d, data=data), ValueError, r"ply_data_test0\.h5 has no 'label' dataset"),
        "label too big": (lambda d: _h5(d, data=data, label=np.array([[0], [1], [3], [2]], np.uint8)),
                          ValueError, r"ply_data_test0\.h5: label 3 \(at index 2\) is out of range for the 3 classes"),
        "negative label": (lambda d: _h5(d, data=data, label=np.array([0, -1, 1, 2], np.int64)),
                           ValueError, r"label -1 .* out of range"),
        "float labels": (lambda d: _h5(d, data=data, label=label.astype(np.float32)), ValueError, "must hold integers"),
        "nan": (lambda d: _h5(d, data=nan, label=label), ValueError, r"ply_data_test0\.h5: 'data' contains NaN or inf .*\[2\]"),
        "inf": (lambda d: _h5(d, data=inf, label=label), ValueError, r"ply_data_test0\.h5: 'data' contains NaN or inf"),
        "lengths": (lambda d: _h5(d, data=data, label=label[:3]), ValueError,
                    r"ply_data_test0\.h5: 'data' has 4 shapes but 'label' has 3"),
        "not 3d": (lambda d: _h5(d, data=data[..., :2], label=label), ValueError, r"must have shape \(n, P, 3\)"),
        "point counts differ": (lambda d: _two_files(d, data, label), ValueError,
                                r"ply_data_test1\.h5: shapes have 16 points, but .*ply_data_test0\.h5 has 32"),
        "missing h5": (lambda d: (d / "ply_data_test0.h5").unlink(), FileNotFoundError,
                       r"ply_data_test0\.h5 \(listed in .*test_files\.txt as 'data/modelnet40_ply_hdf5_2048/ply_data_test0\.h5'\) does not exist"),
        "missing list": (lambda d: (d / "test_files.txt").unlink(), FileNotFoundError, r"file list .*test_files\.txt does not exist"),
        "empty list": (lambda d: (d / "test_files.txt").write_text("\n"), ValueError, r"file list .*test_files\.txt is empty"),
        "missing names": (lambda d: (d / "shape_names.txt").unlink(), FileNotFoundError, r"shape_names\.txt does not exist"),
        "bad metadata": (lambda d: (d / "pointcanon.json").write_text('{"up_axis": "w"}'), ValueError,
                         r"pointcanon\.json: up_axis must be one of"),
    }


def _h5(folder, **arrays):
    with h5py.File(folder / "ply_data_test0.h5", "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


def _two_files(folder, data, label):
    _h5(folder, data=data, label=label)
    with h5py.File(folder / "ply_data_test1.h5", "w") as f:
        f.create_dataset("data", data=data[:, :16])
        f.create_dataset("label", data=label)
    (folder / "test_files.txt").write_text("ply_data_test0.h5\nsome/where/ply_data_test1.h5\n")


@pytest.mark.parametrize("case", list(_bad_layouts()))
def test_modelnet40_bad_files_raise_clear_errors(tmp_path, case):
    damage, exc, pattern = _bad_layouts()[case]
    folder = write_layout(tmp_path / "mn", {"ply_data_test0.h5": tiny()})
    damage(folder)
    with pytest.raises(exc, match=pattern):
        ModelNet40HDF5(folder, "test")


def test_modelnet40_bad_arguments(tmp_path):
    folder = write_layout(tmp_path / "mn", {"ply_data_test0.h5": tiny()})
    with pytest.raises(FileNotFoundError, match=r"ModelNet40 root .*nowhere does not exist.*pointcanon data modelnet40"):
        ModelNet40HDF5(tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'val'"):
        ModelNet40HDF5(folder, "val")
    with pytest.raises(ValueError, match=r"up_axis must be one of 'x', 'y', 'z' .*got 'w'"):
        ModelNet40HDF5(folder, "test", up_axis="w")
    with pytest.raises(ValueError, match="needs a root"):
        ModelNet40HDF5(None, "test")
    with pytest.raises(ValueError, match="num_points=64 is more than the 32 points"):
        ModelNet40HDF5(folder, "test", num_points=64)


# ------------------------------------------------------------------------------------------------
# raw ModelNet OFF meshes

CUBE_BROKEN_HEADER = (b"OFF8 6 0\n0 0 0\n2 0 0\n2 2 0\n0 2 0\n0 0 2\n2 0 2\n2 2 2\n0 2 2\n"
                      b"4 0 3 2 1\n4 4 5 6 7\n4 0 1 5 4\n4 1 2 6 5\n4 2 3 7 6\n4 3 0 4 7\n")


@pytest.fixture
def off_tree(tmp_path):
    """``ModelNet/<class>/<split>/*.off``: 5 real bathtubs (symlinks) and two broken-header cubes."""
    require(BATHTUBS)
    root = tmp_path / "ModelNet"
    for i in range(1, 6):
        split = "train" if i <= 3 else "test"
        (root / "bathtub" / split).mkdir(parents=True, exist_ok=True)
        os.symlink(BATHTUBS / f"bathtub_000{i}.off", root / "bathtub" / split / f"bathtub_000{i}.off")
    for split in ("train", "test"):
        (root / "cube" / split).mkdir(parents=True)
        (root / "cube" / split / f"cube_{split}.off").write_bytes(CUBE_BROKEN_HEADER)
    (root / "README.txt").write_text("not a class")
    return root


def test_trimesh_reads_modelnet_broken_headers(tmp_path):
    import trimesh

    # trimesh 5.2 copes with "OFF8 6 0" by itself; load_off also splits the header before parsing
    mesh = trimesh.load(io.BytesIO(CUBE_BROKEN_HEADER), file_type="off", force="mesh", process=False)
    assert mesh.vertices.shape == (8, 3) and mesh.faces.shape == (12, 3)
    path = tmp_path / "cube.off"
    path.write_bytes(CUBE_BROKEN_HEADER)
    mesh = load_off(path)
    assert mesh.vertices.shape == (8, 3) and mesh.faces.shape == (12, 3) and mesh.area == pytest.approx(24.0)
    path.write_bytes(b"OFF\n3 1 0\n0 0 0\n1 0 0\n")  # truncated
    with pytest.raises(ValueError, match=r"cube\.off is not a readable OFF mesh"):
        load_off(path)
    path.write_bytes(b"PLY\n")
    with pytest.raises(ValueError, match=r"cube\.off is not a readable OFF mesh"):
        load_off(path)


def test_modelnet_off_items_are_sampled_centred_unit_sphere(off_tree, tmp_path):
    train = ModelNetOFF(off_tree, "train", num_points=256, cache_dir=tmp_path / "cache")
    assert train.classes == ["bathtub", "cube"] and train.num_classes == 2 and len(train) == 4
    assert train.labels.tolist() == [0, 0, 0, 1]
    assert "ModelNetOFF(" in repr(train) and "shapes=4" in repr(train)
    for i in range(len(train)):
        x, y = train[i]
        assert x.shape == (256, 3) and x.dtype == torch.float32 and y.dtype == torch.int64 and y.ndim == 0
        assert x.mean(0).abs().max() < 1e-5
        assert x.norm(dim=-1).max().item() == pytest.approx(1.0, abs=1e-5)
    # the cube: every sample lies on the surface of a cube (constant Chebyshev distance from the centre)
    cube = train[3][0].double()
    centre = (cube.amax(0) + cube.amin(0)) / 2
    assert (cube - centre).abs().amax(-1).std() < 1e-6
    # the raw meshes are z-up and kept so: a bathtub's longest side is horizontal
    for i in range(3):
        extent = train[i][0].amax(0) - train[i][0].amin(0)
        assert extent.argmax().item() != 2
    test = build_dataset("modelnet-off", off_tree, "test", 128, cache_dir=tmp_path / "cache")
    assert len(test) == 3 and test[0][0].shape == (128, 3)


def test_modelnet_off_is_deterministic_and_cached_atomically(off_tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = ModelNetOFF(off_tree, "train", num_points=200, cache_dir=cache)
    points = [first[i][0] for i in range(len(first))]
    files = sorted(cache.rglob("*.npy"))
    assert len(files) == 4 and not list(cache.rglob("*.tmp"))
    assert first.cache_path(0) == cache / "bathtub" / "train" / "bathtub_0001.n200.v1.npy"
    # the same file gives the same points without any cache (a fixed seed per file) ...
    fresh = ModelNetOFF(off_tree, "train", num_points=200, cache_dir=tmp_path / "other")
    assert all(torch.equal(fresh[i][0], points[i]) for i in range(len(fresh)))
    # ... and a second load reads the cache without touching the meshes
    monkeypatch.setattr(modelnet_module, "load_off", lambda path: pytest.fail(f"mesh {path} re-read"))
    again = ModelNetOFF(off_tree, "train", num_points=200, cache_dir=cache)
    assert all(torch.equal(again[i][0], points[i]) for i in range(len(again)))


def test_modelnet_off_cache_is_never_half_written(off_tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ds = ModelNetOFF(off_tree, "train", num_points=64, cache_dir=cache)
    real_save = np.save

    def crash(f, array, *args, **kwargs):  # write part of the file, then die
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", crash)
    with pytest.warns(UserWarning, match="cannot write the point cache"):
        x = ds[3][0]  # falls back to memory
    assert not ds.cache_path(3).exists() and not list(cache.rglob("*.tmp"))
    monkeypatch.setattr(np, "save", real_save)
    ds2 = ModelNetOFF(off_tree, "train", num_points=64, cache_dir=cache)
    assert torch.equal(ds2[3][0], x) and ds2.cache_path(3).exists()
    # a damaged cache file is rebuilt, not trusted
    ds2.cache_path(3).write_bytes(ds2.cache_path(3).read_bytes()[:50])
    assert torch.equal(ModelNetOFF(off_tree, "train", num_points=64, cache_dir=cache)[3][0], x)
    assert np.load(ds2.cache_path(3)).shape == (64, 3)


def test_modelnet_off_rebuilds_a_cache_older_than_its_mesh(off_tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ds = ModelNetOFF(off_tree, "train", num_points=64, cache_dir=cache)
    ds[3]
    mesh = ds.files[3]
    old = ds.cache_path(3).stat().st_mtime
    os.utime(mesh, (old + 10, old + 10))
    calls = []
    real = modelnet_module.load_off
    monkeypatch.setattr(modelnet_module, "load_off", lambda p: calls.append(p) or real(p))
    ModelNetOFF(off_tree, "train", num_points=64, cache_dir=cache)[3]
    assert calls == [mesh]


def test_modelnet_off_default_cache_dir_and_unwritable_cache(off_tree, tmp_path):
    ds = ModelNetOFF(off_tree, "test", num_points=32)
    ds[2]
    assert ds.cache_dir == off_tree / ".pointcanon_cache" and ds.cache_path(2).exists()
    assert ModelNetOFF(off_tree, "test").classes == ["bathtub", "cube"]  # the hidden cache folder is no class
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    bad = ModelNetOFF(off_tree, "test", num_points=32, cache_dir=blocker)
    with pytest.warns(UserWarning, match="keeping points in memory"):
        x = bad[2][0]
    assert torch.equal(bad[2][0], x) and torch.equal(x, ds[2][0])


def test_modelnet_off_errors(off_tree, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ModelNet root .*missing does not exist"):
        ModelNetOFF(tmp_path / "missing", "train")
    (tmp_path / "empty" / "chair" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no meshes found: expected .*empty/<class>/train/\*\.off"):
        ModelNetOFF(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        ModelNetOFF(off_tree, "validation")
    with pytest.raises(ValueError, match="num_points must be a positive int"):
        ModelNetOFF(off_tree, "train", num_points=0)
    (off_tree / "cube" / "train" / "cube_train.off").write_bytes(b"OFF\n8 6 0\n1 2\n")
    ds = ModelNetOFF(off_tree, "train", num_points=32, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match=r"cube_train\.off is not a readable OFF mesh"):
        ds[3]


def test_modelnet_off_up_axis(off_tree, tmp_path):
    z = ModelNetOFF(off_tree, "test", num_points=64, cache_dir=tmp_path / "c")
    y = ModelNetOFF(off_tree, "test", num_points=64, cache_dir=tmp_path / "c", up_axis="y")
    r = up_to_z_matrix("y").float()
    assert torch.equal(y[0][0], z[0][0] @ r.T)


# ------------------------------------------------------------------------------------------------
# synthetic shapes

def test_synthetic_default_sizes_and_speed():
    t0 = time.perf_counter()
    train = SyntheticShapes("train")
    seconds = time.perf_counter() - t0
    assert seconds < 10, f"generating the default training set took {seconds:.1f} s"
    assert len(train) == 1600 and train.num_classes == 8 and train.classes == list(SYNTHETIC_CLASSES)
    assert train.points.shape == (1600, 1024, 3) and train.points.dtype == torch.float32
    assert torch.bincount(train.labels).tolist() == [200] * 8
    assert len(SyntheticShapes("test", num_points=16)) == 400
    x, y = train[5]
    assert x.shape == (1024, 3) and x.dtype == torch.float32 and y.dtype == torch.int64 and y.ndim == 0
    assert y.item() == 5 % 8 and train.root is None and train.task == "cls"
    assert "SyntheticShapes(split='train', shapes=1600" in repr(train)
    # centred, within the unit sphere up to the noise
    assert train.points.mean(1).abs().max() < 0.01
    assert train.points.norm(dim=-1).amax() < 1.05 and (train.points.norm(dim=-1).amax(-1) > 0.95).all()


def test_synthetic_is_deterministic_by_seed_and_split():
    a = SyntheticShapes("train", num_points=128, num_samples=40, seed=3)
    b = SyntheticShapes("train", num_points=128, num_samples=40, seed=3)
    assert torch.equal(a.points, b.points) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.points, SyntheticShapes("train", num_points=128, num_samples=40, seed=4).points)
    assert not torch.equal(a.points, SyntheticShapes("test", num_points=128, num_samples=40, seed=3).points)


def test_synthetic_class_balance_and_options():
    ds = SyntheticShapes("test", num_points=32, num_samples=20, num_classes=3)
    assert ds.classes == list(SYNTHETIC_CLASSES[:3])
    assert torch.bincount(ds.labels).tolist() == [7, 7, 6]
    assert ds.labels[:6].tolist() == [0, 1, 2, 0, 1, 2]  # interleaved: every prefix is balanced
    assert len(SyntheticShapes("train", num_points=32, num_classes=2)) == 400
    noiseless = SyntheticShapes("test", num_points=64, num_samples=8, noise=0.0)
    assert noiseless.points.norm(dim=-1).amax(-1).sub(1).abs().max() < 1e-5
    rotated = SyntheticShapes("test", num_points=64, num_samples=8, noise=0.0, transform=RandomRotate("so3"))
    assert torch.allclose(rotated[0][0].norm(dim=-1), noiseless.points[0].norm(dim=-1), atol=1e-5)
    for kw, pattern in [({"num_classes": 9}, "num_classes"), ({"num_classes": 1}, "num_classes"),
                        ({"num_samples": 0}, "num_samples"), ({"seed": -1}, "seed"), ({"noise": -0.1}, "noise"),
                        ({"num_points": 0}, "num_points"), ({"split": "val"}, "split")]:
        with pytest.raises(ValueError, match=pattern):
            SyntheticShapes(**{"split": "train", "num_samples": 8, **kw})


def _chamfer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(a, b)
    return d.amin(-1).mean(-1) + d.amin(-2).mean(-1)


def test_synthetic_shapes_have_no_rotational_symmetry():
    """Rotating a shape by 90 or 180 degrees about any coordinate axis through its centroid, or by 120
    degrees about a diagonal, moves it clearly (a symmetric shape would have no unique frame)."""
    ds = SyntheticShapes("test", num_points=512, num_samples=32, noise=0.0)
    x = ds.points.double()
    rotations = [rotation_about_axis(a, ax, dtype=torch.float64) for ax in "xyz" for a in (math.pi / 2, math.pi)]
    for rot in rotations:
        moved = _chamfer(x, x @ rot.T)
        for c in range(ds.num_classes):
            assert moved[ds.labels == c].min() > 0.03, (ds.classes[c], rot)


@pytest.mark.slow
def test_synthetic_classes_are_distinct_up_to_rotation():
    """Rotation-invariant descriptors (histograms of pairwise distances and of distances to the
    centroid) with a 1-nearest-neighbour rule tell the classes apart on randomly rotated test shapes:
    no class is a rotated copy of another."""
    def histograms(values, bins, top):  # (B, M) -> (B, bins), normalised
        idx = (values / top * bins).long().clamp(0, bins - 1)
        return torch.zeros(len(values), bins).scatter_add_(1, idx, torch.ones_like(values)) / values.shape[1]

    def features(points):
        pairwise = histograms(torch.cdist(points, points).flatten(1), 24, 2.0)
        radial = histograms(points.norm(dim=-1), 12, 1.05)
        return torch.cat([pairwise, radial], -1)

    rotate = RandomRotate("so3", generator=torch.Generator().manual_seed(0))
    train = SyntheticShapes("train", num_points=256, num_samples=320)
    test = SyntheticShapes("test", num_points=256, num_samples=160)
    rotated = rotate(test.points)  # (B, N, 3): one random rotation per shape
    pred = train.labels[torch.cdist(features(rotated), features(train.points)).argmin(-1)]
    acc = (pred == test.labels).float().mean().item()
    per_class = [(pred[test.labels == c] == c).float().mean().item() for c in range(test.num_classes)]
    assert acc > 0.8 and min(per_class) > 0.5, (acc, per_class)


# ------------------------------------------------------------------------------------------------
# transforms

def _clouds(seed=0, b=None, n=50, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 3) if b is None else (b, n, 3)
    return torch.randn(*shape, generator=g, dtype=dtype)


ALL_TRANSFORMS = [RandomRotate("so3"), RandomRotate("z"), Jitter(0.01, 0.05), RandomScale(0.8, 1.25),
                  RandomScale(0.5, 2.0, anisotropic=True), RandomTranslate(0.2), NormalizeUnitSphere(),
                  Compose([RandomRotate("z"), Jitter()])]


@pytest.mark.parametrize("t", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("batched", [False, True])
def test_transforms_do_not_mutate_and_keep_shape(t, batched):
    x = _clouds(b=4 if batched else None, dtype=torch.float64)
    before = x.clone()
    y = t(x)
    assert torch.equal(x, before) and y is not x and y.data_ptr() != x.data_ptr()
    assert y.shape == x.shape and y.dtype == torch.float64 and not torch.equal(y, x)
    assert type(t).__name__ in repr(t)


def test_random_rotate_so3_is_a_proper_rotation():
    x = _clouds(n=100)
    y = RandomRotate("so3")(x)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    q = torch.linalg.lstsq(x.double(), y.double()).solution.T  # y = x @ Q.T
    assert torch.allclose(q @ q.T, torch.eye(3, dtype=torch.float64), atol=1e-5)
    assert torch.det(q).item() == pytest.approx(1.0, abs=1e-5)


def test_random_rotate_about_the_up_axis_keeps_it():
    x = _clouds(b=6)
    y = RandomRotate("z")(x)
    assert torch.allclose(y[..., 2], x[..., 2], atol=1e-6)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    yy = RandomRotate("z", up_axis="y")(x)
    assert torch.allclose(yy[..., 1], x[..., 1], atol=1e-6) and not torch.allclose(yy[..., 2], x[..., 2])
    # each cloud of a batch gets its own rotation
    angles = torch.atan2(y[:, 0, 1], y[:, 0, 0]) - torch.atan2(x[:, 0, 1], x[:, 0, 0])
    assert len(set(torch.round(torch.remainder(angles, 2 * math.pi), decimals=3).tolist())) == 6


def test_transforms_are_reproducible_with_a_generator():
    x = _clouds(b=3)
    for make in (lambda g: RandomRotate("so3", generator=g), lambda g: Jitter(generator=g),
                 lambda g: RandomScale(anisotropic=True, generator=g), lambda g: RandomTranslate(generator=g)):
        a = make(torch.Generator().manual_seed(7))(x)
        b = make(torch.Generator().manual_seed(7))(x)
        assert torch.equal(a, b)
    assert "generator=" in repr(RandomRotate(generator=torch.Generator()))


def test_jitter_scale_translate_do_what_they_say():
    x = _clouds(n=4000)
    noise = Jitter(sigma=0.02, clip=0.03)(x) - x
    assert noise.abs().max() <= 0.03 + 1e-6 and noise.std().item() == pytest.approx(0.0186, abs=0.002)
    assert torch.equal(Jitter(sigma=0.0)(x), x)
    b = _clouds(b=5)
    s = RandomScale(0.5, 2.0)(b) / b
    assert torch.allclose(s, s[:, :1, :1].expand_as(s), atol=1e-4) and (s >= 0.5 - 1e-5).all() and (s <= 2 + 1e-5).all()
    sa = RandomScale(0.5, 2.0, anisotropic=True)(b) / b
    assert torch.allclose(sa, sa[:, :1, :].expand_as(sa), atol=1e-4) and not torch.allclose(sa[..., 0], sa[..., 1])
    t = RandomTranslate(0.3)(b) - b
    assert torch.allclose(t, t[:, :1].expand_as(t), atol=1e-6) and t.abs().max() <= 0.3 + 1e-6
    n = NormalizeUnitSphere()(b * 5 + 3)
    assert torch.allclose(n.mean(1), torch.zeros(5, 3), atol=1e-5)
    assert torch.allclose(n.norm(dim=-1).amax(-1), torch.ones(5), atol=1e-5)


def test_compose_order_and_repr():
    c = Compose([lambda x: x * 2, lambda x: x + 1])
    assert torch.equal(c(torch.ones(4, 3)), torch.full((4, 3), 3.0)) and len(c) == 2
    r = repr(Compose([RandomRotate("z"), Jitter(0.01, 0.05)]))
    assert "RandomRotate(group='z', up_axis='z')" in r and "Jitter(sigma=0.01, clip=0.05)" in r
    with pytest.raises(TypeError, match="callable"):
        Compose([3])


def test_transform_argument_and_input_checks():
    with pytest.raises(ValueError, match="unknown group 'x-axis'"):
        RandomRotate("x-axis")
    with pytest.raises(ValueError, match="axis must be one of"):
        RandomRotate("z", up_axis="w")
    with pytest.raises(ValueError, match="sigma"):
        Jitter(sigma=-1)
    with pytest.raises(ValueError, match="lo=2.0, hi=1.0"):
        RandomScale(2.0, 1.0)
    with pytest.raises(ValueError, match="scale"):
        RandomTranslate(-1)
    with pytest.raises(ValueError, match=r"shape \(N, 3\) or \(B, N, 3\), got \(5, 2\)"):
        RandomRotate()(torch.zeros(5, 2))
    with pytest.raises(TypeError, match="floating dtype"):
        Jitter()(torch.zeros(5, 3, dtype=torch.int64))


def test_random_rotate_takes_the_group_vocabulary():
    assert RandomRotate("SO3").group == RandomRotate("so3").group == "SO3"
    x = torch.randn(4, 16, 3, dtype=torch.float64)
    y = RandomRotate("O3", generator=torch.Generator().manual_seed(0))(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    with pytest.raises(ValueError, match="group must be 'z'.*'SO3' or 'O3', got 'SE3'"):
        RandomRotate("SE3")


def test_shapes_at_raw_scale_warn_and_normalize_on_request(tmp_path):
    """A user's own scans in the official layout but at raw scale (millimetres, off the origin) used to
    train silently far worse: they warn by default, and normalize=True centres and scales every shape."""
    data, label = tiny(n=6, p=64)
    write_layout(tmp_path / "ok", {"ply_data_test0.h5": (data, label)})
    write_layout(tmp_path / "raw", {"ply_data_test0.h5": (data * 250 + np.float32(3000), label)})
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ModelNet40HDF5(tmp_path / "ok", "test")  # unit-ish scale: no warning
        ModelNet40HDF5(tmp_path / "raw", "test", normalize=False)  # asked not to check
    with pytest.warns(UserWarning, match="normalize=True"):
        ModelNet40HDF5(tmp_path / "raw", "test")
    ds = ModelNet40HDF5(tmp_path / "raw", "test", normalize=True)
    x = ds.points.double()
    assert x.mean(1).abs().max() < 1e-4 and torch.allclose(x.norm(dim=-1).amax(-1), torch.ones(6, dtype=torch.float64))
    ref = ModelNet40HDF5(tmp_path / "ok", "test", normalize=True).points
    assert torch.allclose(ds.points, ref, atol=1e-5)  # the same shapes, whatever their scale and place
