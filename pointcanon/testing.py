"""Equivariance checks in the style of ``e3nn.util.test``: draw random group elements, compare
``f(g . x)`` with ``g . f(x)`` in float64, report the largest error. Tests become one line::

    assert_equivariant(canonicalizer, points, group="SE3", output="canonicalization")
    assert_equivariant(model, points, group="E3", output="invariant", tol=1e-4, dtype=torch.float32)
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor, nn

from .core.groups import apply_rigid, random_rigid_motion
from .core.result import Canonicalization
from .core.validation import check_points

# How the output of f must move when the input moves by x -> x @ Q.T + s.
OUTPUT_ACTIONS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "invariant": lambda y, q, s: y,
    "points": lambda y, q, s: apply_rigid(y, q, s),  # (B, M, 3)
    "vectors": lambda y, q, s: apply_rigid(y, q),  # (B, M, 3), e.g. normals
    "frame": lambda y, q, s: q @ y,  # (B, 3, 3), axes as columns
}


def _relative_error(got: Tensor, expected: Tensor, reference: Tensor) -> float:
    scale = reference.detach().abs().amax().clamp_min(torch.finfo(reference.dtype).tiny)
    return ((got.detach() - expected.detach()).abs().amax() / scale).item()


def _cast(fn, dtype):
    if isinstance(fn, nn.Module):
        params = list(fn.parameters()) + list(fn.buffers())
        if any(p.is_floating_point() and p.dtype != dtype for p in params):
            fn = copy.deepcopy(fn).to(dtype)
    return fn


def equivariance_error(fn: Callable, x: Tensor, *, group: str = "SE3", output: str | Callable = "invariant",
                       num_samples: int = 8, translate: bool = True, dtype: torch.dtype | None = torch.float64,
                       generator: torch.Generator | None = None) -> float:
    """Largest relative error of ``f(x @ Q.T + s)`` against ``g . f(x)`` over ``num_samples`` draws of
    one random element per batch item.

    Args:
        fn: a callable or module taking points ``(B, N, 3)``; a module is copied to ``dtype`` if needed.
        x: points ``(B, N, 3)``.
        group: ``"SE3"``/``"SO3"``, ``"E3"``/``"O3"`` (with reflections) or ``"z"`` (about z).
        output: ``"invariant"``, ``"points"``, ``"vectors"``, ``"frame"``, ``"canonicalization"``
            (a :class:`Canonicalization`: invariant canonical points, equivariant frame and origin), or a
            callable ``(y, Q, s) -> expected``.
        translate: also draw a Gaussian translation ``s`` (std 1).
        dtype: compute in this dtype (float64 by default); ``None`` keeps the input's.

    Returns:
        ``max |f(g.x) - g.f(x)| / max |f(x)|`` (the frame is compared absolutely: its entries are <= 1).
    """
    check_points(x)
    if dtype is not None:
        x = x.to(dtype)
        fn = _cast(fn, dtype)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        base = fn(x)
        for _ in range(num_samples):
            q, s = random_rigid_motion(x.shape[0], group, generator=gen, dtype=x.dtype)
            q, s = q.to(x.device), s.to(x.device)
            if not translate:
                s = torch.zeros_like(s)
            moved = fn(apply_rigid(x, q, s))
            worst = max(worst, _compare(base, moved, q, s, output))
    return worst


def _compare(base, moved, q: Tensor, s: Tensor, output) -> float:
    if output == "canonicalization":
        if not isinstance(base, Canonicalization):
            raise TypeError(f"output='canonicalization' needs a Canonicalization, got {type(base).__name__}")
        errs = [_relative_error(moved.canonical, base.canonical, base.canonical),
                (moved.frame - q @ base.frame).abs().amax().item()]
        if base.origin is not None:
            radius = base.canonical.detach().norm(dim=-1).amax()
            errs.append(((moved.origin - apply_rigid(base.origin.unsqueeze(1), q, s).squeeze(1)).abs().amax()
                         / radius.clamp_min(1e-30)).item())
        return max(errs)
    action = output if callable(output) else OUTPUT_ACTIONS.get(output)
    if action is None:
        raise ValueError(f"unknown output kind {output!r}; expected one of {list(OUTPUT_ACTIONS) + ['canonicalization']}"
                         " or a callable")
    expected = action(base, q, s)
    if output == "frame":
        return (moved - expected).abs().amax().item()
    return _relative_error(moved, expected, base)


def assert_equivariant(fn: Callable, x: Tensor, *, tol: float | None = None, **kwargs) -> float:
    """Raise ``AssertionError`` if :func:`equivariance_error` exceeds ``tol`` (default 1e-9 in float64,
    1e-4 in float32); returns the error."""
    dtype = kwargs.get("dtype", torch.float64) or x.dtype
    if tol is None:
        tol = 1e-9 if dtype == torch.float64 else 1e-4
    err = equivariance_error(fn, x, **kwargs)
    if not err <= tol:
        raise AssertionError(f"equivariance error {err:.3e} exceeds tolerance {tol:.1e} "
                             f"(group={kwargs.get('group', 'SE3')}, output={kwargs.get('output', 'invariant')}, dtype={dtype})")
    return err
