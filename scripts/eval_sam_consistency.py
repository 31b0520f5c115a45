"""Plain SAM against the rotation-equivariant wrapper, side by side, on the VOC photo under every element
of C4 and C8: box-prompted mask AP (pycocotools COCOeval, segm) and the consistency IoU between
f(rotate(x)) and rotate(f(x)).

    .venv/bin/python scripts/eval_sam_consistency.py [--checkpoint sam_vit_b_01ec64.pth --model-type vit_b]
        [--canonicalizer canon.pt] [--groups 4 8] [--out results.json]

Without --checkpoint a small SAM with random weights is used (the script says so): then AP is
meaningless, but the consistency columns still measure the geometry. The prompts for a rotated photo
are the boxes of its rotated instance masks (what one would draw on it); rotate(f(x)) rotates the mask
logits and thresholds them. Consistency is averaged over the non-identity elements, AP over all.
"""
import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np
import torch

from image_seg import EquivariantSamPredictor, ImageRotation, default_canonicalizer, load_canonicalizer


def load_voc(data: Path):
    from PIL import Image
    photo = np.asarray(Image.open(data / "voc_rgb.jpg").convert("RGB")).copy()
    d = np.load(data / "voc_instances.npz")
    return photo, d["masks"], d["labels"].astype(int)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """XYXY (end-exclusive) boxes of ``(N, H, W)`` masks."""
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(out, dtype=np.float64)


def predict_logits(predictor, photo, boxes) -> tuple[np.ndarray, np.ndarray]:
    """Mask logits ``(N, H, W)`` and scores ``(N,)``, one box at a time."""
    predictor.set_image(photo)
    out = [predictor.predict(box=b, multimask_output=False, return_logits=True) for b in boxes]
    return np.stack([o[0][0] for o in out]), np.array([float(o[1][0]) for o in out])


def mask_ap(gt: np.ndarray, labels: np.ndarray, pred: np.ndarray, scores: np.ndarray) -> float:
    """COCO mask AP@[.5:.95] of predictions (one per instance, with that instance's class)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        r["counts"] = r["counts"].decode("ascii")
        return r

    h, w = gt.shape[1:]
    anns = [{"id": i + 1, "image_id": 1, "category_id": int(c), "segmentation": rle(m), "area": float(m.sum()),
             "bbox": [float(v) for v in mask_utils.toBbox(rle(m))], "iscrowd": 0} for i, (m, c) in enumerate(zip(gt, labels))]
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "height": h, "width": w}], "annotations": anns,
                    "categories": [{"id": int(c)} for c in sorted(set(labels.tolist()))]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        dets = [{"image_id": 1, "category_id": int(c), "segmentation": rle(m), "score": float(s)}
                for m, c, s in zip(pred, labels, scores) if m.any()]
        if not dets:
            return 0.0
        e = COCOeval(coco, coco.loadRes(dets), "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return float(max(e.stats[0], 0.0))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, union = (a & b).sum((-1, -2)), (a | b).sum((-1, -2))
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def evaluate_group(n, photo, gt, labels, plain, wrapper, threshold) -> list[dict]:
    rows, base = [], {}
    for k in range(n):
        r = ImageRotation.rotate(k, n, photo.shape[:2])
        x, gt_k = r.apply_image(photo), r.apply_masks(gt)
        boxes = mask_boxes(gt_k)
        row = {"group": f"C{n}", "k": k, "degrees": k * 360 / n}
        for name, predictor in (("plain", plain), ("wrapper", wrapper)):
            logits, scores = predict_logits(predictor, x, boxes)
            if k == 0:
                base[name] = torch.from_numpy(logits)
            masks = logits > threshold
            row[f"ap_{name}"] = mask_ap(gt_k, labels, masks, scores)
            row[f"consistency_{name}"] = iou(masks, r.apply_masks(base[name]).numpy() > threshold)
        row["index"] = int(wrapper.canonicalization.index[0])
        rows.append(row)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="official SAM checkpoint; default: a small SAM with random weights")
    p.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    p.add_argument("--canonicalizer", help="checkpoint from image-seg train-canonicalizer (its order is used "
                                           "for its group; the default sky heuristic for the others)")
    p.add_argument("--groups", type=int, nargs="+", default=[4, 8], choices=[4, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write the rows as JSON here")
    p.add_argument("--data", default=os.environ.get("POINTCANON_SHARED_DATA",
                                                    Path(__file__).resolve().parents[2] / "shared" / "data"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = Path(a.data) / "images"
    if not (data / "voc_instances.npz").is_file():
        sys.exit(f"VOC photo and instances not found in {data} (set POINTCANON_SHARED_DATA or --data)")
    from segment_anything import SamPredictor

    from image_seg.models import build_tiny_sam, load_sam

    if a.checkpoint:
        sam, what = load_sam(a.checkpoint, a.model_type), f"SAM {a.model_type} from {a.checkpoint}"
    else:
        sam, what = build_tiny_sam(img_size=256, seed=0), "a small SAM with RANDOM weights (no checkpoint given: AP is meaningless, consistency still measures the geometry)"
    trained = load_canonicalizer(a.canonicalizer) if a.canonicalizer else None
    photo, gt, labels = load_voc(data)
    print(f"model: {what}")
    rows = []
    for n in a.groups:
        canon = trained if trained is not None and trained.order == n else default_canonicalizer(n)
        print(f"C{n} canonicalizer: {a.canonicalizer if canon is trained else 'default sky heuristic (training-free)'}")
        rows += evaluate_group(n, photo, gt, labels, SamPredictor(sam), EquivariantSamPredictor(sam, canon), sam.mask_threshold)
    print(f"\n{'group':<6}{'k':>3}{'deg':>7}{'index':>7}{'AP plain':>10}{'AP wrap':>9}{'cons plain':>12}{'cons wrap':>11}")
    for r in rows:
        print(f"{r['group']:<6}{r['k']:>3}{r['degrees']:>7.0f}{r['index']:>7}{r['ap_plain']:>10.4f}{r['ap_wrapper']:>9.4f}"
              f"{r['consistency_plain']:>12.4f}{r['consistency_wrapper']:>11.4f}")
    summary = {}
    for n in a.groups:
        g = [r for r in rows if r["group"] == f"C{n}"]
        s = {key: float(np.mean([r[key] for r in g])) for key in ("ap_plain", "ap_wrapper")}
        s.update({key: float(np.mean([r[key] for r in g if r["k"] > 0])) for key in ("consistency_plain", "consistency_wrapper")})
        summary[f"C{n}"] = s
        print(f"C{n} mean: AP plain {s['ap_plain']:.4f}, wrapper {s['ap_wrapper']:.4f}; consistency IoU (k != 0) "
              f"plain {s['consistency_plain']:.4f}, wrapper {s['consistency_wrapper']:.4f}")
    if a.out:
        from pointcanon.core.io import write_json
        write_json(a.out, {"model": what, "rows": rows, "summary": summary})
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
