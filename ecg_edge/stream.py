"""`ecg-edge stream` and `ecg-edge wearable`: a source (replay, synthetic, BLE, virtual wearable) through
the engine to the live view and logs.

Composition only: sources, models and sinks live in `edge_runtime`, wearables behind the
`firmware_bridge` facade (`open_wearable`); this module turns `StreamOptions` (built by the CLI's
handlers from the command line, or by the demo) into them. Heavy pieces are imported when asked for.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, ClassVar, Sequence

import numpy as np

from distill.config import SHORT_CHOICES
from edge_runtime.errors import ConfigError, UnknownLeadError, require
from edge_runtime.spec import canonical_lead, canonical_leads


@dataclass(frozen=True)
class StreamOptions:
    """`ecg-edge stream` / `ecg-edge wearable`, typed; each field is the flag of that name (`--help`).

    source: replay:PATH | synthetic | ble:NAME_OR_ADDRESS | virtual:PATH (the wearable command).
    artifact: the model (manifest.json, its folder or the model file); None: beats, HR and quality only.
    speed: replay speed (1.0 real time); None: as fast as it goes (`--fast`). beats: R peaks and heart
    rate (`--no-beats` clears it). short: a stream that ends before its first window is classified
    on one padded window ("pad", flagged padded) or ends with the explicit "too short, no decision"
    line ("too-short"), `EngineConfig.pad_short`; the same choices as `ecg-edge compare --short`.
    live: the live terminal view (the handler sets it for a terminal without `--no-live`), titled
    `title`. drop, disconnect_after, device_fs: the virtual wearable's.
    """

    SHORT: ClassVar[tuple[str, ...]] = SHORT_CHOICES

    source: str | None = None
    artifact: str | Path | None = None
    backend: str | None = None
    threads: int = 1
    lead: str | None = None
    row: int | None = None
    fs: float | None = None
    seconds: float = 0.0
    condition: str | None = None
    speed: float | None = 1.0
    chunk: int = 73
    seed: int = 0
    profile: str = "polar"
    bridge_max_s: float = 1.0
    beats: bool = True
    short: str = "pad"
    jsonl: str | Path | None = None
    csv: str | Path | None = None
    audit: str | Path | None = None
    live: bool = False
    title: str = "ecg-edge stream"
    drop: float = 0.0
    disconnect_after: tuple[int, ...] = ()
    device_fs: float = 250.0

    def __post_init__(self) -> None:  # the `[stream]` table of a config file (the flags check themselves)
        from edge_runtime.config import NON_NEGATIVE, POSITIVE, POSITIVE_INT, check_values, expect

        check_values("stream", self, {"threads": POSITIVE_INT, "row": NON_NEGATIVE, "fs": POSITIVE,
                                      "seconds": NON_NEGATIVE, "speed": POSITIVE, "chunk": POSITIVE_INT,
                                      "seed": NON_NEGATIVE, "bridge_max_s": POSITIVE, "device_fs": POSITIVE,
                                      "drop": ("a fraction 0 <= x < 1", lambda v: 0 <= v < 1)})
        expect("stream.profile", self.profile in ("polar", "open"), "polar or open", self.profile)
        expect("stream.short", self.short in self.SHORT, f"one of {', '.join(self.SHORT)}", self.short)
        expect("stream.disconnect_after", all(isinstance(n, int) and n >= 0 for n in self.disconnect_after),
               "non-negative notification counts", self.disconnect_after)

    def wearable(self) -> Any:
        """The `firmware_bridge.WearableOptions` of a BLE or virtual-wearable source."""
        from firmware_bridge import WearableOptions

        return WearableOptions(profile=self.profile, lead=self.lead, seconds=self.seconds, fs=self.fs, row=self.row,
                               device_fs=self.device_fs, speed=self.speed, drop=self.drop,
                               disconnect_after=tuple(self.disconnect_after), seed=self.seed)


@dataclass
class ResolvedSource:
    """What a source spec resolves to: the chunk iterator, its rate and lead, a description, and for a
    wearable its link's loss accounting (`firmware_bridge.link_stats.LinkStats`; None otherwise)."""

    chunks: AsyncIterator[Any]
    fs: float
    lead: str
    describe: str
    link: Any = None


@dataclass(frozen=True)
class StreamResult:
    """What a stream did: its source, the engine's counts (`edge_runtime.engine.StreamStats`), the
    link's (BLE and virtual wearables; None otherwise) and the seconds it ran."""

    describe: str
    fs: float
    lead: str
    stats: Any
    link: Any
    wall_s: float


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
        raise ConfigError(f"--source: expected {kind}:PATH (a WFDB record or a .npy in mV), got {spec!r}")
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
    """Turn `replay:PATH` or `synthetic` into a chunk source (BLE and virtual: `open_source`).

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
        from edge_runtime.wfdb_io import read_wfdb_mv

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
    raise ConfigError(f"--source: {spec!r} is a BLE source (open_source)")


async def open_source(opts: StreamOptions, stack: contextlib.AsyncExitStack) -> ResolvedSource:
    """The source `opts.source` names: a replay or the synthetic generator (`resolve_source`), or a
    wearable from the `firmware_bridge` facade (`ble:NAME_OR_ADDRESS` a real one through bleak,
    `virtual:PATH` a virtual Polar H10 or open-profile device on bumble replaying PATH), kept open by `stack`."""
    if not opts.source:
        raise ConfigError("--source: required (replay:PATH, synthetic or ble:NAME_OR_ADDRESS)")
    if opts.source.partition(":")[0] not in ("ble", "virtual"):
        return resolve_source(opts.source, lead=opts.lead, fs=opts.fs, seconds=opts.seconds, speed=opts.speed,
                              chunk=opts.chunk, seed=opts.seed, row=opts.row, condition=opts.condition)
    require("bleak", "edge", "`ecg-edge stream --source ble:...`")
    kind, arg = check_source_flags(opts.source, row=opts.row, condition=opts.condition)
    if kind == "virtual":
        if Path(arg).suffix == ".npy" and opts.fs is None:
            raise ConfigError(f"--fs: a .npy file carries no sampling rate; give --fs for {arg}")
        require("bumble", "virtual", "`ecg-edge wearable`")
    from firmware_bridge import VIRTUAL, open_wearable

    target = VIRTUAL + arg if kind == "virtual" else arg or None
    wearable = await stack.enter_async_context(open_wearable(target, opts.wearable()))
    return ResolvedSource(wearable.chunks, wearable.fs, wearable.lead, wearable.describe, link=wearable.stats)


def run(opts: StreamOptions) -> int:
    """Handler body of `ecg-edge stream` and `ecg-edge wearable`: stream, then print the counts and outputs."""
    result = asyncio.run(stream(opts))
    for line in summary_lines(result):
        print(line)
    for path in (opts.jsonl, opts.csv, opts.audit):
        if path:
            print(f"  {path}")
    return 0


def summary_lines(r: StreamResult) -> list[str]:
    """The end-of-stream counts: the engine's, and the link's for a wearable."""
    s = r.stats
    lines = [f"{r.describe}: {s.received} samples received, {s.lost} lost in {s.bridged_gaps + s.reset_gaps} gaps, "
             f"{s.duplicate} duplicate, {s.invalid} invalid, {s.rejected} rejected; {s.windows} windows "
             f"({s.windows_unusable} unusable, {s.windows_padded} padded), {s.beats} beats"]
    if s.used and s.windows == 0:  # the engine pads such a stream unless --short too-short (pad_short off)
        lines.append("  the stream is shorter than one window: too short, no decision")
    elif s.windows_padded:
        lines.append("  the stream is shorter than one window: classified on one padded window (its samples repeated)")
    if s.record is not None:  # the "record" event: the classified windows by the manifest's record rule
        rec = s.record
        lines.append(f"  the recording's decision: {', '.join(rec['decided']) or 'none'}"
                     + (f" (inconclusive: {', '.join(rec['inconclusive'])})" if rec["inconclusive"] else "")
                     + f", {rec['record_rule']} of {rec['windows']} classified window(s)' probabilities")
    if s.windows_inconclusive:  # the model's manifest has abstain bands
        lines.append("  inconclusive windows (decision inside the manifest's abstain band): "
                     + ", ".join(f"{lab} {n}" for lab, n in s.windows_inconclusive.items()))
    if r.link is not None:
        c = r.link
        lines.append(f"  link: {c.received} samples received, {c.lost} lost in {len(c.gaps)} gaps, {c.duplicated} "
                     f"duplicated, {c.reordered} reordered, {c.malformed} malformed frames, {c.reconnects} reconnects")
    return lines


def _engine(opts: StreamOptions, src: ResolvedSource) -> Any:
    """The engine for the options' model. With the live view on, the runtime's native log lines
    (LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate", written by C++ to fd 2 when the
    interpreter allocates) are discarded while the model opens, so they do not land above the panel;
    an error opening it is still the one `ecg-edge: error:` line."""
    from edge_runtime.engine import Engine, EngineConfig
    from edge_runtime.signal import Preprocessor, PreprocessConfig

    model = None
    pre = Preprocessor(PreprocessConfig(), src.fs, (src.lead,))
    if opts.artifact:
        from edge_runtime.backends import ArtifactModel, _QuietStderr

        with _QuietStderr() if opts.live else contextlib.nullcontext():
            model = ArtifactModel.open(opts.artifact, backend=opts.backend, threads=opts.threads)
        if (src.lead,) != model.leads:
            raise ConfigError(f"--artifact: {opts.artifact} expects lead {', '.join(model.leads)}; the source gives {src.lead}")
        pre = model.preprocessor(src.fs)
    beats = None
    if opts.beats:
        from edge_runtime.beats import RPeakDetector
        beats = RPeakDetector(src.fs)
    return Engine(pre, model, beats, EngineConfig(bridge_max_s=opts.bridge_max_s, audit=bool(opts.audit),
                                                  pad_short=opts.short == "pad"))


async def stream(opts: StreamOptions, sinks: Sequence[Any] = (), console: Any = None) -> StreamResult:
    """Stream `opts.source` through the engine into the options' files, then `sinks` (each called as
    `sink(results, events)`), then the live view (on `console`, default stdout) when `opts.live`."""
    from edge_runtime.engine import run_stream
    from edge_runtime.outputs import AuditSink, CsvSink, JsonlSink, LiveView

    async with contextlib.AsyncExitStack() as stack:
        src = await open_source(opts, stack)
        engine = _engine(opts, src)
        out: list = []
        if opts.jsonl:
            out.append(stack.enter_context(contextlib.closing(JsonlSink(opts.jsonl))))
        if opts.csv:
            out.append(stack.enter_context(contextlib.closing(CsvSink(opts.csv, engine.model.labels if engine.model else ()))))
        if opts.audit:
            out.append(stack.enter_context(contextlib.closing(AuditSink(opts.audit, engine))))
        out += sinks
        view = None
        if opts.live:
            view = stack.enter_context(LiveView(engine.stats, f"{opts.title}: {src.describe}", console=console))
        t0 = time.perf_counter()
        stats = await run_stream(src.chunks, engine, out + ([view] if view else []), taps=(view.tap,) if view else ())
        wall = time.perf_counter() - t0
    return StreamResult(src.describe, src.fs, src.lead, stats, src.link, wall)
