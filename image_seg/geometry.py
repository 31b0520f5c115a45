"""Rotate an image together with everything Segment Anything attaches to it.

One :class:`ImageRotation` moves an image, its point prompts, boxes, full-size masks / mask logits and
SAM's low-resolution mask logits, forward (:meth:`ImageRotation.apply_image` ...) and back
(:meth:`ImageRotation.inverse`), in the style of ``segment_anything.utils.transforms.ResizeLongestSide``.

Coordinate conventions (those of SAM):

* images are ``(H, W, 3)`` uint8 arrays; a size is ``(H, W)``;
* points are ``(x, y)`` = (column, row) in continuous pixel units: the image covers ``[0, W] x [0, H]``
  and pixel ``[row i, col j]`` has its centre at ``(j + 0.5, i + 0.5)``; y points down;
* boxes are ``XYXY`` = ``(x0, y0, x1, y1)`` in the same units;
* low-res logits are SAM's ``(L, L)`` grid (``L = 256`` for the official models) over the padded square
  model input of side ``img_size``: the resized image (``ResizeLongestSide``) sits in its top-left corner.

Element ``k`` of ``C_n`` rotates by ``k * 360 / n`` degrees **counter-clockwise as displayed** about the
image centre, i.e. by ``cyclic_rotations(n)[k]`` acting on centred y-up coordinates
``u = (x - W/2, H/2 - y)``. Multiples of 90 degrees are exact pixel permutations (``np.rot90``; height and
width swap for odd quarter turns). 45-degree steps are bilinear resamplings onto a canvas large enough
that nothing is cropped (``ceil((H + W) / sqrt 2)`` square), the new corners filled with 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SUPPORTED_ORDERS = (1, 2, 4, 8)


def check_order(n) -> int:
    """Validate a cyclic group order: the orders whose elements are multiples of 45 degrees."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) not in SUPPORTED_ORDERS:
        raise ValueError(f"group order must be one of {SUPPORTED_ORDERS} (C4: exact 90-degree turns, "
                         f"C8: 45-degree steps), got {n!r}")
    return int(n)


def sam_input_size(size: tuple[int, int], img_size: int) -> tuple[int, int]:
    """``(h, w)`` of the image inside SAM's padded ``img_size`` square (``ResizeLongestSide``)."""
    scale = img_size / max(size)
    return int(size[0] * scale + 0.5), int(size[1] * scale + 0.5)


def _to_tensor(a) -> tuple[Tensor, bool]:
    """A tensor view of ``a`` and whether ``a`` was a NumPy array."""
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a)), True
    if isinstance(a, Tensor):
        return a, False
    raise TypeError(f"expected a numpy array or torch tensor, got {type(a).__name__}")


def _back(t: Tensor, was_numpy: bool):
    return t.cpu().numpy() if was_numpy else t


def _check_planes(t: Tensor, size: tuple[int, int], what: str) -> None:
    if t.ndim < 2 or tuple(t.shape[-2:]) != tuple(size):
        raise ValueError(f"{what} must be (..., {size[0]}, {size[1]}) for this image, got {tuple(t.shape)}")


def _check_low_res(t: Tensor) -> None:
    if t.ndim < 2 or t.shape[-1] != t.shape[-2]:
        raise ValueError(f"low-res logits must be (..., L, L), got {tuple(t.shape)}")


class QuarterTurn:
    """``q`` counter-clockwise quarter turns of an image of size ``in_size`` ``(H, W)``: exact."""

    interpolates = False

    def __init__(self, q: int, in_size: tuple[int, int]):
        self.q = int(q) % 4
        self.in_size = (int(in_size[0]), int(in_size[1]))
        h, w = self.in_size
        self.out_size = (w, h) if self.q % 2 else (h, w)

    def inverse(self) -> "QuarterTurn":
        return QuarterTurn(-self.q, self.out_size)

    def coords(self, xy: np.ndarray) -> np.ndarray:
        """``(..., 2)`` float64 ``(x, y)`` -> ``(..., 2)``; exact for float32-representable input."""
        h, w = self.in_size
        x, y = xy[..., 0], xy[..., 1]
        out = {0: (x, y), 1: (y, w - x), 2: (w - x, h - y), 3: (h - y, x)}[self.q]
        return np.stack(out, -1)

    def image(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(image, self.q, axes=(0, 1)))

    def planes(self, t: Tensor, fill=None) -> Tensor:
        """``(..., H, W)`` masks or logits -> ``(..., H', W')``: a permutation of the entries."""
        return torch.rot90(t, self.q, dims=(-2, -1))

    def low_res(self, t: Tensor, img_size: int) -> Tensor:
        """Permute SAM's ``(..., L, L)`` grid: rotate it, then roll the image block back to the top left.

        Exact and invertible (all entries kept, padding entries included); the image block is
        ``ceil(h / s) x ceil(w / s)`` cells (``s = img_size / L``): when ``h`` or ``w`` is not a
        multiple of ``s`` its last cell straddles the image edge and the rotated grid is misregistered
        by less than one cell along the flipped axis.
        """
        big = t.shape[-1]
        stride = img_size / big
        nh, nw = sam_input_size(self.in_size, img_size)
        a, b = math.ceil(nh / stride - 1e-9), math.ceil(nw / stride - 1e-9)
        r = torch.rot90(t, self.q, dims=(-2, -1))
        if self.q == 1:
            return torch.roll(r, b, dims=-2)
        if self.q == 2:
            return torch.roll(r, (a, b), dims=(-2, -1))
        if self.q == 3:
            return torch.roll(r, a, dims=-1)
        return r

    def __repr__(self) -> str:
        return f"QuarterTurn(q={self.q}, in_size={self.in_size})"


class Warp:
    """An affine map ``xy_out = A @ xy_in + t`` (``matrix`` = ``[A | t]``, ``(2, 3)`` float64) from an
    image of size ``in_size`` onto a canvas of size ``out_size``, resampled bilinearly; canvas pixels
    whose source lies outside the input image get a fill value."""

    interpolates = True

    def __init__(self, matrix, in_size: tuple[int, int], out_size: tuple[int, int]):
        self.matrix = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
        self.in_size = (int(in_size[0]), int(in_size[1]))
        self.out_size = (int(out_size[0]), int(out_size[1]))

    @classmethod
    def rotation(cls, degrees: float, in_size: tuple[int, int], extra: tuple[int, int] = (0, 0)) -> "Warp":
        """Rotation by ``degrees`` counter-clockwise (as displayed) about the image centre, onto the
        smallest canvas that holds the whole rotated image (plus ``extra`` rows, columns)."""
        h, w = in_size
        th = math.radians(degrees)
        c, s = math.cos(th), math.sin(th)
        ow = math.ceil(abs(c) * w + abs(s) * h - 1e-6) + extra[1]
        oh = math.ceil(abs(s) * w + abs(c) * h - 1e-6) + extra[0]
        a = np.array([[c, s], [-s, c]])  # y points down, so CCW on screen is R(-theta) in (x, y)
        t = np.array([ow / 2, oh / 2]) - a @ np.array([w / 2, h / 2])
        return cls(np.concatenate([a, t[:, None]], 1), in_size, (oh, ow))

    def cropped(self, top: int, left: int, out_size: tuple[int, int]) -> "Warp":
        """The same map followed by cropping the canvas to ``out_size`` at ``(top, left)``."""
        m = self.matrix.copy()
        m[:, 2] -= (left, top)
        return Warp(m, self.in_size, out_size)

    def inverse(self) -> "Warp":
        a, t = self.matrix[:, :2], self.matrix[:, 2]
        ai = np.linalg.inv(a)
        return Warp(np.concatenate([ai, (-ai @ t)[:, None]], 1), self.out_size, self.in_size)

    def coords(self, xy: np.ndarray) -> np.ndarray:
        return xy @ self.matrix[:, :2].T + self.matrix[:, 2]

    def _source(self, xy_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source coordinates of output points ``(..., 2)`` and whether they lie inside the input."""
        src = self.inverse().coords(xy_out)
        h, w = self.in_size
        eps = 1e-6
        inside = (src[..., 0] >= -eps) & (src[..., 0] <= w + eps) & (src[..., 1] >= -eps) & (src[..., 1] <= h + eps)
        return src, inside

    @staticmethod
    def _sample(t: Tensor, src: np.ndarray, size: tuple[int, int], padding: str = "border") -> Tensor:
        """Bilinear samples of ``t`` ``(N, C, size)`` at source points ``src`` ``(H', W', 2)`` given in the
        continuous coordinates of a grid of ``size``; borders clamped (or zero with ``padding="zeros"``)."""
        grid = np.empty_like(src)
        grid[..., 0] = 2 * src[..., 0] / size[1] - 1
        grid[..., 1] = 2 * src[..., 1] / size[0] - 1
        g = torch.as_tensor(grid, dtype=t.dtype, device=t.device).unsqueeze(0).expand(t.shape[0], -1, -1, -1)
        return F.grid_sample(t, g, mode="bilinear", padding_mode=padding, align_corners=False)

    def _pixel_centres(self) -> np.ndarray:
        oh, ow = self.out_size
        ys, xs = np.meshgrid(np.arange(oh) + 0.5, np.arange(ow) + 0.5, indexing="ij")
        return np.stack([xs, ys], -1)

    def image(self, image: np.ndarray) -> np.ndarray:
        src, inside = self._source(self._pixel_centres())
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        out = self._sample(t, src, self.in_size)[0].permute(1, 2, 0)
        out = out * torch.from_numpy(inside)[..., None]
        return out.round().clamp(0, 255).to(torch.uint8).numpy()

    def planes(self, t: Tensor, fill=None) -> Tensor:
        """``(..., H, W)`` masks (bool: resampled, kept where >= 0.5) or logits (float: resampled;
        ``fill`` outside the input, default: each plane's minimum) -> ``(..., H', W')``."""
        lead = t.shape[:-2]
        src, inside = self._source(self._pixel_centres())
        flat = t.reshape(-1, 1, *t.shape[-2:])
        inside_t = torch.from_numpy(inside).to(t.device)
        if t.dtype == torch.bool:
            out = (self._sample(flat.float(), src, self.in_size) >= 0.5) & inside_t
            return out.reshape(*lead, *self.out_size)
        out = self._sample(flat, src, self.in_size)
        out = torch.where(inside_t, out, _fill(flat, fill))
        return out.reshape(*lead, *self.out_size)

    def low_res(self, t: Tensor, img_size: int) -> Tensor:
        """Resample SAM's ``(..., L, L)`` grid: each cell of the output grid inside the output image
        takes the bilinear value at its source position; the other cells get each plane's minimum."""
        big = t.shape[-1]
        stride = img_size / big
        ih, iw = sam_input_size(self.in_size, img_size)
        oh, ow = sam_input_size(self.out_size, img_size)
        centres = (np.stack(np.meshgrid(np.arange(big) + 0.5, np.arange(big) + 0.5, indexing="xy"), -1)) * stride
        out_px = centres / np.array([ow / self.out_size[1], oh / self.out_size[0]])  # output image pixels
        in_out_image = (out_px[..., 0] <= self.out_size[1]) & (out_px[..., 1] <= self.out_size[0])
        src, inside = self._source(out_px)
        src_resized = src * np.array([iw / self.in_size[1], ih / self.in_size[0]])
        flat = t.reshape(-1, 1, big, big)
        out = self._sample(flat, src_resized, (img_size, img_size))
        keep = torch.from_numpy(in_out_image & inside).to(t.device)
        out = torch.where(keep, out, _fill(flat, None))
        return out.reshape(t.shape)

    def __repr__(self) -> str:
        return f"Warp(in_size={self.in_size}, out_size={self.out_size})"


def _fill(flat: Tensor, fill) -> Tensor:
    """Per-plane fill value ``(N, 1, 1, 1)``: ``fill`` or the plane's minimum."""
    if fill is not None:
        return torch.full((flat.shape[0], 1, 1, 1), float(fill), dtype=flat.dtype, device=flat.device)
    return flat.amin(dim=(-2, -1), keepdim=True)


def _trim_box(valid: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the smallest window holding every True pixel of ``valid``."""
    rows, cols = np.flatnonzero(valid.any(1)), np.flatnonzero(valid.any(0))
    if rows.size == 0:
        return 0, 0, valid.shape[0], valid.shape[1]
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def unrotate_padded(image: np.ndarray, degrees: float) -> tuple[Warp, np.ndarray]:
    """Rotate ``image`` ``(H, W, 3)`` uint8 by ``degrees`` onto a canvas trimmed to its content, treating
    pure black ``(0, 0, 0)`` pixels as padding (a photo that was itself rotated with black corners).

    Resampling is normalised over non-black pixels, so edges are not darkened by the padding; output
    pixels with less than half of their weight on non-black input are padding (0) and trimmed away. The
    canvas is shifted by half a pixel per axis where that puts more of the content edge on the pixel
    grid (a photo rotated by 45 degrees and back lands on its original grid, not half a pixel off).
    Returns the :class:`Warp` (with the trim) and the trimmed canvas.
    """
    src = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    valid = (src > 0).any(1, keepdim=True).float()
    best = None
    for dh in (0, 1):
        for dw in (0, 1):
            warp = Warp.rotation(degrees, image.shape[:2], extra=(dh, dw))
            pos, inside = warp._source(warp._pixel_centres())
            weight = (warp._sample(valid, pos, warp.in_size, padding="zeros")[0, 0] * torch.from_numpy(inside)).numpy()
            keep = weight >= 0.5
            top, left, h, w = _trim_box(keep)
            win = weight[top:top + h, left:left + w]
            edge = np.concatenate([win[0], win[-1], win[:, 0], win[:, -1]])
            score = float(edge.mean())  # crisp content edges: weight near 1 on the border of the window
            if best is None or score > best[0] + 1e-9:
                best = (score, warp, pos, weight, (top, left, h, w))
    _, warp, pos, weight, (top, left, h, w) = best
    num = warp._sample(src * valid, pos, warp.in_size, padding="zeros")[0]
    out = torch.where(torch.from_numpy(weight >= 0.5), num / torch.from_numpy(weight).clamp_min(1e-6), torch.zeros(()))
    out = out.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return warp.cropped(top, left, (h, w)), np.ascontiguousarray(out[top:top + h, left:left + w])


@dataclass(frozen=True)
class ImageRotation:
    """A rotation of an image by a multiple of 45 degrees, with its prompts and SAM's outputs.

    Built by :meth:`rotate` (rotate an image by element ``k`` of ``C_n``) or :meth:`to_canonical`
    (undo the canonicalizer's element ``index``); :meth:`inverse` maps back. It is a sequence of exact
    :class:`QuarterTurn` steps and at most one interpolating :class:`Warp` (the 45-degree part).
    """

    steps: tuple

    @property
    def in_size(self) -> tuple[int, int]:
        return self.steps[0].in_size

    @property
    def out_size(self) -> tuple[int, int]:
        return self.steps[-1].out_size

    @property
    def interpolates(self) -> bool:
        """False when every step is an exact pixel permutation (multiples of 90 degrees)."""
        return any(s.interpolates for s in self.steps)

    @staticmethod
    def _split(k: int, n: int) -> tuple[int, int]:
        eighths = (int(k) * (8 // check_order(n))) % 8
        return divmod(eighths, 2)  # (quarter turns, extra 45-degree step)

    @classmethod
    def rotate(cls, k: int, n: int, size: tuple[int, int]) -> "ImageRotation":
        """Rotation by ``k * 360 / n`` degrees CCW of an image of size ``(H, W)``: the 45-degree part
        (if any) first, onto a padded canvas, then exact quarter turns."""
        q, r = cls._split(k, n)
        steps = []
        if r:
            steps.append(Warp.rotation(45.0, size))
        steps.append(QuarterTurn(q, steps[-1].out_size if steps else size))
        return cls(tuple(steps))

    @classmethod
    def to_canonical(cls, index: int, n: int, image: np.ndarray) -> tuple["ImageRotation", np.ndarray]:
        """The rotation by ``-index * 360 / n`` degrees taking ``image`` ``(H, W, 3)`` to its canonical
        frame, and the canonical image.

        Exact quarter turns come first, so ``to_canonical(index + 2m, 8, rot90(x, m))`` gives the same
        canonical image as ``to_canonical(index, 8, x)`` bit for bit. After a 45-degree step the canvas
        is trimmed to the bounding box of its non-zero pixels, removing the padding a 45-degree rotation
        adds (so a photo rotated by 45 degrees and back is not shrunk inside black margins).
        """
        q, r = cls._split(int(index), n)
        turn = QuarterTurn(-q, image.shape[:2])
        canonical = turn.image(image)
        steps = [turn]
        if r:
            warp, canonical = unrotate_padded(canonical, -45.0)
            steps.append(warp)
        return cls(tuple(steps)), np.ascontiguousarray(canonical)  # a view of rot90 has negative strides

    def inverse(self) -> "ImageRotation":
        return ImageRotation(tuple(s.inverse() for s in reversed(self.steps)))

    # --- what moves with the image ---------------------------------------------------------------

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, C)`` uint8 -> ``(H', W', C)`` uint8."""
        if tuple(image.shape[:2]) != self.in_size:
            raise ValueError(f"image must be {self.in_size} (H, W) for this rotation, got {tuple(image.shape[:2])}")
        for s in self.steps:
            image = s.image(image)
        return image

    def apply_coords(self, coords):
        """Points ``(..., 2)`` as ``(x, y)`` -> ``(..., 2)``; computed in float64, exact for quarter turns."""
        t, was_np = _to_tensor(coords)
        if t.shape[-1:] != (2,):
            raise ValueError(f"points must be (..., 2) as (x, y), got {tuple(t.shape)}")
        xy = t.detach().cpu().double().numpy()
        for s in self.steps:
            xy = s.coords(xy)
        out = torch.from_numpy(xy)
        return xy if was_np else out.to(device=t.device, dtype=t.dtype if t.is_floating_point() else torch.float64)

    def apply_boxes(self, boxes, rule: str = "corners"):
        """Boxes ``(..., 4)`` XYXY -> ``(..., 4)`` XYXY. Quarter turns map them exactly. A 45-degree step
        cannot keep a box axis-aligned: ``rule="corners"`` gives the bounding box of the rotated
        rectangle (it contains the object, but is up to twice as large); ``rule="ellipse"`` the bounding
        box of the rotated inscribed ellipse (a tighter estimate of the rotated object's box, as used in
        rotation augmentation for detection). Either is clipped to the new canvas."""
        if rule not in ("corners", "ellipse"):
            raise ValueError(f"rule must be 'corners' or 'ellipse', got {rule!r}")
        t, was_np = _to_tensor(boxes)
        if t.shape[-1:] != (4,):
            raise ValueError(f"boxes must be (..., 4) as XYXY, got {tuple(t.shape)}")
        b = t.detach().cpu().double().numpy()
        for s in self.steps:
            x0, y0, x1, y1 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
            if s.interpolates and rule == "ellipse":
                a = s.matrix[:, :2]
                centre = s.coords(np.stack([(x0 + x1) / 2, (y0 + y1) / 2], -1))
                rx, ry = (x1 - x0) / 2, (y1 - y0) / 2  # half-extent of the rotated ellipse per axis:
                half = np.stack([np.hypot(a[0, 0] * rx, a[0, 1] * ry), np.hypot(a[1, 0] * rx, a[1, 1] * ry)], -1)
                b = np.concatenate([centre - half, centre + half], -1)
            else:
                corners = np.stack([np.stack(p, -1) for p in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], -2)
                c = s.coords(corners)  # (..., 4, 2)
                b = np.concatenate([c.min(-2), c.max(-2)], -1)
            if s.interpolates:
                h, w = s.out_size
                b = np.clip(b, 0, np.array([w, h, w, h], dtype=np.float64))
        return b if was_np else torch.from_numpy(b).to(device=t.device, dtype=t.dtype if t.is_floating_point() else torch.float64)

    def apply_masks(self, masks, fill=None):
        """Full-size masks ``(..., H, W)`` (bool) or mask logits (float) -> ``(..., H', W')``.
        Exact permutation for quarter turns; see :meth:`Warp.planes` for 45-degree steps."""
        t, was_np = _to_tensor(masks)
        _check_planes(t, self.in_size, "masks")
        for s in self.steps:
            t = s.planes(t, fill)
        return _back(t, was_np)

    def apply_low_res(self, logits, img_size: int):
        """SAM's low-res logits ``(..., L, L)`` of the input frame -> those of the output frame.
        ``img_size`` is the model's input side (``sam.image_encoder.img_size``, 1024 for official SAM)."""
        t, was_np = _to_tensor(logits)
        _check_low_res(t)
        for s in self.steps:
            t = s.low_res(t, img_size)
        return _back(t, was_np)
