"""The image canonicalizer: equivariant by construction, ties handled, trainable with the prior."""
import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, require
from image_seg import ImageCanonicalizer, ImageRotation, equivariant_argmax, load_canonicalizer
from image_seg.canonicalizer import exact_box_downscale
from image_seg.synthetic import upright_scenes
from pointcanon.core import cyclic_rotations


@pytest.fixture(scope="module")
def voc_photo():
    from PIL import Image
    return np.asarray(Image.open(require(SHARED_DATA / "images" / "voc_rgb.jpg")).convert("RGB")).copy()


def _tensor(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)


@pytest.mark.slow
def test_small_and_equivariant_bit_for_bit_under_quarter_turns(voc_photo):
    odd = np.random.default_rng(0).integers(0, 256, (37, 91, 3), dtype=np.uint8)
    for n in (4, 8):
        torch.manual_seed(n)
        can = ImageCanonicalizer(order=n).eval()
        assert sum(p.numel() for p in can.parameters()) <= 500_000
        for img in (voc_photo, odd):
            with torch.no_grad():
                base = can([_tensor(img)])
                for m in range(1, 4):
                    turned = np.rot90(img, m)
                    c = can([_tensor(turned)])
                    shift = m * n // 4
                    assert torch.equal(c.logits, torch.roll(base.logits, shift, -1))  # bit for bit
                    assert c.index.item() == (base.index.item() + shift) % n
                    g = cyclic_rotations(n)[shift]
                    assert torch.allclose(c.frame[0], g @ base.frame[0], atol=1e-6)  # frame(g x) = g frame(x)
                    assert torch.equal(c.canonical, base.canonical)  # the canonical photo is invariant
        assert torch.equal(base.frame[0], cyclic_rotations(n)[base.index.item()])


def test_canonical_is_the_photo_rotated_back_and_the_downscale_is_exact(voc_photo):
    torch.manual_seed(0)
    can = ImageCanonicalizer(order=4).eval()
    with torch.no_grad():
        c = can([_tensor(voc_photo)])
    k = c.index.item()
    assert np.array_equal(c.canonical[0].permute(1, 2, 0).numpy(), np.rot90(voc_photo, -k))
    x = _tensor(voc_photo)
    small = exact_box_downscale(x, (24, 32))
    assert torch.allclose(small, torch.nn.functional.adaptive_avg_pool2d(x.double() / 255, (24, 32)).float(), atol=1e-6)
    assert torch.equal(exact_box_downscale(torch.rot90(x, 1, (1, 2)), (32, 24)), torch.rot90(small, 1, (1, 2)))


@pytest.mark.slow
def test_C8_index_follows_45_degree_rotations_of_a_photo_it_knows(voc_photo):
    class Template(torch.nn.Module):  # an invariant score: closeness to the upright photo's copy
        def __init__(self, can, photo):
            super().__init__()
            self.ref = can.orbit(can.downscale(_tensor(photo))[None])[0, 0]

        def forward(self, x):
            return -(x - self.ref).pow(2).mean((1, 2, 3)) * 100

    can = ImageCanonicalizer(order=8)
    can.scorer = Template(can, voc_photo)
    for k in range(8):
        rotated = ImageRotation.rotate(k, 8, voc_photo.shape[:2]).apply_image(voc_photo)
        c, rotation, canonical = can.canonicalize(rotated)
        assert c.index.item() == k
        assert canonical.shape == voc_photo.shape


def test_ties_are_broken_equivariantly_and_periodic_logits_are_flagged():
    base = torch.tensor([[1.0, 1.0, 0.0, 0.5, 1.0, -1.0, 0.2, 0.3]])
    i0, deg = equivariant_argmax(base)
    assert not deg.item()
    for m in range(8):
        i, d = equivariant_argmax(torch.roll(base, m, -1))
        assert i.item() == (i0.item() + m) % 8 and not d.item()
    periodic = torch.tensor([[2.0, 1.0, 2.0, 1.0]])
    assert equivariant_argmax(periodic)[1].item()
    # a photo with 180-degree symmetry has periodic C4 logits: flagged as degenerate, never NaN
    half = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    sym = np.concatenate([half, np.rot90(half, 2)], 0)
    assert np.array_equal(sym, np.rot90(sym, 2))
    with torch.no_grad():
        c = ImageCanonicalizer(order=4).eval()([_tensor(sym)])
    assert c.degenerate.item() and torch.isfinite(c.logits).all() and c.conditioning.item() == 0


@pytest.mark.slow
def test_cli_training_with_the_prior_recognises_held_out_upright_photos(tmp_path):
    from PIL import Image

    from image_seg.cli import main
    from image_seg.train import load_photos, upright_accuracy

    for split, seed in (("train", 0), ("held_out", 1)):
        (tmp_path / split).mkdir()
        for i, img in enumerate(upright_scenes(12, seed=seed)):
            Image.fromarray(img).save(tmp_path / split / f"scene_{i:02d}.png")
    held, _ = load_photos(tmp_path / "held_out")
    torch.manual_seed(0)
    before = upright_accuracy(ImageCanonicalizer(order=4), held)["upright"]
    ckpt = tmp_path / "canon.pt"
    ckpt.write_bytes(b"a user's file")  # an existing --out: refused before training, replaced with --overwrite
    argv = ["train-canonicalizer", "--images", str(tmp_path / "train"), "--out", str(ckpt), "--steps", "50",
            "--batch-size", "16", "--quiet"]
    assert main(argv) == 2 and ckpt.read_bytes() == b"a user's file"
    assert main(argv + ["--overwrite"]) == 0
    model = load_canonicalizer(ckpt)
    after = upright_accuracy(model, held)
    print(f"held-out synthetic scenes: upright recognised {after['upright']:.0%} after training "
          f"(untrained {before:.0%}, chance {after['chance']:.0%})")
    assert after["upright"] >= 0.75 > after["chance"]
    assert after["all_rotations"] == after["upright"]  # C4: the index moves exactly with the photo


def test_bad_checkpoints_and_inputs_raise_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_canonicalizer(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_canonicalizer(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="group order"):
        ImageCanonicalizer(order=3)
    with pytest.raises(TypeError, match="uint8"):
        ImageCanonicalizer().downscale(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="grayscale"):
        ImageCanonicalizer().canonicalize(np.zeros((8, 8), dtype=np.uint8))
