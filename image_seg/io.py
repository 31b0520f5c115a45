"""Reading photos with clear errors, and writing masks (PNG, overlay, COCO RLE JSON) atomically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pointcanon.core.io import atomic_write, not_a_file, write_json

from .validation import check_box, check_image

_GRAY = {"1": "1-bit", "L": "grayscale", "LA": "grayscale with alpha", "I;16": "16-bit grayscale",
         "I;16B": "16-bit grayscale", "I;16L": "16-bit grayscale", "I": "32-bit integer", "F": "32-bit float"}


def read_photo(path) -> np.ndarray:
    """An 8-bit RGB photo ``(H, W, 3)`` uint8 from a file, turned as its EXIF orientation says.

    Palette, CMYK and YCbCr files are converted to RGB; grayscale, RGBA and 16-bit files raise
    ``ValueError`` naming the mode (SAM needs 8-bit RGB, and guessing how to drop alpha or bits is the
    caller's choice)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ValueError(not_a_file(path, "photo"))
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            mode = im.mode
            if mode in _GRAY:
                raise ValueError(f"photo {path} is {_GRAY[mode]} (PIL mode {mode}); SAM needs 8-bit RGB: convert it, "
                                 f"e.g. PIL.Image.open(path).convert('RGB')")
            if mode in ("RGBA", "PA") or (mode == "P" and "transparency" in im.info):
                raise ValueError(f"photo {path} has an alpha channel (PIL mode {mode}); SAM needs RGB: flatten it "
                                 f"onto a background or drop alpha, e.g. .convert('RGB')")
            arr = np.asarray(im.convert("RGB")).copy()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read photo {path}: {e}") from None
    return check_image(arr, name=f"photo {path}")


def read_boxes(spec: str, size: tuple[int, int]) -> np.ndarray:
    """Boxes ``(B, 4)`` XYXY from a JSON file or an inline JSON string: ``[[x0, y0, x1, y1], ...]`` or
    ``{"boxes": [...]}``; checked against the photo ``size`` ``(H, W)``."""
    p = Path(spec)
    try:
        obj = json.loads(p.read_text() if p.is_file() else spec)
    except (json.JSONDecodeError, OSError) as e:
        raise ValueError(f"--boxes must be a JSON file or JSON text like [[x0, y0, x1, y1]], got {spec!r} ({e})") from None
    if isinstance(obj, dict):
        obj = obj.get("boxes")
    arr = np.asarray(obj, dtype=np.float64) if isinstance(obj, list) and obj else None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"--boxes must hold a non-empty list of [x0, y0, x1, y1] boxes, got {spec!r}")
    return check_box(arr, size, batched=True)


def write_png(path, array: np.ndarray) -> Path:
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def overlay(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """The photo with each mask tinted in its own colour (larger masks first, so small ones stay visible)."""
    rng = np.random.default_rng(seed)
    out = image.astype(np.float32)
    for i in sorted(range(len(masks)), key=lambda j: -int(masks[j].sum())):
        colour = rng.uniform(40, 255, 3).astype(np.float32)
        m = masks[i]
        out[m] = (1 - alpha) * out[m] + alpha * colour
    return out.round().clip(0, 255).astype(np.uint8)


def write_masks(out_dir, image: np.ndarray, records: list[dict], meta: dict) -> dict:
    """Write ``mask_XXX.png`` per record (0/255), ``overlay.png`` and ``masks.json`` (COCO RLE) into
    ``out_dir``, each file atomically. ``records`` hold a bool ``mask`` ``(H, W)`` plus JSON-able fields."""
    from pycocotools import mask as mask_utils

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    anns = []
    for i, r in enumerate(records):
        m = np.asarray(r["mask"], dtype=bool)
        write_png(out / f"mask_{i:03d}.png", m.astype(np.uint8) * 255)
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"id": i, "file": f"mask_{i:03d}.png", "segmentation": rle,
                     **{k: v for k, v in r.items() if k != "mask"}})
    write_png(out / "overlay.png", overlay(image, [np.asarray(r["mask"], dtype=bool) for r in records]))
    doc = {**meta, "height": int(image.shape[0]), "width": int(image.shape[1]), "annotations": anns}
    write_json(out / "masks.json", doc)
    return doc
