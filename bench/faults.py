"""Fault-injection benchmark of the BLE path; prints one JSON object, exits 1 if a check fails.

    python bench/faults.py [--seconds 300] [--speed 400] [--seed 0] [--out FILE]

For each profile (a virtual Polar H10 at 130 Hz; a virtual open-profile wearable at 250 Hz int16)
a seeded synthetic ECG is streamed through bumble, bleak's API (bumble backend) and `EcgClient`,
with faults injected by the device (`firmware_bridge.virtual.Faults`): 1 % of notifications
dropped, 3 disconnects with a 2 s outage each, 2 duplicated and 2 reordered notifications, one
truncated frame, one frame with a flipped timestamp bit (+78 h / +76 h), and for the open profile
one packet with a subnormal gain and one at twice the stream's rate. The chunks then go through
the streaming engine (signal contract, beats, SQI; no model).

Per profile: the device's truth from its log (`sent`: samples from the first to one past the last
delivered; `withheld`: those of them a receiver cannot have: dropped, damaged or unsent while
offline), the client's accounting (received, lost, duplicate, reordered, rejected, malformed,
overflow, reconnects), the engine's (lost, windows, unusable, events), and the windows touching a
loss with how many of them are flagged. Checks: received + lost == sent, lost == withheld, the
client's gaps == the device's missing ranges, malformed and rejected == the frames damaged that
way, and every window touching a loss is flagged `gap`.
"""
from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import emit  # noqa: E402  (bench/report.py, beside this script)

PROFILES = {"polar": 130, "open": 250}


def synthetic_ecg_uv(seconds: float, fs: float, seed: int) -> np.ndarray:
    """Seeded ECG-like signal in µV: Gaussian QRS and T waves at jittered beats, plus noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    beats = np.cumsum(rng.uniform(0.6, 1.1, size=int(seconds / 0.6) + 2))
    beats = beats[beats < seconds - 0.5]
    t = np.arange(n) / fs
    x = rng.normal(0, 20, n)
    for b in beats:  # per beat (a few hundred), vectorised over samples
        x += 1500 * (np.exp(-0.5 * ((t - b) / 0.015) ** 2) + 0.25 * np.exp(-0.5 * ((t - b - 0.25) / 0.05) ** 2))
    return np.rint(x).astype(np.int32)


def plan_faults(profile: str, n_frames: int, seed: int):
    """Disconnects at 1/4, 1/2, 3/4 of the run; the other faults on distinct frames away from them."""
    from firmware_bridge.virtual import Faults

    cuts = tuple(n_frames * k // 4 for k in (1, 2, 3))
    rng = np.random.default_rng(seed)
    free = np.array([k for k in range(5, n_frames - 5) if all(abs(k - c) > 3 for c in cuts)])
    kinds = ["duplicate", "duplicate", "reorder", "reorder", "corrupt", "flip_time"]
    kinds += ["bad_gain", "wrong_rate"] if profile == "open" else []
    picks = rng.choice(free, len(kinds), replace=False)
    picks.sort()
    while np.any(np.diff(picks) < 3):  # reordering needs its neighbour intact: keep faults apart
        picks = np.sort(rng.choice(free, len(kinds), replace=False))
    chosen: dict[str, list[int]] = {}
    for kind, k in zip(rng.permutation(kinds), picks):
        chosen.setdefault(str(kind), []).append(int(k))
    return Faults(drop_fraction=0.01, seed=seed, disconnect_after=cuts, outage_s=2.0,
                  **{k: tuple(v) for k, v in chosen.items()})


async def stream(wearable, timeout: float = 120.0) -> tuple[list, object]:
    """Every chunk the client yields for the wearable's whole signal (faults included)."""
    from firmware_bridge.bumble_backend import virtual_link
    from firmware_bridge.client import EcgClient

    chunks: list = []
    async with virtual_link(wearable) as vlink:
        async with EcgClient(wearable.name, wearable.profile, backend=vlink, initial_backoff_s=0.01,
                             connect_timeout=5, scan_timeout=5) as client:
            async def consume() -> None:
                async for chunk in client:
                    chunks.append(chunk)
            task = asyncio.create_task(consume())
            await asyncio.wait_for(wearable.finished.wait(), timeout)
            end = max(f.first_index + f.n for f in wearable.log.delivered())
            async with asyncio.timeout(10):
                while not (chunks and max(c.end_index for c in chunks) >= end):
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.005)
        await asyncio.wait_for(task, 5)
    return chunks, client


def through_engine(chunks: list, fs: float) -> tuple[list, list, object]:
    from edge_runtime.beats import RPeakDetector
    from edge_runtime.engine import Engine
    from edge_runtime.signal import Preprocessor, PreprocessConfig

    engine = Engine(Preprocessor(PreprocessConfig(), fs, ("CHEST",)), None, RPeakDetector(fs))
    windows, events = engine.run(chunks)
    return windows, events, engine.stats


def run_profile(profile: str, seconds: float, speed: float, seed: int) -> dict:
    from firmware_bridge.virtual import VirtualWearable

    fs = PROFILES[profile]
    signal = synthetic_ecg_uv(seconds, fs, seed)
    spf = 73 if profile == "polar" else 109
    faults = plan_faults(profile, -(-signal.size // spf), seed)
    wearable = VirtualWearable(signal, fs, profile=profile, name=f"{profile} VIRTUAL", speed=speed, faults=faults,
                               drift_ppm=150.0)
    t0 = time.perf_counter()
    chunks, client = asyncio.run(stream(wearable))
    stream_s = time.perf_counter() - t0
    windows, events, es = through_engine(chunks, fs)
    log, st = wearable.log, client.stats
    delivered = log.delivered()
    lo, hi = min(f.first_index for f in delivered), max(f.first_index + f.n for f in delivered)
    missing = log.missing_ranges()
    withheld = sum(n for _, n in missing)
    status = [f.status for f in log.frames]
    touching = [w for w in windows if any(w.t_start_s < (a + n) / fs and a / fs < w.t_end_s for a, n in missing)]
    kinds = [e.kind for e in events]
    out = {
        "fs": fs, "seconds": seconds, "speed": speed,
        "device": {"notifications": len(log.frames), **{s: status.count(s) for s in sorted(set(status))},
                   "outages": len(log.outages), "outage_samples": sum(n for _, n in log.outages),
                   "connections": log.connections},
        "sent": hi - lo, "withheld": withheld,
        "received": st.received, "lost": st.lost, "duplicate": st.duplicated, "reordered": st.reordered,
        "rejected": st.rejected, "malformed": st.malformed, "overflow": st.overflow, "reconnects": st.reconnects,
        "gaps": len(st.gaps),
        "reasons": sorted({r.split(":")[0] + ": " + r.split(":")[1].strip()
                           for r in [*st.malformed_reasons, *st.rejected_reasons]}),
        "engine": {"received": es.received, "lost": es.lost, "duplicate": es.duplicate, "windows": len(windows),
                   "windows_unusable": sum(not w.usable for w in windows),
                   "events": {k: kinds.count(k) for k in ("gap", "reset", "error")}},
        "windows_touching_loss": len(touching),
        "windows_touching_loss_flagged": sum(bool(w.flags["gap"]) and not w.usable for w in touching),
        "stream_seconds": round(stream_s, 2),
    }
    damaged = {"malformed": ("corrupt", "flipped", "bad_gain", "compressed"), "rejected": ("wrong_rate",)}
    out["checks"] = {
        "received_plus_lost_equals_sent": st.received + st.lost == hi - lo,
        "lost_equals_withheld": st.lost == withheld,
        "gaps_equal_device_missing_ranges": [(g.first_index, g.n) for g in st.gaps] == missing,
        "malformed_equals_damaged_frames": st.malformed == sum(status.count(s) for s in damaged["malformed"]),
        "rejected_equals_changed_frames": st.rejected == sum(status.count(s) for s in damaged["rejected"]),
        "engine_error_event_per_refused_frame": kinds.count("error") == st.malformed + st.rejected,
        "every_window_touching_loss_flagged": out["windows_touching_loss_flagged"] == len(touching),
        # the engine cannot go back: a reordered frame, delivered late by the client, is a gap there
        "engine_lost_equals_lost_plus_reordered": es.lost == st.lost + st.reordered,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0, help="signal length per profile, device seconds")
    p.add_argument("--speed", type=float, default=400.0, help="replay speed of the virtual wearable (1 = real time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=["polar", "open"])
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if not (args.seconds >= 60 and args.speed > 0):
        p.error(f"--seconds: expected >= 60 (room for 3 disconnects and the faults), got {args.seconds:g}; "
                f"--speed: expected > 0, got {args.speed:g}")
    results = {name: run_profile(name, args.seconds, args.speed, args.seed) for name in args.profiles}
    checks = {f"{name}.{k}": v for name, r in results.items() for k, v in r["checks"].items()}
    out = {"benchmark": "faults", "profiles": results, "checks": checks, "ok": all(checks.values()),
           "env": {"python": platform.python_version(), "machine": platform.machine()}}
    emit(out, args.out)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
