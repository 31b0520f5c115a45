"""Classify meshes and point clouds in any pose with a canonicalized classifier (``pointcanon classify``).

A classifier file (format ``pointcanon-classifier``) holds a canonicalized model (canonicalizer + backbone),
its training config and its class names. The shipped one, ``pointcanon/weights/classifier_modelnet40.pt``,
is a PointNet trained on ModelNet40 behind the shipped upright canonicalizer (one backbone pass per shape);
any ``pointcanon train`` checkpoint of a canonicalized classifier works too.

Each file is read into points (meshes: ``num_points`` area-weighted surface samples drawn with a fixed seed,
or their vertices; clouds: a seeded subset of at most ``num_points`` points), centred and scaled into the
unit sphere (as the training shapes were), and classified in float64. The answer is exactly invariant: a
rigid motion of the file moves the samples with it (the draws depend on the seed and the face areas only)
and the canonicalizer undoes it, so the backbone sees the same canonical cloud (up to float64 rounding).
Shapes flagged ``degenerate`` (near-symmetric: the frame is the identity, not equivariant) or ``fragile``
(the up axis was a near tie) may get another answer in another pose.

Shapes: points ``(N, 3)`` float64; ``transform`` ``(4, 4)`` (input -> canonical coordinates, the
convention of :mod:`pointcanon.mesh`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .core.io import FORMAT as CHECKPOINT_FORMAT, atomic_write, not_a_file, safe_load
from .core.validation import centre, cloud_radius

CLASSIFIER_FORMAT = "pointcanon-classifier"
CLASSIFIER_VERSION = 1
DEFAULT_CLASSIFIER = Path(__file__).resolve().parent / "weights" / "classifier_modelnet40.pt"
CLOUD_SUFFIXES = (".pcd", ".xyz", ".npy")
DEFAULT_NUM_POINTS = 1024  # the density of the ModelNet40 HDF5 shapes the shipped classifier was trained on
TOP_K = 5


@dataclass
class Classifier:
    """A canonicalized classifier ready for files: ``model`` (float64, eval) and its ``class_names``."""

    model: nn.Module
    class_names: list[str]
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        from .nn import CanonicalizedModel

        if not isinstance(self.model, CanonicalizedModel):
            raise TypeError(f"model must be a CanonicalizedModel (canonicalizer + classifier), got "
                            f"{type(self.model).__name__}; a plain backbone is not rotation-invariant")


def _class_names(n: int, names) -> list[str]:
    names = [str(c) for c in (names or [])]
    return names if len(names) == n else [f"class {i}" for i in range(n)]


def _from_checkpoint(path: Path, state: dict) -> Classifier:
    from .config import TrainConfig
    from .models import model_from_state

    cfg = TrainConfig.from_checkpoint(state, path)
    if cfg.task != "cls":
        raise ValueError(f"{path} holds a {cfg.task!r} model; classify needs a classifier (task 'cls')")
    if cfg.canonicalizer == "none":
        raise ValueError(f"{path} holds a plain {cfg.backbone} without a canonicalizer (trained with "
                         "--canonicalizer none): its answer depends on the pose; give a canonicalized classifier")
    if cfg.canonicalizer == "vn-approx":
        raise ValueError(f"{path} uses an approximately equivariant canonicalizer (vn-approx); classify needs "
                         "an exactly equivariant one (candidate or vn)")
    model, cfg = model_from_state(state, path)
    sizes = state.get("sizes") or {}
    n = sizes.get("num_classes", 0) if isinstance(sizes, dict) else int(sizes)
    return Classifier(model, _class_names(n, state.get("classes")), {"checkpoint": str(path), "config": state["config"]})


def load_classifier(path=None) -> Classifier:
    """A :class:`Classifier` from a classifier file or a ``pointcanon train`` checkpoint of a canonicalized
    classifier (``None``: the shipped ModelNet40 classifier). Nothing runs from the file
    (``torch.load(weights_only=True)``). Raises ``FileNotFoundError`` / ``ValueError`` naming the file."""
    path = DEFAULT_CLASSIFIER if path is None else Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(not_a_file(path, "classifier file"))
    state = safe_load(path, "classifier file")
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt == CHECKPOINT_FORMAT:
        clf = _from_checkpoint(path, state)
    elif fmt == CLASSIFIER_FORMAT:
        if state.get("version") != CLASSIFIER_VERSION:
            raise ValueError(f"{path} is a classifier file of version {state.get('version')!r}; this pointcanon "
                             f"reads version {CLASSIFIER_VERSION}")
        clf = _from_checkpoint(path, {**state, "format": CHECKPOINT_FORMAT})
        clf.info = dict(state.get("info") or {})
    else:
        raise ValueError(f"{path} is neither a classifier file ({CLASSIFIER_FORMAT!r}) nor a pointcanon training "
                         "checkpoint")
    clf.model = clf.model.double().eval()
    return clf


def export_classifier(checkpoint, out, *, info: dict | None = None, overwrite: bool = False) -> Path:
    """Write the canonicalized classifier of a ``pointcanon train`` checkpoint as a classifier file ``out``
    (weights, config, class names, ``info``; no optimizer state), atomically; an existing ``out`` is
    replaced only with ``overwrite``."""
    out = Path(out).expanduser()
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise ValueError(f"{out} exists; pass overwrite=True to replace it")
    clf = load_classifier(checkpoint)
    state = safe_load(Path(checkpoint).expanduser(), "checkpoint")
    payload = {"format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION, "config": state["config"],
               "sizes": state["sizes"], "classes": clf.class_names,
               "model": {k: v.detach().cpu().float().clone() if v.is_floating_point() else v.detach().cpu().clone()
                         for k, v in state["model"].items()},
               "info": dict(info or {})}
    return atomic_write(out, lambda tmp: torch.save(payload, tmp))


# ----------------------------------------------------------------------------------------------------
# reading files


def _subset(points: np.ndarray, num_points: int, seed: int) -> np.ndarray:
    """At most ``num_points`` of ``points``, chosen by index with ``seed`` (pose-independent)."""
    if len(points) <= num_points:
        return points
    idx = np.random.default_rng(seed).choice(len(points), num_points, replace=False)
    return points[np.sort(idx)]


def read_points(path, *, num_points: int = DEFAULT_NUM_POINTS, seed: int = 0,
                sampling: str = "surface") -> tuple[np.ndarray, str]:
    """``(points (n, 3) float64, what was seen)`` from a mesh (``.off .obj .ply .stl``) or a cloud
    (``.ply`` without faces, ``.pcd``, ``.xyz``: the first 3 columns, ``.npy``: an ``(N, 3)`` array).
    Meshes give ``num_points`` surface samples (``sampling="surface"``) or their vertices; clouds and
    vertices a seeded subset of at most ``num_points``. Raises ``ValueError`` naming the file."""
    from .mesh.files import MESH_SUFFIXES, load_mesh
    from .mesh.geometry import _coords_faces, _kind, sample_surface

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(not_a_file(path, "file"))
    suffix = path.suffix.lower()
    if suffix in MESH_SUFFIXES:
        geometry = load_mesh(path)
        verts, faces, what = _coords_faces(geometry, _kind(geometry))
        if faces is not None and len(faces) and sampling == "surface":
            return sample_surface(verts, faces, num_points, seed=seed), "surface"
        return _subset(verts, num_points, seed), "vertices" if faces is not None else "points"
    if suffix == ".pcd":
        from .mesh.geometry import _open3d

        o3d = _open3d()
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            pts = np.asarray(o3d.io.read_point_cloud(str(path)).points, np.float64)
    elif suffix == ".xyz":
        try:
            pts = np.loadtxt(path, dtype=np.float64, ndmin=2, comments="#")
        except ValueError as e:
            raise ValueError(f"{path}: not a whitespace-separated table of numbers ({e})") from None
        if pts.shape[1] < 3:
            raise ValueError(f"{path}: an .xyz file needs at least 3 columns (x y z), got {pts.shape[1]}")
        pts = pts[:, :3]
    elif suffix == ".npy":
        pts = np.load(path, allow_pickle=False)  # never unpickles objects
        if pts.ndim != 2 or pts.shape[1] != 3 or not np.issubdtype(pts.dtype, np.number):
            raise ValueError(f"{path}: a .npy cloud must be a numeric (N, 3) array, got {pts.dtype} {pts.shape}")
        pts = pts.astype(np.float64)
    else:
        raise ValueError(f"{path}: unsupported format {suffix or '(none)'!r}; supported: "
                         f"{', '.join(MESH_SUFFIXES + CLOUD_SUFFIXES)}")
    if len(pts) == 0:
        raise ValueError(f"{path}: no points")
    if not np.isfinite(pts).all():
        bad = ~np.isfinite(pts).all(1)
        raise ValueError(f"{path}: NaN or inf coordinates ({int(bad.sum())} of {len(pts)} points, the first at "
                         f"index {int(np.argmax(bad))})")
    return _subset(pts, num_points, seed), "points"


# ----------------------------------------------------------------------------------------------------
# classifying


def classify_points(clf: Classifier, points, *, top_k: int = TOP_K) -> dict:
    """Classify one cloud ``(N, 3)`` (array or tensor, any units and pose; N >= 3). Returns ``{"class",
    "probability", "top5": [{"class", "probability"}], "transform" (4x4 list), "degenerate", "fragile"}``."""
    p = torch.as_tensor(np.asarray(points, np.float64) if not torch.is_tensor(points) else points).double()
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {tuple(p.shape)}")
    if len(p) < 3:
        raise ValueError(f"a cloud needs at least 3 points to have an orientation, got {len(p)}")
    if not torch.isfinite(p).all():
        raise ValueError("points hold NaN or inf coordinates")
    centroid, centred = centre(p.unsqueeze(0))
    radius = cloud_radius(centred)
    if not float(centred.abs().amax()) > 0:
        raise ValueError("all points coincide: the cloud has no shape to classify")
    with torch.no_grad():
        logits, canon = clf.model((centred / radius[:, None, None]), return_canonicalization=True)
    probs = torch.softmax(logits[0].double(), -1)
    top = probs.topk(min(top_k, len(probs)))
    frame = canon.frame[0]
    origin = centroid[0] + radius[0] * (canon.origin[0] if canon.origin is not None else 0)
    t = torch.eye(4, dtype=torch.float64)
    t[:3, :3] = frame.T
    t[:3, 3] = -(frame.T @ origin)
    flag = (lambda v: bool(v[0]) if v is not None else False)
    return {"class": clf.class_names[int(top.indices[0])], "probability": float(top.values[0]),
            "top5": [{"class": clf.class_names[int(i)], "probability": float(v)} for v, i in zip(top.values, top.indices)],
            "transform": t.tolist(), "degenerate": flag(canon.degenerate), "fragile": flag(canon.fragile)}


def collect_files(inputs: Iterable) -> tuple[list[Path], dict[str, str]]:
    """Files to classify (folders searched recursively for supported suffixes, hidden ones skipped) and
    ``{input: error}`` for inputs that are neither."""
    from .mesh.files import MESH_SUFFIXES

    suffixes = MESH_SUFFIXES + CLOUD_SUFFIXES
    files, errors = [], {}
    for item in inputs:
        root = Path(item).expanduser()
        if root.is_dir():
            found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                           and not any(part.startswith(".") for part in p.relative_to(root).parts))
            if not found:
                errors[str(root)] = f"no {'/'.join(suffixes)} files in this folder"
            files += found
        elif root.is_file():
            files.append(root)
        else:
            errors[str(root)] = "no such file or folder"
    return files, errors


def classify_files(files: Iterable[Path], clf: Classifier, *, num_points: int = DEFAULT_NUM_POINTS, seed: int = 0,
                   sampling: str = "surface") -> Iterator[dict]:
    """One result per file, as :func:`classify_points` plus ``"file"``, ``"sampling"`` and ``"num_points"``;
    a file that cannot be read or classified gives ``{"file", "error"}`` and the others go on."""
    for path in files:
        try:
            points, seen = read_points(path, num_points=num_points, seed=seed, sampling=sampling)
            yield {"file": str(path), **classify_points(clf, points), "sampling": seen, "num_points": len(points)}
        except (ValueError, TypeError, OSError) as e:
            yield {"file": str(path), "error": f"{type(e).__name__}: {e}"}


def format_row(result: dict, width: int = 40) -> str:
    """One line of the on-screen table."""
    name = result["file"] if len(result["file"]) <= width else "…" + result["file"][-width + 1:]
    if "error" in result:
        return f"{name:<{width}}  error: {result['error']}"
    second = result["top5"][1] if len(result["top5"]) > 1 else None
    flags = ",".join(k for k in ("degenerate", "fragile") if result[k]) or "-"
    alt = f"{second['class']} {second['probability']:.2f}" if second else "-"
    return f"{name:<{width}}  {result['class']:<14} {result['probability']:>5.2f}  {alt:<20} {flags}"


def table_header(width: int = 40) -> str:
    return f"{'file':<{width}}  {'class':<14} {'prob':>5}  {'second':<20} flags"


__all__ = ["Classifier", "load_classifier", "export_classifier", "read_points", "classify_points",
           "collect_files", "classify_files", "DEFAULT_CLASSIFIER", "CLOUD_SUFFIXES"]
