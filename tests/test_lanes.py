"""The two test lanes (docs/development.md): ``pytest -m "not slow"`` for day-to-day work, the README's
command for everything. The ``slow`` marker must be registered (``--strict-markers`` turns a misspelt marker
into an error), and the fast lane keeps the quick documentation and hostile-input checks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_slow_marker_is_registered_and_markers_are_strict(pytestconfig):
    assert "slow" in [line.split(":")[0].strip() for line in pytestconfig.getini("markers")]
    assert "--strict-markers" in pytestconfig.getini("addopts")


@pytest.mark.slow  # a collection in a subprocess: about 5 s
def test_fast_lane_keeps_the_quick_docs_and_hostile_input_checks():
    files = ["tests/test_readme.py", "tests/test_docs.py", "tests/test_hostile_inputs.py"]
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-m", "not slow", *files], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    fast = {line.split("::")[1].split("[")[0] for line in run.stdout.splitlines() if "::" in line}
    for name in ("test_readme_is_short_and_keeps_the_quick_start", "test_mkdocs_build_strict",
                 "test_every_page_is_in_the_nav_and_every_module_has_a_reference",
                 "test_loading_a_crafted_file_never_runs_its_code",
                 "test_bad_options_give_a_clear_error_before_any_work",
                 "test_config_file_values_of_the_wrong_type_are_refused"):
        assert name in fast, name
    assert "test_fragile_flags_are_invariant_and_fragile_margin_is_a_saved_setting" not in fast  # marked slow
