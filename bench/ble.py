"""Benchmark the BLE side; prints one JSON object.

    python bench/ble.py [--seconds 120] [--out FILE]

- decode: Polar PMD ECG frames (73 samples, 229 bytes) decoded and indexed from device timestamps
  (`polar.decode_ecg_frame` + `PolarSampleIndexer`, the client's per-notification work), as
  samples per second on one core; and the same for open-profile int16 packets;
- latency: a virtual Polar H10 (bumble) streams MIT-BIH-like synthetic ECG at real time through
  bleak's API (bumble backend) to `EcgClient` and the runtime engine (signal contract, beats, SQI).
  Per notification: from leaving the device to arriving at the client (transport + decode); per
  window: from the notification carrying the window's last sample leaving the device to the
  engine releasing the window (includes the wait for R-peak finality). p50 and p99 of each.
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
from firmware_bridge import open_profile as op  # noqa: E402
from firmware_bridge import polar  # noqa: E402
from report import emit  # noqa: E402  (bench/report.py, beside this script)


def decode_throughput(n_frames: int = 20_000) -> dict:
    rng = np.random.default_rng(0)
    period = round(1e9 / 130.3)
    frames = [polar.encode_ecg_frame(10**12 + (i + 1) * 73 * period, rng.integers(-3000, 3000, 73))
              for i in range(n_frames)]
    best = float("inf")
    for _ in range(3):
        indexer = polar.PolarSampleIndexer()
        t0 = time.perf_counter()
        for f in frames:
            indexer.feed(polar.decode_ecg_frame(f))
        best = min(best, time.perf_counter() - t0)
    packets = [op.encode_packet(rng.integers(-3000, 3000, 109), seq=i % 65536, first_sample_index=i * 109,
                                timestamp_us=i * 436_000, fs_hz=250, gain=1000.0, fmt="int16") for i in range(n_frames)]
    t0 = time.perf_counter()
    for p in packets:
        op.decode_packet(p).samples_mv
    t_open = time.perf_counter() - t0
    return {"polar_pmd": {"frames": n_frames, "samples_per_s": n_frames * 73 / best, "us_per_frame": best / n_frames * 1e6},
            "open_int16": {"packets": n_frames, "samples_per_s": n_frames * 109 / t_open,
                           "us_per_packet": t_open / n_frames * 1e6}}


async def latency(seconds: float) -> dict:
    from edge_runtime.beats import RPeakDetector
    from edge_runtime.engine import Engine
    from edge_runtime.signal import Preprocessor, PreprocessConfig
    from firmware_bridge.bumble_backend import virtual_link
    from firmware_bridge.client import EcgClient
    from firmware_bridge.virtual import VirtualWearable
    from train.data.synthetic import Synthetic

    ds = Synthetic(1, seed=0, fs=130.0, duration_s=seconds)
    uv = np.rint(ds.read(ds.ids()[0]).lead("II") * 1000).astype(np.int32)
    wearable = VirtualWearable(uv, 130.0, speed=1.0)
    engine = Engine(Preprocessor(PreprocessConfig(), 130.0, ("II",)), None, RPeakDetector(130.0))
    arrivals, released = [], []  # (first_index, n, host_time), (window end index, release time)
    async with virtual_link(wearable) as vlink:
        async with EcgClient(wearable.name, backend=vlink) as client:
            async for chunk in client:
                arrivals.append((chunk.first_index, chunk.n, chunk.host_time))
                results, _ = engine.feed(chunk)
                now = time.monotonic()
                released += [(round(r.t_end_s * 130.0), now) for r in results]
                if chunk.end_index >= uv.size - 73:
                    break
    sent = {f.first_index: f.sent_at for f in wearable.log.frames if f.status == "sent"}
    transport = np.array([(t - sent[i]) * 1e3 for i, _, t in arrivals if i in sent])
    starts = np.array(sorted(sent))
    window = []
    for end, t in released:  # the notification holding the window's last sample
        k = np.searchsorted(starts, end - 1, side="right") - 1
        if k >= 0:
            window.append((t - sent[int(starts[k])]) * 1e3)
    w = np.array(window)
    return {"notifications": int(transport.size), "windows": int(w.size),
            "notification_to_client_ms": {"p50": float(np.percentile(transport, 50)), "p99": float(np.percentile(transport, 99))},
            "notification_to_window_ms": {"p50": float(np.percentile(w, 50)), "p99": float(np.percentile(w, 99))},
            "samples_received": client.stats.received, "samples_lost": client.stats.lost}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0, help="real-time stream length for the latency part")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    out = {"benchmark": "ble", "decode": decode_throughput(), "latency": asyncio.run(latency(args.seconds)),
           "env": {"python": platform.python_version(), "machine": platform.machine()}}
    return emit(out, args.out)


if __name__ == "__main__":
    sys.exit(main())
