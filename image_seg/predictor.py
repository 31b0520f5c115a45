"""``EquivariantSamPredictor``: ``segment_anything.SamPredictor`` behind a rotation canonicalizer.

``set_image`` picks the group element that makes the photo upright, rotates the photo into that
canonical frame and embeds it; ``predict`` moves the prompts into the canonical frame, runs SAM there
and moves masks and low-res logits back. With C4 the result is exactly equivariant: for a photo rotated
by k * 90 degrees (and its prompts rotated with it) the masks are the rotated masks, bit for bit.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide

from .canonicalizer import ImageCanonicalizer, default_canonicalizer
from .validation import check_box, check_image, check_mask_input, check_points


class EquivariantSamPredictor:
    """Same interface as :class:`segment_anything.SamPredictor`, in the coordinates of the photo given.

    Args:
        sam_model: a ``segment_anything.modeling.Sam``.
        canonicalizer: an :class:`ImageCanonicalizer`; default :func:`default_canonicalizer` (C4,
            training-free sky heuristic). Equivariance holds for any canonicalizer; a trained one also
            keeps upright photos upright, which is what keeps SAM's upright quality.
        box_rule: how a box moves under a 45-degree step (C8 only; quarter turns are exact):
            ``"ellipse"`` (default, tighter) or ``"corners"`` (a superset), see
            :meth:`ImageRotation.apply_boxes`.

    After ``set_image``: ``canonicalization`` (the :class:`pointcanon.core.Canonicalization` of the
    photo), ``rotation`` (the :class:`ImageRotation` into the canonical frame), ``original_size`` and
    ``input_size`` of the photo as given, ``features`` (the embedding of the *canonical* photo).
    """

    def __init__(self, sam_model, canonicalizer: ImageCanonicalizer | None = None, box_rule: str = "ellipse"):
        if box_rule not in ("ellipse", "corners"):
            raise ValueError(f"box_rule must be 'ellipse' or 'corners', got {box_rule!r}")
        self.box_rule = box_rule
        self.model = sam_model
        self.canonicalizer = (canonicalizer if canonicalizer is not None else default_canonicalizer()).eval()
        self.sam = SamPredictor(sam_model)  # works in the canonical frame
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)  # the photo's frame, for predict_torch
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def features(self):
        return self.sam.features

    def reset_image(self) -> None:
        self.sam.reset_image()
        self.is_image_set = False
        self.canonicalization = self.rotation = None
        self.original_size = self.input_size = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Canonicalize and embed ``image`` ``(H, W, 3)`` uint8 in ``image_format`` ('RGB' or 'BGR')."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        check_image(image)
        if image_format != "RGB":
            image = np.ascontiguousarray(image[..., ::-1])
        self.reset_image()
        self.canonicalization, self.rotation, canonical = self.canonicalizer.canonicalize(image)
        self.sam.set_image(canonical, "RGB")
        self._back = self.rotation.inverse()
        self.original_size = tuple(image.shape[:2])
        self.input_size = self.transform.get_preprocess_shape(*self.original_size, self.transform.target_length)
        self.is_image_set = True

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")

    @property
    def low_res_side(self) -> int:
        return 4 * self.model.prompt_encoder.image_embedding_size[0]

    def predict(self, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                box: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
                multimask_output: bool = True, return_logits: bool = False):
        """Masks for prompts given in the photo's pixel coordinates (``SamPredictor.predict``).

        Args:
            point_coords: ``(N, 2)`` as ``(x, y)``; point_labels: ``(N,)``, 1 foreground / 0 background.
            box: ``(4,)`` XYXY. mask_input: ``(1, L, L)`` low-res logits of this photo's frame (as
                returned by a previous ``predict``).
        Returns:
            masks ``(C, H, W)`` bool (float logits with ``return_logits``), iou predictions ``(C,)``,
            low-res logits ``(C, L, L)`` in the photo's frame; ``C`` = 3 with ``multimask_output`` else 1.
        """
        self._require_image()
        rot, size = self.rotation, self.original_size
        pts = lab = b = m = None
        if point_coords is not None:
            pts, lab = check_points(point_coords, point_labels, size)
            pts = rot.apply_coords(pts)
        if box is not None:
            b = rot.apply_boxes(check_box(box, size), rule=self.box_rule)
        if mask_input is not None:
            m = rot.apply_low_res(check_mask_input(mask_input, self.low_res_side), self.model.image_encoder.img_size)
        need_logits = return_logits or rot.interpolates
        masks, iou, low = self.sam.predict(pts, lab, b, m, multimask_output, return_logits=need_logits)
        masks, low = self._to_photo(torch.from_numpy(masks), torch.from_numpy(low), return_logits)
        return masks.numpy(), iou, low.numpy()

    @torch.no_grad()
    def predict_torch(self, point_coords: Optional[torch.Tensor], point_labels: Optional[torch.Tensor],
                      boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
                      multimask_output: bool = True, return_logits: bool = False):
        """Batched prompts already resized with ``self.transform`` for this photo (``SamPredictor.predict_torch``):
        point_coords ``(B, N, 2)``, point_labels ``(B, N)``, boxes ``(B, 4)``, mask_input ``(B, 1, L, L)``.
        Returns masks ``(B, C, H, W)``, iou predictions ``(B, C)``, low-res logits ``(B, C, L, L)``."""
        self._require_image()
        rot = self.rotation
        to_pixels = torch.tensor([self.original_size[1] / self.input_size[1], self.original_size[0] / self.input_size[0]],
                                 dtype=torch.float64)
        canon = self.sam.transform
        canon_size = rot.out_size
        pts = boxes_c = m = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            xy = point_coords.detach().cpu().double() * to_pixels
            check_points(xy.reshape(-1, 2).numpy(), np.ones(xy.shape[0] * xy.shape[1]), self.original_size)
            pts = canon.apply_coords_torch(rot.apply_coords(xy), canon_size).to(self.device)
        if boxes is not None:
            bx = boxes.detach().cpu().double().reshape(-1, 2, 2) * to_pixels
            bx = torch.from_numpy(check_box(bx.reshape(-1, 4).numpy(), self.original_size, batched=True))
            boxes_c = canon.apply_boxes_torch(rot.apply_boxes(bx, rule=self.box_rule), canon_size).to(self.device)
        if mask_input is not None:
            check_mask_input(mask_input.detach().cpu().numpy(), self.low_res_side, batched=True)
            m = rot.apply_low_res(mask_input.float(), self.model.image_encoder.img_size).to(self.device)
        need_logits = return_logits or rot.interpolates
        masks, iou, low = self.sam.predict_torch(pts, point_labels, boxes_c, m, multimask_output, return_logits=need_logits)
        masks, low = self._to_photo(masks, low, return_logits)
        return masks, iou, low

    def _to_photo(self, masks: torch.Tensor, low: torch.Tensor, return_logits: bool):
        """Canonical-frame masks (logits or bool) and low-res logits -> the photo's frame."""
        back = self._back
        masks = back.apply_masks(masks)
        if masks.is_floating_point() and not return_logits:
            masks = masks > self.model.mask_threshold
        low = back.apply_low_res(low, self.model.image_encoder.img_size)
        return masks, low

    def get_image_embedding(self) -> torch.Tensor:
        """SAM's embedding ``(1, C, h, w)`` of the photo in its canonical frame (see ``canonicalization``)."""
        self._require_image()
        return self.sam.get_image_embedding()
