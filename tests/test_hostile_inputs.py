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
