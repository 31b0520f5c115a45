"""Canonicalize meshes and point clouds of Open3D and trimesh (and plain ``(N, 3)`` arrays / tensors).

A canonicalizer (:class:`~pointcanon.nn.CandidateCanonicalizer` by default, or a
:class:`~pointcanon.nn.VNCanonicalizer`; group ``"SE3"``) predicts a proper rotation ``R`` and an
origin ``o`` for the shape; the shape is moved by the rigid transform ``T`` (4x4, column-vector
convention) that takes input coordinates to canonical ones::

    x_c = (x - o) @ R = x @ T[:3, :3].T + T[:3, 3],     T = [[R.T, -R.T @ o], [0, 0, 0, 1]]

``canonicalize(g . shape)`` gives the same canonical shape as ``canonicalize(shape)`` for every rigid
motion ``g`` (exactly, up to float64 rounding), because everything the canonicalizer sees is itself
equivariant:

- **meshes** are seen through ``num_points`` area-weighted barycentric samples of their faces, drawn
  with a fixed seed *per face order*: the face indices and barycentric coordinates depend only on the
  seed and the face areas (which a rigid motion does not change), so the samples of a moved mesh are the
  moved samples. ``sampling="vertices"`` uses the vertices instead (also exact, but grid-like CAD
  vertices have ties in their neighbour distances that rounding may break differently after a motion).
- **point clouds** are seen as they are (the canonicalizer then subsamples a fixed index set).
- the samples are centred on their mean and scaled into the unit sphere before the network (as its
  training data were); the frame does not depend on that scale and ``T`` keeps the input's units.
- the network runs in float64, on a float64 copy of the model.

Only proper rotations are applied (``det R = +1``): a reflection would turn every face inside out, so
canonicalizers that may return one (``group="E3"``) are refused. Faces are kept as they are (their
orientation and signed volume are preserved) and vertex / face / point normals are rotated with the
shape. Open3D is optional: it is imported only when an Open3D object or backend is used.

Shapes:
    vertices / points ``(N, 3)``, faces ``(F, 3)`` int, transforms ``(4, 4)`` float64.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from .core.io import atomic_write, write_json
from .nn.candidates import CandidateCanonicalizer
from .nn.canonicalizer import VNCanonicalizer

# the exactly equivariant canonicalizers a canonicalizer file may hold, by the name stored in the file
CANONICALIZER_CLASSES = {"VNCanonicalizer": VNCanonicalizer, "CandidateCanonicalizer": CandidateCanonicalizer}

__all__ = [
    "canonicalize", "estimate_transform", "apply_transform", "invert_transform", "sample_surface",
    "CanonicalFrame", "DegenerateFrameWarning", "save_canonicalizer", "load_canonicalizer",
    "load_default_canonicalizer", "load_mesh", "save_mesh", "render_thumbnail", "canonicalize_files",
    "DEFAULT_WEIGHTS", "MESH_SUFFIXES",
]

CANONICALIZER_FORMAT = "pointcanon-canonicalizer"
CANONICALIZER_VERSION = 1
TRANSFORMS_FORMAT = "pointcanon-transforms"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "upright_modelnet40.pt"
MESH_SUFFIXES = (".off", ".obj", ".ply", ".stl")
SAMPLING_CHOICES = ("surface", "vertices")
DEFAULT_NUM_POINTS = 2048
OPEN3D_INSTALL_HINT = ("install it with `pip install open3d-cpu==0.20.0` (or `pip install -e \".[mesh]\"`); on "
                       "Debian/Ubuntu Open3D also needs the system library libusb-1.0-0 "
                       "(`apt-get install libusb-1.0-0`; scripts/setup_venv.sh does both)")

_MESH_KINDS = ("open3d.TriangleMesh", "trimesh.Trimesh")
_KIND_NAMES = ("open3d.geometry.TriangleMesh", "open3d.geometry.PointCloud", "trimesh.Trimesh",
               "trimesh.PointCloud", "numpy.ndarray (N, 3)", "torch.Tensor (N, 3)")


class DegenerateFrameWarning(UserWarning):
    """The shape is (nearly) symmetric: its canonical frame is not unique, a fallback was used."""


def _open3d():
    try:
        import open3d
    except ImportError as e:
        raise ImportError(f"Open3D is needed for this (it could not be imported: {e}); {OPEN3D_INSTALL_HINT}") from e
    return open3d


# ----------------------------------------------------------------------------------------------------
# canonicalizer files


def _check_exact(canon: nn.Module, source: str) -> VNCanonicalizer | CandidateCanonicalizer:
    """A canonicalizer usable on meshes: an exactly equivariant canonicalizer with proper frames."""
    from .nn.approximate import ApproximateVNCanonicalizer
    from .nn.wrapper import CanonicalizedModel

    if isinstance(canon, CanonicalizedModel):
        canon = canon.canonicalizer
    if isinstance(canon, ApproximateVNCanonicalizer):
        raise ValueError(f"{source} is an approximately equivariant canonicalizer (vn-approx); meshes need the "
                         "exactly equivariant CandidateCanonicalizer or VNCanonicalizer")
    if not isinstance(canon, tuple(CANONICALIZER_CLASSES.values())):
        raise TypeError(f"{source} must be a {' or '.join(CANONICALIZER_CLASSES)} (or a CanonicalizedModel holding "
                        f"one), got {type(canon).__name__}")
    if canon.group != "SE3":
        raise ValueError(f"{source} has group={canon.group!r}, whose frames may be reflections, which would turn "
                         "the faces of a mesh inside out; use a canonicalizer with group='SE3' (proper rotations)")
    return canon


def save_canonicalizer(canon: VNCanonicalizer | CandidateCanonicalizer, path, info: dict | None = None) -> Path:
    """Write ``canon`` to ``path`` atomically as ``{"format": "pointcanon-canonicalizer", "version": 1,
    "hparams", "class": "VNCanonicalizer" | "CandidateCanonicalizer", "state_dict", "info"}``
    (``torch.save``; tensors on the CPU).

    ``info`` is free metadata (training data, epochs, scores); keep it to plain str / int / float / bool /
    list / dict values so the file loads with ``torch.load(weights_only=True)``.
    """
    canon = _check_exact(canon, "the canonicalizer to save")
    payload = {"format": CANONICALIZER_FORMAT, "version": CANONICALIZER_VERSION, "hparams": dict(canon.hparams),
               "class": type(canon).__name__,
               "state_dict": {k: v.detach().cpu().clone() for k, v in canon.state_dict().items()},
               "info": dict(info or {})}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_canonicalizer(path) -> VNCanonicalizer | CandidateCanonicalizer:
    """Load a canonicalizer (eval mode, CPU, in the dtype it was saved in) from a file of
    :func:`save_canonicalizer` or from a ``pointcanon train`` checkpoint of a canonicalized model (its
    canonicalizer part).

    The file's ``info`` dict is attached as ``canon.info``. Raises ``FileNotFoundError`` for a missing
    file and ``ValueError`` for a foreign, corrupt or unsuitable one (a plain backbone, ``group="E3"``,
    an approximately equivariant canonicalizer).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"canonicalizer file {path} does not exist")
    from .core.io import FORMAT as CHECKPOINT_FORMAT, safe_load

    obj = safe_load(path, "canonicalizer file")  # never runs code from the file
    if isinstance(obj, dict) and obj.get("format") == CANONICALIZER_FORMAT:
        if obj.get("version") != CANONICALIZER_VERSION or obj.get("class") not in CANONICALIZER_CLASSES:
            raise ValueError(f"{path} is a canonicalizer file of version {obj.get('version')!r} / class "
                             f"{obj.get('class')!r}; this pointcanon reads version {CANONICALIZER_VERSION} "
                             f"files of {', '.join(CANONICALIZER_CLASSES)}")
        try:
            hparams = dict(obj["hparams"])
            canon = CANONICALIZER_CLASSES[obj["class"]](hparams.pop("group", "SE3"), **hparams)
            dtypes = {v.dtype for v in obj["state_dict"].values() if v.is_floating_point()}
            if len(dtypes) == 1:  # keep the precision it was saved in
                canon.to(dtypes.pop())
            canon.load_state_dict(obj["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"canonicalizer file {path} does not match this version of pointcanon: {e}") from None
        canon.info = dict(obj.get("info") or {})
    elif isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        from .train import load_model

        model, cfg, state = load_model(path)
        if cfg.canonicalizer == "none":
            raise ValueError(f"{path} holds a plain {cfg.backbone} model without a canonicalizer "
                             "(trained with --canonicalizer none)")
        canon = model.canonicalizer
        canon.info = {"checkpoint": str(path), "config": state.get("config")}
    else:
        raise ValueError(f"{path} is neither a canonicalizer file ({CANONICALIZER_FORMAT!r}) nor a pointcanon "
                         "training checkpoint")
    _check_exact(canon, f"the canonicalizer in {path}")
    return canon.eval()


def load_default_canonicalizer() -> CandidateCanonicalizer:
    """The shipped canonicalizer, ``pointcanon/weights/upright_modelnet40.pt`` (trained on upright
    ModelNet40 with an upright prior). Raises ``FileNotFoundError`` naming the file when it is missing."""
    if not DEFAULT_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"the default canonicalizer weights {DEFAULT_WEIGHTS} are not installed: pass model= a "
            "canonicalizer module or the path of a canonicalizer file / pointcanon checkpoint (--model PATH)")
    return load_canonicalizer(DEFAULT_WEIGHTS)


@functools.lru_cache(maxsize=4)
def _load_float64(path: str, mtime_ns: int, size: int) -> VNCanonicalizer | CandidateCanonicalizer:
    return copy.deepcopy(load_canonicalizer(path)).to(torch.float64).eval()


def _float64_model(model) -> VNCanonicalizer | CandidateCanonicalizer:
    """A float64, eval-mode canonicalizer for ``model`` (None, a path, or a module); never ``model`` itself."""
    if model is None:
        if not DEFAULT_WEIGHTS.is_file():
            load_default_canonicalizer()  # raises the FileNotFoundError
        model = DEFAULT_WEIGHTS
    if isinstance(model, (str, os.PathLike)):
        path = Path(model).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"canonicalizer file {path} does not exist")
        st = path.stat()
        return _load_float64(str(path), st.st_mtime_ns, st.st_size)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a CandidateCanonicalizer or VNCanonicalizer, the path of a canonicalizer file / checkpoint, or None "
                        f"(the default weights), got {type(model).__name__}")
    canon = _check_exact(model, "model")
    return copy.deepcopy(canon).to(torch.float64).eval()


# ----------------------------------------------------------------------------------------------------
# geometry types


def _kind(geometry) -> str:
    if isinstance(geometry, torch.Tensor):
        return "torch"
    if isinstance(geometry, np.ndarray):
        return "numpy"
    import trimesh

    if isinstance(geometry, trimesh.Trimesh):
        return "trimesh.Trimesh"
    if isinstance(geometry, trimesh.PointCloud):
        return "trimesh.PointCloud"
    if type(geometry).__module__.split(".")[0] == "open3d":
        o3d = _open3d()
        if isinstance(geometry, o3d.geometry.TriangleMesh):
            return "open3d.TriangleMesh"
        if isinstance(geometry, o3d.geometry.PointCloud):
            return "open3d.PointCloud"
        hint = " (convert a tensor geometry with .to_legacy())" if ".t." in type(geometry).__module__ + "." else ""
        raise TypeError(f"unsupported Open3D type {type(geometry).__name__}{hint}; supported: {', '.join(_KIND_NAMES)}")
    hint = " (convert it with np.asarray)" if isinstance(geometry, (list, tuple)) else ""
    raise TypeError(f"cannot canonicalize a {type(geometry).__module__}.{type(geometry).__name__}{hint}; "
                    f"supported: {', '.join(_KIND_NAMES)}")


def _check_coords(v: np.ndarray, what: str) -> np.ndarray:
    if v.ndim != 2 or v.shape[1] != 3:
        hint = "; canonicalize one shape at a time, or call the canonicalizer on a batch" if v.ndim == 3 else ""
        raise ValueError(f"{what} must have shape (N, 3), got {tuple(v.shape)}{hint}")
    if v.shape[0] == 0:
        raise ValueError(f"{what} is empty (no points)")
    bad = ~np.isfinite(v).all(1)
    if bad.any():
        raise ValueError(f"{what} has NaN or inf coordinates ({int(bad.sum())} of {len(v)} points, the first at "
                         f"index {int(np.argmax(bad))})")
    return v


def _coords_faces(geometry, kind: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(vertices (N, 3) float64, faces (F, 3) int64 or None, description)``, validated."""
    if kind in ("numpy", "torch"):
        what = f"the {'array' if kind == 'numpy' else 'tensor'}"
        dtype = geometry.dtype
        floating = geometry.is_floating_point() if kind == "torch" else np.issubdtype(dtype, np.floating)
        if not floating:
            raise TypeError(f"{what} must have a floating dtype (float32 or float64), got {dtype}")
        v = geometry.detach().cpu().to(torch.float64).numpy() if kind == "torch" else np.asarray(geometry, np.float64)
        return _check_coords(v, what), None, what
    if kind == "trimesh.Trimesh":
        what = "the mesh"
        v, f = np.asarray(geometry.vertices, np.float64), np.asarray(geometry.faces)
    elif kind == "trimesh.PointCloud":
        what, f = "the point cloud", None
        v = np.asarray(geometry.vertices, np.float64)
    elif kind == "open3d.TriangleMesh":
        what = "the mesh"
        v, f = np.asarray(geometry.vertices, np.float64), np.asarray(geometry.triangles)
    else:  # open3d.PointCloud
        what, f = "the point cloud", None
        v = np.asarray(geometry.points, np.float64)
    if v.size == 0:
        raise ValueError(f"{what} is empty (no {'vertices' if f is not None else 'points'})")
    v = _check_coords(v.reshape(-1, 3), what + ("'s vertices" if f is not None else ""))
    if f is not None:
        f = f.reshape(-1, 3).astype(np.int64) if f.size else np.zeros((0, 3), np.int64)
        if len(f) and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"{what} has face indices outside [0, {len(v)}) (min {f.min()}, max {f.max()})")
    return v, f, what


def sample_surface(vertices: np.ndarray, faces: np.ndarray, num_points: int, *, seed: int = 0) -> np.ndarray:
    """``num_points`` area-weighted uniform samples on the triangles ``faces`` of ``vertices``, ``(num_points, 3)``
    float64.

    Exactly equivariant: the random draws (which face, where in it) depend only on ``seed`` and the face
    areas, not on the pose, and a barycentric combination of moved vertices is the moved combination. So
    ``sample_surface(v @ Q.T + s, f, n, seed=k) == sample_surface(v, f, n, seed=k) @ Q.T + s`` up to rounding
    (the faces must be in the same order). Raises ``ValueError`` when there are no faces or no area.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if num_points < 1:
        raise ValueError(f"num_points must be positive, got {num_points}")
    if len(f) == 0:
        raise ValueError("surface sampling needs faces, the mesh has none")
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    areas = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = areas.sum()
    if not (np.isfinite(total) and total > 0):
        raise ValueError("surface sampling needs faces with a positive area; every face of the mesh is degenerate")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(areas) / total
    idx = np.minimum(np.searchsorted(cdf, rng.random(num_points), side="right"), len(f) - 1)
    r1, r2 = rng.random(num_points), rng.random(num_points)
    s1 = np.sqrt(r1)
    w = np.stack([1 - s1, s1 * (1 - r2), s1 * r2], 1)  # (n, 3) barycentric, uniform on the triangle
    return w[:, :1] * a[idx] + w[:, 1:2] * b[idx] + w[:, 2:] * c[idx]


# ----------------------------------------------------------------------------------------------------
# transforms


def _rigid_parts(transform, *, allow_reflection: bool = False, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    t = transform.detach().cpu().to(torch.float64).numpy() if isinstance(transform, torch.Tensor) \
        else np.asarray(transform, np.float64)
    if t.shape != (4, 4):
        raise ValueError(f"a rigid transform must be a (4, 4) matrix, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("the transform has NaN or inf entries")
    r, s = t[:3, :3], t[:3, 3]
    if np.abs(t[3] - [0, 0, 0, 1]).max() > tol or np.abs(r.T @ r - np.eye(3)).max() > tol:
        raise ValueError("not a rigid transform: the last row must be [0, 0, 0, 1] and the 3x3 block orthonormal")
    if not allow_reflection and np.linalg.det(r) < 0:
        raise ValueError("the transform is a reflection (det = -1); it would turn the faces of a mesh inside out")
    return r, s


def invert_transform(transform):
    """The exact inverse of a rigid 4x4 transform ``[[R, t], [0, 1]]``: ``[[R.T, -R.T @ t], [0, 1]]``.

    Takes a numpy array or a torch tensor and returns the same type (float64 numpy for array input;
    the tensor's dtype and device for a tensor). Raises ``ValueError`` if ``transform`` is not rigid.
    """
    r, s = _rigid_parts(transform, allow_reflection=True)
    inv = np.eye(4)
    inv[:3, :3] = r.T
    inv[:3, 3] = -(r.T @ s)
    if isinstance(transform, torch.Tensor):
        return torch.from_numpy(inv).to(transform.dtype if transform.is_floating_point() else torch.float64)\
            .to(transform.device)
    return inv


def apply_transform(geometry, transform):
    """A moved copy of ``geometry`` (any type :func:`canonicalize` takes; the input is not changed):
    points / vertices ``x -> x @ R.T + t`` for ``transform = [[R, t], [0, 1]]``, normals ``n -> n @ R.T``,
    faces unchanged. ``transform`` must be a proper rigid motion (det +1), e.g. the ``T`` of
    :func:`canonicalize` or its :func:`invert_transform`."""
    kind = _kind(geometry)
    r, s = _rigid_parts(transform)
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = r, s
    if kind == "numpy":
        v, _, _ = _coords_faces(geometry, kind)
        return (v @ r.T + s).astype(geometry.dtype, copy=False)
    if kind == "torch":
        v, _, _ = _coords_faces(geometry, kind)
        return torch.from_numpy(v @ r.T + s).to(dtype=geometry.dtype, device=geometry.device)
    if kind == "trimesh.Trimesh":
        # trimesh rotates cached vertex / face normals with the vertices; it skips a transform within 1e-8
        # of the identity (the result then differs from the exact one by less than that)
        return geometry.copy(include_cache=True).apply_transform(t)
    if kind == "trimesh.PointCloud":
        return geometry.copy().apply_transform(t)
    o3d = _open3d()
    cls = o3d.geometry.TriangleMesh if kind == "open3d.TriangleMesh" else o3d.geometry.PointCloud
    return cls(geometry).transform(t)  # copy, then move points, normals (and covariances) in float64


@dataclass(frozen=True)
class CanonicalFrame:
    """The canonical pose of one shape.

    Attributes:
        transform: ``(4, 4)`` float64, input coordinates -> canonical coordinates (column vectors:
            ``x_c = x @ T[:3, :3].T + T[:3, 3]``); ``det T[:3, :3] = +1``.
        degenerate: the shape is (nearly) symmetric, its frame is not unique; the rotation is then the
            identity (only the centring is applied) and not equivariant.
        conditioning: in [0, 1]; how far from degenerate (see :class:`~pointcanon.Canonicalization`).
        sampling: what the canonicalizer saw: ``"surface"`` samples, mesh ``"vertices"`` or ``"points"``.
        num_samples: how many points it saw.
    """

    transform: np.ndarray
    degenerate: bool
    conditioning: float
    sampling: str
    num_samples: int

    @property
    def inverse(self) -> np.ndarray:
        """Canonical coordinates -> input coordinates, ``(4, 4)``."""
        return invert_transform(self.transform)

    @property
    def rotation(self) -> np.ndarray:
        return self.transform[:3, :3]

    @property
    def translation(self) -> np.ndarray:
        return self.transform[:3, 3]

    def to_json(self) -> dict:
        return {"transform": self.transform.tolist(), "inverse": self.inverse.tolist(),
                "degenerate": self.degenerate, "conditioning": self.conditioning,
                "sampling": self.sampling, "num_samples": self.num_samples}


def estimate_transform(geometry, model=None, *, num_points: int = DEFAULT_NUM_POINTS, seed: int = 0,
                       sampling: str = "surface") -> CanonicalFrame:
    """The canonical pose of ``geometry`` (see :func:`canonicalize`) without moving it."""
    if sampling not in SAMPLING_CHOICES:
        raise ValueError(f"sampling must be one of {SAMPLING_CHOICES}, got {sampling!r}")
    if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 1:
        raise ValueError(f"num_points must be a positive int, got {num_points!r}")
    kind = _kind(geometry)
    verts, faces, what = _coords_faces(geometry, kind)
    if kind in _MESH_KINDS and sampling == "surface":
        if len(faces) == 0:
            raise ValueError(f"{what} has {len(verts)} vertices but no faces: surface sampling (sampling='surface', "
                             "the default for meshes) needs faces; pass sampling='vertices' to use the vertices, "
                             "or pass a point cloud")
        try:
            points = sample_surface(verts, faces, num_points, seed=seed)
        except ValueError as e:
            raise ValueError(f"{what}: {e}; pass sampling='vertices' to use the vertices instead") from None
        seen = "surface"
    else:
        points, seen = verts, ("vertices" if kind in _MESH_KINDS else "points")
    canon = _float64_model(model)
    device = next(canon.parameters()).device
    p = torch.from_numpy(points).to(device)  # (M, 3) float64
    centroid = p.mean(0)
    scale = (p - centroid).norm(dim=-1).max()
    if not scale > 0:  # all points coincide: no orientation exists
        frame, origin, degenerate, conditioning = torch.eye(3, dtype=p.dtype, device=device), centroid, True, 0.0
    else:
        with torch.no_grad():
            out = canon(((p - centroid) / scale).unsqueeze(0))  # the network sees the unit-sphere cloud (1, M, 3)
        frame = out.frame[0]
        origin = centroid if out.origin is None else centroid + scale * out.origin[0]
        degenerate = bool(out.degenerate[0]) if out.degenerate is not None else False
        conditioning = float(out.conditioning[0]) if out.conditioning is not None else 1.0
    r = frame.cpu().numpy()
    det = float(np.linalg.det(r))
    if not abs(det - 1) < 1e-6:
        raise ValueError(f"the canonicalizer returned a frame with det = {det:.6f}, not a proper rotation; meshes "
                         "need group='SE3'")
    t = np.eye(4)
    t[:3, :3] = r.T
    t[:3, 3] = -(r.T @ origin.cpu().numpy())
    return CanonicalFrame(transform=t, degenerate=degenerate, conditioning=conditioning, sampling=seen,
                          num_samples=len(points))


def canonicalize(geometry, model=None, *, num_points: int = DEFAULT_NUM_POINTS, seed: int = 0,
                 sampling: str = "surface", return_transform: bool = True):
    """Move a mesh or point cloud into its canonical pose.

    Args:
        geometry: ``open3d.geometry.TriangleMesh``, ``open3d.geometry.PointCloud``, ``trimesh.Trimesh``,
            ``trimesh.PointCloud``, or a float ``(N, 3)`` numpy array / torch tensor of points.
        model: a :class:`~pointcanon.nn.VNCanonicalizer` with ``group="SE3"`` (or a CanonicalizedModel
            holding one), the path of a canonicalizer file (:func:`save_canonicalizer`) or of a
            ``pointcanon train`` checkpoint of a canonicalized model, or ``None`` for the shipped default
            (:func:`load_default_canonicalizer`). It is run in float64 on a copy; ``model`` is not changed.
        num_points: surface samples drawn from a mesh for the canonicalizer (point clouds are used as given).
        seed: the seed of those samples (the same seed and face order give the same samples in every pose).
        sampling: ``"surface"`` (default; area-weighted samples of the faces, which must exist) or
            ``"vertices"`` (a mesh's vertices; also works for a mesh without faces).
        return_transform: also return ``T``.

    Returns:
        a new object of the input's type (and dtype / device) in canonical coordinates: vertices / points
        ``x @ T[:3, :3].T + T[:3, 3]``, normals rotated, faces, colours and other attributes unchanged;
        and, with ``return_transform``, ``T`` ``(4, 4)`` float64 numpy, a proper rigid motion.
        ``invert_transform(T)`` maps results back. A tensor result carries no gradient.

    Raises:
        TypeError: an unsupported type, or integer coordinates.
        ValueError: an empty shape, NaN / inf coordinates, a wrong shape, a mesh without faces (or
            without area) for ``sampling="surface"``, a canonicalizer that may reflect (``group="E3"``).
        ImportError: an Open3D object was given but Open3D cannot be imported (never otherwise).
        FileNotFoundError: ``model=None`` and the default weights are not installed, or a missing path.

    A (nearly) symmetric shape has no unique frame: it is only centred and a
    :class:`DegenerateFrameWarning` is issued (:func:`estimate_transform` reports this as flags).
    """
    frame = estimate_transform(geometry, model, num_points=num_points, seed=seed, sampling=sampling)
    if frame.degenerate:
        warnings.warn("the shape is (nearly) symmetric, so its canonical rotation is not unique: it was only "
                      f"centred (conditioning {frame.conditioning:.2e})", DegenerateFrameWarning, stacklevel=2)
    out = apply_transform(geometry, frame.transform)
    return (out, frame.transform) if return_transform else out


# ----------------------------------------------------------------------------------------------------
# files


def _o3d_from_trimesh(mesh):
    o3d = _open3d()
    return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(mesh.vertices, np.float64)),
                                     o3d.utility.Vector3iVector(np.asarray(mesh.faces, np.int32)))


def load_mesh(path, *, backend: str = "trimesh"):
    """Read a ``.off``, ``.obj``, ``.ply`` or ``.stl`` file, keeping its vertex and face order.

    ``backend="trimesh"`` returns a ``trimesh.Trimesh`` (a ``trimesh.PointCloud`` for a file without
    faces; a multi-part file is merged); ``backend="open3d"`` returns an ``open3d.geometry.TriangleMesh``.
    ``.off`` files are read with :func:`pointcanon.datasets.modelnet.load_off`, which also reads ModelNet's
    broken ``OFF8 6 0`` headers. Open3D reads those as an *empty* mesh with only a warning: an empty
    Open3D result is detected and the file is read with trimesh / ``load_off`` instead.
    Raises ``FileNotFoundError`` or ``ValueError`` naming the file.
    """
    import trimesh

    from .datasets.modelnet import load_off

    if backend not in ("trimesh", "open3d"):
        raise ValueError(f"backend must be 'trimesh' or 'open3d', got {backend!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {path} does not exist")
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
        return load_off(path)
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


def canonicalize_files(inputs: Iterable, out_dir, model=None, *, num_points: int = DEFAULT_NUM_POINTS,
                       seed: int = 0, sampling: str = "surface", render: bool = False,
                       progress: bool = True) -> dict:
    """Canonicalize mesh files (``.off .obj .ply .stl``; folders are searched recursively) into ``out_dir``.

    Each output keeps its input's format and relative path (a file given directly goes to
    ``out_dir/<name>``, a file found in a folder to ``out_dir/<path inside the folder>``) and is written
    atomically. ``out_dir/transforms.json`` maps every input to its transform, inverse and flags, and
    lists the files that failed under ``"errors"`` (a bad file is reported on stderr and skipped).
    With ``render``, ``out_dir/<relative path>.png`` shows each shape before and after.
    Returns the JSON report.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir).expanduser()
    canon = _float64_model(model)  # load once; the per-file calls reuse it
    model_desc = ("default: " + str(DEFAULT_WEIGHTS)) if model is None else \
        (str(model) if isinstance(model, (str, os.PathLike)) else f"{type(model).__name__} object")
    files, errors = _collect(inputs, out_dir)
    if not files and not errors:
        raise ValueError("no input files given")
    report: dict[str, Any] = {
        "format": TRANSFORMS_FORMAT, "version": 1, "model": model_desc,
        "model_info": json.loads(json.dumps(getattr(canon, "info", {}), default=str)),
        "sampling": sampling, "num_points": num_points, "seed": seed,
        "convention": "canonical = transform @ [x, y, z, 1] (x_c = x @ R.T + t); inverse maps canonical back",
        "files": {}, "errors": dict(errors)}
    for src, msg in errors.items():
        print(f"error: {src}: {msg}", file=sys.stderr)
    bar = tqdm(files, desc="canonicalize", unit="file", disable=not progress, file=sys.stderr)
    for src, rel in bar:
        try:
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
            report["files"][str(src)] = entry
        except Exception as e:  # a bad file of any kind is reported and the batch goes on
            report["errors"][str(src)] = f"{type(e).__name__}: {e}"
            bar.write(f"error: {src}: {type(e).__name__}: {e}", file=sys.stderr)
    write_json(out_dir / "transforms.json", report)
    return report

