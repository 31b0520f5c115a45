"""The command line is generated from the config tree: every TrainConfig field and every option of the
canonicalizers, backbones and datasets is a flag, and each round-trips through the CLI and a config file."""
import dataclasses
import json

import pytest

from pointcanon.cli import main
from pointcanon.config import KWARGS_GROUPS, TrainConfig
from pointcanon.options import GROUPS, options

# field -> (a non-default value as typed on the command line, the value in the config, flags it needs)
FIELD_VALUES = {
    "task": ("partseg", "partseg", ["--dataset", "shapenetpart"]),
    "dataset": ("modelnet40", "modelnet40", []),
    "data_root": ("/data/mn40", "/data/mn40", []),
    "backbone": ("dgcnn", "dgcnn", []),
    "canonicalizer": ("vn", "vn", []),
    "canonicalizer_weights": ("shipped", None, ["--canonicalizer", "candidate"]),  # resolved to the file's path
    "freeze_canonicalizer": (None, True, ["--canonicalizer-weights", "shipped"]),
    "train_rotation": ("so3", "SO3", []),
    "augment": ("scale-shift", "scale-shift", []),
    "prior": ("identity", "identity", ["--canonicalizer", "vn"]),
    "prior_weight": ("2.5", 2.5, []),
    "epochs": ("3", 3, []),
    "batch_size": ("8", 8, []),
    "num_points": ("256", 256, []),
    "lr": ("0.01", 0.01, []),
    "weight_decay": ("0.001", 0.001, []),
    "seed": ("7", 7, []),
    "eval_every": ("2", 2, []),
    "checkpoint_every": ("5", 5, []),
    "pretrained": ("run/last.pt", "run/last.pt", ["--canonicalizer", "vn"]),
    "freeze_backbone": (None, True, ["--pretrained", "run/last.pt", "--canonicalizer", "vn"]),
    "backbone_lr": ("0.0001", 0.0001, []),
    "hypotheses": ("2", 2, ["--canonicalizer", "candidate"]),
    "hypothesis_rule": ("evidence", "evidence", ["--canonicalizer", "candidate", "--hypotheses", "2"]),
    "hypothesis_training": ("mixture", "mixture", ["--canonicalizer", "candidate", "--hypotheses", "2"]),
}
# kind that takes each option, for the flag test
KIND_FLAG = {"canonicalizer": "--canonicalizer", "backbone": "--backbone", "dataset": "--dataset"}


def _printed(args, capsys) -> dict:
    assert main(["train", *args, "--print-config"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _round_trip(args, tmp_path, capsys) -> dict:
    cfg = _printed(args, capsys)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert _printed(["--config", str(path)], capsys) == cfg  # the file gives back the same config
    return cfg


def test_every_field_has_a_flag():
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(KWARGS_GROUPS)
    assert fields == set(FIELD_VALUES)


@pytest.mark.parametrize("name", sorted(FIELD_VALUES))
def test_each_field_round_trips_through_the_cli_and_a_config_file(name, tmp_path, capsys):
    text, value, needs = FIELD_VALUES[name]
    flag = "--" + name.replace("_", "-")
    cfg = _round_trip(needs + ([flag] if text is None else [flag, text]), tmp_path, capsys)
    if name == "canonicalizer_weights":
        assert cfg[name].endswith("upright_modelnet40.pt") and cfg["canonicalizer_kwargs"]["group"] == "SE3"
    else:
        assert cfg[name] == value
    assert cfg[name] != getattr(TrainConfig(), name)


def _value(opt):
    kind, default = next((k, d) for k, d in opt.defaults.items())
    if opt.name == "group":
        return kind, ["E3"], "E3"
    if opt.name in ("axes",):
        return kind, ["zx"], "zx"
    if isinstance(default, bool) or "bool" in opt.annotation:
        return kind, ["false" if default else "true"], not default
    if isinstance(default, tuple):
        if opt.name == "poses":
            return kind, ["upright", "upside down"], ["upright", "upside down"]
        if opt.name == "free":
            return kind, ["mug", "car"], ["mug", "car"]
        items = [str(type(default[0])(3)) for _ in default] if default else ["10"]
        return kind, items, [type(default[0])(3) if default else 10.0 for _ in items]
    if isinstance(default, float):
        return kind, [str(default / 2)], default / 2
    if isinstance(default, int) or "int" in opt.annotation:
        return kind, [str((default or 2) + 1)], (default or 2) + 1
    choices = {"subsample": "fps", "origin": "learned", "up_axis": "z", "posed": "desk", "pooling": "max+mean"}
    return kind, [choices[opt.name]], choices[opt.name]


OPTION_CASES = [(g, n) for g in GROUPS for n in options(g)]


@pytest.mark.parametrize("group, name", OPTION_CASES, ids=[f"{g}.{n}" for g, n in OPTION_CASES])
def test_each_option_round_trips_through_the_cli_and_a_config_file(group, name, tmp_path, capsys):
    opt = options(group)[name]
    kind, text, value = _value(opt)
    kind_name = kind.split(" (")[0]
    needs = [KIND_FLAG[group], kind_name]
    if kind.endswith("(partseg)"):
        needs += ["--task", "partseg", "--dataset", "shapenetpart"]
    if group == "dataset" and kind_name in ("shapenetpart", "shapenetpart-normal"):
        needs += ["--task", "partseg"]
    cfg = _round_trip(needs + [opt.flag, *text], tmp_path, capsys)
    got = cfg[f"{group}_kwargs"][name]
    assert got == pytest.approx(value) if isinstance(value, float) else got == value


def test_an_option_of_another_kind_is_refused(capsys):
    assert main(["train", "--canonicalizer", "vn", "--canonicalizer.tilts", "0", "10", "--print-config"]) == 2
    assert "--canonicalizer.tilts does not apply to canonicalizer 'vn'; it applies to ['candidate']" in capsys.readouterr().err
    assert main(["train", "--canonicalizer.k", "4", "--print-config"]) == 2
    assert "need a canonicalizer" in capsys.readouterr().err
    assert main(["train", "--canonicalizer", "vn", "--canonicalizer.k", "four", "--print-config"]) == 2
    assert "--canonicalizer.k: Not of type PositiveInt: invalid literal for int()" in capsys.readouterr().err


@pytest.mark.slow
def test_e3_canonicalizer_trains_and_evaluates_from_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["--threads", "1", "train", "--canonicalizer", "vn", "--canonicalizer.group", "E3",
               "--canonicalizer.hidden", "4", "4", "4", "--canonicalizer.num_points", "32", "--backbone.width", "32",
               "--dataset.num_samples", "32", "--epochs", "1", "--batch-size", "8", "--num-points", "64",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["canonicalizer_kwargs"]["group"] == "E3" and cfg["backbone_kwargs"] == {"width": 32}
    ev = json.loads((out / "eval.json").read_text())["protocols"]
    assert ev["upright"]["acc"] == pytest.approx(ev["SO3"]["acc"])  # E(3)-invariant: every protocol alike


def test_documented_and_library_spellings_give_the_same_config(tmp_path, capsys):
    want = _printed(["--canonicalizer", "vn", "--canonicalizer.num_points", "none", "--batch-size", "8",
                     "--canonicalizer-weights", "none"], capsys)
    assert want["canonicalizer_kwargs"] == {"num_points": None} and want["batch_size"] == 8
    assert _printed(["--canonicalizer", "vn", "--canonicalizer_kwargs.num_points", "null", "--batch_size", "8"],
                    capsys) == want
    frozen = ["--canonicalizer-weights", "shipped"]
    assert _printed([*frozen, "--freeze-canonicalizer"], capsys)["freeze_canonicalizer"] is True
    both = [*frozen, "--freeze-canonicalizer", "--no-freeze-canonicalizer"]
    assert _printed(both, capsys)["freeze_canonicalizer"] is False  # the last one wins
    assert _printed([*frozen, "--freeze-canonicalizer", "false"], capsys)["freeze_canonicalizer"] is False


def test_flags_override_the_config_file_wherever_they_stand(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 3, "seed": 4, "canonicalizer": "vn", "canonicalizer_kwargs": {"k": 5}}))
    cfg = _printed(["--epochs", "7", "--canonicalizer.hidden", "8", "8", "8", "--config", str(path)], capsys)
    assert (cfg["epochs"], cfg["seed"], cfg["canonicalizer_kwargs"]) == (7, 4, {"k": 5, "hidden": [8, 8, 8]})


def test_help_shows_the_documented_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and "_kwargs" not in text and "--batch_size" not in text
    for flag in ("--batch-size", "--freeze-canonicalizer", "--canonicalizer.local_k", "--backbone.width",
                 "--dataset.up_axis", "--config FILE", "--print-config", "shapes per step"):
        assert flag in text, flag


def test_adapt_inherits_the_pretrained_runs_settings(tmp_path, capsys):
    small = ["--num-points", "32", "--batch-size", "8", "--max-shapes", "16", "--epochs", "1"]
    assert main(["train", *small, "--train-rotation", "z", "--dataset.num_classes", "4", "--backbone.width", "32",
                 "--out", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    assert main(["adapt", "--pretrained", str(tmp_path / "plain" / "last.pt"), "--canonicalizer.views", "2",
                 "--seed", "3", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after the "adapting ..." line
    assert (cfg["train_rotation"], cfg["num_points"], cfg["dataset_kwargs"], cfg["backbone_kwargs"]) == \
        ("z", 32, {"num_classes": 4}, {"width": 32})
    assert (cfg["canonicalizer"], cfg["canonicalizer_kwargs"], cfg["prior"], cfg["epochs"], cfg["seed"]) == \
        ("candidate", {"views": 2}, "upright", 5, 3)
    assert cfg["freeze_backbone"] and cfg["pretrained"].endswith("last.pt")
    assert main(["adapt", "--pretrained", str(tmp_path / "plain" / "last.pt"), "--backbone.width", "8"]) == 2
    assert "unrecognized arguments: --backbone.width" in capsys.readouterr().err
