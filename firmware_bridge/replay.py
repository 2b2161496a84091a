"""Signals for a virtual wearable to replay: a recording at the device's rate in µV, its R peaks and
the Heart Rate Service values a chest strap would derive from them (WFDB records through
`edge_runtime.wfdb_io.read_wfdb_mv`, wfdb imported lazily).

Resampling uses the project's one resampler (`edge_runtime.filters`: Kaiser-windowed polyphase
FIR, 60 dB stopband from the lower Nyquist frequency), run over the whole record with its group
delay removed, so the replayed signal lines up with the recording.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edge_runtime.beats import RPeakDetector
from edge_runtime.errors import DatasetError
from edge_runtime.filters import PolyphaseResampler, design_resampler
from edge_runtime.sources import load_npy
from edge_runtime.wfdb_io import read_wfdb_mv

#: Range of a Polar int24 µV sample.
INT24_MIN, INT24_MAX = -(1 << 23), (1 << 23) - 1


def resample_mv(x_mv: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Anti-aliased rational resampling of a whole 1-D record, aligned (group delay removed)."""
    if fs_in == fs_out:
        return np.asarray(x_mv, dtype=np.float64)
    up, down, phases = design_resampler(fs_in, fs_out)
    delay_out = int(round((phases.size - 1) / 2.0 / (up * fs_in) * fs_out))
    n_out = x_mv.size * up // down
    tail = int(np.ceil((delay_out + 1) * down / up)) + 1  # inputs that flush the delayed outputs
    x = np.concatenate([x_mv, np.full(tail, x_mv[-1])])[None, :]
    y, _ = PolyphaseResampler(up, down, phases, 1)(x, np.zeros(x.shape, dtype=bool))
    return y[0, delay_out:delay_out + n_out]


def replay_signal(source: str | Path | np.ndarray, fs_in: float | None = None, fs_out: float = 130.0,
                  lead: str = "MLII", start_s: float = 0.0, duration_s: float | None = None,
                  row: int | None = None) -> np.ndarray:
    """A recording as int32 µV at `fs_out`, ready for `VirtualWearable`.

    source: a WFDB record path (with or without .hea), a .npy file of mV under the .npy replay
    contract (`edge_runtime.sources.load_npy`: (n,) or (1, n), or (k, n) with `row`), or a 1-D mV
    array. fs_in: the source rate (taken from the WFDB header, where a different fs_in is an error;
    required otherwise). A wearable sends numbers: non-finite samples go out as 0 mV. Values are
    clipped to the int24 range of a Polar frame.
    """
    if isinstance(source, (str, Path)) and Path(source).suffix != ".npy":
        rec = read_wfdb_mv(source, (lead,), start_s, duration_s)  # the one WFDB reader: float32 mV
        x, fs_rec = rec.signal[0].astype(np.float64), rec.fs
        if fs_in is not None and not np.isclose(fs_in, fs_rec, rtol=1e-9, atol=0):
            raise DatasetError(f"{Path(source).with_suffix('')}.hea: records at {fs_rec:g} Hz, not the {fs_in:g} Hz "
                               "given (--fs is for .npy files only)")
        fs_in = fs_rec
    else:
        if fs_in is None:
            raise DatasetError(f"replay_signal: fs_in (--fs): expected the rate of the "
                               f"{'.npy file ' + str(source) if isinstance(source, (str, Path)) else 'array'}, got None")
        x = load_npy(source, row)[0] if isinstance(source, (str, Path)) else \
            np.asarray(source, dtype=np.float64).ravel()
        start = int(round(start_s * fs_in))
        x = x[start:] if duration_s is None else x[start:start + int(round(duration_s * fs_in))]
    if x.size == 0:
        raise DatasetError(f"replay_signal: {source if not isinstance(source, np.ndarray) else 'array'}: no samples")
    y = resample_mv(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), float(fs_in), float(fs_out))
    return np.clip(np.rint(y * 1000.0), INT24_MIN, INT24_MAX).astype(np.int32)


def r_peaks(signal_uv: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of a single-lead ECG in µV, by the project's detector
    (`edge_runtime.beats.RPeakDetector`, Hamilton & Tompkins), the record fed whole.

    One second of the last value is appended so the detector confirms peaks near the end.
    """
    x = np.asarray(signal_uv, dtype=np.float64).ravel() / 1000.0
    if x.size == 0:
        return np.zeros(0, dtype=np.int64)
    peaks = RPeakDetector(fs).process(np.concatenate([x, np.full(int(np.ceil(fs)), x[-1])]))
    return peaks[peaks < x.size].astype(np.int64)


def heart_rate_plan(beat_times_s: Sequence[float] | np.ndarray, duration_s: float,
                    average_beats: int = 4) -> list[tuple[int, tuple[int, ...]]]:
    """What a strap notifies once per second: (bpm, RR intervals in 1/1024 s) for seconds 1..N.

    Notification k (k = 1, 2, ...) carries the RR intervals of the beats in ((k-1) s, k s] that
    follow another beat, and the bpm of the mean of the last `average_beats` RR intervals up to
    k s (0 before the second beat).
    """
    t = np.sort(np.asarray(beat_times_s, dtype=np.float64))
    rr = np.diff(t)
    rr_1024 = np.rint(rr * 1024).astype(np.int64)
    csum = np.concatenate([[0.0], np.cumsum(rr)])
    plan = []
    for k in range(1, int(np.floor(duration_s)) + 1):
        lo, hi = np.searchsorted(t, [k - 1, k], side="right")  # beats in (k-1, k]
        beats_rr = rr_1024[max(lo, 1) - 1:hi - 1] if hi >= 2 else rr_1024[:0]
        n_rr = max(0, hi - 1)  # RR intervals completed by k s
        m = min(average_beats, n_rr)
        bpm = int(round(60.0 * m / (csum[n_rr] - csum[n_rr - m]))) if m else 0
        plan.append((min(bpm, 255), tuple(int(v) for v in beats_rr)))
    return plan
