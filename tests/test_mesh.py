"""pointcanon.mesh: canonicalizing Open3D / trimesh meshes and point clouds, arrays, files and the CLI.

The real-data tests use the five raw ModelNet10 bathtubs (raw scale, not centred) and a random-weight
VNCanonicalizer in float64: the geometric properties hold whatever the weights are.
"""
import json
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch
import trimesh

from conftest import SHARED_DATA, require
from pointcanon import VNCanonicalizer
from pointcanon.nn import CandidateCanonicalizer
from pointcanon.core.groups import random_rigid_motion
from pointcanon.datasets.modelnet import load_off
from pointcanon.mesh import (DEFAULT_WEIGHTS, CanonicalFrame, DegenerateFrameWarning, apply_transform, canonicalize,
                             estimate_transform, invert_transform, load_canonicalizer, load_default_canonicalizer,
                             load_mesh, render_thumbnail, sample_surface, save_canonicalizer)

BATHTUBS = SHARED_DATA / "meshes" / "modelnet10_bathtub"
MOTIONS = 50
TOL = 1e-4  # of the mesh radius; float64 gives ~1e-14


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=["vn", "candidate"])
def model(request):
    torch.manual_seed(0)
    if request.param == "candidate":
        light = {"local_k": 0, "normal_k": 0, "views": 1, "pooling": "max"}  # not the heavier class defaults
        return CandidateCanonicalizer(hidden=(16, 32, 64), **light).double().eval()
    return VNCanonicalizer(group="SE3").double().eval()


@pytest.fixture(scope="module")
def meshes():
    """``[(name, vertices (V, 3) float64, faces (F, 3), radius)]`` of the five bathtubs."""
    out = []
    for path in sorted(require(BATHTUBS).glob("*.off")):
        m = load_off(path)
        v = np.asarray(m.vertices, np.float64)
        out.append((path.name, v, np.asarray(m.faces), float(np.linalg.norm(v - v.mean(0), axis=1).max())))
    assert len(out) == 5
    return out


def motions(n, radius, seed):
    q, s = random_rigid_motion(n, "SE3", translation_scale=radius, generator=torch.Generator().manual_seed(seed),
                               dtype=torch.float64)
    return q.numpy(), s.numpy()


def homogeneous(q, s):
    g = np.eye(4)
    g[:3, :3], g[:3, 3] = q, s
    return g


def signed_volume(v, f):
    """Signed volume of the triangles ``f`` seen from the vertex centroid (defined for open meshes too)."""
    a, b, c = (v[f[:, k]] - v.mean(0) for k in range(3))
    return np.einsum("ij,ij->", a, np.cross(b, c)) / 6


def face_normals(v, f):
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


def irregular_mesh():
    """A small mesh without symmetries: a noisy, stretched icosphere."""
    m = trimesh.creation.icosphere(subdivisions=2)
    v = m.vertices * [1.0, 1.6, 0.7] + 0.08 * np.random.default_rng(3).normal(size=m.vertices.shape)
    return trimesh.Trimesh(v, m.faces, process=False)


def write_broken_off(path, mesh):
    """ModelNet's broken header: ``OFF<V> <F> 0`` on one line."""
    lines = [f"OFF{len(mesh.vertices)} {len(mesh.faces)} 0"]
    lines += [" ".join(f"{x:.6f}" for x in p) for p in mesh.vertices]
    lines += ["3 " + " ".join(str(i) for i in f) for f in mesh.faces]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------
# exactness on real meshes


@pytest.mark.slow
def test_trimesh_meshes_exact_under_rigid_motions(model, meshes):
    for i, (name, v, f, radius) in enumerate(meshes):
        mesh = trimesh.Trimesh(v, f, process=False)
        normals = mesh.vertex_normals.copy()  # computed now, so cached: carried along (rotated), not recomputed
        v_before = mesh.vertices.copy()
        base, t0 = canonicalize(mesh, model)
        assert isinstance(base, trimesh.Trimesh) and base is not mesh
        np.testing.assert_array_equal(mesh.vertices, v_before)  # input untouched
        np.testing.assert_array_equal(base.faces, f)  # faces kept as they are
        assert abs(np.linalg.det(t0[:3, :3]) - 1) < 1e-12
        vol = signed_volume(v, f)
        assert abs(signed_volume(base.vertices, f) - vol) <= 1e-9 * abs(vol) + 1e-12 * radius ** 3
        # face normals rotate with the frame (a reflection would negate them)
        np.testing.assert_allclose(face_normals(base.vertices, f), face_normals(v, f) @ t0[:3, :3].T,
                                   atol=1e-9 * radius ** 2)
        np.testing.assert_allclose(base.vertex_normals, normals @ t0[:3, :3].T, atol=1e-12)
        q, s = motions(MOTIONS, radius, seed=i)
        worst = 0.0
        for qi, si in zip(q, s):
            moved = trimesh.Trimesh(v @ qi.T + si, f, vertex_normals=normals @ qi.T, process=False)
            out, t = canonicalize(moved, model)
            worst = max(worst, np.abs(out.vertices - base.vertices).max() / radius)
            np.testing.assert_allclose(t, t0 @ invert_transform(homogeneous(qi, si)), atol=1e-8)
            np.testing.assert_allclose(out.vertex_normals, base.vertex_normals, atol=1e-9)
        assert worst <= TOL, f"{name}: canonical vertices moved by {worst:.2e} of the radius"


@pytest.mark.slow
def test_open3d_meshes_exact_with_normals(model, meshes):
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(0)
    for i, (name, v, f, radius) in enumerate(meshes):
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f.astype(np.int32)))
        # normals that faces cannot recompute: they must be carried along, not rebuilt
        normals = rng.normal(size=v.shape)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        mesh.vertex_normals = o3d.utility.Vector3dVector(normals)
        base, t0 = canonicalize(mesh, model)
        assert isinstance(base, o3d.geometry.TriangleMesh) and base is not mesh
        np.testing.assert_array_equal(np.asarray(mesh.vertices), v)
        # the same samples as through trimesh: the same transform
        _, t_tri = canonicalize(trimesh.Trimesh(v, f, process=False), model)
        np.testing.assert_allclose(t0, t_tri, atol=1e-12)
        r0 = t0[:3, :3]
        np.testing.assert_allclose(np.asarray(base.vertex_normals), normals @ r0.T, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(base.triangles), f)
        vol = signed_volume(v, f)
        assert abs(signed_volume(np.asarray(base.vertices), f) - vol) <= 1e-9 * abs(vol) + 1e-12 * radius ** 3
        base_v = np.asarray(base.vertices)
        q, s = motions(MOTIONS, radius, seed=10 + i)
        worst = 0.0
        for qi, si in zip(q, s):
            moved = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v @ qi.T + si), mesh.triangles)
            moved.vertex_normals = o3d.utility.Vector3dVector(normals @ qi.T)
            out, t = canonicalize(moved, model)
            worst = max(worst, np.abs(np.asarray(out.vertices) - base_v).max() / radius)
            np.testing.assert_allclose(np.asarray(out.vertex_normals), np.asarray(base.vertex_normals), atol=1e-9)
        assert worst <= TOL, f"{name}: canonical vertices moved by {worst:.2e} of the radius"


@pytest.mark.slow
def test_arrays_and_point_clouds_exact(model, meshes):
    for i, (name, v, f, radius) in enumerate(meshes):
        points = sample_surface(v, f, 3000, seed=11)  # a point cloud of the same surface (the "same sampling")
        base, t0 = canonicalize(points, model)
        assert isinstance(base, np.ndarray) and base.dtype == np.float64
        np.testing.assert_allclose(base, points @ t0[:3, :3].T + t0[:3, 3], atol=1e-12 * radius)
        q, s = motions(MOTIONS, radius, seed=20 + i)
        worst = 0.0
        for qi, si in zip(q, s):
            out, _ = canonicalize(points @ qi.T + si, model)
            worst = max(worst, np.abs(out - base).max() / radius)
        assert worst <= TOL, f"{name}: canonical points moved by {worst:.2e} of the radius"
        # float32 / torch inputs keep their type and dtype; float32 rounding stays far below the tolerance
        q32, s32 = motions(3, radius, seed=3)
        for qi, si in zip(q32, s32):
            moved = points @ qi.T + si
            for x in (moved.astype(np.float32), torch.from_numpy(moved), torch.from_numpy(moved).float()):
                out = canonicalize(x, model, return_transform=False)
                assert type(out) is type(x) and out.dtype == x.dtype
                err = np.abs(np.asarray(out, np.float64) - base).max() / radius
                assert err <= TOL, f"{name} {type(x).__name__} {x.dtype}: {err:.2e}"
        # trimesh.PointCloud
        out, _ = canonicalize(trimesh.PointCloud(points @ q[0].T + s[0]), model)
        assert isinstance(out, trimesh.PointCloud)
        assert np.abs(np.asarray(out.vertices) - base).max() <= TOL * radius


def test_open3d_point_cloud_normals(model, meshes):
    o3d = pytest.importorskip("open3d")
    _, v, f, radius = meshes[1]
    points = sample_surface(v, f, 2000, seed=5)
    normals = np.random.default_rng(1).normal(size=points.shape)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pc.normals = o3d.utility.Vector3dVector(normals)
    base, t0 = canonicalize(pc, model)
    assert isinstance(base, o3d.geometry.PointCloud)
    np.testing.assert_allclose(np.asarray(base.normals), normals @ t0[:3, :3].T, atol=1e-12)
    for qi, si in zip(*motions(5, radius, seed=9)):
        moved = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points @ qi.T + si))
        moved.normals = o3d.utility.Vector3dVector(normals @ qi.T)
        out, _ = canonicalize(moved, model)
        assert np.abs(np.asarray(out.points) - np.asarray(base.points)).max() <= TOL * radius
        np.testing.assert_allclose(np.asarray(out.normals), np.asarray(base.normals), atol=1e-9)


def test_round_trip_and_inverse(model, meshes):
    _, v, f, radius = meshes[0]
    mesh = trimesh.Trimesh(v, f, process=False)
    normals = mesh.vertex_normals.copy()
    out, t = canonicalize(mesh, model)
    inv = invert_transform(t)
    np.testing.assert_allclose(inv @ t, np.eye(4), atol=1e-14)
    np.testing.assert_allclose(inv, np.linalg.inv(t), atol=1e-12)
    back = apply_transform(out, inv)
    assert np.abs(back.vertices - v).max() <= 1e-12 * radius
    np.testing.assert_allclose(back.vertex_normals, normals, atol=1e-12)
    tt = torch.from_numpy(t).float()
    assert isinstance(invert_transform(tt), torch.Tensor) and invert_transform(tt).dtype == torch.float32
    frame = estimate_transform(mesh, model)
    assert isinstance(frame, CanonicalFrame) and frame.sampling == "surface" and frame.num_samples == 2048
    np.testing.assert_array_equal(frame.transform, t)  # deterministic
    assert not frame.degenerate and 0 < frame.conditioning <= 1
    assert json.loads(json.dumps(frame.to_json()))["inverse"] == frame.inverse.tolist()
    # another seed: other samples, a nearby but different frame
    assert not np.array_equal(estimate_transform(mesh, model, seed=1).transform, t)
    with pytest.raises(ValueError, match="rigid"):
        invert_transform(np.diag([2.0, 1, 1, 1]))
    with pytest.raises(ValueError, match="reflection"):
        apply_transform(mesh, np.diag([-1.0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        invert_transform(np.eye(3))


def test_sampling_is_equivariant_and_vertex_mode(model, meshes):
    _, v, f, radius = meshes[1]
    q, s = motions(1, radius, seed=4)
    a = sample_surface(v, f, 500, seed=3)
    b = sample_surface(v @ q[0].T + s[0], f, 500, seed=3)
    assert np.abs(a @ q[0].T + s[0] - b).max() <= 1e-12 * radius
    # vertices: exact here (this mesh has no ties in its neighbour distances)
    mesh = trimesh.Trimesh(v, f, process=False)
    base, _ = canonicalize(mesh, model, sampling="vertices")
    out, _ = canonicalize(trimesh.Trimesh(v @ q[0].T + s[0], f, process=False), model, sampling="vertices")
    assert np.abs(out.vertices - base.vertices).max() <= TOL * radius
    assert estimate_transform(mesh, model, sampling="vertices").num_samples == len(v)


# ---------------------------------------------------------------------------------------------------
# errors


def test_errors(model):
    good = irregular_mesh()
    with pytest.raises(ValueError, match="empty"):
        canonicalize(trimesh.Trimesh(), model)
    with pytest.raises(ValueError, match="empty"):
        canonicalize(np.zeros((0, 3)), model)
    with pytest.raises(ValueError, match="empty"):
        canonicalize(trimesh.PointCloud(np.zeros((0, 3))), model)
    faceless = trimesh.Trimesh(good.vertices, np.zeros((0, 3), int), process=False)
    with pytest.raises(ValueError, match="no faces.*sampling='vertices'"):
        canonicalize(faceless, model)
    out, _ = canonicalize(faceless, model, sampling="vertices")  # vertices need no faces
    assert len(out.vertices) == len(good.vertices)
    flat = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0.0]], [[0, 1, 2]], process=False)
    with pytest.raises(ValueError, match="area"):
        canonicalize(flat, model)
    bad = good.vertices.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        canonicalize(trimesh.Trimesh(bad, good.faces, process=False), model)
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf.*index 5"):
        canonicalize(bad, model)
    with pytest.raises(ValueError, match="face indices"):
        canonicalize(trimesh.Trimesh(good.vertices[:3], [[0, 1, 7]], process=False), model)
    with pytest.raises(TypeError, match="np.asarray"):
        canonicalize(good.vertices.tolist(), model)
    with pytest.raises(TypeError, match="cannot canonicalize a builtins.str"):
        canonicalize("mesh.off", model)
    with pytest.raises(TypeError, match="floating dtype"):
        canonicalize(np.zeros((4, 3), np.int64), model)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        canonicalize(np.zeros((4, 2)), model)
    with pytest.raises(ValueError, match="one shape at a time"):
        canonicalize(torch.zeros(2, 4, 3), model)
    with pytest.raises(ValueError, match="sampling"):
        canonicalize(good, model, sampling="poisson")
    with pytest.raises(ValueError, match="num_points"):
        canonicalize(good, model, num_points=0)
    with pytest.raises(ValueError, match="group='E3'"):
        canonicalize(good, VNCanonicalizer(group="E3"))
    from pointcanon.nn.approximate import ApproximateVNCanonicalizer

    with pytest.raises(ValueError, match="approximately"):
        canonicalize(good, ApproximateVNCanonicalizer())
    with pytest.raises(TypeError, match="model must be"):
        canonicalize(good, 3)


def test_degenerate_shape_warns_and_stays_finite(model):
    # all points coincide: no orientation at all, only the centring is applied
    pts = np.ones((10, 3))
    with pytest.warns(DegenerateFrameWarning):
        out, t = canonicalize(pts, model)
    np.testing.assert_array_equal(t[:3, :3], np.eye(3))
    np.testing.assert_allclose(out, 0, atol=1e-15)


def test_open3d_errors(model):
    o3d = pytest.importorskip("open3d")
    with pytest.raises(ValueError, match="empty"):
        canonicalize(o3d.geometry.TriangleMesh(), model)
    with pytest.raises(ValueError, match="empty"):
        canonicalize(o3d.geometry.PointCloud(), model)
    faceless = o3d.geometry.TriangleMesh()
    faceless.vertices = o3d.utility.Vector3dVector(irregular_mesh().vertices)
    with pytest.raises(ValueError, match="no faces"):
        canonicalize(faceless, model)
    with pytest.raises(TypeError, match="to_legacy"):
        canonicalize(o3d.t.geometry.PointCloud(), model)
    with pytest.raises(TypeError, match="unsupported Open3D type"):
        canonicalize(o3d.geometry.LineSet(), model)


def test_open3d_is_optional(model, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open3d", None)  # `import open3d` now raises ImportError
    out, _ = canonicalize(irregular_mesh(), model)  # trimesh / arrays never need it
    assert isinstance(out, trimesh.Trimesh)
    path = tmp_path / "m.off"
    irregular_mesh().export(path)
    with pytest.raises(ImportError, match="open3d-cpu"):
        load_mesh(path, backend="open3d")


@pytest.mark.slow
def test_import_does_not_load_open3d():
    code = ("import sys, numpy as np, pointcanon.mesh as pm; import torch; torch.manual_seed(0);"
            "from pointcanon import VNCanonicalizer;"
            "pm.canonicalize(np.random.default_rng(0).normal(size=(50, 3)), VNCanonicalizer());"
            "print('open3d' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------------
# files: canonicalizers, meshes


@pytest.mark.slow
def test_save_load_canonicalizer(model, tmp_path):
    torch.manual_seed(1)
    canon = VNCanonicalizer(group="SE3", hidden=(4, 8, 16), k=6, num_points=128)
    path = save_canonicalizer(canon, tmp_path / "c.pt", {"data": "random", "epochs": 0})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "pointcanon-canonicalizer" and raw["version"] == 1 and raw["class"] == "VNCanonicalizer"
    loaded = load_canonicalizer(path)
    assert loaded.hparams == canon.hparams and loaded.info == {"data": "random", "epochs": 0}
    assert not loaded.training
    for k, v in canon.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    mesh = irregular_mesh()
    np.testing.assert_array_equal(canonicalize(mesh, path)[1], canonicalize(mesh, canon)[1])  # path or object
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="group='E3'"):
        save_canonicalizer(VNCanonicalizer(group="E3"), tmp_path / "e3.pt")


def test_load_canonicalizer_from_training_checkpoint(tmp_path):
    from pointcanon.core.io import save_checkpoint
    from pointcanon.config import TrainConfig
    from pointcanon.models import build_model

    cfg = TrainConfig(canonicalizer="vn", canonicalizer_kwargs={"hidden": (4, 8, 16), "num_points": 64})
    torch.manual_seed(2)
    net = build_model(cfg, 4)
    save_checkpoint(tmp_path / "last.pt", {"config": asdict(cfg), "sizes": {"num_classes": 4},
                                           "model": net.state_dict()})
    canon = load_canonicalizer(tmp_path / "last.pt")
    assert isinstance(canon, VNCanonicalizer)
    for k, v in net.canonicalizer.state_dict().items():
        torch.testing.assert_close(canon.state_dict()[k], v)
    plain = TrainConfig()
    save_checkpoint(tmp_path / "plain.pt", {"config": asdict(plain), "sizes": {"num_classes": 4},
                                            "model": build_model(plain, 4).state_dict()})
    with pytest.raises(ValueError, match="without a canonicalizer"):
        load_canonicalizer(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_canonicalizer(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_canonicalizer(tmp_path / "missing.pt")


def test_default_canonicalizer():
    if DEFAULT_WEIGHTS.is_file():
        canon = load_default_canonicalizer()
        assert isinstance(canon, CandidateCanonicalizer) and canon.group == "SE3"
        return
    with pytest.raises(FileNotFoundError, match=str(DEFAULT_WEIGHTS)):
        load_default_canonicalizer()
    with pytest.raises(FileNotFoundError, match="upright_modelnet40.pt"):
        canonicalize(irregular_mesh())


def test_load_mesh_broken_off_header(tmp_path):
    mesh = irregular_mesh()
    path = tmp_path / "broken.off"
    write_broken_off(path, mesh)
    tri = load_mesh(path)
    assert isinstance(tri, trimesh.Trimesh) and len(tri.faces) == len(mesh.faces)
    np.testing.assert_allclose(tri.vertices, mesh.vertices, atol=1e-6)
    o3d = pytest.importorskip("open3d")
    m = load_mesh(path, backend="open3d")  # Open3D alone reads this as an empty mesh
    assert isinstance(m, o3d.geometry.TriangleMesh)
    np.testing.assert_array_equal(np.asarray(m.vertices), tri.vertices)
    np.testing.assert_array_equal(np.asarray(m.triangles), tri.faces)
    good = tmp_path / "good.ply"
    mesh.export(good)
    assert len(load_mesh(good, backend="open3d").triangles) == len(mesh.faces)
    (tmp_path / "m.xyz").write_text("0 0 0\n")
    with pytest.raises(ValueError, match="unsupported mesh format"):
        load_mesh(tmp_path / "m.xyz")


def test_render_thumbnail_points(model, tmp_path):
    pts = irregular_mesh().vertices
    out, _ = canonicalize(pts, model)
    png = render_thumbnail(pts, out, tmp_path / "t.png", title="points")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------
# CLI


@pytest.mark.slow
def test_cli_batch(model, tmp_path, capsys):
    from pointcanon.cli import main

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    ico = irregular_mesh()
    write_broken_off(src / "sub" / "ico.off", ico)  # ModelNet's broken header
    for ext in ("stl", "ply", "obj"):
        ico.export(src / "sub" / f"ico.{ext}")
    (src / "sub" / "bad.off").write_text("OFF\n3 1 0\n0 0 0\n1 0\n")  # truncated
    (src / "notes.txt").write_text("ignored")
    bathtub = BATHTUBS / "bathtub_0002.off"  # a real raw ModelNet file where available
    good = src / "bathtub.off"
    if bathtub.is_file():
        good.write_bytes(bathtub.read_bytes())
    else:
        irregular_mesh().export(good)
    ckpt = save_canonicalizer(model, tmp_path / "canon.pt")
    out = tmp_path / "out"
    rc = main(["canonicalize", str(src), str(tmp_path / "missing.off"), "-o", str(out), "--model", str(ckpt),
               "--render", "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "bad.off" in err and "missing.off" in err
    report = json.loads((out / "transforms.json").read_text())
    assert set(report["errors"]) == {str(src / "sub" / "bad.off"), str(tmp_path / "missing.off")}
    assert len(report["files"]) == 5
    for name, entry in report["files"].items():
        t, inv = np.array(entry["transform"]), np.array(entry["inverse"])
        np.testing.assert_allclose(inv @ t, np.eye(4), atol=1e-12)
        assert entry["degenerate"] is False and entry["conditioning"] > 0
        before, after = load_mesh(name), load_mesh(entry["output"])
        assert type(after) is type(before) and len(after.vertices) == len(before.vertices)
        expected = apply_transform(before, t)
        np.testing.assert_allclose(after.vertices, expected.vertices, atol=1e-5 * expected.scale)
        np.testing.assert_array_equal(after.faces, before.faces)
        assert open(entry["thumbnail"], "rb").read(4) == b"\x89PNG"
    # the same transform as the API (which is exact)
    _, t_api = canonicalize(load_off(good), model)
    np.testing.assert_allclose(report["files"][str(good)]["transform"], t_api, atol=1e-12)
    assert not list(out.rglob(".*.tmp"))
    # only good files: exit code 0
    rc = main(["canonicalize", str(good), "-o", str(tmp_path / "out2"), "--model", str(ckpt),
               "--no-progress"])
    assert rc == 0 and (tmp_path / "out2" / "bathtub.off").is_file()
    if not DEFAULT_WEIGHTS.is_file():
        assert main(["canonicalize", str(src), "-o", str(tmp_path / "out3"), "--no-progress"]) == 2
        assert "upright_modelnet40.pt" in capsys.readouterr().err
