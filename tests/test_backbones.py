import pytest
import torch
import torch.nn.functional as F

from pointcanon import CanonicalizedModel, VNCanonicalizer, build_backbone
from pointcanon.nn import DGCNN, EdgeConv, PointNet, knn
from pointcanon.testing import assert_equivariant


def test_knn_matches_brute_force_and_is_chunk_independent():
    torch.manual_seed(0)
    x = torch.randn(2, 300, 3, dtype=torch.float64)
    order = torch.cdist(x, x).argsort(-1)
    assert torch.equal(knn(x, 8), order[..., :8])
    assert torch.equal(knn(x, 8, chunk_size=7), order[..., :8])
    assert torch.equal(knn(x, 8, include_self=False), order[..., 1:9])
    assert knn(x[:, :5], 8).shape == (2, 5, 5)  # k clipped to N


def test_edgeconv_equals_the_concatenated_edge_feature_definition():
    torch.manual_seed(0)
    conv = EdgeConv(4, 6, k=5).double().eval()
    x = torch.randn(2, 4, 40, dtype=torch.float64)
    idx = knn(x.transpose(1, 2), 5)
    nbr = torch.stack([x[b][:, idx[b]] for b in range(2)])  # (B, C, N, k)
    edge = torch.cat([nbr - x.unsqueeze(-1), x.unsqueeze(-1).expand_as(nbr)], 1)
    want = F.leaky_relu(conv.norm(conv.conv(edge)), 0.2).amax(-1)
    assert (conv(x) - want).abs().max() < 1e-12


@pytest.mark.parametrize("name", ["pointnet", "dgcnn"])
def test_backbone_shapes(name):
    model = build_backbone(name, 7).eval()
    assert model(torch.randn(3, 64, 3)).shape == (3, 7)


def test_builder_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("pointnet++", 40)
    with pytest.raises(ValueError, match="num_classes"):
        PointNet(0)


@pytest.mark.slow
@pytest.mark.parametrize("name, n", [("pointnet", 1024), ("dgcnn", 256)])
@pytest.mark.parametrize("group", ["SE3", "E3"])
def test_canonicalized_backbones_are_exactly_invariant_on_real_shapes(modelnet_test_shapes, name, n, group):
    torch.manual_seed(0)
    model = CanonicalizedModel(VNCanonicalizer(group), build_backbone(name, 40)).eval()
    x = modelnet_test_shapes[:6, :n]
    assert_equivariant(model, x, group=group, output="invariant", num_samples=3)
    # while the backbone alone is not
    with pytest.raises(AssertionError):
        assert_equivariant(model.backbone, x, group=group, output="invariant", num_samples=1)


def test_canonicalized_model_returns_its_canonicalization():
    model = CanonicalizedModel(VNCanonicalizer(), DGCNN(5, k=4)).eval()
    x = torch.randn(2, 32, 3)
    logits, canon = model(x, return_canonicalization=True)
    assert logits.shape == (2, 5) and canon.frame.shape == (2, 3, 3)
    assert torch.equal(model(x), logits)
