"""Supervised contrastive loss (Khosla et al. 2020, "L_out"), with explicit hard negatives.

For an anchor ``i`` with positives ``P(i)`` and denominator set ``A(i)`` (every key but ``i``
itself)::

    l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / T) / sum_{a in A(i)} exp(s_ia / T) )

and the loss is the mean of ``l_i`` over anchors with at least one positive. Anchors without
a positive are dropped from the mean (never divided by zero). Roles are explicit boolean
masks, never encoded in the sign of a label (``-label`` cannot express class 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def contrastive_from_masks(anchors: torch.Tensor, keys: torch.Tensor, pos_mask: torch.Tensor,
                           denom_mask: torch.Tensor, temperature: float,
                           logit_bias: torch.Tensor | None = None) -> torch.Tensor:
    """The shared core: mean over anchors of -mean log p(positive | denominator set).

    anchors: [N, D] (L2-normalised), keys: [M, D] (L2-normalised), pos_mask: [N, M] bool,
    denom_mask: [N, M] bool (must contain pos_mask), logit_bias: [N, M] float added to the
    logits (``log w`` weights a key's ``exp`` term by ``w``) or None. Returns a scalar (fp32).
    Anchors with no positive are dropped; if none has one, returns 0 with a gradient path.
    """
    import torch

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a = anchors.float()
    k = keys.float()
    logits = a @ k.T / temperature  # [N, M]
    if logit_bias is not None:
        logits = logits + logit_bias
    # log-sum-exp over the denominator set only: masked entries get -inf, the max is subtracted
    # inside torch.logsumexp, so small temperatures and fp16 inputs do not overflow.
    masked = logits.masked_fill(~denom_mask, float("-inf"))
    log_denom = torch.logsumexp(masked, dim=1, keepdim=True)  # [N, 1]
    log_prob = logits - log_denom  # [N, M]
    n_pos = pos_mask.sum(dim=1)  # [N]
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return logits.sum() * 0.0
    pos_log_prob = torch.where(pos_mask, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    per_anchor = -pos_log_prob[has_pos] / n_pos[has_pos]
    return per_anchor.mean()


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                queue_z: torch.Tensor | None = None,
                queue_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Supervised contrastive loss.

    z: [N, D] embeddings (L2-normalised here again, so any scale works; fp16/bf16 are
    computed in fp32); labels: [N] int64 class indices (class 0 is an ordinary class);
    queue_z: [K, D] / queue_labels: [K] optional memory-queue keys (extra positives/negatives,
    never anchors). Returns a scalar.

    Positives of anchor i: every other row (and queue entry) with the same label; the
    denominator: every other row and every queue entry. ``i`` is never its own positive.
    """
    import torch

    neg = torch.zeros_like(labels, dtype=torch.bool)
    q_neg = None if queue_labels is None else torch.zeros_like(queue_labels, dtype=torch.bool)
    return supcon_hard_negative_loss(z, labels, neg, labels, temperature, queue_z=queue_z,
                                     queue_labels=queue_labels, queue_is_negative=q_neg,
                                     queue_parent_label=queue_labels)


def supcon_hard_negative_loss(z: torch.Tensor, labels: torch.Tensor, is_negative: torch.Tensor,
                              parent_label: torch.Tensor, temperature: float = 0.1,
                              hard_weight: float = 1.0,
                              queue_z: torch.Tensor | None = None,
                              queue_labels: torch.Tensor | None = None,
                              queue_is_negative: torch.Tensor | None = None,
                              queue_parent_label: torch.Tensor | None = None) -> torch.Tensor:
    """SupCon where near-OOD rows are negatives only.

    z: [N, D] embeddings; labels: [N] int64 (ignored for negative rows); is_negative: [N] bool
    (True for manifest role ``near_ood``); parent_label: [N] int64, the class a negative row
    was generated from (ignored for other rows); temperature: T > 0; hard_weight: w >= 0
    multiplies the ``exp`` term of a negative row in the denominators of anchors of its parent
    class (1 = plain SupCon with the extra keys; > 1 emphasises the hard negatives).
    queue_*: [K, D] / [K] optional memory-queue keys with the same meaning (keys, never anchors).
    Returns a scalar (fp32).

    Negative rows are never anchors and never positives; they stay in every other anchor's
    denominator — for anchors of their parent class they are the *hard* negatives.
    """
    import math

    import torch
    import torch.nn.functional as F

    n = z.shape[0]
    if labels.shape != (n,) or is_negative.shape != (n,) or parent_label.shape != (n,):
        raise ValueError(f"labels, is_negative, parent_label must be [{n}]; got "
                         f"{tuple(labels.shape)}, {tuple(is_negative.shape)}, {tuple(parent_label.shape)}")
    if hard_weight < 0:
        raise ValueError(f"hard_weight must be >= 0, got {hard_weight}")
    is_negative = is_negative.bool()
    zf = F.normalize(z.float(), dim=1)
    keys, k_lab, k_neg, k_par = zf, labels, is_negative, parent_label
    if queue_z is not None:
        if queue_labels is None or queue_is_negative is None or queue_parent_label is None:
            raise ValueError("queue_z needs queue_labels, queue_is_negative and queue_parent_label")
        keys = torch.cat([zf, F.normalize(queue_z.float().to(zf.device), dim=1)])
        k_lab = torch.cat([labels, queue_labels.to(labels.device)])
        k_neg = torch.cat([is_negative, queue_is_negative.bool().to(labels.device)])
        k_par = torch.cat([parent_label, queue_parent_label.to(labels.device)])
    m = keys.shape[0]
    anchor_idx = (~is_negative).nonzero().squeeze(1)  # negatives are never anchors
    a_lab = labels[anchor_idx]
    not_self = torch.ones(anchor_idx.numel(), m, dtype=torch.bool, device=z.device)
    not_self[torch.arange(anchor_idx.numel(), device=z.device), anchor_idx] = False
    pos = (a_lab[:, None] == k_lab[None, :]) & ~k_neg[None, :] & not_self
    bias = None
    if hard_weight != 1.0:
        hard = k_neg[None, :] & (k_par[None, :] == a_lab[:, None])
        w = math.log(hard_weight) if hard_weight > 0 else float("-inf")
        bias = torch.where(hard, torch.full_like(hard, w, dtype=torch.float32),
                           torch.zeros_like(hard, dtype=torch.float32))
        not_self = not_self & ~(hard & (hard_weight == 0))
    return contrastive_from_masks(zf[anchor_idx], keys, pos, not_self, temperature, bias)
