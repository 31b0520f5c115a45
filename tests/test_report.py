"""scripts/report_modelnet40.py: tables from a run folder, missing runs left out (not invented)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import report_modelnet40 as report  # noqa: E402


def _eval(folder: Path, acc: dict, name: str = "eval.json", epochs: int = 10, seconds: float = 600.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"protocols": {p: {"acc": a} for p, a in acc.items()},
                                           "train_seconds": seconds}))
    (folder / "config.json").write_text(json.dumps({"epochs": epochs}))


def test_tables_show_the_runs_that_exist_and_only_those(tmp_path, capsys):
    _eval(tmp_path / "plain_z", {"upright": 0.814, "z": 0.824, "SO3": 0.115})
    _eval(tmp_path / "canon_all_z", {"upright": 0.78, "z": 0.78, "SO3": 0.78}, seconds=3600)
    _eval(tmp_path / "canon_all_z", {"SO3": 0.791}, name="hyp2_evidence.json")
    scratch = report.accuracy_table(tmp_path, report.SCRATCH, "model")
    assert scratch[2] == "| PointNet | 81.4 | 82.4 | 11.5 | 10 | 10 min |"
    assert scratch[3].startswith("| canonicalized PointNet (the every-point canonicalizer, frozen) | 78.0 | 78.0 | 78.0 | 10 | 60 min")
    assert len(scratch) == 4  # canon_z is missing: its row is left out, not filled in
    evidence = report.evidence_table(tmp_path)
    assert evidence[2:] == ["| from scratch, the every-point canonicalizer | 79.1 | – | – |"]
    err = capsys.readouterr().err
    assert "canon_z" in err and "adapt_all_frozen" in err  # the missing runs are named


def test_transfer_table_from_the_scores_file(tmp_path, capsys):
    assert report.transfer_table(tmp_path) == []
    assert "score_shapenet.json" in capsys.readouterr().err
    rows = [{"file": "runs/canon/upright_normals.pt", "setting": "as saved", "up_within_10deg": 0.74,
             "up_within_20deg": 0.759, "median_up_angle_deg": 4.12}]
    (tmp_path / "score_shapenet.json").write_text(json.dumps(rows))
    assert report.transfer_table(tmp_path)[2:] == ["| upright_normals | as saved | 74.0 | 75.9 | 4.1° |"]


def test_a_run_evaluated_over_its_own_hypotheses_fills_its_evidence_cell(tmp_path):
    folder = tmp_path / "canon_normals_z_hyp3"
    _eval(folder, {"upright": 0.8, "z": 0.8, "SO3": 0.795})
    (folder / "config.json").write_text(json.dumps({"epochs": 10, "hypotheses": 3, "hypothesis_rule": "evidence"}))
    _eval(folder, {"SO3": 0.79}, name="hyp2_evidence.json")
    (folder / "config.json").write_text(json.dumps({"epochs": 10, "hypotheses": 3, "hypothesis_rule": "evidence"}))
    row = [r for r in report.evidence_table(tmp_path) if "trained over 3" in r]
    assert row == ["| from scratch, the shipped canonicalizer, trained over 3 hypotheses | 79.0 | 79.5 | – |"]
    (folder / "config.json").write_text(json.dumps({"epochs": 10, "hypotheses": 3, "hypothesis_rule": "weights"}))
    row = [r for r in report.evidence_table(tmp_path) if "trained over 3" in r]
    assert row == ["| from scratch, the shipped canonicalizer, trained over 3 hypotheses | 79.0 | – | – |"]  # not evidence


def test_a_fitted_selector_row_reads_its_eval_and_adds_its_fit_time(tmp_path):
    """``RUN/selector3`` rows: the eval of RUN/selector3.pt, trained for RUN's time plus the selector's fit."""
    import torch

    folder = tmp_path / "canon_normals_z_hyp3"
    _eval(folder, {"upright": 0.79, "z": 0.79, "SO3": 0.79}, seconds=5400)
    _eval(folder, {"upright": 0.7938, "z": 0.7938, "SO3": 0.7938}, name="selector3.eval.json")
    torch.save({"selector_fit": {"seconds": 600.0}}, folder / "selector3.pt")
    rows = [r for r in report.accuracy_table(tmp_path, report.SCRATCH, "model") if "learned selector" in r]
    assert rows == ["| the same trained on 3 up hypotheses, + learned selector over them | 79.4 | 79.4 | 79.4 | 10 | 100 min |"]


def test_rules_table_lists_each_selector_seed(tmp_path):
    res = {"test_SO3": {"weights_k1": 78.1, "evidence_k2": 79.0, "oracle_k2": 83.5, "selector_s0_k2": 79.3,
                        "selector_s1_k2": 79.2}}
    (tmp_path / "hyp_rules_canon_normals_z_hyp3.json").write_text(json.dumps(res))
    lines = report.rules_table(tmp_path, "canon_normals_z_hyp3")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| weights", "| evidence", "| selector_s0", "| selector_s1", "| oracle"]
    assert lines[4] == "| selector_s0 | test_SO3 | – | 79.30 | – | – | – | – |"
