"""Models and their files: building a model from a :class:`~pointcanon.config.TrainConfig`, loading it
back from a training checkpoint, and canonicalizer files (one format, ``pointcanon-canonicalizer``,
for the shipped weights and every saved canonicalizer). Everything loads with
``torch.load(weights_only=True)`` (:func:`pointcanon.core.io.safe_load`): no code runs from a file.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import os
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig
from .core.io import FORMAT as CHECKPOINT_FORMAT, atomic_write, load_checkpoint, not_a_file, safe_load
from .nn import CanonicalizedModel, CandidateCanonicalizer, HypothesisSelector, VNCanonicalizer
from .nn.approximate import ApproximateVNCanonicalizer
from .registry import CANONICALIZERS, build_canonicalizer
from .tasks import get_task

# the exactly equivariant canonicalizers of the registry (a canonicalizer file may hold one), by the class
# name stored in the file
CANONICALIZER_CLASSES = {cls.__name__: cls for cls in CANONICALIZERS.values()
                         if cls is not None and not issubclass(cls, ApproximateVNCanonicalizer)}

CANONICALIZER_FORMAT = "pointcanon-canonicalizer"
CANONICALIZER_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "upright_modelnet40.pt"
FULL_WEIGHTS = WEIGHTS_DIR / "full_modelnet40.pt"
# the shipped canonicalizer files by name (`load_canonicalizer("upright")`, `--canonicalizer-weights upright`):
# "upright" puts the up axis where upright ModelNet40 has it (for backbones trained with rotations about z);
# "shipped" is an alias of it; "full" is "upright" with a learned front (12 turns about the up axis, identity prior:
# for backbones trained without rotations; scripts/fit_front.py)
SHIPPED_CANONICALIZERS = {"upright": DEFAULT_WEIGHTS, "shipped": DEFAULT_WEIGHTS, "full": FULL_WEIGHTS}


def canonicalizer_path(name_or_path) -> Path:
    """The file of a shipped canonicalizer name (:data:`SHIPPED_CANONICALIZERS`), else ``name_or_path``."""
    if isinstance(name_or_path, str) and name_or_path in SHIPPED_CANONICALIZERS:
        return SHIPPED_CANONICALIZERS[name_or_path]
    return Path(name_or_path).expanduser()


def build_model(cfg: TrainConfig, sizes: dict | int) -> nn.Module:
    """The task's backbone, wrapped in a :class:`CanonicalizedModel` with the canonicalizer
    ``cfg.canonicalizer`` (:func:`~pointcanon.registry.build_canonicalizer`) unless that is ``"none"``.
    ``sizes``: ``{"num_classes": C}`` (or just C) for classification, ``{"num_parts", "num_categories"}``
    for part segmentation."""
    if isinstance(sizes, int):
        sizes = {"num_classes": sizes}
    backbone = get_task(cfg.task).build_backbone(cfg.backbone, sizes, cfg.backbone_kwargs)
    canon = build_canonicalizer(cfg.canonicalizer, **cfg.canonicalizer_kwargs)
    if canon is None:
        return backbone
    if not isinstance(canon, CandidateCanonicalizer):  # up hypotheses are the candidate canonicalizer's
        return CanonicalizedModel(canon, backbone)
    selector = HypothesisSelector(sizes["num_classes"]) if cfg.hypothesis_rule == "selector" else None
    return CanonicalizedModel(canon, backbone, hypotheses=cfg.hypotheses, hypothesis_rule=cfg.hypothesis_rule,
                              hypothesis_training=cfg.hypothesis_training, selector=selector)


def load_canonicalizer_weights(model: CanonicalizedModel, path) -> None:
    """Start ``model.canonicalizer`` from a canonicalizer file (:func:`pointcanon.mesh.save_canonicalizer`),
    which must hold the same kind of canonicalizer with the same hyperparameters."""
    src = load_canonicalizer(path)
    dst = model.canonicalizer
    if type(src) is not type(dst) or src.hparams != dst.hparams:
        raise ValueError(f"{path} holds a {type(src).__name__} {src.hparams}, which does not fit the "
                         f"{type(dst).__name__} {dst.hparams} being trained; pass its hyperparameters")
    dst.load_state_dict(src.state_dict())




def load_pretrained_backbone(model: CanonicalizedModel, path) -> TrainConfig:
    """Load the weights of a plain (non-canonicalized) classifier checkpoint into ``model.backbone``;
    returns that checkpoint's config."""
    state = load_checkpoint(path)
    src = TrainConfig.from_checkpoint(state, path)
    if src.canonicalizer != "none":
        raise ValueError(f"{path} holds a canonicalized model; adapt a plain backbone checkpoint instead")
    try:
        model.backbone.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the backbone being adapted: {e}") from None
    return src


def load_model(path) -> tuple[nn.Module, TrainConfig, dict]:
    """Rebuild the model of a checkpoint written by :func:`train` (in eval mode)."""
    state = load_checkpoint(path)
    model, cfg = model_from_state(state, path)
    return model, cfg, state


def model_from_state(state: dict, path) -> tuple[nn.Module, TrainConfig]:
    """The model (eval mode) and config of a loaded checkpoint ``state`` (``path`` names it in errors)."""
    cfg = TrainConfig.from_checkpoint(state, path)
    try:
        model = build_model(cfg, state["sizes"])
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        legacy = _legacy_candidate(cfg)  # saved before the class defaults became the shipped recipe
        try:
            model = build_model(legacy, state["sizes"])
            model.load_state_dict(state["model"])
            cfg = legacy
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise ValueError(f"checkpoint {path} does not match this version of pointcanon: {e}") from None
    except (KeyError, TypeError) as e:
        raise ValueError(f"checkpoint {path} does not match this version of pointcanon: {e}") from None
    return model.eval(), cfg


# CandidateCanonicalizer's defaults before they became the shipped recipe (checkpoints of `--canonicalizer
# candidate` runs saved without options rely on them)
LEGACY_CANDIDATE_DEFAULTS = {"local_k": 0, "normal_k": 0, "views": 1, "pooling": "max"}


def _legacy_candidate(cfg: TrainConfig) -> TrainConfig:
    if cfg.canonicalizer != "candidate":
        raise ValueError("not a candidate canonicalizer")
    kwargs = {**LEGACY_CANDIDATE_DEFAULTS, **cfg.canonicalizer_kwargs}
    return dataclasses.replace(cfg, canonicalizer_kwargs=kwargs)


# ----------------------------------------------------------------------------------------------------
# canonicalizer files (exactly equivariant canonicalizers on their own: meshes, PyG, fine-tuning starts)


def _check_exact(canon: nn.Module, source: str) -> VNCanonicalizer | CandidateCanonicalizer:
    """A canonicalizer usable on meshes: an exactly equivariant canonicalizer with proper frames."""
    if isinstance(canon, CanonicalizedModel):
        canon = canon.canonicalizer
    if isinstance(canon, ApproximateVNCanonicalizer):
        raise ValueError(f"{source} is an approximately equivariant canonicalizer (vn-approx); meshes need the "
                         "exactly equivariant CandidateCanonicalizer or VNCanonicalizer")
    if not isinstance(canon, tuple(CANONICALIZER_CLASSES.values())):
        raise TypeError(f"{source} must be a {' or '.join(CANONICALIZER_CLASSES)} (or a CanonicalizedModel holding "
                        f"one), got {type(canon).__name__}")
    if canon.group != "SE3":
        raise ValueError(f"{source} has group={canon.group!r}, whose frames may be reflections, which would turn "
                         "the faces of a mesh inside out; use a canonicalizer with group='SE3' (proper rotations)")
    return canon


def save_canonicalizer(canon: VNCanonicalizer | CandidateCanonicalizer, path, info: dict | None = None) -> Path:
    """Write ``canon`` to ``path`` atomically as ``{"format": "pointcanon-canonicalizer", "version": 1,
    "hparams", "class": "VNCanonicalizer" | "CandidateCanonicalizer", "state_dict", "info"}``
    (``torch.save``; tensors on the CPU).

    ``info`` is free metadata (training data, epochs, scores); keep it to plain str / int / float / bool /
    list / dict values so the file loads with ``torch.load(weights_only=True)``.
    """
    canon = _check_exact(canon, "the canonicalizer to save")
    payload = {"format": CANONICALIZER_FORMAT, "version": CANONICALIZER_VERSION, "hparams": dict(canon.hparams),
               "class": type(canon).__name__,
               "state_dict": {k: v.detach().cpu().clone() for k, v in canon.state_dict().items()},
               "info": dict(info or {})}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_canonicalizer(path) -> VNCanonicalizer | CandidateCanonicalizer:
    """Load a canonicalizer (eval mode, CPU, in the dtype it was saved in) from a file of
    :func:`save_canonicalizer`, from a ``pointcanon train`` checkpoint of a canonicalized model (its
    canonicalizer part), or by the name of a shipped one (:data:`SHIPPED_CANONICALIZERS`: ``"upright"``).

    The file's ``info`` dict is attached as ``canon.info``. Raises ``FileNotFoundError`` for a missing
    file and ``ValueError`` for a foreign, corrupt or unsuitable one (a plain backbone, ``group="E3"``,
    an approximately equivariant canonicalizer).
    """
    path = canonicalizer_path(path)
    if not path.is_file():
        raise FileNotFoundError(not_a_file(path, "canonicalizer file"))
    obj = safe_load(path, "canonicalizer file")  # never runs code from the file
    if isinstance(obj, dict) and obj.get("format") == CANONICALIZER_FORMAT:
        if obj.get("version") != CANONICALIZER_VERSION or obj.get("class") not in CANONICALIZER_CLASSES:
            raise ValueError(f"{path} is a canonicalizer file of version {obj.get('version')!r} / class "
                             f"{obj.get('class')!r}; this pointcanon reads version {CANONICALIZER_VERSION} "
                             f"files of {', '.join(CANONICALIZER_CLASSES)}")
        try:
            hparams = dict(obj["hparams"])
            canon = CANONICALIZER_CLASSES[obj["class"]](hparams.pop("group", "SE3"), **hparams)
            dtypes = {v.dtype for v in obj["state_dict"].values() if v.is_floating_point()}
            if len(dtypes) == 1:  # keep the precision it was saved in
                canon.to(dtypes.pop())
            canon.load_state_dict(obj["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"canonicalizer file {path} does not match this version of pointcanon: {e}") from None
        canon.info = dict(obj.get("info") or {})
    elif isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        model, cfg, state = load_model(path)
        if cfg.canonicalizer == "none":
            raise ValueError(f"{path} holds a plain {cfg.backbone} model without a canonicalizer "
                             "(trained with --canonicalizer none)")
        canon = model.canonicalizer
        canon.info = {"checkpoint": str(path), "config": state.get("config")}
    else:
        raise ValueError(f"{path} is neither a canonicalizer file ({CANONICALIZER_FORMAT!r}) nor a pointcanon "
                         "training checkpoint")
    _check_exact(canon, f"the canonicalizer in {path}")
    return canon.eval()


def load_default_canonicalizer() -> CandidateCanonicalizer:
    """The shipped canonicalizer, ``pointcanon/weights/upright_modelnet40.pt`` (trained on upright
    ModelNet40 with an upright prior): the recommended ``"upright"`` recipe of :mod:`pointcanon.registry`
    (``build_canonicalizer("upright")`` is the same network untrained). Raises ``FileNotFoundError`` naming
    the file when it is missing."""
    if not DEFAULT_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"the default canonicalizer weights {DEFAULT_WEIGHTS} are not installed: pass model= a "
            "canonicalizer module or the path of a canonicalizer file / pointcanon checkpoint (--model PATH)")
    return load_canonicalizer(DEFAULT_WEIGHTS)


@functools.lru_cache(maxsize=4)
def _load_float64(path: str, mtime_ns: int, size: int) -> VNCanonicalizer | CandidateCanonicalizer:
    return copy.deepcopy(load_canonicalizer(path)).to(torch.float64).eval()


def _float64_model(model) -> VNCanonicalizer | CandidateCanonicalizer:
    """A float64, eval-mode canonicalizer for ``model`` (None, a path, or a module); never ``model`` itself."""
    if model is None:
        if not DEFAULT_WEIGHTS.is_file():
            load_default_canonicalizer()  # raises the FileNotFoundError
        model = DEFAULT_WEIGHTS
    if isinstance(model, (str, os.PathLike)):
        path = canonicalizer_path(model).resolve()
        if not path.is_file():
            raise FileNotFoundError(not_a_file(path, "canonicalizer file"))
        st = path.stat()
        return _load_float64(str(path), st.st_mtime_ns, st.st_size)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a CandidateCanonicalizer or VNCanonicalizer, the path of a canonicalizer file / checkpoint, or None "
                        f"(the default weights), got {type(model).__name__}")
    canon = _check_exact(model, "model")
    return copy.deepcopy(canon).to(torch.float64).eval()
