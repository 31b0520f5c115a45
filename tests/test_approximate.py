"""The approximately equivariant VN canonicalizer: exact when its fixed vectors are zeroed, measurably
not exact when they are on, and the strict canonicalizer again in exact mode."""
import pytest
import torch

from pointcanon.core.actions import CANONICALIZATION
from pointcanon.core.equivariance import evaluate_equivariance
from pointcanon.measure import POINT_LAYER_ACTIONS, load_model, measure_point_model
from pointcanon.nn import CanonicalizedModel, PointNet, VNCanonicalizer
from pointcanon.nn.approximate import ApproximateVNCanonicalizer, FixedInputs
from pointcanon.testing import assert_equivariant, equivariance_error

SMALL = dict(hidden=(8, 16, 32), num_points=128)


def _approx(group="SE3", seed=0, **kw):
    torch.manual_seed(seed)
    return ApproximateVNCanonicalizer(group, **{**SMALL, **kw}).eval()


@pytest.mark.slow
@pytest.mark.parametrize("group", ["SE3", "E3"])
@pytest.mark.parametrize("options", [dict(), dict(origin="learned", num_fixed=2)])
def test_zeroed_fixed_inputs_are_exactly_equivariant(modelnet_test_shapes, group, options):
    model = _approx(group, exact=True, **options)
    assert model.exact
    assert_equivariant(model, modelnet_test_shapes[:8], group=group, output="canonicalization", num_samples=4, tol=1e-9)
    model.exact, model.fixed_scale = False, 0.0  # the dial at zero is the same model
    assert_equivariant(model, modelnet_test_shapes[:8], group=group, output="canonicalization", num_samples=4, tol=1e-9)


@pytest.mark.slow
def test_fixed_inputs_on_break_rotations_only_and_the_error_is_reported(modelnet_test_shapes):
    x = modelnet_test_shapes[:8]
    model = _approx()
    err = equivariance_error(model, x, group="SE3", output="canonicalization", num_samples=4)
    assert err > 1e-2
    # the fixed vectors do not move with a translation: canonical coordinates stay translation invariant
    assert_equivariant(model, x, group="none", output="canonicalization", num_samples=4)
    half = model.fixed_scale = 0.5
    assert 0 < equivariance_error(model, x, group="SE3", output="canonicalization", num_samples=4) < 10 * err
    assert model.fixed_scale == half
    # the evaluation API reports it, output and layer by layer: the layers before the fixed inputs stay exact
    model.fixed_scale = 1.0
    report = evaluate_equivariance(model, x, group="SO3", output_action=CANONICALIZATION,
                                   layer_actions=POINT_LAYER_ACTIONS, num_samples=2)
    assert report.output_error > 1e-2
    for layer in report.layers:
        if layer.name.startswith(("local", "point")):
            assert layer.measure >= 0.999, layer
    assert report["fuse.0"].relative_error > 0.1  # the fixed channels are where the symmetry breaks
    assert report["out"].measure < 0.99
    model.exact = True
    exact = evaluate_equivariance(model, x, group="SO3", output_action=CANONICALIZATION,
                                  layer_actions=POINT_LAYER_ACTIONS, num_samples=2)
    assert exact.output_error < 1e-9 and min(lay.measure for lay in exact.layers) >= 0.999


def test_exact_mode_is_the_strict_canonicalizer_with_the_same_weights(modelnet_test_shapes):
    approx = _approx(exact=True).double()
    strict = VNCanonicalizer("SE3", **SMALL).double().eval()
    state = {k.replace("fuse.1.", "fuse."): v for k, v in approx.state_dict().items() if not k.startswith("fuse.0.")}
    c = 2 * SMALL["hidden"][1]
    state["fuse.0.weight"] = state["fuse.0.weight"][:, :c]  # the columns of the fixed channels are unused
    strict.load_state_dict(state)
    x = modelnet_test_shapes[:8].double()
    with torch.no_grad():
        a, s = approx(x), strict(x)
    assert (a.frame - s.frame).abs().max() < 1e-12
    assert (a.canonical - s.canonical).abs().max() < 1e-12


def test_fixed_dropout_per_sample_and_no_rescaling():
    torch.manual_seed(0)
    layer = FixedInputs(3, dropout=0.5).train()
    h = torch.zeros(400, 2, 3, 5)
    out = layer(h)
    assert out.shape == (400, 5, 3, 5)
    fixed = out[:, 2:]  # (B, K, 3, M)
    kept = (fixed == layer.vectors.detach()[None, :, :, None]).flatten(1).all(1)
    dropped = (fixed == 0).flatten(1).all(1)
    assert (kept | dropped).all()  # all of a sample's vectors are kept, unscaled, or all dropped
    assert 0.4 < dropped.float().mean() < 0.6
    assert torch.equal(layer.eval()(h)[:, 2:], layer.vectors.detach()[None, :, :, None].expand(400, 3, 3, 5))
    assert torch.equal(FixedInputs(3, dropout=1.0).train()(h)[:, 2:], torch.zeros(400, 3, 3, 5))


def test_fixed_vectors_are_learned(modelnet_test_shapes):
    model = _approx().train()
    r = model(modelnet_test_shapes[:8])
    (r.frame[:, 2, 0] + r.canonical.square().mean()).sum().backward()
    assert model.fixed.vectors.grad is not None and model.fixed.vectors.grad.abs().sum() > 0
    assert model.symmetry_breaking() > 0


def test_approximate_model_checkpoint_is_measured(modelnet_test_shapes, tmp_path):
    from pointcanon.core.io import save_checkpoint
    from pointcanon.config import TrainConfig

    kwargs = {**SMALL, "num_fixed": 2, "fixed_dropout": 0.5}
    cfg = TrainConfig(canonicalizer="vn-approx", canonicalizer_kwargs=kwargs, backbone_kwargs={"width": 64})
    torch.manual_seed(0)
    model = CanonicalizedModel(ApproximateVNCanonicalizer(**kwargs), PointNet(10, width=64))
    save_checkpoint(tmp_path / "a.pt", {"config": cfg.__dict__, "model": model.state_dict(), "sizes": {"num_classes": 10}})
    loaded, _, _ = load_model(tmp_path / "a.pt")
    assert isinstance(loaded.canonicalizer, ApproximateVNCanonicalizer)
    x = modelnet_test_shapes[:4, :256]
    free = measure_point_model(loaded, x, num_samples=1, layers=["canonicalizer.out", "backbone.head.8"])
    assert free.output_error > 1e-4 and free["canonicalizer.out"].measure < 0.99
    loaded.canonicalizer.exact = True
    exact = measure_point_model(loaded, x, num_samples=1, layers=["canonicalizer.out", "backbone.head.8"])
    assert exact.output_error < 1e-9 and exact.mean() >= 0.999


def test_bad_arguments():
    for kwargs, match in [(dict(num_fixed=0), "num_fixed"), (dict(fixed_dropout=1.5), "fixed_dropout"),
                          (dict(fixed_init_std=-1.0), "fixed_init_std"), (dict(group="SO3"), "group")]:
        with pytest.raises(ValueError, match=match):
            ApproximateVNCanonicalizer(**kwargs)
    with pytest.raises(ValueError, match="fixed_scale"):
        _approx().fixed_scale = 2.0


def test_saving_and_loading_keeps_the_exact_switch(tmp_path):
    """`exact` and `fixed_scale` are buffers: a saved approximate model comes back in the mode it was saved
    in (they used to be plain attributes, lost on save), and .to(dtype) does not round them."""
    from pointcanon.core.io import load_checkpoint, save_checkpoint
    from pointcanon.nn.approximate import ApproximateVNCanonicalizer

    torch.manual_seed(0)
    saved = ApproximateVNCanonicalizer("SE3", num_fixed=2)
    saved.exact, saved.fixed_scale = True, 0.25
    save_checkpoint(tmp_path / "a.pt", {"model": saved.state_dict()})
    loaded = ApproximateVNCanonicalizer("SE3", num_fixed=2)
    assert not loaded.exact
    loaded.load_state_dict(load_checkpoint(tmp_path / "a.pt")["model"])
    assert loaded.exact and loaded.fixed_scale == 0.25
    loaded.double()
    assert loaded.exact and loaded.fixed_scale == 0.25
    x = torch.randn(2, 64, 3, dtype=torch.float64)
    assert torch.equal(loaded(x).frame, loaded(x).frame)
