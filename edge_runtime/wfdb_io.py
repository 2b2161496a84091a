"""Reading a WFDB record as float32 millivolts: the one WFDB reader of the project (the dataset
readers in `train.data`, `ecg-edge stream --source replay:` and the virtual wearable's replay in
`firmware_bridge.replay` all call it). wfdb is imported lazily (the `replay` extra; `train` brings
it too), so the runtime stays importable without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_runtime.errors import DatasetError, require
from edge_runtime.sources import wfdb_header_rate

#: WFDB unit string (lower case) -> factor to millivolts (ASCII "u", micro sign and Greek mu for µV).
UNITS_TO_MV = {"mv": 1.0, "uv": 1e-3, "\u00b5v": 1e-3, "\u03bcv": 1e-3, "v": 1e3}


@dataclass(frozen=True)
class WfdbSignal:
    """What `read_wfdb_mv` returns: the signal (n_leads, n_samples) float32 mV and its header."""

    signal: np.ndarray
    fs: float
    sig_name: tuple[str, ...]
    comments: tuple[str, ...]
    header: Path


def read_wfdb_mv(base: str | Path, leads: Sequence[str] | None = None, start_s: float = 0.0,
                 duration_s: float | None = None) -> WfdbSignal:
    """Read the WFDB record at `base` (path without extension, or with .hea/.dat/.mat) as float32 mV.

    leads: channel names to read, in that order (None: all). start_s / duration_s: the part to read
    (None: to the end). Unit rule: each channel's header units are converted to millivolts
    (`UNITS_TO_MV`: mV, µV, V); anything else raises `DatasetError`. NaN rule: wfdb's physical
    values ((digital - baseline) / gain) with the format's missing-sample code as NaN, never filled
    in here, so a gap in the recording is never mistaken for signal: the consumer decides (the
    signal contract refuses a record with NaN, naming lead and sample; the streaming engine bridges
    and counts them; an int24 wearable frame cannot carry NaN, so `firmware_bridge.replay` sends 0). The header's rate field is checked (`edge_runtime.sources.wfdb_header_rate`):
    wfdb reads a missing or unparsable rate as 250 Hz. Any failure is a `DatasetError` naming the header.
    """
    base = Path(base)
    base = base.with_suffix("") if base.suffix in (".hea", ".dat", ".mat") else base
    header = Path(f"{base}.hea")
    fs = wfdb_header_rate(header)
    wfdb = require("wfdb", "replay", f"reading the WFDB record {header}")
    part: dict[str, Any] = {}
    if leads is not None or start_s or duration_s is not None:
        part = _part(wfdb, base, header, fs, leads, start_s, duration_s)
    try:
        rec = wfdb.rdrecord(str(base), return_res=32, **part)
    except Exception as exc:  # noqa: BLE001 - wfdb raises many types for a damaged file; all mean the same here
        raise DatasetError(f"{header}: unreadable WFDB record ({_one_line(exc)})") from None
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[0] == 0:
        raise DatasetError(f"{header}: WFDB record holds no samples")
    scale = np.ones(rec.p_signal.shape[1], dtype=np.float32)
    for i, unit in enumerate(rec.units or ["mV"] * len(scale)):
        factor = UNITS_TO_MV.get(str(unit or "mV").strip().lower())
        if factor is None:
            raise DatasetError(f"{header}: channel {i} units {unit!r}; expected 'mV', 'uV' or 'V'")
        scale[i] = factor
    signal = np.ascontiguousarray(rec.p_signal.T, dtype=np.float32) * scale[:, None]
    return WfdbSignal(signal, fs, tuple(rec.sig_name), tuple(rec.comments or ()), header)


def _part(wfdb: Any, base: Path, header: Path, fs: float, leads: Sequence[str] | None, start_s: float,
          duration_s: float | None) -> dict[str, Any]:
    """rdrecord's channel_names / sampfrom / sampto for part of a record, checked against its header."""
    try:
        head = wfdb.rdheader(str(base))
    except Exception as exc:  # noqa: BLE001 - as above, for the header alone
        raise DatasetError(f"{header}: unreadable WFDB header ({_one_line(exc)})") from None
    for lead in leads or ():
        if lead not in head.sig_name:
            raise DatasetError(f"{header}: lead {lead!r} not in the record (it has {', '.join(head.sig_name)})")
    start = int(round(start_s * fs))
    stop = None if duration_s is None else min(head.sig_len, start + int(round(duration_s * fs)))
    return {"channel_names": None if leads is None else list(leads), "sampfrom": start, "sampto": stop}


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
