"""README.md and the documentation pages: every ```python block runs as written, and the README keeps its
promises (short, the two quick-start commands, the use cases, the headline table, the citations).

Each block runs in a fresh namespace, in an empty working folder that holds stand-ins for the files the
examples name: ``photo.jpg`` (a synthetic photo) and ``data/modelnet40/`` (a few of the project's
synthetic shapes in ModelNet40's HDF5 layout, from data/make_fixtures.py). A block that needs a real
Segment Anything checkpoint or a download is marked by ``<!-- skip: REASON -->`` on the line before its
fence; it is compiled, not run, and such blocks stay few (MAX_SKIPPED). docs/development.md documents this.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").rglob("*.md"))
MAX_SKIPPED = 2  # blocks that need a real SAM checkpoint or a download; keep it the exception

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(.*)$")
_SKIP = re.compile(r"^<!--\s*skip:\s*(.*?)\s*-->$")


def code_blocks(text: str) -> list[dict]:
    """Fenced blocks at the start of a line: ``{"lang", "code", "line", "skip"}`` (``skip``: the reason
    given by a ``<!-- skip: ... -->`` comment on the line before the fence, else None). A fence closes only
    on a line of at least as many of the same characters, so fences can be nested (````` ```` ````` around ```` ``` ````)."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and set(lines[j].strip()) == {fence[0]}):
            j += 1
        before = _SKIP.match(lines[i - 1].strip()) if i > 0 else None
        blocks.append({"lang": info.split()[0] if info.split() else "", "code": "\n".join(lines[i + 1:j]) + "\n",
                       "line": i + 1, "skip": before.group(1) if before else None})
        i = j + 1
    return blocks


def _python_blocks():
    for page in PAGES:
        for block in code_blocks(page.read_text()):
            if block["lang"] == "python":
                yield pytest.param(page, block, id=f"{page.relative_to(ROOT)}:{block['line']}")


PYTHON_BLOCKS = list(_python_blocks())


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory) -> Path:
    """The working folder of the examples, with their stand-in files."""
    from PIL import Image

    sys.path.insert(0, str(ROOT / "data"))
    try:
        from make_fixtures import write_modelnet_layout
    finally:
        sys.path.remove(str(ROOT / "data"))
    work = tmp_path_factory.mktemp("examples")
    write_modelnet_layout(work / "data" / "modelnet40", {"train": 1, "test": 1})
    h, w = 375, 500  # a VOC-sized photo: blue sky, green ground, a red box
    y = np.linspace(0.0, 1.0, h)[:, None, None]
    photo = np.where(y < 0.5, [90, 140, 230], [60, 150, 60]) * np.ones((h, w, 3))
    photo[150:300, 150:320] = [200, 40, 40]
    Image.fromarray(photo.astype(np.uint8)).save(work / "photo.jpg")
    return work


@pytest.mark.slow
@pytest.mark.parametrize("page, block", PYTHON_BLOCKS)
def test_python_block_runs(page, block, example_dir, monkeypatch):
    code, where = block["code"], f"{page.relative_to(ROOT)} line {block['line']}"
    compiled = compile(code, where, "exec")
    if block["skip"] is not None:
        pytest.skip(f"marked in the page: {block['skip']}")
    if "torch_geometric" in code:
        pytest.importorskip("torch_geometric")
    if "open3d" in code:
        pytest.importorskip("open3d")
    monkeypatch.chdir(example_dir)
    torch.manual_seed(0)
    np.random.seed(0)
    exec(compiled, {"__name__": "__doc_example__"})


def test_skip_markers_need_a_reason_and_stay_few():
    text = '<!-- skip: needs an official SAM checkpoint -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n'
    assert [(b["lang"], b["skip"]) for b in code_blocks(text)] == [
        ("python", "needs an official SAM checkpoint"), ("python", None)]
    nested = "````markdown\n<!-- skip: r -->\n```python\nx = 1\n```\n````\n"
    assert [b["lang"] for b in code_blocks(nested)] == ["markdown"]
    skipped = [p for p in PYTHON_BLOCKS if p.values[1]["skip"] is not None]
    assert all(p.values[1]["skip"] for p in skipped), "a skip marker must say why"
    assert len(skipped) <= MAX_SKIPPED, [p.id for p in skipped]
    # a Python block under another name would escape the test
    other = [(str(page.relative_to(ROOT)), b["line"]) for page in PAGES for b in code_blocks(page.read_text())
             if b["lang"] in ("py", "python3", "pycon", "ipython")]
    assert not other, other


def test_readme_is_short_and_keeps_the_quick_start():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    demo = "bash scripts/setup_venv.sh && .venv/bin/pointcanon demo --out runs/demo"
    tests = "bash scripts/setup_venv.sh && .venv/bin/python -m pytest -q -n 2"
    assert demo in text and tests in text
    assert tests in (ROOT / ".ci" / "run").read_text()  # CI runs exactly the README's test command
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    for section in ("Install", "Quick start", "Use cases", "Results", "Citing"):
        assert section in headings, section


def test_readme_use_cases_run_and_say_what_random_weights_give():
    text = README.read_text()
    code = [b["code"] for b in code_blocks(text) if b["lang"] == "python"]
    assert any("canonicalize(" in c and "trimesh" in c for c in code)  # a mesh
    assert any("ModelNet40HDF5" in c for c in code)                    # ModelNet40
    sam = [c for c in code if "EquivariantSamPredictor" in c]
    assert sam and "build_tiny_sam" in sam[0] and "load_sam(" in sam[0]
    assert "meaningless" in sam[0]  # masks from random weights mean nothing; real ones need a checkpoint path


def test_readme_headline_table_and_citations():
    text = README.read_text()
    results = text[text.index("## Results"):]
    header = next(line for line in results.splitlines() if line.startswith("| model"))
    assert "passes" in header  # the cost of every row, in backbone passes
    assert "docs/results.md" in results
    for cite in ("Kaba", "Mondal", "Bruintjes", "Ashman", "2211.06489", "2310.01647", "2304.02628", "2406.13488"):
        assert cite in text, cite


def test_readme_links_exist():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local and all((ROOT / t).exists() for t in local), [t for t in local if not (ROOT / t).exists()]
