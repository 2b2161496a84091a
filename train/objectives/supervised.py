"""DeepECG-SL: supervised training of the encoder with a linear head on its output."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_runtime.errors import ConfigError
from train.augment import AugmentConfig
from train.objectives.base import Objective, register_objective

__all__ = ["SupervisedObjective"]


@register_objective
class SupervisedObjective(Objective):
    """Linear head on the encoder's embedding. Multilabel: BCE-with-logits over the multi-hot target
    (optional `pos_weight`, one positive number per class, for rare labels); multiclass:
    cross-entropy on the argmax of the one-hot target. `embed_dim` is accepted for the common
    interface and unused."""

    name = "supervised"
    needs = frozenset({"target"})
    min_batch = 1

    def __init__(self, encoder: nn.Module, text_tower: nn.Module | None = None, *, n_classes: int,
                 multilabel: bool, embed_dim: int = 128, augment: AugmentConfig | Mapping[str, Any] | None = None,
                 seed: int = 0, pos_weight: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(encoder, n_classes=n_classes, multilabel=multilabel, embed_dim=embed_dim,
                         augment=augment, seed=seed)
        self.head = nn.Linear(encoder.embed_dim, n_classes)
        if pos_weight is not None:
            where = f"objective {self.name!r}: pos_weight"
            if not self.multilabel:
                raise ConfigError(f"{where}: only for multilabel targets; this dataset is multiclass")
            pw = torch.as_tensor(pos_weight, dtype=torch.float32).flatten()
            if pw.numel() != n_classes or not bool(torch.isfinite(pw).all() and (pw > 0).all()):
                raise ConfigError(f"{where}: {pw.tolist()}; expected {n_classes} finite numbers > 0")
            pos_weight = pw
        self.register_buffer("pos_weight", pos_weight)

    def logits(self, x: Tensor) -> Tensor:
        """(N, C, T) -> (N, n_classes) class logits (no augmentation)."""
        return self.head(self.encoder(x))

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        x = self.check_batch(batch)
        target = batch["target"].to(x.device).float()
        if target.shape != (len(x), self.n_classes):
            raise ConfigError(f"objective {self.name!r}: target has shape {tuple(target.shape)}; "
                              f"expected ({len(x)}, {self.n_classes})")
        logits = self.logits(self.maybe_augment(x)).float()
        if self.multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight)
            return loss, {"loss": float(loss.detach())}
        label = target.argmax(1)
        loss = F.cross_entropy(logits, label)
        acc = (logits.argmax(1) == label).float().mean()
        return loss, {"loss": float(loss.detach()), "acc": float(acc)}
