"""Up hypotheses of a :class:`~pointcanon.nn.CandidateCanonicalizer`, and how a classifier uses them.

An *up hypothesis* is one of the 6 signed principal axes (``+-e1, +-e2, +-e3`` of the principal frame) that a
candidate frame stands on (its third column). Grouping the candidates by it (:func:`up_axis_of`), the *mass*
of a hypothesis is the log-sum-exp of the logits of its candidates (:func:`up_masses`): ``softmax`` over the 6
masses is the probability the scorer gives each axis of being up. The gap between the two largest masses
(:func:`up_margin`) says how firmly the up axis was chosen; a small gap is a *fragile* choice, which another
sampling of the same surface (another density, another pipeline) may turn over.

A classifier can see the cloud in the ``k`` most likely hypotheses (:func:`top_hypotheses`, ``k`` checked by
:func:`check_hypotheses`) and combine its class probabilities by a rule (:func:`combine_hypotheses`): the
canonicalizer's weights, those times the backbone's own evidence, or a learned :class:`HypothesisSelector`.
Every quantity used is invariant, so the mixture is exactly as invariant as the hypotheses.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

MAX_HYPOTHESES = 6  # the signed principal axes a candidate can stand on
HYPOTHESIS_RULES = ("weights", "evidence", "selector")  # how the hypotheses' class probabilities are combined
TRAINING_RULES = ("weights", "evidence")  # "selector" is fitted after training (`pointcanon fit-selector`)
HYPOTHESIS_TRAINING = ("sample", "mixture")  # how a classifier is trained over them


def check_hypotheses(k, name: str = "hypotheses", low: int = 1) -> int:
    """``k`` if it is an int from ``low`` to :data:`MAX_HYPOTHESES`, else ``ValueError`` naming ``name``."""
    if isinstance(k, bool) or not isinstance(k, int) or not low <= k <= MAX_HYPOTHESES:
        raise ValueError(f"{name} must be an int from {low} to {MAX_HYPOTHESES} (signed principal axes), got {k!r}")
    return k


def up_axis_of(frames: Tensor) -> Tensor:
    """The up hypothesis ``(K,)`` in ``0..5`` (``2 * axis + (1 if negative)``) of signed permutation matrices
    ``(K, 3, 3)``: which signed axis their third column is."""
    up = frames[:, :, 2]
    return up.abs().argmax(-1) * 2 + (up.sum(-1) < 0).long()


def up_masses(logits: Tensor, up_group: Tensor) -> tuple[Tensor, Tensor]:
    """The mass of every up hypothesis ``(B, 6)`` (log-sum-exp of the logits ``(B, K)`` of the candidates
    whose ``up_group`` ``(K,)`` it is) and the index of its best-scored candidate ``(B, 6)``."""
    groups = up_group.unsqueeze(0).expand_as(logits)
    masked = torch.stack([logits.masked_fill(groups != g, float("-inf")) for g in range(MAX_HYPOTHESES)], 1)
    return masked.logsumexp(-1), masked.argmax(-1)  # (B, 6), (B, 6)


def up_margin(mass: Tensor) -> Tensor:
    """``(B,)``: the log-probability gap between the two most likely up hypotheses of masses ``(B, 6)``
    (>= 0; invariant, since the logits are)."""
    top2 = mass.topk(2, -1).values
    return top2[:, 0] - top2[:, 1]


def top_hypotheses(logits: Tensor, up_group: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` most likely up hypotheses of candidate logits ``(B, K)``: the index of each one's
    best-scored candidate ``(B, k)`` (most likely first) and their weights ``(B, k)`` (softmax over the
    k masses; they sum to 1)."""
    check_hypotheses(k, "k")
    mass, best = up_masses(logits, up_group)
    top = mass.topk(k, -1)
    return best.gather(1, top.indices), torch.softmax(top.values, -1)


class HypothesisSelector(nn.Module):
    """A learned posterior over a classifier's k up hypotheses, read from invariant quantities only.

    For each hypothesis k it reads the backbone's class log-probabilities ``log_softmax(logits[:, k])``
    (C), its evidence relative to the most familiar pose ``lse_k - max_j lse_j`` (``lse = logsumexp`` of
    the logits), the canonicalizer's ``log w_k`` and the hypothesis' rank (one-hot of 6); a small MLP turns
    them into a correction of the canonicalizer's belief: ``q = softmax_k(log w_k + mlp(features_k))``.
    Every input is invariant, so the mixture is exactly as invariant as the hypotheses (the rank makes it
    depend on their order, by score: as stable as the canonicalizer's own choice). Fitted on the
    classifier's training shapes after training (:func:`pointcanon.selector.fit_selector`).

    ``forward(weights (B, k), logits (B, k, C)) -> q (B, k)``.
    """

    def __init__(self, num_classes: int, hidden: int = 64):
        super().__init__()
        for name, v in (("num_classes", num_classes), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.num_classes = num_classes
        self.mlp = nn.Sequential(nn.Linear(num_classes + 2 + MAX_HYPOTHESES, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, weights: Tensor, logits: Tensor) -> Tensor:
        if weights.ndim != 2 or logits.shape[:2] != weights.shape or logits.shape[-1] != self.num_classes:
            raise ValueError(f"expected weights (B, k) and logits (B, k, {self.num_classes}), got "
                             f"{tuple(weights.shape)} and {tuple(logits.shape)}")
        b, k = weights.shape
        check_hypotheses(k, "the number of hypotheses (weights.shape[1])")
        log_w = weights.clamp_min(torch.finfo(weights.dtype).tiny).log()
        lse = logits.logsumexp(-1, keepdim=True)
        rank = torch.eye(MAX_HYPOTHESES, dtype=logits.dtype, device=logits.device)[:k].expand(b, k, MAX_HYPOTHESES)
        features = torch.cat([torch.log_softmax(logits, -1), lse - lse.amax(1, keepdim=True),
                              log_w.unsqueeze(-1).to(logits.dtype), rank], -1)
        return torch.softmax(log_w.to(logits.dtype) + self.mlp(features).squeeze(-1), -1)


def combine_hypotheses(weights: Tensor, logits: Tensor, rule: str = "weights",
                       selector: HypothesisSelector | None = None) -> Tensor:
    """Log class probabilities ``(B, C)`` of a mixture over k hypotheses: ``log sum_k q_k p_k`` with
    ``p_k = softmax(logits[:, k])`` (``logits`` ``(B, k, C)``) and the hypothesis posterior ``q``
    ``(B, k)`` given by ``rule``:

    - ``"weights"``: the canonicalizer's weights ``(B, k)`` alone;
    - ``"evidence"``: ``q_k ~ weights_k * exp(logsumexp_c logits[:, k, c])``, the canonicalizer's belief
      times the backbone's own evidence that it sees a familiar input in that pose (the classifier read
      as an energy model of its inputs, as in Grathwohl et al., 2020; needs raw logits: a backbone that
      returns log-probabilities gives every pose the same evidence);
    - ``"selector"``: ``q = selector(weights, logits)``, a fitted :class:`HypothesisSelector`.

    All use only invariant quantities, so the result is exactly as invariant as the hypotheses."""
    if rule not in HYPOTHESIS_RULES:
        raise ValueError(f"rule must be one of {HYPOTHESIS_RULES}, got {rule!r}")
    if rule == "selector":
        if selector is None:
            raise ValueError("rule 'selector' needs a fitted HypothesisSelector (`pointcanon fit-selector`)")
        return (selector(weights, logits).clamp_min(torch.finfo(logits.dtype).tiny).log().unsqueeze(-1)
                + torch.log_softmax(logits, -1)).logsumexp(1)
    log_w = weights.clamp_min(torch.finfo(weights.dtype).tiny).log()
    if rule == "evidence":
        log_w = torch.log_softmax(log_w + logits.logsumexp(-1), -1)
    return (log_w.unsqueeze(-1) + torch.log_softmax(logits, -1)).logsumexp(1)
