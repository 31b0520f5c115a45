"""Canonicalize a scanned point cloud with Open3D: read it, estimate normals, move it (normals rotated
with it) into the shipped canonicalizer's pose, write it and the transform.

    .venv/bin/python scripts/open3d_canonicalize.py scan.ply -o canonical.ply [--model FILE] [--voxel 0.01]

Reads any format ``open3d.io.read_point_cloud`` reads (.ply, .pcd, .xyz, .pts, ...). Normals are
estimated from the ``--knn`` nearest neighbours (their sign is arbitrary, as always for estimated
normals; ``--orient K`` makes them consistent over a K-neighbour tangent plane graph) unless the file has
normals and ``--keep-normals`` is given. ``--voxel`` downsamples first (0: keep every point). Writes
``OUT`` and ``OUT.transform.json`` (``canonical = T @ [x, y, z, 1]``, its inverse, the degeneracy flag);
an existing one is replaced only with ``--overwrite``, and never the input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", help="point cloud file (.ply, .pcd, .xyz, ...)")
    p.add_argument("-o", "--out", required=True, help="output point cloud file (format from its suffix)")
    p.add_argument("--model", default=None, help="canonicalizer file (default: the shipped upright one)")
    p.add_argument("--voxel", type=float, default=0.0, help="voxel size for downsampling (0: none)")
    p.add_argument("--knn", type=int, default=30, help="neighbours for normal estimation")
    p.add_argument("--orient", type=int, default=0, help="orient normals over a K-neighbour graph (0: no)")
    p.add_argument("--keep-normals", action="store_true", help="use the file's normals if it has them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT (never the input)")
    a = p.parse_args(argv)
    try:
        import open3d as o3d
    except ImportError as e:
        print(f"error: Open3D is needed (pip install 'pointcanon[mesh]'): {e}", file=sys.stderr)
        return 2
    from pointcanon.core.io import atomic_write, check_output_file, not_a_file, write_json
    from pointcanon.mesh import DegenerateFrameWarning, canonicalize, invert_transform

    try:
        if a.voxel < 0 or a.knn < 3 or a.orient < 0:
            raise ValueError("--voxel must be >= 0, --knn >= 3 and --orient >= 0")
        out = check_output_file(a.out, "-o/--out")
        if not Path(a.input).is_file():
            raise ValueError(not_a_file(a.input, "input"))
        targets = (out, out.with_name(out.name + ".transform.json"))
        if any(t.resolve() == Path(a.input).resolve() for t in targets):
            raise ValueError(f"-o/--out {out}: the outputs would replace the input {a.input}; choose another file")
        if not a.overwrite and any(t.exists() for t in targets):
            existing = ", ".join(str(t) for t in targets if t.exists())
            raise ValueError(f"-o/--out {out} would replace the existing {existing}; pass --overwrite to replace it, "
                             "or choose another file")
        pcd = o3d.io.read_point_cloud(str(a.input))
        if len(pcd.points) == 0:
            raise ValueError(f"{a.input}: Open3D read no points (unsupported or empty file)")
        if a.voxel:
            pcd = pcd.voxel_down_sample(a.voxel)
        if not (a.keep_normals and pcd.has_normals()):
            pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=a.knn))
            if a.orient:
                pcd.orient_normals_consistent_tangent_plane(a.orient)
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DegenerateFrameWarning)
            moved, transform = canonicalize(pcd, a.model)
        degenerate = any(issubclass(w.category, DegenerateFrameWarning) for w in caught)
        ext = out.suffix
        atomic_write(out, lambda tmp: _write(o3d, tmp, moved, ext))
        meta = {"input": str(a.input), "output": str(out), "points": len(moved.points),
                "transform": np.asarray(transform).tolist(), "inverse": invert_transform(transform).tolist(),
                "degenerate": degenerate, "model": a.model or "shipped",
                "convention": "canonical = transform @ [x, y, z, 1]; normals n -> R n"}
        write_json(out.with_name(out.name + ".transform.json"), meta)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"{len(moved.points)} points -> {out}" + (f" ({_degenerate_note(transform)})" if degenerate else ""))
    return 0


def _degenerate_note(transform) -> str:
    """What was done to a shape whose frame is not unique: only centred, or rotated into one of its poses."""
    if np.allclose(np.asarray(transform)[:3, :3], np.eye(3)):
        return "symmetric shape: only centred"
    return "symmetric shape: centred and rotated into one of several equally canonical poses; flagged degenerate"


def _write(o3d, tmp: str, pcd, ext: str) -> None:
    target = tmp + ext  # Open3D picks the format from the suffix
    if not o3d.io.write_point_cloud(target, pcd):
        raise ValueError(f"Open3D could not write a {ext!r} point cloud")
    Path(target).replace(tmp)


if __name__ == "__main__":
    raise SystemExit(main())
