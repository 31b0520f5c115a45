"""Every ```python block of README.md runs as written (each in a fresh namespace, from the repository root)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, monkeypatch):
    code = BLOCKS[index]
    if "torch_geometric" in code:
        pytest.importorskip("torch_geometric")
    if "open3d" in code:
        pytest.importorskip("open3d")
    monkeypatch.chdir(README.parent)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
