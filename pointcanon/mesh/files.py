"""Mesh files: read and write ``.off``/``.obj``/``.ply``/``.stl`` keeping vertex and face order,
before/after thumbnails, and canonicalizing whole folders (``pointcanon canonicalize``)."""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..core.io import atomic_write, not_a_file, write_json
from ..models import DEFAULT_WEIGHTS, _float64_model
from .geometry import (DEFAULT_NUM_POINTS, DegenerateFrameWarning, _coords_faces, _kind, _open3d, apply_transform,
                       estimate_transform)

MESH_SUFFIXES = (".off", ".obj", ".ply", ".stl")
TRANSFORMS_FORMAT = "pointcanon-transforms"

# ----------------------------------------------------------------------------------------------------
# files


def _o3d_from_trimesh(mesh):
    o3d = _open3d()
    return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(mesh.vertices, np.float64)),
                                     o3d.utility.Vector3iVector(np.asarray(mesh.faces, np.int32)))


def load_mesh(path, *, backend: str = "trimesh"):
    """Read a ``.off``, ``.obj``, ``.ply`` or ``.stl`` file, keeping its vertex and face order.

    ``backend="trimesh"`` returns a ``trimesh.Trimesh`` (a ``trimesh.PointCloud`` for a file without
    faces, except an ``.off`` point set: a ``Trimesh`` without faces; a multi-part file is merged);
    ``backend="open3d"`` returns an ``open3d.geometry.TriangleMesh``.
    ``.off`` files are read with :func:`pointcanon.datasets.modelnet.load_off`, which also reads ModelNet's
    broken ``OFF8 6 0`` headers. Open3D reads those as an *empty* mesh with only a warning: an empty
    Open3D result is detected and the file is read with trimesh / ``load_off`` instead.
    Raises ``FileNotFoundError`` or ``ValueError`` naming the file.
    """
    import trimesh

    from ..datasets.modelnet import load_off

    if backend not in ("trimesh", "open3d"):
        raise ValueError(f"backend must be 'trimesh' or 'open3d', got {backend!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(not_a_file(path, "mesh file"))
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"{path}: unsupported mesh format {suffix or '(none)'!r}; "
                         f"supported: {', '.join(MESH_SUFFIXES)}")
    if backend == "open3d":
        o3d = _open3d()
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            mesh = o3d.io.read_triangle_mesh(str(path))
        if len(mesh.vertices) > 0:
            return mesh
        # empty: a header Open3D does not read (ModelNet's "OFF8 6 0"), or a file it cannot parse
        fallback = load_mesh(path, backend="trimesh")
        if not isinstance(fallback, trimesh.Trimesh):
            raise ValueError(f"{path} has no faces; read it as a point cloud with trimesh or "
                             "open3d.io.read_point_cloud")
        return _o3d_from_trimesh(fallback)
    if suffix == ".off":
        return load_off(path, require_faces=False)
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as e:  # trimesh raises many types for unreadable files
        raise ValueError(f"{path} is not a readable {suffix[1:].upper()} file ({type(e).__name__}: {e})") from None
    if isinstance(loaded, trimesh.Scene):
        if not loaded.geometry:
            raise ValueError(f"{path} holds no geometry")
        loaded = loaded.to_geometry()
    if not isinstance(loaded, (trimesh.Trimesh, trimesh.PointCloud)) or len(loaded.vertices) == 0:
        raise ValueError(f"{path} holds no vertices")
    return loaded


def save_mesh(geometry, path) -> Path:
    """Write a trimesh ``Trimesh`` / ``PointCloud`` to ``path`` (format from the suffix) atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    kwargs = {"include_texture": False} if suffix == ".obj" else {}
    data = geometry.export(file_type=suffix[1:], **kwargs)
    if isinstance(data, str):
        data = data.encode()

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def render_thumbnail(before, after, path, *, title: str | None = None, max_faces: int = 20000,
                     max_points: int = 5000, size: float = 3.0, dpi: int = 80) -> Path:
    """A PNG with two panels, ``before`` and ``after`` (trimesh meshes / point clouds, Open3D objects or
    ``(N, 3)`` arrays), drawn with matplotlib (Agg, no display, no Vulkan) in the same axis limits: a
    cube around both shapes. Faces beyond ``max_faces`` (points beyond ``max_points``) are thinned by a
    fixed stride, the same in both panels. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    shapes = []
    for g in (before, after):
        v, f, _ = _coords_faces(g, _kind(g))
        shapes.append((v, f if f is not None and len(f) else None))
    allv = np.concatenate([v for v, _ in shapes])
    lo, hi = allv.min(0), allv.max(0)
    centre, half = (lo + hi) / 2, max((hi - lo).max() / 2, 1e-12)
    fig = Figure(figsize=(2 * size, size), dpi=dpi)
    FigureCanvasAgg(fig)
    for i, ((v, f), label) in enumerate(zip(shapes, ("before", "after"))):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        if f is not None:
            f = f[:: max(1, -(-len(f) // max_faces))]
            ax.add_collection3d(Poly3DCollection(v[f], facecolor=(0.55, 0.7, 0.9), edgecolor=(0.2, 0.3, 0.45),
                                                 linewidths=0.1, alpha=0.9))
        else:
            p = v[:: max(1, -(-len(v) // max_points))]
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=1, c=p[:, 2], cmap="viridis")
        for k, setter in enumerate((ax.set_xlim, ax.set_ylim, ax.set_zlim)):
            setter(centre[k] - half, centre[k] + half)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_zlabel("z")
        ax.tick_params(labelsize=5)
        ax.set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def _collect(inputs: Iterable, out_dir: Path) -> tuple[list[tuple[Path, Path]], dict[str, str]]:
    """``[(input file, output path relative to out_dir)]`` and ``{input: error}`` for bad inputs."""
    out_dir = out_dir.resolve()
    files, errors, seen = [], {}, {}
    for item in inputs:
        root = Path(item).expanduser()
        if root.is_dir() and root.resolve() == out_dir:
            raise ValueError(f"-o/--out {out_dir} is the input folder {root}: the outputs would replace the inputs; "
                             "choose another output folder")
        if root.is_dir():
            found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES
                           and out_dir not in p.resolve().parents
                           and not any(part.startswith(".") for part in p.relative_to(root).parts))
            if not found:
                errors[str(root)] = f"no {'/'.join(MESH_SUFFIXES)} files in this folder"
            pairs = [(p, p.relative_to(root)) for p in found]
        elif root.is_file():
            pairs = [(root, Path(root.name))]
        else:
            errors[str(root)] = "no such file or folder"
            continue
        for src, rel in pairs:
            if str(rel) in seen:
                errors[str(src)] = f"its output {rel} collides with the output of {seen[str(rel)]}"
                continue
            seen[str(rel)] = str(src)
            files.append((src, rel))
    return files, errors


def _check_targets(files: list[tuple[Path, Path]], out_dir: Path, render: bool, overwrite: bool) -> None:
    """``ValueError`` before any work when an output would replace an input (always refused), or would
    replace an existing file and ``overwrite`` is false."""
    inputs = {src.resolve(): src for src, _ in files}
    targets = [out_dir / "transforms.json"] + [out_dir / rel for _, rel in files]
    targets += [out_dir / rel.with_name(rel.name + ".png") for _, rel in files] if render else []
    for target in targets:
        if target.resolve() in inputs:
            raise ValueError(f"the output {target} would replace the input {inputs[target.resolve()]}; choose "
                             "another -o/--out folder (inputs are never overwritten)")
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not overwrite:
        raise ValueError(f"-o/--out {out_dir} already holds {len(existing)} of the outputs ({existing[0]}"
                         f"{', ...' if len(existing) > 1 else ''}); pass --overwrite (overwrite=True) to replace "
                         "them, or choose another folder")


def canonicalize_files(inputs: Iterable, out_dir, model=None, *, num_points: int = DEFAULT_NUM_POINTS,
                       seed: int = 0, sampling: str = "surface", render: bool = False,
                       progress: bool = True, overwrite: bool = False) -> dict:
    """Canonicalize mesh files (``.off .obj .ply .stl``; folders are searched recursively) into ``out_dir``.

    Each output keeps its input's format and relative path (a file given directly goes to
    ``out_dir/<name>``, a file found in a folder to ``out_dir/<path inside the folder>``) and is written
    atomically. ``out_dir/transforms.json`` maps every input to its transform, inverse and flags, and
    lists the files that failed under ``"errors"`` (a bad file is reported on stderr and skipped).
    With ``render``, ``out_dir/<relative path>.png`` shows each shape before and after.
    Raises ``ValueError`` before any work when an output would replace an input (never allowed) or an
    existing file (unless ``overwrite``). Interrupted (``KeyboardInterrupt``), it writes the transforms of
    the files done (``"interrupted": true``) and re-raises. Returns the JSON report.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir).expanduser()
    files, errors = _collect(inputs, out_dir)
    if not files and not errors:
        raise ValueError("no input files given")
    _check_targets(files, out_dir, render, overwrite)
    canon = _float64_model(model)  # load once; the per-file calls reuse it
    model_desc = ("default: " + str(DEFAULT_WEIGHTS)) if model is None else \
        (str(model) if isinstance(model, (str, os.PathLike)) else f"{type(model).__name__} object")
    report: dict[str, Any] = {
        "format": TRANSFORMS_FORMAT, "version": 1, "model": model_desc,
        "model_info": json.loads(json.dumps(getattr(canon, "info", {}), default=str)),
        "sampling": sampling, "num_points": num_points, "seed": seed,
        "convention": "canonical = transform @ [x, y, z, 1] (x_c = x @ R.T + t); inverse maps canonical back",
        "files": {}, "errors": dict(errors)}
    for src, msg in errors.items():
        print(f"error: {src}: {msg}", file=sys.stderr)
    bar = tqdm(files, desc="canonicalize", unit="file", disable=None if progress else True, file=sys.stderr)
    try:
        for src, rel in bar:
            try:
                report["files"][str(src)] = _canonicalize_file(src, out_dir, rel, canon, num_points, seed, sampling,
                                                               render)
            except Exception as e:  # a bad file of any kind is reported and the batch goes on
                report["errors"][str(src)] = f"{type(e).__name__}: {e}"
                bar.write(f"error: {src}: {type(e).__name__}: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        report["interrupted"] = True  # the files done keep their transforms
        raise
    finally:
        bar.close()
        write_json(out_dir / "transforms.json", report)
    return report


def _canonicalize_file(src: Path, out_dir: Path, rel: Path, canon, num_points: int, seed: int, sampling: str,
                       render: bool) -> dict:
    """Canonicalize one mesh file into ``out_dir / rel``; its entry of ``transforms.json``."""
    mesh = load_mesh(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateFrameWarning)
        frame = estimate_transform(mesh, canon, num_points=num_points, seed=seed, sampling=sampling)
    out = apply_transform(mesh, frame.transform)
    target = save_mesh(out, out_dir / rel)
    entry = {"output": str(target), **frame.to_json(), "vertices": int(len(mesh.vertices)),
             "faces": int(len(getattr(mesh, "faces", ())))}
    if render:
        entry["thumbnail"] = str(render_thumbnail(mesh, out, out_dir / rel.with_name(rel.name + ".png"),
                                                  title=str(rel)))
    return entry
