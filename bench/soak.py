"""Soak the streaming runtime: hours of accelerated stream in one process; prints one JSON object.

    python bench/soak.py [--hours 4] [--model MANIFEST | --no-model] [--rss-growth-mb 8] [--out FILE]
    ecg-edge bench soak ...

A 130 Hz single-lead stream in 73-sample chunks (one Polar H10 notification) runs as fast as the
CPU allows through what `ecg-edge stream` runs: `run_stream` -> engine (gap accounting) -> signal
contract -> R-peak detector, RR-based AF, SQI -> model on every usable window, with the JSONL log
and the live view's bookkeeping (rendered once per simulated minute to /dev/null) as sinks. The
signal is a seeded synthetic loop (`--loop-s`, default 10 min: the five conditions of
`train.data.synthetic` in turn, so AF episodes open and close every loop) repeated for `--hours`,
made chunk by chunk (its memory does not grow with the run). Without --model the tiny test student
(tests/tiny_export.py, a few seconds of training, needs the train and export extras) is exported
to int8 .tflite; `--no-model` (or no torch) streams beats, AF and SQI only, and the JSON says so.

The stream runs in a fresh process pinned to one core, without torch. Per simulated hour
(`--period-s`): RSS at its end, windows (and unusable ones), window compute latency p50 / p99
(`latency_ms["compute"]`; the first window of the run, the warm-up, is left out, as in the live
view), episode onsets (RR-based AF, and any class the model opens), live Python objects, and the
real-time factor. The check: RSS growth from the end of hour 1 to the end of the last hour stays
under `--rss-growth-mb` (exit status 1 when it does not).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from report import emit  # noqa: E402  (bench/report.py, beside this script)

REPO = Path(__file__).resolve().parents[1]
FS = 130.0
CHUNK = 73


def _proc_status_mb(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB (bench/runtime.py says why not ru_maxrss)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeriodMeter:
    """A stream sink: per period of `period_s` signal seconds, RSS, latency percentiles and counts."""

    def __init__(self, period_s: float) -> None:
        import numpy as np

        self.np, self.period_s = np, period_s
        self.periods: list[dict] = []
        self._lat: list[float] = []
        self._windows = self._af = self._onsets = self._unusable = 0
        self._t0 = time.perf_counter()
        self._end_s = period_s

    def __call__(self, results: list, events: list) -> None:
        for r in results:  # per window
            while r.t_end_s > self._end_s:
                self.close_period()
            self._windows += 1
            self._unusable += not r.usable
            if r.index > 0:  # the run's first window is the warm-up
                self._lat.append(r.latency_ms["compute"])
        onsets = [e for e in events if e.kind == "rhythm" and e.detail == "onset"]
        self._onsets += len(onsets)
        self._af += sum(e.label == "AF (RR)" for e in onsets)

    def close_period(self) -> None:
        import gc

        np, lat = self.np, self.np.asarray(self._lat or [float("nan")])
        wall = time.perf_counter() - self._t0
        self.periods.append({
            "period": len(self.periods) + 1, "signal_end_s": self._end_s, "windows": self._windows,
            "unusable_windows": self._unusable, "af_rr_onsets": self._af,
            "rhythm_onsets": self._onsets,
            "window_compute_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
            "rss_mb": _proc_status_mb("VmRSS"), "python_objects": len(gc.get_objects()),
            "real_time_factor": self.period_s / wall if wall > 0 else float("inf")})
        self._lat, self._windows, self._af, self._onsets, self._unusable = [], 0, 0, 0, 0
        self._t0 = time.perf_counter()
        self._end_s += self.period_s


def worker(model_path: str, signal_path: str, hours: float, period_s: float) -> dict:
    """Runs in a fresh process: the whole soak stream; returns per-period figures."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import asyncio
    import contextlib

    import numpy as np

    sys.path.insert(0, str(REPO))
    from rich.console import Console

    from edge_runtime.beats import RPeakDetector
    from edge_runtime.engine import Engine, run_stream
    from edge_runtime.outputs import JsonlSink, LiveView
    from edge_runtime.signal import Preprocessor, PreprocessConfig
    from edge_runtime.sources import Chunk

    model = None
    pre = Preprocessor(PreprocessConfig(), FS, ("I",))
    if model_path != "-":
        from edge_runtime.backends import ArtifactModel
        model = ArtifactModel.open(model_path, threads=1)
        pre = model.preprocessor(FS)
    base = np.load(signal_path)
    total = int(round(hours * 3600 * FS))
    engine = Engine(pre, model, RPeakDetector(FS))
    meter = PeriodMeter(period_s)
    rss_start = _proc_status_mb("VmRSS")

    async def looped():  # the loop repeated, chunk by chunk: vectorised per chunk, never the whole run in memory
        for first in range(0, total, CHUNK):
            idx = np.arange(first, min(first + CHUNK, total)) % base.size
            yield Chunk(base[idx][None, :], first, FS, None, time.monotonic())
            await asyncio.sleep(0)

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as null, \
            contextlib.closing(JsonlSink(Path(tmp) / "soak.jsonl")) as jsonl:
        view = LiveView(engine.stats, "soak", console=Console(file=null, width=80))
        every = max(1, int(60 / 5))  # one render per simulated minute (a window every 5 s)

        def render(results: list, events: list) -> None:
            if results and results[-1].index % every == 0:
                view.console.print(view.render())

        start = time.perf_counter()
        stats = asyncio.run(run_stream(looped(), engine, [meter, jsonl, view, render], taps=(view.tap,)))
        wall = time.perf_counter() - start
        log_mb = (Path(tmp) / "soak.jsonl").stat().st_size / 1e6
    if meter._windows:
        meter.close_period()
    return {"periods": meter.periods, "rss_start_mb": rss_start, "peak_rss_mb": _proc_status_mb("VmHWM"),
            "wall_s": wall, "real_time_factor": total / FS / wall, "samples": stats.received, "lost": stats.lost,
            "windows": stats.windows, "beats": stats.beats, "jsonl_mb": log_mb,
            "torch_imported": "torch" in sys.modules}


def _signal(loop_s: float, path: Path, seed: int) -> list[str]:
    """The loop: the five synthetic conditions in turn, lead I, at FS; returns the conditions."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from train.data.synthetic import CONDITIONS, Synthetic

    ds = Synthetic(len(CONDITIONS), seed=seed, fs=FS, duration_s=max(2.0, loop_s / len(CONDITIONS)))
    parts = [ds.read(rid).select(("I",)).signal[0] for rid in ds.ids()]  # record i has CONDITIONS[i]
    np.save(path, np.concatenate(parts).astype(np.float64))
    return list(CONDITIONS)


def _tiny_model(root: Path) -> tuple[str, str]:
    """The registry's tiny test_student as int8 .tflite (trained by tests/tiny_export.py), or ("-", why) without torch/exporters."""
    try:
        sys.path.insert(0, str(REPO / "tests"))
        import tiny_export as tx
    except ImportError as exc:
        return "-", f"no model: {exc.name or exc} is not installed (beats, AF and SQI only)"
    x_train, y_train = tx.synthetic_windows(40, seed=1)
    calib, _ = tx.synthetic_windows(12, seed=2)
    with tx.one_thread():
        model = tx.train_tiny(x_train, y_train)
        return str(tx.export_tflite_int8(model, calib, root / "litert_int8").manifest), \
            "the registry's test_student (trained by tests/tiny_export.py), int8 .tflite on LiteRT"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=4.0, help="simulated hours of stream (default 4)")
    p.add_argument("--period-s", type=float, default=3600.0, help="reporting period in signal seconds (default 1 h)")
    p.add_argument("--loop-s", type=float, default=600.0, help="length of the synthetic loop (default 10 min)")
    p.add_argument("--model", help="artifact manifest to run (default: the tiny test student, exported now)")
    p.add_argument("--no-model", action="store_true", help="beats, AF and SQI only")
    p.add_argument("--rss-growth-mb", type=float, default=8.0,
                   help="bound on RSS growth from the end of the first period to the end of the last (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--worker", nargs=4, metavar=("MODEL", "SIGNAL", "HOURS", "PERIOD_S"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        m, sig, hours, period = args.worker
        print(json.dumps(worker(m, sig, float(hours), float(period))))
        return 0
    if not (args.hours > 0 and args.period_s > 0 and args.loop_s >= 10 and args.hours * 3600 >= args.period_s):
        p.error("expected --hours > 0, --period-s > 0 and <= the run, --loop-s >= 10")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conditions = _signal(args.loop_s, root / "signal.npy", args.seed)
        if args.no_model:
            model, what = "-", "no model (--no-model): beats, AF and SQI only"
        elif args.model:
            model, what = args.model, args.model
        else:
            model, what = _tiny_model(root)
        res = subprocess.run([sys.executable, __file__, "--worker", model, str(root / "signal.npy"), str(args.hours),
                              str(args.period_s)], capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        return 1
    run = json.loads(res.stdout)
    periods = run["periods"]
    growth = periods[-1]["rss_mb"] - periods[0]["rss_mb"]
    ok = bool(growth < args.rss_growth_mb)
    out = {"benchmark": "soak",
           "stream": {"fs": FS, "chunk_samples": CHUNK, "simulated_hours": args.hours, "period_s": args.period_s,
                      "loop_s": args.loop_s, "loop_conditions": conditions, "window_s": 10.0, "hop_s": 5.0},
           "model": what, **run,
           "check": {"rss_growth_mb_first_to_last_period": growth, "bound_mb": args.rss_growth_mb, "ok": ok,
                     "python_objects_growth": periods[-1]["python_objects"] - periods[0]["python_objects"]},
           "env": {"python": platform.python_version(), "machine": platform.machine(), "threads": 1}}
    emit(out, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
