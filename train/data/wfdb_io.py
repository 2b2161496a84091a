"""Reading one WFDB record as float32 millivolts: the one WFDB reader every dataset module uses."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from edge_runtime.errors import DatasetError
from edge_runtime.sources import wfdb_header_rate

#: WFDB unit strings that mean microvolts (ASCII "u", micro sign, Greek mu).
_MICROVOLT_UNITS = {"uv", "\u00b5v", "\u03bcv"}


@dataclass(frozen=True)
class WfdbSignal:
    """What `read_wfdb_mv` returns: the signal (n_leads, n_samples) float32 mV and its header."""

    signal: np.ndarray
    fs: float
    sig_name: tuple[str, ...]
    comments: tuple[str, ...]
    header: Path


def read_wfdb_mv(base: Path) -> WfdbSignal:
    """Read the WFDB record at `base` (path without extension) as float32 millivolts.

    Uses wfdb's physical units ((digital - baseline) / gain, missing samples as NaN, never
    filled in) and checks each channel's header units: "mV" is kept, microvolts are divided by
    1000, anything else raises `DatasetError`. The header's rate field is checked here
    (`edge_runtime.sources.wfdb_header_rate`): wfdb reads a missing or unparsable rate as 250 Hz.
    A missing or malformed file raises `DatasetError` naming it.
    """
    header = Path(f"{base}.hea")
    fs = wfdb_header_rate(header)
    try:
        rec = wfdb.rdrecord(str(base), return_res=32)
    except Exception as exc:  # wfdb raises many types for a damaged file; all mean the same here
        raise DatasetError(f"{header}: unreadable WFDB record ({_one_line(exc)})") from exc
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[0] == 0:
        raise DatasetError(f"{header}: WFDB record holds no samples")
    scale = np.ones(rec.p_signal.shape[1], dtype=np.float32)
    for i, unit in enumerate(rec.units or ["mV"] * len(scale)):
        key = str(unit or "mV").strip().lower()
        if key in _MICROVOLT_UNITS:
            scale[i] = 1e-3
        elif key != "mv":
            raise DatasetError(f"{header}: channel {i} units {unit!r}; expected 'mV' or 'uV'")
    signal = np.ascontiguousarray(rec.p_signal.T, dtype=np.float32) * scale[:, None]
    return WfdbSignal(signal, fs, tuple(rec.sig_name), tuple(rec.comments or ()), header)


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())
