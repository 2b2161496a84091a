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
    #: `[distill.augment]`: `train.augment.AugmentConfig` fields applied to the student's windows
    #: in training (the teacher's outputs stay those of the clean window); None: no augmentation.
    #: `fs` defaults to the data's rate.
    augment: dict[str, Any] | None = None
    #: splits the students are scored on (never trained on); CinC 2017 keeps its test part apart.
    eval_splits: tuple[str, ...] = ("val", "test")
    #: splits the students train on (`ecg-edge cv` trains its final student on train + val)
    train_splits: tuple[str, ...] = ("train",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lead", canonical_lead(self.lead, where="distill.lead"))
        splits = (self.eval_splits,) if isinstance(self.eval_splits, str) else tuple(self.eval_splits)
        if not splits or any(s not in ("train", "val", "test") for s in splits) or "train" in splits:
            raise ConfigError(f"distill.eval_splits: expected a non-empty subset of ['val', 'test'], got {self.eval_splits!r}")
        object.__setattr__(self, "eval_splits", splits)
        train = (self.train_splits,) if isinstance(self.train_splits, str) else tuple(self.train_splits)
        if not train or any(s not in ("train", "val", "test") for s in train) or set(train) & set(splits):
            raise ConfigError(f"distill.train_splits: expected splits out of ['train', 'val', 'test'] that "
                              f"eval_splits {list(splits)} does not hold, got {self.train_splits!r}")
        object.__setattr__(self, "train_splits", train)
        if not self.temperature > 0:
            raise ConfigError(f"distill.temperature: expected > 0, got {self.temperature}")
        for name in ("kd_weight", "embed_weight", "label_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"distill.{name}: expected >= 0, got {getattr(self, name)}")
        if self.augment is not None and not isinstance(self.augment, dict):
            raise ConfigError(f"distill.augment: expected a table of train.augment.AugmentConfig fields, got "
                              f"{self.augment!r}")
        if not self.labels and self.kd_weight == self.embed_weight == 0:
            raise ConfigError("distill: with labels = false, kd_weight or embed_weight must be > 0")

    def baseline(self) -> "DistillConfig":
        """The same student trained from labels alone."""
        from dataclasses import replace

        return replace(self, kd_weight=0.0, embed_weight=0.0, label_weight=1.0, labels=True)


#: `[cv]` candidate keys: the `[train]` and `[distill]` fields a candidate may override.
CV_TRAIN_KEYS = ("epochs", "lr", "batch_size", "weight_decay")
CV_DISTILL_KEYS = ("student", "temperature", "kd_weight", "embed_weight", "label_weight", "augment")


@dataclass(frozen=True)
class CvConfig:
    """The `[cv]` table of `ecg-edge cv` (`distill.crossval`).

    folds: k of the k-fold split of the pool's records (by SHA-256 of the patient id where the
    dataset gives one, else of the record id). pool: the splits cross-validated over; the rest
    (the test part) is scored once, by the final student. candidates: configurations to choose
    from, each a table overriding `[train]` (epochs, lr, batch_size, weight_decay) and `[distill]`
    (student, temperature, kd_weight, embed_weight, label_weight, augment) fields; none: the config as it
    is. int8: also quantize each fold's student of the chosen configuration (PT2E PTQ, LiteRT) and
    score its held-out fold, for the int8 out-of-fold scores that choose the abstention bands.
    record_rules: how a record's window probabilities become its scores, chosen between ("mean",
    "max": `edge_runtime.artifact.RECORD_RULES`).
    target_agreement / max_abstain: `edge_runtime.abstain.choose_bands`. final: train the chosen
    configuration on the whole pool into OUT/final (its checkpoint carries the chosen thresholds
    and bands) and score the test part once.
    """

    folds: int = 5
    pool: tuple[str, ...] = ("train", "val")
    candidates: tuple[dict[str, Any], ...] = ()
    int8: bool = True
    record_rules: tuple[str, ...] = ("mean", "max")
    target_agreement: float = 0.999
    max_abstain: float = 0.10
    final: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ConfigError(f"cv.folds: expected an integer >= 2, got {self.folds!r}")
        pool = (self.pool,) if isinstance(self.pool, str) else tuple(self.pool)
        if not pool or any(s not in ("train", "val", "test") for s in pool) or len(set(pool)) != len(pool):
            raise ConfigError(f"cv.pool: expected distinct splits out of ['train', 'val', 'test'], got {self.pool!r}")
        object.__setattr__(self, "pool", pool)
        cands = tuple(self.candidates or ())
        allowed = CV_TRAIN_KEYS + CV_DISTILL_KEYS
        for i, c in enumerate(cands):
            if not isinstance(c, dict) or not c:
                raise ConfigError(f"cv.candidates[{i}]: expected a non-empty table, got {c!r}")
            bad = sorted(set(c) - set(allowed))
            if bad:
                raise ConfigError(f"cv.candidates[{i}]: unknown key {bad[0]!r}; expected one of {', '.join(allowed)}")
        object.__setattr__(self, "candidates", tuple(dict(c) for c in cands))
        from edge_runtime.artifact import RECORD_RULES

        rr = (self.record_rules,) if isinstance(self.record_rules, str) else tuple(self.record_rules)
        if not rr or any(r not in RECORD_RULES for r in rr) or len(set(rr)) != len(rr):
            raise ConfigError(f"cv.record_rules: expected distinct rules out of {list(RECORD_RULES)}, "
                              f"got {self.record_rules!r}")
        object.__setattr__(self, "record_rules", rr)
        if not 0 < self.target_agreement <= 1:
            raise ConfigError(f"cv.target_agreement: expected a fraction in (0, 1], got {self.target_agreement!r}")
        if not 0 <= self.max_abstain < 1:
            raise ConfigError(f"cv.max_abstain: expected a fraction in [0, 1), got {self.max_abstain!r}")
