"""pointcanon: exact rigid-motion invariance for ordinary point-cloud networks through learned
canonicalization."""
from .core import Canonicalization
from .nn import CandidateCanonicalizer, CanonicalizedModel, VNCanonicalizer, build_backbone

__version__ = "0.1.0"
__all__ = ["CandidateCanonicalizer", "Canonicalization", "CanonicalizedModel", "VNCanonicalizer", "build_backbone", "__version__"]
