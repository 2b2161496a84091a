"""Streaming R-peak detection, RR intervals and heart rate for one ECG lead in mV.

`RPeakDetector` is the QRS detector of Hamilton and Tompkins, as revised in Hamilton's open-source
ECG analysis software (OSEA, `qrsdet2.c`):

- Hamilton PS, Tompkins WJ. "Quantitative investigation of QRS detection rules using the MIT/BIH
  arrhythmia database." IEEE Trans Biomed Eng 33(12):1157-1165 (1986).
- Hamilton P. "Open source ECG analysis." Computers in Cardiology 29:101-104 (2002).

Feature signal: band-pass (5-15 Hz Butterworth), 10 ms difference, absolute value, 80 ms moving
average. Rules on the peaks of that feature, in the order of the 1986 paper:

1. a peak that precedes or follows a larger peak by less than 195 ms is ignored;
2. a peak whose raw-signal slope has no positive and negative parts of comparable size within
   150 ms is a baseline shift and ignored;
3. a peak above the detection threshold ``noise + TH * (qrs - noise)`` is a QRS; ``qrs`` and
   ``noise`` are the means of the last 8 QRS and noise peak heights, TH = 0.3125;
4. search-back: once 1.5 mean RR intervals have passed without a QRS, the largest noise peak at
   least 360 ms after the last QRS is a QRS if it exceeds half the threshold;
5. after 8 s without a QRS the levels are re-estimated from the largest peak of each second.

The first `LEARN_S` seconds set the initial levels (largest peak of each second), then the
candidates of that stretch are decided like every later one, so the first beats are not lost.

Streaming: every stage is causal with its state carried between calls, and every decision is a
function of sample indices only (a peak is final `LOOKAHEAD_S` after it; timed rules fire at fixed
indices), so a record fed whole or in chunks of any size gives the same peaks. Only the loop over
candidate peaks is Python; the filters and the peak search are vectorised per chunk.

Each detection is moved to the R wave in the input's own timeline: the largest absolute
deflection, either polarity, of a 0.5-40 Hz band-passed copy within +-`REFINE_S` of where the
feature peak puts the QRS (both filter delays compensated).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps

from edge_runtime.errors import SamplingRateError, SignalShapeError
from edge_runtime.filters import SosStage, design_band
from edge_runtime.signal import as_signal, check_fs

#: Sampling rates the detector accepts, in Hz.
FS_RANGE_HZ = (100.0, 1000.0)
BAND_HZ = (5.0, 15.0)            # QRS band of the feature signal
BAND_ORDERS = (2, 4)
WIDE_ORDERS = (2, 4)
WIDE_HZ = (0.5, 40.0)            # band of the copy used to place the R wave
DERIV_S = 0.010                  # difference lag
WINDOW_S = 0.080                 # moving-average width
LOOKAHEAD_S = 0.195              # rule 1: only one QRS in any 195 ms
BLS_WINDOW_S = 0.220             # rule 2 window and pairing limit
BLS_PAIR_S = 0.150
TH = 0.3125                      # rule 3
USE_BLS = True
USE_WIDE = True
TWAVE = True
MEDIAN = False
SEARCHBACK_RR = 1.5              # rule 4
SEARCHBACK_MIN_S = 0.360
RESET_S = 8                      # rule 5 (whole seconds)
LEARN_S = 4                      # initial learning stretch (whole seconds)
REFINE_S = 0.080
REFINE_LEFT_S = 0.08
REFINE_RIGHT_S = 0.08
REFINE_BASE = 'median'
N_AVG = 8
#: Smallest feature peak considered, in mV/s (about a 0.1 mV QRS): keeps a flat or unplugged lead silent.
MIN_PEAK = 0.5


class RPeakDetector:
    """Causal, stateful R-peak detector for one lead in mV at `fs` Hz (100..1000).

    >>> det = RPeakDetector(130.0)
    >>> for chunk in stream:
    ...     peaks = det.process(chunk)   # absolute sample indices of R peaks confirmed by this chunk
    """

    def __init__(self, fs: float):
        fs = check_fs(fs, "RPeakDetector.fs")
        if not FS_RANGE_HZ[0] <= fs <= FS_RANGE_HZ[1]:
            raise SamplingRateError(f"RPeakDetector.fs: expected {FS_RANGE_HZ[0]:g}..{FS_RANGE_HZ[1]:g} Hz, got {fs:g}")
        self.fs = fs
        self._k = max(1, round(DERIV_S * fs))
        self._w = max(2, round(WINDOW_S * fs))
        self._d = round(LOOKAHEAD_S * fs)
        band = design_band(fs, BAND_HZ[0], BAND_HZ[1], *BAND_ORDERS)
        wide = design_band(fs, WIDE_HZ[0], min(WIDE_HZ[1], 0.4 * fs), *WIDE_ORDERS)
        self._bp, self._wide = SosStage(band, 1), SosStage(wide, 1)
        g_band, g_wide = _delay_samples(band, fs, 10.0), (_delay_samples(wide, fs, 10.0) if USE_WIDE else 0.0)
        # feature index -> centre of the QRS in the wide copy's timeline, and wide -> input timeline
        self._to_qrs = round((self._w - 1) / 2 + self._k / 2 + g_band - g_wide)
        self._g_wide = round(g_wide)
        self._refine = max(1, round(REFINE_S * fs))
        self._bls = round(BLS_WINDOW_S * fs)
        self._ones = np.full(self._w, 1.0 / self._w)
        self.reset()

    @property
    def delay_s(self) -> float:
        """Decision latency: an R peak is reported at most this long after it occurred.

        Covers the 195 ms look-ahead of rule 1 and the feature filters' delay; beats found by
        search-back (rule 4) come later, up to 1.5 RR intervals, and the first ones after
        `LEARN_S` seconds of learning.
        """
        return (self._d + self._to_qrs + self._g_wide + self._refine) / self.fs

    def reset(self) -> None:
        """Forget everything: the next chunk starts a new stream at sample 0."""
        self._bp.reset()
        self._wide.reset()
        self._n = 0
        self._bp_tail: np.ndarray | None = None
        self._abs_tail = np.zeros(self._w - 1)
        self._wide_prev: float | None = None
        self._buf_start = 0
        self._feat = np.empty(0)
        self._wsig = np.empty(0)
        self._wder = np.empty(0)
        self._next_i = 0
        self._rules = _Rules(self.fs)

    def process(self, x: Any) -> np.ndarray:
        """Feed one chunk (1-D, mV); return the R peaks it confirmed, as absolute sample indices."""
        arr = np.asarray(x)
        if arr.ndim != 1:
            raise SignalShapeError(f"RPeakDetector.process: expected a 1-D chunk (one lead, mV), got shape {arr.shape}")
        x = as_signal(arr, ("ECG",), "RPeakDetector.process")
        if x.shape[1] == 0:
            return np.empty(0, np.int64)
        self._extend(x)
        self._n += x.shape[1]
        last = self._n - 1 - self._d  # every candidate up to here is final
        cands = self._candidates(last)
        peaks = self._rules.advance(cands, last)
        self._trim()
        return np.asarray(peaks, dtype=np.int64)

    # -- feature computation (vectorised, chunk-invariant) --
    def _extend(self, x: np.ndarray) -> None:
        bp = self._bp(x)[0]
        wide = self._wide(x)[0] if USE_WIDE else x[0]
        if self._bp_tail is None:
            self._bp_tail = np.repeat(bp[:1], self._k)
            self._wide_prev = float(wide[0])
        ext = np.concatenate([self._bp_tail, bp])
        der = np.abs(ext[self._k:] - ext[:-self._k]) * (self.fs / self._k)
        self._bp_tail = ext[-self._k:]
        ext = np.concatenate([self._abs_tail, der])
        feat = np.convolve(ext, self._ones, "valid")
        self._abs_tail = ext[-(self._w - 1):]
        wder = np.diff(wide, prepend=self._wide_prev) * self.fs
        self._wide_prev = float(wide[-1])
        self._feat = np.concatenate([self._feat, feat])
        self._wsig = np.concatenate([self._wsig, wide])
        self._wder = np.concatenate([self._wder, wder])

    def _candidates(self, last: int) -> list[tuple[int, float, bool, int]]:
        """Final candidate peaks in [next_i, last]: (feature index, height, not a baseline shift, R index)."""
        if last < self._next_i:
            return []
        f, s0, d = self._feat, self._buf_start, self._d
        lo, hi = self._next_i - s0, last - s0  # buffer positions
        seg = f[max(lo - 1, 0):hi + 2]
        off = max(lo - 1, 0)
        i = np.arange(1, seg.size - 1)
        local = (seg[i] > seg[i - 1]) & (seg[i] >= seg[i + 1])
        pos = i[local] + off
        pos = pos[(pos >= lo) & (pos <= hi) & (f[pos] >= MIN_PEAK)]
        self._next_i = last + 1
        if pos.size == 0:
            return []
        # rule 1: no larger peak within D before, none at least as large within D after
        left = np.arange(-d, 0)
        right = np.arange(1, d + 1)
        li = pos[:, None] + left
        lv = np.where(li >= 0, f[np.clip(li, 0, None)], -np.inf)
        rv = f[pos[:, None] + right]
        keep = (f[pos] > lv.max(axis=1)) & (f[pos] >= rv.max(axis=1))
        pos = pos[keep]
        if pos.size == 0:
            return []
        qrs = pos - self._to_qrs  # centre of the QRS in the wide copy, buffer positions
        bls_ok = self._bls_check(qrs)
        r_idx = self._refine_peaks(qrs)
        return [(int(p + s0), float(f[p]), bool(ok), int(r + s0 - self._g_wide), float(sl))
                for p, ok, r, sl in zip(pos, bls_ok, r_idx, self._slope)]

    def _window(self, centre: np.ndarray, half: int, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.clip(centre[:, None] + np.arange(-half, half + 1), 0, sig.size - 1)
        return idx, sig[idx]

    def _bls_check(self, qrs: np.ndarray) -> np.ndarray:
        """Rule 2: both slope signs, each at least 1/8 of the other, peaks less than 150 ms apart."""
        _, der = self._window(qrs, self._bls // 2, self._wder)
        mx, mn = der.max(axis=1), -der.min(axis=1)
        t_mx, t_mn = der.argmax(axis=1), der.argmin(axis=1)
        self._slope = np.maximum(mx, mn)
        return (mx > mn / 8) & (mn > mx / 8) & (np.abs(t_mx - t_mn) < BLS_PAIR_S * self.fs)

    def _refine_peaks(self, qrs: np.ndarray) -> np.ndarray:
        """Buffer position of the largest absolute deflection of the wide copy near each QRS."""
        lo, hi = round(REFINE_LEFT_S * self.fs), round(REFINE_RIGHT_S * self.fs)
        idx = np.clip(qrs[:, None] + np.arange(-lo, hi + 1), 0, self._wsig.size - 1)
        seg = self._wsig[idx]
        if REFINE_BASE == "median":
            seg = seg - np.median(seg, axis=1, keepdims=True)
        return idx[np.arange(idx.shape[0]), np.abs(seg).argmax(axis=1)]

    def _trim(self) -> None:
        keep_from = self._next_i - self._d - self._to_qrs - max(self._refine, self._bls) - 2
        drop = max(0, keep_from - self._buf_start)
        if drop:
            self._feat, self._wsig, self._wder = self._feat[drop:], self._wsig[drop:], self._wder[drop:]
            self._buf_start += drop


def _delay_samples(sos: np.ndarray, fs: float, freq: float) -> float:
    """Group delay of an SOS cascade at `freq` Hz, in samples."""
    b, a = sps.sos2tf(sos)
    _, gd = sps.group_delay((b, a), w=[freq], fs=fs)
    return float(gd[0])


class _Rules:
    """Decision rules 3-5 over final candidates, in index order (see the module docstring)."""

    def __init__(self, fs: float):
        self.fs = fs
        self.learn_end = LEARN_S * round(fs)
        self.learning: list[tuple[int, float, bool, int]] | None = []
        self.qrs: deque[float] = deque(maxlen=N_AVG)
        self.noise: deque[float] = deque(maxlen=N_AVG)
        self.rr: deque[float] = deque(maxlen=N_AVG)
        self.last: int | None = None          # feature index of the last QRS
        self.ref = 0                           # start of the current 1 s bins (rule 5)
        self.bins = [0.0] * RESET_S
        self.sb_peak, self.sb_loc, self.sb_r, self.sb_slope = 0.0, -1, -1, 0.0
        self.last_slope = 0.0
        self.sb_due: int | None = None         # search-back opens after this index
        self.sb_open = False
        self.thresh = math.inf
        self.out: list[int] = []

    def advance(self, cands: list[tuple[int, float, bool, int]], last: int) -> list[int]:
        self.out = []
        for cand in cands:
            self._timed(cand[0] - 1)
            if self.learning is not None:
                self.learning.append(cand)
            else:
                self._candidate(cand)
        self._timed(last)
        return self.out

    def _timed(self, upto: int) -> None:
        """Fire the index-timed events (end of learning, search-back, 8 s reset) up to `upto`."""
        while True:
            if self.learning is not None:
                if self.learn_end > upto:
                    return
                self._end_learning()
                continue
            if self.sb_due is not None and self.sb_due <= upto and not self.sb_open:
                self.sb_open = True
                self._search_back()
                continue
            reset_at = self.ref + RESET_S * round(self.fs)
            if reset_at <= upto:
                self._reset_levels(reset_at)
                continue
            return

    def _end_learning(self) -> None:
        cands, self.learning = self.learning, None
        sec = round(self.fs)
        maxima = [0.0] * LEARN_S
        for idx, h, *_ in cands:
            maxima[min(idx // sec, LEARN_S - 1)] = max(maxima[min(idx // sec, LEARN_S - 1)], h)
        self.qrs.extend((maxima * N_AVG)[:N_AVG])
        self.noise.extend([0.0] * N_AVG)
        self.rr.extend([self.fs] * N_AVG)
        self._update_thresh()
        self.ref = 0
        self.sb_due = round(1.65 * self.fs)
        for cand in cands:
            self._timed(cand[0] - 1)
            self._candidate(cand)

    def _update_thresh(self) -> None:
        if MEDIAN:
            q, n = sorted(self.qrs)[len(self.qrs) // 2], sorted(self.noise)[len(self.noise) // 2]
        else:
            q, n = sum(self.qrs) / len(self.qrs), sum(self.noise) / len(self.noise)
        self.thresh = n + TH * (q - n)

    def _candidate(self, cand: tuple[int, float, bool, int]) -> None:
        idx, h, bls_ok, r, slope = cand
        k = (idx - self.ref - 1) // round(self.fs)
        if 0 <= k < RESET_S:
            self.bins[k] = max(self.bins[k], h)
        if not bls_ok and USE_BLS:
            return
        twave = (TWAVE and self.last is not None and idx - self.last < SEARCHBACK_MIN_S * self.fs
                 and slope < 0.5 * self.last_slope)
        if h > self.thresh and not twave:
            self._beat(idx, h, r, slope)
            return
        self.noise.append(h)
        self._update_thresh()
        if h > self.sb_peak and (self.last is None or idx - self.last >= SEARCHBACK_MIN_S * self.fs):
            self.sb_peak, self.sb_loc, self.sb_r, self.sb_slope = h, idx, r, slope
        if self.sb_open:
            self._search_back()

    def _search_back(self) -> None:
        if self.sb_peak > 0 and self.sb_peak > self.thresh / 2:
            self._beat(self.sb_loc, self.sb_peak, self.sb_r, self.sb_slope)

    def _beat(self, idx: int, h: float, r: int, slope: float) -> None:
        self.last_slope = slope
        self.qrs.append(h)
        if self.last is not None:
            self.rr.append(float(idx - self.last))
        self._update_thresh()
        self.last = idx
        self.ref = idx
        self.bins = [0.0] * RESET_S
        self.sb_peak, self.sb_open = 0.0, False
        self.sb_due = idx + round(SEARCHBACK_RR * sum(self.rr) / len(self.rr))
        self.out.append(r)

    def _reset_levels(self, at: int) -> None:
        """Rule 5: 8 s without a QRS: levels from the largest peak of each second."""
        self.qrs.extend(self.bins)
        self.noise.extend([0.0] * N_AVG)
        self.rr.extend([self.fs] * N_AVG)
        self._update_thresh()
        self.ref = at
        self.bins = [0.0] * RESET_S
        self.sb_peak, self.sb_open = 0.0, True
        self.sb_due = at
