"""Training settings as dataclasses (torch-free, so loading a config never imports torch).

`TrainConfig` is the `[train]` table (how to optimise), `PretrainConfig` the `[pretrain]` table
(what to train). Both validate in `__post_init__` and load through `edge_runtime.config`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_runtime.errors import ConfigError
from edge_runtime.spec import STANDARD_LEADS, canonical_leads


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the `[train]` table of a pretraining config)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    num_workers: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: expected >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr: expected > 0, got {self.lr}")
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError(f"train.warmup_frac: expected 0 <= value < 1, got {self.warmup_frac}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.num_workers < 0:
            raise ConfigError("train.weight_decay, grad_clip, num_workers: expected >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device: expected 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"train.precision: expected 'auto', 'fp32' or 'bf16', got {self.precision!r}")


OBJECTIVE_NAMES = ("clip", "fgclep", "clef", "ssl", "supervised")
#: Objectives that pair each ECG with text and so need a text tower.
TEXT_OBJECTIVES = ("clip", "fgclep")
SIMILARITY_METHODS = ("tfidf", "minilm")


@dataclass(frozen=True)
class PretrainConfig:
    """The `[pretrain]` table: what to train (the `[train]` table says how).

    objective: clip | fgclep | clef | ssl | supervised. encoder / text_tower: registry names
    (`ecg-edge pretrain --list-models`); *_args: their keyword arguments. embed_dim: the joint
    ECG-text space (projection heads). objective_args: the objective's own parameters (see
    `train.objectives`). report_similarity: how FG-CLEP measures report-report similarity;
    feature_lead: the lead its waveform measurements use; feature_workers: processes for them.
    """

    objective: str = "clip"
    encoder: str = "resnet1d_18"
    encoder_args: dict[str, Any] = field(default_factory=dict)
    leads: tuple[str, ...] = STANDARD_LEADS
    text_tower: str = "text_transformer"
    text_args: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 128
    objective_args: dict[str, Any] = field(default_factory=dict)
    report_similarity: str = "tfidf"
    feature_lead: str = "II"
    feature_workers: int = 1

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVE_NAMES:
            raise ConfigError(f"pretrain.objective: {self.objective!r}; expected one of {', '.join(OBJECTIVE_NAMES)}")
        if self.report_similarity not in SIMILARITY_METHODS:
            raise ConfigError(f"pretrain.report_similarity: {self.report_similarity!r}; expected one of "
                              f"{', '.join(SIMILARITY_METHODS)}")
        if self.embed_dim < 1 or self.feature_workers < 1:
            raise ConfigError("pretrain.embed_dim, feature_workers: expected >= 1")
        for name in ("encoder_args", "text_args", "objective_args"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"pretrain.{name}: expected a table")
        object.__setattr__(self, "leads", canonical_leads(self.leads, where="pretrain.leads"))
