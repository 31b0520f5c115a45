"""Clear errors for the inputs Segment Anything silently mishandles: wrong image layouts and dtypes,
empty images, prompts outside the image."""
from __future__ import annotations

import numpy as np


def check_image(image, name: str = "image") -> np.ndarray:
    """Validate an RGB photo: a ``(H, W, 3)`` uint8 NumPy array with ``H, W >= 1``."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.dtype in (np.uint16, np.int16):
        raise TypeError(f"{name} is a 16-bit image ({image.dtype}); SAM takes 8-bit RGB: "
                        f"convert it first, e.g. (image >> 8).astype(np.uint8)")
    if image.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 with values 0..255, got dtype {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
        raise ValueError(f"{name} is grayscale {tuple(image.shape)}; SAM needs RGB (H, W, 3): "
                         f"repeat the channel, e.g. np.repeat(image.reshape(*image.shape[:2], 1), 3, -1)")
    if image.ndim == 3 and image.shape[-1] == 4:
        raise ValueError(f"{name} is RGBA {tuple(image.shape)}; SAM needs RGB (H, W, 3): "
                         f"drop or composite the alpha channel, e.g. image[..., :3]")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {tuple(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(image.shape)}")
    return image


def check_points(points, labels, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validate point prompts ``(N, 2)`` as ``(x, y)`` inside ``[0, W] x [0, H]`` and labels ``(N,)``
    in {-1 (ignored), 0 (background), 1 (foreground)}."""
    if labels is None:
        raise ValueError("point_labels must be given with point_coords (1 = foreground, 0 = background)")
    pts = np.asarray(points, dtype=np.float64)
    lab = np.asarray(labels)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ValueError(f"point_coords must be (N, 2) as (x, y) with N >= 1, got shape {pts.shape}")
    if lab.shape != (pts.shape[0],):
        raise ValueError(f"point_labels must be ({pts.shape[0]},) to match point_coords, got shape {lab.shape}")
    if not np.isin(lab, (-1, 0, 1)).all():
        raise ValueError(f"point_labels must be 1 (foreground), 0 (background) or -1 (ignored), got {np.unique(lab).tolist()}")
    _check_inside(pts, size, "point_coords")
    return pts, lab.astype(np.int64)


def check_box(box, size: tuple[int, int], *, batched: bool = False) -> np.ndarray:
    """Validate an XYXY box ``(4,)`` (or ``(B, 4)`` when ``batched``) inside the image, x0 <= x1, y0 <= y1."""
    b = np.asarray(box, dtype=np.float64)
    want = (b.ndim == 2 and b.shape[1] == 4 and b.shape[0] > 0) if batched else b.shape in ((4,), (1, 4))
    if not want:
        raise ValueError(f"box must be {'(B, 4)' if batched else '(4,)'} as XYXY (x0, y0, x1, y1), got shape {b.shape}")
    b = b.reshape(-1, 4)
    if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))[:5].tolist()
        raise ValueError(f"box must be XYXY with x0 <= x1 and y0 <= y1 (boxes {bad}); a y1,x1,y2,x2 box needs reordering")
    _check_inside(b.reshape(-1, 2), size, "box")
    return b if batched else b[0]


def _check_inside(xy: np.ndarray, size: tuple[int, int], what: str) -> None:
    h, w = size
    if not np.isfinite(xy).all():
        raise ValueError(f"{what} contains NaN or inf")
    out = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise ValueError(f"{what} lies outside the {w}x{h} (W x H) image: ({xy[i, 0]:g}, {xy[i, 1]:g}) as (x, y); "
                         f"coordinates must be within [0, {w}] x [0, {h}]")


def check_mask_input(mask_input, side: int, *, batched: bool = False) -> np.ndarray:
    """Validate low-res mask logits ``(1, L, L)`` (or ``(B, 1, L, L)``), ``L`` = the model's low-res side."""
    m = np.asarray(mask_input, dtype=np.float32)
    want = (m.ndim == 4 and m.shape[1:] == (1, side, side)) if batched else m.shape == (1, side, side)
    if not want:
        raise ValueError(f"mask_input must be {'(B, 1, L, L)' if batched else '(1, L, L)'} with L = {side}, "
                         f"e.g. low-res logits from a previous predict, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("mask_input contains NaN or inf")
    return m
