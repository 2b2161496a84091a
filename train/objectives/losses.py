"""The losses of the teacher objectives as plain functions, testable on hand-built embeddings.

Embeddings passed in are L2-normalised rows; `logit_scale` is the multiplier of the cosine
similarities (the exp of a learned log-scale, or 1 / temperature), as open_clip's `ClipLoss` takes it.
Losses are computed in float32 whatever the autocast dtype, and over the local batch only (no
all-gather across DDP ranks: a rank's negatives are its own batch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["info_nce", "weighted_info_nce", "sigmoid_loss", "soft_targets", "risk_score", "risk_weights",
           "masked_mse", "RISK_MODEL"]


def info_nce(a: Tensor, b: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE (CLIP; Radford et al. 2021): row i of `a` and row i of `b` are a pair, every
    other row of the batch a negative; the mean of the a->b and b->a cross-entropies."""
    return weighted_info_nce(a, b, logit_scale, None)


def weighted_info_nce(a: Tensor, b: Tensor, logit_scale: Tensor | float, weights: Tensor | None) -> Tensor:
    """InfoNCE whose negatives are weighted (CLEF): with s = logit_scale * a @ b.T,

        loss_i = -log(exp(s_ii) / (exp(s_ii) + sum_{j != i} w_ij exp(s_ij)))

    averaged over i, for a->b and (with w.T) b->a, then the mean of both. `weights` (N, N) > 0; its
    diagonal is ignored; None or all ones give exactly `info_nce`."""
    logits = logit_scale * (a.float() @ b.float().T)
    logits_t = logits.T
    if weights is not None:
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        log_w = torch.where(eye, 0.0, weights.float().log())       # w * exp(s) = exp(s + log w)
        logits, logits_t = logits + log_w, logits_t + log_w.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits_t, labels)) / 2


def sigmoid_loss(a: Tensor, b: Tensor, logit_scale: Tensor | float, logit_bias: Tensor | float,
                 targets: Tensor | None = None) -> Tensor:
    """Pairwise sigmoid loss (SigLIP; Zhai et al. 2023) with soft targets (FG-CLEP): each pair (i, j)
    is a binary problem with logit `logit_scale * cos(a_i, b_j) + logit_bias` and target
    `targets[i, j]` in [0, 1] (default: the identity). BCE-with-logits summed over j, mean over i."""
    logits = logit_scale * (a.float() @ b.float().T) + logit_bias
    if targets is None:
        targets = torch.eye(len(logits), device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none").sum(1).mean()


@torch.no_grad()
def soft_targets(report_vec: Tensor, threshold: float = 0.9) -> Tensor:
    """(N, N) targets for `sigmoid_loss` from report-report similarity S = report_vec @ report_vec.T:
    1 on the diagonal; S_ij off the diagonal where S_ij >= `threshold` (two reports that say the same
    thing make a likely false negative, so the pair is pulled together, as much as they agree);
    0 elsewhere. Rows of `report_vec` are L2-normalised; S is clipped to [0, 1]."""
    rv = report_vec.float()
    sim = (rv @ rv.T).clamp(0.0, 1.0)
    targets = torch.where(sim >= threshold, sim, torch.zeros_like(sim))
    return targets.fill_diagonal_(1.0)


#: The CLEF risk score: per field, (centre, unit, weight). A field contributes weight * (value - centre) / unit;
#: the weights are log hazard ratios per unit, so the score orders records roughly like SCORE2's
#: 10-year cardiovascular risk (SCORE2 working group, Eur Heart J 2021;42:2439-54), which needs
#: systolic pressure, cholesterol and smoking that the datasets lack:
#: - age: SCORE2's age terms are 0.37 (men) and 0.46 (women) log-HR per 5 years, ~0.8 per decade;
#:   it dominates the score (20 -> 90 years moves it by 5.6).
#: - male sex (1 - sex_female), centred at 0.5 so each sex is +-1: men's predicted risk is roughly
#:   1.5-2x women's at equal age and risk factors, a log-ratio of ~0.5 -> weight 0.25.
#: - BMI: not in SCORE2; ~HR 1.2 per 5 kg/m2 adjusted for age, sex and smoking only (Emerging Risk
#:   Factors Collaboration, Lancet 2011;377:1085-95), standing in for the pressure and lipids it drives.
RISK_MODEL: dict[str, tuple[float, float, float]] = {
    "age": (60.0, 10.0, 0.8),
    "male": (0.5, 0.5, 0.25),
    "bmi": (26.0, 5.0, 0.2),
}


def risk_score(meta: Tensor, meta_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(risk (N,), valid (N,) bool) from meta (N, 3) = [age_years, sex_female, bmi] (see `RISK_MODEL`).

    A missing field (mask False) contributes 0, the population centre, and its value is never read
    (not even a NaN leaks); a record with every field missing is invalid (its risk is 0)."""
    meta, mask = meta.float(), meta_mask.bool()
    values = torch.stack([meta[:, 0], 1.0 - meta[:, 1], meta[:, 2]], dim=1)
    centre, unit, weight = (torch.tensor(col, device=meta.device) for col in zip(*RISK_MODEL.values()))
    z = torch.where(mask, (values - centre) / unit, torch.zeros_like(values))
    return (z * weight).sum(1), mask.any(1)


def risk_weights(risk: Tensor, valid: Tensor, beta: float) -> Tensor:
    """(N, N) negative weights w_ij = 1 + beta * |r_i - r_j| / (max over valid pairs |r_i - r_j| + eps)
    where records i and j are both valid, else 1 (so missing metadata falls back to plain InfoNCE).
    A negative far from the anchor in risk weighs up to 1 + beta; equal risks give exactly 1."""
    diff = (risk[:, None] - risk[None, :]).abs().float()
    pair = valid[:, None] & valid[None, :]
    diff = torch.where(pair, diff, torch.zeros_like(diff))
    return 1.0 + beta * diff / (diff.max() + 1e-8)


def masked_mse(pred: Tensor, target: Tensor, lead_mask: Tensor) -> Tensor:
    """Mean squared error of (N, C, T) `pred` against `target` over the leads where `lead_mask` (N, C)
    is True only; 0 (still attached to the graph) when no lead is masked."""
    m = lead_mask.to(pred.dtype).unsqueeze(-1)
    err = ((pred.float() - target.float()) ** 2 * m).sum()
    return err / (m.sum() * pred.shape[-1]).clamp_min(1.0)
