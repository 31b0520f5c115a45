"""PosedShapes, the controlled task of approximate equivariance: its pose classes differ only by a
rotation (so a strictly invariant model cannot tell them apart), and the experiment script runs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointcanon import CanonicalizedModel, VNCanonicalizer
from pointcanon.datasets import POSES, PosedShapes, build_dataset
from pointcanon.nn import build_backbone

ROOT = Path(__file__).resolve().parents[1]


def test_pose_classes_are_the_same_objects_rotated():
    d = PosedShapes("train", num_points=64, per_class=5)
    assert d.classes[:3] == ["chair upright", "chair on its side", "chair upside down"] and d.num_classes == 8
    assert d.posed_classes == [0, 1, 2] and len(d) == 40 and torch.equal(d.labels.bincount(), torch.full((8,), 5))
    upright, side, down = (d.points[d.labels == c].double() for c in range(3))
    for moved, name in ((side, "on its side"), (down, "upside down")):
        torch.testing.assert_close(moved, upright @ torch.from_numpy(POSES[name]).T, atol=1e-6, rtol=0)
    again = build_dataset("posed", split="train", num_points=64, per_class=5)
    assert torch.equal(again.points, d.points)  # deterministic
    assert not torch.equal(PosedShapes("test", num_points=64, per_class=5).points, d.points)


@pytest.mark.slow
def test_a_strictly_invariant_model_cannot_separate_the_pose_classes():
    d = PosedShapes("test", num_points=128, per_class=3)
    torch.manual_seed(0)
    model = CanonicalizedModel(VNCanonicalizer("SE3"), build_backbone("pointnet", d.num_classes, width=32)).double().eval()
    with torch.no_grad():
        logits = model(d.points.double())
    for c in (1, 2):
        torch.testing.assert_close(logits[d.labels == c], logits[d.labels == 0], atol=1e-9, rtol=0)
    plain = build_backbone("pointnet", d.num_classes, width=32).double().eval()
    with torch.no_grad():
        out = plain(d.points.double())
    assert (out[d.labels == 1] - out[d.labels == 0]).abs().max() > 1e-5  # a plain network sees the pose (untrained: small)


@pytest.mark.parametrize("kwargs, match", [({"per_class": 0}, "per_class"), ({"poses": ("upright",)}, "poses"),
                                           ({"poses": ("upright", "sideways")}, "poses"),
                                           ({"free": ("chair",)}, "distinct"), ({"posed": "sofa"}, "distinct"),
                                           ({"seed": -1}, "seed")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PosedShapes("train", num_points=16, **kwargs)


@pytest.mark.slow
def test_the_experiment_script_writes_its_table(tmp_path):
    out = tmp_path / "exp"
    cmd = [sys.executable, str(ROOT / "scripts" / "exp_approx_equivariance.py"), "--out", str(out), "--epochs", "1",
           "--per-class", "4", "--test-per-class", "2", "--seeds", "0", "1", "--dial", "2:0.5", "--width", "32",
           "--batch-size", "8", "--num-points", "64", "--measure-shapes", "4", "--measure-samples", "1", "--threads", "1"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    results = json.loads((out / "results.json").read_text())["results"]
    assert list(results) == ["plain", "K=2 p=0.5", "strict"] and set(results["strict"]) == {"0", "1"}
    assert results["strict"]["0"]["measure"]["SO3"]["output_error"] < 1e-9  # exactly invariant
    assert results["K=2 p=0.5"]["0"]["zeroed"]["canonicalizer_error_SO3"] < 1e-9  # zeroed: exact again
    assert "| K=2 p=0.5 |" in (out / "summary.md").read_text() and (out / "approx_equivariance.png").stat().st_size
