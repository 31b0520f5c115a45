"""The learned-equivariance measure (Bruintjes et al. 2023): exactly equivariant models score 1 in every
layer, plain ones clearly less, channel permutations count, bad input is refused; `pointcanon measure`."""
import json

import h5py
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import MODELNET_HDF5, require
from pointcanon.core.io import save_checkpoint
from pointcanon.core.actions import INVARIANT, VN_FEATURES, point_group
from pointcanon.core.equivariance import (channel_correlations, evaluate_equivariance, image_layer_actions,
                                          learned_equivariance, select_layers)
from pointcanon.measure import POINT_LAYER_ACTIONS, measure_point_model, run_measure
from pointcanon.nn import CanonicalizedModel, PointNet, VNCanonicalizer
from pointcanon.nn.vn import VNLinear, VNLinearLeakyReLU, VNMaxPool

# ---------------------------------------------------------------------------------------------- images, C4


class LiftingConv(nn.Module):
    """Channel ``4 o + k`` correlates with ``rot90(psi_o, k)``: rotating the input by 90 degrees rotates
    the maps and shifts the channels cyclically within each group of 4 (an equivariance that permutes
    channels)."""

    def __init__(self, cin, cout, size=5):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, size, size) / size)

    def forward(self, x):
        w = torch.stack([torch.rot90(self.weight, k, dims=(-2, -1)) for k in range(4)], 1)  # (O, 4, I, s, s)
        return F.conv2d(x, w.flatten(0, 1), padding=self.weight.shape[-1] // 2)


class OrientationMaxPool(nn.Module):
    def forward(self, x):  # (B, 4 O, H, W) -> (B, O, H, W), rotation-equivariant, channel order kept
        return x.unflatten(1, (-1, 4)).amax(2)


class SymmetricConv(nn.Conv2d):
    """A convolution whose filters are averaged over their 4 rotations: C4-equivariant channel by channel."""

    def forward(self, x):
        w = sum(torch.rot90(self.weight, k, dims=(-2, -1)) for k in range(4)) / 4
        return F.conv2d(x, w, self.bias, padding=self.padding)


def _cnn(equivariant: bool) -> nn.Sequential:
    torch.manual_seed(0)
    first = LiftingConv(3, 4) if equivariant else nn.Conv2d(3, 16, 5, padding=2, bias=False)
    pool = OrientationMaxPool() if equivariant else nn.MaxPool2d(3, 1, 1)
    conv = (SymmetricConv if equivariant else nn.Conv2d)(4 if equivariant else 16, 8, 3, padding=1)
    return nn.Sequential(first, nn.ReLU(), pool, conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, 17, 17, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_c4_equivariant_cnn_scores_one_in_every_layer(images):
    report = evaluate_equivariance(_cnn(True), images, group="C4", layer_actions=image_layer_actions)
    assert report.num_elements == 3 and len(report.layers) == 8
    assert report.output_error < 1e-9
    for layer in report.layers:
        assert layer.measure >= 0.999, layer


def test_channel_permuting_equivariance_counts_only_with_channel_matching(images):
    report = evaluate_equivariance(_cnn(True), images, group="C4", layer_actions=image_layer_actions, layers=["0", "2"])
    lifting, pooled = report["0"], report["2"]
    assert lifting.measure >= 0.999  # every channel has its rotated copy elsewhere in the layer...
    assert lifting.same_channel < 0.5  # ...but not in the same place
    assert lifting.relative_error > 0.5  # a channel-preserving error sees no equivariance either
    assert pooled.measure >= 0.999 and pooled.same_channel >= 0.999  # pooling over orientations undoes the shift


def test_plain_cnn_scores_clearly_less(images):
    report = evaluate_equivariance(_cnn(False), images, group="C4", layer_actions=image_layer_actions)
    assert report.mean("measure") < 0.85, report.table()
    assert min(lay.measure for lay in report.layers) < 0.7, report.table()
    assert report.output_error > 1e-3


def test_pairwise_measure_properties():
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(3, 6, 50, generator=gen, dtype=torch.float64)
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    assert learned_equivariance(t[:, perm], t) == pytest.approx(1, abs=1e-12)
    assert learned_equivariance(t[:, perm], t, channel_match="same") < 0.5
    # Pearson for scalars: any per-channel scale > 0 and offset is equivariance too
    assert learned_equivariance(3 * t + 2, t, channel_match="same") == pytest.approx(1, abs=1e-12)
    assert learned_equivariance(-t, t) < 0.5
    # vectors are not centred: a constant, symmetry-breaking vector is seen
    v = torch.randn(3, 4, 3, 50, generator=gen, dtype=torch.float64)
    shifted = v + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)[:, None]
    assert learned_equivariance(shifted, v, component_dims=1) < 0.95
    assert learned_equivariance(2 * v, v, component_dims=1) == pytest.approx(1, abs=1e-12)
    # per sample: one matrix per sample
    rho, valid = channel_correlations(t, t, per_sample=True)
    assert rho.shape == (3, 6, 6) and valid.all()


def test_constant_channels_are_left_out():
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(4, 5, 30, generator=gen, dtype=torch.float64)
    t[:, 1] = 0.0  # a dead channel
    rho, valid = channel_correlations(t.clone(), t)
    assert valid[0].tolist() == [True, False, True, True, True]
    assert learned_equivariance(t.clone(), t) == pytest.approx(1, abs=1e-12)
    assert torch.isnan(torch.tensor(learned_equivariance(torch.zeros(4, 2, 3), torch.zeros(4, 2, 3))))


# ------------------------------------------------------------------------------------------- point clouds


def _vn_stack():
    torch.manual_seed(0)
    return nn.Sequential(VNLinearLeakyReLU(1, 8), VNLinearLeakyReLU(8, 16), VNLinear(16, 6), VNMaxPool(6)).eval()


@pytest.mark.parametrize("group", ["SO3", "O3"])
def test_vn_stack_scores_one_in_every_layer(modelnet_test_shapes, group):
    x = modelnet_test_shapes[:4, :256].transpose(1, 2).unsqueeze(1)  # (B, 1, 3, N)
    report = evaluate_equivariance(_vn_stack(), x, group=point_group(group), input_action=VN_FEATURES,
                                   output_action=VN_FEATURES, layer_actions=POINT_LAYER_ACTIONS, num_samples=3)
    assert report.output_error < 1e-9
    assert {lay.action for lay in report.layers} == {"vn", "invariant"}  # lengths inside VNBatchNorm are invariant
    for layer in report.layers:
        assert layer.measure >= 0.999 and layer.same_channel >= 0.999, layer


def _canonicalized(seed=0):
    torch.manual_seed(seed)
    model = CanonicalizedModel(VNCanonicalizer(hidden=(8, 16, 32), num_points=128), PointNet(10, width=64))
    with torch.no_grad():  # a trained T-Net is not constant (its last layer is zero at initialisation)
        model.backbone.tnet.head[-1].weight.normal_(0, 0.01)
    return model.eval()


def test_canonicalized_model_scores_one_in_every_layer(modelnet_test_shapes):
    report = measure_point_model(_canonicalized(), modelnet_test_shapes[:6, :256], num_samples=2)
    assert report.output_error < 1e-9
    names = [lay.name for lay in report.layers]
    assert any(n.startswith("canonicalizer.") for n in names) and any(n.startswith("backbone.") for n in names)
    for layer in report.layers:
        assert layer.measure >= 0.999, layer
        assert layer.relative_error < 1e-9, layer


def _labels(n):
    with h5py.File(require(MODELNET_HDF5) / "ply_data_test0.h5", "r") as f:
        return torch.from_numpy(f["label"][:n]).long().flatten()


@pytest.mark.slow
def test_plain_pointnet_scores_clearly_less_at_init_and_after_training(modelnet_test_shapes):
    x = modelnet_test_shapes[:32, :128]
    torch.manual_seed(0)
    model = PointNet(40, width=64, input_transform=False)
    at_init = measure_point_model(model, x[:6], num_samples=2)
    y = _labels(len(x))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(10):  # a short upright training
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    trained = measure_point_model(model, x[:6], num_samples=2)
    for report in (at_init, trained):
        assert report.mean("measure") < 0.9, report.table()
        assert min(lay.measure for lay in report.layers) < 0.8, report.table()
        assert report.output_error > 1e-3
        assert report.mean("same_channel") < report.mean("measure")


def test_bad_input_raises_clear_errors(modelnet_test_shapes):
    model, x = _canonicalized(), modelnet_test_shapes[:4, :256]
    with pytest.raises(ValueError, match="unknown layer names"):
        measure_point_model(model, x, layers=["backbone.nope"])
    with pytest.raises(ValueError, match="differ in shape"):
        channel_correlations(torch.zeros(2, 3, 5), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="channel_match"):
        learned_equivariance(torch.zeros(2, 3, 5), torch.zeros(2, 3, 5), channel_match="best")
    with pytest.raises(ValueError, match="unknown group"):
        evaluate_equivariance(model, x, group="SU2")
    with pytest.raises(ValueError, match="at least 2"):
        channel_correlations(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="vector-neuron features"):  # per-point scalars given the VN action
        evaluate_equivariance(model, x, layer_actions=VN_FEATURES, layers=["backbone.features.0"])
    with pytest.raises(ValueError, match="no action given"):
        evaluate_equivariance(model, x, layer_actions={"backbone.features.0": INVARIANT},
                              layers=["backbone.features.0", "backbone.features.1"])
    with pytest.raises(ValueError, match="num_samples"):
        evaluate_equivariance(model, x, num_samples=0)
    assert "backbone" in select_layers(model) and "" not in select_layers(model)


@pytest.mark.slow
def test_measure_command_writes_table_plot_and_json(modelnet_test_shapes, tmp_path, capsys):
    from pointcanon.cli import main
    from pointcanon.config import TrainConfig

    cfg = TrainConfig(canonicalizer="vn", canonicalizer_kwargs={"hidden": (8, 16, 32), "num_points": 128},
                      backbone_kwargs={"width": 64})
    model = _canonicalized()
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, {"config": cfg.__dict__, "model": model.state_dict(), "sizes": {"num_classes": 10}})
    pts = tmp_path / "clouds.pt"
    torch.save(modelnet_test_shapes[:4, :256].clone(), pts)
    assert main(["measure", "--checkpoint", str(ckpt), "--points", str(pts), "--num-samples", "1"]) == 0
    out = capsys.readouterr().out
    assert "backbone.features.0" in out and "mean measure 1.0000" in out
    png, js = tmp_path / "last.measure.png", tmp_path / "last.measure.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["output_error"] < 1e-9 and min(lay["measure"] for lay in data["layers"]) >= 0.999
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically
    before = js.read_bytes()  # an existing output: refused before any work, replaced only with overwrite
    with pytest.raises(ValueError, match="--overwrite"):
        run_measure(ckpt, points=modelnet_test_shapes[:4, :256], log=lambda *a: None)
    assert js.read_bytes() == before
    with pytest.raises(ValueError, match="approximate canonicalizer"):
        run_measure(ckpt, points=modelnet_test_shapes[:4, :256], exact=True, overwrite=True, log=lambda *a: None)
    assert main(["measure", "--checkpoint", str(tmp_path / "missing.pt"), "--points", str(pts)]) == 2
