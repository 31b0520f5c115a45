"""ShapeNetPart datasets (PointNet's HDF5 layout, PointNet++'s text layout) and part segmentation in the CLI."""
import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, require
from pointcanon.cli import main
from pointcanon.core.segmentation import check_part_labels
from pointcanon.datasets import (DATASET_TASKS, DATASETS, ShapeNetPartHDF5, ShapeNetPartNormal, Subsample,
                                 build_dataset, up_to_z_matrix)
from pointcanon.datasets.shapenet import CATEGORIES, NORMAL_DIRNAME, PART_OFFSETS, PARTS_PER_CATEGORY, SYNSETS

SHAPENET = SHARED_DATA / "shapenet_part_pseudo_hdf5_2048"
TABLE, TOP_PART = 15, 47  # category "Table"; its part with the highest points in the y-up files (the top)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sn_test():
    return ShapeNetPartHDF5(require(SHAPENET), "test")


@pytest.fixture(scope="module")
def sn_test_raw():
    return ShapeNetPartHDF5(require(SHAPENET), "test", up_axis="z")  # the files' own (y-up) axes


# ------------------------------------------------------------------------------------------------
# the real HDF5 copy


def test_real_counts_shapes_and_attributes(sn_test):
    train = ShapeNetPartHDF5(SHAPENET, "train", num_points=64)
    assert len(train) == 2151 and len(sn_test) == 722
    assert sn_test.points.shape == (722, 2048, 3) and sn_test.points.dtype == torch.float32
    assert sn_test.parts.shape == (722, 2048) and sn_test.parts.dtype == torch.int64
    assert sn_test.categories.dtype == torch.int64 and sn_test.normals is None
    for ds in (train, sn_test):
        assert ds.task == "partseg" and ds.num_parts == 50 and ds.num_categories == 16 and ds.frame_axes == "zx"
        assert ds.classes == list(CATEGORIES) and ds.classes[0] == "Airplane" and ds.classes[-1] == "Table"
        assert ds.category_parts[0] == range(0, 4) and ds.category_parts[-1] == range(47, 50)
        assert [len(r) for r in ds.category_parts] == list(PARTS_PER_CATEGORY) and sum(PARTS_PER_CATEGORY) == 50
        assert set(ds.categories.tolist()) == set(range(16))  # stratified: every category in both splits
        assert ds.up_axis == "y" and ds.split in repr(ds)
    # the standard table agrees with the copy's own part table
    meta = json.loads((SHAPENET / "part_ids.json").read_text())
    assert list(PART_OFFSETS) == meta["part_offsets"] and list(CATEGORIES) == meta["category_names"]
    x, c, p = sn_test[5]
    assert x.shape == (2048, 3) and x.dtype == torch.float32 and c.shape == () and c.dtype == torch.int64
    assert p.shape == (2048,) and p.dtype == torch.int64
    assert torch.equal(x, sn_test.points[5]) and int(c) == int(sn_test.categories[5])


def test_real_categories_and_parts_are_consistent(sn_test):
    check_part_labels(sn_test.parts, sn_test.categories, sn_test.category_parts)  # raises if not
    # the source file of every shape names the synset of its category
    assert len(sn_test.shape_ids) == len(sn_test)
    assert all(sid.split("/")[0] == SYNSETS[c] for sid, c in zip(sn_test.shape_ids, sn_test.categories.tolist()))
    # every part of every category occurs somewhere
    for c, parts in enumerate(sn_test.category_parts):
        seen = set(sn_test.parts[sn_test.categories == c].unique().tolist())
        assert seen <= set(parts) and len(seen) >= len(parts) - 1, CATEGORIES[c]
    # centred, in the unit sphere
    assert sn_test.points.norm(dim=-1).amax(-1).max() <= 1.0 + 1e-5


def test_real_files_are_mapped_from_y_up_to_z_up(sn_test, sn_test_raw):
    raw, pts = sn_test_raw.points, sn_test.points
    assert sn_test_raw.up_axis == "z"
    assert torch.equal(pts[..., 0], raw[..., 0]) and torch.equal(pts[..., 1], -raw[..., 2])
    assert torch.equal(pts[..., 2], raw[..., 1])  # y (up in the files) becomes z
    assert torch.allclose(pts, raw @ up_to_z_matrix("y").float().T)
    assert torch.equal(sn_test.parts, sn_test_raw.parts) and torch.equal(sn_test.categories, sn_test_raw.categories)
    # physically upright after the mapping: airplanes are flattest along z, table tops lie above the legs
    airplanes = pts[sn_test.categories == 0]
    extent = (airplanes.amax(1) - airplanes.amin(1)).median(0).values
    assert extent.argmin() == 2
    tables, table_parts = pts[sn_test.categories == TABLE], sn_test.parts[sn_test.categories == TABLE]
    mean_z = {p: tables[..., 2][table_parts == p].mean().item() for p in range(47, 50)}
    assert max(mean_z, key=mean_z.get) == TOP_PART and mean_z[TOP_PART] > 0


def test_num_points_keeps_the_first_points_and_builder(sn_test):
    small = ShapeNetPartHDF5(SHAPENET, "test", num_points=128)
    assert torch.equal(small.points, sn_test.points[:, :128]) and torch.equal(small.parts, sn_test.parts[:, :128])
    built = build_dataset("shapenetpart", SHAPENET, "test", 128)
    assert isinstance(built, ShapeNetPartHDF5) and torch.equal(built.points, small.points)
    assert DATASET_TASKS["shapenetpart"] == DATASET_TASKS["shapenetpart-normal"] == "partseg"
    assert set(DATASET_TASKS) == set(DATASETS)
    sub = Subsample(small, 10)
    assert len(sub) == 10 and sub.indices[0] == 0 and sub.indices[-1] == len(small) - 1
    assert sub.task == "partseg" and sub.category_parts == small.category_parts and sub.frame_axes == "zx"
    assert all(torch.equal(a, b) for a, b in zip(sub[3], small[sub.indices[3]]))


def test_files_are_opened_read_only_and_transform_applies_to_items(monkeypatch):
    modes, real_file = [], h5py.File

    def spy(path, mode="r", *args, **kwargs):
        modes.append(mode)
        return real_file(path, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", spy)
    ds = ShapeNetPartHDF5(require(SHAPENET), "test", num_points=16, transform=lambda x: x * 2)
    assert modes == ["r"]
    assert torch.equal(ds[0][0], ds.points[0] * 2) and "transform=" in repr(ds)


# ------------------------------------------------------------------------------------------------
# a tiny HDF5 layout in tmp_path (real shapes when the copy is here) and every bad input


@pytest.fixture(scope="module")
def few():
    """8 shapes x 64 points: real ones from the shared copy when present, else valid random ones."""
    if (SHAPENET / "ply_data_test0.h5").exists():
        with h5py.File(SHAPENET / "ply_data_test0.h5", "r") as f:
            label = f["label"][()][:, 0]
            pick = [int(np.flatnonzero(label == c)[0]) for c in (0, 4, 15, 3, 8, 10, 11, 6)]
            data, pid = f["data"][:, :64], f["pid"][:, :64]  # h5py wants increasing indices; take all first
            return data[pick].astype(np.float32), label[pick][:, None].astype(np.uint8), pid[pick].astype(np.uint8)
    g = np.random.default_rng(0)
    cats = np.array([0, 4, 15, 3, 8, 10, 11, 6])
    pid = np.stack([g.integers(PART_OFFSETS[c], PART_OFFSETS[c] + PARTS_PER_CATEGORY[c], 64) for c in cats])
    return g.standard_normal((8, 64, 3)).astype(np.float32) * 0.3, cats[:, None].astype(np.uint8), pid.astype(np.uint8)


def _categories_text():
    return "".join(f"{n}\t{s}\n" for n, s in zip(CATEGORIES, SYNSETS))


def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


def write_hdf5_layout(folder, few):
    folder.mkdir(parents=True, exist_ok=True)
    data, label, pid = few
    _h5(folder / "ply_data_train0.h5", data=data[:6], label=label[:6], pid=pid[:6])
    _h5(folder / "ply_data_test0.h5", data=data[6:], label=label[6:], pid=pid[6:])
    (folder / "train_hdf5_file_list.txt").write_text("hdf5_data/ply_data_train0.h5\n")
    (folder / "test_hdf5_file_list.txt").write_text("hdf5_data/ply_data_test0.h5\n")
    (folder / "all_object_categories.txt").write_text(_categories_text())
    return folder


def test_tiny_hdf5_layout_loads_with_val_normals_and_parent_root(tmp_path, few):
    folder = write_hdf5_layout(tmp_path / "hdf5_data", few)
    data, label, pid = few
    normal = data / np.linalg.norm(data, axis=-1, keepdims=True)
    _h5(folder / "ply_data_val0.h5", data=data[:2], label=label[:2], pid=pid[:2], normal=normal[:2])
    (folder / "val_hdf5_file_list.txt").write_text("ply_data_val0.h5\n")
    ds = ShapeNetPartHDF5(tmp_path, "val")  # the parent of hdf5_data/
    assert ds.folder == folder and len(ds) == 2 and ds.num_points == 64 and ds.shape_ids is None
    assert torch.allclose(ds.normals, torch.from_numpy(normal[:2]) @ up_to_z_matrix("y").float().T)
    train = ShapeNetPartHDF5(folder, "train", up_axis="z")
    assert torch.equal(train.points, torch.from_numpy(data[:6])) and torch.equal(train.parts, torch.from_numpy(pid[:6]).long())
    assert train.categories.tolist() == label[:6, 0].tolist() and train.normals is None


def _bad_hdf5_cases(few):
    data, label, pid = few
    t = "ply_data_test0.h5"
    nan = data.copy()
    nan[1, 3, 2] = np.nan
    big_cat = label.copy()
    big_cat[7] = 16
    other = pid.copy()
    other[7, 5] = 0  # shape 1 of the test file is category 6 (Guitar, parts 19..21): 0 is an airplane part
    fifty = pid.copy()
    fifty[0, 0] = 50
    swapped = _categories_text().splitlines()
    swapped[1], swapped[2] = swapped[2], swapped[1]
    return {
        "corrupt": (lambda d: (d / t).write_bytes(b"not an HDF5 file" * 64), ValueError,
                    r"ply_data_test0\.h5 is corrupt or not a readable HDF5 file"),
        "truncated": (lambda d: (d / t).write_bytes((d / t).read_bytes()[:2000]), ValueError, r"ply_data_test0\.h5 is corrupt"),
        "no data": (lambda d: _h5(d / t, label=label[6:], pid=pid[6:]), ValueError, r"ply_data_test0\.h5 has no 'data' dataset"),
        "no label": (lambda d: _h5(d / t, data=data[6:], pid=pid[6:]), ValueError, r"ply_data_test0\.h5 has no 'label' dataset"),
        "no pid": (lambda d: _h5(d / t, data=data[6:], label=label[6:]), ValueError,
                   r"ply_data_test0\.h5 has no 'pid' dataset \(found keys \['data', 'label'\]\)"),
        "category 16": (lambda d: _h5(d / t, data=data[6:], label=big_cat[6:], pid=pid[6:]), ValueError,
                        r"ply_data_test0\.h5: category label 16 \(at index 1\) is out of range for the 16"),
        "part of another category": (lambda d: _h5(d / t, data=data[6:], label=label[6:], pid=other[6:]), ValueError,
                                     r"ply_data_test0\.h5: shape 1 \(category 6\) has part ids \[0\] outside its parts 19\.\.21"),
        "part 50": (lambda d: _h5(d / "ply_data_train0.h5", data=data[:6], label=label[:6], pid=fifty[:6]), ValueError,
                    r"ply_data_train0\.h5: shape 0 \(category 0\) has part ids \[50\] outside its parts 0\.\.3"),
        "float pid": (lambda d: _h5(d / t, data=data[6:], label=label[6:], pid=pid[6:].astype(np.float32)), ValueError,
                      r"ply_data_test0\.h5: 'pid' must hold integers"),
        "pid per point": (lambda d: _h5(d / t, data=data[6:], label=label[6:], pid=pid[6:, :63]), ValueError,
                          r"ply_data_test0\.h5: 'pid' has shape \(2, 63\) but 'data' has \(2, 64, 3\)"),
        "label count": (lambda d: _h5(d / t, data=data[6:], label=label[6:7], pid=pid[6:]), ValueError,
                        r"ply_data_test0\.h5: 'data' has 2 shapes but 'label' has 1"),
        "data not 3d": (lambda d: _h5(d / t, data=data[6:, :, :2], label=label[6:], pid=pid[6:]), ValueError,
                        r"'data' must have shape \(n, P, 3\), got \(2, 64, 2\)"),
        "nan": (lambda d: _h5(d / "ply_data_train0.h5", data=nan[:6], label=label[:6], pid=pid[:6]), ValueError,
                r"ply_data_train0\.h5: 'data' contains NaN or inf coordinates \(batch items \[1\]\)"),
        "bad normals": (lambda d: _h5(d / t, data=data[6:], label=label[6:], pid=pid[6:], normal=data[6:, :10]), ValueError,
                        r"ply_data_test0\.h5: 'normal' has shape \(2, 10, 3\), expected \(2, 64, 3\)"),
        "point counts differ": (lambda d: (_h5(d / "ply_data_test1.h5", data=data[6:, :32], label=label[6:], pid=pid[6:, :32]),
                                           (d / "test_hdf5_file_list.txt").write_text("ply_data_test0.h5\nply_data_test1.h5\n")),
                                ValueError, r"ply_data_test1\.h5: shapes have 32 points, but .*ply_data_test0\.h5 has 64"),
        "missing h5": (lambda d: (d / t).unlink(), FileNotFoundError,
                       r"ply_data_test0\.h5 \(listed in .*test_hdf5_file_list\.txt as 'hdf5_data/ply_data_test0\.h5'\) does not exist"),
        "missing list": (lambda d: (d / "test_hdf5_file_list.txt").unlink(), FileNotFoundError,
                         r"file list .*test_hdf5_file_list\.txt does not exist"),
        "missing categories": (lambda d: (d / "all_object_categories.txt").unlink(), FileNotFoundError,
                               r"category list .*all_object_categories\.txt does not exist"),
        "categories out of order": (lambda d: (d / "all_object_categories.txt").write_text("\n".join(swapped)), ValueError,
                                    r"all_object_categories\.txt, line 2: 'Cap\\t02954340', expected 'Bag 02773838'"),
        "categories missing a line": (lambda d: (d / "all_object_categories.txt").write_text("\n".join(_categories_text().splitlines()[:15])),
                                      ValueError, r"all_object_categories\.txt has 15 lines; ShapeNetPart has 16"),
        "part table differs": (lambda d: (d / "part_ids.json").write_text(json.dumps({"part_offsets": [0, 4, 7]})),
                               ValueError, r"part_ids\.json: part_offsets \[0, 4, 7\] differ from the standard"),
        "part table garbage": (lambda d: (d / "part_ids.json").write_text("{"), ValueError,
                               r"part_ids\.json is not a valid part table"),
    }


@pytest.mark.parametrize("case", list(_bad_hdf5_cases((np.zeros((8, 64, 3)),) * 3)))
def test_hdf5_bad_files_raise_clear_errors(tmp_path, few, case):
    damage, exc, pattern = _bad_hdf5_cases(few)[case]
    folder = write_hdf5_layout(tmp_path / "hdf5_data", few)
    damage(folder)
    with pytest.raises(exc, match=pattern):
        ShapeNetPartHDF5(folder, "train" if "train0" in pattern else "test")


def test_hdf5_bad_arguments(tmp_path, few):
    folder = write_hdf5_layout(tmp_path / "hdf5_data", few)
    with pytest.raises(FileNotFoundError, match=r"ShapeNetPart root .*nowhere does not exist"):
        ShapeNetPartHDF5(tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test'\), got 'validation'"):
        ShapeNetPartHDF5(folder, "validation")
    with pytest.raises(FileNotFoundError, match=r"val_hdf5_file_list\.txt does not exist"):
        ShapeNetPartHDF5(folder, "val")
    with pytest.raises(ValueError, match=r"up_axis must be one of 'x', 'y', 'z' .*got 'w'"):
        ShapeNetPartHDF5(folder, "test", up_axis="w")
    with pytest.raises(ValueError, match="needs a root"):
        ShapeNetPartHDF5(None, "test")
    with pytest.raises(ValueError, match=r"num_points=65 is more than the 64 points per shape in .*ply_data_test0\.h5"):
        ShapeNetPartHDF5(folder, "test", num_points=65)
    with pytest.raises(ValueError, match=r"num_points must be a positive int, got 0"):
        ShapeNetPartHDF5(folder, "test", num_points=0)


# ------------------------------------------------------------------------------------------------
# the text layout (shapenetcore_partanno_segmentation_benchmark_v0_normal) in tmp_path

COUNTS = (64, 50, 30, 64, 40, 64, 20, 60)  # points per shape file: varying, some below num_points=48


def _rows(x, part):
    normal = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
    return "".join(" ".join(f"{v:.6f}" for v in (*p, *n, float(q))) + "\n" for p, n, q in zip(x, normal, part))


def write_normal_layout(root, few):
    data, label, pid = few
    folder = root / NORMAL_DIRNAME
    (folder / "train_test_split").mkdir(parents=True)
    (folder / "synsetoffset2category.txt").write_text(_categories_text())
    entries = []
    for i, (c, k) in enumerate(zip(label[:, 0], COUNTS)):
        (folder / SYNSETS[c]).mkdir(exist_ok=True)
        (folder / SYNSETS[c] / f"shape{i}.txt").write_text(_rows(data[i, :k], pid[i, :k]))
        entries.append(f"shape_data/{SYNSETS[c]}/shape{i}")
    for split, part in (("train", entries[:5]), ("val", entries[5:6]), ("test", entries[6:])):
        (folder / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(part))
    return folder


def test_normal_layout_items_are_deterministic_z_up_samples(tmp_path, few):
    data, label, pid = few
    folder = write_normal_layout(tmp_path, few)
    ds = ShapeNetPartNormal(tmp_path, "train", num_points=48)  # the parent folder, as extracted
    assert ds.folder == folder and len(ds) == 5 and ds.num_points == 48 and ds.frame_axes == "zx"
    assert ds.task == "partseg" and ds.num_parts == 50 and ds.num_categories == 16 and ds.classes == list(CATEGORIES)
    assert ds.categories.tolist() == label[:5, 0].tolist() and ds.shape_ids[0] == f"{SYNSETS[label[0, 0]]}/shape0"
    assert len(ShapeNetPartNormal(folder, "val")) == 1 and len(ShapeNetPartNormal(folder, "test")) == 2
    again = ShapeNetPartNormal(folder, "train", num_points=48)
    for i in range(len(ds)):
        x, c, p = ds[i]
        assert x.shape == (48, 3) and x.dtype == torch.float32 and c.dtype == torch.int64 and c.shape == ()
        assert p.shape == (48,) and p.dtype == torch.int64 and int(c) == label[i, 0]
        assert all(torch.equal(a, b) for a, b in zip(ds[i], again[i]))  # seeded by the index
        # every item point is a file point mapped to z-up, with that point's part id
        j = ds.sample_indices(i, COUNTS[i])
        src = torch.from_numpy(data[i, :COUNTS[i]]) @ up_to_z_matrix("y").float().T
        assert (x - src[j]).abs().max() < 1e-5 and torch.equal(p, torch.from_numpy(pid[i, j]).long())
        if COUNTS[i] >= 48:
            assert len(np.unique(j)) == 48  # without replacement
        else:
            assert len(np.unique(j)) == COUNTS[i]  # all points, the rest repeated
    check_part_labels(torch.stack([ds[i][2] for i in range(5)]), ds.categories, ds.category_parts)
    raw = ShapeNetPartNormal(folder, "train", num_points=48, up_axis="z")
    assert torch.equal(ds[0][0], raw[0][0] @ up_to_z_matrix("y").float().T)
    assert ShapeNetPartNormal(folder, "train").num_points == 2048 and ShapeNetPartNormal(folder, "train")[1][0].shape == (2048, 3)
    assert isinstance(build_dataset("shapenetpart-normal", folder, "test", None), ShapeNetPartNormal)


def _bad_normal_cases():
    f0 = lambda d: next((d / SYNSETS[0]).glob("shape0.txt"))  # noqa: E731 (an airplane, train item 0)
    split = lambda d: d / "train_test_split" / "shuffled_train_file_list.json"  # noqa: E731

    def edit_row(d, fn):
        lines = f0(d).read_text().splitlines()
        lines[3] = fn(lines[3].split())
        f0(d).write_text("\n".join(lines) + "\n")

    return {  # name: (damage, raised at construction?, exception, pattern)
        "missing synset file": (lambda d: (d / "synsetoffset2category.txt").unlink(), True, FileNotFoundError,
                                r"category list .*synsetoffset2category\.txt does not exist"),
        "unknown category": (lambda d: (d / "synsetoffset2category.txt").write_text("Boat\t04530566\n"), True, ValueError,
                             r"synsetoffset2category\.txt, line 1: 'Boat\\t04530566' is not in the standard"),
        "missing split list": (lambda d: split(d).unlink(), True, FileNotFoundError,
                               r"split list .*shuffled_train_file_list\.json does not exist"),
        "split list not json": (lambda d: split(d).write_text("[oops"), True, ValueError,
                                r"shuffled_train_file_list\.json is not valid JSON"),
        "split list not a list": (lambda d: split(d).write_text('{"a": 1}'), True, ValueError, r"must be a JSON list"),
        "synset not listed": (lambda d: (d / "synsetoffset2category.txt").write_text(f"Bag\t{SYNSETS[1]}\n"), True,
                              ValueError, rf"entry 'shape_data/{SYNSETS[0]}/shape0' names synset '{SYNSETS[0]}', which is not in"),
        "missing shape file": (lambda d: f0(d).unlink(), True, FileNotFoundError,
                               rf"shape file .*{SYNSETS[0]}/shape0\.txt \(listed in .*shuffled_train_file_list\.json as "
                               rf"'shape_data/{SYNSETS[0]}/shape0'\) does not exist"),
        "nan": (lambda d: edit_row(d, lambda r: " ".join(["nan"] + r[1:])), False, ValueError,
                r"shape0\.txt contains NaN or inf coordinates or normals \(row 4\)"),
        "six columns": (lambda d: edit_row(d, lambda r: " ".join(r[:6])), False, ValueError,
                        r"shape0\.txt is not a readable ShapeNetPart shape file"),
        "all six columns": (lambda d: f0(d).write_text("0 0 0 0 0 1\n1 0 0 0 0 1\n"), False, ValueError,
                            r"shape0\.txt: rows must have 7 columns 'x y z nx ny nz part', got 6"),
        "empty": (lambda d: f0(d).write_text(""), False, ValueError, r"shape0\.txt has no points"),
        "garbage": (lambda d: f0(d).write_bytes(b"\x00\x01binary garbage\n"), False, ValueError,
                    r"shape0\.txt is not a readable ShapeNetPart shape file"),
        "part of another category": (lambda d: edit_row(d, lambda r: " ".join(r[:6] + ["12"])), False, ValueError,
                                     r"shape0\.txt \(Airplane\): shape 0 \(category 0\) has part ids \[12\] outside its parts 0\.\.3"),
        "fractional part": (lambda d: edit_row(d, lambda r: " ".join(r[:6] + ["1.5"])), False, ValueError,
                            r"shape0\.txt: the part column must hold integer part ids"),
    }


@pytest.mark.parametrize("case", list(_bad_normal_cases()))
def test_normal_layout_bad_files_raise_clear_errors(tmp_path, few, case):
    damage, at_construction, exc, pattern = _bad_normal_cases()[case]
    folder = write_normal_layout(tmp_path, few)
    damage(folder)
    with pytest.raises(exc, match=pattern):
        ds = ShapeNetPartNormal(folder, "train", num_points=16)
        assert not at_construction, "should have failed in the constructor"
        ds[0]


def test_normal_layout_bad_arguments(tmp_path, few):
    folder = write_normal_layout(tmp_path, few)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test'\), got 'all'"):
        ShapeNetPartNormal(folder, "all")
    with pytest.raises(ValueError, match=r"num_points must be a positive int, got -1"):
        ShapeNetPartNormal(folder, "train", num_points=-1)
    with pytest.raises(FileNotFoundError, match=r"ShapeNetPart root .*missing does not exist"):
        ShapeNetPartNormal(tmp_path / "missing", "train")
    with pytest.raises(IndexError):
        ShapeNetPartNormal(folder, "test")[2]


# ------------------------------------------------------------------------------------------------
# the CLI


@pytest.mark.slow
def test_cli_trains_and_evaluates_part_segmentation(tmp_path, capsys):
    root = str(require(SHAPENET))
    out = tmp_path / "run"
    rc = main(["--threads", "1", "train", "--task", "partseg", "--dataset", "shapenetpart", "--data-root", root,
               "--epochs", "1", "--num-points", "128", "--batch-size", "8", "--max-shapes", "16", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "instance mIoU" in printed and "class mIoU" in printed and "num_shapes=16" in printed
    assert json.loads((out / "config.json").read_text())["task"] == "partseg"
    result = json.loads((out / "eval.json").read_text())
    assert result["task"] == "partseg" and set(result["protocols"]) == {"upright", "z", "SO3"}
    for r in result["protocols"].values():
        assert 0 <= r["instance_miou"] <= 1 and 0 <= r["class_miou"] <= 1 and 0 <= r["acc"] <= 1

    rc = main(["--threads", "1", "eval", str(out / "last.pt"), "--max-shapes", "16", "--protocols", "upright", "so3",
               "--out", str(tmp_path / "e.json")])
    assert rc == 0, capsys.readouterr().err
    assert "last.pt instance mIoU" in capsys.readouterr().out
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["task"] == "partseg" and again["protocols"]["upright"] == result["protocols"]["upright"]

    # combinations that do not fit are refused with a clear message
    assert main(["train", "--task", "partseg", "--dataset", "modelnet40", "--out", str(tmp_path / "x")]) == 2
    assert "--task partseg does not fit --dataset modelnet40" in capsys.readouterr().err
    assert main(["train", "--task", "cls", "--dataset", "shapenetpart", "--out", str(tmp_path / "x")]) == 2
    assert "--task cls needs --dataset modelnet40 or modelnet-off or synthetic" in capsys.readouterr().err
    assert main(["eval", str(out / "last.pt"), "--dataset", "synthetic"]) == 2
    assert "is a partseg model; it cannot be evaluated on --dataset synthetic" in capsys.readouterr().err
    assert main(["eval", str(out / "last.pt"), "--max-shapes", "0"]) == 2
    assert "--max-shapes must be a positive number of shapes, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_task_and_frame_axes_come_from_the_dataset(tmp_path, few, capsys):
    assert main(["train", "--dataset", "shapenetpart-normal", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "partseg"
    folder = write_hdf5_layout(tmp_path / "hdf5_data", few)
    shutil.copy(folder / "ply_data_train0.h5", folder / "ply_data_test0.h5")  # 6 test shapes too
    rc = main(["--threads", "1", "train", "--dataset", "shapenetpart", "--data-root", str(folder), "--epochs", "1",
               "--num-points", "32", "--batch-size", "3", "--canonicalizer", "vn", "--canonicalizer.hidden", "4", "4",
               "4", "--canonicalizer.num_points", "16", "--out", str(tmp_path / "run")])
    assert rc == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["task"] == "partseg"
    assert cfg["canonicalizer_kwargs"] == {"hidden": [4, 4, 4], "num_points": 16, "axes": "zx"}  # axes not named
