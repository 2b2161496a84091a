"""Student-side settings as dataclasses (torch-free, so loading a config never imports torch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_runtime.errors import ConfigError
from edge_runtime.spec import canonical_lead

#: `ecg-edge compare --split` (`[compare] split`): the student's evaluation splits ("eval"), every
#: record whatever split its hash gives it ("all": a dataset that was never split), or one split.
SPLIT_CHOICES = ("eval", "all", "train", "val", "test")
#: `ecg-edge compare --short` (`[compare] short`): a record shorter than one window is scored on one
#: padded window ("pad", `edge_runtime.signal.Windower.pad_tail`) or gets the explicit "too
#: short" outcome (counted, not scored).
SHORT_CHOICES = ("pad", "too-short")


@dataclass(frozen=True)
class DistillConfig:
    """The `[distill]` table: which student, which lead, how the losses mix."""

    student: str = "student_s"
    student_args: dict[str, Any] = field(default_factory=dict)
    lead: str = "I"
    temperature: float = 2.0
    kd_weight: float = 1.0
    embed_weight: float = 0.5
    label_weight: float = 1.0
    labels: bool = True
    #: splits the students are scored on (never trained on); CinC 2017 keeps its test part apart.
    eval_splits: tuple[str, ...] = ("val", "test")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lead", canonical_lead(self.lead, where="distill.lead"))
        splits = (self.eval_splits,) if isinstance(self.eval_splits, str) else tuple(self.eval_splits)
        if not splits or any(s not in ("train", "val", "test") for s in splits) or "train" in splits:
            raise ConfigError(f"distill.eval_splits: expected a non-empty subset of ['val', 'test'], got {self.eval_splits!r}")
        object.__setattr__(self, "eval_splits", splits)
        if not self.temperature > 0:
            raise ConfigError(f"distill.temperature: expected > 0, got {self.temperature}")
        for name in ("kd_weight", "embed_weight", "label_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"distill.{name}: expected >= 0, got {getattr(self, name)}")
        if not self.labels and self.kd_weight == self.embed_weight == 0:
            raise ConfigError("distill: with labels = false, kd_weight or embed_weight must be > 0")

    def baseline(self) -> "DistillConfig":
        """The same student trained from labels alone."""
        from dataclasses import replace

        return replace(self, kd_weight=0.0, embed_weight=0.0, label_weight=1.0, labels=True)
