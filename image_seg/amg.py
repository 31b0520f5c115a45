"""``EquivariantAutomaticMaskGenerator``: ``SamAutomaticMaskGenerator`` behind a rotation canonicalizer.

The photo is rotated into its canonical frame, SAM's generator runs there (its point grid is symmetric
under 90-degree turns), and each record is moved back: the mask is rotated, ``bbox`` and ``area`` are
recomputed from it (SAM's conventions), ``point_coords`` and ``crop_box`` are rotated. With C4 the
records of a rotated photo are the rotated records, in the same order, bit for bit.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils.amg import batched_mask_to_box, box_xyxy_to_xywh, coco_encode_rle, mask_to_rle_pytorch

from .canonicalizer import ImageCanonicalizer, default_canonicalizer
from .validation import check_image

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class _Generator(SamAutomaticMaskGenerator):
    """SAM's generator with a callback after each batch of points (for progress bars)."""

    on_batch: Callable[[int], None] | None = None

    def _process_batch(self, points, im_size, crop_box, orig_size):
        data = super()._process_batch(points, im_size, crop_box, orig_size)
        if self.on_batch is not None:
            self.on_batch(len(points))
        return data


class EquivariantAutomaticMaskGenerator:
    """Same interface as :class:`segment_anything.SamAutomaticMaskGenerator` plus ``canonicalizer``
    (default :func:`default_canonicalizer`); every other keyword goes to SAM's generator.

    ``generate(image)`` returns SAM's records (``segmentation``, ``bbox`` XYWH, ``area``,
    ``predicted_iou``, ``point_coords``, ``stability_score``, ``crop_box`` XYWH) in the photo's frame.
    Masks that fall entirely outside the photo (only possible on the padding of a 45-degree step)
    are dropped. ``last_canonicalization`` holds the result of the canonicalizer for the last photo.
    """

    def __init__(self, model, canonicalizer: ImageCanonicalizer | None = None, *, output_mode: str = "binary_mask",
                 **kwargs: Any):
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        pps = kwargs.get("points_per_side", 32)
        if pps is not None and (isinstance(pps, bool) or not isinstance(pps, int) or pps < 1):
            raise ValueError(f"points_per_side must be a positive int (the prompt grid is N x N), got {pps!r}")
        self.output_mode = output_mode
        self.canonicalizer = (canonicalizer if canonicalizer is not None else default_canonicalizer()).eval()
        self.generator = _Generator(model, output_mode="binary_mask", **kwargs)
        self.predictor = self.generator.predictor
        self.last_canonicalization = None

    def total_points(self, image_shape) -> int:
        """How many point prompts ``generate`` will run for a photo of this ``(H, W, ...)`` shape."""
        from segment_anything.utils.amg import generate_crop_boxes
        _, layers = generate_crop_boxes(tuple(image_shape[:2]), self.generator.crop_n_layers, self.generator.crop_overlap_ratio)
        return sum(len(self.generator.point_grids[i]) for i in layers)

    @torch.no_grad()
    def generate(self, image: np.ndarray, progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Masks for the whole photo ``(H, W, 3)`` uint8 RGB; ``progress(n)`` is called after each batch
        of ``n`` point prompts."""
        check_image(image)
        c, rotation, canonical = self.canonicalizer.canonicalize(image)
        self.last_canonicalization = c
        self.generator.on_batch = progress
        try:
            records = self.generator.generate(canonical)
        finally:
            self.generator.on_batch = None
        back = rotation.inverse()
        if not records:
            return []
        masks = back.apply_masks(torch.from_numpy(np.stack([r["segmentation"] for r in records])))
        boxes = batched_mask_to_box(masks)
        out = []
        for r, mask, box in zip(records, masks, boxes):
            if not mask.any():
                continue
            x0, y0, w, h = r["crop_box"]
            crop = back.apply_boxes(np.array([x0, y0, x0 + w, y0 + h], dtype=np.float64))
            out.append({
                "segmentation": self._encode(mask),
                "area": int(mask.sum()),
                "bbox": box_xyxy_to_xywh(box).tolist(),
                "predicted_iou": r["predicted_iou"],
                "point_coords": back.apply_coords(np.asarray(r["point_coords"], dtype=np.float64)).tolist(),
                "stability_score": r["stability_score"],
                "crop_box": [float(crop[0]), float(crop[1]), float(crop[2] - crop[0]), float(crop[3] - crop[1])],
            })
        return out

    def _encode(self, mask: torch.Tensor):
        if self.output_mode == "binary_mask":
            return mask.numpy()
        rle = mask_to_rle_pytorch(mask[None])[0]
        return coco_encode_rle(rle) if self.output_mode == "coco_rle" else rle
