"""Equivariance checks in the style of ``e3nn.util.test``: draw random group elements, compare
``f(g . x)`` with ``g . f(x)`` in float64, report the largest error. Tests become one line::

    assert_equivariant(canonicalizer, points, group="SE3", output="canonicalization")
    assert_equivariant(model, points, group="E3", output="invariant", tol=1e-4, dtype=torch.float32)
    assert_equivariant(segmenter, points, args=(category,), output={"logits": "invariant", "normals": "vectors"})

The engine is :mod:`pointcanon.core.actions` (the same groups and actions as the learned-equivariance
measure); this module is its public testing entry point.
"""
from .core.actions import OUTPUT_ACTIONS, assert_equivariant, equivariance_error

__all__ = ["OUTPUT_ACTIONS", "assert_equivariant", "equivariance_error"]
