"""Pretraining objectives of the ECG teachers, one small `nn.Module` per paper, all alike:

    obj = build_objective("clip", encoder, text_tower, n_classes=5, multilabel=True, embed_dim=128)
    loss, logs = obj(batch)            # scalar loss, {"loss": ..., ...} floats to log
    obj.encoder                        # what is kept and distilled afterwards

| name         | paper's objective                                         | batch keys read  |
|--------------|-----------------------------------------------------------|------------------|
| `clip`       | ECGCLIP: symmetric InfoNCE, ECG vs report, learned temp.  | x, text          |
| `fgclep`     | FG-CLEP: sigmoid loss, soft targets from report similarity| x, text, report_vec |
| `clef`       | CLEF: 12-lead vs single-lead InfoNCE, risk-weighted negs. | x, meta, meta_mask |
| `ssl`        | DeepECG-SSL: crop/lead contrastive + masked-lead MSE      | x                |
| `supervised` | DeepECG-SL: linear head, BCE (multilabel) or CE           | x, target        |

Every objective takes `(encoder, text_tower=None, *, n_classes, multilabel, embed_dim=128, augment,
seed, **its own params)`; `needs` names the batch keys beyond x. Objectives that do not use text
ignore `text_tower` (it is not registered, so its parameters never reach the optimiser or DDP).
`OBJECTIVES` is the registry (`edge_runtime.registry`, the models' style): each class is decorated
`@register_objective` in its module and registered under its `name`.
Augmentation (`train.augment`) runs in training mode only, from a generator seeded by `seed`
(`Objective.gen`, not in the state dict). The losses are plain functions in
`train.objectives.losses`, testable on hand-built embeddings.
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from edge_runtime.errors import ConfigError
from train.objectives.base import OBJECTIVES, Objective, as_augment_config, mlp_head, register_objective
# imported in the table's order above: registration order is the order the choices are named in
from train.objectives.text import ClipObjective, FgClepObjective
from train.objectives.clinical import ClefObjective
from train.objectives.losses import (RISK_MODEL, info_nce, masked_mse, risk_score, risk_weights, sigmoid_loss,
                                     soft_targets, weighted_info_nce)
from train.objectives.ssl import LeadDecoder, SslObjective, random_lead_mask
from train.objectives.supervised import SupervisedObjective

__all__ = [
    "OBJECTIVES", "build_objective", "objective_params", "Objective", "ClipObjective", "FgClepObjective",
    "ClefObjective", "SslObjective", "SupervisedObjective", "LeadDecoder", "info_nce", "weighted_info_nce",
    "sigmoid_loss", "soft_targets", "risk_score", "risk_weights", "masked_mse", "random_lead_mask",
    "RISK_MODEL", "as_augment_config", "mlp_head", "register_objective",
]


def objective_params(name: str) -> tuple[str, ...]:
    """The keyword arguments objective `name` accepts (n_classes, multilabel, embed_dim, ...)."""
    cls = _lookup(name)
    return tuple(p.name for p in inspect.signature(cls.__init__).parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _lookup(name: str) -> type[Objective]:
    return OBJECTIVES.get(name)  # ConfigError naming the registered objectives


def build_objective(name: str, encoder: nn.Module, text_tower: nn.Module | None = None, **kw: Any) -> Objective:
    """Build objective `name` around `encoder` (and `text_tower` for clip / fgclep).

    Raises ConfigError for an unknown name (listing the valid ones), an unknown or missing keyword
    (listing the accepted ones) or a value out of range."""
    cls = _lookup(name)
    accepted = objective_params(name)
    unknown = sorted(set(kw) - set(accepted))
    required = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty]
    missing = [r for r in required if r not in kw]
    if unknown or missing:
        problem = f"unknown parameter(s) {unknown}" if unknown else f"missing parameter(s) {missing}"
        raise ConfigError(f"objective {name!r}: {problem}; it accepts {', '.join(accepted)}")
    return cls(encoder, text_tower, **kw)
