"""Issue 3 of 8: a prior pulls the canonical frame of upright shapes towards the identity."""
import math

import pytest
import torch

from pointcanon.core import EmpiricalPrior, geodesic_angle, identity_prior, random_rotations, upright_prior
from pointcanon.core.priors import empirical_distribution
from pointcanon.datasets import SyntheticShapes
from pointcanon.tasks import Classification
from pointcanon.config import TrainConfig
from pointcanon.train import train

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def _mean_angle_deg(model, dataset):
    x, _, _ = Classification.collate(dataset, range(len(dataset)))
    with torch.no_grad():
        return geodesic_angle(model.canonicalizer(x).frame).mean().item() * 180 / math.pi


@pytest.mark.slow
def test_identity_prior_brings_upright_frames_within_10_degrees():
    # two synthetic classes (chair, desk), 256 points: 14 epochs of 15 steps
    data = dict(num_points=256, seed=3, num_classes=2)
    train_set, test_set = SyntheticShapes("train", num_samples=480, **data), SyntheticShapes("test", num_samples=64, **data)
    common = dict(dataset="synthetic", canonicalizer="vn", epochs=14, batch_size=32, num_points=256, lr=3e-3, seed=0,
                  eval_every=0, backbone_kwargs={"width": 32, "input_transform": False},
                  canonicalizer_kwargs={"hidden": (32, 64, 128), "num_points": None})
    with_prior, _ = train(TrainConfig(prior="identity", prior_weight=5.0, **common), train_set, progress=False,
                          log=lambda s: None)
    without, _ = train(TrainConfig(**{**common, "epochs": 2}), train_set, progress=False, log=lambda s: None)
    with_prior.eval(), without.eval()
    angle_prior, angle_free = _mean_angle_deg(with_prior, test_set), _mean_angle_deg(without, test_set)
    print(f"mean angle to identity on upright test shapes: prior {angle_prior:.1f} deg, none {angle_free:.1f} deg")
    assert angle_prior < 10
    assert angle_free > 30  # without the prior nothing pulls the frame to the identity (Haar mean: 126 deg)


def test_a_vn_canonicalizers_prior_loss_is_the_prior_on_its_frame():
    """Canonicalizer.prior_loss (what a training run adds): the named prior of the frame; "empirical" fitted
    to the run's rotation augmentation (zero on yaw-only frames for "z"); 0 for "none"."""
    from pointcanon.nn import VNCanonicalizer

    torch.manual_seed(0)
    canon = VNCanonicalizer("SE3").eval()
    x = torch.randn(4, 64, 3, generator=G(5))
    r = canon(x)
    assert torch.equal(canon.prior_loss(x, "identity", r), identity_prior(r.frame).mean())
    assert torch.equal(canon.prior_loss(x, "upright", r), upright_prior(r.frame).mean())
    assert canon.prior_loss(x, "none", r).item() == 0
    yaw = r.__class__(frame=random_rotations(4, "z", generator=G(6)), canonical=r.canonical)
    assert canon.prior_loss(x, "empirical", yaw, train_rotation="z") < 0.05
    assert torch.isclose(canon.prior_loss(x, "empirical", r, train_rotation="none"), canon.prior_loss(x, "identity", r))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_empirical_prior_is_zero_exactly_on_fitted_orientations_and_positive_elsewhere(dtype):
    fitted = random_rotations(32, "SO3", generator=G(1), dtype=torch.float64)
    prior = EmpiricalPrior(fitted)
    assert prior(fitted.to(dtype)).abs().max() < (1e-12 if dtype == torch.float64 else 1e-5)
    other = random_rotations(200, "SO3", generator=G(2), dtype=dtype)
    assert (prior(other) > 1e-3).all()
    # from the identity alone it is the identity prior
    assert torch.allclose(EmpiricalPrior(torch.eye(3)[None].double())(other.double()), identity_prior(other.double()))


def test_empirical_prior_of_yaw_augmentation_approaches_the_upright_prior():
    prior = EmpiricalPrior.from_sampler(lambda n, g: random_rotations(n, "z", generator=g, dtype=torch.float64), 720)
    yaw = random_rotations(100, "z", generator=G(3), dtype=torch.float64)
    assert prior(yaw).max() < 1e-2  # within ~3 deg of one of 720 random fitted yaws (4 (1 - cos a))
    tilted = random_rotations(100, "SO3", generator=G(4), dtype=torch.float64)
    up = upright_prior(tilted)
    assert (prior(tilted) >= up - 1e-9).all()  # a tilt costs at least its upright-prior value


def test_empirical_prior_rejects_non_rotations():
    with pytest.raises(ValueError, match="proper rotations"):
        EmpiricalPrior(torch.diag(torch.tensor([1.0, 1.0, -1.0]))[None])
    with pytest.raises(ValueError, match="proper rotations"):
        EmpiricalPrior(2 * torch.eye(3)[None])
    with pytest.raises(ValueError, match=r"\(M, 3, 3\)"):
        EmpiricalPrior(torch.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        EmpiricalPrior(torch.full((1, 3, 3), float("nan")))


def test_empirical_distribution_counts_orientations():
    p = empirical_distribution(torch.tensor([0, 0, 0, 1]), 4)
    assert torch.allclose(p, torch.tensor([0.75, 0.25, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(empirical_distribution(torch.tensor([0]), 2, smoothing=1.0), torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    with pytest.raises(ValueError, match="indices"):
        empirical_distribution(torch.tensor([4]), 4)
    with pytest.raises(ValueError, match="no orientations"):
        empirical_distribution(torch.tensor([], dtype=torch.long), 4)
