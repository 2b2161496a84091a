"""Benchmark the signal contract; prints one JSON object.

    python bench/preprocess.py [--seconds 600] [--repeats 5] [--out FILE]

Measures on one core (BLAS and OpenMP threads pinned to 1 before numpy loads):
- stream: a single-lead 130 Hz stream in 73-sample chunks (one Polar H10 notification) through the
  full chain to 100 Hz windows: samples/s and real-time factor (signal seconds per wall second);
- stream_baseline: the same chunks through the chain with no filters or resampling (fs_in = fs_out
  = 130 Hz, all filters off), measured in the same run, so `stream_vs_baseline` is the cost of the
  filtering itself relative to the fixed per-chunk bookkeeping;
- offline: a 10 s 12-lead 500 Hz record preprocessed whole (median ms per record).
The input is a real-shaped ECG from the seeded synthetic generator when neurokit2 is installed,
else seeded sine-plus-noise (reported in "input").
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_runtime.signal import Preprocessor, PreprocessConfig  # noqa: E402
from report import emit  # noqa: E402  (bench/report.py, beside this script)

CHUNK = 73          # samples per Polar H10 ECG notification
FS_STREAM = 130.0


def _signal(n_leads: int, fs: float, seconds: float) -> tuple[np.ndarray, str]:
    try:
        from train.data.synthetic import Synthetic
        ds = Synthetic(1, seed=0, fs=fs, duration_s=seconds)
        return ds.read(ds.ids()[0]).signal[:n_leads].astype(np.float64), "synthetic ECG (neurokit2)"
    except ImportError:
        rng = np.random.default_rng(0)
        t = np.arange(int(fs * seconds)) / fs
        x = np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 0.2 * t) + rng.normal(0, 0.05, t.size)
        return np.repeat(x[None, :], n_leads, axis=0), "seeded sine + noise"


def _stream(pre: Preprocessor, x: np.ndarray, repeats: int) -> float:
    """Best wall time over `repeats` to stream x in CHUNK-sample chunks."""
    best = float("inf")
    chunks = [x[:, i:i + CHUNK] for i in range(0, x.shape[1], CHUNK)]
    for _ in range(repeats):
        pre.reset()
        t0 = time.perf_counter()
        for c in chunks:
            pre.process(c)
        best = min(best, time.perf_counter() - t0)
    return best


def run(seconds: float, repeats: int) -> dict:
    x, source = _signal(1, FS_STREAM, seconds)
    full = Preprocessor(PreprocessConfig(fs_out=100.0), FS_STREAM, ("CHEST",))
    bare = Preprocessor(PreprocessConfig(fs_out=FS_STREAM, highpass_hz=None, lowpass_hz=None, window_s=10.0,
                                         hop_s=5.0), FS_STREAM, ("CHEST",))
    t_full, t_bare = _stream(full, x, repeats), _stream(bare, x, repeats)
    rec, _ = _signal(12, 500.0, 10.0)
    offline = Preprocessor(PreprocessConfig(fs_out=100.0, notch_hz=50), 500.0, [f"{n}" for n in
                           ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")])
    times = []
    for _ in range(max(5, repeats * 4)):
        t0 = time.perf_counter()
        offline.process_record(rec)
        times.append(time.perf_counter() - t0)
    return {
        "benchmark": "preprocess",
        "input": source,
        "stream": {"fs_in": FS_STREAM, "fs_out": 100.0, "chunk_samples": CHUNK, "signal_s": seconds,
                   "wall_s": t_full, "samples_per_s": x.shape[1] / t_full, "real_time_factor": seconds / t_full,
                   "us_per_chunk": t_full / -(-x.shape[1] // CHUNK) * 1e6, "goal_real_time_factor": 5000},
        "stream_baseline": {"what": "same chunks, no filters, no resampling", "wall_s": t_bare,
                            "real_time_factor": seconds / t_bare},
        "stream_vs_baseline": t_full / t_bare,
        "offline_12lead_500hz_10s": {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3},
        "meets_goal": seconds / t_full >= 5000,
        "env": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                "machine": platform.machine(), "threads": os.environ["OMP_NUM_THREADS"]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0, help="length of the streamed signal")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    result = run(args.seconds, args.repeats)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
