"""Canonical frames of meshes, point clouds and arrays: estimate, apply and invert rigid transforms
(see :mod:`pointcanon.mesh` for the conventions and why the result is exact)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..core.validation import centre, cloud_radius
from ..models import _float64_model

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


class FragileFrameWarning(UserWarning):
    """The shape's up axis was chosen by a small margin over another: another sampling of its surface (another
    density, another seed) may turn it another way up (:attr:`CanonicalFrame.fragile`)."""


def _open3d():
    try:
        import open3d
    except ImportError as e:
        raise ImportError(f"Open3D is needed for this (it could not be imported: {e}); {OPEN3D_INSTALL_HINT}") from e
    return open3d


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
    # areas of the mesh scaled by a power of two (exact): no overflow for huge coordinates, same weights
    top = float(np.abs(v[f]).max()) if np.isfinite(v[f]).all() else np.inf
    unit = 2.0 ** -np.ceil(np.log2(top)) if 0 < top < np.inf else 1.0
    areas = np.linalg.norm(np.cross((b - a) * unit, (c - a) * unit), axis=1)
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
        fragile: the up axis was chosen by less than the canonicalizer's ``fragile_margin`` over another
            (see :class:`~pointcanon.Canonicalization`); always False for a canonicalizer without up hypotheses.
    """

    transform: np.ndarray
    degenerate: bool
    conditioning: float
    sampling: str
    num_samples: int
    fragile: bool = False

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
                "fragile": self.fragile, "sampling": self.sampling, "num_samples": self.num_samples}


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
    centroid, centred = centre(p.unsqueeze(0))  # overflow-free for huge coordinates (e.g. 1e300)
    centroid, centred = centroid[0], centred[0]
    scale = cloud_radius(centred.unsqueeze(0))[0] if bool(centred.abs().amax() > 0) else centred.new_zeros(())
    if not scale > 0:  # all points coincide: no orientation exists
        frame, origin, degenerate, conditioning = torch.eye(3, dtype=p.dtype, device=device), centroid, True, 0.0
        fragile = False
    else:
        with torch.no_grad():
            out = canon((centred / scale).unsqueeze(0))  # the network sees the unit-sphere cloud (1, M, 3)
        frame = out.frame[0]
        origin = centroid if out.origin is None else centroid + scale * out.origin[0]
        degenerate = bool(out.degenerate[0]) if out.degenerate is not None else False
        conditioning = float(out.conditioning[0]) if out.conditioning is not None else 1.0
        fragile = bool(out.fragile[0]) if out.fragile is not None else False
    r = frame.cpu().numpy()
    det = float(np.linalg.det(r))
    if not abs(det - 1) < 1e-6:
        raise ValueError(f"the canonicalizer returned a frame with det = {det:.6f}, not a proper rotation; meshes "
                         "need group='SE3'")
    t = np.eye(4)
    t[:3, :3] = r.T
    t[:3, 3] = -(r.T @ origin.cpu().numpy())
    return CanonicalFrame(transform=t, degenerate=degenerate, conditioning=conditioning, sampling=seen,
                          num_samples=len(points), fragile=fragile)


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
    :class:`DegenerateFrameWarning` is issued; a shape whose up axis was chosen by a small margin gets a
    :class:`FragileFrameWarning` (:func:`estimate_transform` reports both as flags).
    """
    frame = estimate_transform(geometry, model, num_points=num_points, seed=seed, sampling=sampling)
    if frame.degenerate:
        warnings.warn("the shape is (nearly) symmetric, so its canonical rotation is not unique: it was only "
                      f"centred (conditioning {frame.conditioning:.2e})", DegenerateFrameWarning, stacklevel=2)
    elif frame.fragile:
        warnings.warn("the shape's up axis was chosen by a small margin over another: another sampling of its "
                      "surface (num_points, seed) may turn it another way up", FragileFrameWarning, stacklevel=2)
    out = apply_transform(geometry, frame.transform)
    return (out, frame.transform) if return_transform else out
