"""data/make_fixtures.py writes layouts the readers accept."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from make_fixtures import main  # noqa: E402


def test_fixtures_load_with_the_readers(tmp_path):
    from pointcanon.datasets import ModelNet40HDF5, build_dataset

    assert main([str(tmp_path)]) == 0
    train = ModelNet40HDF5(tmp_path / "modelnet40_hdf5", "train")
    assert len(train) == 128 and train.num_classes == 8
    x, y = train[0]
    assert x.shape == (1024, 3) and 0 <= int(y) < 8
    meshes = build_dataset("modelnet-off", tmp_path / "meshes", "test", 128)
    assert len(meshes) == 3 and meshes[0][0].shape == (128, 3)
