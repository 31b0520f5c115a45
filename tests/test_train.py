import json

import pytest
import torch

from pointcanon.core.io import atomic_write, load_checkpoint
from pointcanon.models import build_model, load_model
from pointcanon.train import augment_batch, evaluate, train
from trainkit import Blobs, NoisyBlobs, small_config


@pytest.mark.slow
def test_training_learns_and_writes_its_files(tmp_path):
    model, history = train(small_config(), Blobs(n=160), Blobs(seed=9), out=tmp_path, progress=False, log=lambda s: None)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["test_upright_acc"] >= 0.9
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1
    reloaded, cfg, _ = load_model(tmp_path / "last.pt")
    assert cfg == small_config()
    assert evaluate(reloaded, Blobs(seed=9))["acc"] == evaluate(model, Blobs(seed=9))["acc"]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.slow
@pytest.mark.parametrize("canonicalizer", ["none", "vn"])
def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path, canonicalizer):
    kw = dict(canonicalizer=canonicalizer, train_rotation="so3", checkpoint_every=2)
    if canonicalizer == "vn":
        kw.update(prior="identity", prior_weight=0.1, canonicalizer_kwargs={"hidden": (4, 4, 4), "num_points": 16})
    full, full_hist = train(small_config(**kw), Blobs(), out=tmp_path / "full", progress=False, log=lambda s: None)
    train(small_config(**kw), Blobs(), out=tmp_path / "cut", progress=False, log=lambda s: None, stop_after_steps=8)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 2  # mid-epoch: 6 steps per epoch
    resumed, res_hist = train(small_config(**kw), Blobs(), out=tmp_path / "cut", resume=True, progress=False,
                              log=lambda s: None)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(res_hist) == strip(full_hist)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_worker_processes_change_nothing_and_resume_exactly(tmp_path):
    """Batches come through a DataLoader: 0 or 2 worker processes give bit-identical training, random
    transforms inside the dataset included, and a run cut with workers resumes exactly without them."""
    quiet = dict(progress=False, log=lambda s: None)
    cfg = small_config(train_rotation="z", epochs=2, checkpoint_every=2)
    a, hist_a = train(cfg, NoisyBlobs(), out=tmp_path / "a", num_workers=0, **quiet)
    b, hist_b = train(cfg, NoisyBlobs(), out=tmp_path / "b", num_workers=2, **quiet)
    train(cfg, NoisyBlobs(), out=tmp_path / "c", num_workers=2, stop_after_steps=3, **quiet)
    c, _ = train(cfg, NoisyBlobs(), out=tmp_path / "c", resume=True, num_workers=0, **quiet)
    assert [h["train_loss"] for h in hist_a] == [h["train_loss"] for h in hist_b]
    for (name, x), y, z in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(x, y) and torch.equal(x, z), name
    with pytest.raises(ValueError, match="num_workers"):
        train(cfg, NoisyBlobs(), num_workers=-1, **quiet)


def test_resume_refuses_a_different_config_and_a_corrupt_checkpoint(tmp_path):
    train(small_config(epochs=1), Blobs(), out=tmp_path, progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="config differs"):
        train(small_config(epochs=1, lr=1e-2), Blobs(), out=tmp_path, resume=True, progress=False)
    (tmp_path / "last.pt").write_bytes((tmp_path / "last.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt"):
        train(small_config(epochs=1), Blobs(), out=tmp_path, resume=True, progress=False)
    (tmp_path / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="other.pt"):
        load_model(tmp_path / "other.pt")


def test_atomic_write_leaves_nothing_when_writing_fails(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("field, value, match", [("backbone", "resnet", "backbone"), ("train_rotation", "x", "train_rotation"),
                                                  ("prior", "identity", "needs a canonicalizer"), ("batch_size", 1, "batch_size"),
                                                  ("epochs", 0, "epochs"), ("augment", "flip", "augment")])
def test_bad_config_values_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        small_config(**{field: value}).validate()


def test_evaluate_rejects_unknown_protocol():
    with pytest.raises(ValueError, match="protocol"):
        evaluate(torch.nn.Identity(), Blobs(), "xyz")


@pytest.mark.slow
def test_adapt_freezes_the_pretrained_backbone_and_trains_the_canonicalizer(tmp_path):
    train(small_config(epochs=1), Blobs(), out=tmp_path / "plain", progress=False, log=lambda s: None)
    pretrained = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    cfg = small_config(epochs=2, canonicalizer="vn", prior="identity", prior_weight=1.0, pretrained=str(tmp_path / "plain" / "last.pt"),
                       freeze_backbone=True, canonicalizer_kwargs={"hidden": (4, 4, 4), "num_points": 16})
    model, _ = train(cfg, Blobs(), progress=False, log=lambda s: None)
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, pretrained[name]), name  # weights and batch-norm statistics untouched
    torch.manual_seed(cfg.seed)
    fresh = build_model(cfg, 2)  # the initial weights train() starts from
    changed = [not torch.equal(a, b) for a, b in zip(model.canonicalizer.state_dict().values(),
                                                     fresh.canonicalizer.state_dict().values())]
    assert any(changed)


def test_adapt_refuses_a_canonicalized_or_mismatched_checkpoint(tmp_path):
    kw = dict(canonicalizer_kwargs={"hidden": (4, 4, 4), "num_points": 16})
    train(small_config(epochs=1, canonicalizer="vn", **kw), Blobs(), out=tmp_path / "canon", progress=False, log=lambda s: None)
    cfg = small_config(canonicalizer="vn", pretrained=str(tmp_path / "canon" / "last.pt"), freeze_backbone=True, **kw)
    with pytest.raises(ValueError, match="canonicalized model"):
        train(cfg, Blobs(), progress=False)
    train(small_config(epochs=1, backbone_kwargs={"width": 16, "input_transform": False}), Blobs(), out=tmp_path / "narrow",
          progress=False, log=lambda s: None)
    cfg = small_config(canonicalizer="vn", pretrained=str(tmp_path / "narrow" / "last.pt"), freeze_backbone=True, **kw)
    with pytest.raises(ValueError, match="does not fit"):
        train(cfg, Blobs(), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("canonicalizer", ["none", "vn"])
def test_part_segmentation_trains_and_reports_miou(tmp_path, canonicalizer):
    from trainkit import PartBlobs

    cfg = small_config(task="partseg", epochs=4, backbone_kwargs={"width": 32}, canonicalizer=canonicalizer,
                       canonicalizer_kwargs={"hidden": (4, 4, 8), "num_points": 32} if canonicalizer != "none" else {})
    model, history = train(cfg, PartBlobs(n=96), PartBlobs(seed=5), out=tmp_path, progress=False, log=lambda s: None)
    m = evaluate(model, PartBlobs(seed=5))
    assert set(m) == {"instance_miou", "class_miou", "acc"}
    assert history[-1]["test_upright_instance_miou"] == m["instance_miou"]
    if canonicalizer == "none":
        assert m["acc"] > 0.6  # well above chance (0.4); the Gaussian toy has no stable frame for "vn"
    reloaded, _, _ = load_model(tmp_path / "last.pt")
    assert evaluate(reloaded, PartBlobs(seed=5)) == m
    if canonicalizer == "vn":  # invariant per-point predictions, whatever the rotation
        assert evaluate(model, PartBlobs(seed=5), "so3") == m


def test_task_must_match_the_dataset():
    with pytest.raises(ValueError, match="does not match"):
        train(small_config(task="partseg"), Blobs(), progress=False)


def test_scale_shift_augmentation_draws_per_shape_and_per_step():
    x = torch.randn(6, 50, 3, dtype=torch.float64)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert augment_batch(x, "none", g()) is x
    y = augment_batch(x, "scale-shift", g())
    assert torch.equal(y, augment_batch(x, "scale-shift", g()))  # seeded
    # an affine map per shape: scale in [2/3, 3/2] and shift in [-0.2, 0.2] on every axis
    scale = (y[:, 1] - y[:, 0]) / (x[:, 1] - x[:, 0])
    shift = y[:, 0] - scale * x[:, 0]
    assert torch.allclose(y, x * scale[:, None] + shift[:, None], atol=1e-12)
    assert ((scale >= 2 / 3) & (scale <= 1.5)).all() and (shift.abs() <= 0.2).all()
    assert scale.std(0).min() > 0.01  # shapes and axes get their own factors
    # data parallel: a rank's shapes get the factors they get in the whole global batch
    part = augment_batch(x[[1, 4]], "scale-shift", g(), positions=torch.tensor([1, 4]), global_size=6)
    assert torch.equal(part, y[[1, 4]])
    with pytest.raises(ValueError, match="augment"):
        augment_batch(x, "mixup", g())


@pytest.mark.slow
def test_training_with_augmentation_learns_and_resumes_exactly(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    cfg = small_config(augment="scale-shift", checkpoint_every=2)
    full, hist = train(cfg, Blobs(), Blobs(seed=9), out=tmp_path / "full", **quiet)
    assert hist[-1]["test_upright_acc"] >= 0.9
    plain, plain_hist = train(small_config(checkpoint_every=2), Blobs(), out=tmp_path / "plain", **quiet)
    assert hist[0]["train_loss"] != plain_hist[0]["train_loss"]  # the augmentation is applied
    train(cfg, Blobs(), Blobs(seed=9), out=tmp_path / "cut", stop_after_steps=5, **quiet)
    resumed, _ = train(cfg, Blobs(), Blobs(seed=9), out=tmp_path / "cut", resume=True, **quiet)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
