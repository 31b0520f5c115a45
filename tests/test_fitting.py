"""pointcanon fit-canonicalizer (pointcanon.fitting, pointcanon.cli_fit): the shipped recipe as defaults and as
configs/canonicalizer_upright.json, every recipe file loads, bad values exit 2 before any data is read, the
installed package and existing files are never written, and a short fit on real shapes saves a loadable,
reproducible canonicalizer."""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
import torch

from pointcanon import fitting
from pointcanon.cli import main
from pointcanon.fitting import PACKAGE_DIR, FitConfig, build, check_fit_output
from pointcanon.models import DEFAULT_WEIGHTS, load_canonicalizer
from pointcanon.nn import CandidateCanonicalizer
from pointcanon.nn.candidates import POOLINGS

from conftest import MODELNET_HDF5, require

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.json"))


def _print_config(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["fit-canonicalizer", *args, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def no_data(monkeypatch):
    """Reading a dataset fails the test: the errors below must come before any work."""
    def read(*args):
        raise AssertionError("data was read")
    for name in fitting.UPRIGHT_DATASETS:
        monkeypatch.setitem(fitting.UPRIGHT_DATASETS, name, (read, "/nonexistent", "none"))


def test_defaults_are_the_shipped_recipe():
    shipped = load_canonicalizer(DEFAULT_WEIGHTS)
    cfg = FitConfig()
    assert build(cfg, cfg.views).hparams == shipped.hparams
    assert build(cfg).hparams == {**shipped.hparams, "views": 1}  # trained on one point subset
    assert typing.get_args(fitting.Pooling) == POOLINGS


def test_every_recipe_file_loads_and_upright_is_the_shipped_file(capsys):
    names = {p.name for p in CONFIGS}
    assert {"canonicalizer_upright.json", "canonicalizer_full.json", "canonicalizer_no_normals.json",
            "canonicalizer_shapenetpart.json"} <= names
    recipes = {}
    for path in CONFIGS:
        printed = _print_config(capsys, "--config", str(path))
        assert printed == json.loads(path.read_text()), f"{path.name}: not a complete recipe as --print-config writes"
        recipes[path.stem] = FitConfig(**printed)
    shipped = load_canonicalizer(DEFAULT_WEIGHTS)
    up = recipes["canonicalizer_upright"]
    assert build(up, up.views).hparams == shipped.hparams
    for key in ("kind", "prior", "steps", "batch_size", "lr", "seed", "min_points", "jitter", "threads"):
        assert getattr(up, key) == shipped.info[key], key
    assert [p["step"] for p in shipped.info["curve"]] == list(range(up.eval_every, up.steps + 1, up.eval_every))
    assert up.steps == 20000 and "20,000 steps" in (ROOT / "pointcanon" / "weights" / "README.md").read_text()
    full = recipes["canonicalizer_full"]
    assert full.prior == "identity" and full.init == "upright"
    assert build(full, full.views).hparams == load_canonicalizer(full.init).hparams  # its --init fits
    plain = recipes["canonicalizer_no_normals"]
    assert (plain.normal_k, plain.pooling, plain.views) == (0, "max", 4)
    assert recipes["canonicalizer_shapenetpart"].dataset == "shapenetpart"
    script = (ROOT / "scripts" / "exp_modelnet40.sh").read_text()
    assert "fit-canonicalizer" in script and "configs/canonicalizer_no_normals.json" in script


def test_flags_override_a_config_wherever_given(capsys, tmp_path):
    path = ROOT / "configs" / "canonicalizer_no_normals.json"
    assert _print_config(capsys, "--steps", "7", "--config", str(path))["steps"] == 7
    got = _print_config(capsys, "--config", str(path), "--refine", "--normal-k", "8", "--init", "none")
    assert (got["refine"], got["normal_k"], got["init"], got["pooling"]) == (True, 8, None, "max")
    assert _print_config(capsys, "--refine", "--no-refine")["refine"] is False
    threads = torch.get_num_threads()
    try:  # pointcanon --threads N: the fit's threads, unless the command's own flag says otherwise
        capsys.readouterr()
        assert main(["--threads", "1", "fit-canonicalizer", "--config", str(path), "--print-config"]) == 0
        assert json.loads(capsys.readouterr().out)["threads"] == 1
        assert main(["--threads", "1", "fit-canonicalizer", "--threads", "3", "--print-config"]) == 0
        assert json.loads(capsys.readouterr().out)["threads"] == 3
    finally:
        torch.set_num_threads(threads)
    partial = tmp_path / "partial.json"
    partial.write_text('{"steps": 5, "lr": 1}')
    got = _print_config(capsys, "--config", str(partial))
    assert got == dataclasses.asdict(FitConfig(steps=5, lr=1.0))


@pytest.mark.parametrize("args, named", [
    (["--steps", "0"], "--steps"), (["--steps", "x"], "--steps"), (["--batch-size", "1"], "--batch-size"),
    (["--lr", "0"], "--lr"), (["--jitter", "-1"], "--jitter"), (["--kind", "pca"], "--kind"),
    (["--pooling", "mean"], "--pooling"), (["--hidden", "8,x"], "--hidden"), (["--tilts", "up"], "--tilts"),
    (["--views", "0"], "--views"), (["--normal-k", "-1"], "--normal-k"), (["--bogus", "1"], "--bogus"),
    (["--config", "/nonexistent.json"], "--config"), (["--max-shapes", "0"], "--max-shapes"),
    (["--init", "upright", "--local-k", "0"], "local_k"), (["--init", "/nonexistent.pt"], "/nonexistent.pt"),
])
def test_bad_values_exit_2_before_any_work(no_data, tmp_path, capsys, args, named):
    out = tmp_path / "c.pt"
    assert main(["fit-canonicalizer", *args, "--out", str(out)]) == 2
    assert named in capsys.readouterr().err and not out.exists()


def test_never_writes_into_the_package_nor_over_a_file(no_data, tmp_path, capsys):
    before = DEFAULT_WEIGHTS.read_bytes()
    for out in (DEFAULT_WEIGHTS, PACKAGE_DIR / "new.pt", PACKAGE_DIR / "weights" / "sub" / "x.pt"):
        assert main(["fit-canonicalizer", "--out", str(out), "--overwrite"]) == 2
        assert "inside the installed package" in capsys.readouterr().err
    assert DEFAULT_WEIGHTS.read_bytes() == before
    assert not (PACKAGE_DIR / "new.pt").exists() and not (PACKAGE_DIR / "weights" / "sub").exists()
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"keep")
    assert main(["fit-canonicalizer", "--out", str(mine)]) == 2
    assert "--overwrite" in capsys.readouterr().err and mine.read_bytes() == b"keep"
    assert main(["fit-canonicalizer", "--out", str(tmp_path)]) == 2  # a folder
    with pytest.raises(ValueError, match="installed package"):
        check_fit_output(PACKAGE_DIR / ".." / "pointcanon" / "weights" / "upright_modelnet40.pt", overwrite=True)
    with pytest.raises(TypeError, match="FitConfig"):
        fitting.fit_canonicalizer({"steps": 1}, tmp_path / "x.pt")


@pytest.mark.slow
def test_a_short_fit_on_real_shapes_saves_a_loadable_reproducible_canonicalizer(tmp_path, capsys):
    root = require(MODELNET_HDF5)
    args = ["fit-canonicalizer", "--steps", "3", "--eval-every", "2", "--batch-size", "4", "--hidden", "8,16,32",
            "--min-points", "64", "--max-shapes", "12", "--threads", "1", "--data-root", str(root)]
    out = tmp_path / "c.pt"
    assert main([*args, "--out", str(out)]) == 0
    canon = load_canonicalizer(out)
    assert isinstance(canon, CandidateCanonicalizer) and canon.hparams["views"] == 2
    assert canon.hparams["hidden"] == (8, 16, 32) and not canon.training
    info = canon.info
    assert [p["step"] for p in info["curve"]] == [2, 3] and info["test"]["shapes"] == 12
    assert info["max_shapes"] == 12 and info["config"]["steps"] == 3 and info["steps"] == 3
    assert info["command"].startswith("pointcanon fit-canonicalizer --steps 3")
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 2 and "--overwrite" in capsys.readouterr().err
    threads = torch.get_num_threads()
    fitting.fit_canonicalizer(FitConfig(**info["config"]), out, overwrite=True, max_shapes=12, progress=False,
                              log=lambda s: None)  # on 1 thread (the recipe's), then the caller's again
    assert torch.get_num_threads() == threads
    again = load_canonicalizer(out)
    assert again.info["config"] == info["config"] and again.state_dict().keys() == canon.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(canon.state_dict().values(), again.state_dict().values()))
