"""MIT-BIH Arrhythmia Database reader: 48 half-hour two-lead ambulatory records, beat and rhythm labels.

Dataset: Moody GB, Mark RG. "The impact of the MIT-BIH Arrhythmia Database." IEEE Engineering
in Medicine and Biology 20(3):45-50 (2001); Goldberger AL, et al. "PhysioBank, PhysioToolkit,
and PhysioNet." Circulation 101(23):e215-e220 (2000); PhysioNet, ODC-By 1.0.

Beat classes follow ANSI/AAMI EC57 as used by de Chazal P, O'Dwyer M, Reilly RB. "Automatic
classification of heartbeats using ECG morphology and heartbeat interval features." IEEE Trans
Biomed Eng 51(7):1196-1206 (2004), which also defines the inter-patient DS1/DS2 split used here.

Layout read here: `RECORDS` (the index), `<record>.hea` + `<record>.dat` (format 212, 360 Hz,
two leads: MLII plus V1/V2/V4/V5 in most records, but record 114 stores V5 first and the paced
records 102 and 104 have no MLII at all: address leads by name) and `<record>.atr` (reference
beat annotations; rhythm changes as `+` annotations whose aux note reads "(AFIB", "(N", ...).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import wfdb

from edge_runtime.errors import DatasetError
from edge_runtime.spec import Record, canonical_leads
from train.data.sources import check_split
from edge_runtime.wfdb_io import read_wfdb_mv

_INDEX = "RECORDS"
#: Beat annotation symbol -> AAMI class. Every other symbol (+ ~ | x " [ ] ! ...) is not a beat.
AAMI_CLASSES: dict[str, tuple[str, ...]] = {
    "N": ("N", "L", "R", "e", "j"),
    "S": ("A", "a", "J", "S"),
    "V": ("V", "E"),
    "F": ("F",),
    "Q": ("/", "f", "Q"),
}
#: Records with a pacemaker (AAMI EC57 excludes them from beat-classification benchmarks).
PACED: tuple[str, ...] = ("102", "104", "107", "217")
#: de Chazal et al. 2004 inter-patient split: DS1 for training, DS2 for testing.
DS1: tuple[str, ...] = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
                        "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2: tuple[str, ...] = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210",
                        "212", "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")


def _aami(symbols: np.ndarray) -> np.ndarray:
    """AAMI class per symbol ("" for a non-beat annotation), without a Python loop over symbols."""
    out = np.full(symbols.shape, "", dtype="<U1")
    for cls, members in AAMI_CLASSES.items():
        out[np.isin(symbols, members)] = cls
    return out


def _rhythm_episodes(sample: np.ndarray, symbol: np.ndarray, aux: list[str],
                     sig_len: int) -> list[dict[str, Any]]:
    """Episodes from `+` annotations: each runs to the next rhythm change or the record end.

    Aux notes are NUL-padded in the .atr files ("(AFIB\\x00"); the padding is stripped.
    Consecutive annotations of the same rhythm extend one episode; the stretch before the first
    rhythm annotation is left unlabelled (not guessed).
    """
    changes: list[tuple[int, str]] = []
    for i in np.flatnonzero(symbol == "+"):
        note = aux[i].replace("\x00", "").strip()
        if note.startswith("(") and len(note) > 1:
            rhythm, start = note[1:], int(sample[i])
            if changes and changes[-1][0] == start:  # two changes at one sample: the later wins
                changes.pop()
            if not changes or changes[-1][1] != rhythm:
                changes.append((start, rhythm))
    episodes = []
    for k, (start, rhythm) in enumerate(changes):
        end = changes[k + 1][0] if k + 1 < len(changes) else sig_len
        if end > start:
            episodes.append({"rhythm": rhythm, "start": start, "end": end})
    return episodes


def _header_meta(comments: tuple[str, ...]) -> dict[str, Any]:
    """Age and sex from the first header comment ("# 69 M 1085 1629 x1"); -1 / "?" mean unknown."""
    first = comments[0].split() if comments else []
    age = int(first[0]) if first and first[0].lstrip("-").isdigit() else None
    sex = first[1] if len(first) > 1 and first[1] in ("M", "F") else None
    return {"age": age if age is not None and age >= 0 else None, "sex": sex,
            "comments": list(comments[1:])}


class MitBih:
    """MIT-BIH Arrhythmia Database (Moody and Mark 2001): 48 records, 360 Hz, 2 leads, ~30 min.

    `labels`: "target" multi-hot over `label_names` = ("AFIB",): 1 when the record contains any
    AFIB episode (records 201, 202, 203, 210, 219, 221, 222 and the paced 217). It is a
    record-level label: window-level labels are to be cut from "rhythm_episodes" (list of
    {rhythm, start, end} in samples, end exclusive). "beats" holds numpy arrays `sample`
    (int64), `symbol` and `aami` (N, S, V, F or Q), for beat annotations only.

    Splits: de Chazal et al. 2004 inter-patient DS1 = train, DS2 = test. "val" is empty: the
    paced records (102, 104, 107, 217) belong to neither set (AAMI EC57 leaves paced records
    out), and a validation set cut from DS1's 22 records has to be chosen by the caller for the
    task at hand. Known quirk of the split: records 201 (DS1) and 202 (DS2) come from the same
    patient (identical header comment lines).
    """

    name: str = "mitdb"
    label_names: tuple[str, ...] = ("AFIB",)
    multilabel: bool = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        index = self.root / _INDEX
        if not index.is_file():
            raise DatasetError(f"{index}: not found; expected the list of record names (one a line)")
        names = index.read_text(encoding="utf-8").split()
        if not names or len(set(names)) != len(names):
            raise DatasetError(f"{index}: expected distinct record names, one a line, got {len(names)} names")
        self._ids = names

    def ids(self, split: str | None = None) -> list[str]:
        """Record names in RECORDS order; "train" = DS1, "test" = DS2, "val" = [] (see class doc)."""
        check_split(split)
        keep = {None: None, "train": DS1, "val": (), "test": DS2}[split]
        return [r for r in self._ids if keep is None or r in keep]

    def _base(self, record_id: str) -> Path:
        rid = str(record_id).strip()
        if rid not in self._ids:
            raise DatasetError(f"{self.root / _INDEX}: no record {record_id!r}")
        return self.root / rid

    def _annotations(self, record_id: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        base = self._base(record_id)
        path = Path(f"{base}.atr")
        if not path.is_file():
            raise DatasetError(f"{path}: annotation file not found")
        try:
            ann = wfdb.rdann(str(base), "atr")
        except Exception as exc:  # wfdb raises many types for a damaged file
            raise DatasetError(f"{path}: unreadable annotations ({' '.join(str(exc).split())})") from exc
        aux = list(ann.aux_note) if ann.aux_note is not None else [""] * len(ann.symbol)
        return np.asarray(ann.sample, dtype=np.int64), np.asarray(ann.symbol, dtype=str), aux

    def _sig_len(self, record_id: str) -> int:
        base = self._base(record_id)
        header = Path(f"{base}.hea")
        if not header.is_file():
            raise DatasetError(f"{header}: WFDB header not found")
        try:
            return int(wfdb.rdheader(str(base)).sig_len)
        except Exception as exc:  # wfdb raises many types for a damaged file
            raise DatasetError(f"{header}: unreadable header ({' '.join(str(exc).split())})") from exc

    def labels(self, record_id: str, sig_len: int | None = None) -> dict[str, Any]:
        """Beat and rhythm labels of one record from its `.atr` file (and header, for the length)."""
        sample, symbol, aux = self._annotations(record_id)
        if sig_len is None:
            sig_len = self._sig_len(record_id)
        aami = _aami(symbol)
        beat = aami != ""
        episodes = _rhythm_episodes(sample, symbol, aux, sig_len)
        has = {ep["rhythm"] for ep in episodes}
        return {
            "target": np.array([name in has for name in self.label_names], dtype=np.float32),
            "beats": {"sample": sample[beat], "symbol": symbol[beat], "aami": aami[beat]},
            "rhythm_episodes": episodes,
        }

    def read(self, record_id: str) -> Record:
        """One record: signal (2, 650000) float32 mV at 360 Hz, leads by name, beats and rhythms."""
        sig = read_wfdb_mv(self._base(record_id))
        leads = canonical_leads(sig.sig_name, where=f"{sig.header}: leads")
        rid = str(record_id).strip()
        meta = {"paced": rid in PACED, **_header_meta(sig.comments)}
        labels = self.labels(rid, sig_len=sig.signal.shape[1])
        return Record(rid, sig.signal, sig.fs, leads, labels, meta, str(sig.header))

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[Record]:
        return (self.read(rid) for rid in self.ids())

    def beat_counts(self, record_id: str) -> dict[str, int]:
        """Beats per AAMI class (N, S, V, F, Q; zeros included) from the `.atr` file only."""
        _, symbol, _ = self._annotations(record_id)
        aami = _aami(symbol)
        return {cls: int(np.count_nonzero(aami == cls)) for cls in AAMI_CLASSES}
