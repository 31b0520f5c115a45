"""How equivariant is a model, and where? Output error plus a per-layer learned-equivariance measure.

The measure follows Bruintjes, Motyka & van Gemert, "What Affects Learned Equivariance in Deep Image
Recognition Models?" (2023, https://arxiv.org/abs/2304.02628): correlate the features of the
transformed input with the transformed features of the input, channel by channel, and let every channel
of the first pick its best-matching channel of the second, so that equivariance that permutes channels
(a rotated copy of a filter elsewhere in the layer) counts as equivariance.

For a layer ``f``, input ``x`` and group element ``g`` write ``A = f(g . x)`` and ``T = g . f(x)``, both
``(B, C, *K, *P)``: channels ``C``, representation components ``K`` (the xyz axis of vector-neuron
features; none for scalars) and positions ``P`` (points, pixels, neighbours; none for pooled features).
Flatten channel ``i`` over the batch, components and positions into a vector ``a_i`` (``t_j`` from ``T``);
for scalar features (no ``K``) subtract its mean (Pearson correlation), for vector features do not (cosine:
rotations fix no non-zero vector, so a mean vector is signal, and a constant symmetry-breaking vector must
not be centred away). With

    rho(i, j) = <a_i, t_j> / (||a_i|| ||t_j||)

the measure of the layer is

    E = mean_g mean_i max_j rho(i, j)        (channel_match="max", the paper's measure)
    E_same = mean_g mean_i rho(i, i)         (channel_match="same", assumes the channel order is kept)

``E = 1`` for an exactly equivariant layer (``A = T``), whatever its channel permutation. By default
``rho`` runs over the whole batch at once, so a matching channel must match for every sample (a
permutation is a property of the layer, not of one input) and a per-sample offset that depends on ``g``
is seen; ``per_sample=True`` computes ``rho`` per sample (over ``K`` and ``P``) and also averages over
samples. Channels ``i`` that are constant in ``A`` (norm below ``100 eps`` of the layer's largest
channel after centring: dead ReLUs, zero-initialised layers) carry no signal and are left out of the
mean (a layer whose channels are all constant gives NaN); their fraction is reported as ``excluded``.
Constant channels ``j`` of ``T`` correlate 0.

From the paper: Pearson correlation of each channel of ``f(g . x)`` with the best-matching channel of
``g . f(x)``, averaged over channels (and inputs, transformations). This module's own choices, for point
clouds and vector features: pooling over the batch by default, no centring of vector components, and the
constant-channel rule.

Why Pearson for scalars and not cosine: it is invariant to each channel's scale and offset (the
invariant part), so layers of different magnitudes are comparable and two unrelated post-ReLU channels
(both positive) do not score high just because they share a positive mean.

Everything here is modality-free: a :class:`Group` samples elements, an :class:`Action` applies one to a
tensor. Ready-made: point clouds (:data:`POINTS`, rows ``x @ R.T + s``), vector-neuron features
(:data:`VN_FEATURES`, ``(B, C, 3, ...)``), invariant per-point scalars (:data:`INVARIANT`,
``(B, C, N)``), image feature maps under C4 (:data:`IMAGE_C4`, ``torch.rot90``) and outputs
(:data:`FRAME`, :data:`VECTORS`, :data:`CANONICALIZATION`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .actions import IMAGE_C4, INVARIANT, Action, Group, _expected_output, _rel, _to_dtype, get_group, output_error

CHANNEL_MATCHES = ("max", "same")


# ---------------------------------------------------------------------------------------------------
# The measure for one pair of feature tensors.

def _eps(dtype: torch.dtype) -> float:
    return 100 * torch.finfo(dtype).eps


def channel_correlations(a: Tensor, t: Tensor, *, component_dims: int = 0,
                         per_sample: bool = False) -> tuple[Tensor, Tensor]:
    """Correlations between every channel of ``a`` and every channel of ``t`` (see the module docstring).

    Args:
        a, t: ``(B, C, *K, *P)`` features, e.g. ``a = f(g . x)`` and ``t = g . f(x)``; ``K`` has
            ``component_dims`` dims (centred over batch and positions only if there are none), ``P`` the rest.
        per_sample: one correlation matrix per sample (over ``K`` and ``P``) instead of one over the
            whole batch; features without positions are always correlated over the batch.

    Returns:
        ``rho`` ``(S, C, C)`` with ``rho[s, i, j] = corr(a_i, t_j)`` (``S = B`` per sample, else 1) and
        ``valid`` ``(S, C)``: channel ``i`` of ``a`` is not constant.
    """
    if not isinstance(a, Tensor) or not isinstance(t, Tensor):
        raise ValueError("features must be tensors")
    if a.shape != t.shape:
        raise ValueError(f"features of the transformed input {tuple(a.shape)} and transformed features "
                         f"{tuple(t.shape)} differ in shape")
    if a.ndim < 2 + component_dims:
        raise ValueError(f"features must be (B, C, ...) with {component_dims} component dims, got {tuple(a.shape)}")
    if not a.is_floating_point():
        a, t = a.double(), t.double()
    b, c = a.shape[:2]
    k = math.prod(a.shape[2:2 + component_dims])
    p = math.prod(a.shape[2 + component_dims:])
    a, t = a.reshape(b, c, k, p), t.reshape(b, c, k, p)
    if not (per_sample and p > 1):  # one correlation over the whole batch: (1, C, K, B * P)
        a = a.permute(1, 2, 0, 3).reshape(1, c, k, b * p)
        t = t.permute(1, 2, 0, 3).reshape(1, c, k, b * p)
    if component_dims == 0:
        if a.shape[-1] < 2:
            raise ValueError(f"scalar features {tuple((b, c))} with a single entry per channel have no correlation; "
                             "measure a batch of at least 2 inputs")
        a = a - a.mean(-1, keepdim=True)
        t = t - t.mean(-1, keepdim=True)
    a, t = a.flatten(2), t.flatten(2)  # (S, C, K * P')
    na, nt = a.norm(dim=-1), t.norm(dim=-1)  # (S, C)
    eps, tiny = _eps(a.dtype), torch.finfo(a.dtype).tiny
    valid = na > eps * na.amax(-1, keepdim=True).clamp_min(tiny)
    valid_t = nt > eps * nt.amax(-1, keepdim=True).clamp_min(tiny)
    rho = (a / na.clamp_min(tiny).unsqueeze(-1)) @ (t / nt.clamp_min(tiny).unsqueeze(-1)).transpose(1, 2)  # (S, C, C)
    rho = torch.where(valid_t.unsqueeze(1), rho, torch.zeros_like(rho)).clamp(-1, 1)
    return rho, valid


def learned_equivariance(a: Tensor, t: Tensor, *, component_dims: int = 0, channel_match: str = "max",
                         per_sample: bool = False) -> float:
    """The measure of one layer for one group element: ``mean_i max_j rho(i, j)`` (``"max"``) or
    ``mean_i rho(i, i)`` (``"same"``) over the non-constant channels ``i`` of ``a = f(g . x)``, with
    ``t = g . f(x)``; see the module docstring. NaN if every channel of ``a`` is constant."""
    if channel_match not in CHANNEL_MATCHES:
        raise ValueError(f"channel_match must be one of {CHANNEL_MATCHES}, got {channel_match!r}")
    rho, valid = channel_correlations(a, t, component_dims=component_dims, per_sample=per_sample)
    best = rho.amax(-1) if channel_match == "max" else torch.diagonal(rho, dim1=-2, dim2=-1)
    return (best[valid].mean() if valid.any() else best.new_tensor(float("nan"))).item()


# ---------------------------------------------------------------------------------------------------
# Whole models: hooks on every layer.

LayerActions = Action | Mapping[str, Action] | Callable[[str, nn.Module, Tensor], "Action | None"]
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def actions_by_type(mapping: Mapping[type, Action | None], default: Action | None = INVARIANT) -> Callable:
    """A layer-action resolver: the action of the first type in ``mapping`` that the module is an instance
    of, else ``default``; an action ``None`` skips the layer."""
    items = list(mapping.items())

    def resolve(name: str, module: nn.Module, output: Tensor) -> Action | None:
        for cls, action in items:
            if isinstance(module, cls):
                return action
        return default

    return resolve


def image_layer_actions(name: str, module: nn.Module, output: Tensor) -> Action | None:
    """Layer actions for C4 image models: maps ``(B, C, H, W)`` rotate (:data:`IMAGE_C4`), everything else
    (pooled ``(B, C)``) is invariant."""
    return IMAGE_C4 if output.ndim == 4 else INVARIANT


def select_layers(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, nn.Module]:
    """``name -> module`` of the layers to measure: by default every submodule except the model itself
    and plain containers (``Sequential``, ``ModuleList``, ``ModuleDict``, whose output repeats a child's);
    or exactly the named ones (``ValueError`` for an unknown name)."""
    named = dict(model.named_modules())
    if layers is None:
        return {n: m for n, m in named.items() if n and not isinstance(m, CONTAINERS)}
    if isinstance(layers, str):
        layers = [layers]
    unknown = [n for n in layers if n not in named or n == ""]
    if unknown:
        known = [n for n in named if n]
        raise ValueError(f"unknown layer names {unknown}; the model has {len(known)} layers, e.g. {known[:12]}")
    return {n: named[n] for n in layers}


def _resolve(actions: LayerActions, name: str, module: nn.Module, output: Tensor) -> Action | None:
    if isinstance(actions, Action):
        return actions
    if isinstance(actions, Mapping):
        if name not in actions:
            raise ValueError(f"no action given for layer {name!r} (layer_actions has {sorted(actions)[:12]})")
        return actions[name]
    return actions(name, module, output)


@dataclass
class LayerEquivariance:
    """One row of the per-layer table.

    ``measure`` = ``mean max_j rho(i, j)`` (channel permutations allowed), ``same_channel`` =
    ``mean rho(i, i)``, ``relative_error`` = ``max |f(g.x) - g.f(x)| / max |g.f(x)|``; ``excluded`` is
    the fraction of constant channels left out; ``shape`` is the feature shape of one call.
    """

    name: str
    module: str
    action: str
    shape: tuple
    measure: float
    same_channel: float
    relative_error: float
    excluded: float


@dataclass
class EquivarianceReport:
    """Output error and per-layer measures of one model under one group (see the module docstring)."""

    group: str
    num_elements: int
    num_inputs: int
    output_error: float | None
    layers: list[LayerEquivariance] = field(default_factory=list)

    def __getitem__(self, name: str) -> LayerEquivariance:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r} in the report")

    def mean(self, key: str = "measure") -> float:
        """Mean of a column over the layers (NaN rows skipped)."""
        vals = [getattr(lay, key) for lay in self.layers if not math.isnan(getattr(lay, key))]
        return sum(vals) / len(vals) if vals else float("nan")

    def to_dict(self) -> dict:
        return {"group": self.group, "num_elements": self.num_elements, "num_inputs": self.num_inputs,
                "output_error": self.output_error, "mean_measure": self.mean("measure"),
                "mean_same_channel": self.mean("same_channel"),
                "layers": [{**asdict(lay), "shape": list(lay.shape)} for lay in self.layers]}

    def table(self) -> str:
        """A plain-text table, one row per layer."""
        w = max([len(lay.name) for lay in self.layers] + [5])
        m = max([len(lay.module) for lay in self.layers] + [6])
        head = f"{'layer':<{w}}  {'module':<{m}}  {'action':<9}  {'shape':<18}  {'measure':>8}  {'same-ch':>8}  {'rel.err':>9}"
        rows = [head, "-" * len(head)]
        for lay in self.layers:
            shape = "x".join(str(s) for s in lay.shape)
            rows.append(f"{lay.name:<{w}}  {lay.module:<{m}}  {lay.action:<9}  {shape:<18}  {lay.measure:>8.4f}  "
                        f"{lay.same_channel:>8.4f}  {lay.relative_error:>9.2e}")
        out = "" if self.output_error is None else f"output error {self.output_error:.3e}; "
        rows.append(f"{out}mean measure {self.mean('measure'):.4f}, same-channel {self.mean('same_channel'):.4f} "
                    f"over {len(self.layers)} layers ({self.group}, {self.num_elements} elements x {self.num_inputs} inputs)")
        return "\n".join(rows)


def evaluate_equivariance(model: nn.Module, x: Tensor, *, group: str | Group = "SO3", args: tuple = (),
                          input_action: Action | None = None, output_action: Action | None = INVARIANT,
                          layer_actions: LayerActions = INVARIANT, layers: Sequence[str] | None = None,
                          num_samples: int = 4, dtype: torch.dtype | None = torch.float64,
                          per_sample: bool = False, generator: torch.Generator | None = None,
                          eval_mode: bool = True) -> EquivarianceReport:
    """Output error and the learned-equivariance measure of every layer of ``model`` under ``group``.

    Runs ``model(x, *args)`` once and ``model(g . x, *args)`` for every element ``g`` (``num_samples``
    random draws of a continuous group, every non-identity element of a finite one), records each
    layer's output with forward hooks and compares ``f(g . x)`` with ``g . f(x)``.

    Args:
        model: any module; copied to ``dtype`` (float64 by default; ``None`` keeps it) and put in eval
            mode while measured (``eval_mode=False`` keeps its mode).
        x: the input batch, e.g. points ``(B, N, 3)`` or images ``(B, C, H, H)``.
        group: a :class:`Group` or a name (``"SO3"``, ``"O3"``, ``"z"``, ``"SE3"``, ``"E3"``, ``"C4"``, ``"C2"``).
        input_action: how ``g`` moves ``x`` (default: the group's, :data:`POINTS` or :data:`IMAGE_C4`).
        output_action: how the output should move (:data:`INVARIANT`, :data:`FRAME`, :data:`VECTORS`,
            :data:`CANONICALIZATION`, ...); ``None`` skips the output error.
        layer_actions: how each layer's features should move: one :class:`Action` for all, a dict
            ``name -> Action``, or a callable ``(name, module, output) -> Action | None`` (``None`` skips
            the layer), e.g. :func:`actions_by_type` or :func:`image_layer_actions`.
        layers: names of the layers to measure (default: :func:`select_layers`); layers whose output is
            not a tensor are skipped.
        per_sample: correlate per sample instead of over the whole batch (see :func:`channel_correlations`).

    Returns:
        an :class:`EquivarianceReport` (``output_error`` as in :func:`output_error`, max over elements).
    """
    grp = get_group(group)
    if input_action is None:
        input_action = grp.input_action
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    model = _to_dtype(model, dtype)
    if dtype is not None:
        x = x.to(dtype)
        args = tuple(a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
    selected = select_layers(model, layers)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    elements = grp.sample(num_samples, x.shape[0], gen, x.dtype, x.device)

    record: dict[str, list[Tensor]] = {}
    modules: dict[str, nn.Module] = {}

    def hook(name):
        def fn(module, inputs, output):
            if isinstance(output, Tensor) and output.is_floating_point():
                record.setdefault(name, []).append(output.detach())
                modules[name] = module
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in selected.items()]
    was_training = model.training
    try:
        if eval_mode:
            model.eval()
        with torch.no_grad():
            base_out = model(x, *args)
            base = {n: v for n, v in record.items()}
            stats: dict[str, dict] = {}
            worst_out = 0.0 if output_action is not None else None
            for g in elements:
                record.clear()
                moved_out = model(input_action(x, g), *args)
                if output_action is not None:
                    worst_out = max(worst_out, output_error(moved_out, _expected_output(output_action, base_out, g)))
                for name, feats in base.items():
                    moved = record.get(name, [])
                    if len(moved) != len(feats):
                        raise ValueError(f"layer {name!r} was called {len(feats)} times on x but {len(moved)} times on g.x")
                    action = _resolve(layer_actions, name, modules[name], feats[0])
                    if action is None:
                        continue
                    s = stats.setdefault(name, {"action": action.name, "shape": tuple(feats[0].shape), "max": [], "same": [],
                                                "err": 0.0, "valid": 0, "total": 0})
                    for a, f in zip(moved, feats):
                        t = action(f, g)
                        if not isinstance(t, Tensor) or t.shape != a.shape:
                            raise ValueError(f"layer {name!r}: g.f(x) has shape {tuple(getattr(t, 'shape', ()))} but "
                                             f"f(g.x) has {tuple(a.shape)}; wrong action {action.name!r} for this layer?")
                        rho, valid = channel_correlations(a, t, component_dims=action.component_dims,
                                                          per_sample=per_sample)
                        s["max"].append(rho.amax(-1)[valid])
                        s["same"].append(torch.diagonal(rho, dim1=-2, dim2=-1)[valid])
                        s["valid"] += int(valid.sum())
                        s["total"] += valid.numel()
                        s["err"] = max(s["err"], _rel(a, t))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    rows = []
    for name in selected:
        if name not in stats:
            continue
        s = stats[name]
        mx, same = torch.cat(s["max"]), torch.cat(s["same"])
        nan = float("nan")
        rows.append(LayerEquivariance(name=name, module=type(modules[name]).__name__, action=s["action"], shape=s["shape"],
                                      measure=mx.mean().item() if mx.numel() else nan,
                                      same_channel=same.mean().item() if same.numel() else nan,
                                      relative_error=s["err"], excluded=1 - s["valid"] / max(s["total"], 1)))
    return EquivarianceReport(group=grp.name, num_elements=len(elements), num_inputs=x.shape[0],
                              output_error=worst_out, layers=rows)
