"""Hostile and broken inputs at every entry point: a clear error (exit code 2 / ValueError / TypeError),
never code run from a file, never a silently wrong answer or a half-written output."""
from __future__ import annotations

import builtins
import os

from pathlib import Path

import numpy as np
import pytest
import torch

from pointcanon.cli import main as pointcanon_main
from pointcanon.mesh import canonicalize
from pointcanon.models import load_model
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
        ["canonicalize", str(tmp / "box.off"), "-o", str(tmp / "o"), "--model", f, "--no-progress"]),
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
    "pointcanon.models.load_model": lambda f, tmp: _call(lambda: load_model(f)),
}


def _write_box_mesh(path) -> None:
    corners = [(x, y, z) for x in (0, 2) for y in (0, 1) for z in (0, 0.5)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    path.write_text("OFF\n8 12 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in corners)
                    + "".join(f"3 {a} {b} {c}\n" for a, b, c in tris))


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
    _write_box_mesh(tmp_path / "box.off")
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


@pytest.mark.parametrize("kind", ["vn", "candidate"])
def test_huge_coordinates_give_finite_gradients(kind):
    """One cloud at 1e19 in a training batch (float32: its squared norms overflow) must not turn every
    parameter gradient into NaN."""
    from pointcanon.nn import CandidateCanonicalizer, CanonicalizedModel, VNCanonicalizer, build_backbone

    torch.manual_seed(0)
    canon = VNCanonicalizer("SE3") if kind == "vn" else CandidateCanonicalizer("SE3", local_k=4, num_points=32)
    model = CanonicalizedModel(canon, build_backbone("pointnet", 5)).train()
    x = torch.randn(4, 64, 3)
    x[0] *= 1e19
    out = model(x)
    out.logsumexp(-1).mean().backward()
    assert torch.isfinite(out).all()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients in {bad[:5]}"


@pytest.mark.parametrize("kind", ["vn", "candidate"])
@pytest.mark.parametrize("x, match", [
    (torch.zeros(2, 16, 3, dtype=torch.float16), "float32 or float64"),
    (torch.zeros(2, 16, 3, dtype=torch.bfloat16), "float32 or float64"),
    (torch.randn(2, 16, 3, dtype=torch.float64), "weights are torch.float32"),
])
def test_unsupported_or_mismatched_dtypes_raise_type_errors(kind, x, match):
    from pointcanon.nn import CandidateCanonicalizer, VNCanonicalizer

    model = VNCanonicalizer("SE3") if kind == "vn" else CandidateCanonicalizer("SE3")
    with pytest.raises(TypeError, match=match):
        model(x)


# ---------------------------------------------------------------------------------------------------------
# Bad options and unusable outputs: exit code 2 with a message, before any work, and nothing left behind.

SMALL = ["--dataset", "synthetic", "--num-points", "32", "--batch-size", "8", "--max-shapes", "16", "--epochs", "1"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A finished tiny synthetic run (plain PointNet) to evaluate, adapt and re-run into."""
    out = tmp_path_factory.mktemp("run") / "plain"
    assert pointcanon_main(["train", *SMALL, "--out", str(out)]) == 0
    return out


def _no_config(tmp) -> str:
    torch.save({"format": "pointcanon-checkpoint-v1", "model": {}}, tmp / "noconfig.pt")
    return str(tmp / "noconfig.pt")


def _read_only(tmp):
    if os.geteuid() == 0:  # root ignores permission bits; /proc takes no new files even from root
        return Path("/proc")
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return ro


BAD_OPTIONS = {
    "train --prior-weight nan": (lambda t, r: ["train", *SMALL, "--canonicalizer", "vn", "--prior", "identity",
                                               "--prior-weight", "nan", "--out", str(t / "o")], "prior_weight"),
    "train --lr 1e30": (lambda t, r: ["train", *SMALL, "--lr", "1e30", "--out", str(t / "o")], "diverged"),
    "train --lr -1": (lambda t, r: ["train", *SMALL, "--lr", "-1", "--out", str(t / "o")], "lr must be"),
    "train --checkpoint-every -1": (lambda t, r: ["train", *SMALL, "--checkpoint-every", "-1", "--out", str(t / "o")],
                                    "checkpoint_every"),
    "train --out FILE": (lambda t, r: ["train", *SMALL, "--out", str(t / "afile")], "existing file"),
    "train --out READ-ONLY": (lambda t, r: ["train", *SMALL, "--out", str(_read_only(t) / "sub")], "not a writable"),
    "train into a finished --out": (lambda t, r: ["train", *SMALL, "--out", str(r)], "already holds a run"),
    "train --resume without config": (lambda t, r: ["train", *SMALL, "--resume", "--out", str(_resume_without_config(t))],
                                      "no training config"),
    "adapt --pretrained without config": (lambda t, r: ["adapt", "--pretrained", _no_config(t), "--out", str(t / "o")],
                                          "no training config"),
    "eval --num-points 0": (lambda t, r: ["eval", str(r / "last.pt"), "--num-points", "0"], "--num-points"),
    "eval --out FOLDER": (lambda t, r: ["eval", str(r / "last.pt"), "--out", str(t)], "is a folder"),
    "canonicalize --num-points 0": (lambda t, r: ["canonicalize", str(_box(t)), "-o", str(t / "o"), "--num-points", "0"],
                                    "--num-points"),
    "canonicalize -o FILE": (lambda t, r: ["canonicalize", str(_box(t)), "-o", str(t / "afile")], "existing file"),
    "measure --plot FOLDER": (lambda t, r: ["measure", "--checkpoint", str(r / "last.pt"), "--plot", str(t)], "is a folder"),
    "measure --num-samples 0": (lambda t, r: ["measure", "--checkpoint", str(r / "last.pt"), "--num-samples", "0"],
                                "num_samples"),
}


def _box(tmp):
    _write_box_mesh(tmp / "box.off")
    return tmp / "box.off"


def _resume_without_config(tmp):
    (tmp / "run").mkdir()
    torch.save({"format": "pointcanon-checkpoint-v1", "model": {}}, tmp / "run" / "last.pt")
    return tmp / "run"


@pytest.mark.parametrize("entry", sorted(BAD_OPTIONS))
def test_bad_options_give_a_clear_error_before_any_work(entry, small_run, tmp_path, capsys):
    (tmp_path / "afile").write_text("keep me")
    before = {p: p.stat().st_mtime_ns for p in small_run.iterdir()}
    argv, match = BAD_OPTIONS[entry]
    code = pointcanon_main(argv(tmp_path, small_run))
    err = capsys.readouterr().err
    assert code == 2, entry
    assert match in err and "Traceback" not in err, err
    assert (tmp_path / "afile").read_text() == "keep me"
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir()), "a failed run left files behind"
    assert {p: p.stat().st_mtime_ns for p in small_run.iterdir()} == before, "the finished run was touched"


def test_eval_refuses_a_dataset_with_another_class_count(small_run, tmp_path, capsys):
    """A synthetic-trained model on ModelNet40 and a ModelNet40-trained model on the synthetic set: the
    class indices would mean other classes; refuse instead of printing a meaningless accuracy."""
    from conftest import MODELNET_HDF5, require

    root = str(require(MODELNET_HDF5))
    assert pointcanon_main(["eval", str(small_run / "last.pt"), "--dataset", "modelnet40", "--data-root", root,
                            "--max-shapes", "8", "--out", str(tmp_path / "e.json")]) == 2
    assert "trained with" in capsys.readouterr().err
    mn = tmp_path / "mn"
    assert pointcanon_main(["train", "--dataset", "modelnet40", "--data-root", root, "--num-points", "32",
                            "--batch-size", "8", "--max-shapes", "16", "--epochs", "1", "--out", str(mn)]) == 0
    assert pointcanon_main(["eval", str(mn / "last.pt"), "--dataset", "synthetic", "--max-shapes", "8",
                            "--out", str(tmp_path / "e.json")]) == 2
    assert "trained with" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_written_files_respect_the_umask(tmp_path):
    from pointcanon.core.io import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


BAD_IMAGE_SEG = {
    "segment --points-per-side 0": (lambda t: ["segment", str(t / "photo.png"), "--checkpoint", str(t / "sam.pth"),
                                               "--model-type", "tiny", "--points-per-side", "0", "-o", str(t / "o")],
                                    "--points-per-side"),
    "segment -o FILE": (lambda t: ["segment", str(t / "photo.png"), "--checkpoint", str(t / "sam.pth"),
                                   "--model-type", "tiny", "-o", str(t / "afile")], "existing file"),
    "train-canonicalizer --out FOLDER": (lambda t: ["train-canonicalizer", "--images", str(t), "--out", str(t)],
                                         "is a folder"),
}


@pytest.mark.parametrize("entry", sorted(BAD_IMAGE_SEG))
def test_image_seg_bad_options_give_a_clear_error(entry, tmp_path, capsys):
    from PIL import Image

    (tmp_path / "afile").write_text("keep me")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "photo.png")
    argv, match = BAD_IMAGE_SEG[entry]
    assert image_seg_main(argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err, err
    assert (tmp_path / "afile").read_text() == "keep me"


@pytest.mark.parametrize("shape", [(1, 2), (2, 1)])
@pytest.mark.parametrize("order", [4, 8])
def test_tiny_photos_with_a_valid_box_segment(shape, order):
    """A 2x1 photo rotated by the canonicalizer used to hit a negative-stride numpy view."""
    from image_seg import EquivariantSamPredictor, default_canonicalizer
    from image_seg.models import build_tiny_sam

    torch.manual_seed(0)
    img = (np.random.default_rng(0).random((*shape, 3)) * 255).astype(np.uint8)
    predictor = EquivariantSamPredictor(build_tiny_sam().eval(), default_canonicalizer(order))
    predictor.set_image(img)
    masks, _, _ = predictor.predict(box=np.array([0, 0, shape[1], shape[0]]), multimask_output=False)
    assert masks.shape == (1, *shape)
