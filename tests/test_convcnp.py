"""The 1-D ConvCNP: exact translation equivariance (whole grid steps) of the strict model and of the
approximate one with its fixed inputs zeroed; the fixed inputs really break it; the switch is saved."""
from __future__ import annotations

import pytest
import torch

from pointcanon.datasets.gp1d import sample_tasks
from pointcanon.nn.convcnp import ConvCNP1d, gaussian_log_likelihood


def _tasks(dtype=torch.float64):
    t = sample_tasks(4, generator=torch.Generator().manual_seed(0), domain=(-1.0, 1.0), dtype=dtype)
    return t["xc"], t["yc"], t["xt"], t["mask"]


def _shift_error(model, steps: int) -> float:
    xc, yc, xt, mask = _tasks()
    s = steps * model.step
    with torch.no_grad():
        m0, s0 = model(xc, yc, xt, mask)
        m1, s1 = model(xc + s, yc, xt + s, mask)
    return max((m1 - m0).abs().max().item(), (s1 - s0).abs().max().item())


@pytest.mark.parametrize("mode", ["strict", "approximate"])
@pytest.mark.parametrize("steps", [1, 7, -12])
def test_exactly_translation_equivariant_by_whole_grid_steps(mode, steps):
    torch.manual_seed(0)
    model = ConvCNP1d(mode).double().eval()
    if mode == "approximate":
        model.exact = True
    assert _shift_error(model, steps) <= 1e-9


@pytest.mark.parametrize("mode", ["approximate", "non-equivariant"])
def test_position_information_breaks_equivariance(mode):
    """The check above would catch a model that uses absolute position."""
    torch.manual_seed(0)
    model = ConvCNP1d(mode).double().eval()
    assert _shift_error(model, 7) > 1e-4


def test_exact_switch_is_saved_and_dropout_is_per_task(tmp_path):
    from pointcanon.core.io import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = ConvCNP1d("approximate", fixed_dropout=0.5)
    model.exact = True
    save_checkpoint(tmp_path / "m.pt", {"model": model.state_dict()})
    loaded = ConvCNP1d("approximate", fixed_dropout=0.5)
    loaded.load_state_dict(load_checkpoint(tmp_path / "m.pt")["model"])
    assert loaded.exact
    h = torch.zeros(400, 2, 161)
    loaded.exact = False
    out = loaded.fixed.train()(h)[:, 2:]
    kept = out.abs().sum((1, 2)) > 0
    assert 0.35 < kept.float().mean() < 0.65  # about half the tasks keep their fixed inputs
    with pytest.raises(ValueError, match="only an approximate"):
        ConvCNP1d("strict").exact = True


def test_bad_inputs_raise_clear_errors():
    model = ConvCNP1d("strict")
    xc, yc, xt, mask = _tasks(torch.float32)
    with pytest.raises(ValueError, match="NaN"):
        model(xc, yc * float("nan"), xt, mask)
    with pytest.raises(TypeError, match="floating"):
        model(xc.long(), yc, xt, mask)
    with pytest.raises(ValueError, match="alike"):
        model(xc, yc[:, :3], xt, mask)
    with pytest.raises(ValueError, match="mode"):
        ConvCNP1d("equivariant")


@pytest.mark.slow
def test_training_reduces_the_loss():
    torch.manual_seed(0)
    model = ConvCNP1d("strict", channels=16, layers=3)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(1)
    test = sample_tasks(64, generator=torch.Generator().manual_seed(2))
    before = gaussian_log_likelihood(test["yt"], *model(test["xc"], test["yc"], test["xt"], test["mask"])).mean()
    for _ in range(60):
        b = sample_tasks(16, generator=g)
        loss = -gaussian_log_likelihood(b["yt"], *model(b["xc"], b["yc"], b["xt"], b["mask"])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = gaussian_log_likelihood(test["yt"], *model(test["xc"], test["yc"], test["xt"], test["mask"])).mean()
    assert after > before + 0.2
