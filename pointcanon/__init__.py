"""pointcanon: exact rigid-motion invariance for ordinary point-cloud networks through learned
canonicalization.

The names a newcomer needs are here: the canonicalizers and the wrapper, :func:`load_default_canonicalizer`
(the shipped, trained one), :func:`load_canonicalizer` (a canonicalizer file or training checkpoint),
:func:`build_canonicalizer` (an untrained one by kind or preset; ``"upright"`` is the shipped recipe) and
:func:`build_backbone`; :func:`load_classifier` (the shipped ModelNet40 classifier, or any canonicalized
classifier checkpoint) with :func:`classify_points`. Every named kind, backbone, dataset and preset is listed in :mod:`pointcanon.registry`.
"""
from .classify import classify_points, load_classifier
from .core import Canonicalization
from .models import load_canonicalizer, load_default_canonicalizer, save_canonicalizer
from .nn import CandidateCanonicalizer, CanonicalizedModel, VNCanonicalizer, build_backbone
from .registry import build_canonicalizer

__version__ = "0.1.0"
__all__ = ["CandidateCanonicalizer", "Canonicalization", "CanonicalizedModel", "VNCanonicalizer", "build_backbone",
           "build_canonicalizer", "classify_points", "load_canonicalizer", "load_classifier", "load_default_canonicalizer", "save_canonicalizer",
           "__version__"]
