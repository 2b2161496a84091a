"""`ecg-edge stream`: a source (replay, synthetic, BLE) through the engine to the live view and logs.

Composition only: sources, models and sinks live in `edge_runtime` (and `firmware_bridge` for
BLE); this module resolves the command line into them. Heavy pieces are imported when asked for.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np

from edge_runtime.errors import ConfigError, UnknownLeadError, require
from edge_runtime.spec import canonical_lead, canonical_leads


@dataclass
class ResolvedSource:
    """What a source spec resolves to: the chunk iterator, its rate and lead, and a description."""

    chunks: AsyncIterator[Any]
    fs: float
    lead: str
    describe: str


def _pick_lead(leads: tuple[str, ...], wanted: str | None, where: str) -> int:
    if wanted is None:
        return 0
    lead = canonical_lead(wanted, where="--lead")
    if lead not in leads:
        raise UnknownLeadError(f"{where}: has no lead {lead}; it has {', '.join(leads)} (choose one with --lead)")
    return leads.index(lead)


def _record_leads(names: tuple[str, ...], wanted: str | None, where: str) -> tuple[str, ...]:
    """A record's leads by canonical name. A single channel named by no lead (CinC 2017's "ECG",
    AliveCor lead I) is taken as the lead `--lead` names; without --lead that is an error saying so."""
    if len(names) == 1 and wanted is not None:
        try:
            canonical_lead(names[0], where=where)
        except UnknownLeadError:
            return (canonical_lead(wanted, where="--lead"),)
    try:
        return canonical_leads(names, where=where)
    except UnknownLeadError as exc:
        if len(names) == 1:
            raise UnknownLeadError(f"{exc}; for a single-channel record, --lead says which lead it is (e.g. --lead I)") from None
        raise


def check_source_flags(spec: str, *, row: int | None = None, condition: str | None = None) -> tuple[str, str]:
    """Split a source spec into (kind, argument) and refuse flags that would do nothing with it."""
    kind, _, arg = spec.partition(":")
    if kind not in ("replay", "synthetic", "ble", "virtual"):
        raise ConfigError(f"--source: expected replay:PATH, synthetic or ble:NAME_OR_ADDRESS, got {spec!r}")
    if kind in ("replay", "virtual") and not arg.strip():
        raise ConfigError(f"{'--replay: expected a path' if kind == 'virtual' else '--source: expected replay:PATH'} "
                          f"(a WFDB record or a .npy in mV), got {arg if kind == 'virtual' else spec!r}")
    if kind == "synthetic" and arg:
        raise ConfigError(f"--source: synthetic takes no argument (choose its rhythm with --condition), got {spec!r}")
    if condition is not None and kind != "synthetic":
        raise ConfigError(f"--condition: only for --source synthetic (the source is {spec!r})")
    if row is not None and not (kind in ("replay", "virtual") and Path(arg).suffix == ".npy"):
        raise ConfigError(f"--row: only for a .npy replay holding several rows (the source is {spec!r})")
    return kind, arg


def synthetic_condition(name: str | None) -> str:
    """The synthetic generator's condition for `--condition` (NORM when not given; AF means AFIB)."""
    from train.data.synthetic import CONDITIONS

    if name is None:
        return "NORM"
    key = {"AF": "AFIB"}.get(name.strip().upper(), name.strip().upper())
    if key not in CONDITIONS:
        raise ConfigError(f"--condition: expected one of {', '.join(CONDITIONS)} (AF for AFIB), got {name!r}")
    return key


def resolve_source(spec: str, *, lead: str | None, fs: float | None, seconds: float, speed: float | None,
                   chunk: int, seed: int = 0, row: int | None = None, condition: str | None = None) -> ResolvedSource:
    """Turn `replay:PATH` or `synthetic` into a chunk source (BLE sources: `open_ble_source`).

    A .npy replay follows `edge_runtime.sources.load_npy` (one lead in mV: (n,), (1, n), or a row
    of (k, n) chosen by `row`); `seconds` (0: all) cuts every replay and is the synthetic length;
    `condition` is the synthetic rhythm (`train.data.synthetic.CONDITIONS`, NORM by default).
    """
    from edge_runtime.sources import ArraySource, load_npy

    kind, arg = check_source_flags(spec, row=row, condition=condition)
    if kind == "replay":
        path = Path(arg)
        if path.suffix == ".npy":
            if fs is None:
                raise ConfigError(f"--fs: a .npy file carries no sampling rate; give --fs for {path}")
            if lead is None:
                raise ConfigError(f"--lead: name the lead recorded in {path} (e.g. --lead I)")
            x = load_npy(path, row)
            if seconds:
                x = x[:, : int(round(seconds * fs))]
            what = f" row {row}," if row is not None else ""
            return ResolvedSource(ArraySource(x, fs, chunk, speed).__aiter__(), fs, canonical_lead(lead),
                                  f"replay {path}{what} lead {canonical_lead(lead)} ({fs:g} Hz)")
        require("wfdb", "replay", "`ecg-edge stream --source replay:WFDB`")
        from train.data.wfdb_io import read_wfdb_mv

        rec = read_wfdb_mv(path.with_suffix("") if path.suffix in (".hea", ".dat", ".mat") else path)
        if fs is not None and not np.isclose(fs, rec.fs, rtol=1e-9, atol=0):
            raise ConfigError(f"--fs: {rec.header} records at {rec.fs:g} Hz; --fs {fs:g} is for .npy replays and the "
                              "synthetic source (leave it out)")
        leads = _record_leads(rec.sig_name, lead, str(rec.header))
        i = _pick_lead(leads, lead, str(rec.header))
        x = rec.signal[i:i + 1].astype(np.float64)
        if seconds:
            x = x[:, : int(round(seconds * rec.fs))]
        return ResolvedSource(ArraySource(x, rec.fs, chunk, speed).__aiter__(), rec.fs, leads[i],
                              f"replay {rec.header.name} lead {leads[i]} ({rec.fs:g} Hz)")
    if kind == "synthetic":
        require("neurokit2", "synthetic", "`ecg-edge stream --source synthetic`")
        from train.data.synthetic import CONDITIONS, Synthetic

        rate, duration = (250.0 if fs is None else fs), (seconds or 60.0)
        if not 100.0 <= rate <= 1000.0:
            raise ConfigError(f"--fs: the synthetic source runs at 100..1000 Hz, got {rate:g}")
        if duration < 2.0:
            raise ConfigError(f"--seconds: the synthetic source makes >= 2 s of signal, got {duration:g}")
        # record i of the generator has condition CONDITIONS[i]: NORM stays record 0 as before --condition
        cond = synthetic_condition(condition)
        ds = Synthetic(len(CONDITIONS), seed=seed, fs=rate, duration_s=duration)
        rec = ds.read(ds.ids()[CONDITIONS.index(cond)])
        i = _pick_lead(rec.leads, lead or "I", "synthetic record")
        return ResolvedSource(ArraySource(rec.signal[i:i + 1], rate, chunk, speed).__aiter__(), rate, rec.leads[i],
                              f"synthetic {rec.labels['condition']} ({rate:g} Hz, seed {seed})")
    raise ConfigError(f"--source: {spec!r} is a BLE source (open_ble_source)")


async def _until(chunks: AsyncIterator[Any], end_index: Callable[[], int | None],
                 finished: Callable[[], asyncio.Event | None] | None = None) -> AsyncIterator[Any]:
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


async def open_ble_source(args: Any, stack: contextlib.AsyncExitStack) -> tuple[ResolvedSource, Any]:
    """`ble:NAME_OR_ADDRESS` (a real wearable via bleak) or `virtual:PATH` (a virtual Polar H10 on bumble
    replaying PATH, reached through the same bleak API); returns the source and the client."""
    require("bleak", "edge", "`ecg-edge stream --source ble:...`")
    from firmware_bridge.client import EcgClient

    kind, arg = check_source_flags(args.source, row=getattr(args, "row", None),
                                   condition=getattr(args, "condition", None))
    if kind == "ble":
        client = await stack.enter_async_context(EcgClient(arg or None, args.profile))
        limit = (lambda: int(args.seconds * client.fs)) if args.seconds else (lambda: None)
        return ResolvedSource(_until(client.__aiter__(), limit), client.fs, canonical_lead(args.lead or "CHEST"),
                              f"BLE {arg or 'any'} ({args.profile})"), client
    if Path(arg).suffix == ".npy" and args.fs is None:
        raise ConfigError(f"--fs: a .npy file carries no sampling rate; give --fs for {arg}")
    require("bumble", "virtual", "`ecg-edge wearable`")
    from firmware_bridge.bumble_backend import virtual_link
    from firmware_bridge.polar import HR_ECG_FS
    from firmware_bridge.virtual import Faults, VirtualWearable, replay_signal

    lead = args.lead or "MLII"
    device_fs = HR_ECG_FS if args.profile == "polar" else args.device_fs
    signal = replay_signal(arg, fs_in=args.fs, fs_out=device_fs,
                           lead=lead, duration_s=args.seconds or None, row=getattr(args, "row", None))
    faults = Faults(drop_fraction=args.drop, disconnect_after=tuple(args.disconnect_after or ()), seed=args.seed)
    wearable = VirtualWearable(signal, device_fs, profile=args.profile,
                               speed=1000.0 if args.fast else args.speed, faults=faults)
    vlink = await stack.enter_async_context(virtual_link(wearable))
    client = await stack.enter_async_context(EcgClient(wearable.name, args.profile, backend=vlink))

    def end() -> int | None:
        if not wearable.finished.is_set():
            return None
        last = wearable.log.delivered()[-1]
        return last.first_index + last.n

    return ResolvedSource(_until(client.__aiter__(), end, lambda: wearable.finished), client.fs, canonical_lead(lead),
                          f"virtual {args.profile} wearable replaying {Path(arg).name}"), client


def run(args: Any) -> int:
    """Handler body of `ecg-edge stream` and `ecg-edge wearable` (options: see ecg_edge.cli)."""
    return asyncio.run(_run(args))


def _engine(args: Any, src: ResolvedSource, quiet: bool = False) -> Any:
    """The engine for the command line's model and options. `quiet` (the live view is on): the
    runtime's native log lines (LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate", written
    by C++ to fd 2 when the interpreter allocates) are discarded while the model opens, so they do
    not land above the panel; an error opening it is still the one `ecg-edge: error:` line."""
    from edge_runtime.engine import Engine, EngineConfig
    from edge_runtime.signal import Preprocessor, PreprocessConfig

    model = None
    pre = Preprocessor(PreprocessConfig(), src.fs, (src.lead,))
    if args.model:
        from edge_runtime.backends import ArtifactModel, _QuietStderr

        with _QuietStderr() if quiet else contextlib.nullcontext():
            model = ArtifactModel.open(args.model, backend=args.backend, threads=args.threads)
        if (src.lead,) != model.leads:
            raise ConfigError(f"--model: {args.model} expects lead {', '.join(model.leads)}; the source gives {src.lead}")
        pre = model.preprocessor(src.fs)
    beats = None
    if not args.no_beats:
        from edge_runtime.beats import RPeakDetector
        beats = RPeakDetector(src.fs)
    return Engine(pre, model, beats, EngineConfig(bridge_max_s=args.bridge_max_s, audit=bool(getattr(args, "audit", None))))


async def _run(args: Any) -> int:
    from edge_runtime.engine import run_stream
    from edge_runtime.outputs import AuditSink, CsvSink, JsonlSink, LiveView

    async with contextlib.AsyncExitStack() as stack:
        client = None
        if args.source.partition(":")[0] in ("ble", "virtual"):
            src, client = await open_ble_source(args, stack)
        else:
            src = resolve_source(args.source, lead=args.lead, fs=args.fs, seconds=args.seconds,
                                 speed=None if args.fast else args.speed, chunk=args.chunk, seed=args.seed,
                                 row=args.row, condition=args.condition)
        live = not args.no_live and sys.stdout.isatty()
        engine = _engine(args, src, quiet=live)
        sinks: list = []
        if args.jsonl:
            sinks.append(stack.enter_context(contextlib.closing(JsonlSink(args.jsonl))))
        if args.csv:
            sinks.append(stack.enter_context(contextlib.closing(CsvSink(args.csv, engine.model.labels if engine.model else ()))))
        if getattr(args, "audit", None):
            sinks.append(stack.enter_context(contextlib.closing(AuditSink(args.audit, engine))))
        view = None
        if live:
            view = stack.enter_context(LiveView(engine.stats, f"ecg-edge stream: {src.describe}"))
        stats = await run_stream(src.chunks, engine, sinks + ([view] if view else []), taps=(view.tap,) if view else ())
    print(f"{src.describe}: {stats.received} samples received, {stats.lost} lost in "
          f"{stats.bridged_gaps + stats.reset_gaps} gaps, {stats.duplicate} duplicate, {stats.invalid} invalid, "
          f"{stats.rejected} rejected; {stats.windows} windows ({stats.windows_unusable} unusable), {stats.beats} beats")
    if client is not None:
        c = client.stats
        print(f"  link: {c.received} samples received, {c.lost} lost in {len(c.gaps)} gaps, {c.duplicated} duplicated, "
              f"{c.reordered} reordered, {c.malformed} malformed frames, {c.reconnects} reconnects")
    for path in (args.jsonl, args.csv, getattr(args, "audit", None)):
        if path:
            print(f"  {path}")
    return 0


async def scan_command(timeout: float) -> int:
    """`ecg-edge ble scan`: list nearby devices and the profile each speaks."""
    from firmware_bridge.client import scan

    found = await scan(timeout)
    for r in found:
        print(f"{r.address}  {r.name or '(no name)':24s}  rssi {r.rssi}  {r.profile or '-'}")
    print(f"{len(found)} device(s) found in {timeout:g} s")
    return 0
