"""A discrete-rotation canonicalizer for photos, equivariant by construction.

The photo is downscaled once (exact integer box sums, letterboxed onto an ``S x S`` canvas), its ``n``
rotated copies ``copy_k = rotate(small, -k)`` are scored by one small network, and ``logits[k]`` is the
score of ``copy_k`` ("how upright does the photo look after undoing element k"). Rotating the photo by
element ``m`` permutes the copies, so ``logits(rotate(x, m)) = roll(logits(x), m)``: exactly (bit for bit)
for multiples of 90 degrees, approximately for 45-degree steps (interpolation). The chosen element
``index = argmax`` then moves with the photo, ``index(rotate(x, m)) = index(x) + m (mod n)``.

Ties: ``index`` is the ``k`` whose cyclically shifted logits ``(l[k], l[k+1], ...)`` are
lexicographically largest, a rule that commutes with cyclic shifts. It only fails when the logit vector
is periodic (a photo with rotational symmetry); such inputs are flagged in ``degenerate``.

Trained with :func:`pointcanon.core.discrete_prior` towards element 0 on upright photos (the prior of
Mondal et al., NeurIPS 2023), see :mod:`image_seg.train`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointcanon.core.io import load_checkpoint, save_checkpoint
from pointcanon.core import Canonicalization, cyclic_rotations

from .geometry import ImageRotation, check_order
from .validation import check_image

CHECKPOINT_KIND = "image_seg.canonicalizer"


class ConvScorer(nn.Module):
    """Learned uprightness score: ``(B, 3, S, S)`` in [0, 1] -> ``(B,)``.

    Four stride-2 3x3 convolutions with GroupNorm (per-sample, so a score never depends on the rest of
    the batch) and a small MLP on the flattened ``S/16 x S/16`` map, which keeps the spatial layout
    (sky above, ground below) that global pooling would lose.
    """

    def __init__(self, size: int = 64, widths: tuple[int, ...] = (16, 32, 64, 64), hidden: int = 64):
        super().__init__()
        if size % (2 ** len(widths)):
            raise ValueError(f"size must be a multiple of {2 ** len(widths)}, got {size}")
        layers, c = [], 3
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(min(4, w), w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        side = size // 2 ** len(widths)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features((x - 0.45) / 0.25)).squeeze(-1)


class SkyScorer(nn.Module):
    """Training-free uprightness score ``(B, 3, S, S) -> (B,)``: brightness and blueness weighted by a
    ramp from +1 (top row) to -1 (bottom row). Upright outdoor photos have sky above; a weak default."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.register_buffer("ramp", torch.linspace(1.0, -1.0, size).view(1, size, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        r, g, b = x.unbind(1)
        signal = (0.299 * r + 0.587 * g + 0.114 * b) + (b - (r + g) / 2)
        return 10 * (signal * self.ramp).mean((-1, -2))


SCORERS = {"conv": ConvScorer, "sky": SkyScorer}


def _bins(n_in: int, n_out: int) -> tuple[Tensor, Tensor]:
    """Adaptive-pooling bins ``[start, end)``; mirror-symmetric, so pooling commutes with flips."""
    i = torch.arange(n_out)
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


def exact_box_downscale(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-average ``(3, H, W)`` uint8 to ``(3, h, w)`` float32 in [0, 1] with exact integer sums, so
    that downscaling commutes bit for bit with 90-degree rotations and flips."""
    rs, re = _bins(image.shape[1], size[0])
    cs, ce = _bins(image.shape[2], size[1])
    c = F.pad(image.to(torch.int32).cumsum(1), (0, 0, 1, 0))  # (3, H+1, W), 255 * H fits in int32
    rows = (c[:, re] - c[:, rs]).to(torch.int64)  # (3, h, W)
    c = F.pad(rows.cumsum(2), (1, 0))
    sums = c[:, :, ce] - c[:, :, cs]  # (3, h, w)
    count = (re - rs).view(-1, 1) * (ce - cs).view(1, -1)
    return (sums.double() / (count * 255).double()).float()


class ImageCanonicalizer(nn.Module):
    """Picks the element of ``C_n`` (n = 4 or 8; 1 and 2 work too) that turns a photo upright.

    Args:
        order: ``n``; element k rotates by ``k * 360 / n`` degrees counter-clockwise.
        size: side ``S`` of the downscaled copy the scorer sees.
        scorer: ``"conv"`` (learned, :class:`ConvScorer`), ``"sky"`` (:class:`SkyScorer`) or a module
            ``(B, 3, S, S) -> (B,)``.

    Shapes:
        forward: images ``(B, 3, H, W)`` uint8 -> :class:`pointcanon.core.Canonicalization` with
        ``frame`` ``(B, 2, 2)`` (``cyclic_rotations(n)[index]``, acting on centred y-up coordinates),
        ``logits`` ``(B, n)``, ``index`` ``(B,)``, ``degenerate`` ``(B,)`` (periodic logits: no
        equivariant choice), ``conditioning`` ``(B,)`` (top-1 minus top-2 probability), ``canonical``:
        the photos rotated by ``-index``, ``(B, 3, H', W')``, or a tuple of ``(3, H_b, W_b)`` when
        their shapes differ.
    """

    def __init__(self, order: int = 4, size: int = 64, scorer: str | nn.Module = "conv", **scorer_kwargs):
        super().__init__()
        self.order = check_order(order)
        if size < 8 or size % 2:
            raise ValueError(f"size must be an even number >= 8, got {size}")
        self.size = int(size)
        if isinstance(scorer, str):
            if scorer not in SCORERS:
                raise ValueError(f"unknown scorer {scorer!r}; expected one of {sorted(SCORERS)} or a module")
            self.scorer_name, self.scorer_kwargs = scorer, dict(scorer_kwargs)
            scorer = SCORERS[scorer](size=size, **scorer_kwargs)
        else:
            self.scorer_name, self.scorer_kwargs = None, {}
        self.scorer = scorer
        c = (torch.arange(size) + 0.5 - size / 2) ** 2
        disk = (c.view(-1, 1) + c.view(1, -1)) <= (size / 2) ** 2
        self.register_buffer("disk", disk.float(), persistent=False)
        self.register_buffer("_rot45", self._rotation_grid(size), persistent=False)

    @staticmethod
    def _rotation_grid(size: int) -> Tensor:
        """``grid_sample`` grid rotating an ``S x S`` image by -45 degrees (clockwise) about its centre."""
        th = math.radians(-45.0)
        theta = torch.tensor([[math.cos(th), -math.sin(th), 0.0], [math.sin(th), math.cos(th), 0.0]], dtype=torch.float64)
        # output pixel (x, y) samples input at R(theta) (x, y) in normalised coordinates (y down)
        return F.affine_grid(theta[None], (1, 1, size, size), align_corners=False).float()

    def config(self) -> dict:
        if self.scorer_name is None:
            raise ValueError("a canonicalizer with a custom scorer module cannot be saved by config")
        return {"order": self.order, "size": self.size, "scorer": self.scorer_name, **self.scorer_kwargs}

    def downscale(self, image: Tensor) -> Tensor:
        """``(3, H, W)`` uint8 -> ``(3, S, S)`` in [0, 1]: aspect kept, centred on a black canvas."""
        if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise TypeError(f"expected a (3, H, W) uint8 tensor, got {getattr(image, 'dtype', type(image).__name__)} "
                            f"{tuple(getattr(image, 'shape', ()))}")
        h, w = image.shape[1:]
        s = self.size
        scale = s / max(h, w)
        hh, ww = (max(2, min(s, 2 * round(v * scale / 2))) for v in (h, w))  # same parity as S: exact centring
        small = exact_box_downscale(image, (hh, ww))
        top, left = (s - hh) // 2, (s - ww) // 2
        return F.pad(small, (left, s - ww - left, top, s - hh - top))

    def orbit(self, small: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> the copies ``rotate(small, -k)``, ``(B, n, 3, S, S)``. Quarter turns
        are exact; for C8 the odd copies are bilinear and every copy is cut to the inscribed disk, so
        that no copy shows corners the others lack."""
        n = self.order
        copies = []
        for k in range(n):
            q, r = divmod((k * 8 // n) % 8, 2)
            c = torch.rot90(small, -q, dims=(-2, -1))
            if r:
                grid = self._rot45.to(small.dtype).expand(small.shape[0], -1, -1, -1)
                c = F.grid_sample(c, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            copies.append(c)
        out = torch.stack(copies, 1)
        return out * self.disk if n == 8 else out

    def logits_from_small(self, small: Tensor) -> Tensor:
        """Scores of the orbit copies, ``(B, 3, S, S)`` -> ``(B, n)``."""
        b = small.shape[0]
        copies = self.orbit(small)
        return self.scorer(copies.flatten(0, 1)).view(b, self.order)

    def forward(self, images) -> Canonicalization:
        if isinstance(images, Tensor) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, (list, tuple)) or not images:
            raise TypeError("images must be a (B, 3, H, W) uint8 tensor or a non-empty list of (3, H, W) uint8 tensors")
        small = torch.stack([self.downscale(im) for im in images])
        logits = self.logits_from_small(small)
        index, degenerate = equivariant_argmax(logits)
        canonical = [torch.from_numpy(ImageRotation.to_canonical(int(i), self.order, im.permute(1, 2, 0).cpu().numpy())[1])
                     .permute(2, 0, 1).to(im.device) for i, im in zip(index.tolist(), images)]
        same = len({tuple(c.shape) for c in canonical}) == 1
        return self._result(logits, index, degenerate, torch.stack(canonical) if same else tuple(canonical))

    def _result(self, logits, index, degenerate, canonical) -> Canonicalization:
        frames = cyclic_rotations(self.order, dtype=logits.dtype, device=logits.device)
        top2 = torch.softmax(logits.detach(), -1).topk(min(2, self.order), -1).values
        conditioning = top2[:, 0] - top2[:, 1] if self.order > 1 else torch.ones_like(top2[:, 0])
        return Canonicalization(frame=frames[index], canonical=canonical, logits=logits, index=index,
                                degenerate=degenerate, conditioning=conditioning)

    @torch.no_grad()
    def canonicalize(self, image: np.ndarray) -> tuple[Canonicalization, ImageRotation, np.ndarray]:
        """One photo ``(H, W, 3)`` uint8 -> (result for a batch of 1, the :class:`ImageRotation` to the
        canonical frame, the canonical photo ``(H', W', 3)`` uint8)."""
        check_image(image)
        dev = next((p.device for p in self.parameters()), torch.device("cpu"))
        small = self.downscale(torch.from_numpy(np.array(image, copy=True))  # a copy: photos read by PIL are read-only
            .permute(2, 0, 1).to(dev))[None]
        logits = self.logits_from_small(small)
        index, degenerate = equivariant_argmax(logits)
        rotation, canonical = ImageRotation.to_canonical(int(index[0]), self.order, image)
        result = self._result(logits, index, degenerate, torch.from_numpy(np.array(canonical)).permute(2, 0, 1)[None])
        return result, rotation, canonical


def equivariant_argmax(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Index ``(B,)`` of the largest logit with ties broken by cyclic lexicographic order, and a
    ``(B,)`` flag for periodic logit vectors (where no rule can be equivariant).

    ``index = argmax_k (l[k], l[k+1], ..., l[k-1])`` in lexicographic order, so ``roll(l, m)`` gives
    ``index + m``: the rule commutes with cyclic shifts.
    """
    rows = logits.detach().cpu().double().tolist()
    idx, periodic = [], []
    for row in rows:
        n = len(row)
        keys = [tuple(row[(k + j) % n] for j in range(n)) for k in range(n)]
        best = max(keys)
        idx.append(keys.index(best))
        periodic.append(keys.count(best) > 1)
    return (torch.tensor(idx, dtype=torch.long, device=logits.device),
            torch.tensor(periodic, dtype=torch.bool, device=logits.device))


def default_canonicalizer(order: int = 4) -> ImageCanonicalizer:
    """The canonicalizer used when none is given: the training-free :class:`SkyScorer` over ``C_order``."""
    return ImageCanonicalizer(order=order, scorer="sky").eval()


def save_canonicalizer(path, model: ImageCanonicalizer, **extra) -> Path:
    """Write ``model`` (config + weights + ``extra`` metadata) atomically."""
    return save_checkpoint(path, {"kind": CHECKPOINT_KIND, "config": model.config(),
                                  "model": model.state_dict(), **extra})


def load_canonicalizer(path, map_location="cpu") -> ImageCanonicalizer:
    """Load a canonicalizer written by :func:`save_canonicalizer` (or ``image-seg train-canonicalizer``)."""
    state = load_checkpoint(path, map_location=map_location)
    if state.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path} is a pointcanon checkpoint but not an image canonicalizer (kind {state.get('kind')!r})")
    model = ImageCanonicalizer(**state["config"])
    model.load_state_dict(state["model"])
    return model.eval()
