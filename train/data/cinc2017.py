"""PhysioNet/Computing in Cardiology Challenge 2017 reader: single-lead AliveCor ECGs, AF classification.

Dataset: Clifford GD, Liu C, Moody B, et al. "AF classification from a short single lead ECG
recording: the PhysioNet/Computing in Cardiology Challenge 2017." Computing in Cardiology 44
(2017); PhysioNet, ODC-By 1.0. Labels are REFERENCE v3.

Layout read here: `REFERENCE.csv` (NO header row; `record,label` with N normal rhythm,
A atrial fibrillation, O other rhythm, ~ too noisy to classify) and one WFDB record per line:
`<record>.hea` + `<record>.mat` (int16 `val`, gain 1000/mV), 300 Hz, one lead, 9-61 s, either
beside the label file or in PhysioNet's download layout `training/A00/A00001.hea` (pass
`root=<download>/training`, and `reference=<download>/REFERENCE-v3.csv` for the v3 labels).

The recordings come from the hand-held AliveCor device, fingers of both hands on two
electrodes: lead-I-like. The header calls the lead "ECG"; this reader names it "I" and says so
in `meta["lead_note"]`.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import DatasetError
from edge_runtime.spec import Record
from train.data.sources import check_split, hash_bucket
from edge_runtime.wfdb_io import read_wfdb_mv

_REFERENCE = "REFERENCE.csv"
_FS = 300.0
_LEAD = ("I",)
_DEVICE = "AliveCor"
_LEAD_NOTE = "single lead, lead-I-like (AliveCor)"
#: Split buckets of the first 8 bytes of SHA-256(record name) mod 10.
_TRAIN_BUCKETS, _VAL_BUCKETS, _TEST_BUCKETS = range(0, 7), (7,), (8, 9)


def split_of(record_id: str) -> str:
    """The split of a record: "train", "val" or "test" (70/10/20), from SHA-256 of its name.

    The Challenge publishes no patient ids and no validation split. Hashing the record name
    gives a split that needs no seed, is the same on every machine, and keeps a record in the
    same split when records are added or removed (unlike shuffling a list). The price:
    class balance per split is only approximately stratified, and a patient who contributed
    several recordings may appear in more than one split (the data cannot tell).
    """
    bucket = hash_bucket(record_id, 10)
    if bucket in _TRAIN_BUCKETS:
        return "train"
    return "val" if bucket in _VAL_BUCKETS else "test"


class Cinc2017:
    """PhysioNet/CinC Challenge 2017 training set (Clifford et al., CinC 2017): 300 Hz, 1 lead.

    `labels`: "target" one-hot over `label_names` ("N", "A", "O", "~") and "rhythm" (the letter).
    Splits: see `split_of` (SHA-256 of the record name, 70/10/20).
    """

    name: str = "cinc2017"
    label_names: tuple[str, ...] = ("N", "A", "O", "~")
    multilabel: bool = False

    def __init__(self, root: str | Path, reference: str | Path = _REFERENCE) -> None:
        self.root = Path(root)
        self.reference = self.root / reference  # an absolute `reference` replaces root
        self._labels = self._load_reference(self.reference)
        self._splits = {rid: split_of(rid) for rid in self._labels}

    def _load_reference(self, path: Path) -> dict[str, str]:
        if not path.is_file():
            raise DatasetError(f"{path}: not found; expected the Challenge labels (record,label lines)")
        labels: dict[str, str] = {}
        with path.open(newline="", encoding="utf-8") as fh:
            for line_no, fields in enumerate(csv.reader(fh), start=1):
                if not fields:
                    continue
                if len(fields) != 2:
                    raise DatasetError(
                        f"{path}:{line_no}: expected 2 fields (record,label), got {len(fields)}: {fields}")
                rid, label = fields[0].strip(), fields[1].strip()
                if label not in self.label_names:
                    raise DatasetError(
                        f"{path}:{line_no}: label {label!r}; expected one of {', '.join(self.label_names)}")
                if not rid or rid in labels:
                    raise DatasetError(f"{path}:{line_no}: empty or repeated record name {rid!r}")
                labels[rid] = label
        if not labels:
            raise DatasetError(f"{path}: no records; expected record,label lines")
        return labels

    def ids(self, split: str | None = None) -> list[str]:
        """Record names in REFERENCE.csv order; `split` as in `split_of`."""
        check_split(split)
        return [rid for rid, s in self._splits.items() if split is None or s == split]

    def labels(self, record_id: str) -> dict[str, Any]:
        """The labels of one record, from REFERENCE.csv only (no signal read)."""
        label = self._labels.get(str(record_id).strip())
        if label is None:
            raise DatasetError(f"{self.reference}: no record {record_id!r}")
        target = np.array([name == label for name in self.label_names], dtype=np.float32)
        return {"target": target, "rhythm": label}

    def _base(self, record_id: str) -> Path:
        """`root/A00001`, or PhysioNet's download layout `root/A00/A00001` when only that exists."""
        flat = self.root / record_id
        nested = self.root / record_id[:3] / record_id
        if not Path(f"{flat}.hea").is_file() and Path(f"{nested}.hea").is_file():
            return nested
        return flat

    def read(self, record_id: str) -> Record:
        """One recording: signal (1, n) float32 mV at 300 Hz, lead named "I"."""
        labels = self.labels(record_id)
        rid = str(record_id).strip()
        sig = read_wfdb_mv(self._base(rid))
        if sig.signal.shape[0] != 1 or sig.fs != _FS:
            raise DatasetError(f"{sig.header}: {sig.signal.shape[0]} lead(s) at {sig.fs:g} Hz; "
                               f"expected 1 lead at {_FS:g} Hz")
        meta = {"device": _DEVICE, "lead_note": _LEAD_NOTE, "header_lead_name": sig.sig_name[0]}
        return Record(rid, sig.signal, sig.fs, _LEAD, labels, meta, str(sig.header))

    def __len__(self) -> int:
        return len(self._labels)

    def __iter__(self) -> Iterator[Record]:
        return (self.read(rid) for rid in self.ids())

    def class_counts(self, ids: list[str] | None = None) -> dict[str, int]:
        """Records per label (from REFERENCE.csv)."""
        counts = dict.fromkeys(self.label_names, 0)
        for rid in self.ids() if ids is None else ids:
            counts[self.labels(rid)["rhythm"]] += 1
        return counts
