"""DeepECG-SSL: contrastive learning across segments and leads plus masked-lead modelling.

Contrastive part: two random `crop_s` crops of each window, each augmented (lead dropout included),
InfoNCE between them at a fixed temperature. Masked-lead part: `mask_leads` leads of each
(unaugmented) window are zeroed, the encoder's feature sequence goes through a small decoder that
reconstructs every lead, and the MSE is taken on the masked leads only. In eval mode the crops are
the window's first and last `crop_s` and the lead masks come from a generator re-seeded on every
call, so a validation loss is deterministic.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_runtime.errors import ConfigError
from train.augment import AugmentConfig, augment, crop
from train.objectives.base import Objective, mlp_head, register_objective
from train.objectives.losses import info_nce, masked_mse

__all__ = ["SslObjective", "LeadDecoder", "random_lead_mask"]


def random_lead_mask(n: int, c: int, k: int, gen: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """(n, c) bool with exactly min(k, c - 1) True leads per row, chosen uniformly: at least one stays."""
    k = max(0, min(k, c - 1))
    order = torch.rand((n, c), generator=gen, device=gen.device).argsort(dim=1)[:, :k]
    mask = torch.zeros((n, c), dtype=torch.bool, device=gen.device)
    return mask.scatter_(1, order, True).to(device)


class LeadDecoder(nn.Module):
    """(N, D, T') features -> (N, C, T) leads: Conv1d(D, hidden, 1) -> GELU -> Conv1d(hidden, C, 1),
    then linear interpolation to T samples."""

    def __init__(self, feature_dim: int, hidden: int, leads: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(feature_dim, hidden, 1), nn.GELU(), nn.Conv1d(hidden, leads, 1))

    def forward(self, features: Tensor, length: int) -> Tensor:
        return F.interpolate(self.net(features), size=length, mode="linear", align_corners=False)


@register_objective
class SslObjective(Objective):
    """Segment/lead contrastive InfoNCE + `mlm_weight` * masked-lead reconstruction MSE.

    fs: sampling rate of the windows (Hz), to turn `crop_s` into samples; must match augment.fs.
    crop_s: crop length in seconds (<= the window length). temperature: fixed.
    mask_leads: leads zeroed per sample for reconstruction (at most all but one; 0 disables it).
    decoder_hidden: width of the decoder's hidden layer.
    augment: applied to each crop in training mode (its lead_dropout is the "across leads" part);
        None: the two views differ only by where they were cropped.
    """

    name = "ssl"
    needs: frozenset[str] = frozenset()

    def __init__(self, encoder: nn.Module, text_tower: nn.Module | None = None, *, n_classes: int,
                 multilabel: bool, embed_dim: int = 128,
                 augment: AugmentConfig | Mapping[str, Any] | None = AugmentConfig(), seed: int = 0,
                 fs: float = 100.0, crop_s: float = 5.0, temperature: float = 0.1, mask_leads: int = 3,
                 mlm_weight: float = 1.0, decoder_hidden: int = 64) -> None:
        super().__init__(encoder, n_classes=n_classes, multilabel=multilabel, embed_dim=embed_dim,
                         augment=augment, seed=seed)
        where = f"objective {self.name!r}"
        for field, value, lo in (("fs", fs, 1.0), ("crop_s", crop_s, 1e-3), ("temperature", temperature, 1e-3),
                                 ("mlm_weight", mlm_weight, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value < math.inf:
                raise ConfigError(f"{where}: {field}={value!r}; expected a finite number >= {lo}")
        for field, value, lo in (("mask_leads", mask_leads, 0), ("decoder_hidden", decoder_hidden, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"{where}: {field}={value!r}; expected an integer >= {lo}")
        if self.augment_config is not None and self.augment_config.fs != fs:
            raise ConfigError(f"{where}: fs={fs} Hz but augment.fs={self.augment_config.fs} Hz; expected the same")
        self.fs, self.crop_s, self.temperature = float(fs), float(crop_s), float(temperature)
        self.mask_leads, self.mlm_weight = mask_leads, float(mlm_weight)
        self.crop_len = max(1, round(self.crop_s * self.fs))
        self.proj = mlp_head(encoder.embed_dim, embed_dim)
        self.decoder = LeadDecoder(encoder.feature_dim, decoder_hidden, len(encoder.leads))

    def embed(self, x: Tensor) -> Tensor:
        return F.normalize(self.proj(self.encoder(x)), dim=-1)

    def views(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Two crops of `crop_len` samples: random and augmented in training, first/last in eval."""
        if self.crop_len > x.shape[-1]:
            raise ConfigError(f"objective {self.name!r}: crop_s={self.crop_s} s is {self.crop_len} samples at "
                              f"{self.fs} Hz but the windows have {x.shape[-1]}")
        if not self.training:
            return x[..., :self.crop_len], x[..., x.shape[-1] - self.crop_len:]
        views = [crop(x, self.crop_len, gen) for _ in range(2)]
        if self.augment_config is not None:
            views = [augment(v, self.augment_config, gen) for v in views]
        return views[0], views[1]

    def reconstruct(self, x: Tensor, lead_mask: Tensor) -> Tensor:
        """(N, C, T) reconstruction of every lead from `x` with the leads in `lead_mask` (N, C) zeroed."""
        hidden = x * (~lead_mask).to(x.dtype).unsqueeze(-1)
        return self.decoder(self.encoder.forward_features(hidden), x.shape[-1])

    def mlm_loss(self, x: Tensor, lead_mask: Tensor) -> Tensor:
        """MSE of the reconstruction on the masked leads only."""
        return masked_mse(self.reconstruct(x, lead_mask), x, lead_mask)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        x = self.check_batch(batch)
        gen = self.generator(x.device) if self.training else self.eval_generator(x.device)
        v1, v2 = self.views(x, gen)
        contrastive = info_nce(self.embed(v1), self.embed(v2), 1.0 / self.temperature)
        lead_mask = random_lead_mask(x.shape[0], x.shape[1], self.mask_leads, gen, x.device)
        mse = self.mlm_loss(x, lead_mask)
        loss = contrastive + self.mlm_weight * mse
        return loss, {"loss": float(loss.detach()), "contrastive": float(contrastive.detach()),
                      "mse": float(mse.detach())}
