import math

import pytest
import torch
from e3nn import o3

from pointcanon.core import (cyclic_rotations, geodesic_angle, random_o3, random_rotations, random_so3,
                             rotation_about_axis)
from pointcanon.core.groups import cyclic_compose, cyclic_inverse

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def _orthogonality_error(r):
    return (r.transpose(-1, -2) @ r - torch.eye(3, dtype=r.dtype)).abs().max().item()


def test_so3_samples_are_proper_rotations():
    r = random_so3(1000, generator=G(), dtype=torch.float64)
    assert _orthogonality_error(r) < 1e-12
    assert torch.allclose(torch.linalg.det(r), torch.ones(1000, dtype=torch.float64))


def test_o3_samples_contain_both_components_equally():
    r = random_o3(4000, generator=G(), dtype=torch.float64)
    assert _orthogonality_error(r) < 1e-12
    det = torch.linalg.det(r)
    assert torch.allclose(det.abs(), torch.ones_like(det))
    assert abs((det < 0).double().mean().item() - 0.5) < 0.04  # 4000 draws: std 0.008


def test_so3_is_haar_against_e3nn_statistics():
    # Haar measure: E[R] = 0 and the rotation angle has density (1 - cos t) / pi, as e3nn's sampler.
    ours = random_so3(20000, generator=G(1), dtype=torch.float64)
    torch.manual_seed(1)
    theirs = o3.rand_matrix(20000, dtype=torch.float64)
    assert ours.mean(0).abs().max() < 0.02
    a, b = geodesic_angle(ours), geodesic_angle(theirs)
    assert abs(a.mean() - b.mean()) < 0.03
    assert abs(a.mean().item() - (math.pi / 2 + 2 / math.pi)) < 0.02  # E[angle] under Haar


def test_rotation_about_axis_fixes_axis_and_is_right_handed():
    for i, axis in enumerate("xyz"):
        r = rotation_about_axis(torch.tensor([0.3, 1.2]), axis, dtype=torch.float64)
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = 1
        assert torch.allclose(r @ e, e.expand(2, 3))
        nxt = torch.zeros(3, dtype=torch.float64)
        nxt[(i + 1) % 3] = 1
        # right-handed: the next axis turns towards the one after it
        assert (r @ nxt)[:, (i + 2) % 3].gt(0).all()
    z = random_rotations(100, "z", generator=G(), dtype=torch.float64)
    assert torch.allclose(z[:, 2], torch.tensor([0, 0, 1.0], dtype=torch.float64).expand(100, 3))


def test_geodesic_angle_matches_axis_angle_including_near_zero_and_pi():
    t = torch.tensor([0.0, 1e-7, 0.5, 2.0, math.pi - 1e-7, math.pi], dtype=torch.float64)
    r = rotation_about_axis(t, "y")
    q = random_so3(len(t), generator=G(), dtype=torch.float64)
    got = geodesic_angle(q, q @ r)  # conjugation-free: angle of r
    assert torch.allclose(got, t, atol=1e-12)


def test_cyclic_group_elements_compose():
    c8 = cyclic_rotations(8, dtype=torch.float64)
    for a in range(8):
        assert torch.allclose(c8[a] @ c8[cyclic_inverse(a, 8)], torch.eye(2, dtype=torch.float64), atol=1e-12)
        for b in range(8):
            assert torch.allclose(c8[a] @ c8[b], c8[cyclic_compose(a, b, 8)], atol=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_cyclic_order_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="order"):
        cyclic_rotations(bad)


def test_unknown_group_and_axis_are_rejected():
    with pytest.raises(ValueError, match="unknown group"):
        random_rotations(2, "SU2")
    with pytest.raises(ValueError, match="axis"):
        rotation_about_axis(0.1, "w")


def test_one_group_vocabulary_parsed_at_every_boundary():
    from pointcanon import VNCanonicalizer
    from pointcanon.core.actions import get_group
    from pointcanon.core.groups import GroupName
    from pointcanon.nn import CandidateCanonicalizer

    assert GroupName.parse("so3") is GroupName.SO3 and GroupName.parse("Z") is GroupName.Z
    assert GroupName.SE3.rotations is GroupName.SO3 and GroupName.E3.reflections and not GroupName.SO3.translations
    assert GroupName.SO3 == "SO3" and str(GroupName.E3) == "E3"
    # every entry point takes any spelling and stores the canonical one
    assert VNCanonicalizer("se3").hparams["group"] == "SE3"
    assert CandidateCanonicalizer("e3").hparams["group"] == "E3"
    assert get_group("so3").name == "SO3"
    torch.testing.assert_close(random_rotations(3, "so3", generator=torch.Generator().manual_seed(1)),
                               random_rotations(3, GroupName.SO3, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="unknown group 'SO2'"):
        GroupName.parse("SO2")
