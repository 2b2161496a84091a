"""Filter designs as plain arrays, and the causal, stateful stages that run them.

Every stage keeps its state between calls, so a record fed in one piece and the same record fed
in chunks of any size (one sample included) give the same output. Nothing looks ahead: no
zero-phase filtering, no statistics across a batch. Designs are arrays (`FilterDesign.to_dict`)
so that a model's manifest carries exactly the filters it was trained with.

Stages, in the order `edge_runtime.signal.SignalChain` applies them:

1. mains notch at the device rate (IIR notch, `scipy.signal.iirnotch`);
2. anti-aliased rational resampling L/M to the model rate: a polyphase FIR (Kaiser window,
   60 dB stopband from the lower Nyquist frequency) run causally on a history buffer;
3. band-limiting at the model rate: Butterworth high-pass (baseline wander) and low-pass, one
   cascade of second-order sections.

IIR states start in steady state for the first sample (`sosfilt_zi` scaled by it), so a DC
offset at the start of a record or stream gives no step transient; this uses only the first
sample and is therefore the same offline and online.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError, SamplingRateError


@functools.cache
def _sps() -> Any:
    """scipy.signal, imported on first use: the filter designs need it, a CLI that only parses its
    flags (or imports a config class) does not pay the ~0.7 s import."""
    from scipy import signal

    return signal


#: Largest up- or down-sampling factor accepted for a rational rate change.
MAX_RATIO_TERM = 2000
#: Stopband attenuation of the resampling FIR, in dB.
RESAMPLE_ATTEN_DB = 60.0
#: Passband edge of the resampling FIR as a fraction of the lower Nyquist frequency.
RESAMPLE_PASS_FRACTION = 0.8


def rational_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """Return (L, M) with fs_out / fs_in == L / M exactly (to 1 ppm), in lowest terms."""
    frac = Fraction(fs_out / fs_in).limit_denominator(MAX_RATIO_TERM)
    if abs(float(frac) * fs_in - fs_out) > 1e-6 * fs_out or frac.numerator > MAX_RATIO_TERM:
        raise SamplingRateError(
            f"fs: cannot resample {fs_in:g} Hz to {fs_out:g} Hz with a rational factor whose terms are "
            f"<= {MAX_RATIO_TERM}; expected rates with a simple ratio (e.g. 130, 250, 300, 360, 500, 1000 Hz)"
        )
    return frac.numerator, frac.denominator


def design_resampler(fs_in: float, fs_out: float) -> tuple[int, int, np.ndarray]:
    """Design the polyphase anti-aliasing FIR for fs_in -> fs_out.

    Returns (L, M, phases) where `phases` is (L, K): phase p of the prototype filter `h` (designed
    at L * fs_in with gain L), `phases[p, m] = h[p + m * L]`.
    """
    up, down = rational_ratio(fs_in, fs_out)
    nyq_low = 0.5 * min(fs_in, fs_out)
    f_pass, f_stop = RESAMPLE_PASS_FRACTION * nyq_low, nyq_low
    fs_up = up * fs_in
    numtaps, beta = _sps().kaiserord(RESAMPLE_ATTEN_DB, (f_stop - f_pass) / (0.5 * fs_up))
    taps_per_phase = max(1, math.ceil(numtaps / up))
    numtaps = taps_per_phase * up
    h = _sps().firwin(numtaps, 0.5 * (f_pass + f_stop), window=("kaiser", beta), fs=fs_up) * up
    phases = h.reshape(taps_per_phase, up).T.copy()
    return up, down, phases


def design_band(fs: float, highpass_hz: float | None, lowpass_hz: float | None,
                highpass_order: int = 2, lowpass_order: int = 4) -> np.ndarray | None:
    """Butterworth high-pass and low-pass at `fs` as one SOS cascade (n_sections, 6), or None."""
    sections = []
    if highpass_hz is not None:
        sections.append(_sps().butter(highpass_order, highpass_hz, btype="highpass", fs=fs, output="sos"))
    if lowpass_hz is not None:
        sections.append(_sps().butter(lowpass_order, lowpass_hz, btype="lowpass", fs=fs, output="sos"))
    return np.concatenate(sections) if sections else None


def design_notch(fs: float, notch_hz: float | None, q: float) -> np.ndarray | None:
    """Second-order IIR notch at `notch_hz` (quality factor q) as SOS (1, 6), or None."""
    if notch_hz is None:
        return None
    b, a = _sps().iirnotch(notch_hz, q, fs=fs)
    return _sps().tf2sos(b, a)


@dataclass(frozen=True)
class FilterDesign:
    """Every coefficient the signal chain uses, for one input rate `fs_in` and model rate `fs_out`."""

    fs_in: float
    fs_out: float
    notch_sos: np.ndarray | None
    resample_up: int
    resample_down: int
    resample_phases: np.ndarray | None
    band_sos: np.ndarray | None

    @property
    def resample_delay_s(self) -> float:
        """Group delay of the resampling FIR in seconds (0 without resampling)."""
        if self.resample_phases is None:
            return 0.0
        n = self.resample_phases.size
        return (n - 1) / 2.0 / (self.resample_up * self.fs_in)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; floats written with repr precision, so from_dict restores them exactly."""
        def arr(a: np.ndarray | None) -> list | None:
            return None if a is None else np.asarray(a, dtype=np.float64).tolist()
        return {
            "fs_in": float(self.fs_in), "fs_out": float(self.fs_out),
            "notch_sos": arr(self.notch_sos),
            "resample_up": int(self.resample_up), "resample_down": int(self.resample_down),
            "resample_phases": arr(self.resample_phases), "band_sos": arr(self.band_sos),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "filter design") -> "FilterDesign":
        try:
            def arr(key: str, cols: int | None) -> np.ndarray | None:
                if d.get(key) is None:
                    return None
                a = np.asarray(d[key], dtype=np.float64)
                if a.ndim != 2 or (cols is not None and a.shape[1] != cols):
                    raise ConfigError(f"{where}: {key}: expected a 2-D array with {cols or 'K'} columns, got shape {a.shape}")
                return a
            design = cls(float(d["fs_in"]), float(d["fs_out"]), arr("notch_sos", 6),
                         int(d["resample_up"]), int(d["resample_down"]), arr("resample_phases", None),
                         arr("band_sos", 6))
        except KeyError as exc:
            raise ConfigError(f"{where}: missing field {exc.args[0]!r}") from None
        if design.resample_phases is not None and design.resample_phases.shape[0] != design.resample_up:
            raise ConfigError(f"{where}: resample_phases: expected {design.resample_up} rows (one per phase)")
        return design


@functools.cache
def _sos_kernel() -> Any:
    """scipy's compiled SOS kernel (what `sosfilt` calls after checking its arguments), or None.

    `sosfilt`'s argument handling costs ~25 us per call, ten times the filtering of a 73-sample
    chunk. The kernel is used only if it reproduces the public path exactly on a probe signal,
    so a scipy that changes it falls back to `lfilter` per section, with identical results.
    """
    try:
        from scipy.signal._sosfilt import _sosfilt
    except ImportError:
        return None
    sos = _sps().butter(2, [0.1, 0.3], btype="bandpass", output="sos")
    x = np.cos(np.arange(64.0))[None, :]
    zi = _sps().sosfilt_zi(sos)[:, None, :] * 0.5
    ref, zf = _sps().sosfilt(sos, x, axis=-1, zi=zi)
    try:
        y, z = x.copy(), np.ascontiguousarray(np.moveaxis(zi, 1, 0))
        _sosfilt(sos, y, z)
    except Exception:  # a different signature: use the public path
        return None
    ok = np.array_equal(y, ref) and np.array_equal(np.moveaxis(z, 0, 1), zf)
    return _sosfilt if ok else None



@functools.lru_cache(maxsize=64)
def _steady_state(sos_bytes: bytes, n_sections: int) -> np.ndarray:
    """`sosfilt_zi` (a linear solve per section), once per design: stages are made per window too."""
    zi = _sps().sosfilt_zi(np.frombuffer(sos_bytes, dtype=np.float64).reshape(n_sections, 6))
    zi.setflags(write=False)
    return zi


class SosStage:
    """A causal IIR filter over (n_channels, n) blocks, state kept between calls.

    Runs scipy's compiled SOS kernel when it matches `sosfilt` (see `_sos_kernel`), else the
    sections one `lfilter` call each (direct form II transposed, as `sosfilt` does).
    """

    def __init__(self, sos: np.ndarray, n_channels: int, fast: bool = True):
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._zi_unit = _steady_state(self.sos.tobytes(), len(self.sos))  # (n_sections, 2), unit step
        self._sections = [(row[:3].copy(), row[3:].copy()) for row in self.sos]
        self._kernel = _sos_kernel() if fast else None
        self.n_channels = n_channels
        self._zi: Any = None

    def reset(self) -> None:
        self._zi = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] == 0:
            return x
        if self._kernel is not None:
            if self._zi is None:  # (channels, sections, 2), steady state for the first sample
                self._zi = np.ascontiguousarray(x[:, None, :1] * self._zi_unit[None, :, :])
            y = np.array(x, dtype=np.float64, order="C")
            self._kernel(self.sos, y, self._zi)
            return y
        if self._zi is None:
            self._zi = [unit[None, :] * x[:, :1] for unit in self._zi_unit]
        for s, (b, a) in enumerate(self._sections):
            x, self._zi[s] = _sps().lfilter(b, a, x, axis=-1, zi=self._zi[s])
        return x


class PolyphaseResampler:
    """Causal rational resampler: output k = sum_m phases[p, m] * x[i0 - m], i0 = kM // L, p = kM % L.

    Equivalent to zero-stuffing by L, FIR filtering and keeping every M-th sample, without the zeros.
    The history before the first sample is the first sample repeated (no step at the start).

    A boolean mask (any number of rows, n) travels alongside: output k is flagged when any input
    sample inside its FIR support [i0 - K + 1, i0] was flagged, tracked with the index of the last
    flagged input per row, so nothing is smeared or thresholded.
    """

    #: Most (channel x output x tap) products computed in one block, bounding memory on long records.
    BLOCK_ELEMENTS = 1 << 21

    def __init__(self, up: int, down: int, phases: np.ndarray, n_channels: int):
        self.up, self.down = int(up), int(down)
        self.phases = np.asarray(phases, dtype=np.float64)
        self.taps = self.phases.shape[1]
        self.n_channels = n_channels
        self._rev = np.arange(self.taps)  # tap offsets m
        self.reset()

    def reset(self) -> None:
        self._hist: np.ndarray | None = None  # last taps-1 inputs, (C, taps-1)
        self._n_in = 0   # inputs consumed so far
        self._k_next = 0  # next output index
        self._last_flag: np.ndarray | None = None  # per mask row: index of the last flagged input

    def __call__(self, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[1]
        if self._hist is None:
            if n == 0:
                return x, mask
            self._hist = np.repeat(x[:, :1], self.taps - 1, axis=1)
        buf = np.concatenate([self._hist, x], axis=1)
        n_before = self._n_in
        self._n_in += n
        k_end = (self._n_in * self.up + self.down - 1) // self.down
        ks = np.arange(self._k_next, k_end)
        self._k_next = k_end
        if self.taps > 1:
            self._hist = buf[:, -(self.taps - 1):]
        newest = ks * self.down // self.up  # absolute index of the newest input each output uses
        flags = self._track_flags(mask, n_before, newest)
        if ks.size == 0:
            return np.empty((self.n_channels, 0)), flags
        weights = self.phases[ks * self.down % self.up]  # (nk, K)
        idx = (newest - (n_before - (self.taps - 1)))[:, None] - self._rev  # into buf
        block = max(1, self.BLOCK_ELEMENTS // (self.taps * self.n_channels))
        if ks.size <= block:
            return np.einsum("cnk,nk->cn", np.take(buf, idx, axis=1), weights), flags
        out = np.empty((self.n_channels, ks.size))
        for s in range(0, ks.size, block):  # blocks of thousands of outputs, not samples
            out[:, s:s + block] = np.einsum("cnk,nk->cn", np.take(buf, idx[s:s + block], axis=1), weights[s:s + block])
        return out, flags

    def _track_flags(self, mask: np.ndarray, n_before: int, newest: np.ndarray) -> np.ndarray:
        """Per output: was any input in its FIR support flagged? (mask rows, nk) bool."""
        if self._last_flag is None:
            self._last_flag = np.full(mask.shape[0], -(self.taps + 1), dtype=np.int64)
        if mask.any():
            idx = np.where(mask, np.arange(n_before, n_before + mask.shape[1]), -(self.taps + 1))
            last = np.maximum(np.maximum.accumulate(idx, axis=1), self._last_flag[:, None])
            self._last_flag = last[:, -1]
            last_at = last[:, newest - n_before]  # every newest index lies in this chunk
        else:
            last_at = self._last_flag[:, None]
        return last_at > (newest - self.taps)[None, :]
