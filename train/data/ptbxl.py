"""PTB-XL reader: 12-lead, 10 s clinical ECGs with SCP-ECG statements.

Dataset: Wagner P, Strodthoff N, Bousseljot R-D, et al. "PTB-XL, a large publicly available
electrocardiography dataset." Scientific Data 7, 154 (2020); PhysioNet, CC BY 4.0.
Benchmark splits and superclasses: Strodthoff N, et al. "Deep learning for ECG analysis:
benchmarks and insights from PTB-XL." IEEE JBHI 25(5), 2021.

Layout read here: `ptbxl_database.csv` (one row per ECG), `scp_statements.csv` (statement
code -> diagnostic class, rhythm flag, English description) and WFDB records under
`records100/` and `records500/` named by the CSV's `filename_lr` / `filename_hr`.

This module also holds the two WFDB helpers the sibling readers (`cinc2017`, `mitdb`) share:
`read_wfdb_mv` (one place that turns a WFDB record into float32 millivolts) and `check_split`.
"""
from __future__ import annotations

import ast
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError, DatasetError
from edge_runtime.spec import Record, canonical_leads
from train.data.sources import check_split
from edge_runtime.wfdb_io import read_wfdb_mv

# ----------------------------------------------------------------------------------------------

_DB_FILE = "ptbxl_database.csv"
_SCP_FILE = "scp_statements.csv"
_QUALITY = ("baseline_drift", "static_noise", "burst_noise", "electrodes_problems",
            "extra_beats", "pacemaker")
_DB_COLUMNS = ("ecg_id", "patient_id", "age", "sex", "height", "weight", "device",
               "recording_date", "report", "scp_codes", "strat_fold", "filename_lr",
               "filename_hr") + _QUALITY
_SCP_COLUMNS = ("", "description", "diagnostic", "rhythm", "diagnostic_class")
_SCP_TEXT = "SCP-ECG Statement Description"
#: PTB-XL stores ages above 89 as 300 (HIPAA); the reader reports 90.0 and `age_capped`. Other
#: ages are kept as given (the 500 records in ../shared/data hold 90 and 91, and no 300).
_AGE_CAP_CODE = 300.0
_AGE_CAP = 90.0
_FILENAME_COLUMN = {100: "filename_lr", 500: "filename_hr"}


def _open_csv(path: Path, required: tuple[str, ...], what: str) -> tuple[csv.DictReader, Any]:
    if not path.is_file():
        raise DatasetError(f"{path}: not found; expected the {what}")
    fh = path.open(newline="", encoding="utf-8")
    reader = csv.DictReader(fh)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        fh.close()
        raise DatasetError(f"{path}: header lacks column(s) {missing}; expected the {what}")
    return reader, fh


def _number(text: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{where}: expected a number or an empty field, got {text!r}") from None


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


class PtbXl:
    """PTB-XL v1.0 (Wagner et al., Sci Data 2020): 12 leads, 10 s, at 100 or 500 Hz.

    `labels`: "target" multi-hot over `label_names` (the five diagnostic superclasses),
    "superclasses" (sorted), "statements" (code -> likelihood in %), "rhythm" (rhythm codes),
    "report" (original, mostly German, free text) and "statement_text" (English descriptions
    of the record's codes joined by "; "). Superclasses come from EVERY code in `scp_codes`
    whose `diagnostic` flag is 1, regardless of likelihood (as in Strodthoff et al. 2021).

    Splits follow the recommended `strat_fold`s: 1-8 train, 9 val, 10 test (patient-disjoint).
    """

    name: str = "ptbxl"
    label_names: tuple[str, ...] = ("NORM", "MI", "STTC", "CD", "HYP")
    multilabel: bool = True

    def __init__(self, root: str | Path, fs: int = 100) -> None:
        if fs not in _FILENAME_COLUMN:
            raise ConfigError(f"PtbXl.fs: expected 100 or 500, got {fs!r}")
        self.root = Path(root)
        self.fs = int(fs)
        self._statements = self._load_statements(self.root / _SCP_FILE)
        self._rows = self._load_database(self.root / _DB_FILE)

    # -- index -------------------------------------------------------------------------------

    @staticmethod
    def _load_statements(path: Path) -> dict[str, dict[str, Any]]:
        reader, fh = _open_csv(path, _SCP_COLUMNS, "PTB-XL SCP statement table")
        out: dict[str, dict[str, Any]] = {}
        with fh:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                text = (row.get(_SCP_TEXT) or "").strip() or row["description"].strip()
                out[row[""].strip()] = {
                    "diagnostic": _number(row["diagnostic"], where) == 1.0,
                    "rhythm": _number(row["rhythm"], where) == 1.0,
                    "diagnostic_class": row["diagnostic_class"].strip() or None,
                    "text": text,
                }
        return out

    def _load_database(self, path: Path) -> dict[str, dict[str, Any]]:
        reader, fh = _open_csv(path, _DB_COLUMNS, "PTB-XL database table")
        rows: dict[str, dict[str, Any]] = {}
        with fh:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                parsed = self._parse_row(row, where)
                rows[parsed["ecg_id"]] = parsed
        return dict(sorted(rows.items(), key=lambda kv: int(kv[0])))

    def _parse_row(self, row: dict[str, str], where: str) -> dict[str, Any]:
        ecg_id = _number(row["ecg_id"], f"{where}: ecg_id")
        fold = _number(row["strat_fold"], f"{where}: strat_fold")
        if ecg_id is None or fold is None or fold not in range(1, 11):
            raise DatasetError(f"{where}: expected an ecg_id and a strat_fold 1..10")
        try:
            codes = ast.literal_eval(row["scp_codes"])
        except (ValueError, SyntaxError):
            codes = None
        if not isinstance(codes, dict):
            raise DatasetError(f"{where}: scp_codes: expected a dict literal, got {row['scp_codes']!r}")
        unknown = [c for c in codes if c not in self._statements]
        if unknown:
            raise DatasetError(f"{where}: scp_codes {unknown} not in {_SCP_FILE}")
        age = _number(row["age"], f"{where}: age")
        patient = _number(row["patient_id"], f"{where}: patient_id")
        sex = {"0": "M", "1": "F", "": None}.get(row["sex"].strip().split(".")[0], "?")
        if sex == "?":
            raise DatasetError(f"{where}: sex: expected 0 (male), 1 (female) or empty, got {row['sex']!r}")
        meta = {
            "age": _AGE_CAP if age == _AGE_CAP_CODE else age,
            "age_capped": None if age is None else age == _AGE_CAP_CODE,
            "sex": sex,
            "height": _number(row["height"], f"{where}: height"),
            "weight": _number(row["weight"], f"{where}: weight"),
            "patient_id": None if patient is None else int(patient),
            "strat_fold": int(fold),
            "device": _text(row["device"]),
            "recording_date": _text(row["recording_date"]),
        }
        meta.update({col: _text(row[col]) for col in _QUALITY})
        return {"ecg_id": str(int(ecg_id)), "codes": {str(k): float(v) for k, v in codes.items()},
                "report": row["report"], "meta": meta, "line": where,
                "filename": {100: row["filename_lr"].strip(), 500: row["filename_hr"].strip()}}

    def _row(self, record_id: str) -> dict[str, Any]:
        row = self._rows.get(str(record_id).strip())
        if row is None:
            raise DatasetError(f"{self.root / _DB_FILE}: no ecg_id {record_id!r}")
        return row

    # -- protocol ----------------------------------------------------------------------------

    def ids(self, split: str | None = None) -> list[str]:
        """Record ids (ecg_id as a string) in ascending order; `split` by strat_fold."""
        check_split(split)
        folds = {None: range(1, 11), "train": range(1, 9), "val": (9,), "test": (10,)}[split]
        return [rid for rid, row in self._rows.items() if row["meta"]["strat_fold"] in folds]

    def labels(self, record_id: str) -> dict[str, Any]:
        """The labels of one record, from the index files only (no signal read)."""
        row = self._row(record_id)
        codes: dict[str, float] = row["codes"]
        st = self._statements
        supers = sorted({st[c]["diagnostic_class"] for c in codes
                         if st[c]["diagnostic"] and st[c]["diagnostic_class"]})
        target = np.array([name in supers for name in self.label_names], dtype=np.float32)
        return {
            "target": target,
            "superclasses": supers,
            "statements": dict(codes),
            "rhythm": [c for c in codes if st[c]["rhythm"]],
            "report": row["report"],
            "statement_text": "; ".join(st[c]["text"] for c in codes),
        }

    def read(self, record_id: str) -> Record:
        """One ECG at `self.fs`: signal (12, 10 * fs) float32 mV, leads I..V6 by name."""
        row = self._row(record_id)
        rel = row["filename"][self.fs]
        if not rel:
            raise DatasetError(f"{row['line']}: {_FILENAME_COLUMN[self.fs]} is empty")
        sig = read_wfdb_mv(self.root / rel)
        if sig.fs != self.fs:
            raise DatasetError(f"{sig.header}: fs {sig.fs:g} Hz; expected {self.fs} Hz")
        leads = canonical_leads(sig.sig_name, where=f"{sig.header}: leads")
        return Record(row["ecg_id"], sig.signal, sig.fs, leads, self.labels(record_id),
                      dict(row["meta"]), str(sig.header))

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Record]:
        return (self.read(rid) for rid in self.ids())

    # -- helpers -----------------------------------------------------------------------------

    def superclass_counts(self, ids: list[str] | None = None) -> dict[str, int]:
        """Records per diagnostic superclass (multi-label), plus "none": records with no superclass."""
        counts = dict.fromkeys(self.label_names, 0) | {"none": 0}
        for rid in self.ids() if ids is None else ids:
            supers = self.labels(rid)["superclasses"]
            for name in supers:
                counts[name] = counts.get(name, 0) + 1
            counts["none"] += not supers
        return counts

    def statement_descriptions(self) -> dict[str, str]:
        """SCP code -> English description ("SCP-ECG Statement Description", else `description`)."""
        return {code: s["text"] for code, s in self._statements.items()}
