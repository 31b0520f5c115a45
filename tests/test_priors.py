import pytest
import torch

from pointcanon.core import (discrete_prior, identity_prior, random_rotations, random_so3, rotation_about_axis,
                             upright_prior)

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def test_identity_prior_is_zero_exactly_at_identity_and_positive_elsewhere():
    eye = torch.eye(3, dtype=torch.float64).expand(4, 3, 3)
    assert torch.equal(identity_prior(eye), torch.zeros(4, dtype=torch.float64))
    r = random_so3(500, generator=G(), dtype=torch.float64)
    assert (identity_prior(r) > 0).all()
    # for rotations ||R - I||^2 = 2 (3 - tr R) = 4 (1 - cos angle)
    assert torch.allclose(identity_prior(r), 2 * (3 - r.diagonal(dim1=1, dim2=2).sum(-1)))


def test_upright_prior_ignores_yaw_and_penalises_tilt():
    for axis in "xyz":
        yaw = random_rotations(200, "z", up_axis=axis, generator=G(), dtype=torch.float64)
        assert upright_prior(yaw, axis).abs().max() < 1e-24
    tilt = rotation_about_axis(torch.linspace(0.01, 3.0, 50, dtype=torch.float64), "x")
    p = upright_prior(tilt, "z")
    assert (p > 0).all() and (p.diff() > 0).all()  # grows with the tilt angle


def test_discrete_prior_is_kl_to_target():
    logits = torch.tensor([[10.0, -10.0, -10.0, -10.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    loss = discrete_prior(logits)  # target: identity element
    assert loss[0] < 1e-7 and torch.allclose(loss[1], torch.log(torch.tensor(4.0, dtype=torch.float64)))
    target = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    assert discrete_prior(logits[1:], target).abs().max() < 1e-12  # uniform logits match uniform target
    assert (discrete_prior(logits[:1], target) > 0).all()


def test_priors_reject_bad_shapes_and_targets():
    with pytest.raises(ValueError, match="frame"):
        identity_prior(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="probability"):
        discrete_prior(torch.zeros(2, 4), torch.tensor([0.5, 0.5, 0.5, 0.5]))
