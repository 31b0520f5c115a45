"""Procedurally generated upright shapes: the embedded default dataset of the demo (no download).

Eight classes of furniture- and object-like shapes built from sampled primitives (boxes, cylinders,
cones, ellipsoids, torus arcs), each with random proportions per sample. All are **z-up** and in a
fixed "front" orientation, like aligned ModelNet, so an ordinary network trained on them upright
learns their orientation and loses accuracy under rotations.

Design rules (so that a canonicalizer can work on them):

* no class is a rotation of another (different parts, not re-posed copies);
* no shape has a rotational symmetry: every class has at most one mirror plane (chair, mug, car,
  airplane, L-bracket, lamp) or none (desk, cone-on-base), so an equivariant frame is well defined;
  a single mirror plane does not make a proper (SE(3)) frame ambiguous.

Generation is vectorised with numpy and deterministic: samples of class ``c`` in split ``s`` come from
``numpy.random.SeedSequence([seed, s, c])`` (train and test use different streams).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._common import InMemoryClouds, check_num_points, check_split

__all__ = ["SyntheticShapes", "SYNTHETIC_CLASSES", "generate_shapes"]

BOX, CYLINDER, CONE, ELLIPSOID, TORUS = range(5)
# caps of cylinders / cones (dims[..., 2]): 0 none, 1 bottom (cone: base), 2 both


def _rot_x(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


class _Parts:
    """Primitives of ``n`` samples: type, centre ``(n, 3)``, rotation ``(n, 3, 3)`` (local -> world),
    dims ``(n, 4)``."""

    def __init__(self, n: int):
        self.n = n
        self.types, self.centers, self.rots, self.dims = [], [], [], []

    def add(self, kind: int, center, dims, rot=None) -> None:
        n = self.n
        self.types.append(kind)
        self.centers.append(np.broadcast_to(np.stack([np.broadcast_to(c, (n,)) for c in center], -1), (n, 3)))
        d = [np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for v in dims]
        d += [np.zeros(n)] * (4 - len(d))
        self.dims.append(np.stack(d, -1))
        self.rots.append(np.broadcast_to(np.eye(3), (n, 3, 3)) if rot is None else np.broadcast_to(rot, (n, 3, 3)))

    def arrays(self):
        return (np.asarray(self.types), np.stack(self.centers, 1), np.stack(self.rots, 1), np.stack(self.dims, 1))


# ---------------------------------------------------------------------------------------------
# the classes: each returns the parts of n samples with random proportions (z up, floor at z = 0)

def _chair(rng, n):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    w, d, hs, ts = u(0.8, 1.1), u(0.8, 1.1), u(0.8, 1.1), u(0.06, 0.12)
    rl, inset, hb, tb, tilt = u(0.03, 0.06), u(0.03, 0.08), u(0.8, 1.3), u(0.06, 0.1), u(-0.25, 0.0)
    p = _Parts(n)
    p.add(BOX, (0, 0, hs + ts / 2), (w, d, ts))
    for sx in (-1, 1):
        for sy in (-1, 1):
            p.add(CYLINDER, (sx * (w / 2 - inset), sy * (d / 2 - inset), hs / 2), (rl, hs, 2))
    # backrest on the -y edge, tilted backwards about its bottom edge
    r = _rot_x(tilt)
    off = r @ np.array([0.0, 0.0, 1.0])  # (n, 3)
    base = np.stack([np.zeros(n), -d / 2 + tb / 2, hs + ts], -1)
    c = base + off * (hb / 2)[:, None]
    p.add(BOX, (c[:, 0], c[:, 1], c[:, 2]), (w, tb, hb), r)
    return p


def _desk(rng, n):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    length, width, h, tt = u(1.5, 2.1), u(0.8, 1.0), u(0.7, 0.9), u(0.05, 0.09)
    a, inset = u(0.05, 0.09), u(0.04, 0.1)
    p = _Parts(n)
    p.add(BOX, (0, 0, h + tt / 2), (length, width, tt))
    for sx in (-1, 1):
        for sy in (-1, 1):
            p.add(BOX, (sx * (length / 2 - inset), sy * (width / 2 - inset), h / 2), (a, a, h))
    # a drawer block under the +x end, flush with the front (-y) side: breaks every symmetry
    dl, dw, dh = length * u(0.25, 0.35), width * u(0.55, 0.75), h * u(0.3, 0.5)
    p.add(BOX, (length / 2 - inset - a / 2 - dl / 2, -width / 2 + dw / 2, h - dh / 2), (dl, dw, dh))
    return p


def _lamp(rng, n):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    rb, hb, rp, hp = u(0.25, 0.4), u(0.04, 0.08), u(0.025, 0.04), u(1.2, 1.7)
    la, el, rs, hs = u(0.5, 0.8), u(-0.3, 0.4), u(0.18, 0.28), u(0.25, 0.4)
    p = _Parts(n)
    p.add(CYLINDER, (0, 0, hb / 2), (rb, hb, 2))
    p.add(CYLINDER, (0, 0, hb + hp / 2), (rp, hp, 2))
    # arm from the top of the pole towards +x, elevation el above the horizontal
    direction = np.stack([np.cos(el), np.zeros(n), np.sin(el)], -1)
    top = np.stack([np.zeros(n), np.zeros(n), hb + hp], -1)
    mid, end = top + direction * (la / 2)[:, None], top + direction * la[:, None]
    p.add(CYLINDER, (mid[:, 0], mid[:, 1], mid[:, 2]), (0.6 * rp, la, 0), _rot_y(np.pi / 2 - el))
    # an open shade hanging from the end of the arm (apex up)
    p.add(CONE, (end[:, 0], end[:, 1], end[:, 2] - hs / 2), (rs, hs, 0))
    return p


def _mug(rng, n):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    r, h = u(0.35, 0.5), u(0.8, 1.2)
    zc, big, tube, arc = h * u(0.45, 0.55), h * u(0.22, 0.3), u(0.05, 0.08), u(np.radians(200), np.radians(240))
    p = _Parts(n)
    p.add(CYLINDER, (0, 0, h / 2), (r, h, 1))  # open at the top
    # handle: a torus arc in the xz plane on the +x side, its ends on the wall
    p.add(TORUS, (r, 0, zc), (big, tube, arc), _rot_x(np.pi / 2))
    return p


def _l_bracket(rng, n):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    a, w, t = u(1.3, 1.8), u(0.3, 0.45), u(0.12, 0.2)
    t2, b = u(0.12, 0.2), u(0.6, 0.95)
    p = _Parts(n)
    p.add(BOX, (0, 0, t / 2), (a, w, t))  # the long horizontal arm along x
    p.add(BOX, (a / 2 - t2 / 2, 0, t + b / 2), (t2, w, b))  # the shorter upright arm at +x
    return p


def _cone_on_base(rng, n):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    la, lb, lt = u(1.0, 1.4), u(0.6, 0.85), u(0.12, 0.22)
    r, h = u(0.22, 0.32), u(0.7, 1.1)
    p = _Parts(n)
    p.add(BOX, (0, 0, lt / 2), (la, lb, lt))
    p.add(CONE, (la * u(0.15, 0.25), lb * u(0.1, 0.2), lt + h / 2), (r, h, 0))  # off-centre, towards +x +y
    return p


def _airplane(rng, n):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    r, length, hn = u(0.1, 0.16), u(1.8, 2.4), u(0.2, 0.35)
    chord, span, th = u(0.3, 0.45), u(1.4, 2.0), u(0.03, 0.05)
    fin_h = u(0.3, 0.45)
    along_x = _rot_y(np.full(n, np.pi / 2))
    p = _Parts(n)
    p.add(CYLINDER, (0, 0, 0), (r, length, 1), along_x)  # fuselage; the capped end is the tail (-x)
    p.add(CONE, (length / 2 + hn / 2, 0, 0), (r, hn, 0), along_x)  # nose towards +x
    p.add(BOX, (length * u(0.0, 0.12), 0, 0), (chord, span, th))  # wings
    p.add(BOX, (-length / 2 + 0.3 * chord, 0, 0), (0.6 * chord, span * u(0.3, 0.4), th))  # tailplane
    p.add(BOX, (-length / 2 + 0.35 * chord, 0, r + fin_h / 2), (0.7 * chord, th, fin_h))  # fin, up
    return p


def _car(rng, n):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    rw, ww = u(0.16, 0.22), u(0.1, 0.14)
    length, width, hgt = u(1.8, 2.2), u(0.8, 1.0), u(0.3, 0.45)
    cl, ch, cx = length * u(0.4, 0.55), u(0.28, 0.4), -length * u(0.05, 0.15)
    zb = 0.8 * rw + hgt / 2
    p = _Parts(n)
    p.add(BOX, (0, 0, zb), (length, width, hgt))
    p.add(BOX, (cx, 0, zb + hgt / 2 + ch / 2), (cl, 0.85 * width, ch))  # cabin towards the back (-x)
    axle_y = _rot_x(np.full(n, np.pi / 2))
    for x in (length * u(0.28, 0.36), -length * u(0.28, 0.36)):
        for sy in (-1, 1):
            p.add(CYLINDER, (x, sy * width / 2, rw), (rw, ww, 2), axle_y)
    return p


_GENERATORS = {"chair": _chair, "desk": _desk, "lamp": _lamp, "mug": _mug, "l_bracket": _l_bracket,
               "cone_on_base": _cone_on_base, "airplane": _airplane, "car": _car}
SYNTHETIC_CLASSES: tuple[str, ...] = tuple(_GENERATORS)


# ---------------------------------------------------------------------------------------------
# area-weighted sampling of the primitives, vectorised over samples and points

def _areas(types: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Surface areas ``(n, K)`` of the parts."""
    a, b, c = dims[..., 0], dims[..., 1], dims[..., 2]
    out = np.zeros(dims.shape[:-1])
    t = np.broadcast_to(types, out.shape)
    box = 2 * (a * b + b * c + c * a)
    cyl = 2 * np.pi * a * b + np.pi * a * a * c  # c = number of caps
    cone = np.pi * a * np.sqrt(a * a + b * b) + np.pi * a * a * np.minimum(c, 1)
    p = 1.6075  # Knud Thomsen's approximation of an ellipsoid's area
    ell = 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    tor = c * a * 2 * np.pi * b  # arc * R * 2 pi r
    for kind, area in ((BOX, box), (CYLINDER, cyl), (CONE, cone), (ELLIPSOID, ell), (TORUS, tor)):
        out = np.where(t == kind, area, out)
    return out


def _local_points(kind: int, d: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points ``(M, 3)`` on a primitive in its own frame, from uniforms ``u`` ``(M, 5)``."""
    a, b, c = d[:, 0], d[:, 1], d[:, 2]
    u0, u1, u2, u3, u4 = u.T
    if kind == BOX:
        size = d[:, :3]
        face = np.stack([b * c, a * c, a * b], -1)
        cum = np.cumsum(face, -1)
        pick = u0 * cum[:, -1]
        axis = (pick > cum[:, 0]).astype(int) + (pick > cum[:, 1]).astype(int)
        pts = (np.stack([u1, u2, u3], -1) - 0.5) * size
        sign = np.where(u4 < 0.5, -1.0, 1.0)
        rows = np.arange(len(d))
        pts[rows, axis] = sign * size[rows, axis] / 2
        return pts
    if kind in (CYLINDER, CONE):
        theta = 2 * np.pi * u2
        if kind == CYLINDER:
            lateral = 2 * np.pi * a * b
            caps = np.pi * a * a * c
            side = u0 * (lateral + caps) < lateral
            rho = np.where(side, a, a * np.sqrt(u1))
            top = (c >= 2) & (u4 < 0.5)  # with two caps, half of the cap points go on top
            z = np.where(side, (u3 - 0.5) * b, np.where(top, b / 2, -b / 2))
        else:
            lateral = np.pi * a * np.sqrt(a * a + b * b)
            base = np.pi * a * a * np.minimum(c, 1)
            side = u0 * (lateral + base) < lateral
            s = np.sqrt(u1)  # distance from the apex, as a fraction of the slant
            rho = np.where(side, a * s, a * np.sqrt(u1))
            z = np.where(side, b / 2 - b * s, -b / 2)
        return np.stack([rho * np.cos(theta), rho * np.sin(theta), z], -1)
    if kind == ELLIPSOID:
        z = 2 * u1 - 1
        r = np.sqrt(np.clip(1 - z * z, 0, None))
        phi = 2 * np.pi * u2
        return np.stack([a * r * np.cos(phi), b * r * np.sin(phi), c * z], -1)
    if kind == TORUS:  # ring of radius a around z, tube radius b, arc of c radians centred on +x
        phi = (u1 - 0.5) * c
        psi = 2 * np.pi * u2
        ring = a + b * np.cos(psi)
        return np.stack([ring * np.cos(phi), ring * np.sin(phi), b * np.sin(psi)], -1)
    raise ValueError(f"unknown primitive {kind}")


def _sample(parts: _Parts, num_points: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    """``(n, num_points, 3)`` points, area-weighted over the parts, centred, unit sphere."""
    types, centers, rots, dims = parts.arrays()  # (K,), (n, K, 3), (n, K, 3, 3), (n, K, 4)
    n, k = centers.shape[:2]
    areas = _areas(types, dims)
    cdf = np.cumsum(areas, -1)
    cdf = cdf / cdf[:, -1:]
    idx = (rng.random((n, num_points, 1)) > cdf[:, None, :-1]).sum(-1)  # (n, N) part of each point
    u = rng.random((n, num_points, 5))
    kind = types[idx]
    d = np.take_along_axis(dims, idx[..., None], 1)  # (n, N, 4)
    local = np.zeros((n, num_points, 3))
    for t in np.unique(types):
        m = kind == t
        local[m] = _local_points(int(t), d[m], u[m])
    rot = np.take_along_axis(rots, idx[..., None, None], 1)  # (n, N, 3, 3)
    ctr = np.take_along_axis(centers, idx[..., None], 1)  # (n, N, 3)
    x = np.einsum("bnij,bnj->bni", rot, local) + ctr
    x = x - x.mean(1, keepdims=True)
    x = x / np.sqrt((x * x).sum(-1)).max(1)[:, None, None]
    if noise > 0:
        x = x + rng.normal(0.0, noise, x.shape)
    return x.astype(np.float32)


def generate_shapes(class_index: int, n: int, num_points: int, seed: int, split: str = "train", *,
                    noise: float = 0.005) -> np.ndarray:
    """``n`` samples ``(n, num_points, 3)`` float32 of class ``SYNTHETIC_CLASSES[class_index]``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, ("train", "test").index(split), class_index]))
    parts = _GENERATORS[SYNTHETIC_CLASSES[class_index]](rng, n)
    return _sample(parts, num_points, rng, noise)


class SyntheticShapes(InMemoryClouds):
    """Procedural upright shapes (see the module docstring), generated in memory at construction.

    Args:
        split: ``'train'`` or ``'test'`` (different random streams for the same ``seed``).
        num_points: points per shape.
        num_samples: shapes in total, as balanced over the classes as possible (class of sample ``i``
            is ``i % num_classes``). Default: 200 per class for ``'train'``, 50 per class for ``'test'``.
        seed: a non-negative int; the data is a deterministic function of
            ``(split, num_points, num_samples, seed, num_classes, noise)``.
        transform: optional callable on the points ``(N, 3)`` of every item.
        num_classes: the first ``num_classes`` of :data:`SYNTHETIC_CLASSES` (2 to 8).
        noise: std of the Gaussian noise added to every coordinate (after unit-sphere scaling).

    Shapes:
        item: ``(points (N, 3) float32, label () int64)``; ``points`` attribute ``(n, N, 3)``,
        ``labels`` ``(n,)``. Points are centred, within the unit sphere (up to ``noise``), z-up.
    """

    task = "cls"
    root = None
    DEFAULT_PER_CLASS = {"train": 200, "test": 50}

    def __init__(self, split: str = "train", num_points: int = 1024, num_samples: int | None = None, seed: int = 0,
                 transform=None, num_classes: int = len(SYNTHETIC_CLASSES), noise: float = 0.005):
        self.split = check_split(split)
        self.num_points = check_num_points(num_points)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
            raise ValueError(f"num_classes must be an int from 2 to {len(SYNTHETIC_CLASSES)}, got {num_classes!r}")
        if num_samples is None:
            num_samples = self.DEFAULT_PER_CLASS[split] * num_classes
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not (noise >= 0 and math.isfinite(noise)):
            raise ValueError(f"noise must be a non-negative number, got {noise!r}")
        self.seed, self.noise, self.transform = seed, float(noise), transform
        self.classes = list(SYNTHETIC_CLASSES[:num_classes])
        labels = np.arange(num_samples) % num_classes
        points = np.empty((num_samples, self.num_points, 3), dtype=np.float32)
        for c in range(num_classes):
            where = np.flatnonzero(labels == c)
            if len(where):
                points[where] = generate_shapes(c, len(where), self.num_points, seed, split, noise=self.noise)
        self.points: Tensor = torch.from_numpy(points)  # (n, N, 3)
        self.labels: Tensor = torch.from_numpy(labels.astype(np.int64))  # (n,)

    def __repr__(self) -> str:
        t = "" if self.transform is None else f", transform={self.transform!r}"
        return (f"SyntheticShapes(split={self.split!r}, shapes={len(self)}, num_points={self.num_points}, "
                f"classes={self.num_classes}, seed={self.seed}{t})")
