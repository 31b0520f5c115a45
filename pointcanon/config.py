"""The training configuration: every choice a run depends on, validated, saved in every checkpoint."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from .core.groups import GroupName
from .nn.hypotheses import HYPOTHESIS_RULES, HYPOTHESIS_TRAINING, check_hypotheses
from .registry import BACKBONES, CANONICALIZERS, DATASETS
from .tasks import TASKS

PROTOCOLS = ("upright", "z", "SO3")  # test rotations: none, random about z, random in SO(3)
TRAIN_ROTATIONS = ("none", "z", "SO3")  # training augmentations (GroupName values)


def parse_rotation(value, allowed=TRAIN_ROTATIONS, what: str = "rotation") -> str:
    """A rotation protocol or augmentation in the one group vocabulary (``"upright"`` = ``"none"`` for
    protocols; any case, e.g. ``"so3"`` -> ``"SO3"``); ``ValueError`` naming the choices."""
    if value == "upright" and "upright" in allowed:
        return value
    try:
        name = GroupName.parse(value).value
    except ValueError:
        name = None
    if name not in allowed:
        raise ValueError(f"{what} must be one of {allowed} (any case), got {value!r}")
    return name


MAX_POINTS = 100_000  # points per shape (the datasets hold 2048 to ~3000); more is a typo, not a request
PRIOR_CHOICES = ("none", "identity", "upright", "empirical")
AUGMENTATIONS = ("none", "scale-shift")  # training-time changes of each shape besides its rotation
KWARGS_GROUPS = {"canonicalizer_kwargs": "canonicalizer", "backbone_kwargs": "backbone", "dataset_kwargs": "dataset"}
# the choices of the named fields, from the registries (the CLI shows and checks them; validate() too)
Task = Literal[tuple(TASKS)]
Dataset = Literal[tuple(DATASETS)]
Backbone = Literal[tuple(BACKBONES)]
Canonicalizer = Literal[tuple(CANONICALIZERS)]
Prior = Literal[PRIOR_CHOICES]
Augment = Literal[AUGMENTATIONS]
HypothesisRule = Literal[HYPOTHESIS_RULES]
HypothesisTraining = Literal[HYPOTHESIS_TRAINING]


@dataclass
class TrainConfig:
    """The training config: everything a run depends on; saved in every checkpoint.

    The docstring under each field is its ``--help`` in ``pointcanon train`` (the kwargs dicts:
    ``--canonicalizer.NAME``, ... from the constructors, see :mod:`pointcanon.options`)."""

    task: Task = "cls"
    """cls (classification) or partseg (part segmentation); default: the dataset's task"""
    dataset: Dataset = "synthetic"
    """the dataset (its options: --dataset.NAME)"""
    data_root: str | None = None
    """dataset folder (not needed for synthetic / posed)"""
    backbone: Backbone = "pointnet"
    """the network that classifies or segments (its options: --backbone.NAME)"""
    backbone_kwargs: dict = field(default_factory=dict)
    canonicalizer: Canonicalizer = "none"
    """the canonicalizer in front of the backbone, a kind of pointcanon.registry.CANONICALIZERS: none (the
    backbone alone), vn (VNCanonicalizer), vn-approx (ApproximateVNCanonicalizer), candidate
    (CandidateCanonicalizer, recommended); its options: --canonicalizer.NAME"""
    canonicalizer_kwargs: dict = field(default_factory=dict)
    canonicalizer_weights: str | None = None
    """start the canonicalizer from a canonicalizer file, or a shipped one by name ('upright'; 'shipped' is an alias)"""
    freeze_canonicalizer: bool = False
    """keep the canonicalizer fixed (needs weights)"""
    train_rotation: str = "none"
    """random rotation of every training shape: none, z (about the up axis) or SO3 (any case)"""
    augment: Augment = "none"
    """scale-shift: scale every training shape by U(2/3, 3/2) per axis and shift it by U(-0.2, 0.2) per axis
    (the DGCNN / PointNet++ recipe), before its rotation; none: the shapes as stored"""
    prior: Prior = "none"
    """pull the canonical frame towards the identity, the upright (up axis only) or the training
    augmentation's orientations (empirical)"""
    prior_weight: float = 0.0
    """weight of the prior loss"""
    epochs: int = 10
    """passes over the training set"""
    batch_size: int = 32
    """shapes per step (global, over all data-parallel processes)"""
    num_points: int = 1024
    """points per shape"""
    lr: float = 1e-3
    """Adam learning rate"""
    weight_decay: float = 1e-4
    """Adam weight decay"""
    seed: int = 0
    """seed of the initial weights, the shuffling, the augmentation and the dropout"""
    eval_every: int = 1
    """evaluate upright on the test set every N epochs (0: never)"""
    checkpoint_every: int = 0
    """also checkpoint every N steps (0: at the end of every epoch only)"""
    dataset_kwargs: dict = field(default_factory=dict)
    pretrained: str | None = None
    """checkpoint of a plain backbone to adapt (see `pointcanon adapt`)"""
    freeze_backbone: bool = False
    """keep the pretrained backbone fixed"""
    backbone_lr: float | None = None
    """learning rate of an unfrozen pretrained backbone (default: --lr)"""
    hypotheses: int = 1
    """candidate canonicalizer: show the classifier the K most likely up hypotheses (training: one drawn per
    shape or their mixture, see --hypothesis-training; evaluation: their mixture)"""
    hypothesis_rule: HypothesisRule = "weights"
    """how the hypotheses are weighted: weights (the canonicalizer's) or evidence (times the backbone's own
    evidence exp(logsumexp logits) for each pose); selector only after `pointcanon fit-selector`"""
    hypothesis_training: HypothesisTraining = "sample"
    """sample (one hypothesis per shape, one backbone pass) or mixture (the loss of the combined output: K
    passes; the task loss reaches the canonicalizer's scores)"""

    def validate(self) -> "TrainConfig":
        self.train_rotation = parse_rotation(self.train_rotation, what="train_rotation")
        checks = [("task", self.task, tuple(TASKS)), ("backbone", self.backbone, tuple(BACKBONES)), ("canonicalizer", self.canonicalizer, tuple(CANONICALIZERS)),
                  ("prior", self.prior, PRIOR_CHOICES), ("augment", self.augment, AUGMENTATIONS), ("hypothesis_rule", self.hypothesis_rule, HYPOTHESIS_RULES),
                  ("hypothesis_training", self.hypothesis_training, HYPOTHESIS_TRAINING)]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.epochs == 0 and not self.pretrained:
            raise ValueError("epochs must be positive (0 only to assemble a pretrained backbone and a canonicalizer)")
        for name in ("batch_size", "num_points") + (("epochs",) if self.epochs else ()):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_points > MAX_POINTS:
            raise ValueError(f"num_points (--num-points) must be at most {MAX_POINTS} points per shape, "
                             f"got {self.num_points}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (batch norm needs two samples)")
        if self.prior != "none" and self.canonicalizer == "none":
            raise ValueError(f"prior {self.prior!r} needs a canonicalizer (--canonicalizer vn)")
        if (self.pretrained or self.freeze_backbone) and self.canonicalizer == "none":
            raise ValueError("adapting a pretrained backbone needs a canonicalizer (--canonicalizer vn)")
        if (self.canonicalizer_weights or self.freeze_canonicalizer) and self.canonicalizer == "none":
            raise ValueError("canonicalizer_weights / freeze_canonicalizer need a canonicalizer (--canonicalizer)")
        if self.freeze_canonicalizer and self.freeze_backbone and self.epochs:
            raise ValueError("the canonicalizer and the backbone are both frozen: nothing would be trained")
        if self.freeze_canonicalizer and self.prior != "none" and self.prior_weight:
            raise ValueError("a frozen canonicalizer cannot learn a prior: drop --prior or --freeze-canonicalizer")
        if self.canonicalizer == "candidate" and self.prior not in ("none", "upright", "identity"):
            raise ValueError(f"the candidate canonicalizer learns the 'upright' or 'identity' prior, not {self.prior!r}")
        if self.freeze_backbone and not self.pretrained:
            raise ValueError("freeze_backbone needs a pretrained backbone checkpoint")
        for name in ("lr",) + (("backbone_lr",) if self.backbone_lr is not None else ()):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("prior_weight", "weight_decay"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        check_hypotheses(self.hypotheses)
        if self.hypotheses > 1 and (self.canonicalizer != "candidate" or self.task != "cls"):
            raise ValueError("hypotheses > 1 needs --canonicalizer candidate and a classification task")
        if self.hypotheses == 1 and (self.hypothesis_rule, self.hypothesis_training) != ("weights", "sample"):
            raise ValueError("hypothesis_rule / hypothesis_training apply to hypotheses > 1 (--hypotheses K)")
        for name in ("checkpoint_every", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: never), got {getattr(self, name)}")
        from .options import check_options  # same layer; imported here to keep `import pointcanon.config` light

        kinds = {"canonicalizer": self.canonicalizer, "backbone": f"{self.backbone} ({self.task})",
                 "dataset": self.dataset}
        for key, group in KWARGS_GROUPS.items():
            if not isinstance(getattr(self, key), dict):
                raise ValueError(f"{key} must be a dict, got {type(getattr(self, key)).__name__}")
            if group == "canonicalizer" and self.canonicalizer == "none":
                if self.canonicalizer_kwargs:
                    raise ValueError(f"canonicalizer options {sorted(self.canonicalizer_kwargs)} need a canonicalizer")
                continue
            setattr(self, key, check_options(group, kinds[group], getattr(self, key)))
        return self

    @classmethod
    def from_checkpoint(cls, state: dict, path) -> "TrainConfig":
        """The config saved in a checkpoint ``state`` (from :func:`load_checkpoint`); ``ValueError`` naming
        ``path`` when it is missing or does not fit this version."""
        saved = state.get("config")
        if not isinstance(saved, dict):
            raise ValueError(f"{path} has no training config (not written by `pointcanon train`?)")
        try:
            return cls(**saved).validate()  # normalised as a new config would be (group names, tuples)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the config in {path} does not match this version of pointcanon: {e}") from None
