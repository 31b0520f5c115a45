import importlib.util
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))  # xdist: 1 per worker

SHARED_DATA = Path(os.environ.get("POINTCANON_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MODELNET_HDF5 = SHARED_DATA / "modelnet40_hdf5_1024"


def load_script(name: str):
    """The module of ``scripts/NAME.py`` (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_plain_run(tmp_path):
    """A ModelNet40-format fixture folder (data/make_fixtures.py) and a plain PointNet trained on it for one epoch
    at 128 points: ``(data_root, checkpoint)``."""
    import sys

    from pointcanon.cli import main as pointcanon_main

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from make_fixtures import main as make_fixtures

    assert make_fixtures([str(tmp_path)]) == 0
    root = tmp_path / "modelnet40_hdf5"
    assert pointcanon_main(["train", "--dataset", "modelnet40", "--data-root", str(root), "--epochs", "1",
                            "--num-points", "128", "--out", str(tmp_path / "run")]) == 0
    return root, tmp_path / "run" / "last.pt"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set POINTCANON_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture(scope="session")
def modelnet_test_shapes() -> torch.Tensor:
    """64 real ModelNet40 test shapes (64, 1024, 3) float32, read with h5py."""
    import h5py

    with h5py.File(require(MODELNET_HDF5) / "ply_data_test0.h5", "r") as f:
        return torch.from_numpy(f["data"][:64])


@pytest.fixture
def one_thread():
    """Tests of many tiny calls: thread hand-offs cost more than they save (10x on 2 busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _line(n):
    return torch.linspace(-1, 1, n)[:, None] * torch.tensor([1.0, 2.0, -0.5])


# Clouds without a unique frame, shared by the canonicalizer tests: each must come out flagged and finite.
DEGENERATE_CLOUDS = {
    "one point": lambda: torch.tensor([[0.3, -0.2, 0.9]]),
    "coincident": lambda: torch.full((64, 3), 0.7),
    "collinear": lambda: _line(64),
    "sphere-symmetric octahedron": lambda: torch.cat([torch.eye(3), -torch.eye(3)]),
}


def per_shape_canonical_errors(model, x, group, dtype, motions, seed=123):
    """Largest |canonical(g.x) - canonical(x)| / radius per shape over ``motions`` random motions of
    ``group`` (float64 ``(B,)``), the conditioning ``(B,)`` and the degeneracy flag ``(B,)`` of each shape."""
    from pointcanon.core import apply_rigid, random_rigid_motion

    model = model.to(dtype)
    x = x.to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        base = model(x)
        radius = base.canonical.norm(dim=-1).amax(-1)
        worst = torch.zeros(x.shape[0], dtype=torch.float64)
        for _ in range(motions):
            q, s = random_rigid_motion(x.shape[0], group, generator=gen, dtype=dtype)
            moved = model(apply_rigid(x, q, s))
            err = (moved.canonical - base.canonical).abs().amax((1, 2)) / radius
            worst = torch.maximum(worst, err.double())
    return worst, base.conditioning.double(), base.degenerate
