"""Benchmark the single-lead students in every format against the 12-lead teacher; prints one JSON object.

    python bench/models.py [--students student_xs student_s student_m] [--checkpoint CKPT ...]
                           [--teacher resnet1d_18] [--runs 200] [--warmup 20] [--rounds 5] [--threads 1]
                           [--formats torch-eager-fp32 pte-fp32 pte-int8 tflite-fp32 tflite-int8 onnx-fp32 onnx-int8]
                           [--calib synthetic|ptbxl] [--calib-windows 128] [--ptbxl DIR] [--cpus 0 ...]
                           [--keep DIR] [--out FILE]

Per student and format, measured in one invocation on this CPU:

- file_bytes: the exported model file (.pte, .tflite, .onnx; for torch eager the fp32 state_dict .pt);
- parameters (`train.models.count_parameters` of the float student) and macs per window
  (`train.models.student.macs`: Conv2d and Linear multiply-accumulates);
- latency_ms p50 / p99 (also mean and min) per window at batch 1: torch eager fp32 is the PyTorch
  student itself (eval, no_grad, BatchNorm unfolded, as trained); every other format is the artifact
  written by `distill.export` and run through `edge_runtime.backends.open_backend`, exactly as the
  device runs it (int8 I/O quantization included). onnx-int8 is the Brevitas QCDQ ONNX
  (`distill.brevitas_qat`: `to_brevitas` + `calibrate`, post-training only: latency does not
  depend on a QAT fine-tune) on ONNX Runtime; onnx-fp32 is `distill.export.export_onnx`;
- speedup_vs_teacher_eager = teacher eager p50 / this p50, and speedup_vs_student_eager.

The teacher (the reference) is a registry ECG encoder over the 12 standard leads with a 5-class
linear head (`distill.distill.Teacher`), fp32 eager PyTorch at batch 1, timed in the same run.
Timing is interleaved: each measurement's `--runs` windows are split into `--rounds` blocks and the
blocks of all models and formats alternate, so a change in machine load during the run falls on
every row alike instead of biasing the ratios. Each window is timed alone with
time.perf_counter_ns (garbage collection off inside a block); `--warmup` untimed windows precede
the first block, and one untimed window each later block. Torch, ONNX Runtime, LiteRT and
ExecuTorch's XNNPACK pool all get `--threads` threads (BLAS / OpenMP variables too).

The windows are real preprocessed ECG through the one signal contract (`PreprocessConfig`):
by default from the seeded synthetic generator (train.data.synthetic at 500 Hz); with
`--calib ptbxl` from PTB-XL (calibration from the train folds, timing from the test fold) when
the data is present (`--ptbxl`, else ../shared/data/ptbxl or $ECG_EDGE_SHARED_DATA/ptbxl).
int8 exports are calibrated on them, never on random tensors. With `--checkpoint` the students
are trained ones from `ecg-edge distill` (their own leads, labels and preprocessing), so the sizes
are those of the real model. Artifacts go to a temporary folder, removed at the end unless `--keep DIR`.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from report import emit  # noqa: E402  (bench/report.py, beside this script)

DEFAULT_STUDENTS = ("student_xs", "student_s", "student_m")
FORMATS = ("torch-eager-fp32", "pte-fp32", "pte-int8", "tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8")
INT8_FORMATS = tuple(f for f in FORMATS if f.endswith("-int8"))
#: Goal of the issue: the int8 student at least this many times faster than the fp32 teacher in eager PyTorch.
GOAL_SPEEDUP = 100.0
TEACHER_CLASSES = 5
#: Real windows the timing loops cycle through (values do not change the cost; they keep it honest).
TIMING_WINDOWS = 32
FS_SYNTHETIC = 500.0
SYNTHETIC_SECONDS = 30.0
#: The package whose version each format depends on (reported in "env").
VERSIONS = ("torch", "executorch", "torchao", "litert-torch", "ai-edge-litert", "onnx", "onnxruntime", "brevitas",
            "numpy")


# --------------------------------------------------------------------------- windows

@dataclass
class BenchWindows:
    """Preprocessed windows of one signal contract: the student's leads and the teacher's 12 leads."""

    calib: Any                  # (n, n_leads, 1, window) float32, for int8 calibration
    timing: Any                 # (m, n_leads, 1, window) float32, cycled by the timing loops
    teacher: Any                # (m, 12, window) float32, the same records' 12 standard leads
    source: dict[str, Any] = field(default_factory=dict)


def _collect(records, pre, pre12, n: int) -> tuple[Any, Any]:
    """Windows of `pre`'s leads (and, from the same records, of all 12 leads) until n are had."""
    import numpy as np

    xs, x12, got = [], [], 0
    for rec in records:
        w = pre.process_record(rec.select(pre.leads).signal, where=rec.record_id)
        xs.append(w.data)
        if pre12 is not None:
            x12.append(pre12.process_record(rec.select(pre12.leads).signal, where=rec.record_id).data)
        got += len(w)
        if got >= n:
            break
    if got < n:
        raise RuntimeError(f"only {got} windows from the records; expected {n}")
    x = np.concatenate(xs)[:n, :, None, :].astype(np.float32)
    return np.ascontiguousarray(x), (np.ascontiguousarray(np.concatenate(x12)[:n], dtype=np.float32) if x12 else None)


def _ptbxl_root(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    env = os.environ.get("ECG_EDGE_SHARED_DATA")
    return (Path(env) if env else REPO.parent / "shared" / "data") / "ptbxl"


def _present(ds, split: str):
    """The split's PTB-XL records whose files are present (a partial copy holds only some)."""
    from edge_runtime.errors import DatasetError

    for rid in ds.ids(split):
        try:
            yield ds.read(rid)
        except DatasetError:
            continue


def make_windows(cfg, leads: tuple[str, ...], how: str, n_calib: int, ptbxl: Path | None) -> BenchWindows:
    """Calibration and timing windows through `cfg` (a PreprocessConfig) for `leads`."""
    from edge_runtime.signal import Preprocessor
    from edge_runtime.spec import STANDARD_LEADS

    note = None
    if how == "ptbxl":
        root = _ptbxl_root(ptbxl)
        if (root / "ptbxl_database.csv").is_file():
            import dataclasses

            from train.data.ptbxl import PtbXl
            # The 100 Hz records; a mains notch above their Nyquist (50 Hz) cannot run on them and is left out.
            pcfg = cfg if cfg.notch_hz is None or cfg.notch_hz < 50 else dataclasses.replace(cfg, notch_hz=None)
            ds = PtbXl(root, fs=100)
            pre, pre12 = Preprocessor(pcfg, 100, leads), Preprocessor(pcfg, 100, STANDARD_LEADS)
            calib, _ = _collect(_present(ds, "train"), pre, None, n_calib)
            timing, teacher = _collect(_present(ds, "test"), pre, pre12, TIMING_WINDOWS)
            src = {"source": "ptbxl", "root": str(root), "fs_in": 100, "leads": list(leads),
                   "calibration": f"{len(calib)} windows from the first train-fold records present (strat_fold 1-8)",
                   "timing": f"{len(timing)} windows from the first test-fold records present (strat_fold 10)"}
            if pcfg is not cfg:
                src["note"] = f"notch_hz {cfg.notch_hz:g} left out: above the Nyquist rate of the 100 Hz records"
            return BenchWindows(calib, timing, teacher, src)
        note = f"--calib ptbxl asked, but {root / 'ptbxl_database.csv'} is not there: synthetic windows used"
        print(f"bench/models.py: {note}", file=sys.stderr)
    from train.data.synthetic import Synthetic

    pre, pre12 = Preprocessor(cfg, FS_SYNTHETIC, leads), Preprocessor(cfg, FS_SYNTHETIC, STANDARD_LEADS)

    def records(seed: int, n: int):
        syn = Synthetic(n, seed=seed, fs=FS_SYNTHETIC, duration_s=SYNTHETIC_SECONDS)  # >= 1 window per record
        return (syn.read(r) for r in syn.ids())

    calib, _ = _collect(records(2, n_calib), pre, None, n_calib)
    timing, teacher = _collect(records(1, TIMING_WINDOWS), pre, pre12, TIMING_WINDOWS)
    src = {"source": "synthetic", "generator": "train.data.synthetic.Synthetic", "fs_in": FS_SYNTHETIC,
           "record_s": SYNTHETIC_SECONDS, "leads": list(leads),
           "calibration": f"{len(calib)} windows, records of seed 2",
           "timing": f"{len(timing)} windows, records of seed 1"}
    return BenchWindows(calib, timing, teacher, src | ({"note": note} if note else {}))


# --------------------------------------------------------------------------- models and exports

@dataclass
class Student:
    name: str                        # the registry name
    model: Any                       # the float PyTorch student, eval mode
    source: str
    preprocess: Any                  # PreprocessConfig
    labels: tuple[str, ...]
    multilabel: bool
    leads: tuple[str, ...] = ()
    key: str = ""                    # unique in this run: the name, or name:objective for a checkpoint

    def __post_init__(self) -> None:
        self.leads = tuple(self.model.leads)
        self.key = self.key or self.name


def load_students(names: list[str], checkpoints: list[Path] | None) -> list[Student]:
    import torch

    from edge_runtime.config import from_dict
    from edge_runtime.signal import PreprocessConfig
    from train.data.synthetic import CONDITIONS
    from train.models import create_model

    if checkpoints:
        from distill.distill import load_student

        out = []
        for ckpt in checkpoints:
            model, meta = load_student(ckpt)
            key = f"{meta['encoder']['name']}:{meta.get('objective')}"
            if any(o.key == key for o in out):
                key = f"{key}:{len(out)}"
            out.append(Student(meta["encoder"]["name"], model.eval(),
                               f"checkpoint {ckpt} (sha256 {meta['checkpoint_sha256'][:12]}, {meta.get('objective')})",
                               from_dict(PreprocessConfig, meta["preprocess"], "preprocess"),
                               tuple(meta["label_names"]), bool(meta["multilabel"]), key=key))
        return out
    out = []
    for name in dict.fromkeys(names):  # each once
        torch.manual_seed(0)
        out.append(Student(name, create_model(name, leads=("I",), n_classes=len(CONDITIONS)).eval(),
                           "registry init (torch seed 0)", PreprocessConfig(), CONDITIONS, False))
    return out


def conv_linear_macs(model, example) -> int:
    """Conv1d / Conv2d / Linear multiply-accumulates of one forward pass on `example` (batch 1),
    counted as `train.models.student.macs` counts them (attention products etc. are not counted)."""
    import torch
    from torch import nn

    total = 0

    def count(module, _inp, out) -> None:
        nonlocal total
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            k = 1
            for d in module.kernel_size:
                k *= d
            total += out[0].numel() * (module.in_channels // module.groups) * k
        else:
            total += out[0].numel() * module.in_features

    layers = (nn.Conv1d, nn.Conv2d, nn.Linear)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return total


def export_format(fmt: str, st: Student, spec, calib, out_dir: Path) -> Path:
    """Export `st` in format `fmt` into `out_dir`; return its manifest.json."""
    from distill import export as ex

    if fmt == "pte-fp32":
        return ex.export_pte(st.model, spec, out_dir, "fp32").manifest
    if fmt == "pte-int8":
        return ex.export_pte(st.model, spec, out_dir, "int8", calib).manifest
    if fmt == "tflite-fp32":
        return ex.export_tflite(st.model, spec, out_dir, "fp32").manifest
    if fmt == "tflite-int8":
        return ex.export_tflite(st.model, spec, out_dir, "int8", calib).manifest
    if fmt == "onnx-fp32":
        return ex.export_onnx(st.model, spec, out_dir).manifest
    if fmt == "onnx-int8":
        return export_brevitas_onnx(st, spec, calib, out_dir)
    raise ValueError(fmt)


def export_brevitas_onnx(st: Student, spec, calib, out_dir: Path) -> Path:
    """Brevitas PTQ (activation scales calibrated on `calib`) -> QCDQ ONNX, written as an artifact
    (float I/O: the first convolution quantizes its input itself) so that open_backend runs it."""
    from distill.brevitas_qat import OPSET, export_qcdq_onnx, to_brevitas
    from edge_runtime.artifact import TensorSpec, write_artifact
    from edge_runtime.provenance import package_versions

    qmodel = to_brevitas(st.model, calib=calib)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = export_qcdq_onnx(qmodel, calib[:1], out_dir / "qcdq.onnx.tmp")
    try:
        data = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    versions = package_versions(("torch", "brevitas", "onnx"))
    c, _, t = spec.input_shape
    return write_artifact(
        data, out_dir=out_dir, runtime="onnxruntime", precision="int8", spec=spec.signal, preprocess=spec.preprocess,
        labels=spec.labels, input=TensorSpec("x", (-1, c, 1, t)), output=TensorSpec("logits", (-1, len(spec.labels))),
        multilabel=spec.multilabel,
        provenance={**spec.provenance, "model_class": type(st.model).__name__,
                    "export": f"Brevitas to_brevitas + calibrate (PTQ) -> QCDQ ONNX opset {OPSET}",
                    "calibration_windows": int(len(calib))},
        versions=versions)


# --------------------------------------------------------------------------- timing

@dataclass
class Measure:
    """One thing to time: `fn(x)` on each of `inputs` in turn (batch-1 windows)."""

    key: tuple[str, str]
    fn: Callable[[Any], Any]
    inputs: list
    ns: list = field(default_factory=list)


def time_interleaved(measures: list[Measure], runs: int, warmup: int, rounds: int) -> None:
    """Fill each Measure's `ns` with `runs` per-window times, in `rounds` interleaved blocks."""
    rounds = max(1, min(rounds, runs))
    blocks = [runs // rounds + (i < runs % rounds) for i in range(rounds)]
    for m in measures:
        for i in range(warmup):
            m.fn(m.inputs[i % len(m.inputs)])
    perf = time.perf_counter_ns
    for r, n in enumerate(blocks):
        for m in measures:
            fn, inputs, k = m.fn, m.inputs, len(m.inputs)
            if r and warmup:
                fn(inputs[0])  # the other models ran in between: one untimed window re-warms the caches
            times = [0] * n
            start = len(m.ns)
            gc.collect()
            gc.disable()
            try:
                for i in range(n):
                    x = inputs[(start + i) % k]
                    t0 = perf()
                    fn(x)
                    times[i] = perf() - t0
            finally:
                gc.enable()
            m.ns.extend(times)


def latency(ns: list[int]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(ns, dtype=np.float64) / 1e6
    return {"p50": round(float(np.percentile(ms, 50)), 5), "p99": round(float(np.percentile(ms, 99)), 5),
            "mean": round(float(ms.mean()), 5), "min": round(float(ms.min()), 5), "n": int(ms.size)}


# --------------------------------------------------------------------------- the run

def _error(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def _env(threads: int, load_start: tuple[float, ...]) -> dict[str, Any]:
    from edge_runtime.provenance import package_versions

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = package_versions(VERSIONS, missing=None)
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpu": cpu,
           "cpu_count": os.cpu_count(), "threads": threads, "versions": versions}
    if hasattr(os, "sched_getaffinity"):
        env["cpus_allowed"] = sorted(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        env["loadavg_1m_start"], env["loadavg_1m_end"] = round(load_start[0], 2), round(os.getloadavg()[0], 2)
    return env


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from distill.distill import Teacher
    from distill.export import ExportSpec
    from edge_runtime.artifact import load_artifact
    from edge_runtime.backends import open_backend
    from edge_runtime.spec import STANDARD_LEADS
    from train.models import count_parameters, create_model, model_entry
    from train.models.student import macs

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before any inter-op work; nothing ran yet, but be safe
        pass
    students = load_students(args.students, args.checkpoint)
    cache: dict[tuple, BenchWindows] = {}

    def windows(st: Student) -> BenchWindows:
        key = (st.preprocess, st.leads)
        if key not in cache:
            cache[key] = make_windows(st.preprocess, st.leads, args.calib, args.calib_windows, args.ptbxl)
        return cache[key]

    measures: list[Measure] = []
    rows: list[dict[str, Any]] = []

    # The teacher: 12 leads, 5-class linear head, fp32 eager at batch 1 on real windows.
    kind = model_entry(args.teacher).kind
    if kind != "ecg":
        raise SystemExit(f"--teacher: {args.teacher!r} is a {kind} model; expected an ECG encoder")
    w0 = windows(students[0])
    torch.manual_seed(0)
    encoder = create_model(args.teacher, leads=STANDARD_LEADS)
    teacher = Teacher(encoder, torch.nn.Linear(encoder.embed_dim, TEACHER_CLASSES))
    t_inputs = [np.ascontiguousarray(w0.teacher[i:i + 1]) for i in range(len(w0.teacher))]
    torch.save(teacher.state_dict(), root / "teacher_state_dict.pt")
    teacher_row: dict[str, Any] = {
        "name": args.teacher, "format": "torch-eager-fp32", "leads": len(STANDARD_LEADS), "classes": TEACHER_CLASSES,
        "input_shape": [1, len(STANDARD_LEADS), int(w0.teacher.shape[-1])],
        "parameters": count_parameters(teacher),
        "macs": conv_linear_macs(teacher, torch.from_numpy(t_inputs[0])),
        "macs_counted": "Conv1d, Conv2d and Linear multiply-accumulates (attention products are not counted)",
        "file": "teacher_state_dict.pt (torch.save)", "file_bytes": (root / "teacher_state_dict.pt").stat().st_size}
    measures.append(Measure(("teacher", "torch-eager-fp32"), lambda x: teacher(torch.from_numpy(x)), t_inputs))

    for st in students:
        w = windows(st)
        sdir = root / st.key.replace(":", "_")
        sdir.mkdir(parents=True, exist_ok=True)
        inputs = [np.ascontiguousarray(w.timing[i:i + 1]) for i in range(len(w.timing))]
        with torch.no_grad():
            ref = st.model(torch.from_numpy(w.timing)).numpy()
        spec = ExportSpec(st.preprocess, st.leads, st.labels, multilabel=st.multilabel,
                          provenance={"benchmark": "bench/models.py", "student": st.name, "source": st.source,
                                      "calibration": f"{len(w.calib)} preprocessed {w.source['source']} windows"})
        row = {"student": st.key, "model": st.name, "source": st.source,
               "leads": list(st.leads), "labels": list(st.labels),
               "parameters": count_parameters(st.model), "macs": macs(st.model), "windows": w.source, "formats": {}}
        rows.append(row)
        for fmt in args.formats:
            t0 = time.perf_counter()
            entry: dict[str, Any] = {"parameters": row["parameters"], "macs": row["macs"]}
            try:
                if fmt == "torch-eager-fp32":
                    path = sdir / "state_dict.pt"
                    torch.save(st.model.state_dict(), path)
                    entry.update(runtime="torch eager", precision="fp32", file="state_dict.pt (torch.save)",
                                 file_bytes=path.stat().st_size, threads=torch.get_num_threads())
                    fn = (lambda m: lambda x: m(torch.from_numpy(x)))(st.model)
                    out = ref
                else:
                    art = load_artifact(export_format(fmt, st, spec, w.calib, sdir / fmt))
                    backend = open_backend(art, threads=args.threads)
                    entry.update(runtime=backend.name, precision=art.manifest.precision,
                                 file=art.model_path.name, file_bytes=art.model_path.stat().st_size,
                                 input_dtype=art.manifest.input.dtype, threads=backend.threads)
                    fn = backend.run
                    out = backend.run(w.timing)
                entry["max_abs_logit_diff_vs_eager"] = round(float(np.abs(out - ref).max()), 6)
                entry["export_and_open_s"] = round(time.perf_counter() - t0, 2)
                measures.append(Measure((st.key, fmt), fn, inputs))
            except Exception as exc:  # a format that fails is reported, the others still run
                entry = {"error": _error(exc)}
                print(f"bench/models.py: {st.key} {fmt} failed:\n{traceback.format_exc()}", file=sys.stderr)
            row["formats"][fmt] = entry

    with torch.no_grad():
        time_interleaved(measures, args.runs, args.warmup, args.rounds)
    by_key = {m.key: latency(m.ns) for m in measures}
    teacher_row["latency_ms"] = by_key[("teacher", "torch-eager-fp32")]
    t50 = teacher_row["latency_ms"]["p50"]
    summary: dict[str, Any] = {}
    for row in rows:
        eager = by_key.get((row["student"], "torch-eager-fp32"))
        best = None
        for fmt, entry in row["formats"].items():
            if "error" in entry:
                continue
            lat = entry["latency_ms"] = by_key[(row["student"], fmt)]
            entry["speedup_vs_teacher_eager"] = round(t50 / lat["p50"], 2)
            if eager is not None:
                entry["speedup_vs_student_eager"] = round(eager["p50"] / lat["p50"], 3)
            if fmt in INT8_FORMATS and (best is None or lat["p50"] < best[1]):
                best = (fmt, lat["p50"])
        summary[row["student"]] = ({"best_int8_format": best[0], "p50_ms": best[1], "speedup": round(t50 / best[1], 2),
                         f"meets_goal_{GOAL_SPEEDUP:g}x": t50 / best[1] >= GOAL_SPEEDUP}
                        if best else {"error": "no int8 format measured"})
    table = {row["student"]: {fmt: e.get("latency_ms", {}).get("p50") for fmt, e in row["formats"].items()}
             for row in rows}
    return {"benchmark": "models", "batch": 1, "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds,
            "threads": args.threads, "formats": list(args.formats), "teacher": teacher_row, "students": rows,
            "summary": {"teacher_eager_p50_ms": t50, "p50_ms": table,
                        "int8_student_vs_teacher_eager": {
                            "goal": f"best int8 student p50 >= {GOAL_SPEEDUP:g}x faster than the fp32 teacher "
                                    "in PyTorch eager (p50 / p50)",
                            "students": summary,
                            "all_meet_goal": bool(summary) and all(
                                s.get(f"meets_goal_{GOAL_SPEEDUP:g}x", False) for s in summary.values())}}}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", nargs="+", default=list(DEFAULT_STUDENTS), help="registry student names")
    ap.add_argument("--checkpoint", nargs="+", type=Path, metavar="CKPT",
                    help="student checkpoint(s) from `ecg-edge distill` (replace --students)")
    ap.add_argument("--teacher", default="resnet1d_18", help="registry ECG encoder of the 12-lead fp32 reference")
    ap.add_argument("--runs", type=int, default=200, help="timed windows per measurement")
    ap.add_argument("--warmup", type=int, default=20, help="untimed windows before timing each measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing blocks per measurement")
    ap.add_argument("--threads", type=int, default=1, help="threads for torch and every runtime")
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS, metavar="FORMAT",
                    help=f"formats to measure (default all: {' '.join(FORMATS)})")
    ap.add_argument("--calib", default="synthetic", choices=("synthetic", "ptbxl"),
                    help="where the real preprocessed windows come from")
    ap.add_argument("--calib-windows", type=int, default=128, help="int8 calibration windows")
    ap.add_argument("--ptbxl", type=Path, help="PTB-XL folder (default ../shared/data/ptbxl)")
    ap.add_argument("--cpus", nargs="+", type=int, help="pin the process to these CPU ids (default: no pinning)")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="export into DIR and keep the artifacts")
    ap.add_argument("--out", type=Path)
    return ap


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout (exporters print progress there, some from C) to stderr,
    so that stdout carries the JSON alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("runs", "threads", "calib_windows", "rounds"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: expected an integer >= 1")
    if args.warmup < 0:
        raise SystemExit("--warmup: expected an integer >= 0")
    # Before numpy / torch load: their BLAS and OpenMP pools get the same thread count as the runtimes.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if args.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(args.cpus))
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else (0.0,)
    with stdout_to_stderr():
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            result = run(args, args.keep)
        else:
            tmp = tempfile.mkdtemp(prefix="bench_models_")
            try:
                result = run(args, Path(tmp))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    result["artifacts"] = str(args.keep) if args.keep else "temporary folder, removed"
    result["env"] = _env(args.threads, load_start)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
