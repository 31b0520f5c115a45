"""Ragged batches (PyTorch Geometric's points + batch vector) and the pointcanon.pyg transform."""
from __future__ import annotations

import pytest
import torch

from conftest import MODELNET_HDF5, SHARED_DATA, require
from pointcanon.core import random_rigid_motion
from pointcanon.mesh import load_default_canonicalizer
from pointcanon.nn import CandidateCanonicalizer, CanonicalizedModel, VNCanonicalizer, build_backbone

SIZES = (300, 1024, 2000)


@pytest.fixture(scope="module")
def ragged_real():
    """Three real ModelNet40 test shapes with 300, 1,024 and 2,000 points (float64): stacked points, the
    batch vector and the clouds one by one."""
    import h5py

    with h5py.File(require(MODELNET_HDF5) / "ply_data_test0.h5", "r") as f:
        shapes = torch.from_numpy(f["data"][:3]).double()
    g = torch.Generator().manual_seed(0)
    clouds = []
    for s, n in zip(shapes, SIZES):  # 2,000 points: the 1,024 plus jittered copies
        idx = torch.randperm(1024, generator=g)[:n] if n <= 1024 else torch.randint(0, 1024, (n,), generator=g)
        clouds.append(s[idx] + 1e-3 * torch.randn(n, 3, generator=g, dtype=torch.float64))
    batch = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    return torch.cat(clouds), batch, clouds


LIGHT = {"local_k": 0, "normal_k": 0, "views": 1, "pooling": "max"}  # what the defaults' options turn on, off
CANONICALIZERS = {
    "shipped": lambda: load_default_canonicalizer(),
    "E3, 3 views, local offsets": lambda: CandidateCanonicalizer("E3", **{**LIGHT, "local_k": 6, "views": 3}),
    "SE3, one view of 128 points": lambda: CandidateCanonicalizer("SE3", **LIGHT),  # dense: the same subset
    "SE3, 2 views, normals from all points, max+mean": lambda: CandidateCanonicalizer(
        "SE3", views=2, local_k=6, normal_k=10, normal_points=None, pooling="max+mean"),
    "SE3, normals from a 512-point subset": lambda: CandidateCanonicalizer(
        "SE3", **{**LIGHT, "normal_k": 10, "normal_points": 512}),
    "SE3, all points, refine": lambda: CandidateCanonicalizer(
        "SE3", num_points=None, refine=True, **{**LIGHT, "local_k": 4}),
    "VN, SE3": lambda: VNCanonicalizer("SE3"),
    "VN, E3, learned origin, 128 points": lambda: VNCanonicalizer("E3", origin="learned", num_points=128),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CANONICALIZERS))
def test_ragged_batch_equals_dense_calls_and_is_invariant(name, ragged_real):
    torch.manual_seed(0)
    model = CANONICALIZERS[name]().double().eval()
    x, batch, clouds = ragged_real
    with torch.no_grad():
        r = model(x, batch=batch)
        assert r.canonical.shape == x.shape and torch.equal(r.batch, batch)
        for i, cloud in enumerate(clouds):
            d = model(cloud[None])
            radius = d.canonical.norm(dim=-1).max()
            assert (r.canonical[batch == i] - d.canonical[0]).abs().max() <= 1e-12 * radius
            assert torch.equal(r.degenerate[i], d.degenerate[0])
            if d.index is not None:
                assert torch.equal(r.index[i], d.index[0])
        g = torch.Generator().manual_seed(1)
        radius = torch.stack([c.norm(dim=-1).max() for c in r.canonical.split(list(SIZES))])
        for _ in range(10):  # an independent motion per cloud
            q, t = random_rigid_motion(len(SIZES), model.group, generator=g, dtype=torch.float64)
            moved = model((x.unsqueeze(1) @ q[batch].transpose(1, 2)).squeeze(1) + t[batch], batch=batch)
            err = (moved.canonical - r.canonical).abs().amax(-1)
            flagged = (moved.degenerate | r.degenerate)[batch]
            assert (flagged | (err <= 1e-9 * radius[batch])).all(), name


@pytest.mark.slow
def test_ragged_backbones_and_canonicalized_model_match_dense(ragged_real):
    """PointNet and DGCNN (its edge convolutions on a per-cloud kNN edge_index) give every cloud of a ragged
    batch the logits of a dense call on that cloud; so does a canonicalized model."""
    x, batch, clouds = ragged_real
    torch.manual_seed(0)
    models = {"pointnet": build_backbone("pointnet", 10), "dgcnn": build_backbone("dgcnn", 10, k=8),
              "canonicalized pointnet": CanonicalizedModel(load_default_canonicalizer(), build_backbone("pointnet", 10))}
    for name, model in models.items():
        model = model.double().eval()
        with torch.no_grad():
            ragged = model(x, batch=batch)
            dense = torch.cat([model(c[None]) for c in clouds])
        assert (ragged - dense).abs().max() <= 1e-10, name


def test_edge_conv_with_a_given_graph_matches_the_dense_neighbours():
    from pointcanon.nn.backbones import EdgeConv
    from pointcanon.nn.knn import knn

    torch.manual_seed(0)
    conv = EdgeConv(3, 16, k=5).double().eval()
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    idx = knn(x, 5)  # (B, N, k)
    dense = conv(x.transpose(1, 2))  # (B, 16, N)
    flat = (idx + 40 * torch.arange(2).view(2, 1, 1)).reshape(-1)
    centre = torch.arange(80).repeat_interleave(5)
    with torch.no_grad():
        edges = conv(x.reshape(80, 3), edge_index=torch.stack([flat, centre]))
    assert (edges - dense.transpose(1, 2).reshape(80, 16)).abs().max() <= 1e-12


@pytest.mark.parametrize("bad_batch, err, match", [
    (torch.tensor([0, 0, 1, 0]), ValueError, "sorted"),
    (torch.tensor([1, 1, 2, 2]), ValueError, "start at 0"),
    (torch.tensor([0, 0, 2, 2]), ValueError, "skip no cloud"),
    (torch.tensor([0, 0, 1]), ValueError, "shape"),
    (torch.tensor([0.0, 0, 1, 1]), TypeError, "integer"),
])
def test_bad_batch_vectors_raise_clear_errors(bad_batch, err, match):
    with pytest.raises(err, match=match):
        CandidateCanonicalizer("SE3")(torch.randn(4, 3), batch=bad_batch)


# ---------------------------------------------------------------------------------------------------------
# pointcanon.pyg

pyg = pytest.importorskip("torch_geometric")


def _bathtub_data(n=1500, seed=0):
    """A real mesh (a ModelNet10 bathtub) sampled with its face normals, in a random pose: Data(pos, normal)."""
    import trimesh
    from torch_geometric.data import Data

    path = sorted(require(SHARED_DATA / "meshes" / "modelnet10_bathtub").glob("*.off"))[seed % 5]
    mesh = trimesh.load(path, force="mesh")
    pts, face = trimesh.sample.sample_surface(mesh, n, seed=seed)
    pos = torch.as_tensor(pts, dtype=torch.float64)
    normal = torch.as_tensor(mesh.face_normals[face], dtype=torch.float64)
    q, t = random_rigid_motion(1, "SE3", generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Data(pos=pos @ q[0].T + 50 * t[0], normal=normal @ q[0].T)


@pytest.mark.slow
def test_transform_in_compose_and_its_inverse_round_trip():
    import torch_geometric.transforms as T

    from pointcanon.pyg import Canonicalize

    data = _bathtub_data()
    centred = T.Center()(data.clone())
    out = T.Compose([T.Center(), Canonicalize()])(data.clone())
    assert out.canon_frame.shape == (1, 3, 3) and out.canon_origin.shape == (1, 3)
    assert torch.allclose(out.normal.norm(dim=-1), centred.normal.norm(dim=-1))
    back = Canonicalize.inverse(out.clone())
    assert (back.pos - centred.pos).abs().max() <= 1e-9 * centred.pos.norm(dim=-1).max()
    assert (back.normal - centred.normal).abs().max() <= 1e-9
    assert "canon_frame" not in back


def test_transform_is_invariant_and_batches_like_single_objects():
    """Two poses of the same sampled mesh give the same canonical pos and normal; a Batch from PyG's
    DataLoader, canonicalized at once, matches the objects canonicalized one by one, and the inverse works
    on the batch too."""
    from torch_geometric.data import Batch
    from torch_geometric.loader import DataLoader

    from pointcanon.pyg import Canonicalize

    transform = Canonicalize()
    a = _bathtub_data(seed=1)
    q, t = random_rigid_motion(1, "SE3", generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    b = a.clone()
    b.pos, b.normal = a.pos @ q[0].T + t[0], a.normal @ q[0].T
    ca, cb = transform(a.clone()), transform(b.clone())
    if not ca.canon_degenerate.any():
        assert (ca.pos - cb.pos).abs().max() <= 1e-9 * ca.pos.norm(dim=-1).max()
        assert (ca.normal - cb.normal).abs().max() <= 1e-9
    items = [_bathtub_data(n, seed) for n, seed in ((700, 2), (1500, 3), (400, 4))]
    batch = next(iter(DataLoader([d.clone() for d in items], batch_size=3)))
    together = transform(batch.clone())
    one_by_one = Batch.from_data_list([transform(d.clone()) for d in items])
    assert (together.pos - one_by_one.pos).abs().max() <= 1e-12 * one_by_one.pos.abs().max()
    assert torch.equal(together.canon_degenerate, one_by_one.canon_degenerate)
    back = Canonicalize.inverse(together)
    assert (back.pos - batch.pos).abs().max() <= 1e-9 * batch.pos.abs().max()


def test_a_canonicalized_classifier_on_a_pyg_batch():
    """The PyG example of docs/pyg.md: logits for a Batch of clouds of different sizes, invariant to each
    cloud's pose."""
    from torch_geometric.loader import DataLoader

    torch.manual_seed(0)
    model = CanonicalizedModel(load_default_canonicalizer(), build_backbone("pointnet", num_classes=10)).eval()
    items = [_bathtub_data(n, seed) for n, seed in ((500, 0), (900, 1))]
    for d in items:
        d.pos, d.normal = d.pos.float(), d.normal.float()
    batch = next(iter(DataLoader(items, batch_size=2)))
    with torch.no_grad():
        logits = model(batch.pos, batch=batch.batch)
        q, t = random_rigid_motion(2, "SE3", generator=torch.Generator().manual_seed(3))
        moved = (batch.pos.unsqueeze(1) @ q[batch.batch].transpose(1, 2)).squeeze(1) + 10 * t[batch.batch]
        assert logits.shape == (2, 10)
        assert (model(moved, batch=batch.batch) - logits).abs().max() <= 1e-3 * logits.abs().max()


@pytest.mark.parametrize("kind", ["candidate", "vn"])
def test_ragged_training_step_has_finite_gradients(kind, ragged_real):
    """Training mode: batch norm sees only the real points of every cloud; one step of a canonicalized
    PointNet on a ragged batch gives finite gradients everywhere."""
    x, batch, _ = ragged_real
    torch.manual_seed(0)
    canon = CandidateCanonicalizer("SE3", **{**LIGHT, "local_k": 4}) if kind == "candidate" else VNCanonicalizer("SE3")
    model = CanonicalizedModel(canon, build_backbone("pointnet", 5)).train()
    out, c = model(x.float(), batch=batch, return_canonicalization=True)
    loss = out.logsumexp(-1).mean() + (canon.fit_loss(x.float(), "upright", batch=batch)["loss"]
                                       if kind == "candidate" else c.frame.sum())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_approximate_canonicalizer_refuses_ragged_batches():
    from pointcanon.nn.approximate import ApproximateVNCanonicalizer

    with pytest.raises(ValueError, match="ragged"):
        ApproximateVNCanonicalizer()(torch.randn(10, 3), batch=torch.tensor([0] * 5 + [1] * 5))
