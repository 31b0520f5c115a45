"""scripts/score_canonicalizer.py: the scores of each file and setting, as frame_scores gives them."""
import json
import sys
from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "data"))
from make_fixtures import main as make_fixtures  # noqa: E402


@pytest.mark.slow
def test_scores_each_file_and_setting(tmp_path, one_thread, capsys):
    from pointcanon.datasets import ModelNet40HDF5
    from pointcanon.mesh import load_default_canonicalizer

    assert make_fixtures([str(tmp_path)]) == 0
    root = tmp_path / "modelnet40_hdf5"
    script = load_script("score_canonicalizer")
    out = tmp_path / "rows.json"
    assert script.main(["shipped", "--data-root", str(root), "--set", "views=1", "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["setting"], r["views"]) for r in rows] == [("as saved", 2), ("views=1", 1)]
    canon = load_default_canonicalizer()
    canon.views = 1
    expected = script.frame_scores(canon, ModelNet40HDF5(root, "test").points)
    assert rows[1] == pytest.approx({"file": "shipped", "setting": "views=1", "views": 1, **expected})
    assert "up within 10 deg" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [(["--set", "views"], "expected NAME=VALUE"),
                                           (["--set", "views=two"], "must be a number"),
                                           (["--set", "nothing=1"], "has no setting 'nothing'")])
def test_bad_settings_are_refused(tmp_path, capsys, args, message):
    assert make_fixtures([str(tmp_path)]) == 0
    with pytest.raises(SystemExit):
        load_script("score_canonicalizer").main(["shipped", "--data-root", str(tmp_path / "modelnet40_hdf5"), *args])
    assert message in capsys.readouterr().err
