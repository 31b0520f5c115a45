"""The ``image-seg`` command.

    image-seg segment PHOTO --checkpoint sam_vit_b_01ec64.pth [--model-type vit_b] [--boxes JSON]
                            [--canonicalizer CKPT | --order 4] -o DIR [--overwrite]
    image-seg train-canonicalizer --images DIR --out CKPT [--order 4] [--steps 400] [--overwrite]
    image-seg eval-canonicalizer --images DIR --canonicalizer CKPT
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm


def _canonicalizer(args):
    from .canonicalizer import default_canonicalizer, load_canonicalizer

    if args.canonicalizer:
        return load_canonicalizer(args.canonicalizer)
    return default_canonicalizer(args.order)


def cmd_segment(args) -> int:
    from .amg import EquivariantAutomaticMaskGenerator
    from .io import read_boxes, read_photo, write_masks
    from .models import load_sam
    from .predictor import EquivariantSamPredictor

    _check_device(args.device)
    if args.points_per_side < 1:
        raise ValueError(f"--points-per-side must be a positive int (the prompt grid is N x N), got {args.points_per_side}")
    _check_segment_output(args.output, args.overwrite)
    image = read_photo(args.photo)
    boxes = read_boxes(args.boxes, image.shape[:2]) if args.boxes else None
    canonicalizer = _canonicalizer(args)
    sam = load_sam(args.checkpoint, args.model_type, device=args.device)
    records = []
    t0 = time.perf_counter()
    if boxes is not None:
        predictor = EquivariantSamPredictor(sam, canonicalizer)
        print(f"embedding {args.photo} ({image.shape[1]}x{image.shape[0]}) ...", file=sys.stderr)
        predictor.set_image(image)
        c = predictor.canonicalization
        for box in tqdm(boxes, desc="boxes", disable=True if args.quiet else None):
            masks, iou, _ = predictor.predict(box=box, multimask_output=False)
            records.append({"mask": masks[0], "box_prompt": box.tolist(), "predicted_iou": float(iou[0]),
                            "bbox": _xywh(masks[0]), "area": int(masks[0].sum())})
    else:
        amg = EquivariantAutomaticMaskGenerator(sam, canonicalizer, points_per_side=args.points_per_side)
        bar = tqdm(total=amg.total_points(image.shape), desc="point prompts", disable=True if args.quiet else None)
        try:
            found = amg.generate(image, progress=bar.update)
        finally:
            bar.close()
        c = amg.last_canonicalization
        for r in found:
            records.append({"mask": r["segmentation"], "predicted_iou": r["predicted_iou"], "bbox": r["bbox"],
                            "area": r["area"], "point_coords": r["point_coords"], "stability_score": r["stability_score"]})
    n = canonicalizer.order
    index = int(c.index[0])
    meta = {"image": str(args.photo), "model_type": args.model_type, "seconds": round(time.perf_counter() - t0, 3),
            "canonicalization": {"order": n, "index": index, "rotation_degrees": index * 360 / n,
                                 "logits": c.logits[0].tolist(), "degenerate": bool(c.degenerate[0]),
                                 "canonicalizer": args.canonicalizer or f"default (C{n}, sky heuristic)"}}
    for _ in tqdm([0], desc=f"writing {len(records)} masks", disable=True if args.quiet else None):
        write_masks(args.output, image, records, meta)
    print(f"{len(records)} masks -> {args.output} (photo read as rotated by {index * 360 / n:g} degrees CCW from upright)")
    return 0


def _check_segment_output(out, overwrite: bool) -> None:
    """``ValueError`` naming ``-o/--output`` unless ``out`` can be written into and, without ``overwrite``,
    holds none of the files ``segment`` writes (``masks.json``, ``overlay.png``, ``mask_NNN.png``)."""
    from pointcanon.core.io import check_output_dir, check_output_file

    out = check_output_dir(out, "-o/--output")
    fixed = [check_output_file(out / name, "-o/--output") for name in ("masks.json", "overlay.png")]
    held = [p for p in fixed if p.exists() or p.is_symlink()] + sorted(out.glob("mask_[0-9][0-9][0-9]*.png"))
    if held and not overwrite:
        more = f" and {len(held) - 1} more of its outputs" if len(held) > 1 else ""
        raise ValueError(f"-o/--output {out} already holds {held[0].name}{more}; pass --overwrite to replace them, "
                         "or choose another folder")


def _check_device(name: str) -> None:
    """``ValueError`` naming ``--device`` unless torch can put a tensor on ``name`` (e.g. ``cpu``, ``cuda:0``)."""
    try:
        torch.empty(0, device=name)
    except Exception as e:  # torch raises RuntimeError, AssertionError, ... for unknown or absent devices
        raise ValueError(f"--device {name!r} is not a usable torch device here ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _xywh(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]


def cmd_train(args) -> int:
    from .canonicalizer import save_canonicalizer
    from .train import TrainConfig, load_photos, train_canonicalizer, upright_accuracy

    from pointcanon.core.io import check_output_file

    check_output_file(args.out, "--out", overwrite=args.overwrite)
    cfg = TrainConfig(order=args.order, size=args.size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed)
    photos, names = load_photos(args.images, cfg.max_side)
    print(f"training C{cfg.order} canonicalizer on {len(photos)} upright photos from {args.images}", file=sys.stderr)
    model, history = train_canonicalizer(photos, cfg, progress=not args.quiet)
    report = {"train": upright_accuracy(model, photos)}
    if args.val_images:
        report["held_out"] = upright_accuracy(model, load_photos(args.val_images, cfg.max_side)[0])
    save_canonicalizer(args.out, model, train_config=vars(cfg), photos=names, final_loss=float(np.mean(history[-20:])),
                       accuracy=report)
    for split, acc in report.items():
        print(f"{split}: upright recognised on {acc['upright']:.1%} of {acc['photos']} photos "
              f"(all rotations {acc['all_rotations']:.1%}, chance {acc['chance']:.1%})")
    print(f"saved {args.out}")
    return 0


def cmd_eval(args) -> int:
    from .canonicalizer import load_canonicalizer
    from .train import load_photos, upright_accuracy

    model = load_canonicalizer(args.canonicalizer)
    photos, names = load_photos(args.images)
    acc = upright_accuracy(model, photos)
    for name, ok in zip(names, acc["per_photo_upright"]):
        print(f"{'upright ' if ok else 'MISSED  '} {name}")
    print(f"upright recognised on {acc['upright']:.1%} of {acc['photos']} photos (all rotations "
          f"{acc['all_rotations']:.1%}, chance {acc['chance']:.1%})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="image-seg", description="Rotation-equivariant Segment Anything")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("segment", help="segment a photo: one PNG per mask, overlay.png, masks.json (COCO RLE)")
    s.add_argument("photo")
    s.add_argument("--checkpoint", required=True, help="an official SAM checkpoint (.pth state dict)")
    s.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    s.add_argument("--boxes", help="JSON file or text: [[x0, y0, x1, y1], ...] in pixels; without it, segment everything")
    s.add_argument("--canonicalizer", help="checkpoint from train-canonicalizer (default: C<order> sky heuristic)")
    s.add_argument("--order", type=int, default=4, choices=[4, 8], help="group of the default canonicalizer")
    s.add_argument("--points-per-side", type=int, default=32, help="grid for segment-everything mode")
    s.add_argument("--device", default="cpu")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--overwrite", action="store_true",
                   help="replace masks.json, overlay.png and mask_NNN.png already in the output folder")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_segment)

    t = sub.add_parser("train-canonicalizer", help="train the canonicalizer on a folder of upright photos")
    t.add_argument("--images", required=True, help="folder of upright photos")
    t.add_argument("--out", required=True, help="checkpoint to write")
    t.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    t.add_argument("--val-images", help="folder of held-out upright photos to report accuracy on")
    t.add_argument("--order", type=int, default=4, choices=[4, 8])
    t.add_argument("--size", type=int, default=64)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval-canonicalizer", help="how often a canonicalizer sees upright photos as upright")
    e.add_argument("--images", required=True)
    e.add_argument("--canonicalizer", required=True)
    e.set_defaults(func=cmd_eval)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with torch.set_grad_enabled(args.command.startswith("train")):  # scoped: main() may run in-process
            return args.func(args)
    except (ValueError, TypeError) as e:
        print(f"image-seg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"image-seg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
