"""The BLE link's accounting (`LinkStats`, `EcgClient.stats`): every sample the wearable sent,
received, lost (where and how many), duplicated, reordered, malformed frames, reconnects, and
clock estimates. What the transport did, before the streaming engine sees a chunk.

Who owns what (no sample is counted twice within one ledger; the two ledgers describe two stages):
- this ledger owns the transport: notifications decoded or refused (malformed, rejected, overflow),
  reconnects, the device clock, and `lost` = samples the device sent that never reached the host,
  `duplicated` = samples the air delivered twice (dropped here, never passed on), `reordered` =
  late frames that filled a gap (passed on late, as a chunk behind the newest).
- `edge_runtime.engine.StreamStats` (`Engine.stats`) owns what the engine did with the chunks it
  got, from any source: samples used, gaps bridged or reset, non-finite samples, windows, beats.
  The engine cannot go back in time, so for a BLE stream its `duplicate` is the link's `reordered`
  samples (dropped there), its `lost` is the link's `lost` plus those same `reordered` samples,
  and its `received` equals the link's `received` (all three hold on `bench/faults.py`'s
  fault-injected runs, which check the `lost` one). Add neither ledger's `lost` to the other's:
  the link's is the transport loss, the engine's the hole in its timeline.

The index of a sample is the device's own sample count (Polar: from device timestamps; open
profile: from packets' first-sample indices, and across a reconnect from their device timestamps),
so a gap is a jump forward in that count and a duplicate a step back onto samples already delivered.

Invariant, checked by the tests and `bench/faults.py`: `received + lost == span` (the samples the
device sent, from the first received to one past the newest). `lost` is every sample of that span
not delivered, whatever the cause: notifications dropped on the air or by the bounded queue
(`overflow`), outages while the link was down, and frames refused as `malformed` (undecodable, or
well formed but implausible: a corrupt timestamp, index or gain) or `rejected` (a rate, format,
lead or gain that differs from the stream's). `malformed`, `rejected` and `overflow` count frames
(notifications), not samples: they say why part of `lost` is lost. A refused frame's samples
become part of the gap the next good frame reveals, so they are counted exactly once, in `lost`.
Samples after the newest delivered frame are outside the span (no later frame reveals them).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gap:
    """Samples `[first_index, first_index + n)` never received (still missing)."""

    first_index: int
    n: int
    host_time: float = 0.0
    after_reconnect: bool = False

    @property
    def end_index(self) -> int:
        return self.first_index + self.n


class LinearFit:
    """Online least-squares slope of y on x (Welford updates: no cancellation on long streams)."""

    def __init__(self) -> None:
        self.n = 0
        self._x0 = self._y0 = 0.0  # first point: keeps the sums small
        self._mx = self._my = self._sxx = self._sxy = 0.0

    def add(self, x: float, y: float) -> None:
        if self.n == 0:
            self._x0, self._y0 = x, y
        x, y = x - self._x0, y - self._y0
        self.n += 1
        dx = x - self._mx
        self._mx += dx / self.n
        self._my += (y - self._my) / self.n
        self._sxx += dx * (x - self._mx)
        self._sxy += dx * (y - self._my)

    @property
    def slope(self) -> float | None:
        return self._sxy / self._sxx if self.n >= 2 and self._sxx > 0 else None


@dataclass
class LinkStats:
    """Counts for one `EcgClient` stream (all in samples unless the name says frames).

    received: samples delivered in chunks. lost: samples inside `gaps` (never received).
    duplicated: samples dropped because they had been delivered already. reordered: samples that
    arrived after later ones and filled part of a gap (delivered, no longer lost).
    malformed: frames that failed to decode or were implausible (`malformed_reasons` counts their
    messages). rejected: frames refused for changing the stream's rate, format, lead or gain
    (`rejected_reasons`). overflow: notifications dropped because the client's queue was full.
    frames: notifications decoded; reconnects: successful reconnections after a drop.
    """

    fs: float
    received: int = 0
    duplicated: int = 0
    reordered: int = 0
    malformed: int = 0
    rejected: int = 0
    overflow: int = 0
    frames: int = 0
    reconnects: int = 0
    gaps: list[Gap] = field(default_factory=list)
    malformed_reasons: Counter = field(default_factory=Counter)
    rejected_reasons: Counter = field(default_factory=Counter)
    first_index: int | None = None
    next_index: int = 0  # one past the newest sample received
    _period: LinearFit = field(default_factory=LinearFit, repr=False)
    _clock: LinearFit = field(default_factory=LinearFit, repr=False)
    _after_reconnect: bool = field(default=False, repr=False)

    @property
    def lost(self) -> int:
        return sum(g.n for g in self.gaps)

    @property
    def span(self) -> int:
        """Samples from the first received to one past the newest (received + lost)."""
        return 0 if self.first_index is None else self.next_index - self.first_index

    @property
    def rate_ppm(self) -> float | None:
        """Device's true sampling rate against its nominal `fs`, in ppm (from device timestamps)."""
        period = self._period.slope
        return None if period is None else (1e9 / self.fs / period - 1.0) * 1e6

    @property
    def clock_drift_ppm(self) -> float | None:
        """Device clock against the host's monotonic clock, in ppm (positive: device runs fast).

        Only meaningful for a real-time stream; a virtual device replaying faster than real time
        reads as (speed - 1) * 1e6.
        """
        slope = self._clock.slope
        return None if slope is None else (slope - 1.0) * 1e6

    def mark_reconnect(self) -> None:
        self.reconnects += 1
        self._after_reconnect = True

    def bad_frame(self, reason: str) -> None:
        self.malformed += 1
        self.malformed_reasons[reason] += 1

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.rejected_reasons[reason] += 1

    def account(self, first: int, n: int, host_time: float, device_time_ns: int | None = None,
                period_ns: float | None = None) -> tuple[int, int] | None:
        """Book a decoded frame of `n` samples starting at device index `first`.

        Returns the (start, stop) offsets within the frame to deliver, or None when nothing in it is
        new. A jump forward opens a `Gap`; a frame inside a gap fills it (reordered); samples
        already received count as duplicated.
        """
        self.frames += 1
        if device_time_ns is not None:
            self._period.add(float(first), float(device_time_ns))
            last_ns = device_time_ns + (n - 1) * (period_ns or 1e9 / self.fs)
            self._clock.add(host_time, last_ns * 1e-9)
        if self.first_index is None:
            self.first_index = self.next_index = first
        end = first + n
        if first >= self.next_index:
            if first > self.next_index:
                self.gaps.append(Gap(self.next_index, first - self.next_index, host_time, self._after_reconnect))
            self.next_index = end
            self.received += n
            self._after_reconnect = False
            return 0, n
        return self._late(first, end)

    def _late(self, first: int, end: int) -> tuple[int, int] | None:
        """A frame starting before `next_index`: fill a gap, extend past the end, or duplicate."""
        if end > self.next_index and not any(g.first_index < self.next_index and g.end_index > first
                                             for g in self.gaps):
            # overlaps only delivered samples, then runs past them: keep the new tail
            self.duplicated += self.next_index - first
            start = self.next_index - first
            self.received += end - self.next_index
            self.next_index = end
            return start, end - first
        for i, gap in enumerate(self.gaps):
            if gap.first_index <= first and end <= gap.end_index:
                pieces = [Gap(gap.first_index, first - gap.first_index, gap.host_time, gap.after_reconnect),
                          Gap(end, gap.end_index - end, gap.host_time, gap.after_reconnect)]
                self.gaps[i:i + 1] = [p for p in pieces if p.n > 0]
                self.received += end - first
                self.reordered += end - first
                return 0, end - first
        self.duplicated += end - first  # already delivered (or straddles a gap: kept out, gap stays flagged)
        return None
