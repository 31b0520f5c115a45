"""scripts/report_modelnet40.py: tables from a run folder, missing runs left out (not invented); the results
pages' generated tables (scripts/results_pages.py) rendered from the committed summaries."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import report_modelnet40 as report  # noqa: E402
import results_pages as pages  # noqa: E402


def _eval(folder: Path, acc: dict, name: str = "eval.json", epochs: int = 10, seconds: float = 600.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"protocols": {p: {"acc": a} for p, a in acc.items()},
                                           "train_seconds": seconds}))
    (folder / "config.json").write_text(json.dumps({"epochs": epochs}))


def test_tables_show_the_runs_that_exist_and_only_those(tmp_path, capsys):
    _eval(tmp_path / "plain_z", {"upright": 0.814, "z": 0.824, "SO3": 0.115})
    _eval(tmp_path / "canon_all_z", {"upright": 0.78, "z": 0.78, "SO3": 0.78}, seconds=3600)
    _eval(tmp_path / "canon_all_z", {"SO3": 0.791}, name="hyp2_evidence.json")
    scratch = report.markdown(report.accuracy_table(tmp_path, report.SCRATCH))
    assert scratch[2] == "| PointNet | 81.4 | 82.4 | 11.5 | 10 | 10 min |"
    assert scratch[3] == ("| canonicalized PointNet (every-point canonicalizer, frozen) | 78.0 | 78.0 | 78.0 | 10 "
                          "| 60 min |")
    assert len(scratch) == 4  # canon_z is missing: its row is left out, not filled in
    evidence = report.markdown(report.evidence_table(tmp_path))
    assert evidence[2:] == ["| from scratch, the every-point canonicalizer | 79.1 | – | – |"]
    err = capsys.readouterr().err
    assert "canon_z" in err and "adapt_all_frozen" in err  # the missing runs are named


def test_transfer_table_from_the_scores_file(tmp_path, capsys):
    assert report.markdown(report.transfer_table(tmp_path)) == []
    assert "score_shapenet.json" in capsys.readouterr().err
    rows = [{"file": "runs/canon/upright_normals.pt", "setting": "as saved", "up_within_10deg": 0.74,
             "up_within_20deg": 0.759, "median_up_angle_deg": 4.12}]
    (tmp_path / "score_shapenet.json").write_text(json.dumps(rows))
    table = report.transfer_table(tmp_path)
    assert report.markdown(table)[2:] == ["| upright_normals (as saved) | 74.0 | 75.9 | 4.1° |"]
    assert table["rows"][0]["key"] == "upright_normals/as saved"


def test_a_run_evaluated_over_its_own_hypotheses_fills_its_evidence_cell(tmp_path):
    folder = tmp_path / "canon_normals_z_hyp3"
    _eval(folder, {"upright": 0.8, "z": 0.8, "SO3": 0.795})
    _eval(folder, {"SO3": 0.79}, name="hyp2_evidence.json")
    (folder / "config.json").write_text(json.dumps({"epochs": 10, "hypotheses": 3, "hypothesis_rule": "evidence"}))
    row = [r for r in report.markdown(report.evidence_table(tmp_path)) if "trained over 3" in r]
    assert row == ["| from scratch, the shipped canonicalizer, trained over 3 hypotheses | 79.0 | 79.5 | – |"]
    (folder / "config.json").write_text(json.dumps({"epochs": 10, "hypotheses": 3, "hypothesis_rule": "weights"}))
    row = [r for r in report.markdown(report.evidence_table(tmp_path)) if "trained over 3" in r]
    assert row == ["| from scratch, the shipped canonicalizer, trained over 3 hypotheses | 79.0 | – | – |"]  # weights


def test_a_fitted_selector_row_reads_its_eval_and_adds_its_fit_time(tmp_path):
    """``RUN/selector3`` rows: the eval of RUN/selector3.pt, trained for RUN's time plus the selector's fit."""
    import torch

    folder = tmp_path / "canon_normals_z_hyp3"
    _eval(folder, {"upright": 0.79, "z": 0.79, "SO3": 0.79}, seconds=5400)
    _eval(folder, {"upright": 0.7938, "z": 0.7938, "SO3": 0.7938}, name="selector3.eval.json")
    torch.save({"selector_fit": {"seconds": 600.0}}, folder / "selector3.pt")
    rows = [r for r in report.markdown(report.accuracy_table(tmp_path, report.SCRATCH)) if "learned hypothesis" in r]
    assert rows == ["| the same, + a learned hypothesis selector over its 3 up hypotheses | 79.4 | 79.4 | 79.4 | 10 "
                    "| 100 min |"]


def test_rules_table_lists_each_selector_seed(tmp_path):
    res = {"test_SO3": {"weights_k1": 78.1, "evidence_k2": 79.0, "oracle_k2": 83.5, "selector_s0_k2": 79.3,
                        "selector_s1_k2": 79.2}}
    (tmp_path / "hyp_rules_canon_normals_z_hyp3.json").write_text(json.dumps(res))
    lines = report.markdown(report.rules_table(tmp_path, "canon_normals_z_hyp3"))
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| weights", "| evidence", "| selector_s0", "| selector_s1",
                                                            "| oracle"]
    assert lines[4] == "| selector_s0 | test_SO3 | – | 79.30 | – | – | – | – |"


# the results pages: generated tables from docs/results/tables/*.json

def _copies(tmp_path: Path) -> tuple[list[Path], Path]:
    """Copies of the pages and of the summaries' folder under tmp_path."""
    copies = []
    for page in pages.PAGES:
        (tmp_path / page.name).write_bytes(page.read_bytes())
        copies.append(tmp_path / page.name)
    folder = tmp_path / "tables"
    shutil.copytree(pages.SUMMARIES, folder)
    return copies, folder


def test_the_committed_pages_are_their_rendering(tmp_path):
    """A table edited by hand, or a summary changed without --render, fails here."""
    copies, _ = _copies(tmp_path)
    pages.render(copies, pages.SUMMARIES)
    for page, copy in zip(pages.PAGES, copies):
        assert copy.read_text() == page.read_text(), f"{page.name}: run scripts/report_modelnet40.py --render"
    assert report.main(["--check"]) == 0


def test_every_table_is_generated_and_every_summary_is_shown():
    shown = []
    for page in pages.PAGES:
        text = page.read_text()
        assert pages.tables_outside_blocks(text) == [], f"{page.name}: a table written by hand"
        shown += pages.block_names(text)
    assert len(shown) == len(set(shown)) >= 20
    assert sorted(shown) == sorted(p.stem for p in pages.SUMMARIES.glob("*.json")), "a summary no page shows"
    for name in shown:
        summary = pages.load_summary(pages.SUMMARIES, name)
        assert summary.get("source") and summary.get("title"), name  # where the figures come from


def test_a_changed_figure_changes_both_pages_and_check_fails(tmp_path, capsys):
    copies, folder = _copies(tmp_path)
    path = folder / "from_scratch.json"
    summary = json.loads(path.read_text())
    row = next(r for r in summary["rows"] if r.get("key") == "plain_z")
    assert row["cells"][3] == "11.8"
    row["cells"][3] = "12.5"
    path.write_text(pages.dump_summary(summary))
    assert report.main(["--check", "--summaries", str(folder)]) == 1
    out = capsys.readouterr()
    assert "-| PointNet | 81.0 | 82.3 | 11.8 | 10 | 65 min |" in out.out and "--render" in out.err
    assert sorted(pages.render(copies, folder)) == sorted(copies)
    results, readme = (c.read_text() for c in copies)
    assert "| PointNet | 81.0 | 82.3 | 12.5 | 10 | 65 min |" in results
    assert "| PointNet | 81.0 | 82.3 | 12.5 | 1 |" in readme  # the headline refers to the same summary row
    assert pages.diffs(copies, folder) == ""


def test_render_refuses_broken_markers_and_summaries(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"title": "t", "source": "s", "columns": ["a", "b"],
                                                 "rows": [{"cells": ["x", "1"]}]}))
    page = "text\n<!-- generated: t -->\nold\n<!-- /generated -->\nmore\n"
    assert pages.render_page(page, tmp_path) == "text\n<!-- generated: t -->\n\n| a | b |\n|---|---|\n| x | 1 |\n\n" \
                                                "<!-- /generated -->\nmore\n"
    with pytest.raises(ValueError, match="no summary"):
        pages.render_page("<!-- generated: nope -->\n<!-- /generated -->\n", tmp_path)
    with pytest.raises(ValueError, match="opened"):
        pages.render_page("<!-- generated: t -->\n| a |\n", tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"columns": ["a", "b"], "rows": [{"cells": ["x"]}]}))
    with pytest.raises(ValueError, match="2 cells"):
        pages.load_summary(tmp_path, "bad")
    (tmp_path / "ref.json").write_text(json.dumps({"columns": ["a"], "rows": [{"cells": [
        {"from": "t", "key": "missing", "column": "b"}]}]}))
    with pytest.raises(ValueError, match="0 rows with key"):
        pages.render_table(tmp_path, "ref")


def test_write_summaries_refreshes_the_figures_and_keeps_the_labels(tmp_path, capsys):
    _, folder = _copies(tmp_path)
    runs = tmp_path / "runs"
    _eval(runs / "plain_z", {"upright": 0.801, "z": 0.812, "SO3": 0.123}, seconds=3600)
    _eval(runs / "canon_normals_z", {"upright": 0.775, "z": 0.776, "SO3": 0.777}, seconds=4800)
    before = {p.name: p.read_text() for p in folder.glob("*.json")}
    written = report.write_summaries(runs, folder, date="2030-01-02")
    assert sorted(p.name for p in written) == ["adaptation.json", "from_scratch.json"]
    assert {p.name for p in folder.glob("*.json") if p.read_text() != before[p.name]} == {p.name for p in written}
    rows = pages.load_summary(folder, "from_scratch")["rows"]
    assert rows[0] == {"key": "plain_z", "cells": ["PointNet", "80.1", "81.2", "12.3", "10", "60 min"],
                       "run": str(runs / "plain_z"), "date": "2030-01-02"}
    assert rows[1]["cells"] == ["**canonicalized PointNet (the shipped canonicalizer, frozen)**", "**77.5**",
                                "**77.6**", "**77.7**", "10", "80 min¹"]  # label, bold and footnote mark kept
    old = json.loads(before["from_scratch.json"])["rows"]
    assert rows[2:] == old[2:]  # rows without a run in the folder (or without a key) stay as they were
    assert "no run for the row 'canon_z'" in capsys.readouterr().err
    assert report.main(["--runs", str(runs), "--write-summaries", "--summaries", str(folder)]) == 0  # idempotent
    assert pages.load_summary(folder, "from_scratch")["rows"] == rows


def test_cli_needs_something_to_do(tmp_path):
    for argv in ([], ["--write-summaries"], [str(tmp_path / "none")]):
        with pytest.raises(SystemExit) as e:
            report.main(argv)
        assert e.value.code == 2


# figures quoted in prose and the summary rows they come from: after a refresh, this fails until the prose follows
QUOTED = [("canonicalizers", "upright_normals", "up ≤ 10°", ["README.md", "docs/canonicalizers.md", "docs/mesh.md"]),
          ("canonicalizers", "upright_normals", "up ≤ 20°", ["docs/canonicalizers.md", "docs/mesh.md"])]


@pytest.mark.parametrize("name, key, column, quoted_in", QUOTED)
def test_figures_quoted_in_prose_follow_their_summary(name, key, column, quoted_in):
    summary = pages.load_summary(pages.SUMMARIES, name)
    row = next(r for r in summary["rows"] if r.get("key") == key)
    value = pages.plain(row["cells"][summary["columns"].index(column)])
    for page in quoted_in:
        assert f"{value} %" in (pages.ROOT / page).read_text(), f"{page} does not quote {name}/{key}: {value} %"


def test_segmentation_table_reads_both_miou_of_each_protocol(tmp_path):
    folder = tmp_path / "seg_canon_z"
    folder.mkdir()
    miou = {"instance_miou": 0.778, "class_miou": 0.616}
    (folder / "eval.json").write_text(json.dumps({"protocols": {"z": miou, "SO3": miou}, "train_seconds": 1200}))
    (folder / "config.json").write_text(json.dumps({"epochs": 10}))
    table = report.segmentation_table(tmp_path)
    assert table["rows"] == [{"key": "seg_canon_z", "run": str(folder), "cells": [
        "canonicalized PointNet segmenter", "77.8", "61.6", "77.8", "61.6", "10", "20 min"]}]
    summary = pages.load_summary(pages.SUMMARIES, "shapenetpart_segmentation")
    assert summary["columns"] == table["columns"]  # the committed summary can be refreshed from runs
    assert report.refresh_summary(summary, table, "2030-01-02")["rows"][1]["cells"] == summary["rows"][1]["cells"]


@pytest.mark.parametrize("name", sorted(report.SUMMARY_TABLES))
def test_each_summary_of_the_script_has_the_columns_its_runs_give(name, tmp_path):
    """Else --write-summaries could not refresh it (it refuses a summary whose columns differ)."""
    assert pages.load_summary(pages.SUMMARIES, name)["columns"] == report.SUMMARY_TABLES[name](tmp_path)["columns"]
