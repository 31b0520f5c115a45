"""The E(3) vector-neuron canonicalizer (Kaba et al., "Equivariance with Learned Canonicalization
Functions", ICML 2023, https://arxiv.org/abs/2211.06489)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..core.frames import TINY, frame_from_vectors, parse_axes
from ..core.groups import GroupName
from ..core.result import Canonicalization
from ..core.validation import check_dtype, check_points, check_range, cloud_radius, coarse_rounding, centre
from .canonicalizer import Canonicalizer
from .knn import farthest_point_sample, fixed_index_sample, gather_neighbours, knn
from .ragged import check_ragged, masked_knn, ragged_centre, ragged_subset, segment_amax, segment_mean
from .vn import VNCross, VNLinear, VNLinearLeakyReLU, vn_mean_pool

CANONICALIZER_GROUPS = ("SE3", "E3")


class VNCanonicalizer(Canonicalizer):
    """Predicts a frame and an origin per point cloud with a small vector-neuron network.

    ``canonical = (x - origin) @ frame`` is exactly invariant to rigid motions ``x @ Q.T + s``:
    for ``group="SE3"`` Q is any rotation and the frame is a rotation (det = +1; a mirrored input gives
    a mirrored canonical cloud, so chirality is kept); for ``group="E3"`` Q may also be a reflection.

    Args:
        group: ``"SE3"`` (two vectors, Gram–Schmidt, cross product) or ``"E3"`` (three vectors).
        hidden: VN channels of the three layers (local, point, global).
        k: neighbours whose mean gives each point's local offset vector (a surface-normal-like cue).
        num_points: points the network sees (the origin always uses all of them); ``None`` for all.
        subsample: ``"index"`` (a fixed pseudo-random index set: exact, order dependent) or ``"fps"``
            (farthest-point sampling from point 0: better coverage, costs a loop of ``num_points``).
        origin: ``"centroid"`` or ``"learned"`` (centroid plus a predicted equivariant offset).
        negative_slope: of the VN leaky ReLUs.
        degenerate_tol: an input is flagged degenerate (``conditioning`` 0) when a Gram–Schmidt residual
            is below it (see :func:`pointcanon.core.frames.frame_from_vectors`) or when the pooled
            features cancel below it (a symmetric cloud: see :meth:`predict_vectors`). Also flagged: a cloud
            whose own rounding, ``eps(dtype) * max|x|``, exceeds
            :data:`~pointcanon.core.validation.ROUNDING_TOL` (1e-3) of its radius (float32 coordinates
            about 1e4 radii from the origin: the input has already lost the shape's detail).
        covariance: also feed ``C p`` and ``C o`` per point (``C`` the trace-normalised covariance of the
            cloud, ``C(x Q^T) = Q C Q^T``): equivariant access to the principal axes.
        pseudovectors: (SE3 only; default on) let the output layer also use cross products of pooled
            features (:class:`~pointcanon.nn.vn.VNCross`), which are rotation- but not
            reflection-equivariant. Plain VN layers are O(3)-equivariant, so for a mirror-symmetric
            shape their vectors are stuck in the mirror plane and a prior could not reach a frame with
            an axis normal to it.
        axes: the frame columns of the two predicted axes, up axis first (see
            :func:`~pointcanon.core.frames.frame_from_vectors`). They must span the data's usual mirror
            plane, or a prior cannot make the frame the identity: ``"zy"`` (default) for z-up ModelNet40
            and the synthetic shapes, ``"zx"`` for ShapeNet mapped to z-up (the ShapeNetPart datasets record
            it as ``frame_axes``; nothing applies it automatically, pass ``axes=ds.frame_axes``). With
            the pseudovector head (SE3 default) any pair works; the choice matters most for ``"E3"``.

    Training: :meth:`prior_loss` (inherited), a prior on the frame
    (:func:`~pointcanon.nn.canonicalizer.frame_prior_loss`).

    Coordinates are centred in float64 without overflow; every output is finite for coordinates up to a
    quarter of the dtype's largest value (:func:`~pointcanon.core.validation.coordinate_limit`), and larger
    ones raise ``ValueError``.

    Shapes:
        input ``(B, N, 3)`` float; output :class:`Canonicalization` with frame ``(B, 3, 3)``, origin
        ``(B, 3)``, canonical ``(B, N, 3)``, degenerate / conditioning ``(B,)``.
    """

    def __init__(self, group: str = "SE3", *, hidden: tuple[int, int, int] = (16, 32, 64), k: int = 10,
                 num_points: int | None = 256, subsample: str = "index", origin: str = "centroid",
                 negative_slope: float = 0.2, degenerate_tol: float = 1e-3,
                 covariance: bool = True, pseudovectors: bool | None = None, axes: str = "zy"):
        super().__init__()
        group = GroupName.parse(group).value
        if group not in CANONICALIZER_GROUPS:
            raise ValueError(f"group must be one of {CANONICALIZER_GROUPS}, got {group!r}")
        if subsample not in ("index", "fps"):
            raise ValueError(f"subsample must be 'index' or 'fps', got {subsample!r}")
        if origin not in ("centroid", "learned"):
            raise ValueError(f"origin must be 'centroid' or 'learned', got {origin!r}")
        if num_points is not None and num_points < 1:
            raise ValueError(f"num_points must be positive or None, got {num_points}")
        parse_axes(axes)
        if pseudovectors is None:
            pseudovectors = group == "SE3"
        if pseudovectors and group != "SE3":
            raise ValueError("pseudovectors (cross products) are only rotation-equivariant: use them with group='SE3'")
        if k < 1 or len(hidden) != 3 or min(hidden) < 1:
            raise ValueError(f"need k >= 1 and three positive hidden sizes, got k={k}, hidden={hidden}")
        self.hparams = dict(group=group, hidden=tuple(hidden), k=k, num_points=num_points, subsample=subsample,
                            origin=origin, negative_slope=negative_slope, degenerate_tol=degenerate_tol,
                            covariance=bool(covariance), pseudovectors=bool(pseudovectors), axes=axes)
        self.group, self.k, self.num_points = group, k, num_points
        self.subsample, self.origin_mode, self.degenerate_tol, self.axes = subsample, origin, degenerate_tol, axes
        c1, c2, c3 = hidden
        self.covariance = bool(covariance)
        self.local = VNLinearLeakyReLU(4 if covariance else 2, c1, negative_slope=negative_slope)
        self.point = VNLinearLeakyReLU(c1, c2, negative_slope=negative_slope)
        self.fuse = VNLinearLeakyReLU(2 * c2, c3, negative_slope=negative_slope)
        n_out = 2 if group == "SE3" else 3
        self.cross = VNCross(c3, max(c3 // 4, 1)) if pseudovectors else None
        self.out = VNLinear(c3 + (self.cross.a.weight.shape[0] if pseudovectors else 0), n_out)
        self.offset = VNLinear(c3, 1) if origin == "learned" else None

    def _subsample(self, centred: Tensor) -> Tensor:
        n = centred.shape[1]
        if self.num_points is None or self.num_points >= n:
            return centred
        if self.subsample == "fps":
            idx = farthest_point_sample(centred, self.num_points)
            return torch.gather(centred, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
        return centred[:, fixed_index_sample(n, self.num_points, device=centred.device)]

    def predict_vectors(self, centred: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Equivariant vectors ``(B, K, 3)`` (K = 2 or 3), the pooled feature ``(B, C, 3)`` of a centred
        cloud ``(B, N, 3)`` and its *signal* ``(B,)`` in [0, 1]: the pooled feature's size relative to the
        mean size of the per-point features it averages. A cloud symmetric under an orthogonal map
        (``p -> -p``; a box's vertices) makes the per-point features cancel, so its vectors are rounding
        noise (signal ~ machine epsilon, against >= 3e-2 for real shapes) whatever their ratios say."""
        pts = self._subsample(centred)  # (B, M, 3)
        offset = gather_neighbours(pts, knn(pts, self.k)).mean(2) - pts  # (B, M, 3)
        f = self.local(self._input_features(pts, offset))  # (B, C1, 3, M)
        f = self.point(f)  # (B, C2, 3, M)
        g = vn_mean_pool(f, -1).unsqueeze(-1).expand_as(f)
        f = self.fuse(torch.cat([f, g], 1))  # (B, C3, 3, M)
        pooled = vn_mean_pool(f, -1)  # (B, C3, 3)
        return self._head(pooled, f.norm(dim=(1, 2)).mean(-1))

    def _input_features(self, pts: Tensor, offset: Tensor) -> Tensor:
        """VN input channels ``(B, 2 or 4, 3, M)``: the points, their local offsets and (``covariance``) both
        times the trace-normalised covariance ``C`` of the points (``C(x Q^T) = Q C Q^T``)."""
        feats = [pts, offset]
        if self.covariance:
            cov = pts.transpose(1, 2) @ pts  # (B, 3, 3)
            cov = cov / cov.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-30)[:, None, None]
            feats += [pts @ cov, offset @ cov]
        return torch.stack(feats, 1).transpose(2, 3)

    def _head(self, pooled: Tensor, spread: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Output vectors, ``pooled`` and the signal (see :meth:`predict_vectors`) from the pooled feature
        ``(B, C3, 3)`` and the mean per-point feature size ``spread`` ``(B,)``."""
        with torch.no_grad():
            signal = torch.where(spread > 0, pooled.flatten(1).norm(dim=-1) / spread.clamp_min(TINY), 0.0).clamp(0, 1)
        head = pooled if self.cross is None else torch.cat([pooled, self.cross(pooled)], 1)
        return self.out(head), pooled, signal

    def _predict_ragged(self, centred: Tensor, batch: Tensor, counts: Tensor, offsets: Tensor):
        """:meth:`predict_vectors` for a ragged batch ``(P, 3)``: the same subset, neighbours and layers per
        cloud (the per-point layers run on the stacked real points), pooled per cloud."""
        if self.subsample == "fps" and self.num_points is not None and self.num_points < int(counts.max()):
            raise ValueError("ragged batches need subsample='index' (farthest-point sampling runs per cloud)")
        b = counts.shape[0]
        idx, mask = ragged_subset(counts, offsets, self.num_points)
        pts = centred[idx] * mask.unsqueeze(-1).to(centred.dtype)  # (B, M, 3), padding zeroed
        nbr, real = masked_knn(pts, mask, self.k)
        w = real.to(pts.dtype).unsqueeze(-1)
        offset = (gather_neighbours(pts, nbr) * w).sum(2) / w.sum(2).clamp_min(1) - pts
        f = self._input_features(pts, offset)  # (B, F, 3, M); padding rows are zero
        cloud = torch.arange(b, device=centred.device)[:, None].expand_as(mask)[mask]  # (P',)
        h = self.point(self.local(f.permute(1, 2, 0, 3)[:, :, mask].unsqueeze(0)))  # (1, C2, 3, P')
        g = segment_mean(h[0].permute(2, 0, 1), cloud, b)  # (B, C2, 3)
        h = self.fuse(torch.cat([h, g[cloud].permute(1, 2, 0).unsqueeze(0)], 1))  # (1, C3, 3, P')
        pooled = segment_mean(h[0].permute(2, 0, 1), cloud, b)  # (B, C3, 3)
        return self._head(pooled, segment_mean(h[0].norm(dim=(0, 1)), cloud, b))

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Canonicalization:
        """``x`` ``(B, N, 3)``, or a ragged batch: ``x`` ``(P, 3)`` with ``batch`` ``(P,)`` (PyTorch
        Geometric's convention; ``canonical`` is then ``(P, 3)``, each cloud as in a dense call alone)."""
        if batch is not None:
            if hasattr(self, "fixed"):
                raise ValueError(f"{type(self).__name__} does not take ragged batches; pad them to (B, N, 3)")
            counts, offsets = check_ragged(x, batch)
            check_dtype(self, x)
            check_range(x)
            batch = batch.long()
            centroid, centred, scale = ragged_centre(x, batch, counts)
            vectors, pooled, signal = self._predict_ragged(centred / scale[batch, None], batch, counts, offsets)
            return self._finish(x, centroid, scale, vectors, pooled, signal, batch)
        check_points(x)
        check_dtype(self, x)
        check_range(x)
        centroid, centred = centre(x)  # (B, 3), (B, N, 3): in float64, without overflow
        # the network sees the cloud scaled to unit radius (invariant): squares inside the layers stay
        # finite for coordinates up to the dtype's limit, and so do the gradients
        scale = cloud_radius(centred)
        vectors, pooled, signal = self.predict_vectors(centred / scale[:, None, None])
        return self._finish(x, centroid, scale, vectors, pooled, signal)

    def _finish(self, x, centroid, scale, vectors, pooled, signal, batch=None) -> Canonicalization:
        frame, degenerate, conditioning = frame_from_vectors(vectors, proper=self.group == "SE3",
                                                             tol=self.degenerate_tol, axes=self.axes)
        cancelled = signal < self.degenerate_tol  # symmetric input: the vectors are rounding noise
        with torch.no_grad():
            top = x.detach().abs().amax(-1)
            top = top.amax(-1) if batch is None else segment_amax(top, batch, scale.shape[0])
        degenerate = degenerate | cancelled | coarse_rounding(top, scale, x.dtype)  # far off the origin
        conditioning = torch.where(degenerate, 0.0, torch.minimum(conditioning, signal.to(conditioning.dtype)))
        origin = centroid if self.offset is None else centroid + self.offset(pooled).squeeze(1) * scale[:, None]
        if batch is None:
            canonical = (x - origin.unsqueeze(1)) @ frame
        else:
            canonical = ((x - origin[batch]).unsqueeze(1) @ frame[batch]).squeeze(1)
        return Canonicalization(frame=frame, canonical=canonical, origin=origin,
                                degenerate=degenerate, conditioning=conditioning, batch=batch)
