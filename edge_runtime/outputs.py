"""Where stream results go: a JSONL event log, a per-window CSV, a live terminal view, and plain text lines.

Every sink is a callable `sink(results, events)`; the live view also taps the raw chunks for its
trace. rich is imported only by the live view (it ships with the `edge` extra).
"""
from __future__ import annotations

import csv
import json
import math
from collections import deque
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from edge_runtime.engine import Event, StreamStats, WindowResult
from edge_runtime.sources import Chunk

_BLOCKS = "▁▂▃▄▅▆▇█"


class JsonlSink:
    """One JSON object per line: {"type": "window", ...} or {"type": "event", ...}."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: TextIO = open(self.path, "w", encoding="utf-8")

    def __call__(self, results: list[WindowResult], events: list[Event]) -> None:
        for item in [*results, *events]:
            self._f.write(json.dumps(item.as_dict(), default=_json_default) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.bool_):
        return bool(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


class CsvSink:
    """One row per window: quality, heart rate and latency, then `p_<label>` and `smoothed_<label>`
    per label, then `inconclusive` (the labels whose smoothed decision sat inside the model's
    abstention band in that window, space-separated; empty when none did or the model has no bands)."""

    BASE = ("index", "t_start_s", "t_end_s", "usable", "flat", "saturated", "gap", "hr_bpm", "n_beats",
            "latency_preprocess_ms", "latency_inference_ms", "latency_end_to_end_ms")

    def __init__(self, path: str | Path, labels: tuple[str, ...] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", encoding="utf-8", newline="")
        self.labels = tuple(labels)
        cols = [*self.BASE, *(f"p_{lab}" for lab in self.labels), *(f"smoothed_{lab}" for lab in self.labels),
                "inconclusive"]
        self._w = csv.writer(self._f)
        self._w.writerow(cols)

    def __call__(self, results: list[WindowResult], events: list[Event]) -> None:
        for r in results:
            lat = r.latency_ms
            row = [r.index, f"{r.t_start_s:.4f}", f"{r.t_end_s:.4f}", int(r.usable), " ".join(r.flags["flat"]),
                   " ".join(r.flags["saturated"]), int(r.flags["gap"]), "" if math.isnan(r.hr_bpm) else f"{r.hr_bpm:.2f}",
                   r.n_beats, f"{lat.get('preprocess', 0):.4f}", f"{lat.get('inference', 0):.4f}",
                   f"{lat.get('end_to_end', 0):.4f}"]
            for source in (r.probabilities, r.smoothed):
                row += ["" if source is None else f"{source[lab]:.6f}" for lab in self.labels]
            self._w.writerow(row + [" ".join(r.inconclusive)])
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def sparkline(x: np.ndarray, width: int) -> str:
    """A one-line trace: `width` columns, each the block for that span's extreme value."""
    if x.size < 2:
        return ""
    cols = np.array_split(x, min(width, x.size))
    vals = np.array([c[np.argmax(np.abs(c - np.median(x)))] for c in cols])  # width iterations, not samples
    lo, hi = float(vals.min()), float(vals.max())
    idx = np.zeros(len(vals), int) if hi - lo < 1e-9 else np.round((vals - lo) / (hi - lo) * 7).astype(int)
    return "".join(_BLOCKS[i] for i in idx)


class LiveView:
    """A live terminal view (rich): trace, heart rate, probabilities, events, sample accounting.

    Fits an 80-column terminal (one line per row, long values cut with an ellipsis). A smoothed
    probability whose decision is inconclusive (inside the model's abstain band) is followed by
    "?". The latency percentiles leave out the warm-up: the stream's first window and the first
    window the model ran on (the interpreter's first invoke), and the view says so. While it runs
    on a terminal, the tty does not echo control characters: an echoed ^C would move the cursor
    under the panel and leave its old top border behind when the view is stopped by Ctrl-C.
    """

    #: Windows the latency percentiles leave out (the first of the stream, and the model's first).
    WARMUP_NOTE = "first window and first inference left out (warm-up)"

    def __init__(self, stats: StreamStats, title: str, trace_s: float = 5.0, console: Any | None = None):
        from rich.console import Console

        self.stats, self.title, self.trace_s = stats, title, trace_s
        self.console = console or Console()
        self._trace: deque[np.ndarray] = deque()
        self._trace_n = 0
        self._fs = 0.0
        self._last: WindowResult | None = None
        self._events: deque[Event] = deque(maxlen=6)
        self._latency: deque[float] = deque(maxlen=500)
        self._model_warm = False
        self._live = None
        self._tty: tuple[int, list] | None = None

    def tap(self, chunk: Chunk) -> None:
        """Keep the last `trace_s` seconds of the first lead for the trace."""
        self._fs = chunk.fs
        self._trace.append(np.asarray(chunk.samples, float).reshape(-1, chunk.n)[0])
        self._trace_n += chunk.n
        while self._trace and self._trace_n - len(self._trace[0]) >= self.trace_s * chunk.fs:
            self._trace_n -= len(self._trace.popleft())

    def __call__(self, results: list[WindowResult], events: list[Event]) -> None:
        if results:
            self._last = results[-1]
        for r in results:  # per window
            first_inference = r.probabilities is not None and not self._model_warm
            self._model_warm = self._model_warm or r.probabilities is not None
            if r.index > 0 and not first_inference:
                self._latency.append(r.latency_ms.get("end_to_end", 0.0))
        self._events.extend(events)
        if self._live is not None:
            self._live.update(self.render())

    def render(self) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold cyan", justify="right", no_wrap=True)
        t.add_column(no_wrap=True, overflow="ellipsis")
        trace = np.concatenate(list(self._trace)) if self._trace else np.zeros(0)
        width = max(10, min(60, self.console.width - 17))  # label column, padding and borders
        t.add_row("trace", sparkline(trace, width) or "(waiting for data)")
        r, s = self._last, self.stats
        hr = "--" if r is None or math.isnan(r.hr_bpm) else f"{r.hr_bpm:.0f} bpm"
        t.add_row("heart rate", hr)
        if r is not None and r.smoothed:
            t.add_row("classes", "  ".join(f"{k} {v:.2f}" + ("?" if k in r.inconclusive else "")
                                           for k, v in r.smoothed.items()))
        if r is not None:
            why = unusable_reasons(r)
            t.add_row("window", f"#{r.index} {r.t_start_s:.1f}-{r.t_end_s:.1f} s  " +
                      ("usable" if r.usable else f"unusable ({why})" if why else "unusable"))
        t.add_row("samples", f"received {s.received}  lost {s.lost} ({s.bridged_gaps + s.reset_gaps} gaps)")
        t.add_row("dropped", f"duplicate {s.duplicate}  invalid {s.invalid}  rejected {s.rejected}")
        if self._latency:
            lat = np.asarray(self._latency)
            t.add_row("latency", f"p50 {np.percentile(lat, 50):.2f} ms  p99 {np.percentile(lat, 99):.2f} ms")
            t.add_row("", self.WARMUP_NOTE, style="dim")
        for e in self._events:
            span = f"{e.t_start_s:.1f}" if e.t_end_s is None or e.t_end_s == e.t_start_s else \
                f"{e.t_start_s:.1f}-{e.t_end_s:.1f}"
            t.add_row(e.kind, " ".join(part for part in (f"{span} s", e.label, e.detail) if part))
        return Panel(t, title=self.title)

    def __enter__(self) -> "LiveView":
        from rich.live import Live

        if self.console.is_terminal:
            self._tty = _no_control_echo()
        self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._live is not None:
                self._live.update(self.render())
                self._live.__exit__(*exc)
                self._live = None
        finally:
            if self._tty is not None:
                _restore_tty(self._tty)
                self._tty = None


class TextSink:
    """Plain text where no live view can run (output that is not a terminal): one line per window and
    per event (the closing `end` event aside), each handed to `write` (e.g. `print`). A window whose
    decision is inconclusive for some labels (the model's abstain bands) ends "inconclusive A, O"."""

    def __init__(self, write: Callable[[str], None]):
        self.write = write

    def __call__(self, results: list[WindowResult], events: list[Event]) -> None:
        for r in results:
            top = max(r.smoothed.items(), key=lambda kv: kv[1]) if r.smoothed else None
            hr = "  -- bpm" if np.isnan(r.hr_bpm) else f"{r.hr_bpm:5.0f} bpm"
            self.write(f"window {r.index:3d} {r.t_start_s:6.1f}-{r.t_end_s:6.1f} s  {hr}  "
                       + (f"{top[0]} {top[1]:.2f}" if top else "not classified")
                       + ("" if r.usable else f"  (unusable: {unusable_reasons(r)})")
                       + (f"  inconclusive {', '.join(r.inconclusive)}" if r.inconclusive else ""))
        for e in events:
            if e.kind != "end":
                end = f"-{e.t_end_s:.1f}" if e.t_end_s is not None and e.t_end_s != e.t_start_s else ""
                self.write(f"event {e.kind} {e.label} {e.t_start_s:.1f}{end} s {e.detail}".rstrip())


def unusable_reasons(r: WindowResult) -> str:
    """Why a window was not classified: "flat II, gap", "noisy", ... (empty for a usable window)."""
    why = [f"{name} {' '.join(r.flags[name])}" for name in ("flat", "saturated") if r.flags.get(name)]
    return ", ".join(why + [name for name in ("gap", "noisy") if r.flags.get(name)])


def _no_control_echo() -> tuple[int, list] | None:
    """Stop the terminal on stdin echoing control characters (ECHOCTL: ^C); returns what to restore."""
    import sys

    try:
        import termios
    except ImportError:  # not a POSIX terminal
        return None
    try:
        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd)
        new = list(old)
        new[3] &= ~termios.ECHOCTL
        termios.tcsetattr(fd, termios.TCSANOW, new)
        return fd, old
    except (AttributeError, OSError, ValueError, termios.error):  # no stdin, or not a tty
        return None


def _restore_tty(saved: tuple[int, list]) -> None:
    import termios

    try:
        termios.tcsetattr(saved[0], termios.TCSANOW, saved[1])
    except (OSError, termios.error):
        pass


class AuditSink:
    """Every window's model input and raw output, and every R peak, in one .npz (`stream --audit`).

    What two machines running the same stream must agree on (`bench/pi.py` compares an emulated
    aarch64 run with x86): `index`, `t_start_s`, `usable` per window; `inputs` (n, n_leads, window)
    float32; `logits` (n, n_labels) float32, NaN where no model ran; `peaks`, the R peaks as device
    sample indices. Needs an engine built with `EngineConfig(audit=True)`; written on close.
    """

    def __init__(self, path: str | Path, engine: Any):
        if not engine.cfg.audit:
            raise ValueError("AuditSink needs an Engine with EngineConfig(audit=True)")
        self.path, self.engine = Path(path), engine
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._windows: list[WindowResult] = []

    def __call__(self, results: list[WindowResult], events: list[Event]) -> None:
        self._windows += results

    def close(self) -> None:
        w, model = self._windows, self.engine.model
        n_labels = len(model.labels) if model is not None else 0
        shape = w[0].inputs.shape if w else (len(self.engine.leads), 0)
        logits = np.full((len(w), n_labels), np.nan, dtype=np.float32)
        for i, r in enumerate(w):  # per window
            if r.logits is not None:
                logits[i] = r.logits
        peaks = self.engine.audit_peaks
        np.savez(self.path, index=np.array([r.index for r in w], np.int64),
                 t_start_s=np.array([r.t_start_s for r in w], np.float64),
                 usable=np.array([r.usable for r in w], bool),
                 inputs=np.stack([r.inputs for r in w]) if w else np.zeros((0, *shape), np.float32),
                 logits=logits, labels=np.array(model.labels if model is not None else (), dtype=str),
                 peaks=np.concatenate(peaks) if peaks else np.zeros(0, np.int64))
