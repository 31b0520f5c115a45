"""The MkDocs site (mkdocs.yml, docs/): it builds with --strict (a broken link or anchor, or an API
reference that does not resolve, fails), every page is reachable, and the results page keeps every figure
with the command that produced it. The code blocks of the pages run in tests/test_readme.py."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results.md"
# each figure of docs/figures and what produced it (named in the section that shows the figure)
FIGURES = {"demo_accuracy_vs_angle.png": "pointcanon demo",
           "canonicalizer_curves.png": "scripts/report_modelnet40.py",
           "approx_equivariance.png": "scripts/exp_approx_equivariance.py",
           "convcnp.png": "scripts/exp_convcnp.py"}


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    seconds = time.monotonic() - start
    assert run.returncode == 0, run.stdout + run.stderr
    assert seconds < 60, f"the documentation took {seconds:.0f} s to build"
    site = tmp_path / "site"
    assert (site / "results" / "index.html").exists() and (site / "figures" / "convcnp.png").exists()
    api = (site / "api" / "nn" / "index.html").read_text()
    assert 'id="pointcanon.nn.CandidateCanonicalizer"' in api  # the reference is generated from the docstrings


def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def test_every_page_is_in_the_nav_and_every_module_has_a_reference():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_files(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    assert config["theme"]["name"] == "material"
    assert any("mkdocstrings" in (p if isinstance(p, str) else next(iter(p))) for p in config["plugins"])
    reference = "\n".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    for module in ("pointcanon", "pointcanon.nn", "pointcanon.core", "pointcanon.mesh", "pointcanon.datasets",
                   "image_seg"):
        assert re.search(rf"^::: {re.escape(module)}$", reference, flags=re.M), module


def _sections(text: str) -> list[str]:
    return re.split(r"^#{2,3} ", text, flags=re.M)


def test_results_page_keeps_every_figure_with_its_command():
    text = RESULTS.read_text()
    assert "earlier runs" in text
    assert "scripts/exp_modelnet40.sh" in text and "scripts/report_modelnet40.py" in text
    on_disk = sorted(p.name for p in (DOCS / "figures").iterdir())
    assert on_disk == sorted(FIGURES), "a figure without a page (or a page without its figure)"
    for name, command in FIGURES.items():
        shown = [s for s in _sections(text) if f"](figures/{name})" in s]
        assert shown, f"{name} is not on the results page"
        assert command in shown[0], f"the section showing {name} does not name {command}"


def test_pages_state_facts_without_release_history():
    history = re.compile(r"this release|last release|previous release|release before|earlier release|"
                         r"previous weights|previous shipped|issue's|the issue\b", re.I)
    for page in [ROOT / "README.md"] + sorted(DOCS.rglob("*.md")):
        found = sorted({m.group(0) for m in history.finditer(page.read_text())})
        assert not found, f"{page.relative_to(ROOT)}: {found}"
