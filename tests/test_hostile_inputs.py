"""Hostile and broken inputs at every entry point: a clear error (exit code 2 / ValueError / TypeError),
never code run from a file, never a silently wrong answer or a half-written output."""
from __future__ import annotations

import builtins
import os
import stat

import numpy as np
import pytest
import torch

from pointcanon.cli import main as pointcanon_main
from pointcanon.mesh import canonicalize
from pointcanon.train import load_model
from image_seg.cli import main as image_seg_main


class _WritesAFile:
    """Unpickling this object calls ``open(marker, "w")``: a stand-in for any code a crafted file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def plant(path, marker, **extra) -> str:
    """A ``.pt`` file that looks like a pointcanon checkpoint / canonicalizer file / SAM state dict and
    creates ``marker`` when unpickled by an unrestricted loader."""
    payload = {"format": "pointcanon-checkpoint-v1", "config": {}, "model": {}, "state_dict": {},
               "hparams": {}, "payload": _WritesAFile(marker), **extra}
    torch.save(payload, path)
    return str(path)


LOADERS = {
    "eval": lambda f, tmp: pointcanon_main(["eval", f]),
    "canonicalize --model": lambda f, tmp: pointcanon_main(
        ["canonicalize", str(tmp / "in.xyz"), "-o", str(tmp / "o"), "--model", f, "--no-progress"]),
    "adapt --pretrained": lambda f, tmp: pointcanon_main(["adapt", "--pretrained", f, "--out", str(tmp / "o")]),
    "measure --checkpoint": lambda f, tmp: pointcanon_main(["measure", "--checkpoint", f]),
    "measure --points": lambda f, tmp: pointcanon_main(["measure", "--checkpoint", f, "--points", f]),
    "train --canonicalizer-weights": lambda f, tmp: pointcanon_main(
        ["train", "--canonicalizer", "candidate", "--canonicalizer-weights", f, "--out", str(tmp / "o")]),
    "train --resume": lambda f, tmp: pointcanon_main(["train", "--out", str(tmp / "run"), "--resume", "--epochs", "1"]),
    "image-seg segment --canonicalizer": lambda f, tmp: image_seg_main(
        ["segment", str(tmp / "photo.png"), "--checkpoint", f, "--canonicalizer", f, "-o", str(tmp / "o"), "-q"]),
    "image-seg segment --checkpoint": lambda f, tmp: image_seg_main(
        ["segment", str(tmp / "photo.png"), "--checkpoint", f, "-o", str(tmp / "o"), "-q"]),
    "image-seg eval-canonicalizer": lambda f, tmp: image_seg_main(
        ["eval-canonicalizer", "--images", str(tmp), "--canonicalizer", f]),
    "pointcanon.canonicalize(points, file)": lambda f, tmp: _call(
        lambda: canonicalize(np.random.default_rng(0).normal(size=(64, 3)), f)),
    "pointcanon.train.load_model": lambda f, tmp: _call(lambda: load_model(f)),
}


def _call(fn) -> int:
    try:
        fn()
    except (ValueError, TypeError) as e:
        print(f"error: {e}")
        return 2
    return 0


@pytest.mark.parametrize("entry", sorted(LOADERS))
def test_loading_a_crafted_file_never_runs_its_code(entry, tmp_path, capsys):
    from PIL import Image

    marker = tmp_path / "code_ran"
    f = plant(tmp_path / "crafted.pt", marker)
    (tmp_path / "run").mkdir()
    plant(tmp_path / "run" / "last.pt", marker)
    np.savetxt(tmp_path / "in.xyz", np.random.default_rng(0).normal(size=(64, 3)))
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "photo.png")
    code = LOADERS[entry](f, tmp_path)
    err = capsys.readouterr()
    assert not marker.exists(), f"{entry} ran code from a crafted file"
    assert code != 0, f"{entry} accepted a crafted file"
    assert "Traceback" not in err.err
    assert "refusing to load" in err.out + err.err


def _symmetric_clouds() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    p = torch.randn(100, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    box = torch.tensor([[a, b, c] for a in (-1.0, 1.0) for b in (-2.0, 2.0) for c in (-0.5, 0.5)], dtype=torch.float64)
    return {"point-symmetric (p and -p)": torch.cat([p, -p]),
            "two points": torch.tensor([[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]], dtype=torch.float64),
            "box at its 8 vertices": box + 0.25}


def _canonicalizers():
    from pointcanon.mesh import load_default_canonicalizer
    from pointcanon.nn import VNCanonicalizer

    torch.manual_seed(0)
    return {"vn": VNCanonicalizer("SE3").eval(), "shipped candidate": load_default_canonicalizer()}


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
@pytest.mark.parametrize("kind", ["vn", "shipped candidate"])
@pytest.mark.parametrize("cloud", sorted(_symmetric_clouds()))
def test_symmetric_clouds_are_flagged_or_invariant(cloud, kind, dtype, tol):
    """A cloud with a symmetry has no unique frame; the canonicalizer must say so (degenerate) or give a
    canonical cloud that does not move under rigid motions. The vector-neuron canonicalizer's vectors
    cancel to rounding noise on these clouds: it must flag all three."""
    from pointcanon.core import apply_rigid, random_rigid_motion

    model = _canonicalizers()[kind].to(dtype)
    x = _symmetric_clouds()[cloud].to(dtype)[None]
    with torch.no_grad():
        base = model(x)
        assert torch.isfinite(base.canonical).all()
        if kind == "vn":
            assert base.degenerate.all() and base.conditioning.eq(0).all(), f"{cloud} not flagged"
        if base.degenerate.any():
            return
        radius = base.canonical.norm(dim=-1).amax()
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            q, s = random_rigid_motion(1, "SE3", generator=g, dtype=dtype)
            moved = model(apply_rigid(x, q, s))
            assert moved.degenerate.any() or (moved.canonical - base.canonical).abs().max() <= tol * radius, cloud
