"""Typed options of the configurable parts, read from their constructors by jsonargparse: the single source
of truth for ``--canonicalizer.<name>``, ``--backbone.<name>`` and ``--dataset.<name>`` on the command line
and for ``TrainConfig.canonicalizer_kwargs`` / ``backbone_kwargs`` / ``dataset_kwargs``.

Each group maps a kind (``"vn"``, ``"pointnet"``, ``"modelnet40"``, ...: the names of
:mod:`pointcanon.registry`) to the class it builds; an option is a keyword parameter of one or more of
those classes (jsonargparse follows ``**kwargs`` into base classes and reads the docstring's ``Args:``),
with its type, its default per kind and its help. Parameters the training derives itself (class counts,
split, root, number of points, transforms) are not options. One jsonargparse parser per group checks the
values, whether they come from the command line, a config file, a checkpoint or Python.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass

from jsonargparse import SUPPRESS, ArgumentError, ArgumentParser
from jsonargparse._parameter_resolvers import get_signature_parameters  # pinned in requirements.lock
from jsonargparse.typing import PositiveInt

from .core.groups import GroupName
from .registry import BACKBONES, CANONICALIZERS, DATASETS, SEGMENTERS

# group -> kind -> the class whose constructor gives the kind's options (from pointcanon.registry; a backbone
# kind is "NAME (cls)" or "NAME (partseg)": the two tasks build different classes)
GROUPS = {
    "canonicalizer": {kind: cls for kind, cls in CANONICALIZERS.items() if cls is not None},
    "backbone": {**{f"{k} (cls)": v for k, v in BACKBONES.items()}, **{f"{k} (partseg)": v for k, v in SEGMENTERS.items()}},
    "dataset": dict(DATASETS),
}
# derived by the training (or not serialisable), never options
DERIVED = {"canonicalizer": set(),
           "backbone": {"num_classes", "num_parts", "num_categories", "predict_normals"},
           "dataset": {"root", "split", "num_points", "transform", "cache_dir"}}


@dataclass(frozen=True)
class Option:
    """One option: ``group.name``, its type (``None``: untyped), the kinds that take it (with their
    defaults), its help."""

    group: str
    name: str
    typehint: object
    defaults: dict  # kind -> default
    help: str
    zero_ok: bool = False  # a count for which 0 means "off" (the class's ZERO_MEANS_OFF)

    @property
    def flag(self) -> str:
        return f"--{self.group}.{self.name}"

    @property
    def annotation(self) -> str:
        hint = self.typehint
        return "" if hint is None else hint.__name__ if isinstance(hint, type) else str(hint)

    @property
    def is_tuple(self) -> bool:
        return typing.get_origin(self.typehint) is tuple or any(isinstance(d, tuple) for d in self.defaults.values())

    def argument(self) -> dict:
        """``add_argument`` keywords: the type (an int whose every default is >= 1 is a count: a PositiveInt,
        unless 0 means "off" for it),
        a tuple as ``VALUE [VALUE ...]``."""
        hint, nargs = self.typehint, None
        if self.is_tuple:
            items = [a for a in typing.get_args(hint) if a is not Ellipsis]
            hint, nargs = (items[0] if items else str), "+"
        values = [v for d in self.defaults.values() for v in (d if isinstance(d, tuple) else (d,)) if v is not None]
        optional = type(None) in typing.get_args(hint)
        if (int in (hint, *typing.get_args(hint)) and values and not self.zero_ok
                and all(type(v) is int and v >= 1 for v in values)):
            hint = PositiveInt | None if optional else PositiveInt
        kinds = ", ".join(f"{k}: {d!r}" for k, d in self.defaults.items())
        return dict(type=typing.Any if hint is None else hint, nargs=nargs, default=SUPPRESS,
                    help=f"{self.help} [defaults {kinds}]".replace("%", "%%"))


@functools.lru_cache(maxsize=None)
def options(group: str) -> dict[str, Option]:
    """``name -> Option`` of a group (``"canonicalizer"``, ``"backbone"``, ``"dataset"``)."""
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}; expected one of {list(GROUPS)}")
    found: dict[str, dict] = {}
    for kind, cls in GROUPS[group].items():
        for p in get_signature_parameters(cls):
            if p.name in DERIVED[group] or p.kind in (p.kind.VAR_POSITIONAL, p.kind.VAR_KEYWORD):
                continue
            hint = None if p.annotation is inspect.Parameter.empty else p.annotation
            entry = found.setdefault(p.name, {"typehint": hint, "defaults": {}, "help": "", "zero_ok": False})
            entry["defaults"][kind] = p.default
            entry["zero_ok"] |= p.name in getattr(cls, "ZERO_MEANS_OFF", ())
            entry["help"] = entry["help"] or " ".join((p.doc or "").split())
    return {n: Option(group, n, **e) for n, e in sorted(found.items())}


@functools.lru_cache(maxsize=None)
def group_parser(group: str) -> ArgumentParser:
    """A jsonargparse parser of every option of ``group`` (not given: absent, i.e. the class default)."""
    parser = ArgumentParser(prog=f"--{group}.NAME", exit_on_error=False, print_config=None, add_help=False)
    for opt in options(group).values():
        parser.add_argument(f"--{opt.name}", **opt.argument())
    return parser


def check_options(group: str, kind: str, given: dict) -> dict:
    """``given`` (``name -> value``) checked against what ``kind`` takes and typed by the group's parser;
    ``ValueError`` naming the option (and the kinds that do take it). Tuples are kept as tuples (as the
    constructors store them); a ``group`` option in the group vocabulary (any case)."""
    table = options(group)
    kinds = [k for k in GROUPS[group] if k == kind or k.startswith(kind + " (")]
    out = {}
    for name, value in given.items():
        if name not in table:
            raise ValueError(f"unknown {group} option {name!r}; options: {sorted(table)}")
        if not any(k in table[name].defaults for k in kinds):
            raise ValueError(f"--{group}.{name} does not apply to {group} {kind!r}; it applies to "
                             f"{sorted(table[name].defaults)}")
        try:
            value = list(value) if isinstance(value, tuple) else value
            value = getattr(group_parser(group).parse_object({name: value}), name)
        except (ArgumentError, TypeError) as e:
            raise ValueError(f"--{group}.{name}: {' '.join(str(e).split())}") from None
        out[name] = GroupName.parse(value).value if name == "group" else _plain(value)
    return out


def _plain(value):
    """Lists as tuples and the library's ``PositiveInt`` as ``int`` (checkpoints hold plain types only)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value
