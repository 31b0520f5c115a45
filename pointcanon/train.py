"""Training and evaluation of (canonicalized) point-cloud classifiers.

Every random choice (shuffling, augmentation, dropout) is derived from ``(seed, epoch, step)``, so a
run resumed from any checkpoint continues exactly as the uninterrupted run would.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .distributed import DistContext
from .loader import batch_loader
from .core.io import atomic_write, load_checkpoint, save_checkpoint, write_json
from .config import AUGMENTATIONS, PROTOCOLS, TrainConfig, parse_rotation
from .core.groups import apply_rigid, random_rotations, rotation_about_axis
from .core.result import Canonicalization
from .models import build_model, load_canonicalizer_weights, load_pretrained_backbone
from .nn import CanonicalizedModel
from .options import options
from .tasks import get_task

DEFAULT_PRIOR = {"none": "identity", "z": "upright", "SO3": "none"}  # by the backbone's training rotation


def with_dataset_facts(cfg: TrainConfig, dataset) -> TrainConfig:
    """``cfg`` with what the dataset says about itself and the user did not set: the frame axes of a VN
    canonicalizer (``dataset.frame_axes``, e.g. ``"zx"`` for ShapeNetPart mapped to z-up), for the kinds that
    take an ``axes`` option."""
    axes = getattr(dataset, "frame_axes", None)
    takes_axes = cfg.canonicalizer in options("canonicalizer")["axes"].defaults
    if axes and takes_axes and "axes" not in cfg.canonicalizer_kwargs:
        cfg = dataclasses.replace(cfg, canonicalizer_kwargs={**cfg.canonicalizer_kwargs, "axes": axes})
    return cfg


def _train_mode(model: nn.Module, cfg: TrainConfig) -> None:
    model.train()
    if cfg.freeze_backbone:
        model.backbone.eval()  # a frozen backbone keeps its batch-norm statistics
    if cfg.freeze_canonicalizer:
        model.canonicalizer.eval()


def _param_groups(model: nn.Module, cfg: TrainConfig):
    if cfg.freeze_canonicalizer:
        for p in model.canonicalizer.parameters():
            p.requires_grad_(False)
        return [{"params": list(model.backbone.parameters()), "lr": cfg.backbone_lr or cfg.lr}]
    if not cfg.pretrained:
        return [{"params": list(model.parameters()), "lr": cfg.lr}]
    for p in model.backbone.parameters():
        p.requires_grad_(not cfg.freeze_backbone)
    groups = [{"params": list(model.canonicalizer.parameters()), "lr": cfg.lr}]
    if not cfg.freeze_backbone:
        groups.append({"params": list(model.backbone.parameters()), "lr": cfg.backbone_lr or cfg.lr})
    return groups


def _generator(*parts: int) -> torch.Generator:
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**62)
    return torch.Generator().manual_seed(seed)


def rotate_batch(x: Tensor, rotation: str, generator: torch.Generator, positions: Tensor | None = None,
                 global_size: int | None = None) -> Tensor:
    """Rotate every cloud of ``x`` ``(B, N, 3)`` by its own random element of ``rotation``
    (``"none"``, ``"z"`` about the up axis z, or ``"SO3"``). Under data parallelism, the rotations of
    the whole global batch (``global_size``) are drawn and each rank takes those at its ``positions``,
    so that every shape gets the rotation it would get in a single process."""
    group = parse_rotation(rotation)
    if group == "none":
        return x
    rots = random_rotations(global_size or x.shape[0], group, generator=generator, dtype=x.dtype)
    if positions is not None:
        rots = rots[positions]
    return apply_rigid(x, rots.to(x.device))


def augment_batch(x: Tensor, augment: str, generator: torch.Generator, positions: Tensor | None = None,
                  global_size: int | None = None) -> Tensor:
    """``x`` ``(B, N, 3)`` changed by the training augmentation ``augment`` (:data:`AUGMENTATIONS`):
    ``"scale-shift"`` scales each cloud by its own factors U(2/3, 3/2) per axis and shifts it by
    U(-0.2, 0.2) per axis; ``"none"`` returns ``x``. Drawn for the whole global batch, as in
    :func:`rotate_batch`, so that data parallelism gives each shape the same change."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    if augment == "none":
        return x
    n = global_size or x.shape[0]
    scale = torch.empty(n, 1, 3, dtype=torch.float64).uniform_(2 / 3, 3 / 2, generator=generator)
    shift = torch.empty(n, 1, 3, dtype=torch.float64).uniform_(-0.2, 0.2, generator=generator)
    if positions is not None:
        scale, shift = scale[positions], shift[positions]
    return x * scale.to(x) + shift.to(x)


def _forward(model: nn.Module, x: Tensor, args: tuple) -> tuple[Tensor, Canonicalization | None]:
    """The output of ``model`` on ``x`` and, for a canonicalized model, its canonicalizer's result."""
    if isinstance(getattr(model, "module", model), CanonicalizedModel):  # plain or wrapped in DDP
        return model(x, *args, return_canonicalization=True)
    return model(x, *args), None


def protocol_rotations(n: int, protocol: str, seed: int = 0) -> Tensor:
    """The fixed rotations ``(n, 3, 3)`` that :func:`evaluate` gives the ``n`` shapes of a dataset under
    ``protocol`` (``"upright"``, ``"z"`` or ``"SO3"``) and ``seed``."""
    protocol = parse_rotation(protocol, PROTOCOLS, "protocol")
    return random_rotations(n, "none" if protocol == "upright" else protocol, generator=_generator(seed, 7919))


@torch.no_grad()
def evaluate(model: nn.Module, dataset, protocol: str = "upright", *, batch_size: int = 64, seed: int = 0,
             rotation: Tensor | None = None, progress: bool = False, dist: DistContext | None = None) -> dict:
    """Metrics of ``model`` on ``dataset`` under a rotation protocol: accuracy and mean class accuracy
    (classification) or instance / class mIoU and point accuracy (part segmentation).

    ``protocol``: ``"upright"``, ``"z"`` (random about z) or ``"SO3"`` (any case); each shape gets its own
    fixed rotation drawn from ``seed`` (independent of ``batch_size``). ``rotation`` ``(3, 3)`` overrides
    it with one rotation applied to every shape.
    """
    protocol = parse_rotation(protocol, PROTOCOLS, "protocol")
    dist = dist or DistContext()
    task = get_task(getattr(dataset, "task", "cls"))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(dataset)
    rots = protocol_rotations(n, protocol, seed)
    mine = torch.arange(dist.rank, n, dist.world)  # each rank evaluates a shard
    parts: dict[str, list[Tensor]] = {}
    for start in tqdm(range(0, len(mine), batch_size), desc=f"eval {protocol}", disable=None if progress else True, leave=False):
        idx = mine[start:start + batch_size]
        x, args, target = task.collate(dataset, idx)
        r = rotation.expand(len(x), 3, 3) if rotation is not None else rots[idx]
        args = tuple(a.to(device) for a in args)
        out = model(apply_rigid(x, r.to(x.dtype)).to(device), *args)
        for k, v in task.eval_batch(out, args, target, dataset).items():
            parts.setdefault(k, []).append(v)
    model.train(was_training)
    return task.summary({k: dist.gather(torch.cat(v)) for k, v in parts.items()}, dataset)


def accuracy_vs_angle(model: nn.Module, dataset, angles_deg, *, axis: str = "x", batch_size: int = 64) -> list[float]:
    """Accuracy when every shape is rotated by each angle (degrees) about ``axis``."""
    return [evaluate(model, dataset, rotation=rotation_about_axis(math.radians(a), axis), batch_size=batch_size)["acc"]
            for a in angles_deg]


def train(cfg: TrainConfig, train_set, test_set=None, *, out: str | Path | None = None, resume: bool = False,
          progress: bool = True, log=print, stop_after_steps: int | None = None,
          dist: DistContext | None = None, num_workers: int = 0) -> tuple[nn.Module, list[dict]]:
    """Train a classifier; returns the (unwrapped) model and the per-epoch history.

    With ``out``, writes ``config.json``, ``metrics.jsonl`` (one JSON object per epoch) and ``last.pt``
    (atomically, rank 0 only) there; ``resume=True`` continues from ``out/last.pt``.
    ``stop_after_steps`` stops after that many optimizer steps (to test resuming).
    Batches come from a :func:`pointcanon.loader.batch_loader` with ``num_workers`` processes (pinned
    memory on CUDA); the result is the same for any ``num_workers``.

    Data parallel (``dist`` from :func:`pointcanon.distributed.init_from_env`): ``cfg.batch_size`` is the
    *global* batch, split evenly over the ranks; every global batch holds the same shapes, with the same
    augmentation, as in a single process. Batch-norm statistics and dropout masks are per rank, so
    results match a single process closely, not bit for bit.
    """
    if getattr(train_set, "task", "cls") != cfg.task:
        raise ValueError(f"task {cfg.task!r} does not match the dataset {train_set!r}")
    cfg.validate()
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    dist = dist or DistContext()
    if cfg.batch_size % dist.world:
        raise ValueError(f"batch_size {cfg.batch_size} (global) must be divisible by the {dist.world} processes")
    local_bs = cfg.batch_size // dist.world
    task = get_task(cfg.task)
    sizes = task.sizes(train_set)
    cfg = with_dataset_facts(cfg, train_set)
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    model = build_model(cfg, sizes)
    if cfg.pretrained:
        load_pretrained_backbone(model, cfg.pretrained)
    if cfg.canonicalizer_weights:
        load_canonicalizer_weights(model, cfg.canonicalizer_weights)
    model.to(dist.device)
    opt = torch.optim.Adam(_param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr * 0.01)
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=dist.world, rank=dist.rank, shuffle=True,
                                                  seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // local_bs
    if steps_per_epoch == 0:
        raise ValueError(f"the training set has {len(train_set)} shapes, fewer than one batch of {cfg.batch_size}")
    out = Path(out) if out is not None else None
    writes = out is not None and dist.is_main
    epoch, step, history, done = 0, 0, [], 0
    sums = {"loss": 0.0, "prior": 0.0, "correct": 0.0, "seen": 0}  # this rank's running sums of the epoch
    if resume:
        if out is None:
            raise ValueError("resume needs an output folder")
        state = load_checkpoint(out / "last.pt", map_location=dist.device)
        if dist.is_main:  # temporary files of a process killed while writing
            for stale in out.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        saved = dataclasses.asdict(TrainConfig.from_checkpoint(state, out / "last.pt"))
        if saved != dataclasses.asdict(cfg):
            diff = {k: (saved.get(k), v) for k, v in dataclasses.asdict(cfg).items() if saved.get(k) != v}
            raise ValueError(f"cannot resume {out}: its config differs in {diff} (saved, given)")
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            epoch, step, history, world = state["epoch"], state["step"], state["history"], state["world"]
            if world != dist.world:
                raise ValueError(f"{out / 'last.pt'} was written by {world} processes; resume with as many")
            sums = state["epoch_sums"][dist.rank]
        except (KeyError, IndexError, TypeError, RuntimeError) as e:
            raise ValueError(f"cannot resume from {out / 'last.pt'}: it is incomplete or of another version "
                             f"({type(e).__name__}: {e})") from None
        log(f"resuming {out} at epoch {epoch + 1}, step {step}")
    elif writes:
        write_json(out / "config.json", dataclasses.asdict(cfg))
    try:
        runner = model
        if dist.active:
            runner = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)

        def checkpoint(epoch_, step_):
            if out is None:
                return
            all_sums = _gather_objects(dist, dict(sums))
            if dist.is_main:
                save_checkpoint(out / "last.pt", {"config": dataclasses.asdict(cfg), "model": model.state_dict(),
                                                  "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                                  "epoch": epoch_, "step": step_, "history": history,
                                                  "epoch_sums": all_sums, "world": dist.world,
                                                  "sizes": sizes,
                                                  "classes": list(getattr(train_set, "classes", []))})
            dist.barrier()

        while epoch < cfg.epochs:
            _train_mode(model, cfg)
            sampler.set_epoch(epoch)
            local = list(sampler)
            seeds = [_generator(cfg.seed, epoch, s, 1, dist.rank).initial_seed() for s in range(steps_per_epoch)]
            keys = [(seeds[s], local[s * local_bs:(s + 1) * local_bs]) for s in range(step, steps_per_epoch)]
            batches = batch_loader(train_set, task.collate, keys, num_workers=num_workers,
                                   pin_memory=dist.device.type == "cuda")
            t0 = time.time()
            bar = tqdm(zip(range(step, steps_per_epoch), batches), total=steps_per_epoch - step,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None if progress and dist.is_main else True, leave=False)
            for step, (x, args, y) in bar:
                torch.manual_seed(seeds[step])  # dropout (the batch's transforms were seeded by the loader)
                positions = torch.arange(local_bs) * dist.world + dist.rank  # places in the global batch
                x = augment_batch(x, cfg.augment, _generator(cfg.seed, epoch, step, 3), positions, cfg.batch_size)
                x = rotate_batch(x, cfg.train_rotation, _generator(cfg.seed, epoch, step, 2), positions, cfg.batch_size)
                x, y, args = x.to(dist.device), y.to(dist.device), tuple(a.to(dist.device) for a in args)
                output, canon = _forward(runner, x, args)
                task_loss = task.loss(output, y)
                if canon is None:  # no canonicalizer
                    prior = task_loss.new_zeros(())
                else:  # the kind's own prior term (Canonicalizer.prior_loss), from the forward's result
                    prior = model.canonicalizer.prior_loss(x, cfg.prior, canon, train_rotation=cfg.train_rotation)
                loss = task_loss + cfg.prior_weight * prior
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                correct, count = task.correct(output, y)
                sums["loss"] += task_loss.item() * len(y)
                sums["prior"] += prior.item() * len(y)
                sums["correct"] += correct / count * len(y)
                sums["seen"] += len(y)
                bar.set_postfix(loss=f"{task_loss.item():.3f}")
                done += 1
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps_per_epoch:
                    checkpoint(epoch, step + 1)
                if stop_after_steps is not None and done >= stop_after_steps:
                    checkpoint(epoch, step + 1)
                    return model, history
            sched.step()
            loss_sum, prior_sum, correct, seen = dist.sum([sums["loss"], sums["prior"], sums["correct"], sums["seen"]])
            seen = max(seen, 1)
            record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                      "prior": prior_sum / seen, "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 2)}
            if test_set is not None and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                metrics = evaluate(model, test_set, "upright", batch_size=max(local_bs, 32), dist=dist)
                record.update({f"test_upright_{k}": v for k, v in metrics.items()})
            history.append(record)
            if dist.is_main:
                log(json.dumps(record))
            epoch, step = epoch + 1, 0
            sums = {"loss": 0.0, "prior": 0.0, "correct": 0.0, "seen": 0}
            checkpoint(epoch, 0)
            if writes:
                atomic_write(out / "metrics.jsonl",
                             lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in history)))
        if cfg.epochs == 0 and not resume:  # assembled, not trained
            checkpoint(0, 0)
        return model, history
    except BaseException:
        if writes and not resume and not (out / "last.pt").exists():  # nothing saved: leave no half-run
            (out / "config.json").unlink(missing_ok=True)
        raise


def _gather_objects(dist: DistContext, obj) -> list:
    if not dist.active:
        return [obj]
    parts = [None] * dist.world
    torch.distributed.all_gather_object(parts, obj)
    return parts


