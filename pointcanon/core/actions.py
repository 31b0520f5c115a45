"""The equivariance engine: groups, how their elements act on tensors, and the exactness check.

One engine for the whole project: the tests (:func:`assert_equivariant`, re-exported by
:mod:`pointcanon.testing`) and the learned-equivariance measure (:mod:`pointcanon.core.equivariance`)
draw elements from the same :class:`Group` objects and move inputs and outputs with the same
:class:`Action` objects. A :class:`Group` samples elements (point-cloud rigid motions named by
:class:`~pointcanon.core.groups.GroupName`, image rotations C4/C2); an :class:`Action` applies one to a
tensor: point clouds (:data:`POINTS`, rows ``x @ R.T + s``), vectors (:data:`VECTORS`), vector-neuron
features (:data:`VN_FEATURES`, ``(B, C, 3, ...)``), invariants (:data:`INVARIANT`), frames
(:data:`FRAME`), a :class:`Canonicalization` (:data:`CANONICALIZATION`) and image maps (:data:`IMAGE_C4`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import Tensor, nn

from .groups import GroupName, random_rotations
from .result import Canonicalization

class RigidMotion(NamedTuple):
    """A batch of rigid motions ``x -> x @ rotation.T + translation``: ``(B, 3, 3)`` and ``(B, 3)`` or ``None``."""

    rotation: Tensor
    translation: Tensor | None = None


@dataclass(frozen=True)
class Action:
    """How a group element ``g`` acts on a tensor: ``action(x, g) -> g . x``.

    ``component_dims`` is the number of dims right after the channel dim that are representation
    components (1 for vector-neuron features ``(B, C, 3, ...)``, 0 for scalars); the remaining dims are
    positions. ``fn`` must keep the shape.
    """

    name: str
    fn: Callable[[Any, Any], Any]
    component_dims: int = 0

    def __call__(self, x, g):
        return self.fn(x, g)


def _rotation(g) -> Tensor:
    if isinstance(g, RigidMotion):
        return g.rotation
    if isinstance(g, Tensor) and g.ndim == 3 and g.shape[-2:] == (3, 3):
        return g
    raise ValueError(f"this action needs a RigidMotion or rotations (B, 3, 3), got {type(g).__name__}")


def _check(x: Tensor, ok: bool, what: str, action: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"action {action!r} needs a tensor, got {type(x).__name__}")
    if not ok:
        raise ValueError(f"action {action!r} needs {what}, got shape {tuple(x.shape)}")


def _points(x: Tensor, g) -> Tensor:
    _check(x, x.ndim == 3 and x.shape[-1] == 3, "points (B, N, 3)", "points")
    r = _rotation(g).to(x)
    y = x @ r.transpose(-1, -2)  # (B, N, 3)
    if isinstance(g, RigidMotion) and g.translation is not None:
        y = y + g.translation.to(x).unsqueeze(-2)
    return y


def _vectors(x: Tensor, g) -> Tensor:
    _check(x, x.ndim == 3 and x.shape[-1] == 3, "vectors (B, M, 3)", "vectors")
    return x @ _rotation(g).to(x).transpose(-1, -2)


def _vn(x: Tensor, g) -> Tensor:
    _check(x, x.ndim >= 3 and x.shape[2] == 3, "vector-neuron features (B, C, 3, ...)", "vn")
    r = _rotation(g).to(x)
    return torch.einsum("bij,bcj...->bci...", r, x)  # (B, C, 3, ...)


def _frame(x: Tensor, g) -> Tensor:
    _check(x, x.ndim == 3 and x.shape[-2:] == (3, 3), "frames (B, 3, 3)", "frame")
    return _rotation(g).to(x) @ x


def _rot90(x: Tensor, g) -> Tensor:
    _check(x, x.ndim >= 3 and x.shape[-1] == x.shape[-2], "square maps (B, C, H, H)", "rot90")
    if not isinstance(g, int) or isinstance(g, bool):
        raise ValueError(f"action 'rot90' needs a C4 element k (int, rotation by k * 90 degrees), got {g!r}")
    return torch.rot90(x, g % 4, dims=(-2, -1))


def _canonicalization(c: Canonicalization, g) -> Canonicalization:
    if not isinstance(c, Canonicalization):
        raise ValueError(f"action 'canonicalization' needs a Canonicalization, got {type(c).__name__}")
    origin = None if c.origin is None else _points(c.origin.unsqueeze(1), g).squeeze(1)
    return replace(c, frame=_frame(c.frame, g), origin=origin)


POINTS = Action("points", _points)  # (B, N, 3) -> x @ R.T + s
VECTORS = Action("vectors", _vectors)  # (B, M, 3) -> v @ R.T (normals, flow)
VN_FEATURES = Action("vn", _vn, component_dims=1)  # (B, C, 3, ...) -> R applied to dim 2
INVARIANT = Action("invariant", lambda x, g: x)  # per-point scalars (B, C, N), logits (B, K), ...
FRAME = Action("frame", _frame)  # (B, 3, 3) axes as columns -> R @ F
IMAGE_C4 = Action("rot90", _rot90)  # (B, C, H, H) -> torch.rot90(x, k, dims=(-2, -1))
CANONICALIZATION = Action("canonicalization", _canonicalization)  # frame -> R F, origin -> R o + s, canonical kept


@dataclass(frozen=True)
class Group:
    """A group to test: ``sample(num_samples, batch, generator, dtype, device)`` returns a list of
    elements, each acting on a whole batch; ``input_action`` moves the model's input."""

    name: str
    sample: Callable[[int, int, torch.Generator, torch.dtype, Any], list]
    input_action: Action


POINT_GROUPS = tuple(g.value for g in GroupName)


def point_group(name: str | GroupName = "SO3", *, translation_scale: float = 1.0, shared: bool = True) -> Group:
    """Rigid motions of point clouds, any :class:`~pointcanon.core.groups.GroupName`: ``"SO3"``, ``"O3"``,
    ``"z"`` (about z), ``"none"`` draw rotations; ``"SE3"``/``"E3"`` add Gaussian translations (std
    ``translation_scale``). Each element is one motion for the whole batch (``shared=True``: the channel
    matching of the measure may depend on ``g`` but not on the sample) or one per batch item
    (``shared=False``, what the exactness tests use). Input action :data:`POINTS`."""
    g = GroupName.parse(name)

    def sample(num, batch, gen, dtype, device):
        out = []
        n = 1 if shared else batch
        for _ in range(num):
            r = random_rotations(n, g, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
            s = None
            if g.translations:
                s = (torch.randn(n, 3, generator=gen, dtype=torch.float64) * translation_scale).to(dtype=dtype, device=device)
            if shared:
                r = r.expand(batch, 3, 3)
                s = None if s is None else s.expand(batch, 3)
            out.append(RigidMotion(r, s))
        return out

    return Group(g.value, sample, POINTS)


def cyclic_image_group(order: int = 4) -> Group:
    """Rotations of square images by multiples of ``360 / order`` degrees (``order`` 2 or 4): every
    non-identity element, as ints ``k`` (rotation by ``k * 90`` degrees), whatever ``num_samples``."""
    if order not in (2, 4):
        raise ValueError(f"image rotations by torch.rot90 support C2 and C4, got order {order!r}")
    step = 4 // order
    return Group(f"C{order}", lambda num, batch, gen, dtype, device: [k * step for k in range(1, order)], IMAGE_C4)


C4 = cyclic_image_group(4)
C2 = cyclic_image_group(2)


def get_group(group: str | GroupName | Group, *, shared: bool = True) -> Group:
    """A :class:`Group` from a name: a point-cloud group (:class:`~pointcanon.core.groups.GroupName`,
    any case; ``shared`` as in :func:`point_group`) or ``"C4"``, ``"C2"`` (image rotations)."""
    if isinstance(group, Group):
        return group
    if group in ("C4", "C2"):
        return C4 if group == "C4" else C2
    try:
        return point_group(group, shared=shared)
    except ValueError:
        raise ValueError(f"unknown group {group!r}; expected one of {POINT_GROUPS + ('C4', 'C2')} or a Group") from None


def _to_dtype(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    if dtype is None:
        return model
    if any(p.is_floating_point() and p.dtype != dtype for p in list(model.parameters()) + list(model.buffers())):
        model = copy.deepcopy(model).to(dtype)
    return model


def _rel(got: Tensor, want: Tensor, scale: Tensor | None = None) -> float:
    scale = (want if scale is None else scale).detach().abs().amax()
    return ((got - want).abs().amax() / scale.clamp_min(torch.finfo(want.dtype).tiny)).item()


def output_error(moved, expected) -> float:
    """Relative error ``max |moved - expected| / max |expected|`` of a model output: a tensor, a
    :class:`Canonicalization` (frame absolute, canonical relative, origin relative to the canonical
    radius), or a dict / tuple of tensors (largest over the entries)."""
    if isinstance(moved, Tensor):
        if not isinstance(expected, Tensor) or moved.shape != expected.shape:
            raise ValueError(f"output shapes differ: {tuple(moved.shape)} vs {getattr(expected, 'shape', type(expected))}")
        return _rel(moved, expected)
    if isinstance(moved, Canonicalization):
        errs = [(moved.frame - expected.frame).abs().amax().item(), _rel(moved.canonical, expected.canonical)]
        if moved.origin is not None and expected.origin is not None:
            radius = expected.canonical.norm(dim=-1).amax()
            errs.append(_rel(moved.origin, expected.origin, radius))
        return max(errs)
    if isinstance(moved, Mapping):
        return max(output_error(moved[k], expected[k]) for k in moved)
    if isinstance(moved, (tuple, list)):
        return max(output_error(m, e) for m, e in zip(moved, expected))
    raise ValueError(f"cannot compare model outputs of type {type(moved).__name__}")


def _expected_output(action: Action, y, g):
    if isinstance(y, Mapping):
        return {k: _expected_output(action, v, g) for k, v in y.items()}
    if isinstance(y, (tuple, list)):
        return type(y)(_expected_output(action, v, g) for v in y)
    return action(y, g)


# ---------------------------------------------------------------------------------------------------
# The exactness check (e3nn.util.test style).

OUTPUT_ACTIONS: dict[str, Action] = {a.name: a for a in (INVARIANT, POINTS, VECTORS, FRAME, CANONICALIZATION)}


def _output_action(output) -> Action:
    if isinstance(output, Action):
        return output
    if isinstance(output, str) and output in OUTPUT_ACTIONS:
        return OUTPUT_ACTIONS[output]
    raise ValueError(f"unknown output kind {output!r}; expected one of {list(OUTPUT_ACTIONS)}, an Action, or a dict "
                     "key -> kind for dict outputs")


def equivariance_error(fn: Callable, x: Tensor, *, group: str | GroupName | Group = "SE3",
                       output: str | Action | Mapping[str, str | Action] = "invariant", args: tuple = (),
                       num_samples: int = 8, translate: bool = True, shared: bool = False,
                       dtype: torch.dtype | None = torch.float64, generator: torch.Generator | None = None) -> float:
    """Largest relative error of ``fn(g . x, *args)`` against ``g . fn(x, *args)`` over ``num_samples``
    random elements of ``group`` (every element of a finite one).

    Args:
        fn: a callable or module; a module is copied to ``dtype`` if needed (its train/eval mode is kept).
        x: the input, points ``(B, N, 3)`` (or images ``(B, C, H, H)`` for ``"C4"``/``"C2"``).
        group: a group name (:class:`~pointcanon.core.groups.GroupName`, any case) or a :class:`Group`.
        output: how the output must move: ``"invariant"``, ``"points"``, ``"vectors"``, ``"frame"``,
            ``"canonicalization"`` (invariant canonical points, equivariant frame and origin), an
            :class:`Action`, or for a dict output a dict ``key -> kind`` (only those keys are compared).
        args: extra inputs passed unchanged to ``fn`` (e.g. a segmenter's categories); floating ones are
            cast to ``dtype``.
        translate: ``False`` drops the translations of ``"SE3"``/``"E3"``.
        shared: one element for the whole batch instead of an independent one per item.
        dtype: compute in this dtype (float64 by default); ``None`` keeps the input's.

    Returns:
        :func:`output_error` (relative to the expected output's largest entry; frames absolute).
    """
    if not translate and not isinstance(group, Group) and group not in ("C4", "C2"):
        group = GroupName.parse(group).rotations
    grp = get_group(group, shared=shared)
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    per_key = {k: _output_action(v) for k, v in output.items()} if isinstance(output, Mapping) else None
    action = None if per_key is not None else _output_action(output)
    if dtype is not None:
        x = x.to(dtype)
        args = tuple(a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
        if isinstance(fn, nn.Module):
            fn = _to_dtype(fn, dtype)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        base = fn(x, *args)
        for g in grp.sample(num_samples, x.shape[0], gen, x.dtype, x.device):
            moved = fn(grp.input_action(x, g), *args)
            if per_key is None:
                worst = max(worst, output_error(moved, _expected_output(action, base, g)))
            else:
                missing = [k for k in per_key if k not in base]
                if missing:
                    raise ValueError(f"output has no keys {missing}; it has {list(base)}")
                worst = max([worst] + [output_error(moved[k], a(base[k], g)) for k, a in per_key.items()])
    return worst


def assert_equivariant(fn: Callable, x: Tensor, *, tol: float | None = None, **kwargs) -> float:
    """``AssertionError`` if :func:`equivariance_error` exceeds ``tol`` (default 1e-9 in float64, 1e-4 in
    float32); returns the error. Keyword arguments as :func:`equivariance_error`."""
    dtype = kwargs.get("dtype", torch.float64) or x.dtype
    if tol is None:
        tol = 1e-9 if dtype == torch.float64 else 1e-4
    err = equivariance_error(fn, x, **kwargs)
    if not err <= tol:
        raise AssertionError(f"equivariance error {err:.3e} exceeds tolerance {tol:.1e} (group="
                             f"{kwargs.get('group', 'SE3')}, output={kwargs.get('output', 'invariant')}, dtype={dtype})")
    return err
