"""scripts/exp_dgcnn_upright.py: a DGCNN trained upright (scale-shift, no rotation), adapted with a canonicalizer
(frozen; backbone fine-tuned), end to end on 40 real ModelNet40 shapes per split (issue "2 of 4", item 4)."""
import json
from pathlib import Path

import pytest
import torch

from conftest import load_script, MODELNET_HDF5, require


def _backbone(path: Path) -> dict:
    from pointcanon.core.io import load_checkpoint

    state = load_checkpoint(path)["model"]
    wrapped = any(k.startswith("backbone.") for k in state)
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.") or not wrapped}


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_smoke_run_writes_every_row_and_refuses_a_second_run(tmp_path, capsys):
    from pointcanon.models import canonicalizer_path

    script, out = load_script("exp_dgcnn_upright"), tmp_path / "dgcnn"
    argv = [str(out), "--smoke", "--canonicalizer", "upright", "--threads", "1",
            "--data-root", str(require(MODELNET_HDF5))]
    assert script.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in summary["rows"]] == ["plain", "frozen", "finetuned"]
    assert summary["settings"]["max_shapes"] == 40 and summary["settings"]["num_points"] == 128
    for row in summary["rows"]:
        evaluated = json.loads((out / "seed0" / row["model"] / "eval.json").read_text())["protocols"]
        for p in ("upright", "z", "SO3"):
            assert 0.0 <= row["acc"][p] <= 1.0 and 0.0 <= row["macc"][p] <= 1.0
            assert row["acc"][p] == evaluated[p]["acc"]  # the stage's own evaluation, not a recomputation
        assert row["backbone_passes"] == 1 and row["ms_per_shape"] > 0
    assert sum(line.startswith("| ") for line in (out / "table.md").read_text().splitlines()) == 4  # header + 3
    assert "| + canonicalizer, backbone fine-tuned |" in capsys.readouterr().out

    # the recipe of each stage
    cfg = {s: json.loads((out / "seed0" / s / "config.json").read_text()) for s in ("plain", "frozen", "finetuned")}
    assert (cfg["plain"]["backbone"], cfg["plain"]["canonicalizer"]) == ("dgcnn", "none")
    assert (cfg["plain"]["train_rotation"], cfg["plain"]["augment"]) == ("none", "scale-shift")
    upright = str(canonicalizer_path("upright").resolve())
    assert cfg["frozen"]["canonicalizer_weights"] == cfg["finetuned"]["canonicalizer_weights"] == upright
    assert cfg["frozen"]["freeze_backbone"] and not cfg["finetuned"]["freeze_backbone"]
    assert cfg["finetuned"]["augment"] == "scale-shift" and cfg["finetuned"]["freeze_canonicalizer"]
    # the frozen row is the plain backbone unchanged; the fine-tuned one has moved
    plain, frozen, tuned = (_backbone(out / "seed0" / s / "last.pt") for s in ("plain", "frozen", "finetuned"))
    assert plain.keys() == frozen.keys() == tuned.keys()
    assert all(torch.equal(plain[k], frozen[k]) for k in plain)
    assert not all(torch.equal(plain[k], tuned[k]) for k in plain)

    # a second run into the same folder is refused before any work, and nothing changes
    before = _snapshot(out)
    assert script.main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_bad_arguments_stop_before_any_work(tmp_path, capsys):
    script = load_script("exp_dgcnn_upright")
    for extra, message in [(["--canonicalizer", str(tmp_path / "missing.pt")], "neither a shipped name nor a file"),
                           (["--finetune-epochs", "9"], "--finetune-epochs"), (["--batch-size", "1"], "--batch-size"),
                           (["--seeds", "0", "0"], "--seeds must differ"),
                           (["--data-root", str(tmp_path / "nowhere")], "--data-root")]:
        assert script.main([str(tmp_path / "out"), "--smoke"] + extra) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
