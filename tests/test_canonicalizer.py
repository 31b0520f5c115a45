"""Exactness of the VN canonicalizer on real ModelNet40 shapes, reflections, degenerate and bad input."""
import pytest
import torch

from pointcanon import Canonicalization, VNCanonicalizer
from pointcanon.core import apply_rigid, random_rigid_motion
from pointcanon.testing import assert_equivariant, equivariance_error

from conftest import DEGENERATE_CLOUDS, per_shape_canonical_errors

MOTIONS = 200


def _model(group, seed=0, **kw):
    torch.manual_seed(seed)
    return VNCanonicalizer(group, **kw).eval()


def _per_shape_errors(model, x, group, dtype, motions):
    return per_shape_canonical_errors(model, x, group, dtype, motions, seed=123)


# A small configuration keeps 64 shapes x 200 motions x 2 dtypes fast; the architecture is the default one.
SMALL = dict(hidden=(8, 16, 32), num_points=128)


@pytest.mark.slow
@pytest.mark.parametrize("group", ["SE3", "E3"])
def test_canonical_coordinates_invariant_on_real_shapes_float64(modelnet_test_shapes, group):
    err, _, degenerate = _per_shape_errors(_model(group, **SMALL), modelnet_test_shapes, group, torch.float64, MOTIONS)
    if group == "SE3":
        assert not degenerate.any()  # every real shape has a unique proper frame
    # in E(3) mode a mirror-symmetric shape has no unique handedness: flagged, and excluded here
    assert degenerate.float().mean() <= 0.25
    assert err[~degenerate].max() <= 1e-9, err[~degenerate].max()


@pytest.mark.slow
@pytest.mark.parametrize("group", ["SE3", "E3"])
def test_canonical_coordinates_invariant_on_real_shapes_float32(modelnet_test_shapes, group):
    err, cond, degenerate = _per_shape_errors(_model(group, **SMALL), modelnet_test_shapes, group, torch.float32, MOTIONS)
    # The frame's sensitivity to rounding is 1/conditioning (a near-symmetric shape has a nearly
    # non-unique frame). Well-conditioned shapes meet 1e-4 of the radius, every non-degenerate shape
    # meets the conditioning-scaled bound, and most shapes are well-conditioned.
    well = cond >= 0.05
    assert well.float().mean() >= (0.8 if group == "SE3" else 0.5), cond
    assert err[well].max() <= 1e-4, err[well].max()
    assert (err * cond)[~degenerate].max() <= 3e-5, (err * cond).max()


def test_e3_mirror_symmetric_shapes_fall_back_to_a_rotation_equivariant_frame(modelnet_test_shapes):
    # A mirror-symmetric cloud has no unique handedness: O(3) mode must flag it and fall back to the
    # proper frame, which stays exactly rotation-equivariant.
    half = modelnet_test_shapes[:8, :256].double()
    mirrored = torch.cat([half, half * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)], 1)  # (8, 512, 3)
    model = _model("E3", hidden=(8, 16, 32), num_points=None).double()
    with torch.no_grad():
        r = model(mirrored)
    assert r.degenerate.all() and (r.conditioning == 0).all()
    assert torch.allclose(torch.linalg.det(r.frame), torch.ones(8, dtype=torch.float64))
    assert_equivariant(model, mirrored, group="SE3", output="canonicalization", num_samples=4)
    assert not model(half).degenerate.any()  # the unsymmetrised halves are fine


@pytest.mark.slow
@pytest.mark.parametrize("group", ["SE3", "E3"])
@pytest.mark.parametrize("options", [dict(), dict(origin="learned"), dict(subsample="fps", num_points=128),
                                     dict(num_points=None, k=8)])
def test_frame_and_origin_equivariant(modelnet_test_shapes, group, options):
    model = _model(group, **options)
    assert_equivariant(model, modelnet_test_shapes[:8], group=group, output="canonicalization", num_samples=4)


@pytest.mark.parametrize("pseudovectors", [False, True])
def test_se3_frame_is_proper_and_keeps_chirality(modelnet_test_shapes, pseudovectors):
    model = _model("SE3", pseudovectors=pseudovectors).double()
    x = modelnet_test_shapes[:16].double()
    q, s = random_rigid_motion(16, "E3", generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        base, moved = model(x), model(apply_rigid(x, q, s))
    for r in (base, moved):
        assert torch.allclose(torch.linalg.det(r.frame), torch.ones(16, dtype=torch.float64), atol=1e-12)
    reflected = torch.linalg.det(q) < 0
    if not pseudovectors:
        # Plain VN layers are O(3)-equivariant: frame(Q x) = Q frame(x) F with F flipping the completing
        # axis (x for axes "zy") when det Q = -1, so a mirrored input gives the mirrored canonical cloud.
        diag = torch.ones(16, 3, dtype=torch.float64)
        diag[:, 0] = torch.linalg.det(q)
        flip = torch.diag_embed(diag)
        assert (moved.frame - q @ base.frame @ flip).abs().max() < 1e-9
        assert (moved.canonical - base.canonical @ flip).abs().max() < 1e-9
    else:  # cross products are not reflection-equivariant: a mirrored input gets another frame
        rotated = ~reflected
        assert (moved.frame[rotated] - (q @ base.frame)[rotated]).abs().max() < 1e-9
    reflected = torch.linalg.det(q) < 0
    assert reflected.any()
    # ...which is not the same cloud: reflections are not collapsed
    assert ((moved.canonical - base.canonical).abs().amax((1, 2))[reflected] > 1e-2).all()


def test_e3_frame_collapses_reflections(modelnet_test_shapes):
    model = _model("E3").double()
    x = modelnet_test_shapes[:16].double()
    q, s = random_rigid_motion(16, "E3", generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    with torch.no_grad():
        base, moved = model(x), model(apply_rigid(x, q, s))
    assert torch.allclose(torch.linalg.det(moved.frame), torch.linalg.det(q) * torch.linalg.det(base.frame))
    assert (moved.canonical - base.canonical).abs().max() < 1e-9


def test_result_helpers_round_trip(modelnet_test_shapes):
    model = _model("SE3", origin="learned").double()
    x = modelnet_test_shapes[:4].double()
    r = model(x)
    assert isinstance(r, Canonicalization)
    assert (r.points_from_canonical(r.canonical) - x).abs().max() < 1e-12
    assert (r.points_to_canonical(x) - r.canonical).abs().max() < 1e-12
    hom = torch.cat([x, torch.ones(4, x.shape[1], 1, dtype=x.dtype)], -1)
    assert ((hom @ r.rigid_transform().transpose(1, 2))[..., :3] - r.canonical).abs().max() < 1e-12


def test_gradients_are_finite_on_ordinary_clouds(modelnet_test_shapes):
    model = _model("SE3").train()
    x = modelnet_test_shapes[:8].clone().requires_grad_()
    r = model(x)
    (r.canonical.square().mean() + r.frame.sum()).backward()
    assert torch.isfinite(x.grad).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


DEGENERATE = DEGENERATE_CLOUDS


@pytest.mark.parametrize("group", ["SE3", "E3"])
@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_clouds_give_finite_flagged_frames(group, name):
    x = DEGENERATE[name]().unsqueeze(0).repeat(2, 1, 1).requires_grad_()
    r = _model(group)(x)
    assert r.degenerate.all(), name
    assert torch.isfinite(r.frame).all() and torch.isfinite(r.canonical).all()
    assert torch.equal(r.conditioning, torch.zeros(2))
    r.canonical.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_planar_cloud_is_degenerate_only_with_reflections():
    torch.manual_seed(0)
    plane = torch.cat([torch.randn(1, 200, 2), torch.zeros(1, 200, 1)], -1)
    assert not _model("SE3")(plane).degenerate.any()  # a proper frame of a plane is unique
    assert _model("E3")(plane).degenerate.all()  # the mirror through the plane is a symmetry


@pytest.mark.parametrize("bad, err, match", [
    (torch.zeros(2, 0, 3), ValueError, "empty point cloud"),
    (torch.zeros(0, 5, 3), ValueError, "empty batch"),
    (torch.tensor([[[0.0, float("nan"), 0.0]] * 4]), ValueError, "NaN or inf"),
    (torch.tensor([[[0.0, float("inf"), 0.0]] * 4]), ValueError, "NaN or inf"),
    (torch.zeros(5, 3), ValueError, "unsqueeze"),
    (torch.zeros(2, 5, 2), ValueError, r"\(B, N, 3\)"),
    (torch.zeros(2, 5, 3, dtype=torch.int64), TypeError, "floating dtype"),
    ([[0.0, 0.0, 0.0]], TypeError, "torch.Tensor"),
])
def test_bad_input_raises_clear_errors(bad, err, match):
    with pytest.raises(err, match=match):
        _model("SE3")(bad)


def test_bad_constructor_arguments():
    for kwargs, match in [(dict(group="SO3"), "group"), (dict(subsample="random"), "subsample"),
                          (dict(origin="median"), "origin"), (dict(num_points=0), "num_points")]:
        with pytest.raises(ValueError, match=match):
            VNCanonicalizer(**kwargs)


def test_equivariance_checker_catches_a_broken_model(modelnet_test_shapes):
    x = modelnet_test_shapes[:4]
    # raw points are equivariant "points" but not invariant
    assert equivariance_error(lambda p: p, x, output="points") < 1e-12
    with pytest.raises(AssertionError, match="exceeds"):
        assert_equivariant(lambda p: p, x, output="invariant")
    # a canonicalizer that forgets the translation is caught
    model = _model("SE3").double()
    broken = lambda p: p @ model(p).frame  # noqa: E731
    assert equivariance_error(broken, x, output="invariant") > 1e-2
    assert equivariance_error(broken, x, output="invariant", translate=False) < 1e-9
