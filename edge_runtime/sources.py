"""What a stream source delivers: `Chunk`s of consecutive samples, indexed in the device's own count.

Every source (file replay, the synthetic generator, a BLE wearable through `firmware_bridge`)
yields `Chunk`s. A chunk says where its first sample sits in the device's sample count
(`first_index`), so the streaming engine finds gaps (a jump forward), duplicates and reordering
(a step back) with one mechanism, whatever the transport: a BLE client derives the index from
device timestamps (Polar PMD) or packet sequence numbers (the open profile), never from the host
clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

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
        from edge_runtime.errors import ConfigError

        if not (isinstance(chunk, (int, np.integer)) and chunk > 0):
            raise ConfigError(f"chunk: expected a positive number of samples, got {chunk!r}")
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed: expected a positive factor of real time (None: as fast as possible), got {speed!r}")
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


def load_npy(path: str | Path, row: int | None = None) -> np.ndarray:
    """Load a .npy recording of one lead in mV as (1, n) float64: the .npy replay contract.

    - (n,) or (1, n): one lead. (k, n) with 1 < k <= n: k leads, and `row` (0-based; `--row` on the
      command line) says which one to stream; without it the file is refused, never row 0 guessed.
    - (n, k) with n > k (more rows than columns, (n, 1) included) is almost surely a recording saved
      transposed: refused with a message saying so (save `x.T`, or `x.ravel()` for one lead).
    - an integer or floating-point dtype (no bool, complex, strings or pickled objects:
      `allow_pickle=False`), at least one sample and at least one finite sample (NaN/inf samples
      in an otherwise usable file are streamed and counted invalid by the engine).

    Every refusal is one `SignalError` naming the file and what was expected.
    """
    from edge_runtime.errors import EmptySignalError, SignalShapeError, SignalValueError

    p = Path(path)
    if not p.is_file():
        raise SignalShapeError(f"{p}: .npy file not found" + (" (a folder)" if p.is_dir() else ""))
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise SignalShapeError(f"{p}: not a readable numeric .npy array; expected (n,) or (k, n) samples in mV "
                               f"({' '.join(str(exc).split())})") from None
    what = f"{p}: expected (n,) or (1, n) samples of one lead in mV, or (k, n) with --row"
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise SignalShapeError(f"{what}; got dtype {getattr(arr, 'dtype', type(arr).__name__)} "
                               f"(expected integers or floats)")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SignalShapeError(f"{what}; got a {arr.ndim}-D array of shape {tuple(arr.shape)}")
    k, n = arr.shape
    if k == 0 or n == 0:
        raise EmptySignalError(f"{what}; got shape {tuple(arr.shape)}: no samples")
    if k > n:
        raise SignalShapeError(f"{p}: shape {tuple(arr.shape)} has more rows than samples per row: almost surely "
                               f"transposed (n samples x {n} leads); expected (k leads, n samples): save x.T "
                               f"(or x.ravel() for one lead)")
    if row is None and k > 1:
        raise SignalShapeError(f"{p}: a {tuple(arr.shape)} array holds {k} rows (leads) and no lead names; choose the "
                               f"row to stream with --row 0..{k - 1} (and name its lead with --lead)")
    r = 0 if row is None else int(row)
    if not 0 <= r < k:
        raise SignalShapeError(f"{p}: --row {r}: expected 0..{k - 1} for a {tuple(arr.shape)} array")
    x = arr[r:r + 1].astype(np.float64)
    if not np.isfinite(x).any():
        raise SignalValueError(f"{p}: {'row ' + str(r) + ' holds' if k > 1 else 'holds'} no finite sample "
                               f"(all NaN or inf); expected samples in mV")
    return x


def wfdb_header_rate(header: str | Path) -> float:
    """The sampling rate (Hz) on a WFDB header's record line, checked: wfdb's reader takes a
    missing or unparsable rate field as 250 Hz without a word, which would stream a record at the
    wrong rate. Record line: `name[/segments] n_signals fs[/counter_fs[(base)]] [n_samples ...]`.

    Raises `DatasetError` naming the header when it is missing, unreadable, has no record line, or
    its rate is absent, not a number, or not positive and finite.
    """
    from edge_runtime.errors import DatasetError

    p = Path(header)
    if not p.is_file():
        raise DatasetError(f"{p}: WFDB header not found")
    try:
        text = p.read_text(encoding="latin-1")
    except OSError as exc:
        raise DatasetError(f"{p}: unreadable WFDB header ({exc.strerror or exc})") from None
    record = next((line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), None)
    if record is None or len(record) < 2:
        raise DatasetError(f"{p}: no WFDB record line (expected 'name n_signals fs n_samples')")
    if len(record) < 3:
        raise DatasetError(f"{p}: no sampling rate on the record line {' '.join(record)!r}; expected the rate in "
                           "Hz as its third field (wfdb would assume 250 Hz)")
    token = record[2].split("/")[0]
    try:
        fs = float(token)
    except ValueError:
        fs = math.nan
    if not (math.isfinite(fs) and fs > 0):
        raise DatasetError(f"{p}: sampling rate {token!r} on the record line; expected a positive number of Hz "
                           "(wfdb would assume 250 Hz)")
    return fs
