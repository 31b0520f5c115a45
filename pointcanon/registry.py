"""Every named part of pointcanon, one plain dict per family (as segment-anything's ``sam_model_registry``):
the names the command line, :class:`~pointcanon.config.TrainConfig` and the option groups
(``--canonicalizer.NAME``, ...) offer are the keys of these dicts, and nothing else lists them.

- :data:`CANONICALIZERS`: ``--canonicalizer`` kind -> class (``"none"``: ``None``, the backbone alone).
- :data:`BACKBONES` / :data:`SEGMENTERS`: ``--backbone`` name -> classifier / part-segmenter class.
- :data:`DATASETS`: ``--dataset`` name -> dataset class (its ``task``: ``"cls"`` or ``"partseg"``).
- :data:`PRESETS`: named recipes, ``name -> (kind, options)``; ``"upright"`` is the recipe of the shipped
  weights (``pointcanon/weights/upright_modelnet40.pt``), the recommended canonicalizer.

:func:`build_canonicalizer` builds an (untrained) canonicalizer from a kind or a preset::

    from pointcanon import build_canonicalizer, load_default_canonicalizer

    canon = build_canonicalizer("upright")          # the shipped recipe, untrained (e.g. to train it again)
    canon = build_canonicalizer("upright", views=1)  # the same with one option changed
    canon = load_default_canonicalizer()             # the shipped recipe with its trained weights

A new kind is one entry here (and its class's keyword parameters become its ``--canonicalizer.NAME``
options, see :mod:`pointcanon.options`).
"""
from __future__ import annotations

from torch import nn

from .datasets import DATASETS
from .nn import BACKBONES, SEGMENTERS, CandidateCanonicalizer, VNCanonicalizer
from .nn.approximate import ApproximateVNCanonicalizer

__all__ = ["BACKBONES", "CANONICALIZERS", "DATASETS", "PRESETS", "SEGMENTERS", "build_canonicalizer"]

# --canonicalizer: none (the backbone alone), vector-neuron regression of the frame, the same with learned
# symmetry-breaking inputs (approximately equivariant), scored principal-axis candidates (recommended)
CANONICALIZERS: dict[str, type[nn.Module] | None] = {
    "none": None, "vn": VNCanonicalizer, "vn-approx": ApproximateVNCanonicalizer, "candidate": CandidateCanonicalizer}
# BACKBONES ({"pointnet": PointNet, "dgcnn": DGCNN}), SEGMENTERS (the same names, part segmentation) and
# DATASETS (name -> class) are defined next to the code that builds them (pointcanon.nn.backbones,
# pointcanon.nn.segmentation, pointcanon.datasets) and gathered here.

# name -> (canonicalizer kind, options that differ from the class defaults). "upright": the shipped weights'
# recipe, which is the candidate canonicalizer at its defaults (tests/test_registry.py checks that it builds the
# hyperparameters stored in that file).
PRESETS: dict[str, tuple[str, dict]] = {
    "upright": ("candidate", {}),
}


def build_canonicalizer(name: str, **overrides) -> nn.Module | None:
    """An untrained canonicalizer: a kind of :data:`CANONICALIZERS` with ``overrides`` as its options, or a
    preset of :data:`PRESETS` (its options, then ``overrides``). ``build_canonicalizer("upright")`` is the
    recommended network (the shipped recipe); :func:`pointcanon.load_default_canonicalizer` gives it with
    the shipped weights. ``"none"`` gives ``None`` (no canonicalizer); an unknown name is a ``ValueError``
    naming the choices."""
    kind, options = PRESETS.get(name, (name, {}))
    if kind not in CANONICALIZERS:
        raise ValueError(f"unknown canonicalizer {name!r}; kinds: {list(CANONICALIZERS)}, presets: {list(PRESETS)}")
    cls = CANONICALIZERS[kind]
    if cls is None:
        if overrides:
            raise ValueError(f"canonicalizer 'none' takes no options, got {sorted(overrides)}")
        return None
    return cls(**{**options, **overrides})
