"""``pointcanon measure``: the learned-equivariance measure of every layer of a trained point-cloud model
(see :mod:`pointcanon.core.equivariance` for the formula), printed as a table and plotted; and
:func:`frame_scores`, how well a canonicalizer stands upright shapes up (the scores of the scripts that
train, score and tune canonicalizers, on the test splits of :data:`UPRIGHT_DATASETS`).

Vector-neuron layers (the canonicalizer) are compared under ``f(g.x)`` vs ``R f(x)`` on their xyz axis;
every other layer (per-point scalars ``(B, C, N)``, pooled features, logits) is expected to be invariant.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from .core.io import atomic_write, check_output_file, not_a_file, safe_load, write_json
from .core.actions import INVARIANT, VN_FEATURES
from .core.equivariance import EquivarianceReport, actions_by_type, evaluate_equivariance
from .datasets import ModelNet40HDF5, ShapeNetPartHDF5
from .nn.approximate import ApproximateVNCanonicalizer, FixedInputs
from .nn.backbones import TNet
from .nn.vn import VNBatchNorm, VNCross, VNLeakyReLU, VNLinear, VNMaxPool

# Modules whose outputs are VN features (B, C, 3, ...); VNInvariant and the BatchNorm1d inside VNBatchNorm
# (vector lengths) produce invariants and fall through to the default. PointNet's T-Net outputs a 3x3
# transform of the input, neither a feature map nor invariant: it is skipped (its layers are measured).
POINT_LAYER_ACTIONS = actions_by_type({TNet: None, VNLinear: VN_FEATURES, VNLeakyReLU: VN_FEATURES,
                                       VNBatchNorm: VN_FEATURES, VNMaxPool: VN_FEATURES, VNCross: VN_FEATURES,
                                       FixedInputs: VN_FEATURES},
                                      default=INVARIANT)

# upright datasets the canonicalizer scripts train and score on: name -> (reader, default folder, relative to
# the working directory (the repository root: the shared copy), description); both readers give z-up points
UPRIGHT_DATASETS = {
    "modelnet40": (ModelNet40HDF5, "../shared/data/modelnet40_hdf5_1024",
                   "ModelNet40 train split (9,843 upright shapes, 1,024 points, z up)"),
    "shapenetpart": (ShapeNetPartHDF5, "../shared/data/shapenet_part_pseudo_hdf5_2048",
                     "ShapeNetPart train split of the shared copy (2,151 shapes, 2,048 points, y up mapped to z up)"),
}


def frame_scores(canon, points: Tensor, batch: int = 256) -> dict[str, float]:
    """Up-axis and full-frame agreement of ``canon`` on upright clouds ``(n, N, 3)`` (``canon`` is put in
    eval mode): the share of canonical up axes within 10 / 20 deg of the input's z and their median angle,
    the share of frames within 15 deg (geodesic) of the identity and their median angle."""
    canon.eval()
    with torch.no_grad():
        frames = torch.cat([canon(points[i:i + batch]).frame for i in range(0, len(points), batch)])
    up = torch.rad2deg(torch.acos(frames[:, 2, 2].clamp(-1, 1)))  # canonical z axis vs the input's z
    cos = ((frames.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    full = torch.rad2deg(torch.acos(cos))
    return {"shapes": len(points), "up_within_10deg": (up < 10).double().mean().item(),
            "up_within_20deg": (up < 20).double().mean().item(), "median_up_angle_deg": up.median().item(),
            "frame_within_15deg": (full < 15).double().mean().item(), "median_frame_angle_deg": full.median().item()}


def load_model(path) -> tuple[nn.Module, object, dict]:
    """Rebuild a checkpoint's model in eval mode (``vn-approx`` included): ``(model, TrainConfig, state)``."""
    from .models import load_model as load_train_model

    return load_train_model(path)


def measure_point_model(model: nn.Module, points: Tensor, *, args: tuple = (), group: str = "SO3", num_samples: int = 4,
                        layers: Sequence[str] | None = None, dtype: torch.dtype | None = torch.float64,
                        seed: int = 0) -> EquivarianceReport:
    """Invariance error of the output and the per-layer measure of a point-cloud model on ``points``
    ``(B, N, 3)`` under ``group`` (``"SO3"``, ``"z"``, ``"O3"``, ...): VN layers must rotate, the rest
    must be invariant. ``B >= 2`` (pooled layers are correlated over the batch)."""
    return evaluate_equivariance(model, points, group=group, args=args, output_action=INVARIANT,
                                 layer_actions=POINT_LAYER_ACTIONS, layers=layers, num_samples=num_samples, dtype=dtype,
                                 generator=torch.Generator().manual_seed(seed))


def plot_reports(reports: Mapping[str, EquivarianceReport], path, *, title: str = "") -> Path:
    """One line per model: the measure (solid) and the same-channel variant (dashed) of every layer in
    forward order; layer names on the x axis when a single model is plotted. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not reports:
        raise ValueError("nothing to plot: no reports given")
    most = max(len(r.layers) for r in reports.values())
    fig, ax = plt.subplots(figsize=(max(6.0, min(18.0, 0.22 * most + 3)), 4.2))
    for i, (name, rep) in enumerate(reports.items()):
        color = f"C{i}"
        xs = list(range(len(rep.layers)))
        ax.plot(xs, [lay.measure for lay in rep.layers], "-o", ms=3, color=color,
                label=f"{name} (mean {rep.mean('measure'):.3f})")
        ax.plot(xs, [lay.same_channel for lay in rep.layers], "--", lw=1, color=color, alpha=0.6,
                label=f"{name}, same channel")
    if len(reports) == 1:
        rep = next(iter(reports.values()))
        ax.set_xticks(range(len(rep.layers)), [lay.name for lay in rep.layers], rotation=90, fontsize=6)
    else:
        ax.set_xlabel("layer (forward order)")
    ax.set_ylabel("learned equivariance")
    ax.set_ylim(min(-0.05, min((lay.same_channel for r in reports.values() for lay in r.layers
                                if not math.isnan(lay.same_channel)), default=0) - 0.05), 1.05)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "Learned equivariance per layer", fontsize=9)
    fig.tight_layout()
    path = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130))
    plt.close(fig)
    return path


def load_points(path) -> Tensor:
    """Point clouds ``(B, N, 3)`` from a ``.npy`` or ``.pt`` file (a single ``(N, 3)`` cloud is not enough:
    the measure needs a batch)."""
    from .core.validation import check_points

    path = Path(path)
    if not path.is_file():
        raise ValueError(not_a_file(path, "points file"))
    if path.suffix == ".npy":
        import numpy as np

        x = torch.from_numpy(np.load(path))
    elif path.suffix == ".pt":
        x = safe_load(path, "points file")
    else:
        raise ValueError(f"points file must be .npy or .pt, got {path.name}")
    if isinstance(x, Tensor) and x.is_floating_point():
        x = x.float() if x.dtype != torch.float64 else x
    return check_points(x, f"points in {path.name}")


def _test_batch(cfg, dataset: str | None, data_root: str | None, num_points: int | None, num_shapes: int):
    from .datasets import build_dataset
    from .tasks import get_task

    ds = build_dataset(dataset or cfg.dataset, data_root or cfg.data_root, "test", num_points or cfg.num_points)
    n = min(num_shapes, len(ds))
    idx = torch.linspace(0, len(ds) - 1, n).round().long().unique()  # spread over the test set (and classes)
    x, args, _ = get_task(cfg.task).collate(ds, idx)
    return x, args, ds


def run_measure(checkpoint, *, points: Tensor | None = None, args: tuple = (), dataset: str | None = None,
                data_root: str | None = None, num_points: int | None = None, num_shapes: int = 32, group: str = "SO3",
                num_samples: int = 4, layers: Sequence[str] | None = None, exact: bool = False,
                float32: bool = False, plot=None, json_path=None, seed: int = 0, overwrite: bool = False,
                log=print) -> EquivarianceReport:
    """Measure a checkpoint: print the per-layer table, write the plot (default ``CKPT.measure.png``) and
    a JSON (default ``CKPT.measure.json``), each replacing an existing file only with ``overwrite`` (checked
    before any work; never the checkpoint). ``points`` ``(B, N, 3)`` overrides the test shapes (else
    ``num_shapes`` shapes spread over the checkpoint's test set); ``exact`` zeroes the fixed inputs of an
    approximate canonicalizer."""
    if num_shapes < 2 and points is None:
        raise ValueError(f"num_shapes must be at least 2 (pooled layers are correlated over the batch), got {num_shapes}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be a positive number of group elements, got {num_samples}")
    ckpt = Path(checkpoint)
    plot = Path(plot if plot else ckpt.with_suffix(".measure.png")).expanduser()
    json_path = Path(json_path if json_path else ckpt.with_suffix(".measure.json")).expanduser()
    if len({ckpt.resolve(), plot.resolve(), json_path.resolve()}) < 3:
        raise ValueError(f"--plot {plot} and --json {json_path} must be two files other than the checkpoint {ckpt}")
    plot = check_output_file(plot, "--plot", overwrite=overwrite)
    json_path = check_output_file(json_path, "--json", overwrite=overwrite)
    model, cfg, _ = load_model(checkpoint)
    canon = getattr(model, "canonicalizer", None)
    if exact:
        if not isinstance(canon, ApproximateVNCanonicalizer):
            raise ValueError(f"--exact needs a checkpoint with an approximate canonicalizer, {checkpoint} has "
                             f"canonicalizer {cfg.canonicalizer!r}")
        canon.exact = True
    source = "given points"
    if points is not None and points.shape[0] < 2:
        raise ValueError(f"need at least 2 point clouds (pooled layers are correlated over the batch), got {points.shape[0]}")
    if points is None:
        points, args, ds = _test_batch(cfg, dataset, data_root, num_points, num_shapes)
        source = repr(ds)
    report = measure_point_model(model, points, args=args, group=group, num_samples=num_samples, layers=layers,
                                 dtype=torch.float32 if float32 else torch.float64, seed=seed)
    name = Path(checkpoint).name
    log(f"{name}: {cfg.backbone} + canonicalizer {cfg.canonicalizer!r}{' (exact mode)' if exact else ''}, "
        f"{points.shape[0]} shapes from {source}")
    log(report.table())
    plot_reports({f"{cfg.backbone}+{cfg.canonicalizer}": report}, plot,
                 title=f"{name}: learned equivariance under {group} ({points.shape[0]} shapes)")
    write_json(json_path, {"checkpoint": str(checkpoint), "exact": exact, **report.to_dict()})
    log(f"wrote {plot} and {json_path}")
    return report
