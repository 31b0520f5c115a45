"""Wall time of EquivariantSamPredictor against plain SamPredictor on the same photo and box prompts,
with a ViT-B-sized SAM (random weights: the timing does not depend on them), and the ratio.

    .venv/bin/python scripts/bench_sam.py [--threads 2] [--repeats 3] [--order 4] [--model-type vit_b] [--device cpu]

Each repeat runs set_image + one predict per box (the photo's 19 instance boxes) for both, alternating
plain / wrapper; the best repeat of each is reported (least disturbed by the machine).
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from image_seg import EquivariantSamPredictor, ImageCanonicalizer


def load_photo(data: Path):
    from PIL import Image
    photo = np.asarray(Image.open(data / "voc_rgb.jpg").convert("RGB")).copy()
    y1, x1, y2, x2 = np.load(data / "voc_instances.npz")["bboxes"].T.astype(np.float64)
    return photo, np.stack([x1, y1, x2, y2], 1)


def run(predictor, photo, boxes, device):
    t = time.perf_counter()
    predictor.set_image(photo)
    for b in boxes:
        predictor.predict(box=b, multimask_output=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--order", type=int, default=4, choices=[4, 8])
    p.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default=os.environ.get("POINTCANON_SHARED_DATA",
                                                    Path(__file__).resolve().parents[2] / "shared" / "data"))
    a = p.parse_args()
    data = Path(a.data) / "images"
    if not (data / "voc_rgb.jpg").is_file():
        sys.exit(f"photo not found in {data} (set POINTCANON_SHARED_DATA or --data)")
    torch.set_num_threads(a.threads)
    from segment_anything import SamPredictor, sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry[a.model_type]().to(a.device).eval()
    canon = ImageCanonicalizer(order=a.order).to(a.device).eval()
    photo, boxes = load_photo(data)
    params = sum(x.numel() for x in sam.parameters())
    extra = sum(x.numel() for x in canon.parameters())
    plain, wrapper = SamPredictor(sam), EquivariantSamPredictor(sam, canon)
    run(plain, photo, boxes, a.device)  # warm-up
    run(wrapper, photo, boxes, a.device)
    tp, tw = [], []
    for _ in range(a.repeats):
        tp.append(run(plain, photo, boxes, a.device))
        tw.append(run(wrapper, photo, boxes, a.device))
    t = time.perf_counter()
    for _ in range(5):
        canon.canonicalize(photo)
    t_canon = (time.perf_counter() - t) / 5
    print(f"{a.model_type} SAM (random weights, {params / 1e6:.1f} M parameters) + C{a.order} canonicalizer "
          f"({extra / 1e3:.0f} k parameters, +{100 * extra / params:.2f} %); photo {photo.shape[1]}x{photo.shape[0]}, "
          f"{len(boxes)} box prompts; device {a.device}, {a.threads} threads; best of {a.repeats}")
    print(f"plain SamPredictor      {min(tp):8.3f} s   (all: {', '.join(f'{x:.3f}' for x in tp)})")
    print(f"EquivariantSamPredictor {min(tw):8.3f} s   (all: {', '.join(f'{x:.3f}' for x in tw)})")
    print(f"canonicalizer alone     {t_canon:8.3f} s per photo (downscale, orbit, scores, rotation)")
    print(f"ratio wrapper / plain   {min(tw) / min(tp):8.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
