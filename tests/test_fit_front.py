"""scripts/fit_front.py: a front scorer for the shipped up-axis canonicalizer, trained on cached canonical inputs
with the identity prior restricted to yaw turns (issue "2 of 4": the full frame)."""
import json

import pytest
import torch

from conftest import load_script


def test_closeness_points_at_the_turn_that_undoes_the_pose():
    from pointcanon.nn.axes import yaw_turns

    script = load_script("fit_front")
    for turns in (4, 12):
        yaws = yaw_turns(turns)
        pose = yaws.transpose(1, 2)  # the canonical frame is off by turn k: front k undoes it
        near = script.closeness(pose, turns)
        assert torch.equal(near.argmax(1), torch.arange(turns))
        assert torch.allclose(near.amax(1), torch.ones(turns, dtype=torch.float64))


@pytest.mark.slow
def test_fits_a_front_scorer_and_writes_a_loadable_full_frame_canonicalizer(tmp_path, one_thread, tiny_plain_run):
    from pointcanon import load_canonicalizer

    root, _ = tiny_plain_run
    script = load_script("fit_front")
    out, summary = tmp_path / "full.pt", tmp_path / "full.json"
    args = [str(tmp_path / "run" / "last.pt"), "--data-root", str(root), "--cache", str(tmp_path / "cache"),
            "--draws", "1", "--steps", "20", "--turns", "6", "--front", "8,16", "--threads", "1"]
    assert script.main(args + ["--out", str(out), "--summary", str(summary)]) == 0
    canon = load_canonicalizer(out)
    assert canon.hparams["front"] == (8, 16) and canon.hparams["front_turns"] == 6
    test = json.loads(summary.read_text())["test"]
    for key in ("acc_front_learned", "acc_front_candidate", "acc_front_nearest_true_pose"):
        assert 0 <= test[key] <= test["acc_front_oracle"] <= 1, key
    assert test["frame_within_15deg_best_turn"] >= max(test["frame_within_15deg_learned"],
                                                      test["frame_within_15deg_candidate"])
    before = out.read_bytes()
    with pytest.raises(SystemExit):  # never overwritten
        script.main(args + ["--out", str(out)])
    assert out.read_bytes() == before
