"""The one way to a wearable: `open_wearable(target, options)` picks what serves the target, as bleak
picks its platform backend, and hands back a source of `edge_runtime.sources.Chunk`s.

    async with open_wearable("Polar H10 1A2B3C4D") as wearable:        # a real device: bleak (BlueZ on a Pi)
        async for chunk in wearable:                                   # samples (1, n) in mV
            ...
        print(wearable.stats)                                          # the link's loss accounting
    async with open_wearable("virtual:data/mitdb/100", WearableOptions(seconds=60, speed=None)) as wearable:
        ...                                                            # a virtual Polar H10 on bumble

A target `virtual:PATH` starts a `virtual.VirtualWearable` replaying PATH (a WFDB record, or a .npy
in mV under the `.npy` replay contract) on an in-process bumble link (`bumble_backend.virtual_link`),
reached through the same `EcgClient` and bleak API as a real device. Any other target is a device
name or address; None (or "") takes the first device advertising the profile. The iteration ends
after `seconds` of signal, or once a virtual wearable has sent its whole recording. bleak and bumble
are imported when a wearable is opened.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from edge_runtime.errors import require
from edge_runtime.sources import Chunk
from edge_runtime.spec import canonical_lead
from firmware_bridge.client import EcgClient
from firmware_bridge.polar import HR_ECG_FS

#: Target prefix of a virtual wearable replaying a recording.
VIRTUAL = "virtual:"
#: Replay speed of a virtual wearable asked to go as fast as it can (`WearableOptions.speed` None).
FAST_SPEED = 1000.0


@dataclass(frozen=True)
class WearableOptions:
    """How to stream from a wearable (`open_wearable`).

    profile: "polar" or "open". lead: the lead the wearable records (default CHEST for a device,
    MLII for a replay). seconds: stop after this much signal (0: never; a replay: all of it).
    A virtual wearable only: fs, the rate of a .npy replay (WFDB records carry theirs); row, the row
    of a (k, n) .npy; device_fs, the open profile's rate (a Polar H10 streams at `polar.HR_ECG_FS`);
    speed, 1.0 for real time, None for as fast as it goes (`FAST_SPEED`); drop, disconnect_after and
    seed: the faults it injects (`virtual.Faults`).
    """

    profile: str = "polar"
    lead: str | None = None
    seconds: float = 0.0
    fs: float | None = None
    row: int | None = None
    device_fs: float = 250.0
    speed: float | None = 1.0
    drop: float = 0.0
    disconnect_after: tuple[int, ...] = ()
    seed: int = 0


@dataclass
class Wearable:
    """An open wearable: an async iterable of Chunks; `client` is its `EcgClient` (stats, heart rates)."""

    client: EcgClient
    lead: str
    describe: str
    chunks: AsyncIterator[Chunk]

    @property
    def fs(self) -> float:
        return self.client.fs

    @property
    def stats(self) -> Any:
        return self.client.stats

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self.chunks


@contextlib.asynccontextmanager
async def open_wearable(target: str | None, options: WearableOptions = WearableOptions()) -> AsyncIterator[Wearable]:
    """Connect to `target` (see the module doc); disconnect (and stop a virtual wearable) on exit."""
    async with contextlib.AsyncExitStack() as stack:
        if target is not None and target.startswith(VIRTUAL):
            yield await _virtual(target[len(VIRTUAL):], options, stack)
            return
        client = await stack.enter_async_context(EcgClient(target or None, options.profile))
        limit = (lambda: int(options.seconds * client.fs)) if options.seconds else (lambda: None)
        yield Wearable(client, canonical_lead(options.lead or "CHEST"), f"BLE {target or 'any'} ({options.profile})",
                       until(client, limit))


async def _virtual(path: str, options: WearableOptions, stack: contextlib.AsyncExitStack) -> Wearable:
    """A virtual wearable on bumble replaying `path`, and the client connected to it."""
    require("bumble", "virtual", "a virtual wearable")
    from firmware_bridge.bumble_backend import virtual_link
    from firmware_bridge.virtual import Faults, VirtualWearable, replay_signal

    lead = options.lead or "MLII"
    device_fs = HR_ECG_FS if options.profile == "polar" else options.device_fs
    signal = replay_signal(path, fs_in=options.fs, fs_out=device_fs, lead=lead, duration_s=options.seconds or None,
                           row=options.row)
    faults = Faults(drop_fraction=options.drop, disconnect_after=tuple(options.disconnect_after), seed=options.seed)
    wearable = VirtualWearable(signal, device_fs, profile=options.profile, faults=faults,
                               speed=FAST_SPEED if options.speed is None else options.speed)
    vlink = await stack.enter_async_context(virtual_link(wearable))
    client = await stack.enter_async_context(EcgClient(wearable.name, options.profile, backend=vlink))

    def end() -> int | None:
        if not wearable.finished.is_set():
            return None
        last = wearable.log.delivered()[-1]
        return last.first_index + last.n

    return Wearable(client, canonical_lead(lead), f"virtual {options.profile} wearable replaying {Path(path).name}",
                    until(client, end, lambda: wearable.finished))


async def until(chunks: AsyncIterator[Chunk], end_index: Callable[[], int | None],
                finished: Callable[[], asyncio.Event | None] | None = None) -> AsyncIterator[Chunk]:
    """Pass chunks through until one reaches `end_index()` (None: no end yet).

    `finished()` (the virtual wearable's "sent everything" event, once it exists) also wakes the check: a wearable
    marks itself finished after its last frame went out, so the last chunk may already have been
    passed on when the end becomes known, and no further chunk would ever come to trigger it.
    """
    it = chunks.__aiter__()
    last, pending = None, None
    try:
        while True:
            end = end_index()
            if end is not None and last is not None and last >= end:
                return
            pending = pending or asyncio.ensure_future(it.__anext__())
            waits: set[asyncio.Future] = {pending}
            done_wait = None
            event = finished() if finished is not None else None
            if event is not None and not event.is_set():
                done_wait = asyncio.ensure_future(event.wait())
                waits.add(done_wait)
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if done_wait is not None and not done_wait.done():
                done_wait.cancel()
            if pending in done:
                try:
                    c = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield c
                last = c.end_index
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
