"""``pointcanon classify FILE|FOLDER ...``: class, probability, top-5, canonical pose and flags of mesh and
point-cloud files in any pose (see :mod:`pointcanon.classify`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_classify_parser(sub) -> None:
    from .classify import CLOUD_SUFFIXES, DEFAULT_NUM_POINTS
    from .mesh.files import MESH_SUFFIXES

    c = sub.add_parser(
        "classify", help="classify mesh / point-cloud files in any pose (the shipped ModelNet40 classifier)",
        description=f"Meshes ({' '.join(MESH_SUFFIXES)}) and clouds (.ply without faces, {' '.join(CLOUD_SUFFIXES)}; "
                    ".xyz: the first 3 columns; .npy: an (N, 3) array); folders are searched recursively. The answer "
                    "is the same for a file and any rigid motion of it, except for shapes flagged degenerate "
                    "(near-symmetric) or fragile (near tie between two up axes).")
    c.add_argument("inputs", nargs="+", help="files or folders")
    c.add_argument("--model", default=None,
                   help="a classifier file or a `pointcanon train` checkpoint of a canonicalized classifier "
                        "(default: the shipped ModelNet40 classifier)")
    c.add_argument("--json", default=None, metavar="OUT",
                   help="also write the results to OUT: a list of {file, class, probability, top5, transform, "
                        "degenerate, fragile, ...} (files that failed: {file, error})")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    c.add_argument("--num-points", type=int, default=DEFAULT_NUM_POINTS,
                   help="surface samples of a mesh / most points kept of a cloud")
    c.add_argument("--sampling", choices=("surface", "vertices"), default="surface",
                   help="meshes: area-weighted surface samples, or their vertices")
    c.add_argument("--seed", type=int, default=0, help="seed of the samples (the same in every pose)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar (off a terminal it is off anyway)")
    c.set_defaults(func=cmd_classify)


def cmd_classify(a: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .classify import classify_files, collect_files, format_row, load_classifier, table_header
    from .cliconfig import check_int
    from .config import MAX_POINTS
    from .core.io import check_output_file, write_json

    check_int(a.num_points, "--num-points", 3, MAX_POINTS)
    check_int(a.seed, "--seed", 0, hint=" (numpy seeds are non-negative)")
    if a.json is not None:
        check_output_file(a.json, "--json", overwrite=a.overwrite)
    files, errors = collect_files(a.inputs)
    if not files:
        raise ValueError("nothing to classify: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    if a.json is not None and Path(a.json).expanduser().resolve() in {f.resolve() for f in files}:
        raise ValueError(f"--json {a.json} is one of the inputs; choose another file")
    if a.threads is None:
        import torch

        torch.set_num_threads(1)  # one small network call per file: thread hand-offs cost more than they save
    clf = load_classifier(a.model)
    results = [{"file": k, "error": v} for k, v in errors.items()]
    for r in results:
        print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    width = min(40, max(len(str(f)) for f in files))
    print(table_header(width))
    bar = tqdm(total=len(files), desc="classify", unit="file", file=sys.stderr,
               disable=True if a.no_progress else None)
    try:
        for r in classify_files(files, clf, num_points=a.num_points, seed=a.seed, sampling=a.sampling):
            results.append(r)
            bar.write(format_row(r, width), file=sys.stdout)
            bar.update()
    finally:
        bar.close()
        if a.json is not None:  # also when interrupted: the files done keep their answers
            write_json(a.json, results)
    failed = sum("error" in r for r in results)
    print(f"classified {len(results) - failed} of {len(results)} inputs"
          + (f"; {failed} failed" if failed else "") + (f"; results in {a.json}" if a.json else ""))
    return 1 if failed else 0
