"""pointcanon.registry is the one list of names: the command line offers exactly its keys, every entry
builds, the "upright" preset is the shipped weights' recipe, and the top-level names a newcomer needs
import from ``pointcanon``."""
import argparse
from pathlib import Path

import pytest
import torch

import pointcanon
from pointcanon import registry
from pointcanon.cli import build_parser
from pointcanon.cliconfig import build_train_parser
from pointcanon.config import TrainConfig
from pointcanon.core.io import safe_load
from pointcanon.models import CANONICALIZER_CLASSES, DEFAULT_WEIGHTS, build_model
from pointcanon.nn import CandidateCanonicalizer, CanonicalizedModel
from pointcanon.options import GROUPS

ROOT = Path(__file__).resolve().parents[1]


def _choices(command: str) -> dict[str, tuple]:
    """``--flag -> choices`` of a subcommand of ``pointcanon`` (train / adapt: as their help shows them)."""
    if command in ("train", "adapt"):
        parser = build_train_parser(adapt=command == "adapt")
        return {a.option_strings[0]: tuple(a.metavar[1:-1].split(",")) for a in parser._actions
                if a.option_strings and str(a.metavar).startswith("{")}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.option_strings[0]: tuple(a.choices) for a in sub.choices[command]._actions
            if a.option_strings and a.choices is not None}


def test_the_command_line_offers_the_registry_keys():
    train = _choices("train")
    assert train["--canonicalizer"] == tuple(registry.CANONICALIZERS)
    assert train["--backbone"] == tuple(registry.BACKBONES)
    assert train["--dataset"] == tuple(registry.DATASETS)
    assert _choices("adapt")["--canonicalizer"] == tuple(registry.CANONICALIZERS)
    assert _choices("eval")["--dataset"] == tuple(registry.DATASETS)
    assert _choices("measure")["--dataset"] == tuple(k for k, c in registry.DATASETS.items() if c.task == "cls")


def test_the_option_groups_and_canonicalizer_files_read_the_registry():
    assert list(GROUPS["canonicalizer"]) == [k for k, c in registry.CANONICALIZERS.items() if c is not None]
    assert set(GROUPS["dataset"].items()) == set(registry.DATASETS.items())
    assert set(GROUPS["backbone"]) == {f"{k} ({t})" for k in registry.BACKBONES for t in ("cls", "partseg")}
    assert set(registry.SEGMENTERS) == set(registry.BACKBONES)
    assert set(CANONICALIZER_CLASSES.values()) <= set(registry.CANONICALIZERS.values())
    assert not set(registry.PRESETS) & set(registry.CANONICALIZERS)  # a name means one thing


@pytest.mark.parametrize("name", list(registry.CANONICALIZERS) + list(registry.PRESETS))
def test_each_canonicalizer_and_preset_builds(name):
    canon = registry.build_canonicalizer(name)
    if name == "none":
        assert canon is None
        return
    c = canon.eval()(torch.randn(2, 64, 3))
    assert c.frame.shape == (2, 3, 3) and torch.isfinite(c.canonical).all()


@pytest.mark.parametrize("name", list(registry.CANONICALIZERS))
def test_each_canonicalizer_kind_builds_a_model_from_a_config(name):
    model = build_model(TrainConfig(canonicalizer=name), 4).eval()
    assert isinstance(model, CanonicalizedModel) == (name != "none")
    assert model(torch.randn(2, 64, 3)).shape == (2, 4)


@pytest.mark.parametrize("name", list(registry.BACKBONES))
def test_each_backbone_builds_for_both_tasks(name):
    assert registry.BACKBONES[name](num_classes=3).eval()(torch.randn(2, 32, 3)).shape == (2, 3)
    seg = registry.SEGMENTERS[name](num_parts=5, num_categories=2).eval()
    logits = seg(torch.randn(2, 32, 3), torch.tensor([0, 1]))["logits"]
    assert logits.shape == (2, 32, 5)  # (B, N, parts)


@pytest.mark.parametrize("name", list(registry.DATASETS))
def test_each_dataset_is_a_class_with_a_task(name):
    cls = registry.DATASETS[name]
    assert isinstance(cls, type) and cls.task in ("cls", "partseg")
    if name in ("synthetic", "posed"):  # generated in memory: build them
        from pointcanon.datasets import build_dataset

        assert isinstance(build_dataset(name, None, "test", 32), cls)


def test_the_upright_preset_is_the_shipped_recipe():
    stored = safe_load(DEFAULT_WEIGHTS, "canonicalizer file")
    kind, options = registry.PRESETS["upright"]
    assert CANONICALIZER_CLASSES[stored["class"]] is registry.CANONICALIZERS[kind]
    built = registry.build_canonicalizer("upright")
    assert {k: built.hparams[k] for k in stored["hparams"]} == stored["hparams"]
    assert built.hparams == pointcanon.load_default_canonicalizer().hparams
    assert registry.build_canonicalizer("upright", views=1).hparams["views"] == 1  # overrides win
    # the class defaults are the recipe: a bare CandidateCanonicalizer() takes the shipped weights and gives
    # the shipped frames
    assert options == {}
    shipped = pointcanon.load_default_canonicalizer()
    bare = CandidateCanonicalizer()
    assert bare.hparams == shipped.hparams
    bare.load_state_dict(shipped.state_dict())
    x = torch.randn(3, 300, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(bare.eval()(x).frame, shipped(x).frame)


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown canonicalizer 'upside'.*'candidate'.*'upright'"):
        registry.build_canonicalizer("upside")
    with pytest.raises(ValueError, match="takes no options"):
        registry.build_canonicalizer("none", views=2)


def test_top_level_imports():
    from pointcanon import build_canonicalizer, load_canonicalizer, load_default_canonicalizer
    from pointcanon import mesh

    assert mesh.load_default_canonicalizer is load_default_canonicalizer  # the old names stay as aliases
    assert mesh.load_canonicalizer is load_canonicalizer
    assert build_canonicalizer is registry.build_canonicalizer
    assert isinstance(load_canonicalizer(DEFAULT_WEIGHTS), CandidateCanonicalizer)


def test_scripts_import_the_package_not_each_other():
    for path in sorted((ROOT / "scripts").glob("*.py")):
        text = path.read_text()
        assert "sys.path.insert" not in text, path.name
        assert "from train_upright_canonicalizer import" not in text, path.name


TOY = '''

class ToyCanonicalizer(Canonicalizer):
    """Centroid origin, identity frame (a registration example, not equivariant).

    Args:
        group: the group name (kept for the file format).
        shift: added to the canonical coordinates.
    """

    def __init__(self, group: str = "SE3", *, shift: float = 0.0):
        super().__init__()
        self.group, self.shift = group, shift
        self.hparams = {"group": group, "shift": shift}
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, batch=None):
        origin = x.mean(1)
        frame = torch.eye(3, dtype=x.dtype).expand(len(x), 3, 3)
        return Canonicalization(frame=frame, origin=origin, canonical=x - origin[:, None] + self.shift + self.bias)


CANONICALIZERS["toy"] = ToyCanonicalizer
'''


@pytest.mark.slow
def test_a_new_canonicalizer_is_one_entry_in_the_registry_file(tmp_path):
    """Adding a kind touches pointcanon/registry.py only: in a copy of the package whose registry.py alone
    gains a toy class and its entry, the command line offers it, its constructor's options become
    --canonicalizer.NAME flags, and a run trains and evaluates with it."""
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "pkg"
    shutil.copytree(ROOT / "pointcanon", copy / "pointcanon", ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    reg = copy / "pointcanon" / "registry.py"
    text = reg.read_text()
    text = text.replace("from torch import nn\n", "import torch\nfrom torch import nn\n\nfrom .core.result import "
                        "Canonicalization\nfrom .nn.canonicalizer import Canonicalizer\n", 1)
    reg.write_text(text + TOY)
    run = [sys.executable, "-m", "pointcanon.cli", "--threads", "1", "train", "--dataset", "synthetic",
           "--canonicalizer", "toy", "--canonicalizer.shift", "0.5", "--epochs", "1", "--max-shapes", "16",
           "--batch-size", "8", "--num-points", "64", "--backbone.width", "16", "--dataset.num_samples", "32"]
    env = {"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    shown = subprocess.run(run + ["--print-config"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert '"canonicalizer": "toy"' in shown.stdout and '"shift": 0.5' in shown.stdout
    trained = subprocess.run(run + ["--out", str(tmp_path / "run")], cwd=tmp_path, env=env, capture_output=True,
                             text=True)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "run" / "eval.json").is_file()
    bad = [("toy2" if a == "toy" else a) for a in run]
    refused = subprocess.run(bad + ["--print-config"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "toy" in refused.stderr
