"""scripts/frame_errors.py: per-class frame errors of a canonicalizer in front of a plain backbone, and
which of them change the backbone's answer (issue "2 of 4": errors that matter)."""
import json

import pytest

from conftest import load_script


@pytest.mark.slow
def test_counts_add_up_and_match_the_definitions(tmp_path, one_thread, tiny_plain_run):
    root, _ = tiny_plain_run
    script = load_script("frame_errors")
    out = tmp_path / "fe.json"
    assert script.main([str(tmp_path / "run" / "last.pt"), "--data-root", str(root), "--threads", "1",
                        "--out", str(out)]) == 0
    s = json.loads(out.read_text())
    rows = s["per_class"]
    assert sum(r["shapes"] for r in rows) == s["shapes"]
    assert sum(r["frame_off_answer_changed"] for r in rows) == s["frame_off_answer_changed"]
    for r in rows:
        assert r["frame_off_answer_changed"] + r["frame_off_answer_kept"] == r["frame_off"]
        assert r["frame_off"] == round(r["shapes"] * (1 - r["frame_within_15deg"]))
    # the canonicalized answers do not depend on the rotation protocol's seed (exact invariance)
    out2 = tmp_path / "fe_seed1.json"
    assert script.main([str(tmp_path / "run" / "last.pt"), "--data-root", str(root), "--threads", "1",
                        "--seed", "1", "--out", str(out2)]) == 0
    assert json.loads(out2.read_text())["acc_canonicalized_SO3"] == pytest.approx(s["acc_canonicalized_SO3"], abs=1e-9)
    # the four fronts: the one pass is one of them, so any-right bounds both it and the most confident one
    assert s["acc_front_oracle_SO3"] >= max(s["acc_canonicalized_SO3"], s["acc_front_evidence_SO3"])
    with pytest.raises(SystemExit):  # never overwritten
        script.main([str(tmp_path / "run" / "last.pt"), "--data-root", str(root), "--out", str(out)])

