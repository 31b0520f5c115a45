"""Fitting a canonicalizer with a prior alone on upright shapes, and scoring it (``pointcanon
fit-canonicalizer``; recipes in ``configs/canonicalizer_*.json``).

:class:`FitConfig` holds every choice of a fit; its defaults are the recipe of the shipped weights
(``pointcanon/weights/upright_modelnet40.pt``). :func:`fit_canonicalizer` trains and scores it and writes a
canonicalizer file (:func:`~pointcanon.models.save_canonicalizer`), never into the installed package and never
over an existing file unless asked.

``kind="candidate"``: :class:`~pointcanon.nn.CandidateCanonicalizer` trained with its ``fit_loss`` (scorer
cross-entropy + refinement prior). ``kind="vn"``: the VNCanonicalizer regressing the frame under the prior
loss. Each step draws a batch of training shapes, a random subset of their points (``min_points`` to all) and
a small jitter, so that the canonicalizer does not depend on one sampling of the surface. The canonicalizer is
exactly equivariant, so training on upright shapes is all it needs: a rotated copy gets the rotated frame.

Scores on the test split (the file's ``info["test"]``): the angle between the canonical up axis and the true
up (z), within 10 / 20 deg and median, and the geodesic angle between the frame and the identity (within
15 deg; meaningful for ``prior="identity"``). The learning curve (``info["curve"]``, every ``eval_every``
steps and at the last step) keeps one protocol throughout: every ~4th test shape, one point subset; the final
figure is on all test shapes with ``views`` subsets, so compare it with the curve's last point, not its trend.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from .measure import UPRIGHT_DATASETS, frame_scores

PACKAGE_DIR = Path(__file__).resolve().parent  # the installed package: never written into
DEFAULT_OUT = "runs/canon/upright.pt"
FitDataset = Literal[tuple(UPRIGHT_DATASETS)]
FitKind = Literal["candidate", "vn"]
FitPrior = Literal["upright", "identity"]
Pooling = Literal["max", "max+mean"]  # = pointcanon.nn.candidates.POOLINGS (tests/test_fitting.py checks it)


@dataclass
class FitConfig:
    """The recipe of a canonicalizer fit (defaults: the shipped weights').

    Every choice of ``pointcanon fit-canonicalizer``; the docstring under each field is its ``--help``."""

    dataset: FitDataset = "modelnet40"
    """the upright shapes to train on (train split) and to score on (test split)"""
    data_root: str | None = None
    """dataset folder (default: the shared copy of --dataset)"""
    kind: FitKind = "candidate"
    """candidate (CandidateCanonicalizer, fit_loss) or vn (VNCanonicalizer regressing the frame)"""
    prior: FitPrior = "upright"
    """upright (the up axis only; yaw a tie-break) or identity (the full frame)"""
    steps: int = 20000
    """training steps (cosine decay of the learning rate over them)"""
    batch_size: int = 32
    """training shapes per step (at least 2)"""
    lr: float = 3e-3
    """Adam learning rate"""
    hidden: str | None = None
    """channels, comma separated (default: the class's)"""
    num_points: int = 128
    """points the network sees"""
    min_points: int = 256
    """fewest points of a training cloud"""
    jitter: float = 0.005
    """standard deviation of the Gaussian noise added to every training point"""
    refine: bool = False
    """candidate: add the learned correction M"""
    views: int = 2
    """candidate: point subsets scored at inference (training: 1)"""
    local_k: int = 10
    """candidate: neighbours of the local offset feature (0: none)"""
    normal_k: int = 16
    """candidate: neighbours (among all points) of the surface normal feature (0: none)"""
    pooling: Pooling = "max+mean"
    """candidate: max (extents) or max+mean (also densities along each axis)"""
    tilts: str | None = None
    """candidate: tilt grid in degrees, comma separated ('0': none; default: the class's)"""
    eval_every: int = 2000
    """score every ~4th test shape every N steps and at the last step (0: never)"""
    init: str | None = None
    """start from this canonicalizer file or shipped name (same kind and sizes; --num-points and --views may
    differ), e.g. to show it more points"""
    seed: int = 0
    """seed of the initial weights and of the batches"""
    threads: int = 2
    """torch CPU threads"""

    def __post_init__(self):
        for name in ("lr", "jitter"):  # a JSON 1 is the float 1.0
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
        lows = {"steps": 1, "batch_size": 2, "num_points": 1, "min_points": 1, "views": 1, "local_k": 0,
                "normal_k": 0, "eval_every": 0, "threads": 1}
        for name, low in {**lows, "seed": None}.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
                raise ValueError(f"{_flag(name)} must be an int" + (f" >= {low}" if low is not None else "")
                                 + f", got {value!r}")
        for name, positive in (("lr", True), ("jitter", False)):
            value = getattr(self, name)
            if not isinstance(value, float) or not math.isfinite(value) or value < 0 or (positive and value == 0):
                raise ValueError(f"{_flag(name)} must be a finite {'positive' if positive else 'non-negative'} "
                                 f"number, got {value!r}")
        choices = {"dataset": tuple(UPRIGHT_DATASETS), "kind": ("candidate", "vn"), "prior": ("upright", "identity"),
                   "pooling": ("max", "max+mean")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{_flag(name)} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.refine, bool):
            raise TypeError(f"--refine must be a bool, got {self.refine!r}")
        for name in ("data_root", "hidden", "tilts", "init"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"{_flag(name)} must be a string or None, got {getattr(self, name)!r}")
        self.hidden_sizes(), self.tilt_grid()  # parse now, before any work

    def hidden_sizes(self) -> tuple[int, ...] | None:
        """``hidden`` as channel counts (``None``: the class default)."""
        if not self.hidden:
            return None
        try:
            sizes = tuple(int(h) for h in self.hidden.split(","))
        except ValueError:
            sizes = ()
        if not sizes or min(sizes) < 1:
            raise ValueError(f"--hidden must be positive channel counts, comma separated, got {self.hidden!r}")
        return sizes

    def tilt_grid(self) -> tuple[float, ...] | None:
        """``tilts`` in degrees (``None``: the class default)."""
        if self.tilts is None:
            return None
        try:
            grid = tuple(float(t) for t in self.tilts.split(","))
        except ValueError:
            grid = ()
        if not grid or not all(math.isfinite(t) for t in grid):
            raise ValueError(f"--tilts must be angles in degrees, comma separated, got {self.tilts!r}")
        return grid


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build(cfg: FitConfig, views: int = 1) -> nn.Module:
    """The untrained canonicalizer of ``cfg``; a candidate one scores ``views`` point subsets (training: 1;
    the saved file: ``cfg.views``)."""
    from .nn import CandidateCanonicalizer, VNCanonicalizer

    hidden = cfg.hidden_sizes()
    sizes = {"hidden": hidden} if hidden else {}
    if cfg.kind == "vn":
        return VNCanonicalizer("SE3", num_points=cfg.num_points, **sizes)
    tilts = {} if cfg.tilts is None else {"tilts": cfg.tilt_grid()}
    return CandidateCanonicalizer("SE3", num_points=cfg.num_points, views=views, refine=cfg.refine,
                                  local_k=cfg.local_k, normal_k=cfg.normal_k, pooling=cfg.pooling, **sizes, **tilts)


def check_fit_output(out, overwrite: bool = False) -> Path:
    """``out`` as a file that may be written: never inside the installed package, never an existing file
    unless ``overwrite``, its folder writable. ``ValueError`` naming ``--out`` otherwise."""
    from .core.io import check_output_file

    path = Path(out).expanduser()
    if path.resolve().is_relative_to(PACKAGE_DIR):
        raise ValueError(f"--out {out} is inside the installed package ({PACKAGE_DIR}), e.g. the packaged weights: "
                         "write elsewhere and copy it deliberately")
    return check_output_file(path, "--out", overwrite=overwrite)


def _batch(train: torch.Tensor, cfg: FitConfig, g: torch.Generator) -> torch.Tensor:
    """A training batch ``(batch_size, n, 3)``: random shapes, a random subset of ``n`` of their points, jitter."""
    idx = torch.randint(0, len(train), (cfg.batch_size,), generator=g)
    n = int(torch.randint(min(cfg.min_points, train.shape[1]), train.shape[1] + 1, (1,), generator=g))
    keep = torch.randperm(train.shape[1], generator=g)[:n]
    x = train[idx][:, keep]
    return x + cfg.jitter * torch.randn(x.shape, generator=g)


def _spread(points: torch.Tensor, max_shapes: int | None) -> torch.Tensor:
    """``max_shapes`` of ``points`` spread evenly (as :class:`~pointcanon.datasets.Subsample`); all if None."""
    if max_shapes is None:
        return points
    n = len(points)
    return points[torch.linspace(0, n - 1, min(max_shapes, n)).round().long()]


def fit_canonicalizer(cfg: FitConfig, out=DEFAULT_OUT, *, progress: bool = True,
                      log: Callable[[str], None] | None = None, overwrite: bool = False, max_shapes: int | None = None,
                      command: str | None = None) -> tuple[nn.Module, dict]:
    """Train the canonicalizer of ``cfg`` with its prior alone, score it on the test split and write it to
    ``out`` with its ``info`` (recipe, scores, learning curve, ``command`` if given). ``max_shapes``: use that
    many shapes of each split, spread evenly (quick checks). Everything is checked (``out``, ``--init``)
    before any data is read. Runs on ``cfg.threads`` torch threads (restored afterwards).

    Returns ``(canonicalizer in eval mode, info)``."""
    from tqdm.auto import tqdm

    from .core import identity_prior, upright_prior
    from .models import load_canonicalizer, save_canonicalizer

    if not isinstance(cfg, FitConfig):
        raise TypeError(f"cfg must be a FitConfig, got {type(cfg).__name__}")
    if max_shapes is not None and (isinstance(max_shapes, bool) or not isinstance(max_shapes, int) or max_shapes < 1):
        raise ValueError(f"--max-shapes must be a positive number of shapes, got {max_shapes!r}")
    log = tqdm.write if log is None else log
    out = check_fit_output(out, overwrite)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        canon = build(cfg)
        init = None
        if cfg.init:
            init = load_canonicalizer(cfg.init)
            differ = {k for k in set(canon.hparams) | set(init.hparams) if k not in ("num_points", "views")
                      and canon.hparams.get(k) != init.hparams.get(k)}
            if type(init) is not type(canon) or differ:
                raise ValueError(f"--init {cfg.init} holds a {type(init).__name__} that differs in {sorted(differ)}; "
                                 "pass the same --kind/--hidden/--local-k/--normal-k/--pooling/--tilts/--refine")
            canon.load_state_dict(init.state_dict())
        reader, root, description = UPRIGHT_DATASETS[cfg.dataset]
        train = _spread(reader(cfg.data_root or root, "train").points, max_shapes)
        test = _spread(reader(cfg.data_root or root, "test").points, max_shapes)
        opt = torch.optim.Adam(canon.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
        g = torch.Generator().manual_seed(cfg.seed)
        curve = []
        t0 = time.time()
        bar = tqdm(range(cfg.steps), desc=f"{cfg.kind} / {cfg.prior} prior", mininterval=5,
                   disable=None if progress else True)
        for step in bar:
            canon.train()
            x = _batch(train, cfg, g)
            if cfg.kind == "candidate":
                loss = canon.fit_loss(x, cfg.prior)["loss"]
            else:
                frame = canon(x).frame
                loss = (upright_prior(frame, "z") if cfg.prior == "upright" else identity_prior(frame)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
                # one protocol along the whole curve, the last step included: every ~4th test shape, 1 point subset
                s = frame_scores(canon, test[::max(1, len(test) // 500)])
                curve.append({"step": step + 1, "seconds": round(time.time() - t0, 1), "views": 1, **s})
                log(f"step {step + 1}: up within 10 deg {100 * s['up_within_10deg']:.1f}% "
                    f"({s['shapes']} test shapes, 1 point subset)")
        seconds = time.time() - t0
        if cfg.kind == "candidate":
            canon.views = cfg.views
        scores = frame_scores(canon, test)  # the final figure: every test shape, cfg.views subsets (not on the curve)
    finally:
        torch.set_num_threads(threads)
    info = {"data": description, "kind": cfg.kind, "prior": cfg.prior, "steps": cfg.steps,
            "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed, "min_points": cfg.min_points,
            "jitter": cfg.jitter, "threads": cfg.threads, "train_seconds": round(seconds, 1),
            "parameters": sum(q.numel() for q in canon.parameters()), "test": scores, "curve": curve,
            **({"init": {"file": cfg.init, "steps": init.info.get("steps"),
                         "train_seconds": init.info.get("train_seconds")}} if init is not None else {}),
            **({"max_shapes": max_shapes} if max_shapes is not None else {}),
            "config": dataclasses.asdict(cfg), **({"command": command} if command else {})}
    save_canonicalizer(canon.eval(), out, info)
    log(f"wrote {out}: {info['parameters']} parameters, {seconds:.0f} s")
    log(f"{cfg.dataset} test ({len(test)} shapes): up axis within 10 deg {100 * scores['up_within_10deg']:.1f}%, "
        f"within 20 deg {100 * scores['up_within_20deg']:.1f}%, median {scores['median_up_angle_deg']:.1f} deg; "
        f"frame within 15 deg of the identity {100 * scores['frame_within_15deg']:.1f}%")
    return canon, info
