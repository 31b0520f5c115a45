"""The ModelNet40 / ShapeNetPart tables of scripts/exp_modelnet40.sh, and the generated tables of the results
pages (docs/results.md, README.md: see scripts/results_pages.py).

    .venv/bin/python scripts/report_modelnet40.py runs/mn40        # print the tables, write runs/mn40/tables.md
                                                                   # and runs/mn40/canonicalizer_curves.png
    .venv/bin/python scripts/report_modelnet40.py --runs runs/mn40 --write-summaries   # refresh docs/results/tables
    .venv/bin/python scripts/report_modelnet40.py --render         # rewrite the pages' generated tables
    .venv/bin/python scripts/report_modelnet40.py --check          # exit 1, with a diff, if a page is not rendered

Missing runs are reported on stderr and left out of the tables. ``--write-summaries`` refreshes the figures of
each summary row whose key names a run that exists (its label, bold and footnote marks are kept), keeps the
other rows as they are, and appends rows for runs the summary does not have yet.
"""
import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

import results_pages as pages
from pointcanon.core.io import atomic_write

CANONICALIZERS = [  # (file stem, label)
    ("upright_normals", "**shipped**: candidate, upright prior, + surface normals, max+mean pooling"),
    ("upright", "no-normals: candidate, upright prior (no normals, max pooling)"),
    ("upright256", "no-normals recipe trained on whole clouds, scored on 2 subsets of 256 points (`upright256`)"),
    ("upright_all_ft", "every-point: no-normals trained 3,000 more steps seeing every point (`--init`)"),
    ("identity", "candidate, identity prior"),
    ("abl_vn", "ablation: VN regression, 256 points"),
    ("abl_no_tilt", "ablation: candidate, principal axes only (no tilt grid)"),
    ("abl_tilt", "ablation: candidate, tilt grid"),
    ("abl_local", "ablation: candidate, tilt grid + local offsets"),
    ("abl_local_refine", "ablation: as above + learned refinement"),
    ("shapenet_upright", "ShapeNetPart: candidate, upright prior"),
]
ADAPT = [
    ("plain_z", "(a) PointNet trained z (the pretrained backbone)"),
    ("adapt_normals_frozen", "(g) + the shipped canonicalizer, both frozen (no training)"),
    ("adapt_normals_finetune", "(h) + the shipped canonicalizer (frozen), backbone fine-tuned"),
    ("adapt_normals_hyp3", "(i) as (h), fine-tuned on its 3 up hypotheses, evaluated over them (evidence rule)"),
    ("adapt_normals_hyp3_long", "(j) as (i), 5 epochs at backbone lr 3e-4"),
    ("adapt_normals_hyp3_10ep", "(k) as (i), 10 epochs at backbone lr 3e-4"),
    ("adapt_normals_hyp3_10ep/selector3", "(l) (k) + a learned hypothesis selector over its 3 up hypotheses"),
    ("adapt_frozen", "(b) + the no-normals canonicalizer, both frozen (no training)"),
    ("adapt_finetune", "(c) + the no-normals canonicalizer (frozen), backbone fine-tuned"),
    ("adapt_noprior", "(d) + candidate canonicalizer without prior (untrained choice)"),
    ("adapt_mixture", "(e) + the no-normals canonicalizer fine-tuned on the mixture of its 6 up hypotheses"),
    ("adapt_all_frozen", "(f) + the every-point canonicalizer, both frozen"),
]
SCRATCH = [("plain_z", "PointNet"),
           ("canon_normals_z", "canonicalized PointNet (the shipped canonicalizer, frozen)"),
           ("canon_normals_z_hyp3", "the same, trained on its 3 up hypotheses, evaluated over them (evidence rule)"),
           ("canon_normals_z_hyp3/selector3", "the same, + a learned hypothesis selector over its 3 up hypotheses"),
           ("canon_normals_z/selector3", "the single-frame model above + a learned selector over its 3 up hypotheses"),
           ("canon_z", "canonicalized PointNet (no-normals canonicalizer, frozen)"),
           ("canon_all_z", "canonicalized PointNet (every-point canonicalizer, frozen)")]
HYPOTHESES = [
    ("adapt_frozen", "adaptation, both frozen (b)"),
    ("adapt_finetune", "adaptation, backbone fine-tuned (c)"),
    ("canon_z", "from scratch (canonicalized PointNet)"),
    ("canon_z_hyp3", "from scratch, trained over 3 hypotheses"),
    ("canon_all_z", "from scratch behind the every-point canonicalizer"),
    ("adapt_mixture", "adaptation, canonicalizer fine-tuned on the mixture (e)"),
]
SEG = [("seg_plain_z", "PointNet segmenter"), ("seg_canon_z", "canonicalized PointNet segmenter")]


def _table(columns: list[str]) -> dict:
    return {"columns": columns, "rows": []}


def _add(table: dict, key: str, cells: list, run: Path) -> None:
    """A row: ``key`` (the stage, or what it was read from), ``cells`` and ``run``, the file or folder read."""
    table["rows"].append({"key": key, "cells": [str(c) for c in cells], "run": str(run)})


def markdown(table: dict) -> list[str]:
    """A table of this module as markdown lines (header, separator, rows); [] for a table without rows."""
    return pages.table_lines(table["columns"], [r["cells"] for r in table["rows"]]) if table["rows"] else []


def _eval(runs: Path, name: str) -> dict | None:
    """A run's eval.json; ``RUN/FILE`` names a checkpoint written beside a run (e.g. by fit-selector): its
    FILE.eval.json, with ``train_seconds`` the run's plus the checkpoint's fit."""
    run, _, extra = name.partition("/")
    path = runs / run / (f"{extra}.eval.json" if extra else "eval.json")
    if not path.is_file():
        print(f"missing {path}; row left out", file=sys.stderr)
        return None
    ev = json.loads(path.read_text())
    if extra:
        fit = torch.load(runs / run / f"{extra}.pt", map_location="cpu", weights_only=True).get("selector_fit", {})
        ev["train_seconds"] = (_eval(runs, run) or {}).get("train_seconds", 0) + fit.get("seconds", 0)
    return ev


def _config(runs: Path, name: str) -> dict:
    path = runs / name.partition("/")[0] / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def canonicalizer_table(runs: Path) -> dict:
    """The canonicalizers of ``runs/canon/*.pt`` scored on their test split (saved at training time)."""
    table = _table(["canonicalizer", "steps", "parameters", "train time", "up ≤ 10°", "up ≤ 20°", "median up angle",
                    "frame ≤ 15° of I"])
    for stem, label in CANONICALIZERS:
        path = runs / "canon" / f"{stem}.pt"
        if not path.is_file():
            print(f"missing {path}; row left out", file=sys.stderr)
            continue
        info = torch.load(path, map_location="cpu", weights_only=True)["info"]
        t = info["test"]
        _add(table, stem, [label, info["steps"], f"{info['parameters']:,}", f"{info['train_seconds'] / 60:.1f} min",
                           f"{100 * t['up_within_10deg']:.1f}", f"{100 * t['up_within_20deg']:.1f}",
                           f"{t['median_up_angle_deg']:.1f}°", f"{100 * t['frame_within_15deg']:.1f}"], path)
    return table


def transfer_table(runs: Path) -> dict:
    """The canonicalizers scored on ShapeNetPart's test shapes (scripts/score_canonicalizer.py); key FILE/SETTING."""
    table = _table(["canonicalizer", "up ≤ 10°", "up ≤ 20°", "median up angle"])
    path = runs / "score_shapenet.json"
    if not path.is_file():
        print(f"missing {path}; table left out", file=sys.stderr)
        return table
    for r in json.loads(path.read_text()):
        stem = Path(r["file"]).stem
        cells = [f"{stem} ({r['setting']})", f"{100 * r['up_within_10deg']:.1f}", f"{100 * r['up_within_20deg']:.1f}",
                 f"{r['median_up_angle_deg']:.1f}°"]
        _add(table, f"{stem}/{r['setting']}", cells, path)
    return table


def accuracy_table(runs: Path, rows) -> dict:
    """Classification accuracy (%) of the runs ``rows`` ((name, label)) trained with z rotations."""
    table = _table(["model", "z/upright", "z/z", "z/SO(3)", "epochs", "train time"])
    for name, label in rows:
        ev = _eval(runs, name)
        if ev is None:
            continue
        p = ev["protocols"]
        _add(table, name, [label, f"{100 * p['upright']['acc']:.1f}", f"{100 * p['z']['acc']:.1f}",
                           f"{100 * p['SO3']['acc']:.1f}", _config(runs, name).get("epochs", "?"),
                           f"{ev.get('train_seconds', 0) / 60:.0f} min"], runs / name)
    return table


def hypotheses_table(runs: Path, ks=(1, 2, 3, 4)) -> dict:
    """SO(3) accuracy of the canonicalized classifiers evaluated over K up hypotheses ("–": not run)."""
    table = _table(["model", "trained over"] + [f"K = {k}" for k in ks])
    for name, label in HYPOTHESES:
        trained = _config(runs, name).get("hypotheses", 1)
        cells = []
        for k in ks:
            path = runs / name / f"hyp{k}.json"
            path = path if path.is_file() or k != trained else runs / name / "eval.json"
            acc = json.loads(path.read_text())["protocols"]["SO3"]["acc"] if path.is_file() else None
            cells.append("–" if acc is None else f"{100 * acc:.1f}")
        if any(c != "–" for c in cells):
            _add(table, name, [label, trained, *cells], runs / name)
    return table


EVIDENCE = [("adapt_all_frozen", "adaptation (f), both frozen"),
            ("adapt_normals_frozen", "adaptation (g), both frozen"),
            ("adapt_normals_finetune", "adaptation (h), backbone fine-tuned"),
            ("canon_all_z", "from scratch, the every-point canonicalizer"),
            ("adapt_normals_hyp3", "adaptation (i), fine-tuned over 3 hypotheses"),
            ("adapt_normals_hyp3_long", "adaptation (j), fine-tuned over 3 hypotheses, 5 epochs"),
            ("adapt_normals_hyp3_10ep", "adaptation (k), fine-tuned over 3 hypotheses, 10 epochs"),
            ("canon_normals_z", "from scratch, the shipped canonicalizer (surface normals)"),
            ("canon_normals_z_hyp3", "from scratch, the shipped canonicalizer, trained over 3 hypotheses")]


def evidence_table(runs: Path, ks=(2, 3, 4)) -> dict:
    """z/SO(3) accuracy over the K most likely up hypotheses, combined with the evidence rule ("–": not run)."""
    table = _table(["model"] + [f"K = {k}" for k in ks])
    for name, label in EVIDENCE:
        config = _config(runs, name)  # a run trained and evaluated over K hypotheses with the evidence rule
        own = config.get("hypotheses") if config.get("hypothesis_rule") == "evidence" else None
        paths = [runs / name / ("eval.json" if k == own else f"hyp{k}_evidence.json") for k in ks]
        if not any(p.is_file() for p in paths):
            print(f"missing {paths[0]}; row left out", file=sys.stderr)
            continue
        _add(table, name, [label] + [f"{100 * json.loads(p.read_text())['protocols']['SO3']['acc']:.1f}"
                                     if p.is_file() else "–" for p in paths], runs / name)
    return table


def rules_table(runs: Path, name: str = "frozen") -> dict:
    """SO(3) test accuracy of a classifier (the frozen adaptation; ``name``: a run) for each way of
    combining its K up hypotheses (scripts/hypothesis_rules.py), and the same on training shapes under z;
    key RULE/SPLIT."""
    ks = range(1, 7)
    table = _table(["rule", "split"] + [f"K = {k}" for k in ks])
    path = runs / f"hyp_rules_{name}.json"
    if not path.is_file():
        print(f"missing {path}; table left out", file=sys.stderr)
        return table
    order = ("weights", "evidence", "selector", "oracle")
    for split, values in json.loads(path.read_text()).items():
        for rule in sorted({key.rsplit("_k", 1)[0] for key in values}, key=lambda r: (order.index(r.split("_")[0]), r)):
            _add(table, f"{rule}/{split}", [rule, split] + [f"{values[f'{rule}_k{k}']:.2f}" if f"{rule}_k{k}" in values
                                                             else "–" for k in ks], path)
    return table


def segmentation_table(runs: Path) -> dict:
    table = _table(["model", "z/z instance mIoU", "z/z class mIoU", "z/SO(3) instance mIoU", "z/SO(3) class mIoU",
                    "epochs", "train time"])
    for name, label in SEG:
        ev = _eval(runs, name)
        if ev is None:
            continue
        p = ev["protocols"]
        miou = [f"{100 * p[r][m]:.1f}" for r in ("z", "SO3") for m in ("instance_miou", "class_miou")]
        _add(table, name, [label, *miou, _config(runs, name).get("epochs", "?"),
                           f"{ev.get('train_seconds', 0) / 60:.0f} min"], runs / name)
    return table


# the summaries (docs/results/tables/NAME.json) that a run folder of scripts/exp_modelnet40.sh refreshes
SUMMARY_TABLES = {
    "canonicalizers": canonicalizer_table,
    "shapenet_transfer": transfer_table,
    "adaptation": lambda runs: accuracy_table(runs, ADAPT),
    "from_scratch": lambda runs: accuracy_table(runs, SCRATCH),
    "up_hypotheses": hypotheses_table,
    "hypothesis_rules_frozen": rules_table,
    "hypothesis_rules_hyp3": lambda runs: rules_table(runs, "canon_normals_z_hyp3"),
    "shapenetpart_segmentation": segmentation_table,
}


def _decorated(old: str, new: str) -> str:
    """``new`` with the bold and the footnote marks of ``old``."""
    marks = pages.MARKS.search(old.replace("**", ""))
    new = f"**{new}**" if old.startswith("**") and old.endswith("**") else new
    return new + (marks.group(0) if marks else "")


def refresh_summary(old: dict | None, table: dict, date: str) -> dict:
    """The summary ``old`` with the figures of ``table`` (rows matched by key; labels, bold and footnote marks
    kept; each changed row gets the file or folder it was read from and ``date``), rows of runs it lacked
    appended; ValueError if the columns differ."""
    if old is None:
        old = {"title": "a table of scripts/exp_modelnet40.sh",
               "source": "scripts/report_modelnet40.py --write-summaries (the rows' runs)",
               "command": "bash scripts/exp_modelnet40.sh (the row's key: its stage)", "columns": table["columns"],
               "rows": []}
    if old["columns"] != table["columns"]:
        raise ValueError(f"columns {old['columns']} of the summary differ from the runs' {table['columns']}")
    fresh = {r["key"]: r for r in table["rows"]}
    rows = []
    for row in old["rows"]:
        key = row.get("key")
        if key in fresh:
            new = fresh.pop(key)
            cells = [row["cells"][0]] + [_decorated(o, n) for o, n in zip(row["cells"][1:], new["cells"][1:])]
            if (cells, new["run"]) != (row["cells"], row.get("run")):  # unchanged: its date stays
                row = {**row, "cells": cells, "run": new["run"], "date": date}
        elif key is not None:
            print(f"no run for the row {key!r}; kept as it was", file=sys.stderr)
        rows.append(row)
    rows += [{**row, "date": date} for row in fresh.values()]
    return {**old, "rows": rows}


def write_summaries(runs: Path, folder: Path = pages.SUMMARIES, date: str | None = None) -> list[Path]:
    """Refresh the summaries of SUMMARY_TABLES in ``folder`` from the run folder ``runs``; the files written."""
    date = date or datetime.date.today().isoformat()
    written = []
    for name, make in SUMMARY_TABLES.items():
        table = make(runs)
        if not table["rows"]:
            continue
        path = Path(folder) / f"{name}.json"
        old = pages.load_summary(folder, name) if path.is_file() else None
        try:
            new = refresh_summary(old, table, date)
        except ValueError as e:
            print(f"{path}: {e}; not refreshed", file=sys.stderr)
            continue
        if new != old:
            atomic_write(path, lambda tmp, new=new: Path(tmp).write_text(pages.dump_summary(new)))
            written.append(path)
    return written


def plot_curves(runs: Path) -> None:
    """Up axis within 10 deg (500 test shapes) against training time, one line per canonicalizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for stem, label in CANONICALIZERS:
        path = runs / "canon" / f"{stem}.pt"
        if path.is_file() and not stem.startswith("shapenet"):
            curves[label] = torch.load(path, map_location="cpu", weights_only=True)["info"].get("curve", [])
    curves = {label: curve for label, curve in curves.items() if curve}
    if not curves:
        print("no learning curves in the run folder; no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, curve in curves.items():
        ax.plot([c["seconds"] / 60 for c in curve], [100 * c["up_within_10deg"] for c in curve], "o-",
                label=label.replace("**", ""), ms=3)
    ax.set(xlabel="training time (min, 1-2 CPU threads)", ylabel="up axis within 10° (%)",
           title="ModelNet40 test shapes")
    ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_write(runs / "canonicalizer_curves.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def print_tables(runs: Path) -> None:
    """Print every table of the run folder (markdown), save them as ``runs/tables.md``, plot the curves."""
    parts = [("Canonicalizers (prior alone), ModelNet40 test split", canonicalizer_table(runs)),
             ("The same canonicalizers on ShapeNetPart's test shapes (2,048 points, sampled otherwise)",
              transfer_table(runs)),
             ("Adapting a pretrained PointNet", accuracy_table(runs, ADAPT)),
             ("From scratch, side by side", accuracy_table(runs, SCRATCH)),
             ("z/SO(3) over the K most likely up hypotheses, evidence rule", evidence_table(runs)),
             ("Up hypotheses: z/SO(3) accuracy over the K most likely up hypotheses", hypotheses_table(runs)),
             ("Combining the up hypotheses (frozen adaptation)", rules_table(runs)),
             ("Combining the up hypotheses (from scratch, trained over 3 hypotheses; selector from 3 seeds)",
              rules_table(runs, "canon_normals_z_hyp3")),
             ("Combining the up hypotheses (from scratch, trained on one frame; selector from 3 seeds)",
              rules_table(runs, "canon_normals_z")),
             ("ShapeNetPart (pseudo labels)", segmentation_table(runs))]
    text = "\n\n".join(f"### {title}\n\n" + "\n".join(markdown(table)) for title, table in parts)
    print(text)
    atomic_write(runs / "tables.md", lambda tmp: Path(tmp).write_text(text + "\n"))
    plot_curves(runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="?", help="a run folder of scripts/exp_modelnet40.sh: print its tables")
    p.add_argument("--runs", type=Path, dest="runs_option", metavar="RUNS", help="the same, as an option")
    p.add_argument("--write-summaries", action="store_true",
                   help="refresh the summaries (--summaries) from RUNS instead of printing the tables")
    p.add_argument("--render", action="store_true", help="rewrite the generated tables of the results pages")
    p.add_argument("--check", action="store_true", help="exit 1 with a diff if a page differs from its rendering")
    p.add_argument("--summaries", type=Path, default=pages.SUMMARIES, help="the summaries' folder (%(default)s)")
    a = p.parse_args(argv)
    if a.runs is not None and a.runs_option is not None and a.runs != a.runs_option:
        p.error("give the run folder once")
    runs = a.runs or a.runs_option
    if runs is None and not (a.render or a.check):
        p.error("nothing to do: give a run folder, --render or --check")
    if a.write_summaries and runs is None:
        p.error("--write-summaries needs a run folder (--runs RUNS)")
    if runs is not None and not runs.is_dir():
        p.error(f"no run folder {runs}")
    if not a.summaries.is_dir():
        p.error(f"no summaries folder {a.summaries}")
    if runs is not None:
        if a.write_summaries:
            for path in write_summaries(runs, a.summaries):
                print(f"wrote {path}", file=sys.stderr)
        else:
            print_tables(runs)
    if a.render:
        for page in pages.render(folder=a.summaries):
            print(f"rendered {page}", file=sys.stderr)
    if a.check:
        diff = pages.diffs(folder=a.summaries)
        if diff:
            print(diff, end="")
            print("the results pages differ from their summaries: scripts/report_modelnet40.py --render",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
