"""Training the canonicalizer on upright photos with the discrete prior of ``pointcanon.core``.

Each sample is an upright photo, augmented (random crop, horizontal flip, brightness / contrast: all
keep "up" up), then rotated by a random group element ``h``; the loss is
``discrete_prior(logits, one_hot(h))``, the KL towards "the element that undoes the rotation", i.e.
towards upright (element 0) in the canonical frame. For C4 the rotation is redundant (the logits roll
exactly with the photo), for C8 it also exposes the scorer to interpolated copies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pointcanon.core import discrete_prior

from .canonicalizer import ImageCanonicalizer, equivariant_argmax
from .geometry import ImageRotation

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_canonicalizer` (one place, saved in the checkpoint)."""

    order: int = 4
    size: int = 64
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_side: int = 192  # photos are shrunk once to this long side before augmentation
    min_crop: float = 0.6  # crops keep at least this fraction of each side
    seed: int = 0


def load_photos(folder, max_side: int = 192) -> tuple[list[np.ndarray], list[str]]:
    """Every image file in ``folder`` (sorted), as RGB uint8 shrunk to ``max_side``; grayscale and
    palette files are converted to RGB, alpha dropped (training only needs "which way is up")."""
    from PIL import Image, ImageOps

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    photos, names = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode in ("I;16", "I;16B", "I", "F"):
                    arr = np.asarray(im, dtype=np.float64)
                    im = Image.fromarray(np.clip(arr / max(arr.max(), 1) * 255, 0, 255).astype(np.uint8))
                im = im.convert("RGB")
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                photos.append(np.asarray(im).copy())
                names.append(p.name)
        except OSError as e:
            raise ValueError(f"cannot read image {p}: {e}") from None
    return photos, names


def augment(photo: np.ndarray, rng: np.random.Generator, min_crop: float) -> np.ndarray:
    """Random crop (each side >= ``min_crop`` of the photo), horizontal flip, brightness / contrast."""
    h, w = photo.shape[:2]
    ch = max(8, int(h * rng.uniform(min_crop, 1.0)))
    cw = max(8, int(w * rng.uniform(min_crop, 1.0)))
    top, left = rng.integers(0, h - min(ch, h) + 1), rng.integers(0, w - min(cw, w) + 1)
    out = photo[top:top + ch, left:left + cw].astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = (out - out.mean()) * rng.uniform(0.7, 1.3) + out.mean() + rng.uniform(-25, 25)
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))


def _small(model: ImageCanonicalizer, photo: np.ndarray) -> torch.Tensor:
    return model.downscale(torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1))


def train_canonicalizer(photos: list[np.ndarray], config: TrainConfig | None = None, *, progress: bool = True,
                        model: ImageCanonicalizer | None = None) -> tuple[ImageCanonicalizer, list[float]]:
    """Train a :class:`ImageCanonicalizer` (``scorer="conv"``) on upright RGB photos ``(H, W, 3)`` uint8.

    Returns the model (in eval mode) and the loss of every step.
    """
    cfg = config or TrainConfig()
    _check_steps(cfg)
    if not photos:
        raise ValueError("need at least one upright photo to train on")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = model or ImageCanonicalizer(order=cfg.order, size=cfg.size, scorer="conv")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    n, history = model.order, []
    bar = tqdm(range(cfg.steps), desc="train canonicalizer", disable=None if progress else True)
    for _ in bar:
        target = torch.from_numpy(rng.integers(0, n, cfg.batch_size))
        small = []
        for h in target.tolist():
            p = augment(photos[rng.integers(len(photos))], rng, cfg.min_crop)
            small.append(_small(model, ImageRotation.rotate(h, n, p.shape[:2]).apply_image(p)))
        logits = model.logits_from_small(torch.stack(small))
        loss = discrete_prior(logits, F.one_hot(target, n).to(logits.dtype)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(history[-20:]):.3f}")
    return model.eval(), history


@torch.no_grad()
def upright_accuracy(model: ImageCanonicalizer, photos: list[np.ndarray]) -> dict:
    """How often ``model`` recognises upright photos: ``upright`` = fraction of photos given index 0;
    ``all_rotations`` = fraction of (photo, element k) pairs whose rotated photo gets index k (equal to
    ``upright`` for C4, where the index moves exactly with the photo); ``chance`` = 1 / n."""
    model.eval()
    n = model.order
    hits = np.zeros((len(photos), n), dtype=bool)
    for i, p in enumerate(photos):
        small = torch.stack([_small(model, ImageRotation.rotate(k, n, p.shape[:2]).apply_image(p)) for k in range(n)])
        index, _ = equivariant_argmax(model.logits_from_small(small))
        hits[i] = index.numpy() == np.arange(n)
    return {"upright": float(hits[:, 0].mean()), "all_rotations": float(hits.mean()), "chance": 1.0 / n,
            "photos": len(photos), "per_photo_upright": hits[:, 0].tolist()}


def _check_steps(cfg: TrainConfig) -> None:
    if cfg.steps < 1 or cfg.batch_size < 1 or not math.isfinite(cfg.lr) or cfg.lr <= 0:
        raise ValueError(f"steps, batch_size and lr must be positive, got {cfg.steps}, {cfg.batch_size}, {cfg.lr}")
