import pytest
import torch

from pointcanon import CanonicalizedModel, VNCanonicalizer
from pointcanon.nn import build_segmenter
from pointcanon.testing import assert_equivariant


def _model(name, group, normals=True):
    torch.manual_seed(0)
    kw = {"k": 8} if name == "dgcnn" else {}
    return CanonicalizedModel(VNCanonicalizer(group), build_segmenter(name, 50, 16, predict_normals=normals, **kw)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name, n", [("pointnet", 1024), ("dgcnn", 256)])
@pytest.mark.parametrize("group", ["SE3", "E3"])
def test_part_logits_invariant_and_normals_equivariant_on_real_shapes(modelnet_test_shapes, name, n, group):
    model = _model(name, group)
    x = modelnet_test_shapes[:4, :n]
    cat = torch.tensor([0, 3, 7, 15])  # the extra input goes through the engine unchanged
    assert_equivariant(model, x, args=(cat,), group=group, output={"logits": "invariant", "normals": "vectors"},
                       num_samples=3)
    # the bare backbone is neither
    with pytest.raises(AssertionError):
        assert_equivariant(model.backbone, x, args=(cat,), group=group, output={"logits": "invariant"}, num_samples=1)
    with pytest.raises(ValueError, match="no keys"):
        assert_equivariant(model, x, args=(cat,), group=group, output={"parts": "invariant"}, num_samples=1)


def test_segmenter_output_shapes_and_category_errors():
    model = build_segmenter("pointnet", 50, 16, predict_normals=True).eval()
    out = model(torch.randn(2, 100, 3), torch.tensor([1, 2]))
    assert out["logits"].shape == (2, 100, 50) and out["normals"].shape == (2, 100, 3)
    assert torch.allclose(out["normals"].norm(dim=-1), torch.ones(2, 100), atol=1e-5)
    with pytest.raises(ValueError, match="category ids"):
        model(torch.randn(2, 10, 3), torch.tensor([0, 16]))
    with pytest.raises(ValueError, match="category must be"):
        model(torch.randn(2, 10, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="unknown segmentation backbone"):
        build_segmenter("pointnet2")
