"""Benchmark the edge runtime end to end; prints one JSON object.

    python bench/runtime.py [--seconds 600] [--artifacts DIR ...] [--out FILE]

A 130 Hz single-lead stream (seeded synthetic ECG) in 73-sample chunks (one Polar H10
notification) goes through the whole pipeline: engine (gap accounting) -> signal contract ->
R-peak detector -> model on every window (10 s windows, 5 s hop). Each backend runs in its own
fresh process pinned to one core with one thread, so the figures per backend are:

- window latency p50 / p99: the compute a window costs (`latency_ms["compute"]`: preprocessing of
  the chunk that completed it, signal quality, inference, heart rate and events). A window is
  released once the R-peak detector is final for its span; that wait (`hold_for_beats_s`, in
  seconds of signal) is reported separately, and end-to-end times as fast as possible with it;
- real-time factor: signal seconds / wall seconds for the whole stream;
- peak RSS of that process (`ru_maxrss`), and the time to import the runtime and open the model.

The baseline is the same model in fp32 PyTorch, run the same way in the same invocation;
`vs_pytorch` gives each backend's ratios against it. Without --artifacts the tiny test student
(tests/tiny_export.py) is trained for a few seconds and exported; the students issue replaces it
with real student artifacts.
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


def worker(kind: str, model_path: str, signal_path: str) -> dict:
    """Runs in a fresh process: stream the signal through the engine with one model."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    t0 = time.perf_counter()
    import numpy as np

    sys.path.insert(0, str(REPO))
    from edge_runtime.beats import RPeakDetector
    from edge_runtime.engine import Engine
    from edge_runtime.sources import ArraySource

    if kind == "pytorch_fp32":
        model, pre_factory = _torch_model(model_path)
    else:
        from edge_runtime.backends import ArtifactModel
        model = ArtifactModel.open(model_path, threads=1)
        pre_factory = model.preprocessor
    import_s = time.perf_counter() - t0
    x = np.load(signal_path)
    engine = Engine(pre_factory(FS), model, RPeakDetector(FS))
    results = []
    start = time.perf_counter()
    for chunk in ArraySource(x, FS, chunk=CHUNK).chunks():
        results += engine.feed(chunk)[0]
    wall = time.perf_counter() - start
    lat = np.asarray([r.latency_ms["compute"] for r in results])
    e2e = np.asarray([r.latency_ms["end_to_end"] for r in results])
    hold = np.asarray([r.latency_ms["hold_s"] for r in results])
    return {"windows": int(lat.size), "window_latency_ms": {"p50": float(np.percentile(lat, 50)),
                                                         "p99": float(np.percentile(lat, 99)),
                                                         "max": float(lat.max())},
            "end_to_end_ms_as_fast_as_possible": {"p50": float(np.percentile(e2e, 50)),
                                                   "p99": float(np.percentile(e2e, 99))},
            "hold_for_beats_s": {"p50": float(np.percentile(hold, 50)), "max": float(hold.max())},
            "real_time_factor": x.shape[1] / FS / wall, "wall_s": wall,
            "import_and_open_s": import_s, "peak_rss_mb": _peak_rss_mb(),
            "torch_imported": "torch" in sys.modules, "beats": engine.stats.beats}


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). `ru_maxrss` is not used: on Linux it survives
    exec, so a worker would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _torch_model(model_path: str):
    """The fp32 PyTorch baseline: the tiny student's weights in eager PyTorch."""
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    import tiny_export as tx
    from edge_runtime.artifact import load_artifact

    torch.set_num_threads(1)
    art = load_artifact(model_path)  # the fp32 artifact exported from the same module
    net = tx.tiny_student()
    net.load_state_dict(torch.load(Path(model_path).parent / "state_dict.pt", weights_only=True))
    net.eval()

    class TorchModel:
        labels, thresholds = art.manifest.labels, art.manifest.thresholds

        @torch.no_grad()
        def predict(self, windows: np.ndarray) -> np.ndarray:
            logits = net(torch.from_numpy(np.ascontiguousarray(windows[:, :, None, :])))
            return torch.softmax(logits, dim=1).numpy()

    return TorchModel(), art.preprocessor


def _build_artifacts(root: Path) -> dict[str, Path]:
    """Export the tiny test student to every runtime (needs the train and export extras)."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    import tiny_export as tx

    x_train, y_train = tx.synthetic_windows(40, seed=1)
    calib, _ = tx.synthetic_windows(12, seed=2)
    with tx.one_thread():
        model = tx.train_tiny(x_train, y_train)
        found = {"litert_int8": tx.export_tflite_int8(model, calib, root / "litert_int8").manifest,
                 "litert_fp32": tx.export_tflite_fp32(model, root / "litert_fp32").manifest,
                 "executorch_int8": tx.export_pte_int8(model, calib, root / "executorch_int8").manifest,
                 "executorch_fp32": tx.export_pte_fp32(model, root / "executorch_fp32").manifest,
                 "onnxruntime_fp32": tx.export_onnx_fp32(model, root / "onnxruntime_fp32").manifest}
    torch.save(model.state_dict(), root / "litert_fp32" / "state_dict.pt")
    found["pytorch_fp32"] = found["litert_fp32"]
    return found


def _signal(seconds: float, path: Path) -> None:
    import numpy as np

    sys.path.insert(0, str(REPO))
    from train.data.synthetic import Synthetic

    ds = Synthetic(1, seed=0, fs=FS, duration_s=seconds)
    np.save(path, ds.read(ds.ids()[0]).select(("I",)).signal.astype(np.float64))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0, help="length of the streamed signal")
    p.add_argument("--artifacts", nargs="+", metavar="KIND=MANIFEST", help="e.g. litert_int8=out/student/manifest.json")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--worker", nargs=3, metavar=("KIND", "MODEL", "SIGNAL"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        arts = dict(a.split("=", 1) for a in args.artifacts) if args.artifacts else _build_artifacts(root)
        _signal(args.seconds, root / "signal.npy")
        results = {}
        for kind, manifest in arts.items():
            res = subprocess.run([sys.executable, __file__, "--worker", kind, str(manifest), str(root / "signal.npy")],
                                 capture_output=True, text=True, cwd=REPO)
            results[kind] = json.loads(res.stdout) if res.returncode == 0 else {"error": res.stderr.strip().splitlines()[-1]}
    base = results.get("pytorch_fp32", {})
    for kind, r in results.items():
        if "error" not in r and "error" not in base and kind != "pytorch_fp32":
            r["vs_pytorch"] = {"real_time_factor": r["real_time_factor"] / base["real_time_factor"],
                               "p99_latency": r["window_latency_ms"]["p99"] / base["window_latency_ms"]["p99"],
                               "peak_rss": r["peak_rss_mb"] / base["peak_rss_mb"]}
    lite = results.get("litert_int8", {})
    out = {"benchmark": "runtime", "stream": {"fs": FS, "chunk_samples": CHUNK, "signal_s": args.seconds,
                                              "window_s": 10.0, "hop_s": 5.0},
           "backends": results,
           "goals": {"litert_int8_real_time_factor>=5000": lite.get("real_time_factor", 0) >= 5000,
                     "litert_int8_p99_ms<=1": lite.get("window_latency_ms", {}).get("p99", 1e9) <= 1.0,
                     "litert_int8_peak_rss_mb<=150": lite.get("peak_rss_mb", 1e9) <= 150},
           "env": {"python": platform.python_version(), "machine": platform.machine(), "threads": 1}}
    return emit(out, args.out)


if __name__ == "__main__":
    sys.exit(main())
