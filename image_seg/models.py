"""Building Segment Anything: official checkpoints by path and model type, and a tiny random-weight SAM.

Official types come from ``segment_anything.sam_model_registry`` (``vit_b``, ``vit_l``, ``vit_h``).
``tiny`` is this project's small architecture for tests and demos (no official weights exist for it).
Nothing here downloads anything.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

from pointcanon.core.io import not_a_file, safe_load

MODEL_TYPES = ("vit_b", "vit_l", "vit_h", "tiny")


def build_tiny_sam(img_size: int = 256, embed_dim: int = 64, depth: int = 2, num_heads: int = 2,
                   prompt_dim: int = 32, window_size: int = 4, global_attn_indexes=(1,), seed: int | None = 0):
    """A small SAM with random weights, built from ``segment_anything.modeling`` exactly like the
    official models (patch 16, ``img_size / 16`` embedding grid, low-res logits of side ``img_size / 4``)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if img_size % 16:
        raise ValueError(f"img_size must be a multiple of 16 (the patch size), got {img_size}")
    gen_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        grid = img_size // 16
        sam = Sam(
            image_encoder=ImageEncoderViT(img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=depth,
                                          num_heads=num_heads, mlp_ratio=4, out_chans=prompt_dim, qkv_bias=True,
                                          norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                                          window_size=window_size, global_attn_indexes=tuple(global_attn_indexes)),
            prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                         input_image_size=(img_size, img_size), mask_in_chans=16),
            mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                     transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=4 * prompt_dim,
                                                                   num_heads=2),
                                     transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=64),
            pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    finally:
        if seed is not None:
            torch.random.set_rng_state(gen_state)
    return sam.eval()


def _builder(model_type: str):
    if model_type == "tiny":
        return build_tiny_sam
    from segment_anything import sam_model_registry
    return sam_model_registry[model_type]


def _expected_shapes(model_type: str) -> dict:
    """Parameter shapes of an architecture, built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        model = _builder(model_type)()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _describe(state: dict) -> str:
    w = state.get("image_encoder.patch_embed.proj.weight")
    blocks = {k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")}
    if w is None:
        return "it has no SAM image encoder (image_encoder.patch_embed.proj.weight is missing)"
    return f"its image encoder has width {w.shape[0]} and {len(blocks)} blocks"


def load_sam(checkpoint, model_type: str = "vit_b", device: str | torch.device = "cpu"):
    """Load a SAM checkpoint (a ``state_dict`` as released, e.g. ``sam_vit_b_01ec64.pth``).

    A missing or unreadable file, or a checkpoint of another model type, raises ``ValueError`` naming
    the type it looks like (``vit_b``: width 768, 12 blocks; ``vit_l``: 1024, 24; ``vit_h``: 1280, 32).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; expected one of {MODEL_TYPES}")
    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(not_a_file(path, "SAM checkpoint"))
    state = safe_load(path, "SAM checkpoint")  # never runs code from the file
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"SAM checkpoint {path} is not a state dict of tensors")
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != _expected_shapes(model_type):
        match = [t for t in MODEL_TYPES if t != model_type and got == _expected_shapes(t)]
        hint = f"it is a {match[0]!r} checkpoint: pass --model-type {match[0]}" if match else _describe(state)
        raise ValueError(f"SAM checkpoint {path} does not fit model type {model_type!r}: {hint}")
    sam = _builder(model_type)()
    sam.load_state_dict(state)
    return sam.to(device).eval()
