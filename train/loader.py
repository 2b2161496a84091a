"""Training examples from the memory-mapped shards: windows plus what an objective needs.

One example is one preprocessed window (the signal contract's output, exactly what a device sees)
with its record's labels, report text, metadata and, for FG-CLEP, a report vector. Leads are chosen
by name from the shard's leads, so a 12-lead shard feeds a 12-lead teacher and a lead-I student.

`WindowSet` returns dicts of numpy arrays and strings; torch's default collate turns a list of them
into the batch dict the objectives read (see `train.objectives`):

    x (N, C, T) float32, target (N, K) float32, index (N,) int64,
    text list[str], report_vec (N, d) float32, meta (N, 3) float32, meta_mask (N, 3) bool
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_runtime.errors import ConfigError, DatasetError
from edge_runtime.spec import canonical_leads
from train.data.shards import ShardSplit, open_shards

#: Metadata columns fed to clinically guided objectives, in this order.
META_FIELDS = ("age", "sex_female", "bmi")
_BMI_RANGE = (10.0, 80.0)


def read_records(shards: str | Path) -> list[dict[str, Any]]:
    """The rows of `records.jsonl` (one per record, in shard order)."""
    path = Path(shards) / "records.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path}: not found; expected a folder written by `ecg-edge data build`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def data_hash(info: dict[str, Any]) -> str:
    """One hash naming the shard contents: the sha256 of every file listed in dataset.json."""
    import hashlib

    return hashlib.sha256(json.dumps(info["sha256"], sort_keys=True).encode()).hexdigest()


def meta_row(meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(values (3,), present (3,)) for age in years, female sex (1/0) and BMI; absent -> mask False.

    BMI needs both height (cm) and weight (kg); implausible BMI (outside 10-80) counts as absent,
    as do unknown sex codes. Values under a False mask are 0 and must never be read.
    """
    values = np.zeros(len(META_FIELDS), np.float32)
    present = np.zeros(len(META_FIELDS), bool)
    age = meta.get("age")
    if isinstance(age, (int, float)) and math.isfinite(age) and age >= 0:
        values[0], present[0] = age, True
    sex = meta.get("sex")
    if sex in ("M", "F"):
        values[1], present[1] = float(sex == "F"), True
    h, w = meta.get("height"), meta.get("weight")
    if isinstance(h, (int, float)) and isinstance(w, (int, float)) and h > 0:
        bmi = w / (h / 100.0) ** 2
        if _BMI_RANGE[0] <= bmi <= _BMI_RANGE[1]:
            values[2], present[2] = bmi, True
    return values, present


def report_text(labels: dict[str, Any]) -> str:
    """The report an ECG-text objective pairs with a record.

    PTB-XL: the English SCP statement descriptions of the record's codes, then the original
    (mostly German) free-text report, as in ECGCLIP. Other datasets: their report, else the names
    of the record's classes.
    """
    parts = [labels.get("statement_text"), labels.get("report")]
    text = ". ".join(p.strip().rstrip(".") for p in parts if isinstance(p, str) and p.strip())
    if text:
        return text + "."
    names = labels.get("superclasses") or [labels.get("condition") or labels.get("rhythm") or ""]
    return ", ".join(map(str, names)) or "no report"


class WindowSet(Dataset):
    """One split of a shard folder as training examples for an objective.

    `needs`: which extras to return besides x/target/index ("text", "report_vec", "meta").
    `texts` / `report_vecs`: per-record overrides (indexed like records.jsonl), e.g. FG-CLEP's
    feature-completed reports and their vectors. `subset`: window indices to keep (label fractions).
    """

    def __init__(self, shards: str | Path, split: str, leads: Sequence[str], *, needs: Sequence[str] = (),
                 texts: Sequence[str] | None = None, report_vecs: np.ndarray | None = None,
                 subset: np.ndarray | None = None) -> None:
        self.shards = Path(shards)
        self.info, splits = open_shards(self.shards)
        if split not in splits:
            raise DatasetError(f"{self.shards}: no {split!r} split; it holds {', '.join(splits) or 'none'}")
        self.split: ShardSplit = splits[split]
        shard_leads = tuple(self.info["spec"]["leads"])
        self.leads = canonical_leads(leads, where="model.leads")
        missing = [lead for lead in self.leads if lead not in shard_leads]
        if missing:
            raise ConfigError(f"model.leads: {missing} not in the shards' leads {list(shard_leads)} ({self.shards})")
        self._channels = np.array([shard_leads.index(lead) for lead in self.leads])
        self._all_channels = len(self._channels) == len(shard_leads) and bool((self._channels == np.arange(len(shard_leads))).all())
        self.needs = frozenset(needs)
        self.records = read_records(self.shards)
        self.texts = list(texts) if texts is not None else [report_text(r["labels"]) for r in self.records]
        self.report_vecs = report_vecs
        if "report_vec" in self.needs and report_vecs is None:
            raise ConfigError("report_vec: this objective needs report vectors (train.features.report_vectors)")
        rows = [meta_row(r.get("meta") or {}) for r in self.records]
        self.meta = np.stack([r[0] for r in rows]) if rows else np.zeros((0, 3), np.float32)
        self.meta_mask = np.stack([r[1] for r in rows]) if rows else np.zeros((0, 3), bool)
        self.indices = np.arange(len(self.split)) if subset is None else np.asarray(subset, dtype=np.int64)
        self.label_names = tuple(self.info["label_names"])
        self.multilabel = bool(self.info["multilabel"])

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def targets(self) -> np.ndarray:
        return np.asarray(self.split.labels[self.indices])

    @property
    def record_rows(self) -> np.ndarray:
        """Row in records.jsonl of each example's record."""
        return self.split.record[self.indices]

    def __getitem__(self, i: int) -> dict[str, Any]:
        w = int(self.indices[i])
        x, y = self.split[w]
        if not self._all_channels:
            x = x[self._channels]
        rec = int(self.split.record[w])
        item: dict[str, Any] = {"x": np.array(x, dtype=np.float32), "target": y.astype(np.float32),
                                "index": w}
        if "text" in self.needs:
            item["text"] = self.texts[rec]
        if "report_vec" in self.needs:
            item["report_vec"] = np.asarray(self.report_vecs[rec], dtype=np.float32)
        if "meta" in self.needs:
            item["meta"], item["meta_mask"] = self.meta[rec], self.meta_mask[rec]
        return item


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
