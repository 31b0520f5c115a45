"""Score canonicalizer files on the upright shapes of a test split: up axis within 10 / 20 deg of the
true up, median, frame within 15 deg of the identity. A ModelNet40-trained canonicalizer scored on the
ShapeNetPart test shapes (2,048 points sampled by another pipeline, other shapes) shows how it carries
over to data sampled differently.

    .venv/bin/python scripts/score_canonicalizer.py shipped runs/mn40/canon/upright_normals.pt \\
        --dataset shapenetpart --views 2 --set normal_points=None --set normal_points=1024
"""
import argparse
import ast

import torch

from pointcanon.core.io import write_json
from pointcanon.measure import UPRIGHT_DATASETS as DATASETS, frame_scores
from pointcanon.models import DEFAULT_WEIGHTS, load_canonicalizer


def parse_setting(text: str) -> tuple[str, object]:
    """``"name=value"`` -> ``(name, value)`` with the value read as a Python literal (``None``, ``512``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be a number, None, True or False") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="canonicalizer files ('shipped': the package's weights)")
    p.add_argument("--dataset", choices=tuple(DATASETS), default="modelnet40")
    p.add_argument("--data-root", default=None, help="default: the shared copy of --dataset")
    p.add_argument("--views", type=int, default=None, help="point subsets averaged (default: each file's own)")
    p.add_argument("--set", type=parse_setting, action="append", default=[], metavar="NAME=VALUE",
                   help="score once more with this attribute changed (e.g. normal_points=None); repeatable")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    reader, root, _ = DATASETS[a.dataset]
    test = reader(a.data_root or root, "test").points
    description = f"{a.dataset} test ({len(test)} shapes, {test.shape[1]} points)"
    rows = []
    for file in a.files:
        for setting in [None, *a.set]:
            canon = load_canonicalizer(DEFAULT_WEIGHTS if file == "shipped" else file)
            if a.views is not None:
                canon.views = a.views
            if setting is not None:
                if setting[0] not in canon.hparams:
                    p.error(f"{file}: {type(canon).__name__} has no setting {setting[0]!r}")
                setattr(canon, *setting)
            s = frame_scores(canon, test)
            rows.append({"file": file, "setting": "=".join(map(str, setting)) if setting else "as saved",
                         "views": canon.hparams.get("views"), **s})
            print(f"{file} [{rows[-1]['setting']}], {description}: up within 10 deg {100 * s['up_within_10deg']:.1f}%, "
                  f"within 20 deg {100 * s['up_within_20deg']:.1f}%, median {s['median_up_angle_deg']:.1f} deg; "
                  f"frame within 15 deg {100 * s['frame_within_15deg']:.1f}%", flush=True)
    if a.out:
        write_json(a.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
