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
