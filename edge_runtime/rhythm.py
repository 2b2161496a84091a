"""Atrial fibrillation episodes from RR irregularity, and signal quality of an ECG window.

`AfDetector` streams over beat times (no model, no ECG morphology). Every `step` beats it scores
the last `window` RR intervals with two published irregularity statistics:

- normalised RMSSD: RMSSD / mean RR after dropping the 1/16 longest and 1/16 shortest intervals
  (ectopic beats), AF when > 0.1 -- Dash S, Chon KH, Lu S, Raeder EA. "Automatic real time
  detection of atrial fibrillation." Ann Biomed Eng 37(9):1701-1709 (2009);
- coefficient of sample entropy COSEn = SampEn(m=1, r) + ln(2r) - ln(mean RR), AF when > -1.4 --
  Lake DE, Moorman JR. "Accurate estimation of entropy in very short physiological time series:
  the problem of atrial fibrillation detection in implanted ventricular devices." Am J Physiol
  Heart Circ Physiol 300(1):H319-H325 (2011). They let r grow until enough matches are found;
  here r is fixed at 30 ms, which keeps the cost bounded per window.

A window is AF-like when both exceed those thresholds. The thresholds were not fitted on MIT-BIH:
they were checked on 32-beat windows (step 8) of the PhysioNet/CinC 2017 training records
(AliveCor, beats from `RPeakDetector`; AF against normal and other rhythms), where this pair
gives Youden J 0.71 against 0.74 at the best point of a grid (nRMSSD 0.08, COSEn -1.6).
Hysteresis: an episode opens after `onset_windows` consecutive AF-like windows and closes after
`offset_windows` consecutive other ones; its onset and offset are the centre times of the first
window of each run (a window's centre is where half of its beats are AF when the rhythm changes).
RR irregularity alone also flags other irregular rhythms (frequent multiform ectopy, atrial
flutter with variable block): see the MIT-BIH figures of `bench/rpeaks_mitbih.py`.

`window_quality` rates a window: flat, saturated, and noisy by two published signal quality
indices -- kurtosis (kSQI; a clean ECG is strongly peaked, Gaussian noise has kurtosis 3) and the
QRS-band power ratio pSQI = P(5-15 Hz) / P(5-40 Hz) -- from Li Q, Mark RG, Clifford GD. "Robust
heart rate estimation from multiple asynchronous noisy sources using signal quality indices and a
Kalman filter." Physiol Meas 29(1):15-32 (2008) and Clifford GD, Behar J, Li Q, Rezek I. "Signal
quality indices and data fusion for determining clinical acceptability of electrocardiograms."
Physiol Meas 33(9):1419-1433 (2012).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal as sps

from edge_runtime.errors import ConfigError, SamplingRateError, SignalShapeError, SignalValueError
from edge_runtime.filters import SosStage, design_band
from edge_runtime.signal import as_signal, check_fs

NRMSSD_MIN = 0.1      # Dash et al. 2009
COSEN_MIN = -1.4      # Lake and Moorman 2011
COSEN_R_S = 0.030     # SampEn tolerance r, seconds


@dataclass(frozen=True)
class AfEpisode:
    """One AF episode: onset and offset in seconds since the stream start."""

    onset_s: float
    offset_s: float

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


def sample_entropy(x: np.ndarray, m: int, r: float) -> float:
    """SampEn(m, r) of a short series (Richman and Moorman 2000), Chebyshev distance <= r.

    With no match of length m+1 the estimate is undefined; the bound ln(number of template
    pairs) is returned then (the most irregular value the series could show).
    """
    x = np.asarray(x, dtype=np.float64)
    nt = x.size - m
    if nt < 2:
        return math.nan

    def matches(mm: int) -> int:
        emb = np.lib.stride_tricks.sliding_window_view(x, mm)[:nt]
        dist = np.abs(emb[:, None, :] - emb[None, :, :]).max(axis=2)
        return (int(np.count_nonzero(dist <= r)) - nt) // 2

    b, a = matches(m), matches(m + 1)
    if a == 0:
        return math.log(nt * (nt - 1) / 2)
    return -math.log(a / b)


def rr_irregularity(rr_s: np.ndarray) -> dict[str, float]:
    """The two AF statistics of one window of RR intervals in seconds (see the module docstring)."""
    rr = np.asarray(rr_s, dtype=np.float64)
    n = rr.size
    if n < 8:
        return {"nrmssd": math.nan, "cosen": math.nan}
    k = max(1, n // 16)
    srt = np.sort(rr)
    kept = rr[(rr >= srt[k]) & (rr <= srt[n - 1 - k])]
    nrmssd = float(np.sqrt(np.mean(np.diff(kept) ** 2)) / np.mean(kept))
    cosen = sample_entropy(rr, 1, COSEN_R_S) + math.log(2 * COSEN_R_S) - math.log(float(np.mean(rr)))
    return {"nrmssd": nrmssd, "cosen": float(cosen)}


class AfDetector:
    """Streaming AF episode detector over beat times in seconds (see the module docstring).

    >>> af = AfDetector()
    >>> for peaks in chunks_of_peaks:                 # e.g. RPeakDetector output / fs
    ...     for ep in af.process(peaks): print(ep)    # episodes that closed
    >>> af.flush(t_end_s)                             # close an open episode at the stream end
    """

    def __init__(self, window: int = 32, step: int = 4, onset_windows: int = 3, offset_windows: int = 3):
        for name, value, low in (("window", window, 12), ("step", step, 1), ("onset_windows", onset_windows, 1),
                                 ("offset_windows", offset_windows, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"AfDetector.{name}: expected an integer >= {low}, got {value!r}")
        self.window, self.step = window, step
        self.onset_windows, self.offset_windows = onset_windows, offset_windows
        self.reset()

    def reset(self) -> None:
        self._beats: list[float] = []   # the last window + 1 beat times
        self._since = 0                 # beats since the last evaluation
        self._run = 0                   # consecutive windows disagreeing with the current state
        self._run_start = math.nan      # centre time of the first window of that run
        self.in_af = False
        self._onset = math.nan
        self.episodes: list[AfEpisode] = []

    @property
    def onset_s(self) -> float | None:
        """Onset of the episode in progress (None when not in AF)."""
        return self._onset if self.in_af else None

    def process(self, beat_times_s: Any) -> list[AfEpisode]:
        """Feed new beat times (seconds, increasing); return the episodes that closed."""
        t = np.asarray(beat_times_s, dtype=np.float64)
        if t.ndim != 1:
            raise SignalShapeError(f"AfDetector.process: expected 1-D beat times in seconds, got shape {t.shape}")
        if not np.isfinite(t).all():
            raise SignalValueError("AfDetector.process: beat times must be finite seconds")
        closed: list[AfEpisode] = []
        for time_s in t.tolist():
            if self._beats and time_s <= self._beats[-1]:
                raise SignalValueError(f"AfDetector.process: beat time {time_s} s is not after {self._beats[-1]} s")
            self._beats.append(time_s)
            del self._beats[:-(self.window + 1)]
            self._since += 1
            if len(self._beats) == self.window + 1 and self._since >= self.step:
                self._since = 0
                closed += self._decide()
        return closed

    def _decide(self) -> list[AfEpisode]:
        beats = np.asarray(self._beats)
        stats = rr_irregularity(np.diff(beats))
        af_like = stats["nrmssd"] > NRMSSD_MIN and stats["cosen"] > COSEN_MIN
        centre = float(beats[self.window // 2])
        if af_like == self.in_af:
            self._run = 0
            return []
        if self._run == 0:
            self._run_start = centre
        self._run += 1
        if af_like and self._run >= self.onset_windows:
            self.in_af, self._onset, self._run = True, self._run_start, 0
        elif not af_like and self._run >= self.offset_windows:
            self.in_af, self._run = False, 0
            episode = AfEpisode(self._onset, self._run_start)
            self.episodes.append(episode)
            return [episode]
        return []

    def flush(self, t_end_s: float) -> list[AfEpisode]:
        """Close an open episode at `t_end_s` (end of the stream); return it."""
        if not self.in_af:
            return []
        self.in_af = False
        episode = AfEpisode(self._onset, float(t_end_s))
        self.episodes.append(episode)
        return [episode]


# --- signal quality -------------------------------------------------------------------------

KSQI_MIN = 5.0                 # Li et al. 2008: a clean ECG has kurtosis > 5
#: QRS-band power fraction accepted. Li et al. 2008 call 0.5-0.8 clean; broadband noise pulls it down
#: (white noise: 10/35 = 0.29), while wide-QRS rhythms (bundle branch block, paced) reach 0.99 on
#: MIT-BIH and clean records go down to 0.46, so only a floor of 0.4 is kept.
PSQI_RANGE = (0.4, 1.0)


@dataclass(frozen=True)
class WindowQuality:
    """Quality of one window: flags, the SQIs behind `noisy`, and the overall decision."""

    flat: bool
    saturated: bool
    noisy: bool
    ksqi: float
    psqi: float

    @property
    def usable(self) -> bool:
        return not (self.flat or self.saturated or self.noisy)


def welch_psd(x: np.ndarray, fs: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch's PSD as `scipy.signal.welch` computes it by default (Hann, 50 % overlap, constant
    detrend, one-sided density), with every segment in one vectorised FFT: scipy 1.17 loops over
    segments in Python, 20x slower on a 10 s window."""
    step = nperseg - nperseg // 2
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg)[::step]
    win = _hann(nperseg)
    spec = np.abs(np.fft.rfft((segs - segs.mean(axis=1, keepdims=True)) * win, axis=1)) ** 2
    pxx = spec.mean(axis=0) / (fs * (win ** 2).sum())
    pxx[1:-1 if nperseg % 2 == 0 else None] *= 2
    return np.fft.rfftfreq(nperseg, 1 / fs), pxx


@functools.lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    return sps.get_window("hann", n)


@functools.lru_cache(maxsize=16)
def _highpass(fs: float) -> np.ndarray:
    """The 0.5 Hz high-pass of the SQI, designed once per rate."""
    return design_band(fs, 0.5, None)


def window_quality(x: Any, fs: float, *, saturated: bool | None = None, flat_ptp_mv: float = 0.05,
                   saturation_mv: float = 10.0) -> WindowQuality:
    """Rate one window of one lead in mV (at least 2 s) as usable or not.

    flat: peak-to-peak below `flat_ptp_mv`. saturated: `saturated` when given (flags computed
    upstream, e.g. `Windows.saturated`), else any |x| >= `saturation_mv`. noisy: kSQI below
    `KSQI_MIN` or pSQI outside `PSQI_RANGE`, computed on a causal 0.5 Hz high-passed copy.
    """
    fs = check_fs(fs, "window_quality.fs")
    if fs < 100.0:
        raise SamplingRateError(f"window_quality.fs: expected at least 100 Hz (pSQI needs 40 Hz), got {fs:g}")
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise SignalShapeError(f"window_quality: expected a 1-D window (one lead, mV), got shape {arr.shape}")
    sig = as_signal(arr, ("ECG",), "window_quality")[0]
    if sig.size < 2 * fs:
        raise SignalShapeError(f"window_quality: expected at least 2 s ({int(2 * fs)} samples), got {sig.size}")
    flat = bool(np.ptp(sig) < flat_ptp_mv)
    sat = bool(np.abs(sig).max() >= saturation_mv) if saturated is None else bool(saturated)
    y = SosStage(_highpass(fs), 1)(sig[None, :])[0]
    y = y[int(0.5 * fs):]  # skip the filters' settling
    ksqi = float(np.mean((y - y.mean()) ** 4) / max(np.var(y) ** 2, 1e-24))
    f, pxx = welch_psd(y, fs, min(y.size, int(2 * fs)))
    band = pxx[(f >= 5) & (f <= 15)].sum()
    total = pxx[(f >= 5) & (f <= 40)].sum()
    psqi = float(band / total) if total > 0 else 0.0
    noisy = bool(not flat and (ksqi < KSQI_MIN or not PSQI_RANGE[0] <= psqi <= PSQI_RANGE[1]))
    return WindowQuality(flat, sat, noisy, ksqi, psqi)
