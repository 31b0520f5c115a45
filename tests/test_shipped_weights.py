"""Shipped canonicalizers by name: load_canonicalizer("upright"), --canonicalizer-weights upright|shipped."""
import json

import pytest
import torch

from pointcanon import load_canonicalizer
from pointcanon.cli import main
from pointcanon.models import DEFAULT_WEIGHTS, SHIPPED_CANONICALIZERS, canonicalizer_path


def test_every_shipped_name_loads_and_shipped_is_an_alias_of_upright():
    assert canonicalizer_path("shipped") == canonicalizer_path("upright") == DEFAULT_WEIGHTS
    for name, path in SHIPPED_CANONICALIZERS.items():
        assert path.is_file(), name
        a, b = load_canonicalizer(name), load_canonicalizer(path)
        assert a.hparams == b.hparams
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_an_unknown_name_is_a_missing_file_not_a_silent_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="uprite"):
        load_canonicalizer("uprite")


@pytest.mark.parametrize("name", ["upright", "shipped"])
def test_the_cli_takes_the_names(name, capsys):
    assert main(["train", "--dataset", "synthetic", "--canonicalizer-weights", name, "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["canonicalizer"] == "candidate" and cfg["canonicalizer_weights"] == str(DEFAULT_WEIGHTS.resolve())


def test_a_checkpoint_saved_with_the_old_candidate_defaults_still_loads(tmp_path):
    """Runs of `--canonicalizer candidate` without options, saved before the class defaults became the
    shipped recipe, stored no options: they load with the old defaults."""
    import dataclasses

    from pointcanon.core.io import FORMAT, save_checkpoint
    from pointcanon.models import LEGACY_CANDIDATE_DEFAULTS, build_model, load_model
    from trainkit import small_config

    old = small_config(canonicalizer="candidate", canonicalizer_kwargs=dict(LEGACY_CANDIDATE_DEFAULTS))
    model = build_model(old, {"num_classes": 2})
    saved = dataclasses.replace(old, canonicalizer_kwargs={})  # what such a run stored
    save_checkpoint(tmp_path / "old.pt", {"config": dataclasses.asdict(saved), "model": model.state_dict(),
                                          "sizes": {"num_classes": 2}})
    assert FORMAT
    loaded, cfg, _ = load_model(tmp_path / "old.pt")
    assert loaded.canonicalizer.hparams == model.canonicalizer.hparams
    assert cfg.canonicalizer_kwargs == LEGACY_CANDIDATE_DEFAULTS


def test_the_full_frame_file_is_the_upright_one_with_a_front_scorer_and_stays_exact(modelnet_test_shapes):
    """`full` = the shipped up-axis scorer (bit-identical weights) + a front scorer over 12 turns; in float32 every
    unflagged real shape's canonical cloud moves by <= 1e-4 of its radius under random rigid motions."""
    from conftest import per_shape_canonical_errors

    full, upright = load_canonicalizer("full"), load_canonicalizer("upright")
    assert full.hparams["front_turns"] == 12 and full.hparams["front"] == (32, 64, 128)
    assert {k: v for k, v in full.hparams.items() if not k.startswith("front")} == upright.hparams
    shared = upright.state_dict()
    assert all(torch.equal(v, shared[k]) for k, v in full.state_dict().items() if not k.startswith("front_"))
    err, _, degenerate = per_shape_canonical_errors(full, modelnet_test_shapes[:16], "SE3", torch.float32, 10, seed=7)
    assert degenerate.float().mean() <= 0.1
    assert err[~degenerate].max() <= 1e-4, err[~degenerate].max()


def test_the_cli_takes_full(capsys):
    assert main(["train", "--dataset", "synthetic", "--canonicalizer-weights", "full", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["canonicalizer_kwargs"]["front_turns"] == 12
    assert cfg["canonicalizer_weights"] == str(SHIPPED_CANONICALIZERS["full"].resolve())
