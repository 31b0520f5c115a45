import pytest
import torch

from pointcanon.core import random_o3
from pointcanon.nn import VNBatchNorm, VNInvariant, VNLeakyReLU, VNLinear, VNLinearLeakyReLU, VNMaxPool, vn_mean_pool


def rotate_features(x, q):
    """Apply Q (B, 3, 3) to VN features (B, C, 3, ...)."""
    return torch.einsum("bij,bcj...->bci...", q, x)


LAYERS = {
    "linear": lambda: VNLinear(5, 7),
    "leaky_relu": lambda: VNLeakyReLU(5),
    "relu_shared": lambda: VNLeakyReLU(5, 0.0, share_direction=True),
    "batch_norm_train": lambda: VNBatchNorm(5).train(),
    "linear_leaky_relu": lambda: VNLinearLeakyReLU(5, 6),
}


@pytest.mark.parametrize("name", LAYERS)
def test_vn_layers_are_o3_equivariant(name):
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    x = torch.randn(4, 5, 3, 32, dtype=torch.float64)
    q = random_o3(4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = layer(rotate_features(x, q))
    want = rotate_features(layer(x), q)
    assert (got - want).abs().max() < 1e-12


def test_pooling_is_equivariant_and_invariant_features_are_invariant():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 3, 20, dtype=torch.float64)
    q = random_o3(3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pool = VNMaxPool(4).double()
    assert (pool(rotate_features(x, q)) - torch.einsum("bij,bcj->bci", q, pool(x))).abs().max() < 1e-12
    assert (vn_mean_pool(rotate_features(x, q)) - torch.einsum("bij,bcj->bci", q, vn_mean_pool(x))).abs().max() < 1e-12
    inv = VNInvariant(4).double()
    assert (inv(rotate_features(x, q)) - inv(x)).abs().max() < 1e-12


def test_leaky_relu_is_not_linear():
    # guard against a layer that is trivially equivariant because it does nothing
    torch.manual_seed(0)
    layer = VNLeakyReLU(3, 0.0).double()
    x = torch.randn(2, 3, 3, 50, dtype=torch.float64)
    assert (layer(x) + layer(-x)).abs().max() < 1e-12  # odd function...
    assert (layer(2 * x) - 2 * layer(x)).abs().max() < 1e-3  # ...positively homogeneous (up to eps)...
    assert (layer(x) - x).abs().max() > 0.1  # ...but it changes its input


def test_bad_channel_counts_are_rejected():
    with pytest.raises(ValueError, match="channels"):
        VNLinear(0, 3)
    with pytest.raises(ValueError, match="negative_slope"):
        VNLeakyReLU(3, 1.5)
