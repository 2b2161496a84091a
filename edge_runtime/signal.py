"""The one signal contract: validation, filtering, resampling, fixed windows, per-window normalisation.

Training preprocesses a whole record with the same `Preprocessor` object that the edge runtime
feeds chunk by chunk from a live stream, so both see identical windows (`process_record(x)` is
`reset()` followed by `process(x)`). Signals are (n_leads, n_samples) arrays in mV, leads in the
order given by name at construction.

Data flow for one chunk:

    raw (fs_in) -> validate -> notch -> resample to fs_out (+ out-of-range mask) -> high/low-pass
        -> ring buffer -> a window every hop -> quality flags -> per-window normalisation

Quality is flagged, never raised: a lead that is flat (peak-to-peak below `flat_ptp_mv` within the
window) or saturated (raw amplitude at or beyond `saturation_mv` anywhere inside the window) is
marked in `Windows.flat` / `Windows.saturated`.

Short records: a record (or stream segment) shorter than one window gives no window. With
`pad=True` (`process_record`, or `Preprocessor.pad_tail` at the end of a stream) it gives one
window instead: the filtered samples it has, normalised on their own, then repeated from their
start until the window is full (`fill="repeat"`, the default: beats go on) or followed by zeros
(`fill="zeros"`: the high-passed baseline and the z-scored mean), flagged in `Windows.padded` so
that quality checks and reports can tell it from a full window. `ecg-edge bench short` measured
both on CinC 2017 (README, "Evaluating an exported model on your own recordings").
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from edge_runtime.errors import (
    ConfigError, EmptySignalError, SamplingRateError, SignalShapeError, SignalValueError,
)
from edge_runtime.filters import (
    FilterDesign, PolyphaseResampler, SosStage, design_band, design_notch, design_resampler,
)
from edge_runtime.spec import FS_MAX_HZ, FS_MIN_HZ, SignalSpec, canonical_leads

NORMALIZE_CHOICES = ("zscore", "none")
#: How `Windower.pad_tail` fills a short record's window after its samples.
PAD_FILLS = ("repeat", "zeros")
#: Lowest standard deviation used by the z-score, in mV: a flat lead becomes ~0, not noise blown up.
ZSCORE_STD_FLOOR_MV = 0.01


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing settings shared by training and the runtime (written into every manifest).

    fs_out: model rate in Hz. highpass_hz: baseline-wander cut-off (None: off). lowpass_hz:
    band limit at fs_out (None: off; the resampler already removes everything above fs_out/2).
    notch_hz: mains frequency, 50 or 60 (None: off), applied at the device rate, so it must be
    below fs_in/2. normalize: "zscore" per window and lead, using only that window, or "none" (mV).
    """

    fs_out: float = 100.0
    highpass_hz: float | None = 0.5
    lowpass_hz: float | None = 40.0
    notch_hz: float | None = None
    notch_q: float = 30.0
    normalize: str = "zscore"
    window_s: float = 10.0
    hop_s: float = 5.0
    flat_ptp_mv: float = 0.05
    saturation_mv: float = 10.0

    def __post_init__(self) -> None:
        def positive(name: str, value: Any, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"preprocess.{name}: expected a positive number, got {value!r}")
        positive("fs_out", self.fs_out)
        if not FS_MIN_HZ <= self.fs_out <= FS_MAX_HZ:
            raise ConfigError(f"preprocess.fs_out: expected {FS_MIN_HZ:g}..{FS_MAX_HZ:g} Hz, got {self.fs_out!r}")
        for name in ("highpass_hz", "lowpass_hz", "notch_hz"):
            positive(name, getattr(self, name), allow_none=True)
        for name in ("notch_q", "window_s", "hop_s", "flat_ptp_mv", "saturation_mv"):
            positive(name, getattr(self, name))
        if self.notch_hz is not None and self.notch_hz not in (50, 60):
            raise ConfigError(f"preprocess.notch_hz: expected 50, 60 or none, got {self.notch_hz!r}")
        if self.lowpass_hz is not None and self.lowpass_hz >= self.fs_out / 2:
            raise ConfigError(
                f"preprocess.lowpass_hz: expected below fs_out/2 = {self.fs_out / 2:g} Hz, got {self.lowpass_hz!r}")
        if self.highpass_hz is not None and self.lowpass_hz is not None and self.highpass_hz >= self.lowpass_hz:
            raise ConfigError("preprocess.highpass_hz: expected below lowpass_hz")
        if self.normalize not in NORMALIZE_CHOICES:
            raise ConfigError(f"preprocess.normalize: expected one of {NORMALIZE_CHOICES}, got {self.normalize!r}")
        for name in ("window_s", "hop_s"):
            n = getattr(self, name) * self.fs_out
            if abs(n - round(n)) > 1e-6:
                raise ConfigError(f"preprocess.{name}: {getattr(self, name)} s is not a whole number of samples at {self.fs_out:g} Hz")

    @property
    def window(self) -> int:
        return int(round(self.window_s * self.fs_out))

    @property
    def hop(self) -> int:
        return int(round(self.hop_s * self.fs_out))

    def spec(self, leads: Iterable[str]) -> SignalSpec:
        """The model-input SignalSpec these settings produce for `leads`."""
        return SignalSpec(self.fs_out, tuple(leads), "mV", self.window_s, self.hop_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def design(self, fs_in: float) -> FilterDesign:
        """Design every filter for a device rate `fs_in` (pure function of the settings and fs_in)."""
        check_fs(fs_in, "fs_in")
        if self.notch_hz is not None and self.notch_hz >= fs_in / 2:
            raise SamplingRateError(
                f"preprocess.notch_hz: {self.notch_hz:g} Hz is at or above the Nyquist frequency of fs_in = {fs_in:g} Hz; "
                "set notch_hz = none (the low-pass already removes it)")
        up, down, phases = (1, 1, None) if fs_in == self.fs_out else design_resampler(fs_in, self.fs_out)
        return FilterDesign(float(fs_in), float(self.fs_out), design_notch(fs_in, self.notch_hz, self.notch_q),
                            up, down, phases, design_band(self.fs_out, self.highpass_hz, self.lowpass_hz))


def check_fs(fs: Any, where: str = "fs") -> float:
    """Validate a sampling rate in Hz; raise SamplingRateError naming `where`."""
    if isinstance(fs, bool) or not isinstance(fs, (int, float, np.integer, np.floating)) or not math.isfinite(fs) \
            or not FS_MIN_HZ <= fs <= FS_MAX_HZ:
        raise SamplingRateError(f"{where}: expected a sampling rate in {FS_MIN_HZ:g}..{FS_MAX_HZ:g} Hz, got {fs!r}")
    return float(fs)


def as_signal(x: Any, leads: tuple[str, ...], where: str = "signal") -> np.ndarray:
    """Validate a chunk and return it as float64 (n_leads, n). A 1-D array is accepted for one lead."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise SignalShapeError(f"{where}: expected a real numeric array (float or int), got dtype {arr.dtype}")
    if arr.ndim == 1 and len(leads) == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] != len(leads):
        raise SignalShapeError(
            f"{where}: expected shape ({len(leads)}, n_samples) for leads {', '.join(leads)} (leads first), got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        lead_i, sample_i = np.argwhere(~np.isfinite(arr))[0]
        raise SignalValueError(
            f"{where}: lead {leads[lead_i]} sample {sample_i} is {arr[lead_i, sample_i]}; expected finite values in mV")
    return arr


class SignalChain:
    """Stateful notch -> resample -> band filter, chunk in at fs_in, chunk out at fs_out.

    `__call__(x, gap)` returns (y, flags): y is (n_leads, m) float64 in mV at fs_out; flags is
    (n_leads + 1, m) bool: rows 0..n_leads-1 are true for an output sample whose resampling
    support holds a raw sample at or beyond `saturation_mv`, the last row where it holds a
    sample the caller marked in `gap` (samples bridged over a transmission gap).
    """

    def __init__(self, design: FilterDesign, n_leads: int, saturation_mv: float):
        self.design = design
        self.n_leads = n_leads
        self.saturation_mv = float(saturation_mv)
        self._notch = SosStage(design.notch_sos, n_leads) if design.notch_sos is not None else None
        self._resampler = None
        if design.resample_phases is not None:
            self._resampler = PolyphaseResampler(design.resample_up, design.resample_down,
                                                 design.resample_phases, n_leads)
        self._band = SosStage(design.band_sos, n_leads) if design.band_sos is not None else None

    def reset(self) -> None:
        for stage in (self._notch, self._resampler, self._band):
            if stage is not None:
                stage.reset()

    def __call__(self, x: np.ndarray, gap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        gap_row = np.zeros((1, x.shape[1]), bool) if gap is None else np.asarray(gap, bool).reshape(1, -1)
        mask = np.concatenate([np.abs(x) >= self.saturation_mv, gap_row])
        if self._notch is not None:
            x = self._notch(x)
        if self._resampler is not None:
            x, mask = self._resampler(x, mask)
        if self._band is not None:
            x = self._band(x)
        return x, mask


@dataclass
class Windows:
    """Fixed windows: data (n, n_leads, window) float32; start = index of the first sample at fs_out.

    flat, saturated: (n, n_leads) bool per lead; gap: (n,) bool, the window holds samples bridged
    over a transmission gap; padded: (n,) bool, the window was filled to its length from fewer
    samples (a record shorter than one window, `Windower.pad_tail`: repeated or zeros).
    """

    data: np.ndarray
    start: np.ndarray
    flat: np.ndarray
    saturated: np.ndarray
    gap: np.ndarray
    fs: float = 0.0
    padded: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.padded is None:
            self.padded = np.zeros(len(self.start), bool)

    @property
    def usable(self) -> np.ndarray:
        """(n,) bool: windows with no flat or saturated lead and no bridged gap."""
        return ~((self.flat | self.saturated).any(axis=1) | self.gap)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @classmethod
    def empty(cls, n_leads: int, window: int, fs: float) -> "Windows":
        return cls(np.empty((0, n_leads, window), np.float32), np.empty(0, np.int64),
                   np.empty((0, n_leads), bool), np.empty((0, n_leads), bool), np.empty(0, bool), fs)

    @classmethod
    def concat(cls, parts: list["Windows"]) -> "Windows":
        if not parts:
            raise EmptySignalError("windows: nothing to concatenate")
        return cls(np.concatenate([p.data for p in parts]), np.concatenate([p.start for p in parts]),
                   np.concatenate([p.flat for p in parts]), np.concatenate([p.saturated for p in parts]),
                   np.concatenate([p.gap for p in parts]), parts[0].fs, np.concatenate([p.padded for p in parts]))


class Windower:
    """Ring buffer cutting fixed windows every `hop` samples, flagging and normalising each one."""

    def __init__(self, n_leads: int, window: int, hop: int, fs: float, normalize: str, flat_ptp_mv: float):
        self.n_leads, self.window, self.hop, self.fs = n_leads, window, hop, fs
        self.normalize, self.flat_ptp_mv = normalize, flat_ptp_mv
        self.reset()

    def reset(self) -> None:
        self._buf = np.empty((self.n_leads, 0))
        self._mask = np.empty((self.n_leads + 1, 0), bool)  # saturated per lead, then gap
        self._buf_start = 0   # fs_out sample index of _buf[:, 0]
        self._next_start = 0  # start index of the next window

    def __call__(self, y: np.ndarray, mask: np.ndarray) -> Windows:
        self._buf = np.concatenate([self._buf, y], axis=1)
        self._mask = np.concatenate([self._mask, mask], axis=1)
        end = self._buf_start + self._buf.shape[1]
        n_win = 0 if end - self._next_start < self.window else (end - self._next_start - self.window) // self.hop + 1
        if n_win == 0:
            return Windows.empty(self.n_leads, self.window, self.fs)
        starts = self._next_start + self.hop * np.arange(n_win)
        rel = starts - self._buf_start
        idx = rel[:, None] + np.arange(self.window)
        data = np.moveaxis(self._buf[:, idx], 0, 1)            # (n, leads, window)
        flags = np.moveaxis(self._mask[:, idx].any(axis=2), 0, 1)  # (n, leads + 1)
        saturated, gap = flags[:, :-1], flags[:, -1]
        flat = np.ptp(data, axis=2) < self.flat_ptp_mv
        data = self._normalised(data)
        self._next_start = int(starts[-1] + self.hop)
        drop = min(self._next_start, end) - self._buf_start
        self._buf, self._mask = self._buf[:, drop:], self._mask[:, drop:]
        self._buf_start += drop
        return Windows(data.astype(np.float32), starts.astype(np.int64), flat, saturated, gap, self.fs)

    def _normalised(self, data: np.ndarray) -> np.ndarray:
        """Per-window, per-lead z-score of (n, leads, samples) ("none": unchanged)."""
        if self.normalize != "zscore":
            return data
        mean = data.mean(axis=2, keepdims=True)
        return (data - mean) / np.maximum(data.std(axis=2, keepdims=True), ZSCORE_STD_FLOOR_MV)

    def pad_tail(self, fill: str = "repeat") -> Windows:
        """The one window of a segment that ended before its first window: the samples buffered
        since `reset`, normalised on their own, then (`PAD_FILLS`) repeated from their start or
        zeros to the window length, flagged `padded`. Empty when a window was already cut or
        nothing was buffered."""
        if fill not in PAD_FILLS:
            raise ConfigError(f"pad fill: expected one of {', '.join(PAD_FILLS)}, got {fill!r}")
        n = self._buf.shape[1]
        if self._next_start != 0 or self._buf_start != 0 or not 0 < n < self.window:
            return Windows.empty(self.n_leads, self.window, self.fs)
        real = self._buf[None]                                   # (1, leads, n)
        norm = self._normalised(real)
        if fill == "repeat":
            data = norm[:, :, np.arange(self.window) % n]
        else:
            data = np.concatenate([norm, np.zeros((1, self.n_leads, self.window - n))], axis=2)
        flat = np.ptp(real, axis=2) < self.flat_ptp_mv
        flags = self._mask.any(axis=1)                           # (leads + 1,)
        return Windows(data.astype(np.float32), np.zeros(1, np.int64), flat, flags[None, :-1], flags[-1:].copy(),
                       self.fs, np.ones(1, bool))


@dataclass
class Preprocessor:
    """The signal contract for one device rate and lead set: chunks (or a whole record) in, windows out.

    >>> pre = Preprocessor(PreprocessConfig(), fs_in=360, leads=("MLII",))
    >>> w = pre.process_record(x)          # offline, whole record
    >>> for chunk in stream: w = pre.process(chunk)   # online: identical windows
    """

    config: PreprocessConfig
    fs_in: float
    leads: tuple[str, ...]
    design: FilterDesign | None = None
    _chain: SignalChain = field(init=False, repr=False)
    _windower: Windower = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fs_in = check_fs(self.fs_in, "fs_in")
        self.leads = canonical_leads(self.leads)
        if self.design is None:
            self.design = self.config.design(self.fs_in)
        elif self.design.fs_in != self.fs_in or self.design.fs_out != self.config.fs_out:
            raise ConfigError(
                f"filter design: made for {self.design.fs_in:g} -> {self.design.fs_out:g} Hz, "
                f"expected {self.fs_in:g} -> {self.config.fs_out:g} Hz")
        self._chain = SignalChain(self.design, len(self.leads), self.config.saturation_mv)
        self._windower = Windower(len(self.leads), self.config.window, self.config.hop, self.config.fs_out,
                                  self.config.normalize, self.config.flat_ptp_mv)

    @property
    def spec(self) -> SignalSpec:
        return self.config.spec(self.leads)

    @property
    def delay_s(self) -> float:
        """Group delay the resampling FIR adds (window starts are in output time, i.e. delayed by this)."""
        return self.design.resample_delay_s

    def reset(self) -> None:
        """Forget all state: the next chunk starts a new record or stream."""
        self._chain.reset()
        self._windower.reset()

    def filter(self, chunk: Any) -> tuple[np.ndarray, np.ndarray]:
        """Filtered signal at fs_out and its flags (see `SignalChain`) for a chunk, without windowing."""
        return self._chain(as_signal(chunk, self.leads))

    def process(self, chunk: Any, gap: np.ndarray | None = None) -> Windows:
        """Feed one chunk (n_leads, n); return the windows it completed (often none).

        `gap` (n,) bool marks samples the caller bridged over a transmission gap: every window
        they reach gets `Windows.gap` set.
        """
        y, mask = self._chain(as_signal(chunk, self.leads), gap)
        return self._windower(y, mask)

    def pad_tail(self, fill: str = "repeat") -> Windows:
        """At the end of a record or stream segment shorter than one window: its one padded window
        (`Windower.pad_tail`, flagged `padded`); empty when it had a window."""
        return self._windower.pad_tail(fill)

    def process_record(self, signal: Any, where: str = "record", pad: bool = False, fill: str = "repeat") -> Windows:
        """Preprocess a whole record from a fresh state: the same windows a stream of it would give.
        A record shorter than one window gives none, or with `pad` one padded window (`pad_tail`)."""
        x = as_signal(signal, self.leads, where)
        if x.shape[1] == 0:
            raise EmptySignalError(f"{where}: expected at least one sample, got an empty signal")
        self.reset()
        y, mask = self._chain(x)
        out = self._windower(y, mask)
        if pad and len(out) == 0:
            out = self._windower.pad_tail(fill)
        self.reset()
        return out
