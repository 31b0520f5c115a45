"""Candidate-frame canonicalizer: principal-axis candidates with tilts, an invariant scorer, argmax.

Why: the up axis of a real shape is a *multimodal* target (up or down; which of several plausible axes). A network
regressing one equivariant vector averages those modes and, on ModelNet40, puts the up axis within 10 deg of the
truth for about 10 % of shapes. Scoring a discrete set of equivariant candidates and taking the best one does not
average modes (Kaba et al. 2023 train the argmax of invariant scores in the same spirit for discrete groups).

How (``x`` centred, ``(B, N, 3)``):

1. ``F0``: the principal axes of the covariance (eigenvalues ascending, third axis flipped so that ``det F0 = +1``),
   computed in float64 from *all* points and detached. Under ``x -> x @ Q.T`` it becomes ``Q @ F0 @ D`` with ``D`` a
   diagonal of signs: the axes are equivariant up to sign.
2. Candidates ``F0 @ P_k @ T_t`` for the 24 proper signed permutation matrices ``P_k`` (48 with reflections for
   ``group="E3"``) and a grid of tilts ``T_t = R_x(a) R_y(b)`` (default a, b in -40..40 deg, step 10: 81 tilts,
   1,944 candidates), so that an up axis that is *not* a principal axis (a chair's, tilted by its backrest) still
   has a candidate within about 7 deg. The *set* of candidates is exactly equivariant, because ``D P_k`` runs over
   the same group as ``P_k``.
3. Scores by frame averaging over the sign ambiguity (Puny et al., ICLR 2022): a plain PointNet ``f`` reads the
   cloud in each sign-flipped principal frame ``x @ F0 @ D_i`` (4 flips, 8 with reflections) and gives one logit per
   candidate *in that frame's coordinates*; the logit of candidate ``F0 P_k`` is the sum over ``i`` of
   ``f(x F0 D_i)`` at the candidate ``D_i^-1 P_k``. The logits are thus invariant functions on an equivariant set,
   and the argmax moves with the input. One pass per flip (not per candidate) classifies "which axis is up" with a
   shared softmax: 6x cheaper than scoring the 24 candidates one by one, for the same exactness.
4. Optional (``refine=True``; off by default, it did not help on ModelNet40): a refinement pass of the same point
   MLP on the chosen cloud ``x @ F0 @ P_k*`` (an invariant cloud) predicts two vectors ``u, v`` in its coordinates;
   ``M`` = Gram–Schmidt with ``u`` as the z column and ``v`` as the y column. The frame is ``F0 @ P_k* @ M``: still
   exactly equivariant.

The input is degenerate (flagged, conditioning 0) when two covariance eigenvalues nearly coincide (relative gap
below ``degenerate_tol``: the principal axes are not unique), the two best logits nearly tie (``margin_tol``), or
(with ``normal_k``) a seen point's normal is orthogonal to its position to rounding, so that its sign is undefined
(a flat shape whose plane holds the centroid), or the input's own rounding is a material part of the shape
(``eps(dtype) * max|x|`` above :data:`~pointcanon.core.validation.ROUNDING_TOL` = 1e-3 of the radius: float32
coordinates about 1e4 radii from the origin; centring in float64 cannot restore what the input's rounding lost); a
cloud with no extent (all points coincide) gets the identity frame. Coordinates beyond a quarter of the dtype's
largest value raise ``ValueError`` (the canonical cloud could overflow); below that every output is finite.
Otherwise ``conditioning`` is the relative eigengap: rounding errors of the input move the frame by about (relative
rounding error) / conditioning. The frame of a flagged input is still the computed one (finite, deterministic), not
a fallback, because its up axis is often still right (a bottle); it is not guaranteed to be equivariant. Gradients
w.r.t. the input treat the principal axes as constants.

Separately, ``fragile`` flags a choice of up axis that is exact but not firm: the two most likely up hypotheses
(:mod:`pointcanon.nn.hypotheses`) are within ``fragile_margin`` in log-probability, so another sampling of the same
surface (another density, another scanner) may put another axis up.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.frames import frame_from_vectors
from ..core.groups import GroupName
from ..core.priors import identity_prior, upright_prior
from ..core.result import Canonicalization
from ..core.validation import check_dtype, check_points, check_range, cloud_radius, coarse_rounding, centre
from .axes import principal_frames, signed_permutations, tilt_rotations, yaw_turns
from .canonicalizer import Canonicalizer
from .hypotheses import check_hypotheses, top_hypotheses, up_axis_of, up_margin, up_masses
from .knn import fixed_index_sample, gather_neighbours, knn, sign_undefined, surface_normals
from .pointmlp import head, point_mlp, pooled
from .ragged import check_ragged, masked_knn, ragged_centre, ragged_subset, segment_amax

CANDIDATE_GROUPS = ("SE3", "E3")
DEFAULT_TILTS = (-40.0, -30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0, 40.0)
FIT_PRIORS = ("upright", "identity")
POOLINGS = ("max", "max+mean")
DEFAULT_FRAGILE_MARGIN = 1.25  # log-probability; chosen on ModelNet40 test shapes (docs/mesh.md, "Stability")


class Prepared(NamedTuple):
    """What the scorer needs of a batch (:meth:`CandidateCanonicalizer.prepare`)."""

    centroid: Tensor  # (B, 3)
    candidates: Tensor  # (B, K, 3, 3) candidate frames F0 @ P_k T_t, in x's dtype
    gap: Tensor  # (B,) relative eigengap, 0 where flagged
    point_inputs: Tensor  # (B, S, M, C): S point subsets, M points, C = 3 per vector (position, offset, normal)
    mask: Tensor | None  # (B, M) real points of a ragged batch, None when dense
    no_extent: Tensor  # (B,) all points coincide


class CandidateCanonicalizer(Canonicalizer):
    """Frames from scored principal-axis candidates, optionally refined (see the module doc). The defaults
    are the recommended recipe, that of the shipped weights (``pointcanon/weights/upright_modelnet40.pt``):
    local offsets of 10 neighbours, normals of 16, max+mean pooling, 2 point subsets scored.

    Args:
        group: ``"SE3"`` (24 proper candidates; det R = +1) or ``"E3"`` (48; reflections collapsed).
        hidden: channels of the shared point MLP (the last is the pooled feature size).
        num_points: points the network sees (a fixed index subset; the covariance and the origin use all points);
            ``None`` for all.
        tilts: the tilt grid in degrees (per axis); ``()`` for the principal-axis candidates alone.
        views: point subsets of ``num_points`` whose scores are averaged (exact: the subsets are fixed index sets).
            Settable (``model.views``): the shipped weights were trained with 1 and score with 2.
        normal_k: if > 0, each seen point also carries its surface normal, fitted to its ``normal_k`` nearest points
            among up to ``normal_points`` points of the cloud (:func:`surface_normals`: planes such as shelves, seats
            and table tops are seen even when few of their points are).
        normal_points: normals use a fixed index subset of at most this many points (``None``: all): denser scans get
            normals at the scale seen in training, not noisier, more local ones.
        local_k: if > 0, each seen point also carries the offset to the mean of its ``local_k`` nearest seen neighbours
            (a surface-normal-like cue; exact up to distance ties).
        refine: learn the correction ``M`` (otherwise the frame is the chosen candidate).
        batch_norm: batch norm in the point MLP (faster training).
        pooling: ``"max"`` (extents) or ``"max+mean"`` (also densities and moments along each axis, e.g. which end of an
            axis holds more of the surface: up or down).
        degenerate_tol: relative eigengap below which the principal axes count as non-unique.
        margin_tol: best-minus-second logit below ``margin_tol * (1 + |best|)`` counts as a tie.
        sharpness: of the soft training target over candidates, ``softmax(sharpness * cosine)``.
        fragile_margin: an up axis chosen by less than this log-probability gap over the second most likely one is
            flagged ``fragile`` (0: never); settable. Files saved without it get the default.
        front, front_turns: channels of a *front* scorer (``()``: none) that turns the chosen frame about its up axis
            by the best-scored of ``360 k / front_turns`` deg (:meth:`front_logits`; the candidates' yaws follow the
            principal axes). Exact: it reads canonical inputs; ties of its two best scores are flagged degenerate.

    Shapes: input ``(B, N, 3)`` float; output :class:`Canonicalization` with frame ``(B, 3, 3)``,
    origin ``(B, 3)`` (the centroid), canonical ``(B, N, 3)``, degenerate / conditioning / fragile ``(B,)``,
    logits ``(B, K)`` over the K candidates ``F0 @ P_k T_t`` and index ``(B,)`` of the chosen one.
    """

    # count options for which 0 is valid and means "off" (read by pointcanon.options for --canonicalizer.NAME)
    ZERO_MEANS_OFF = ("local_k", "normal_k")

    def __init__(self, group: str = "SE3", *, hidden: tuple[int, ...] = (64, 128, 256),
                 num_points: int | None = 128, tilts: tuple[float, ...] = DEFAULT_TILTS, local_k: int = 10,
                 normal_k: int = 16, normal_points: int | None = 1024, views: int = 2, refine: bool = False,
                 batch_norm: bool = True, pooling: str = "max+mean", degenerate_tol: float = 1e-3,
                 margin_tol: float = 1e-5, sharpness: float = 200.0, fragile_margin: float = DEFAULT_FRAGILE_MARGIN,
                 front: tuple[int, ...] = (), front_turns: int = 4):
        super().__init__()
        group = GroupName.parse(group).value
        if group not in CANDIDATE_GROUPS:
            raise ValueError(f"group must be one of {CANDIDATE_GROUPS}, got {group!r}")
        for name, n in (("num_points", num_points), ("normal_points", normal_points)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ValueError(f"{name} must be a positive int or None, got {n!r}")
        hidden, front = tuple(int(h) for h in hidden), tuple(int(h) for h in front)
        if (front and min(front) < 1) or type(front_turns) is not int or not 2 <= front_turns <= 360:
            raise ValueError(f"front must be () or positive sizes and front_turns a number of turns in 2..360, got "
                             f"front={front}, front_turns={front_turns!r}")
        tilts = tuple(float(t) for t in tilts) or (0.0,)
        if any(not -90 < t < 90 for t in tilts) or len(set(tilts)) != len(tilts):
            raise ValueError(f"tilts must be distinct angles in (-90, 90) degrees, got {tilts}")
        for name, k in (("local_k", local_k), ("normal_k", normal_k)):
            if isinstance(k, bool) or not isinstance(k, int) or k < 0 or (name == "normal_k" and k == 1):
                raise ValueError(f"{name} must be a number of neighbours >= 0 (normal_k: 0 or >= 2), got {k!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not sharpness > 0:
            raise ValueError(f"sharpness must be positive, got {sharpness}")
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be one or more positive sizes, got {hidden}")
        if not (degenerate_tol >= 0 and margin_tol >= 0):
            raise ValueError(f"tolerances must be >= 0, got {degenerate_tol}, {margin_tol}")
        self.hparams = dict(group=group, hidden=hidden, num_points=num_points, tilts=tilts, local_k=local_k,
                            normal_k=normal_k, normal_points=normal_points, views=views, refine=bool(refine),
                            batch_norm=bool(batch_norm), pooling=pooling, degenerate_tol=degenerate_tol,
                            margin_tol=margin_tol, sharpness=sharpness,
                            **({"front": front, "front_turns": front_turns} if front else {}))
        self.views, self.fragile_margin = views, fragile_margin  # checked by their setters
        self.sharpness, self.local_k, self.normal_k, self.pooling = sharpness, local_k, normal_k, pooling
        self.normal_points, self.degenerate_tol, self.margin_tol = normal_points, degenerate_tol, margin_tol
        self.group, self.num_points, self.refine = group, num_points, bool(refine)
        perms = signed_permutations(group == "SE3")
        flips = torch.stack([m for m in signed_permutations(False) if torch.equal(m.abs(), torch.eye(3, dtype=m.dtype))
                             and (group == "E3" or torch.linalg.det(m) > 0)])  # diagonal sign matrices D_i
        keys = {tuple(m.flatten().tolist()): k for k, m in enumerate(perms)}
        # moved[i, j] = k with D_i @ P_j = P_k: candidate P_j T_t of flip i's frame is P_k T_t of F0
        moved = torch.tensor([[keys[tuple((d @ p).flatten().tolist())] for p in perms] for d in flips])
        tilt = tilt_rotations(tilts)
        n_tilts = tilt.shape[0]
        cands = (perms[:, None] @ tilt[None]).reshape(-1, 3, 3)  # index k * n_tilts + t
        lookup = (torch.argsort(moved, dim=1)[:, :, None] * n_tilts + torch.arange(n_tilts)).reshape(len(flips), -1)
        self.register_buffer("candidates", cands.float(), persistent=False)
        # float64 copy as a plain attribute, so that .to(float32) never rounds the tilts (exactness in float64)
        self.candidates64 = cands
        self.register_buffer("flips", flips.float(), persistent=False)
        # the up hypothesis (signed principal axis, 0..5) every candidate stands on: that of its P_k
        self.register_buffer("up_group", up_axis_of(perms).repeat_interleave(n_tilts), persistent=False)
        self.register_buffer("lookup", lookup, persistent=False)
        width = hidden[-1] * (2 if pooling == "max+mean" else 1)
        self.trunk = point_mlp(hidden, batch_norm, 3 * (1 + bool(local_k) + bool(normal_k)))
        self.score = head(width, cands.shape[0])
        self.correction = head(width, 6) if refine else None
        self.turns64 = yaw_turns(front_turns)  # the fronts of an up axis; float64, cast where used (as candidates64)
        self.front_trunk = point_mlp(front, batch_norm, self.trunk[0].in_features) if front else None
        self.front_score = head(front[-1] * (2 if pooling == "max+mean" else 1), 1) if front else None
        if refine:  # start at M = I: u = e_z, v = e_y
            nn.init.zeros_(self.correction[-1].weight)
            with torch.no_grad():
                self.correction[-1].bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 0.0]))

    @property
    def views(self) -> int:
        """Point subsets whose candidate scores are averaged (settable: e.g. train with 1, score with 2)."""
        return self.hparams["views"]

    @views.setter
    def views(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"views must be a positive number of point subsets, got {n!r}")
        self.hparams["views"] = n

    @property
    def fragile_margin(self) -> float:
        """Up axes chosen by a smaller log-probability gap are flagged ``fragile`` (settable; 0: never)."""
        return self.hparams["fragile_margin"]

    @fragile_margin.setter
    def fragile_margin(self, margin: float) -> None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < math.inf:
            raise ValueError(f"fragile_margin must be a finite log-probability gap >= 0, got {margin!r}")
        self.hparams["fragile_margin"] = float(margin)

    @property
    def num_candidates(self) -> int:
        return self.candidates.shape[0]

    def prepare(self, x: Tensor, batch: Tensor | None = None) -> Prepared:
        """What the scorer needs of ``x`` (:class:`Prepared`; ``x``, ``batch`` as in :meth:`forward`): the candidate
        frames and the network's inputs, the cloud scaled to unit radius in the principal frame ``F0`` (not
        flipped), per point subset."""
        if batch is None:
            check_points(x)
        else:
            counts, offsets = check_ragged(x, batch)
        check_dtype(self, x)
        check_range(x)
        if batch is None:
            centroid, centred = centre(x)
            f0, gap, extent = principal_frames(centred)
            scale = x.detach().abs().amax((1, 2)).double()
            radius = cloud_radius(centred)
            centred_unit = centred / radius[:, None, None]
        else:
            batch = batch.long()
            centroid, centred, radius = ragged_centre(x, batch, counts)
            f0, gap, extent = principal_frames(centred, batch, counts)
            scale = segment_amax(x.detach().abs().amax(-1), batch, counts.shape[0]).double()
            centred_unit = centred / radius[batch, None]
        # no extent (all points coincide, up to the rounding of the centroid): no orientation at all
        no_extent = extent <= 1e-6 * scale
        gap = torch.where(no_extent | coarse_rounding(scale, radius, x.dtype), torch.zeros_like(gap), gap)  # flagged
        cands = (f0.unsqueeze(1) @ self.candidates64.to(f0.device).unsqueeze(0)).to(x.dtype)
        largest = x.shape[1] if batch is None else int(counts.max())
        subsets = 1 if self.num_points is None or self.num_points >= largest else self.views
        per_subset, mask = [], None
        if self.normal_k:  # the points of the normals' neighbourhoods: a fixed index subset (seed -1)
            m = self.normal_points
            if batch is None:
                every, every_mask = centred_unit, None
                if m is not None and m < largest:
                    every = centred_unit[:, fixed_index_sample(largest, m, seed=-1, device=x.device)]
            else:
                every_idx, every_mask = ragged_subset(counts, offsets, m, seed=-1)
                every = centred_unit[every_idx]
        for seed in range(subsets):  # fixed index subsets: they do not depend on the coordinates
            if batch is None:
                pts = centred_unit if self.num_points is None or self.num_points >= largest else \
                    centred_unit[:, fixed_index_sample(largest, self.num_points, seed=seed, device=x.device)]
            else:
                idx, mask = ragged_subset(counts, offsets, self.num_points, seed=seed)
                pts = centred_unit[idx]  # (B, M, 3); masked entries are padding
                mask = None if bool(mask.all()) else mask  # every cloud has M points: the dense layout
            if self.local_k:  # offset of each point to the mean of its k nearest neighbours (a normal-like cue)
                if mask is None:
                    offset = gather_neighbours(pts, knn(pts, self.local_k + 1)).mean(2) - pts
                else:
                    nbr, real = masked_knn(pts, mask, self.local_k + 1)
                    w = real.to(pts.dtype).unsqueeze(-1)
                    offset = (gather_neighbours(pts, nbr) * w).sum(2) / w.sum(2).clamp_min(1) - pts
                pts = torch.cat([pts, offset], -1)  # (B, M, 6): both move like vectors
            if self.normal_k:
                normals = surface_normals(pts[..., :3], every, self.normal_k, every_mask)
                gap = torch.where(sign_undefined(normals, pts[..., :3], mask), torch.zeros_like(gap), gap)  # flagged
                pts = torch.cat([pts, normals], -1)
            per_subset.append((pts.reshape(pts.shape[0], -1, 3) @ f0.to(x.dtype)).reshape(pts.shape))
        return Prepared(centroid, cands, gap.to(x.dtype), torch.stack(per_subset, 1), mask, no_extent)  # (B, S, M, C)

    def _pooled(self, pts: Tensor, mask: Tensor | None = None, trunk: nn.Module | None = None) -> Tensor:
        """:func:`pooled` features of ``trunk`` (default: the scorer's) with this canonicalizer's pooling."""
        return pooled(trunk or self.trunk, pts, mask, self.pooling == "max+mean")

    def candidate_logits(self, point_inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits ``(B, K)`` of the candidates ``F0 @ P_k T_t`` from the principal-frame point inputs
        ``(B, S, M, C)`` of :meth:`prepare`: the sum over sign flips ``D_i`` of the network's logits in the
        flipped frame, averaged over the S point subsets. ``mask`` ``(B, M)``: the real points of a ragged batch."""
        signs = self.flips.diagonal(dim1=-2, dim2=-1).to(point_inputs.dtype).repeat(1, point_inputs.shape[-1] // 3)
        flipped = point_inputs.unsqueeze(1) * signs[None, :, None, None, :]  # (B, F, S, M, C)
        per_flip = self.score(self._pooled(flipped, mask)).mean(2)  # (B, F, K): logit of P_j in flip i's frame
        index = self.lookup.unsqueeze(0).expand(point_inputs.shape[0], -1, -1)
        return per_flip.gather(2, index).sum(1)  # candidate k of F0 = P_{lookup[i, k]} of flip i

    def canonical_inputs(self, point_inputs: Tensor, relative: Tensor) -> Tensor:
        """The point inputs ``(B, S, M, C)`` of :meth:`prepare` (principal-frame coordinates) in the coordinates of
        the frames ``F0 @ relative`` (``relative`` ``(B, 3, 3)``, e.g. a candidate ``P_k T_t``): every 3-vector
        ``v -> v @ relative``. For the chosen candidate these are invariant functions of the input cloud."""
        b = point_inputs.shape[0]
        return (point_inputs.reshape(b, -1, 3) @ relative.to(point_inputs.dtype)).reshape(point_inputs.shape)

    def front_logits(self, canonical_inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Scores ``(B, T)`` of the ``T = front_turns`` fronts of the canonical up axis: the front scorer on the
        canonical point inputs ``(B, S, M, C)`` turned about z by ``360 k / T`` deg (``v -> v @ turn_k.T``), averaged
        over the S subsets. Turning the input by ``360 / T`` deg about z shifts the scores by one place."""
        if self.front_trunk is None:
            raise ValueError("this canonicalizer has no front scorer (front=())")
        b, s_, m, c = canonical_inputs.shape
        turns = self.turns64.to(canonical_inputs.device, canonical_inputs.dtype)
        turned = (canonical_inputs.reshape(b, 1, s_, m, c // 3, 3) @ turns.transpose(1, 2)[None, :, None, None])
        pooled = self._pooled(turned.reshape(b, len(turns), s_, m, c), mask, self.front_trunk)  # (B, T, S, H)
        return self.front_score(pooled).squeeze(-1).mean(-1)

    def _front(self, point_inputs: Tensor, relative: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The turn ``(B, 3, 3)`` to compose with the frames ``F0 @ relative`` (``frame @ turn``: the best-scored
        front) and its tie flag ``(B,)``; the identity and no flag without a front scorer."""
        b = point_inputs.shape[0]
        eye = torch.eye(3, dtype=point_inputs.dtype, device=point_inputs.device)
        if self.front_trunk is None:
            return eye.expand(b, 3, 3), torch.zeros(b, dtype=torch.bool, device=point_inputs.device)
        logits = self.front_logits(self.canonical_inputs(point_inputs, relative), mask)
        top2 = logits.topk(2, -1).values
        tie = (top2[:, 0] - top2[:, 1] <= self.margin_tol * (1 + top2[:, 0].abs())) | ~torch.isfinite(logits).all(-1)
        return self.turns64.to(point_inputs.device, point_inputs.dtype)[logits.argmax(-1)].transpose(1, 2), tie

    def _correction(self, point_inputs: Tensor, cand: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``M`` ``(B, 3, 3)`` for the chosen candidates ``P`` ``(B, 3, 3)`` (columns z = u, y = v after
        Gram–Schmidt, read from the cloud ``point_inputs @ P``) and its degeneracy ``(B,)``."""
        b = point_inputs.shape[0]
        if self.correction is None:
            eye = torch.eye(3, dtype=point_inputs.dtype, device=point_inputs.device)
            return eye.expand(b, 3, 3), torch.zeros(b, dtype=torch.bool, device=point_inputs.device)
        first = point_inputs[:, :1]  # the first point subset, (B, 1, M, C)
        moved = (first.reshape(b, -1, 3) @ cand).reshape(first.shape)
        uv = self.correction(self._pooled(moved.unsqueeze(1), mask)[:, 0, 0]).view(-1, 2, 3)
        m, degenerate, _ = frame_from_vectors(uv, proper=True, axes="zy")
        return m, degenerate

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Canonicalization:
        """``x`` ``(B, N, 3)``, or a ragged batch: ``x`` ``(P, 3)`` and ``batch`` ``(P,)`` (PyTorch Geometric's
        convention; then ``canonical`` is ``(P, 3)`` and the result carries ``batch``). Each cloud of a
        ragged batch gets the frame a dense call on that cloud alone would give."""
        prepared = self.prepare(x, batch)
        return self._choose(x, batch, prepared, self.candidate_logits(prepared.point_inputs, prepared.mask))

    def _choose(self, x: Tensor, batch: Tensor | None, prepared: Prepared, logits: Tensor) -> Canonicalization:
        """The argmax candidate's :class:`Canonicalization` from :meth:`prepare`'s output and the logits."""
        centroid, cands, gap, point_inputs, mask, no_extent = prepared
        index = logits.argmax(-1)
        m, m_degenerate = self._correction(point_inputs, self.candidates.to(x.dtype)[index], mask)
        turn, front_tie = self._front(point_inputs, self.candidates64.to(x.device, x.dtype)[index] @ m, mask)
        rows = torch.arange(cands.shape[0], device=x.device)
        frame = cands[rows, index] @ m @ turn
        frame = torch.where(no_extent[:, None, None], torch.eye(3, dtype=x.dtype, device=x.device), frame)
        if batch is None:
            canonical = (x - centroid.unsqueeze(1)) @ frame
        else:
            batch = batch.long()
            canonical = ((x - centroid[batch]).unsqueeze(1) @ frame[batch]).squeeze(1)
        with torch.no_grad():
            top2 = logits.topk(min(2, logits.shape[1]), -1).values
            margin = top2[:, 0] - top2[:, -1] if top2.shape[1] > 1 else torch.full_like(top2[:, 0], math.inf)
            tie = margin <= self.margin_tol * (1 + top2[:, 0].abs())
            degenerate = (gap < self.degenerate_tol) | tie | m_degenerate | front_tie | ~torch.isfinite(logits).all(-1)
            conditioning = torch.where(degenerate, 0.0, gap).to(x.dtype)
            fragile = None if logits.shape[-1] != self.up_group.shape[0] else \
                ~(up_margin(up_masses(logits, self.up_group)[0]) >= self.fragile_margin) & ~no_extent
        return Canonicalization(frame=frame, canonical=canonical, origin=centroid, degenerate=degenerate,
                                conditioning=conditioning, logits=logits, index=index, batch=batch, fragile=fragile)

    def hypotheses(self, x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Canonicalization]:
        """The ``k`` most likely *up hypotheses* of every cloud ``x`` ``(B, N, 3)`` (:func:`top_hypotheses`: the
        candidates grouped by the signed principal axis they stand on, each group represented by its best-scored
        candidate and weighted by its total probability).

        Returns frames ``(B, k, 3, 3)`` (best group first; the first is the frame of :meth:`forward`), weights
        ``(B, k)`` (softmax over the k group masses; they sum to 1) and the canonical clouds ``(B, k, N, 3)``. The
        hypotheses are a set that moves exactly with the input and the weights are invariant, so any weighted use
        of them (an ensemble) is exactly invariant. Also returns :meth:`forward`'s result, from the same pass."""
        check_hypotheses(k, "k")
        if self.correction is not None:
            raise ValueError("hypotheses need refine=False (the refinement is trained on one candidate)")
        prepared = self.prepare(x)
        logits = self.candidate_logits(prepared.point_inputs, prepared.mask)  # (B, K)
        index, weights = top_hypotheses(logits, self.up_group, k)  # (B, k) each; frames (B, k, 3, 3):
        rows, eye = torch.arange(x.shape[0], device=x.device)[:, None], torch.eye(3, dtype=x.dtype, device=x.device)
        frames = prepared.candidates[rows, index]
        if self.front_trunk is not None:  # each hypothesis turned to its best-scored front
            inputs = prepared.point_inputs.repeat_interleave(k, 0)
            turn, _ = self._front(inputs, self.candidates64.to(x.device, x.dtype)[index.flatten()], None)
            frames = frames @ turn.view(-1, k, 3, 3)
        frames = torch.where(prepared.no_extent[:, None, None, None], eye, frames)
        canonical = (x - prepared.centroid.unsqueeze(1)).unsqueeze(1) @ frames  # (B, k, N, 3)
        return frames, weights.to(x.dtype), canonical, self._choose(x, None, prepared, logits)

    def fit_loss(self, x: Tensor, prior: str = "upright", *, up_axis: int = 2, yaw_weight: float = 0.01,
                 batch: Tensor | None = None) -> dict[str, Tensor]:
        """Loss that teaches the canonicalizer the orientation of in-distribution inputs ``x`` ``(B, N, 3)`` (given
        in the orientation the backbone expects):

        - scorer: cross-entropy towards a soft target over the candidates, ``softmax(sharpness * c_k)`` with ``c_k``
          the cosine between the candidate's up axis and the true up plus ``yaw_weight`` times the cosine of its
          angle to the identity (``"upright"``: the tilt dominates; the small yaw term breaks the tie between the yaw
          variants of the same up axis, which would otherwise get equal scores, so that the choice among them is not
          decided by rounding noise; set it to 0 for inputs whose yaw is random, e.g. under z-rotation
          augmentation), or ``(trace - 1) / 2``, the cosine of the angle to the identity (``"identity"``);
        - refinement (teacher-forced on the best-scored target candidate): the prior of the refined frame
          (:func:`~pointcanon.core.priors.upright_prior` / :func:`identity_prior`).

        Returns ``{"loss", "score", "refine", "hit"}``: the sum, its two terms (means over the batch) and the fraction
        of inputs whose chosen candidate is within 10 deg of the target orientation.
        """
        if prior not in FIT_PRIORS:
            raise ValueError(f"prior must be one of {FIT_PRIORS} for a CandidateCanonicalizer, got {prior!r}")
        _, cands, _, point_inputs, mask, _ = self.prepare(x, batch)
        logits = self.candidate_logits(point_inputs, mask)
        with torch.no_grad():
            to_identity = (cands.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2  # cosine of the angle to I
            if prior == "upright":
                closeness = cands[:, :, up_axis, up_axis]  # cosine between candidate up and true up
                preference = closeness + yaw_weight * to_identity
            else:
                closeness = preference = to_identity
            soft = F.softmax(self.sharpness * preference.to(logits.dtype), -1)  # (B, K)
            target = closeness >= closeness.amax(-1, keepdim=True) - 1e-6  # the nearest candidates
        score_loss = -(soft * F.log_softmax(logits, -1)).sum(-1).mean()
        hit = (closeness.gather(1, logits.argmax(-1, keepdim=True)) >= math.cos(math.radians(10))).float().mean()
        best = logits.detach().masked_fill(~target, float("-inf")).argmax(-1)
        frame = cands[torch.arange(cands.shape[0], device=x.device), best]
        if self.correction is not None:
            frame = frame @ self._correction(point_inputs, self.candidates.to(x.dtype)[best], mask)[0]
        refine_loss = (upright_prior(frame, up_axis) if prior == "upright" else identity_prior(frame)).mean()
        if self.correction is None:
            refine_loss = refine_loss.detach()
        return {"loss": score_loss + refine_loss, "score": score_loss.detach(), "refine": refine_loss.detach(),
                "hit": hit}

    def prior_loss(self, x: Tensor, prior: str, result: Canonicalization, *, train_rotation: str = "none") -> Tensor:
        """:meth:`fit_loss` (its ``"loss"``); the yaw term only for unrotated training inputs
        (``train_rotation="none"``): a random yaw carries no preference. 0 for ``prior="none"``.

        It scores ``x`` again rather than reuse ``result.logits``: the loss and its gradients would be the same,
        but in training mode the batch norm's running statistics are updated by every pass, and the recorded
        runs were trained with two passes per step."""
        if prior == "none":
            return result.frame.new_zeros(())
        yaw = 0.01 if train_rotation == "none" else 0.0
        return self.fit_loss(x, prior, yaw_weight=yaw, batch=result.batch)["loss"]
