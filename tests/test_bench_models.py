"""bench/models.py: the students-in-every-format benchmark, run as a script on the tiny test student.

The script is run the way a user runs it (a fresh interpreter, JSON on stdout) with a tiny teacher,
a few timed windows and few calibration windows, so that it stays well under a minute; the numbers
are not checked for speed, only for being measured, and for one real property of the exports: the
full-int8 .tflite is smaller than the fp32 one.
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
    assert lat["n"] == 5
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"]
    assert lat["mean"] > 0


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
    assert student["parameters"] == 1217 and student["macs"] == 76928  # train/models/student.py's table
    assert list(student["formats"]) == formats
    t50 = teacher["latency_ms"]["p50"]
    for fmt, row in student["formats"].items():
        assert "error" not in row, (fmt, row)
        assert row["file_bytes"] > 0 and row["parameters"] == 1217 and row["macs"] == 76928
        assert row["threads"] == 1
        _positive_latency(row["latency_ms"])
        assert row["speedup_vs_teacher_eager"] == pytest.approx(t50 / row["latency_ms"]["p50"], rel=0.01)
        assert row["speedup_vs_student_eager"] > 0
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


def test_eager_only_needs_no_export_extras() -> None:
    """With only torch-eager-fp32 nothing is exported: torch alone suffices; no int8 row, no goal met."""
    out = _run("--formats", "torch-eager-fp32")
    row = out["students"][0]["formats"]["torch-eager-fp32"]
    _positive_latency(row["latency_ms"])
    assert row["file_bytes"] > 0 and row["max_abs_logit_diff_vs_eager"] == 0.0
    assert out["summary"]["int8_student_vs_teacher_eager"]["students"]["test_student"] == {
        "error": "no int8 format measured"}
    assert out["summary"]["int8_student_vs_teacher_eager"]["all_meet_goal"] is False
    assert out["students"][0]["windows"]["source"] == "synthetic"
