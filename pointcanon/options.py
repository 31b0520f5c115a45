"""Typed options of the configurable parts, read from their constructors: the single source of truth for
``--canonicalizer.<name>``, ``--backbone.<name>`` and ``--dataset.<name>`` on the command line and for
``TrainConfig.canonicalizer_kwargs`` / ``backbone_kwargs`` / ``dataset_kwargs``.

Each group maps a kind (``"vn"``, ``"pointnet"``, ``"modelnet40"``, ...: the names of
:mod:`pointcanon.registry`) to the class it builds; an option is a keyword parameter of one or more of
those classes, with its type (from the annotation), its default and its help (from the class docstring's
``Args:``). Parameters the training derives itself (class counts, split, root, number of points,
transforms) are not options. Writing this small reader instead of a second copy of ~40 parameters in
dataclasses keeps one place per parameter: the constructor.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import math
import re
from dataclasses import dataclass

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
DERIVED = {"canonicalizer": {"self"},
           "backbone": {"self", "num_classes", "num_parts", "num_categories", "predict_normals"},
           "dataset": {"self", "root", "split", "num_points", "transform", "cache_dir"}}


@dataclass(frozen=True)
class Option:
    """One option: ``group.name``, its annotation, the kinds that take it (with their defaults), its help."""

    group: str
    name: str
    annotation: str
    defaults: dict  # kind -> default
    help: str

    @property
    def flag(self) -> str:
        return f"--{self.group}.{self.name}"

    def parse(self, text: str):
        """A command-line string (or list of strings, for tuples) as this option's value."""
        ann = self.annotation.replace(" ", "")
        if isinstance(text, list):
            item = float if "float" in ann else int if "int" in ann else str
            return tuple(_scalar(t, item, self.flag) for t in text)
        if "|None" in ann and text.lower() == "none":
            return None
        if self.name == "group":
            return GroupName.parse(text).value
        base = ann.split("|")[0]
        return _scalar(text, {"int": int, "float": float, "bool": _bool}.get(base, str), self.flag)

    @property
    def is_tuple(self) -> bool:
        return self.annotation.startswith("tuple") or any(isinstance(d, tuple) for d in self.defaults.values())


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _scalar(text: str, kind, flag: str):
    try:
        return kind(text)
    except ValueError as e:
        raise ValueError(f"{flag}: {e}") from None


def _arg_help(cls) -> dict[str, str]:
    """``name -> text`` from the ``Args:`` section of a class docstring (continuation lines joined)."""
    doc = inspect.getdoc(cls) or ""
    out, current, in_args = {}, None, False
    for line in doc.splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        if in_args and line and not line.startswith(" "):
            break
        m = re.match(r"^ {4}([\w, ]+?): (.*)$", line) if in_args else None
        if m:
            current = [n.strip() for n in m.group(1).split(",")]
            for n in current:
                out[n] = m.group(2).strip()
        elif in_args and current and line.startswith("        "):
            for n in current:
                out[n] += " " + line.strip()
    return out


def _parameters(cls, derived=frozenset()) -> dict[str, inspect.Parameter]:
    """Keyword parameters of ``cls.__init__``, following ``**kwargs`` into its base classes."""
    params = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass.__module__.startswith("torch"):
            continue
        sig = inspect.signature(klass.__init__)
        for name, p in sig.parameters.items():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in derived:
                params.setdefault(name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return params


@functools.lru_cache(maxsize=None)
def options(group: str) -> dict[str, Option]:
    """``name -> Option`` of a group (``"canonicalizer"``, ``"backbone"``, ``"dataset"``)."""
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}; expected one of {list(GROUPS)}")
    found: dict[str, dict] = {}
    for kind, cls in GROUPS[group].items():
        helps = {k: v for klass in reversed(cls.__mro__) for k, v in _arg_help(klass).items()}
        for name, p in _parameters(cls, DERIVED[group]).items():
            entry = found.setdefault(name, {"annotation": str(p.annotation) if p.annotation is not p.empty else "",
                                            "defaults": {}, "help": helps.get(name, "")})
            entry["defaults"][kind] = p.default
            entry["help"] = entry["help"] or helps.get(name, "")
    return {n: Option(group, n, e["annotation"], e["defaults"], e["help"]) for n, e in sorted(found.items())}


def add_option_arguments(parser: argparse.ArgumentParser, group: str) -> None:
    """``--group.name`` for every option of ``group`` (not given: the class default)."""
    section = parser.add_argument_group(f"{group} options (--{group}.NAME VALUE; default: the class default)")
    for opt in options(group).values():
        kinds = ", ".join(f"{k}: {d!r}" for k, d in opt.defaults.items())
        section.add_argument(opt.flag, dest=f"{group}.{opt.name}", default=argparse.SUPPRESS, metavar="VALUE",
                             nargs="+" if opt.is_tuple else None,
                             help=f"{opt.help} [{opt.annotation or 'any'}; defaults {kinds}]".replace("%", "%%"))


def given_options(args: argparse.Namespace, group: str) -> dict:
    """The options of ``group`` given on the command line, parsed to their types."""
    out = {}
    for name, opt in options(group).items():
        key = f"{group}.{name}"
        if key in vars(args):
            out[name] = opt.parse(vars(args)[key])
    return out


def check_options(group: str, kind: str, given: dict) -> dict:
    """``given`` (``name -> value``) checked against what ``kind`` takes; ``ValueError`` naming the option
    and the kinds that do take it. Tuples are kept as tuples (as the constructors store them)."""
    table = options(group)
    kinds = [k for k in GROUPS[group] if k == kind or k.startswith(kind + " (")]
    for name in given:
        if name not in table:
            raise ValueError(f"unknown {group} option {name!r}; options: {sorted(table)}")
        if not any(k in table[name].defaults for k in kinds):
            raise ValueError(f"--{group}.{name} does not apply to {group} {kind!r}; it applies to "
                             f"{sorted(table[name].defaults)}")
        problem = _value_problem(table[name], given[name])
        if problem:
            raise ValueError(f"--{group}.{name} must be {problem}, got {given[name]!r}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


def _value_problem(opt: Option, value) -> str | None:
    """What is wrong with ``value`` for ``opt`` (``None``: nothing): its type from the annotation (a bool is
    not an int; numbers are finite), and a count (an int whose every default is positive) must be >= 1."""
    ann = opt.annotation.replace(" ", "")
    if value is None:
        return None if "None" in ann or not ann else "a value, not None"
    if opt.is_tuple:
        if "int" not in ann and "float" not in ann:
            return None
        if not isinstance(value, (list, tuple)) or not value:
            return "a non-empty list of numbers"
        item = Option(opt.group, opt.name, "float" if "float" in ann else "int",
                      {k: min(d) for k, d in opt.defaults.items() if isinstance(d, tuple) and d}, "")
        bad = next((p for p in (_value_problem(item, v) for v in value) if p), None)
        return f"a list of numbers, each {bad}" if bad else None
    base = ann.split("|")[0]
    if base == "int":
        positive = [d for d in opt.defaults.values() if d is not None]
        low = 1 if positive and all(isinstance(d, int) and d >= 1 for d in positive) else None
        if isinstance(value, bool) or not isinstance(value, int):
            return "an int"
        return "an int >= 1" if low is not None and value < low else None
    if base == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if base == "bool":
        return None if isinstance(value, bool) else "true or false"
    if base == "str":
        return None if isinstance(value, str) else "a string"
    return None
