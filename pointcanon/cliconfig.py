"""The ``train`` / ``adapt`` command lines, generated from :class:`~pointcanon.config.TrainConfig` (one flag
per field, ``--field-name``, help from ``FIELD_HELP``) and from the option groups of
:mod:`pointcanon.options` (``--canonicalizer.NAME``, ``--backbone.NAME``, ``--dataset.NAME``).

Values come, lowest priority first, from TrainConfig's defaults, a JSON config file (``--config``, e.g. a
run's ``config.json``) and the flags given. ``--print-config`` prints the result and exits.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from .config import AUGMENTATIONS, FIELD_HELP, KWARGS_GROUPS, PRIOR_CHOICES, TRAIN_ROTATIONS, TrainConfig, parse_rotation
from .datasets import DATASET_TASKS
from .nn.wrapper import HYPOTHESIS_TRAINING, TRAINING_RULES
from .options import add_option_arguments, given_options
from .registry import BACKBONES, CANONICALIZERS, DATASETS
from .tasks import TASKS

CHOICES = {"task": tuple(TASKS), "dataset": tuple(DATASETS), "backbone": tuple(BACKBONES),
           "canonicalizer": tuple(CANONICALIZERS), "prior": PRIOR_CHOICES, "augment": AUGMENTATIONS,
           "hypothesis_rule": TRAINING_RULES, "hypothesis_training": HYPOTHESIS_TRAINING}


def rotation_type(allowed, what: str = "rotation"):
    """argparse type: a name of the one group vocabulary (any case) among ``allowed``
    (``"upright"`` too where allowed, for test protocols)."""
    def parse(value: str) -> str:
        try:
            return parse_rotation(value, allowed, what)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = what
    return parse


def _optional(kind):
    def parse(value: str):
        return None if value.lower() == "none" else kind(value)
    parse.__name__ = kind.__name__
    return parse


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, *, skip=(), defaults: dict | None = None,
                         config_file: bool = True, groups=tuple(KWARGS_GROUPS.values())) -> None:
    """A flag for every TrainConfig field (except ``skip`` and the kwargs dicts, which get their option
    groups), ``--config`` and ``--print-config``. Flags not given leave the value of the config file or
    the default (``defaults`` overrides TrainConfig's for this command)."""
    shown = {**{f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING},
             **(defaults or {})}
    if config_file:
        parser.add_argument("--config", default=None, metavar="FILE",
                            help="JSON TrainConfig to start from (e.g. a run's config.json); flags given override it")
    parser.add_argument("--print-config", action="store_true", help="print the resulting config as JSON and exit")
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip or f.name in KWARGS_GROUPS:
            continue
        kw = dict(dest=f.name, default=argparse.SUPPRESS,
                  help=f"{FIELD_HELP[f.name]} (default: {shown.get(f.name)!r})".replace("%", "%%"))
        ann = str(f.type).replace(" ", "")
        if f.name == "train_rotation":
            kw.update(type=rotation_type(TRAIN_ROTATIONS, "--train-rotation"), metavar="{none,z,SO3}")
        elif f.name in CHOICES:
            kw.update(choices=CHOICES[f.name])
        elif ann == "bool":
            kw.update(action=argparse.BooleanOptionalAction)
        else:
            base = {"int": int, "float": float}.get(ann.split("|")[0], str)
            kw.update(type=_optional(base) if "|None" in ann else base)
        parser.add_argument(flag(f.name), **kw)
    for group in groups:
        add_option_arguments(parser, group)


def load_config_file(path) -> TrainConfig:
    """A TrainConfig from a JSON file; ``ValueError`` naming the file and the problem."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"--config {path} is a folder, not a file")
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--config {path}: cannot read a JSON config ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a JSON object of TrainConfig fields")
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"--config {path}: unknown fields {unknown}")
    for f in dataclasses.fields(TrainConfig):
        if f.name in values:
            problem = _type_problem(str(f.type), values[f.name])
            if problem:
                raise ValueError(f"--config {path}: {f.name} {problem}, got {json.dumps(values[f.name])}")
    return TrainConfig(**values)


_EXPECTED = {"int": ("an int (not a bool)", lambda v: isinstance(v, int) and not isinstance(v, bool)),
             "float": ("a finite number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v)),
             "bool": ("true or false", lambda v: isinstance(v, bool)),
             "str": ("a string", lambda v: isinstance(v, str)),
             "dict": ("a JSON object", lambda v: isinstance(v, dict))}


def _type_problem(annotation: str, value) -> str | None:
    """What is wrong with ``value`` for a TrainConfig field annotated ``annotation`` (``None``: nothing)."""
    ann = annotation.replace(" ", "")
    name, fits = _EXPECTED[ann.split("|")[0]]
    if (value is None and "|None" in ann) or (value is not None and fits(value)):
        return None
    return f"must be {name}" + (" or null" if "|None" in ann else "")


def check_int(value, flag: str, low: int = 1, high: int | None = None, hint: str = "") -> None:
    """``ValueError`` naming ``flag`` unless ``value`` is an int from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{flag} must be an int {bounds}, got {value!r}{hint}")


def config_from_args(a: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """TrainConfig from ``base`` (or ``--config``, or the defaults), overridden by the flags given."""
    from_file = getattr(a, "config", None)
    if base is None:
        base = load_config_file(from_file) if from_file else TrainConfig()
    values = dataclasses.asdict(base)
    given = {f.name for f in dataclasses.fields(TrainConfig) if f.name in vars(a)}
    values.update({name: vars(a)[name] for name in given})
    if "task" not in given and not from_file and "dataset" in given:
        values["task"] = DATASET_TASKS[values["dataset"]]  # the dataset's task unless asked otherwise
    for key, group in KWARGS_GROUPS.items():
        values[key] = {**values[key], **given_options(a, group)}
    return TrainConfig(**values)


def print_config(cfg: TrainConfig) -> None:
    print(json.dumps(dataclasses.asdict(cfg), indent=2, default=list))


def canonicalizer_file(path: str, kind: str) -> tuple[str, dict, str]:
    """``--canonicalizer-weights``: the canonicalizer kind, its hyperparameters and the resolved path of a
    canonicalizer file (``shipped``: the shipped upright ModelNet40 canonicalizer)."""
    from .mesh import DEFAULT_WEIGHTS, load_canonicalizer

    path = str(DEFAULT_WEIGHTS) if path == "shipped" else path
    canon = load_canonicalizer(path)
    found = next(kind for kind, cls in CANONICALIZERS.items() if cls is type(canon))
    if kind not in ("none", found):
        raise ValueError(f"--canonicalizer-weights {path} holds a {found!r} canonicalizer, not --canonicalizer {kind}")
    return found, dict(canon.hparams), str(Path(path).resolve())


def check_task(cfg) -> None:
    if cfg.dataset not in DATASET_TASKS:
        raise ValueError(f"dataset must be one of {tuple(DATASET_TASKS)}, got {cfg.dataset!r}")
    native = DATASET_TASKS[cfg.dataset]
    if cfg.task != native:
        fitting = [name for name, task in DATASET_TASKS.items() if task == cfg.task]
        raise ValueError(f"--task {cfg.task} does not fit --dataset {cfg.dataset} (a {native} dataset); "
                         f"--task {cfg.task} needs --dataset {' or '.join(fitting)}")


def with_canonicalizer_file(cfg):
    """``--canonicalizer-weights``: the kind and options come from the file."""
    if not cfg.canonicalizer_weights:
        return cfg
    kind, hparams, path = canonicalizer_file(cfg.canonicalizer_weights, cfg.canonicalizer)
    plain = lambda d: json.loads(json.dumps(d, default=list, sort_keys=True))  # noqa: E731  (tuples == lists)
    if cfg.canonicalizer_kwargs and plain(cfg.canonicalizer_kwargs) != plain(hparams):
        raise ValueError(f"--canonicalizer-weights {path} fixes the canonicalizer's options {hparams}; do not also "
                         f"pass --canonicalizer.NAME options ({cfg.canonicalizer_kwargs})")
    return dataclasses.replace(cfg, canonicalizer=kind, canonicalizer_kwargs=hparams, canonicalizer_weights=path)
