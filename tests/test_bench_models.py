"""bench/models.py: the students-in-every-format benchmark, run as a script on the tiny test student.

The script is run the way a user runs it (a fresh interpreter, JSON on stdout) with a tiny teacher,
a few timed windows and few calibration windows, so that it stays well under a minute. No clock is
compared with a constant: sizes must agree with the registry (`count_parameters`, `macs`) and the
files with the weights they hold (4 bytes a float, 1 an int8), and latencies only with each other in
the same run, where the gap in work is two orders of magnitude (a tolerance of more than 10x).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to build the models")
pytestmark = pytest.mark.slow  # each test runs the benchmark in a subprocess that exports and times

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "models.py"
FAST = ["--students", "test_student", "--teacher", "test_resnet1d", "--runs", "5", "--warmup", "1",
        "--rounds", "2", "--calib-windows", "16"]


def _run(*args: str) -> dict:
    res = subprocess.run([sys.executable, str(SCRIPT), *FAST, *args], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)  # stdout carries the JSON alone (exporter chatter goes to stderr)


def _positive_latency(lat: dict) -> None:
    """Five per-window times, ordered, in milliseconds (a window of these models takes microseconds to
    milliseconds: seconds or nanoseconds would be off by 1000x)."""
    assert set(lat) == {"n", "min", "p50", "p99", "mean"} and lat["n"] == 5
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] and lat["min"] <= lat["mean"]
    assert 1e-3 < lat["p50"] < 1e3


def _registry(name: str) -> tuple[int, int]:
    """(parameters, macs) of a registry student as bench/models.py builds it (lead I, five classes)."""
    from train.models import count_parameters, create_model
    from train.models.student import macs

    model = create_model(name, leads=("I",), n_classes=5)
    return count_parameters(model), macs(model)


def test_every_format_is_exported_measured_and_compared(tmp_path: Path) -> None:
    for module in ("executorch", "litert_torch", "ai_edge_litert", "brevitas", "onnxruntime", "onnxoptimizer"):
        pytest.importorskip(module, reason=f"{module} is needed to export and run the formats ('export', 'edge')")
    formats = ["torch-eager-fp32", "pte-int8", "tflite-fp32", "tflite-int8", "onnx-int8"]
    out = _run("--formats", *formats, "--keep", str(tmp_path / "artifacts"), "--out", str(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text()) == out
    assert out["benchmark"] == "models" and out["threads"] == 1 and out["formats"] == formats

    teacher = out["teacher"]
    assert teacher["name"] == "test_resnet1d" and teacher["input_shape"] == [1, 12, 1000]
    assert teacher["parameters"] > 0 and teacher["macs"] > 0 and teacher["file_bytes"] > 0
    _positive_latency(teacher["latency_ms"])

    (student,) = out["students"]
    assert student["student"] == student["model"] == "test_student" and student["leads"] == ["I"]
    params, n_macs = _registry("test_student")
    assert (student["parameters"], student["macs"]) == (params, n_macs)
    assert list(student["formats"]) == formats
    t50 = teacher["latency_ms"]["p50"]
    e50 = student["formats"]["torch-eager-fp32"]["latency_ms"]["p50"]
    for fmt, row in student["formats"].items():
        assert "error" not in row, (fmt, row)
        assert row["file_bytes"] > 0 and (row["parameters"], row["macs"]) == (params, n_macs)
        assert row["threads"] == 1
        _positive_latency(row["latency_ms"])
        assert row["speedup_vs_teacher_eager"] == pytest.approx(t50 / row["latency_ms"]["p50"], rel=0.01)
        assert row["speedup_vs_student_eager"] == pytest.approx(e50 / row["latency_ms"]["p50"], rel=0.01)
        # a file holds every weight: 4 bytes each in fp32, at least 1 in int8
        assert row["file_bytes"] >= params * (4 if row.get("precision", "fp32") == "fp32" else 1), (fmt, row)
        assert row["max_abs_logit_diff_vs_eager"] >= 0
        if fmt != "torch-eager-fp32":  # the artifact kept on disk is the file measured
            art = tmp_path / "artifacts" / "test_student" / fmt
            assert (art / row["file"]).stat().st_size == row["file_bytes"]
            assert (art / "manifest.json").is_file()
    rows = student["formats"]
    assert rows["tflite-fp32"]["max_abs_logit_diff_vs_eager"] < 1e-4  # the same model, in fp32
    assert rows["tflite-int8"]["precision"] == "int8" and rows["tflite-int8"]["input_dtype"] == "int8"
    assert rows["tflite-int8"]["file_bytes"] < rows["tflite-fp32"]["file_bytes"]
    assert rows["pte-int8"]["runtime"] == "executorch" and rows["onnx-int8"]["runtime"] == "onnxruntime"

    goal = out["summary"]["int8_student_vs_teacher_eager"]
    best = goal["students"]["test_student"]
    int8 = {f: rows[f]["latency_ms"]["p50"] for f in ("pte-int8", "tflite-int8", "onnx-int8")}
    assert best["best_int8_format"] == min(int8, key=int8.get) and best["p50_ms"] == min(int8.values())
    assert best["meets_goal_100x"] == (t50 / best["p50_ms"] >= 100) and goal["all_meet_goal"] == best["meets_goal_100x"]
    assert out["summary"]["p50_ms"]["test_student"] == {f: r["latency_ms"]["p50"] for f, r in rows.items()}
    assert out["env"]["versions"]["torch"]


def test_eager_only_needs_no_export_extras_and_sizes_order_the_students() -> None:
    """With only torch-eager-fp32 nothing is exported: torch alone suffices; no int8 row, no goal met.
    The registry's students, smallest to largest, grow in parameters, MACs and file size, and the
    largest (over 400x the MACs of test_student, 17x the tiny teacher's) is slower than both in the same run."""
    names = ["test_student", "student_xs", "student_s", "student_m"]
    out = _run("--formats", "torch-eager-fp32", "--students", *names)
    rows = {s["student"]: s for s in out["students"]}
    assert list(rows) == names and all(s["windows"]["source"] == "synthetic" for s in rows.values())
    for name, s in rows.items():
        row = s["formats"]["torch-eager-fp32"]
        _positive_latency(row["latency_ms"])
        assert row["max_abs_logit_diff_vs_eager"] == 0.0 and row["speedup_vs_student_eager"] == 1.0
        assert (s["parameters"], s["macs"]) == _registry(name)
        assert row["file_bytes"] >= 4 * s["parameters"]
        assert out["summary"]["int8_student_vs_teacher_eager"]["students"][name] == {"error": "no int8 format measured"}
    assert out["summary"]["int8_student_vs_teacher_eager"]["all_meet_goal"] is False
    for key in ("parameters", "macs"):
        sizes = [rows[n][key] for n in names]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), (key, sizes)
    files = [rows[n]["formats"]["torch-eager-fp32"]["file_bytes"] for n in names]
    assert files == sorted(files), files
    p50 = {n: rows[n]["formats"]["torch-eager-fp32"]["latency_ms"]["p50"] for n in names}
    teacher = out["teacher"]
    assert rows["student_m"]["macs"] > 400 * rows["test_student"]["macs"] and rows["student_m"]["macs"] > 10 * teacher["macs"]
    assert p50["student_m"] > 3 * p50["test_student"], p50  # measured 35x on a loaded 2-core x86
    assert p50["student_m"] > teacher["latency_ms"]["p50"], (p50, teacher["latency_ms"])  # measured 12x
