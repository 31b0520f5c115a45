"""Rotation-equivariant Segment Anything: a discrete-rotation canonicalizer (C4 exact, C8) in front of SAM.

See docs/image_seg.md. Heavy imports (segment_anything) happen when the SAM wrappers are first used.
"""
from .canonicalizer import (ConvScorer, ImageCanonicalizer, SkyScorer, default_canonicalizer, equivariant_argmax,
                            load_canonicalizer, save_canonicalizer)
from .geometry import ImageRotation, QuarterTurn, Warp, sam_input_size
from .validation import check_box, check_image, check_points

__all__ = ["ConvScorer", "EquivariantAutomaticMaskGenerator", "EquivariantSamPredictor", "ImageCanonicalizer",
           "ImageRotation", "QuarterTurn", "SkyScorer", "Warp", "build_tiny_sam", "check_box", "check_image",
           "check_points", "default_canonicalizer", "equivariant_argmax", "load_canonicalizer", "load_sam",
           "sam_input_size", "save_canonicalizer"]

_LAZY = {"EquivariantSamPredictor": "predictor", "EquivariantAutomaticMaskGenerator": "amg",
         "load_sam": "models", "build_tiny_sam": "models"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'image_seg' has no attribute {name!r}")
