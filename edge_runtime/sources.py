"""What a stream source delivers: `Chunk`s of consecutive samples, indexed in the device's own count.

Every source (file replay, the synthetic generator, a BLE wearable through `firmware_bridge`)
yields `Chunk`s. A chunk says where its first sample sits in the device's sample count
(`first_index`), so the streaming engine finds gaps (a jump forward), duplicates and reordering
(a step back) with one mechanism, whatever the transport: a BLE client derives the index from
device timestamps (Polar PMD) or packet sequence numbers (the open profile), never from the host
clock.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """A block of consecutive samples from one source.

    samples: (n_leads, n) in mV, leads in the order the source declares.
    first_index: index of `samples[:, 0]` in the device's sample count (0 at the stream start).
    fs: the device's nominal rate in Hz.
    device_time_ns: device clock at the first sample, in ns, when the device sends timestamps.
    host_time: `time.monotonic()` when the chunk arrived (for latency and drift estimates; 0 offline).
    error: non-empty when the source refused data at `first_index` (a BLE frame that was malformed
        or changed the stream's rate or lead, a full queue): `samples` is then empty (n_leads, 0)
        and the engine logs an error event; the refused samples show up as the next gap.
    """

    samples: np.ndarray
    first_index: int
    fs: float
    device_time_ns: int | None = None
    host_time: float = 0.0
    error: str = ""

    @property
    def n(self) -> int:
        return int(self.samples.shape[-1])

    @property
    def end_index(self) -> int:
        """Index one past the last sample."""
        return self.first_index + self.n


class ArraySource:
    """Replay an in-memory signal (n_leads, n) in mV as a stream of `chunk`-sample Chunks.

    speed: None streams as fast as possible; 1.0 paces chunks at real time, 10.0 ten times faster.
    Use it for .npy files (`load_npy`), records read by a dataset reader, or the synthetic generator.
    """

    def __init__(self, signal: np.ndarray, fs: float, chunk: int = 73, speed: float | None = None):
        sig = np.asarray(signal, dtype=np.float64)
        self.signal = sig[None, :] if sig.ndim == 1 else sig
        self.fs, self.chunk, self.speed = float(fs), int(chunk), speed

    def chunks(self) -> list[Chunk]:
        """All chunks at once (synchronous use, tests and benchmarks)."""
        n = self.signal.shape[1]
        return [Chunk(self.signal[:, i:i + self.chunk], i, self.fs) for i in range(0, n, self.chunk)]

    async def __aiter__(self):
        import asyncio
        import time

        start = time.monotonic()
        for c in self.chunks():
            if self.speed:
                due = start + c.end_index / self.fs / self.speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            else:
                await asyncio.sleep(0)  # let other tasks (live view, BLE) run
            yield Chunk(c.samples, c.first_index, c.fs, None, time.monotonic())


def load_npy(path: str, leads: int | None = None) -> np.ndarray:
    """Load a .npy recording in mV: 1-D for one lead, or (n_leads, n_samples)."""
    from pathlib import Path

    from edge_runtime.errors import SignalShapeError

    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SignalShapeError(f"{p}: not a readable .npy array ({exc})") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.dtype.kind not in "fiu" or (leads is not None and arr.shape[0] != leads):
        raise SignalShapeError(f"{p}: expected a numeric array (n_leads, n_samples) in mV, got {arr.dtype} {arr.shape}")
    return arr
