"""scripts/open3d_canonicalize.py on scan-like clouds made from the shared ModelNet10 meshes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, require

o3d = pytest.importorskip("open3d")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from open3d_canonicalize import main  # noqa: E402


def _scan(path: Path, out: Path, rotation: np.ndarray, shift: np.ndarray, n: int = 3000) -> Path:
    """A scan-like cloud: area-weighted samples of the mesh (seeded), moved rigidly, written as .ply
    without normals."""
    import trimesh

    from pointcanon.mesh import load_mesh

    pts, _ = trimesh.sample.sample_surface(load_mesh(path), n, seed=0)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts @ rotation.T + shift))
    o3d.io.write_point_cloud(str(out), cloud)
    return out


@pytest.mark.slow
def test_script_canonicalizes_a_scan_in_any_pose(tmp_path):
    from pointcanon.core import random_rotations

    mesh = sorted(require(SHARED_DATA / "meshes" / "modelnet10_bathtub").glob("*.off"))[0]
    import torch

    r1, r2 = random_rotations(2, "SO3", generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    a = _scan(mesh, tmp_path / "a.ply", r1, np.array([5.0, -2.0, 1.0]))
    b = _scan(mesh, tmp_path / "b.ply", r2, np.array([-40.0, 3.0, 7.0]))
    for src in (a, b):
        assert main([str(src), "-o", str(tmp_path / f"{src.stem}_canon.ply")]) == 0
    ca = o3d.io.read_point_cloud(str(tmp_path / "a_canon.ply"))
    cb = o3d.io.read_point_cloud(str(tmp_path / "b_canon.ply"))
    assert ca.has_normals() and len(ca.points) == 3000
    meta = json.loads((tmp_path / "a_canon.ply.transform.json").read_text())
    t = np.asarray(meta["transform"])
    pa = np.asarray(o3d.io.read_point_cloud(str(a)).points)
    assert np.abs(pa @ t[:3, :3].T + t[:3, 3] - np.asarray(ca.points)).max() < 1e-6 * np.abs(pa).max()
    fresh = o3d.geometry.PointCloud(ca.points)  # normals moved with the cloud = normals of the moved cloud
    fresh.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=30))
    agree = np.abs((np.asarray(fresh.normals) * np.asarray(ca.normals)).sum(1))
    assert np.quantile(agree, 0.01) > 0.99
    assert not meta["degenerate"]
    # the same points in two poses: the same canonical cloud
    radius = np.linalg.norm(np.asarray(ca.points), axis=1).max()
    assert np.abs(np.asarray(ca.points) - np.asarray(cb.points)).max() < 1e-4 * radius


def test_script_reports_bad_inputs(tmp_path, capsys):
    (tmp_path / "empty.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\n"
                                        "property float y\nproperty float z\nend_header\n")
    assert main([str(tmp_path / "missing.ply"), "-o", str(tmp_path / "o.ply")]) == 2
    assert main([str(tmp_path / "empty.ply"), "-o", str(tmp_path / "o.ply")]) == 2
    assert main([str(tmp_path / "empty.ply"), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "no points" in err and "is a folder" in err
    assert not (tmp_path / "o.ply").exists()
