"""ECG-text objectives: ECGCLIP's symmetric InfoNCE and FG-CLEP's soft-target sigmoid loss.

Both embed an ECG (encoder -> Linear) and its report (text tower -> Linear) into a joint space of
`embed_dim`, L2-normalised. The text tower is a submodule and trains with the encoder unless the
caller freezes it (`requires_grad_(False)`) before building the optimiser.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_runtime.errors import ConfigError
from train.augment import AugmentConfig
from train.objectives.base import Objective, register_objective
from train.objectives.losses import info_nce, sigmoid_loss, soft_targets

__all__ = ["ClipObjective", "FgClepObjective"]


@register_objective
class ClipObjective(Objective):
    """ECGCLIP: symmetric InfoNCE between ECG and report embeddings with a learned temperature.

    The log-scale starts at log(1 / 0.07) and is clamped at log(100) when used (CLIP, Radford et al.
    2021). `augment` (default None) augments the ECG in training mode only.
    """

    name = "clip"
    needs = frozenset({"text"})

    def __init__(self, encoder: nn.Module, text_tower: nn.Module | None = None, *, n_classes: int,
                 multilabel: bool, embed_dim: int = 128, augment: AugmentConfig | Mapping[str, Any] | None = None,
                 seed: int = 0, logit_scale_init: float = math.log(1 / 0.07),
                 logit_scale_max: float = math.log(100.0)) -> None:
        super().__init__(encoder, n_classes=n_classes, multilabel=multilabel, embed_dim=embed_dim,
                         augment=augment, seed=seed)
        if text_tower is None or not hasattr(text_tower, "embed_dim"):
            raise ConfigError(f"objective {self.name!r}: needs a text tower (a kind='text' model from "
                              "train.models, with embed_dim)")
        self.text_tower = text_tower
        self.ecg_proj = nn.Linear(encoder.embed_dim, embed_dim)
        self.text_proj = nn.Linear(text_tower.embed_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.logit_scale_max = float(logit_scale_max)

    def encode_ecg(self, x: Tensor) -> Tensor:
        """(N, C, T) -> (N, embed_dim), L2-normalised, in the joint space (no augmentation)."""
        return F.normalize(self.ecg_proj(self.encoder(x)), dim=-1)

    def encode_text(self, texts: list[str]) -> Tensor:
        """N reports -> (N, embed_dim), L2-normalised, in the joint space."""
        return F.normalize(self.text_proj(self.text_tower(list(texts))), dim=-1)

    def scale(self) -> Tensor:
        """The multiplier of the cosine similarities: exp(logit_scale), at most exp(logit_scale_max)."""
        return self.logit_scale.clamp(max=self.logit_scale_max).exp()

    def _embed(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        x = self.check_batch(batch)
        if len(batch["text"]) != len(x):
            raise ConfigError(f"objective {self.name!r}: {len(batch['text'])} texts for {len(x)} windows")
        ecg = self.encode_ecg(self.maybe_augment(x))
        return ecg, self.encode_text(batch["text"]).to(ecg.device)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        ecg, text = self._embed(batch)
        scale = self.scale()
        loss = info_nce(ecg, text, scale)
        return loss, {"loss": float(loss.detach()), "logit_scale": float(scale.detach())}


@register_objective
class FgClepObjective(ClipObjective):
    """FG-CLEP: SigLIP-style sigmoid loss with soft targets from report-report similarity.

    Logits are t * cos + b with learned t (log-scale init log 10, clamped at log 100) and b (init -10),
    as in SigLIP (Zhai et al. 2023). Pairs whose feature-completed reports agree (cosine of their
    `report_vec` >= `sim_threshold`) are treated as partial positives instead of negatives
    (`soft_targets`), the false-negative problem FG-CLEP addresses.
    """

    name = "fgclep"
    needs = frozenset({"text", "report_vec"})

    def __init__(self, encoder: nn.Module, text_tower: nn.Module | None = None, *, n_classes: int,
                 multilabel: bool, embed_dim: int = 128, augment: AugmentConfig | Mapping[str, Any] | None = None,
                 seed: int = 0, sim_threshold: float = 0.9, logit_scale_init: float = math.log(10.0),
                 logit_bias_init: float = -10.0, logit_scale_max: float = math.log(100.0)) -> None:
        super().__init__(encoder, text_tower, n_classes=n_classes, multilabel=multilabel, embed_dim=embed_dim,
                         augment=augment, seed=seed, logit_scale_init=logit_scale_init,
                         logit_scale_max=logit_scale_max)
        if isinstance(sim_threshold, bool) or not isinstance(sim_threshold, (int, float)) \
                or not 0.0 < sim_threshold <= 1.0:
            raise ConfigError(f"objective {self.name!r}: sim_threshold={sim_threshold!r}; expected 0 < value <= 1")
        self.sim_threshold = float(sim_threshold)
        self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias_init)))

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        ecg, text = self._embed(batch)
        targets = soft_targets(batch["report_vec"].to(ecg.device), self.sim_threshold)
        scale = self.scale()
        loss = sigmoid_loss(ecg, text, scale, self.logit_bias, targets)
        soft = (targets > 0).float().sum(1).mean() - 1.0   # off-diagonal soft positives per row
        return loss, {"loss": float(loss.detach()), "logit_scale": float(scale.detach()),
                      "logit_bias": float(self.logit_bias.detach()), "soft_positives": float(soft)}
