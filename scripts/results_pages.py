"""The generated tables of the results pages (docs/results.md, README.md), rendered from the committed JSON
summaries under docs/results/tables/ by ``scripts/report_modelnet40.py --render`` (``--check``: compare).

A page marks each generated table (the prose around it is written by hand)::

    <!-- generated: NAME -->

    | ... the table of docs/results/tables/NAME.json ... |

    <!-- /generated -->

A summary ``NAME.json`` holds ``columns`` (header cells) and ``rows``, each ``{"cells": [...], "key": ...}``;
a cell is markdown text, or ``{"from": OTHER, "key": KEY, "column": HEADER}``: that cell of the row KEY of
the summary OTHER, without its bold or footnote marks (so the README's headline table repeats the results
page's figures instead of copying them). ``key`` names the run a row was measured by (a stage of
scripts/exp_modelnet40.sh; absent: a row written by hand); ``run`` and ``date``, where a row has them, the
file or folder its figures were last read from (``--write-summaries``) and when; the summary's own fields
(``title``, ``source``, ``command``, ``protocol``, ``machine``, ``date``) say where the other figures come from.
"""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARIES = ROOT / "docs" / "results" / "tables"
PAGES = (ROOT / "docs" / "results.md", ROOT / "README.md")
BLOCK = re.compile(r"^<!-- generated: (?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- /generated -->$", re.M | re.S)
MARKS = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾ᵃᵇᶜ]+$")  # footnote marks at the end of a cell


def load_summary(folder: Path, name: str) -> dict:
    """The summary ``folder/name.json``, checked: ValueError if it is missing or malformed."""
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no summary {path} for the generated block {name!r}")
    summary = json.loads(path.read_text())
    columns = summary.get("columns")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise ValueError(f"{path}: 'columns' must be a non-empty list of strings")
    rows = summary.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: 'rows' must be a non-empty list")
    for i, row in enumerate(rows):
        cells = row.get("cells") if isinstance(row, dict) else None
        if not isinstance(cells, list) or len(cells) != len(columns):
            raise ValueError(f"{path}: row {i} must have {len(columns)} cells")
    return summary


def dump_summary(summary: dict) -> str:
    """A summary as JSON text, one row per line (small diffs when a figure changes)."""
    head = {k: v for k, v in summary.items() if k != "rows"}
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in head.items()]
    rows = [f"  {json.dumps(r, ensure_ascii=False)}" for r in summary["rows"]]
    return "{\n" + "\n".join(lines) + '\n "rows": [\n' + ",\n".join(rows) + "\n ]\n}\n"


def plain(cell: str) -> str:
    """A cell without its bold and footnote marks: ``**74.8**`` -> ``74.8``, ``65 min¹`` -> ``65 min``."""
    return MARKS.sub("", cell.replace("**", "")).strip()


def _cell(folder: Path, cell, seen: tuple[str, ...]) -> str:
    if isinstance(cell, str):
        return cell
    if not isinstance(cell, dict) or set(cell) != {"from", "key", "column"}:
        raise ValueError(f"a cell must be text or {{'from', 'key', 'column'}}, not {cell!r}")
    if cell["from"] in seen:
        raise ValueError(f"summaries refer to each other in a loop: {' -> '.join(seen + (cell['from'],))}")
    other = load_summary(folder, cell["from"])
    if cell["column"] not in other["columns"]:
        raise ValueError(f"{cell['from']}.json has no column {cell['column']!r}")
    rows = [r for r in other["rows"] if r.get("key") == cell["key"]]
    if len(rows) != 1:
        raise ValueError(f"{cell['from']}.json has {len(rows)} rows with key {cell['key']!r}, not 1")
    return plain(_cell(folder, rows[0]["cells"][other["columns"].index(cell["column"])], seen + (cell["from"],)))


def _line(cells: list[str]) -> str:
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def table_lines(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table: header, separator and one line per row."""
    return [_line(columns), "|" + "---|" * len(columns)] + [_line(r) for r in rows]


def render_table(folder: Path, name: str) -> str:
    """The markdown table of the summary ``name`` (references to other summaries resolved)."""
    summary = load_summary(folder, name)
    rows = [[_cell(folder, c, (name,)) for c in row["cells"]] for row in summary["rows"]]
    return "\n".join(table_lines(summary["columns"], rows))


def render_page(text: str, folder: Path = SUMMARIES) -> str:
    """``text`` with every generated block rewritten from its summary; ValueError for a marker left open."""
    out = BLOCK.sub(lambda m: f"<!-- generated: {m['name']} -->\n\n{render_table(folder, m['name'])}\n\n"
                              "<!-- /generated -->", text)
    opened = len(re.findall(r"^<!-- generated: ", out, re.M))
    closed = len(re.findall(r"^<!-- /generated -->$", out, re.M))
    if opened != closed or opened != len(BLOCK.findall(out)):
        raise ValueError(f"{opened} generated blocks opened, {closed} closed")
    return out


def block_names(text: str) -> list[str]:
    return [m["name"] for m in BLOCK.finditer(text)]


def tables_outside_blocks(text: str) -> list[int]:
    """Line numbers (1-based) of table lines outside generated blocks and code fences: hand-edited tables."""
    spans = [(text.count("\n", 0, m.start()), text.count("\n", 0, m.end())) for m in BLOCK.finditer(text)]
    found, fence = [], None
    for i, line in enumerate(text.splitlines()):
        m = re.match(r"^(`{3,}|~{3,})", line)
        if m and (fence is None or line.strip() == fence[0] * len(line.strip()) and len(line.strip()) >= len(fence)):
            fence = m.group(1) if fence is None else None
            continue
        if fence is None and line.startswith("|") and not any(a <= i <= b for a, b in spans):
            found.append(i + 1)
    return found


def diffs(pages=PAGES, folder: Path = SUMMARIES) -> str:
    """A unified diff from each page to its rendered form ('' when every page is up to date)."""
    out = []
    for page in map(Path, pages):
        text = page.read_text()
        out += difflib.unified_diff(text.splitlines(True), render_page(text, folder).splitlines(True),
                                    f"{page} (committed)", f"{page} (rendered)")
    return "".join(out)


def render(pages=PAGES, folder: Path = SUMMARIES) -> list[Path]:
    """Rewrite the generated blocks of ``pages`` in place (atomically); the pages that changed."""
    from pointcanon.core.io import atomic_write

    changed = []
    for page in map(Path, pages):
        text = page.read_text()
        new = render_page(text, folder)
        if new != text:
            atomic_write(page, lambda tmp, new=new: Path(tmp).write_text(new))
            changed.append(page)
    return changed
