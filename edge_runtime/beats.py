"""Streaming R-peak detection, RR intervals and heart rate for one ECG lead in mV.

`RPeakDetector` is the QRS detector of Hamilton and Tompkins, as revised in Hamilton's open-source
ECG analysis software (OSEA, `qrsdet2.c`), with Pan and Tompkins' T-wave rule:

- Hamilton PS, Tompkins WJ. "Quantitative investigation of QRS detection rules using the MIT/BIH
  arrhythmia database." IEEE Trans Biomed Eng 33(12):1157-1165 (1986).
- Hamilton P. "Open source ECG analysis." Computers in Cardiology 29:101-104 (2002).
- Pan J, Tompkins WJ. "A real-time QRS detection algorithm." IEEE Trans Biomed Eng
  32(3):230-236 (1985).

Feature signal: band-pass (5-15 Hz Butterworth, `design_band` + `SosStage`), 10 ms difference,
absolute value, 80 ms moving average. Rules on the peaks of that feature:

1. a peak that precedes or follows a larger peak by less than 195 ms is ignored;
2. a peak without positive and negative slopes of comparable size (each at least 1/8 of the
   other, less than 150 ms apart) within 220 ms is a baseline shift and ignored;
3. a peak above ``noise + 0.3125 * (qrs - noise)`` is a QRS, where ``qrs`` and ``noise`` are the
   means of the last 8 QRS and noise peak heights -- unless it comes less than 360 ms after the
   last QRS with less than half its steepest slope (a T wave; Pan and Tompkins 1985);
4. search-back: once 1.5 mean RR intervals have passed without a QRS, the largest noise peak at
   least 360 ms after the last QRS is a QRS if it exceeds half the threshold;
5. after 8 s without a QRS the levels restart from the largest peak of each of those seconds.

The first `LEARN_S` seconds set the initial levels (largest peak of each second), then the
candidates of that stretch are decided like every later one, so the first beats are not lost.

Streaming: every stage is causal with its state carried between calls, and every decision is a
function of sample indices only (a peak is final `LOOKAHEAD_S` after it; timed rules fire at fixed
indices), so a record fed whole or in chunks of any size gives the same peaks. Only the loop over
candidate peaks is Python; filters, peak search and per-peak measurements are vectorised.

Each detection is placed on the R wave in the input's own timeline: the largest absolute value,
either polarity (inverted QRS included), of a 0.5-40 Hz band-passed copy in a window from 120 ms
before to 50 ms after where the feature peak puts the QRS centre (filter delays compensated; the
window leans early because a wide QRS moves the feature peak late).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

import numpy as np
from scipy import signal as sps

from edge_runtime.errors import SamplingRateError, SignalShapeError, SignalValueError
from edge_runtime.filters import SosStage, design_band
from edge_runtime.signal import as_signal, check_fs

#: Sampling rates the detector accepts, in Hz.
FS_RANGE_HZ = (100.0, 1000.0)
BAND_HZ = (5.0, 15.0)            # QRS band of the feature signal
WIDE_HZ = (0.5, 40.0)            # band of the copy used to place the R wave
DERIV_S = 0.010                  # difference lag
WINDOW_S = 0.080                 # moving-average width
LOOKAHEAD_S = 0.195              # rule 1
BLS_WINDOW_S, BLS_PAIR_S = 0.220, 0.150  # rule 2
TH = 0.3125                      # rule 3
TWAVE_S = 0.360                  # rules 3 and 4
SEARCHBACK_RR = 1.5              # rule 4
RESET_S = 8                      # rule 5 (whole seconds)
LEARN_S = 4                      # initial learning stretch (whole seconds)
REFINE_S = (0.120, 0.050)        # R-wave search window before / after the estimated QRS centre
N_AVG = 8
#: Smallest feature peak considered, in mV/s (a QRS of about 0.05 mV): a flat or unplugged lead stays silent.
MIN_PEAK = 1.0


class _Cand(NamedTuple):
    idx: int        # feature-signal index of the peak
    height: float
    qrs_like: bool  # passed rule 2
    r: int          # R-wave index in the input
    slope: float    # steepest slope near it, mV/s


class RPeakDetector:
    """Causal, stateful R-peak detector for one lead in mV at `fs` Hz (100..1000).

    >>> det = RPeakDetector(130.0)
    >>> for chunk in stream:
    ...     peaks = det.process(chunk)   # absolute sample indices of R peaks confirmed by this chunk
    """

    def __init__(self, fs: float):
        fs = check_fs(fs, "RPeakDetector.fs")
        if not FS_RANGE_HZ[0] <= fs <= FS_RANGE_HZ[1]:
            raise SamplingRateError(
                f"RPeakDetector.fs: expected {FS_RANGE_HZ[0]:g}..{FS_RANGE_HZ[1]:g} Hz, got {fs:g}")
        self.fs = fs
        self._k = max(1, round(DERIV_S * fs))
        self._w = max(2, round(WINDOW_S * fs))
        self._d = round(LOOKAHEAD_S * fs)
        self._ones = np.full(self._w, 1.0 / self._w)
        band = design_band(fs, BAND_HZ[0], BAND_HZ[1])
        wide = design_band(fs, WIDE_HZ[0], min(WIDE_HZ[1], 0.4 * fs))
        self._band, self._wide = SosStage(band, 1), SosStage(wide, 1)
        g_band, g_wide = _delay_samples(band, fs), _delay_samples(wide, fs)
        # feature index -> QRS centre in the wide copy; wide copy -> input timeline
        self._to_qrs = round((self._w - 1) / 2 + self._k / 2 + g_band - g_wide)
        self._g_wide = round(g_wide)
        self._refine = (round(REFINE_S[0] * fs), round(REFINE_S[1] * fs))
        self._bls_half = round(BLS_WINDOW_S * fs / 2)
        self._bls_offsets = np.arange(-self._bls_half, self._bls_half + 1)
        self._refine_offsets = np.arange(-self._refine[0], self._refine[1] + 1)
        self.reset()

    @property
    def delay_s(self) -> float:
        """Decision latency: a beat found by rule 3 is reported at most this long after its R peak.

        The 195 ms look-ahead of rule 1 plus the feature filters' delay. Beats found by
        search-back (rule 4) come up to 1.5 RR intervals later, and the first beats of a stream
        after `LEARN_S` seconds of learning.
        """
        return (self._d + self._to_qrs + self._g_wide + self._refine[0]) / self.fs

    @property
    def final_until(self) -> int:
        """Every R peak before this input sample index has been reported; none will be added there.

        Candidates are final up to the rule-1 look-ahead, but a noise peak kept for search-back
        (rule 4) can still become a beat, and nothing is decided while learning.
        """
        if self._rules.learning is not None:
            return 0
        horizon = self._n - self._d - self._to_qrs - self._refine[0] - self._g_wide
        sb = self._rules.sb
        return max(0, min(horizon, sb.r if sb is not None else horizon))

    def reset(self) -> None:
        """Forget everything: the next chunk starts a new stream at sample 0."""
        self._band.reset()
        self._wide.reset()
        self._n = 0
        self._band_tail: np.ndarray | None = None   # last k band-passed samples
        self._abs_tail = np.zeros(self._w - 1)       # last w-1 |difference| samples
        self._wide_prev = 0.0
        self._start = 0                              # absolute index of the buffers' first sample
        self._feat = np.empty(0)
        self._wsig = np.empty(0)
        self._wder = np.empty(0)
        self._next = 0                               # first index not yet searched for peaks
        self._rules = _Rules(self.fs)

    def process(self, x: Any) -> np.ndarray:
        """Feed one chunk (1-D, mV); return the R peaks it confirmed, as absolute sample indices."""
        arr = np.asarray(x)
        if arr.ndim != 1:
            raise SignalShapeError(
                f"RPeakDetector.process: expected a 1-D chunk (one lead, mV), got shape {arr.shape}")
        chunk = as_signal(arr, ("ECG",), "RPeakDetector.process")
        if chunk.shape[1] == 0:
            return np.empty(0, np.int64)
        self._extend(chunk)
        self._n += chunk.shape[1]
        last = self._n - 1 - self._d  # every candidate up to here is final
        peaks = self._rules.advance(self._candidates(last), last)
        self._trim()
        return np.asarray(peaks, dtype=np.int64)

    def _extend(self, chunk: np.ndarray) -> None:
        """Append the feature signal, the wide copy and its slope for a new chunk."""
        band = self._band(chunk)[0]
        wide = self._wide(chunk)[0]
        if self._band_tail is None:
            self._band_tail = np.repeat(band[:1], self._k)
            self._wide_prev = float(wide[0])
        ext = np.concatenate([self._band_tail, band])
        diff = np.abs(ext[self._k:] - ext[:-self._k]) * (self.fs / self._k)
        self._band_tail = ext[-self._k:]
        ext = np.concatenate([self._abs_tail, diff])
        feat = np.convolve(ext, self._ones, "valid")  # each output sums the same samples, however chunked
        self._abs_tail = ext[-(self._w - 1):]
        wder = np.empty_like(wide)  # first difference across chunk borders (np.diff's prepend is slow)
        wder[0] = wide[0] - self._wide_prev
        np.subtract(wide[1:], wide[:-1], out=wder[1:])
        wder *= self.fs
        self._wide_prev = float(wide[-1])
        self._feat = np.concatenate([self._feat, feat])
        self._wsig = np.concatenate([self._wsig, wide])
        self._wder = np.concatenate([self._wder, wder])

    def _candidates(self, last: int) -> list[_Cand]:
        """Final feature peaks with indices in [next, last] that pass rule 1 and the size floor."""
        if last < self._next:
            return []
        f, s0, d = self._feat, self._start, self._d
        lo, hi = self._next - s0, last - s0  # buffer positions
        self._next = last + 1
        i = np.arange(max(lo, 1), hi + 1)
        pos = i[(f[i] > f[i - 1]) & (f[i] >= f[i + 1]) & (f[i] >= MIN_PEAK)]
        if pos.size == 0:
            return []
        left = pos[:, None] - np.arange(d, 0, -1)
        left_max = np.where(left >= 0, f[np.maximum(left, 0)], -np.inf).max(axis=1)
        right_max = f[pos[:, None] + np.arange(1, d + 1)].max(axis=1)
        pos = pos[(f[pos] > left_max) & (f[pos] >= right_max)]
        if pos.size == 0:
            return []
        centre = pos - self._to_qrs
        qrs_like, slope = self._slopes(centre)
        r = self._r_waves(centre) + s0 - self._g_wide
        return [_Cand(int(p + s0), float(f[p]), bool(q), int(ri), float(sl))
                for p, q, ri, sl in zip(pos, qrs_like, r, slope)]

    def _slopes(self, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rule 2 verdict and the steepest slope (mV/s) around each QRS centre."""
        der = np.take(self._wder, centre[:, None] + self._bls_offsets, mode="clip")  # clip: stay in the buffer
        i_up, i_down = der.argmax(axis=1), der.argmin(axis=1)
        rows = np.arange(der.shape[0])
        up, down = der[rows, i_up], -der[rows, i_down]
        apart = np.abs(i_up - i_down) < BLS_PAIR_S * self.fs
        return (up > down / 8) & (down > up / 8) & apart, np.maximum(up, down)

    def _r_waves(self, centre: np.ndarray) -> np.ndarray:
        """Buffer position of the largest |wide copy| in the R-wave search window of each QRS."""
        idx = centre[:, None] + self._refine_offsets
        best = idx[np.arange(idx.shape[0]), np.abs(np.take(self._wsig, idx, mode="clip")).argmax(axis=1)]
        return np.minimum(np.maximum(best, 0), self._wsig.size - 1)  # np.clip costs more on tiny arrays

    def _trim(self) -> None:
        """Drop buffered samples no future candidate can reach."""
        reach = max(self._d + 1, self._to_qrs + max(self._refine[0], self._bls_half)) + 1
        drop = max(0, self._next - reach - self._start)
        if drop:
            self._feat, self._wsig, self._wder = self._feat[drop:], self._wsig[drop:], self._wder[drop:]
            self._start += drop


def _delay_samples(sos: np.ndarray, fs: float, freq: float = 10.0) -> float:
    """Group delay of an SOS cascade at `freq` Hz (the centre of the QRS band), in samples."""
    b, a = sps.sos2tf(sos)
    return float(sps.group_delay((b, a), w=[freq], fs=fs)[1][0])


class _Rules:
    """Rules 3-5 over final candidates in index order, with the index-timed events between them."""

    def __init__(self, fs: float):
        self.fs = fs
        self.sec = round(fs)
        self.learning: list[_Cand] | None = []
        self.qrs: deque[float] = deque(maxlen=N_AVG)
        self.noise: deque[float] = deque(maxlen=N_AVG)
        self.rr: deque[float] = deque(maxlen=N_AVG)
        self.thresh = math.inf
        self.last: int | None = None       # feature index of the last QRS
        self.last_slope = 0.0
        self.ref = 0                        # start of the 1 s bins of rule 5
        self.bins = [0.0] * RESET_S
        self.sb: _Cand | None = None        # largest noise peak eligible for search-back
        self.sb_due: int | None = None      # search-back opens after this index ...
        self.sb_open = False                # ... and stays open until the next QRS
        self.out: list[int] = []

    def advance(self, cands: list[_Cand], last: int) -> list[int]:
        """Decide `cands`; `last` is the newest index whose candidates are all known. Returns R indices."""
        self.out = []
        for cand in cands:
            self._timed(cand.idx - 1)
            if self.learning is not None:
                self.learning.append(cand)
            else:
                self._candidate(cand)
        self._timed(last)
        return self.out

    def _timed(self, upto: int) -> None:
        """Fire the events due at or before index `upto`: end of learning, search-back, rule 5."""
        while True:
            if self.learning is not None:
                if LEARN_S * self.sec > upto:
                    return
                self._end_learning()
            elif self.sb_due is not None and self.sb_due <= upto and not self.sb_open:
                self.sb_open = True
                self._search_back()
            elif self.ref + RESET_S * self.sec <= upto:
                self._restart(self.ref + RESET_S * self.sec, self.bins, search_now=True)
            else:
                return

    def _end_learning(self) -> None:
        cands, self.learning = self.learning or [], None
        maxima = [0.0] * LEARN_S
        for c in cands:
            k = min(c.idx // self.sec, LEARN_S - 1)
            maxima[k] = max(maxima[k], c.height)
        self._restart(0, maxima, search_now=False)
        for cand in cands:
            self._timed(cand.idx - 1)
            self._candidate(cand)

    def _restart(self, at: int, peaks: list[float], search_now: bool) -> None:
        """Rule 5 (and the end of learning): QRS level from `peaks`, noise 0, RR 1 s.

        After rule 5 search-back is open at once (OSEA keeps counting from the last QRS); at the
        start of a stream it opens after 1.65 s, as in OSEA.
        """
        self.qrs.extend((peaks * N_AVG)[:N_AVG])
        self.noise.extend([0.0] * N_AVG)
        self.rr.extend([float(self.sec)] * N_AVG)
        self._update_thresh()
        self.ref, self.bins = at, [0.0] * RESET_S
        self.sb = None
        self.sb_due, self.sb_open = (at, True) if search_now else (at + round(1.65 * self.fs), False)

    def _update_thresh(self) -> None:
        q, n = sum(self.qrs) / len(self.qrs), sum(self.noise) / len(self.noise)
        self.thresh = n + TH * (q - n)

    def _candidate(self, c: _Cand) -> None:
        k = (c.idx - self.ref - 1) // self.sec
        if 0 <= k < RESET_S:
            self.bins[k] = max(self.bins[k], c.height)
        if not c.qrs_like:
            return
        early = self.last is not None and c.idx - self.last < TWAVE_S * self.fs
        if c.height > self.thresh and not (early and c.slope < 0.5 * self.last_slope):
            self._beat(c)
            return
        self.noise.append(c.height)
        self._update_thresh()
        if not early and (self.sb is None or c.height > self.sb.height):
            self.sb = c
        if self.sb_open:
            self._search_back()

    def _search_back(self) -> None:
        if self.sb is not None and self.sb.height > self.thresh / 2:
            self._beat(self.sb)

    def _beat(self, c: _Cand) -> None:
        self.qrs.append(c.height)
        if self.last is not None:
            self.rr.append(float(c.idx - self.last))
        self._update_thresh()
        self.last, self.last_slope = c.idx, c.slope
        self.ref, self.bins = c.idx, [0.0] * RESET_S
        self.sb, self.sb_open = None, False
        self.sb_due = c.idx + round(SEARCHBACK_RR * sum(self.rr) / len(self.rr))
        self.out.append(c.r)


def rr_intervals(peaks: Any, fs: float) -> np.ndarray:
    """RR intervals in seconds between consecutive R peaks (sample indices at `fs` Hz)."""
    fs = check_fs(fs, "rr_intervals.fs")
    p = _peak_array(peaks, "rr_intervals")
    return np.diff(p) / fs


def heart_rate_bpm(peaks: Any, fs: float, t_start_s: float, t_end_s: float) -> float:
    """Mean heart rate in a window: 60 / (mean of the RR intervals that lie in [t_start_s, t_end_s)).

    An RR interval lies in the window when both of its beats do. With beats at t_1 < ... < t_n in
    the window this is 60 * (n - 1) / (t_n - t_1). NaN with fewer than 2 beats in the window.
    """
    fs = check_fs(fs, "heart_rate_bpm.fs")
    if not (math.isfinite(t_start_s) and math.isfinite(t_end_s) and t_end_s > t_start_s):
        raise SignalValueError(
            f"heart_rate_bpm: expected t_start_s < t_end_s (finite seconds), got {t_start_s}, {t_end_s}")
    t = _peak_array(peaks, "heart_rate_bpm") / fs
    t = t[(t >= t_start_s) & (t < t_end_s)]
    if t.size < 2:
        return math.nan
    return 60.0 * (t.size - 1) / float(t[-1] - t[0])


def _peak_array(peaks: Any, where: str) -> np.ndarray:
    p = np.asarray(peaks)
    if p.ndim != 1 or (p.size and p.dtype.kind not in "iuf"):
        raise SignalShapeError(
            f"{where}: expected a 1-D array of peak sample indices, got shape {p.shape} dtype {p.dtype}")
    p = p.astype(np.float64)
    if not np.isfinite(p).all() or np.any(np.diff(p) <= 0):
        raise SignalValueError(f"{where}: expected finite, strictly increasing peak indices")
    return p
