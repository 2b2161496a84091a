"""The streaming engine: chunks in, per-window results and events out, nothing lost silently.

    Chunk -> admit (gaps, duplicates, invalid samples) -> signal contract (stateful) -> windows
          -> quality -> model (usable windows only) -> smoothing -> abstention -> events (hysteresis)
          \\-> R-peak detector (raw lead, device rate) -> heart rate per window

`Engine.feed(chunk)` is synchronous and deterministic, so streaming a record in chunks gives the
same per-window results as feeding it whole; `run_stream` drives it from an async source.

Gap policy (documented in the README): a chunk's `first_index` ahead of the expected index is a
gap of that many samples. Gaps up to `bridge_max_s` are bridged by linear interpolation between
the last sample before and the first sample after, and every window those samples reach is
flagged `gap` (not classified). Longer gaps end the segment: filter and detector state reset, and
output resumes one full window after the gap. Either way the lost samples are counted and an event
is emitted. A chunk behind the expected index (duplicate or reordered) is dropped and counted.
Non-finite samples are bridged like a short gap and counted as invalid. A chunk at the wrong rate
or of the wrong shape is rejected with an error event; the engine keeps running. So is a chunk its
source marked `error` (a refused BLE frame, a full queue: no samples; their loss is the next gap).

Abstention (`edge_runtime.abstain`): a model with inconclusive bands (`Model.abstain`, the
manifest's) marks a window's smoothed decision inconclusive for a label whose margin to its
threshold is inside that label's band (`WindowResult.inconclusive`). Such a window holds that
label's event state: it neither advances nor resets the run of windows that opens or closes an
episode, so no episode opens or closes on decisions inside the band. A single-label head makes one
decision per window, so an inconclusive window holds every label's state. Without bands (None)
nothing is inconclusive and events are as before.

The recording's decision: at the end of a stream with a model and at least one classified window,
a "record" event gives the decision of the whole recording, as `ecg-edge compare` and `export`
score a record: the classified windows' probabilities made one by the model's record rule
(`Model.record_rule`, the manifest's: their mean, or their max per label;
`edge_runtime.backends.record_probabilities`), decided at the model's thresholds, inconclusive
where the model's bands say so. Its label is the decided label(s) ("none" when a multi-label head
decides no label); its detail the rule, the number of windows and the probabilities.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Protocol

import numpy as np

from edge_runtime.abstain import inconclusive
from edge_runtime.backends import decide, record_probabilities
from edge_runtime.beats import heart_rate_bpm
from edge_runtime.errors import ConfigError
from edge_runtime.rhythm import AfDetector, window_quality
from edge_runtime.signal import Preprocessor, Windows
from edge_runtime.sources import Chunk

NORMAL_LABELS = ("NORM", "N", "SR")
#: Label of AF episodes found from RR irregularity by `edge_runtime.rhythm.AfDetector`.
AF_RR_LABEL = "AF (RR)"


class Model(Protocol):
    """What the engine needs from a model: labels, thresholds, and probabilities for windows.

    `multilabel` (default True when absent) picks the decision rule, the one the release scores
    use (`distill.release`): multi-label, a label is present when its probability >= its
    threshold; single-label, the one label argmax(probability / threshold). `abstain` (default
    None when absent): one inconclusive band per label in logit units (`edge_runtime.abstain`).
    `record_rule` (default "mean" when absent): how the recording's window probabilities become
    its own (`edge_runtime.artifact.RECORD_RULES`).
    """

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]

    def predict(self, windows: np.ndarray) -> np.ndarray: ...

    # With `EngineConfig.audit`, the engine also calls `logits(windows)` (the raw, dequantized model
    # outputs) and `probabilities(logits)` instead of `predict`, to keep the outputs it classified.


@dataclass(frozen=True)
class EngineConfig:
    """bridge_max_s: longest gap bridged by interpolation. smoothing_windows: moving average of
    probabilities over this many usable windows. event_on/event_off: consecutive windows above /
    below the threshold that open / close an event. stall_timeout_s: silence that raises a stall event.
    noise_gate: rate every window with the SQI of `edge_runtime.rhythm.window_quality` (kurtosis,
    QRS-band power) and leave noisy ones unclassified; off only for non-ECG test signals.
    """

    bridge_max_s: float = 1.0
    smoothing_windows: int = 3
    event_on: int = 2
    event_off: int = 2
    stall_timeout_s: float = 5.0
    beat_lead: int = 0
    noise_gate: bool = True
    #: keep each window's model input and raw output and every R peak (`WindowResult.inputs` /
    #: `.logits`, `Engine.audit_peaks`) to compare two machines bit for bit (`ecg-edge stream --audit`).
    audit: bool = False
    #: a stream that ends before its first window is classified on one padded window (its samples
    #: repeated: `Preprocessor.pad_tail`, flagged "padded"); off: it ends with the explicit "too short" line.
    pad_short: bool = True

    def __post_init__(self) -> None:
        for name in ("bridge_max_s", "stall_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"engine.{name}: expected a positive number of seconds")
        for name in ("smoothing_windows", "event_on", "event_off"):
            if getattr(self, name) < 1:
                raise ConfigError(f"engine.{name}: expected >= 1")


@dataclass
class StreamStats:
    """The engine's accounting of one stream, from any source: received = used + duplicate +
    rejected; lost never arrived on the engine's timeline (bridged or reset gaps).

    It counts what the engine did with the chunks it got. A BLE source has a second ledger, the
    transport's (`firmware_bridge.link_stats.LinkStats`: frames, reconnects, what the air lost);
    for such a stream `duplicate` here is the link's `reordered` (frames the link delivered late,
    behind the engine's position) and `lost` the link's `lost` plus those samples. The two are
    never summed; see `firmware_bridge.link_stats` for who owns which count.
    """

    received: int = 0
    used: int = 0
    lost: int = 0
    bridged_gaps: int = 0
    reset_gaps: int = 0
    duplicate: int = 0
    invalid: int = 0
    rejected: int = 0
    chunks: int = 0
    windows: int = 0
    windows_unusable: int = 0
    windows_padded: int = 0
    beats: int = 0
    #: per label, the classified windows whose smoothed decision was inconclusive for it (a model
    #: with `abstain` bands; empty without)
    windows_inconclusive: dict[str, int] = field(default_factory=dict)
    #: the recording's decision at the end of the stream (the "record" event: module docstring):
    #: {"decided", "record_rule", "windows", "probabilities", "inconclusive"}; None before, or with no
    #: classified window
    record: dict[str, Any] | None = None


@dataclass
class Event:
    """Something a user must know about: gap, reset, invalid, error, stall, rhythm episode, end."""

    kind: str
    t_start_s: float
    t_end_s: float | None = None
    label: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"type": "event", "kind": self.kind, "label": self.label, "t_start_s": self.t_start_s,
                "t_end_s": self.t_end_s, "detail": self.detail}


@dataclass
class WindowResult:
    """One window: device-time span, quality, model output, heart rate and per-stage latency.

    latency_ms: preprocess (the chunk that completed the window), quality (SQI), inference (model,
    per window), compute (their sum plus heart rate and events: the work this window cost),
    end_to_end (from the arrival of the chunk that completed the window to its release, including
    the wait for the beat detector to be final for the window: `hold_s` seconds of signal).
    """

    index: int
    t_start_s: float
    t_end_s: float
    usable: bool
    flags: dict[str, Any]
    probabilities: dict[str, float] | None = None
    smoothed: dict[str, float] | None = None
    hr_bpm: float = math.nan
    n_beats: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    inputs: np.ndarray | None = None  # (n_leads, window) float32, with EngineConfig.audit
    logits: np.ndarray | None = None  # (n_labels,) raw model output, with EngineConfig.audit
    #: labels whose smoothed decision is inconclusive in this window (inside the model's `abstain`
    #: band; single-label: the decided label); empty when none is or the model has no bands
    inconclusive: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"type": "window", "index": self.index, "t_start_s": round(self.t_start_s, 4),
                "t_end_s": round(self.t_end_s, 4), "usable": self.usable, "flags": self.flags,
                "probabilities": self.probabilities, "smoothed": self.smoothed, "inconclusive": self.inconclusive,
                "hr_bpm": None if math.isnan(self.hr_bpm) else round(self.hr_bpm, 2),
                "n_beats": self.n_beats, "latency_ms": self.latency_ms}


class Engine:
    """Stateful per-stream processing; one instance per stream."""

    def __init__(self, preprocessor: Preprocessor, model: Model | None = None, beats: Any | None = None,
                 config: EngineConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.pre = preprocessor
        self.model = model
        self.beats = beats
        self.cfg = config or EngineConfig()
        self.clock = clock
        self.fs_in = preprocessor.fs_in
        self.leads = preprocessor.leads
        beats_fs = getattr(beats, "fs", None)
        if beats_fs is not None and not math.isclose(float(beats_fs), self.fs_in, rel_tol=1e-9):
            raise ConfigError(f"Engine: the R-peak detector runs at {beats_fs:g} Hz, the preprocessor takes "
                              f"{self.fs_in:g} Hz; expected one device rate for both")
        self.stats = StreamStats()
        self._bridge_max = int(round(self.cfg.bridge_max_s * self.fs_in))
        self._expected: int | None = None
        self._stream_start: int | None = None  # index of the first sample of the stream
        self._segment_start = 0
        self._last: np.ndarray | None = None
        self._peaks: list[np.ndarray] = []
        self.audit_peaks: list[np.ndarray] = []  # every R peak (device sample index), with cfg.audit
        self._history: deque[np.ndarray] = deque(maxlen=self.cfg.smoothing_windows)
        self._event_state: dict[str, dict[str, Any]] = {}
        self._n_windows = 0
        self._pending: deque[WindowResult] = deque()
        self._early: list[WindowResult] = []  # released by a reset, returned by the same feed
        self._af = AfDetector()
        self._abstain = getattr(model, "abstain", None)
        self._record_probs: list[np.ndarray] = []  # every classified window's probabilities (the record event)
        if self._abstain is not None:
            self.stats.windows_inconclusive = {lab: 0 for lab in model.labels}

    # --- input stage ---------------------------------------------------------------------------

    def _reject(self, chunk: Chunk, why: str, events: list[Event]) -> None:
        n = int(np.shape(chunk.samples)[-1]) if np.ndim(chunk.samples) else 1
        self.stats.received += n
        self.stats.rejected += n
        events.append(Event("error", chunk.first_index / self.fs_in, detail=f"chunk at sample {chunk.first_index}: {why}; dropped"))

    def _admit(self, chunk: Chunk, events: list[Event]) -> tuple[np.ndarray, np.ndarray] | None:
        """Validate a chunk and place it on the device timeline; None when nothing is usable."""
        if chunk.error:  # the source refused data here (samples empty; the loss shows as the next gap)
            self._reject(chunk, chunk.error, events)
            return None
        if not math.isclose(chunk.fs, self.fs_in, rel_tol=1e-6):
            self._reject(chunk, f"fs {chunk.fs:g} Hz, expected {self.fs_in:g} Hz", events)
            return None
        raw = np.asarray(chunk.samples)
        if raw.dtype.kind not in "fiu":
            self._reject(chunk, f"dtype {raw.dtype}, expected real numbers in mV", events)
            return None
        x = raw.astype(np.float64, copy=False)
        if x.ndim == 1 and len(self.leads) == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[0] != len(self.leads):
            self._reject(chunk, f"shape {np.shape(chunk.samples)}, expected ({len(self.leads)}, n)", events)
            return None
        n, first = x.shape[1], int(chunk.first_index)
        self.stats.received += n
        self.stats.chunks += 1
        if self._expected is None:
            self._expected = self._segment_start = self._stream_start = first
        if first < self._expected:  # duplicate or reordered: keep only what is new
            overlap = min(n, self._expected - first)
            self.stats.duplicate += overlap
            if overlap == n:
                return None
            x, first = x[:, overlap:], self._expected
        n_new = x.shape[1]
        self.stats.used += n_new
        gap_mask = ~np.isfinite(x).all(axis=0)
        if gap_mask.any():
            self.stats.invalid += int(gap_mask.sum())
            events.append(Event("invalid", first / self.fs_in, detail=f"{int(gap_mask.sum())} non-finite samples bridged"))
            x = self._interpolate_invalid(x, gap_mask)
        missing = first - self._expected
        if missing > 0:
            self.stats.lost += missing
            t0 = self._expected / self.fs_in
            if missing <= self._bridge_max and self._last is not None:
                self.stats.bridged_gaps += 1
                events.append(Event("gap", t0, first / self.fs_in, detail=f"{missing} samples lost, bridged"))
                ramp = np.linspace(0.0, 1.0, missing + 2)[1:-1]
                fill = self._last[:, None] + (x[:, :1] - self._last[:, None]) * ramp[None, :]
                x = np.concatenate([fill, x], axis=1)
                gap_mask = np.concatenate([np.ones(missing, bool), gap_mask])
            else:
                self.stats.reset_gaps += 1
                events.append(Event("reset", t0, first / self.fs_in, detail=f"{missing} samples lost; state reset"))
                self._reset_segment(first, events)
        self._expected = first + n_new
        self._last = x[:, -1].copy()
        return x, gap_mask

    def _interpolate_invalid(self, x: np.ndarray, bad: np.ndarray) -> np.ndarray:
        good = np.flatnonzero(~bad)
        x = x.copy()
        if good.size == 0:  # nothing valid in the chunk: hold the last value (or zero)
            x[:] = (self._last if self._last is not None else np.zeros(len(self.leads)))[:, None]
            return x
        idx = np.arange(x.shape[1])
        for c in range(x.shape[0]):  # per lead, vectorised over samples
            x[c, bad] = np.interp(idx[bad], good, x[c, good])
        return x

    def _reset_segment(self, first: int, events: list[Event]) -> None:
        """A long gap: release the old segment's held windows, close episodes in progress at the
        gap, and start a new segment."""
        self._early += self._release(events, force=True)
        for ep in self._af.flush(self._expected / self.fs_in):
            events.append(Event("rhythm", ep.onset_s, ep.offset_s, AF_RR_LABEL, "offset at a gap"))
        for label, st in self._event_state.items():
            if st["open"] is not None:
                events.append(Event("rhythm", st["open"].t_start_s, st["last_pos"], label, "offset at a gap"))
        self._event_state.clear()
        self.pre.reset()
        if self.beats is not None:
            self.beats.reset()
        self._segment_start = first
        self._last = None
        self._history.clear()
        self._af.reset()

    # --- per chunk -------------------------------------------------------------------------------

    def feed(self, chunk: Chunk) -> tuple[list[WindowResult], list[Event]]:
        """Process one chunk; return the windows it made final and the events it raised.

        With a beat detector, a window is held until the detector's peaks are final for its span
        (`RPeakDetector.final_until`, typically under a second), so its heart rate does not depend
        on how the stream was chunked.
        """
        events: list[Event] = []
        t_arrival = chunk.host_time or self.clock()
        admitted = self._admit(chunk, events)
        if admitted is None:
            return [], events
        x, gap = admitted
        t0 = self.clock()
        win = self.pre.process(x, gap)
        t_pre = self.clock() - t0
        if self.beats is not None:
            peaks = self.beats.process(x[self.cfg.beat_lead])
            if len(peaks):
                peaks = np.asarray(peaks, np.int64) + self._segment_start
                self._peaks.append(peaks)
                if self.cfg.audit:
                    self.audit_peaks.append(peaks)
                self.stats.beats += len(peaks)
                self._rhythm(peaks / self.fs_in, events)
        self._pending.extend(self._windows(win, t_pre, t_arrival))
        early, self._early = self._early, []
        return early + self._release(events), events

    def _windows(self, win: Windows, t_pre: float, t_arrival: float) -> list[WindowResult]:
        """Results for new windows: quality, and the model on the usable ones (one batch)."""
        if len(win) == 0:
            return []
        fs_out = self.pre.config.fs_out
        t0 = self.clock()
        noisy = np.zeros(len(win), bool)
        if self.cfg.noise_gate:
            noisy = np.array([window_quality(w[0], fs_out).noisy for w in win.data])  # per window, per hop
        offset = self._segment_start / self.fs_in - self.pre.delay_s
        # after a reset, a window starting before the segment's first sample holds the filters'
        # start-up from the hole (delay_s of it): it touches the gap, so it is flagged like one
        early = (offset + win.start / fs_out < self._segment_start / self.fs_in - 1e-9) \
            if self._segment_start != self._stream_start else np.zeros(len(win), bool)
        usable = win.usable & ~noisy & ~early
        t_quality = (self.clock() - t0) / len(win)
        probs, logits, t_inf = None, None, 0.0
        if self.model is not None and usable.any():
            t0 = self.clock()
            probs = np.full((len(win), len(self.model.labels)), np.nan)
            if self.cfg.audit:
                logits = np.full(probs.shape, np.nan, dtype=np.float32)
                logits[usable] = self.model.logits(win.data[usable])
                probs[usable] = self.model.probabilities(logits[usable])
            else:
                probs[usable] = self.model.predict(win.data[usable])
            t_inf = (self.clock() - t0) / int(usable.sum())
        results = []
        for i in range(len(win)):  # per window (one every hop), not per sample
            t_start = offset + win.start[i] / fs_out
            res = WindowResult(
                index=self._n_windows, t_start_s=t_start, t_end_s=t_start + self.pre.config.window_s,
                usable=bool(usable[i]),
                flags={"flat": [self.leads[j] for j in np.flatnonzero(win.flat[i])],
                       "saturated": [self.leads[j] for j in np.flatnonzero(win.saturated[i])],
                       "gap": bool(win.gap[i] or early[i]), "noisy": bool(noisy[i]), "padded": bool(win.padded[i])},
                latency_ms={"preprocess": t_pre * 1e3, "quality": t_quality * 1e3,
                            "inference": t_inf * 1e3 if usable[i] else 0.0})
            if probs is not None and res.usable:
                res.probabilities = {lab: float(v) for lab, v in zip(self.model.labels, probs[i])}
            if self.cfg.audit:
                res.inputs = np.asarray(win.data[i], dtype=np.float32)
                res.logits = None if logits is None or not res.usable else logits[i]
            res._arrival = t_arrival  # type: ignore[attr-defined]
            self._n_windows += 1
            results.append(res)
        return results

    def _release(self, events: list[Event], force: bool = False) -> list[WindowResult]:
        """Emit held windows whose span the beat detector has finished with (all of them if `force`)."""
        final_s = math.inf if force or self.beats is None else \
            (self._segment_start + self.beats.final_until) / self.fs_in
        out = []
        while self._pending and self._pending[0].t_end_s <= final_s:
            t0 = self.clock()
            res = self._pending.popleft()
            self.stats.windows += 1
            self.stats.windows_unusable += not res.usable
            self.stats.windows_padded += res.flags.get("padded", False)
            self._heart_rate(res)
            if res.probabilities is not None:
                self._classify(res, events)
            lat, now = res.latency_ms, self.clock()
            lat["compute"] = lat["preprocess"] + lat["quality"] + lat["inference"] + (now - t0) * 1e3
            lat["end_to_end"] = (now - res.__dict__.pop("_arrival")) * 1e3
            lat["hold_s"] = 0.0 if force or self.beats is None else max(0.0, final_s - res.t_end_s)
            out.append(res)
        return out

    def _rhythm(self, beat_times: np.ndarray, events: list[Event]) -> None:
        """RR-irregularity AF episodes from the beats (no model needed)."""
        was = self._af.in_af
        for ep in self._af.process(beat_times):
            events.append(Event("rhythm", ep.onset_s, ep.offset_s, AF_RR_LABEL, "offset"))
        if self._af.in_af and not was:
            events.append(Event("rhythm", self._af.onset_s, None, AF_RR_LABEL, "onset"))

    def _heart_rate(self, res: WindowResult) -> None:
        if not self._peaks:
            return
        peaks = np.concatenate(self._peaks)
        self._peaks = [peaks[peaks >= (res.t_start_s - 3.0) * self.fs_in]]  # keep what later windows need
        res.hr_bpm = heart_rate_bpm(peaks, self.fs_in, res.t_start_s, res.t_end_s)
        t = peaks / self.fs_in
        res.n_beats = int(((t >= res.t_start_s) & (t < res.t_end_s)).sum())

    def _classify(self, res: WindowResult, events: list[Event]) -> None:
        labels = self.model.labels
        p = np.array([res.probabilities[lab] for lab in labels])
        self._record_probs.append(p)
        self._history.append(p)
        smooth = np.mean(self._history, axis=0)
        res.smoothed = {lab: float(v) for lab, v in zip(labels, smooth)}
        multilabel = getattr(self.model, "multilabel", True)
        positive = decide(smooth, self.model.thresholds, multilabel)[0]
        held = np.zeros(len(labels), bool)
        if self._abstain is not None:
            held = inconclusive(smooth, self.model.thresholds, self._abstain, multilabel)[0]
            res.inconclusive = [lab for lab, h in zip(labels, held) if h]
            for lab in res.inconclusive:
                self.stats.windows_inconclusive[lab] += 1
            if not multilabel and held.any():  # one decision per window: it holds every label
                held[:] = True
        for lab, pos, hold in zip(labels, positive, held):
            if lab not in NORMAL_LABELS:
                self._hysteresis(lab, bool(pos), res, events, bool(hold))

    def _hysteresis(self, label: str, positive: bool, res: WindowResult, events: list[Event],
                    hold: bool = False) -> None:
        """Open an episode after `event_on` positive windows in a row, close it after `event_off`
        negative ones; a window held (inconclusive for this label) leaves the state as it is."""
        st = self._event_state.setdefault(label, {"open": None, "run": 0, "first": None, "last_pos": None})
        if hold:
            return
        if positive:
            st["last_pos"] = res.t_end_s
        if st["open"] is None:
            st["run"] = st["run"] + 1 if positive else 0
            st["first"] = res.t_start_s if st["run"] == 1 else st["first"]
            if st["run"] >= self.cfg.event_on:
                st["open"] = Event("rhythm", st["first"], None, label, "onset")
                events.append(st["open"])
                st["run"] = 0
        else:
            st["run"] = 0 if positive else st["run"] + 1
            if st["run"] >= self.cfg.event_off:
                events.append(Event("rhythm", st["open"].t_start_s, st["last_pos"], label, "offset"))
                st["open"], st["run"] = None, 0

    def run(self, chunks: Iterable[Chunk]) -> tuple[list[WindowResult], list[Event]]:
        """Feed a whole offline stream (chunks in arrival order) and finish it: every window and event.
        The synchronous counterpart of `run_stream`, for recordings, tests and benchmarks."""
        results: list[WindowResult] = []
        events: list[Event] = []
        for chunk in chunks:  # per chunk
            r, e = self.feed(chunk)
            results += r
            events += e
        r, e = self.finish()
        return results + r, events + e

    def finish(self) -> tuple[list[WindowResult], list[Event]]:
        """End of stream: release held windows, close open episodes, report what was not classified.
        A stream shorter than one window gets its one padded window (`EngineConfig.pad_short`) or
        ends with the explicit "too short" line."""
        events: list[Event] = []
        short = self._n_windows == 0 and self.stats.used > 0
        if short and self.cfg.pad_short:
            self._pending.extend(self._windows(self.pre.pad_tail(), 0.0, self.clock()))
        results = self._release(events, force=True)
        end = (self._expected or 0) / self.fs_in
        for ep in self._af.flush(end):
            events.append(Event("rhythm", ep.onset_s, ep.offset_s, AF_RR_LABEL, "offset at end of stream"))
        for label, st in self._event_state.items():
            if st["open"] is not None:
                events.append(Event("rhythm", st["open"].t_start_s, st["last_pos"], label, "offset at end of stream"))
        s = self.stats
        window_s = self.pre.config.window_s
        tail = "the last partial window is not classified"
        if short:
            seconds = f"the stream ({(self._expected - self._stream_start) / self.fs_in:.1f} s) is shorter than one " \
                      f"{window_s:g} s window"
            tail = f"{seconds}: padded to one window (flagged padded)" if s.windows_padded else f"{seconds}: too short, no decision"
        held = "" if self._abstain is None else "; inconclusive: " + ", ".join(
            f"{lab} {n}" for lab, n in s.windows_inconclusive.items())
        if self._record_probs:
            events.append(self._record_event(end))
        events.append(Event("end", end, end, detail=(
            f"{s.received} samples received, {s.used} used, {s.lost} lost in {s.bridged_gaps + s.reset_gaps} gaps, "
            f"{s.duplicate} duplicate, {s.invalid} invalid, {s.rejected} rejected; {s.windows} windows "
            f"({s.windows_unusable} unusable, {s.windows_padded} padded{held}); {tail}")))
        return results, events


    def _record_event(self, end: float) -> Event:
        """The recording's decision (module docstring) from the windows classified so far."""
        labels, thresholds = self.model.labels, self.model.thresholds
        multilabel = getattr(self.model, "multilabel", True)
        rule = getattr(self.model, "record_rule", "mean")
        p = record_probabilities(np.stack(self._record_probs), rule)
        decided = [lab for lab, d in zip(labels, decide(p, thresholds, multilabel)[0]) if d]
        unsure = [] if self._abstain is None else \
            [lab for lab, h in zip(labels, inconclusive(p, thresholds, self._abstain, multilabel)[0]) if h]
        start = 0.0 if self._stream_start is None else self._stream_start / self.fs_in
        n = len(self._record_probs)
        self.stats.record = {"decided": decided, "record_rule": rule, "windows": n,
                             "probabilities": {lab: float(v) for lab, v in zip(labels, p)}, "inconclusive": unsure}
        detail = (f"the recording's decision: {rule} of {n} window{'s' * (n != 1)}' probabilities: "
                  + ", ".join(f"{lab} {v:.3f}" for lab, v in zip(labels, p))
                  + (f"; inconclusive {', '.join(unsure)}" if unsure else ""))
        return Event("record", start, end, ", ".join(decided) or "none", detail)


async def run_stream(source: AsyncIterator[Chunk], engine: Engine,
                     sinks: list[Callable[[list[WindowResult], list[Event]], None]],
                     taps: tuple[Callable[[Chunk], None], ...] = ()) -> StreamStats:
    """Drive `engine` from an async source; a silent source raises stall events but is kept.

    `taps` see every chunk before the engine does (the live view's trace)."""
    it = source.__aiter__()
    pending: asyncio.Task | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=engine.cfg.stall_timeout_s)
            if not done:
                t = (engine._expected or 0) / engine.fs_in
                for sink in sinks:
                    sink([], [Event("stall", t, detail=f"no data for {engine.cfg.stall_timeout_s:g} s")])
                continue
            task, pending = pending, None
            try:
                chunk = task.result()
            except StopAsyncIteration:
                break
            for tap in taps if not chunk.error else ():
                tap(chunk)
            results, events = engine.feed(chunk)
            if results or events:
                for sink in sinks:
                    sink(results, events)
    finally:
        if pending is not None:
            pending.cancel()
    results, final = engine.finish()
    for sink in sinks:
        sink(results, final)
    return engine.stats
