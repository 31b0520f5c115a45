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
from ..models import DEFAULT_WEIGHTS, load_canonicalizer, load_default_canonicalizer, save_canonicalizer
from .files import MESH_SUFFIXES, canonicalize_files, load_mesh, render_thumbnail, save_mesh
from .geometry import (CanonicalFrame, DegenerateFrameWarning, FragileFrameWarning, apply_transform, canonicalize,
                       estimate_transform, invert_transform, sample_surface)

__all__ = [
    "canonicalize", "estimate_transform", "apply_transform", "invert_transform", "sample_surface",
    "CanonicalFrame", "DegenerateFrameWarning", "FragileFrameWarning", "save_canonicalizer", "load_canonicalizer",
    "load_default_canonicalizer", "load_mesh", "save_mesh", "render_thumbnail", "canonicalize_files",
    "DEFAULT_WEIGHTS", "MESH_SUFFIXES",
]
