"""CLEF: clinically guided contrastive learning between a 12-lead and a single-lead view.

Each record gives two views through the same encoder: view A, the augmented window with all leads;
view B, an augmented window with every lead but `single_lead` zeroed (what a wearable records).
Negatives are weighted by how far apart the two records' clinical risk scores are
(`risk_score`, `risk_weights`), so the encoder separates records of different risk more strongly.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_runtime.errors import ConfigError
from edge_runtime.spec import canonical_lead
from train.augment import AugmentConfig, keep_leads
from train.objectives.base import Objective, mlp_head, register_objective
from train.objectives.losses import risk_score, risk_weights, weighted_info_nce

__all__ = ["ClefObjective"]


@register_objective
class ClefObjective(Objective):
    """12-lead vs single-lead InfoNCE with negatives weighted by clinical-risk difference.

    beta: largest extra weight of a negative (w_ij in [1, 1 + beta]); 0 gives plain InfoNCE.
    temperature: fixed, the cosine similarities are divided by it.
    mask_metadata: True (default) reads a metadata value only where `meta_mask` is True. False uses
        the raw values as they are, absent ones included (0 or NaN from the loader): unsafe, kept only
        to reproduce runs that ignored the mask.
    augment: applied to both views in training mode; view B skips lead dropout (it would zero the one
        lead it keeps). None: the views differ only by the leads they keep.
    """

    name = "clef"
    needs = frozenset({"meta"})

    def __init__(self, encoder: nn.Module, text_tower: nn.Module | None = None, *, n_classes: int,
                 multilabel: bool, embed_dim: int = 128,
                 augment: AugmentConfig | Mapping[str, Any] | None = AugmentConfig(), seed: int = 0,
                 single_lead: str = "I", beta: float = 1.0, temperature: float = 0.1,
                 mask_metadata: bool = True) -> None:
        super().__init__(encoder, n_classes=n_classes, multilabel=multilabel, embed_dim=embed_dim,
                         augment=augment, seed=seed)
        where = f"objective {self.name!r}"
        self.single_lead = canonical_lead(single_lead, where=f"{where}: single_lead")
        if self.single_lead not in encoder.leads:
            raise ConfigError(f"{where}: single_lead {self.single_lead!r} is not one of the encoder's leads "
                              f"{list(encoder.leads)}")
        for field, value, lo in (("beta", beta, 0.0), ("temperature", temperature, 1e-3)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value < math.inf:
                raise ConfigError(f"{where}: {field}={value!r}; expected a finite number >= {lo}")
        if not isinstance(mask_metadata, bool):
            raise ConfigError(f"{where}: mask_metadata={mask_metadata!r}; expected true or false")
        self.beta, self.temperature, self.mask_metadata = float(beta), float(temperature), mask_metadata
        self.proj = mlp_head(encoder.embed_dim, embed_dim)

    def embed(self, x: Tensor) -> Tensor:
        """(N, C, T) -> (N, embed_dim), L2-normalised projection of the encoder's output."""
        return F.normalize(self.proj(self.encoder(x)), dim=-1)

    def views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(all-lead view, single-lead view); augmented in training mode only."""
        cfg = self.augment_config
        view_a = self.maybe_augment(x)
        view_b = self.maybe_augment(x, replace(cfg, lead_dropout=0.0) if cfg else None)
        return view_a, keep_leads(view_b, self.encoder.leads, self.single_lead)

    def weights(self, meta: Tensor, meta_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(negative weights (N, N), valid (N,)) from the batch's metadata."""
        mask = meta_mask.bool() if self.mask_metadata else torch.ones_like(meta_mask, dtype=torch.bool)
        risk, valid = risk_score(meta, mask)
        return risk_weights(risk, valid, self.beta), valid

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        x = self.check_batch(batch)
        view_a, view_b = self.views(x)
        za, zb = self.embed(view_a), self.embed(view_b)
        w, valid = self.weights(batch["meta"].to(za.device), batch["meta_mask"].to(za.device))
        loss = weighted_info_nce(za, zb, 1.0 / self.temperature, w)
        return loss, {"loss": float(loss.detach()), "risk_valid": float(valid.float().mean()),
                      "mean_weight": float(w.mean())}
