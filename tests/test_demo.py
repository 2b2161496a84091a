"""`ecg-edge demo` end to end on a tiny synthetic config: every stage runs and its outputs agree."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecg_edge.cli import main

for _module in ("torch", "neurokit2"):  # checked before any of the demo's arguments
    pytest.importorskip(_module, reason=f"`ecg-edge demo` needs the 'train' extra ({_module})")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ("[data]\nsource = 'synthetic'\nn_records = 20\n"
        "[pretrain]\nencoder = 'test_resnet1d'\ntext_tower = 'test_text_transformer'\nembed_dim = 16\n"
        "[distill]\nstudent = 'test_student'\n"
        "[train]\nepochs = 2\nbatch_size = 8\ndevice = 'cpu'\n")


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ecg-edge: error: ") and "Traceback" not in err
    return err


@pytest.mark.slow
def test_demo_runs_end_to_end_on_synthetic_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("executorch")
    pytest.importorskip("bumble")
    from edge_runtime.artifact import load_artifact
    from ecg_edge.demo import OUTPUT_FOLDERS, STAGES, _clear_previous
    from firmware_bridge.bundle import verify_bundle

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "demo"
    assert main(["demo", "--config", str(cfg), "--out", str(out)]) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    for k, stage in enumerate(STAGES, 1):
        assert f"[{k}/{len(STAGES)}] {stage}:" in stdout
    assert "streamed == offline" in stdout and "(OK)" in stdout
    summary = json.loads((out / "demo.json").read_text())
    assert set(summary["seconds"]) == {*STAGES, "total"}
    assert summary["seconds"]["total"] >= sum(summary["seconds"][s] for s in STAGES) - 1
    for path in ("shards/dataset.json", "teacher/checkpoint.pt", "evaluation/evaluation.md", "students/distill.json",
                 "students/distilled/checkpoint.pt", "students/baseline/checkpoint.pt", "export/export.json",
                 "stream.jsonl", "stream/record.npy", "compare/compare.json", "compare/compare.html", "config.json"):
        assert (out / path).is_file(), path
        assert str(out / path.split("/")[0]) in stdout  # printed among the outputs
    # data, teacher, evaluation
    assert summary["data"]["records"] == 20 and summary["data"]["windows"] == {"train": 16, "val": 2, "test": 2}
    assert summary["teacher"]["objective"] == "clip" and len(summary["teacher"]["leads"]) == 12
    assert set(summary["evaluation"]["linear_probe_macro_auroc"]) == {"clip", "random-init"}
    # distill: figures are the job's own
    distill = json.loads((out / "students" / "distill.json").read_text())
    assert set(summary["distill"]["models"]) == {"teacher", "distilled", "baseline"} == set(distill["models"])
    assert summary["distill"]["models"]["distilled"]["macro_auroc"]["value"] == \
        distill["models"]["distilled"]["metrics"]["auroc"]["macro"]["value"]
    assert summary["distill"]["lead"] == "I"
    # export: int8 .pte and .tflite (and the fp32 formats) load, checksums included
    export = json.loads((out / "export" / "export.json").read_text())
    assert {"pte-int8", "tflite-int8", "pte-fp32", "tflite-fp32", "onnx-fp32"} <= set(export["artifacts"])
    for name in ("pte-int8", "tflite-int8"):
        art = load_artifact(out / "export" / name)
        assert art.manifest.precision == "int8" and art.manifest.spec.leads == ("I",)
        assert summary["export"]["artifacts"][name]["bytes"] == export["artifacts"][name]["model_bytes"]
    assert {"ethos-u55-128", "cortex-m55"} <= set(export["embedded"])
    # bundle: verifies again, from the files alone
    report = verify_bundle(out / "bundle")
    assert report.target == "tflm" and summary["bundle"]["verified"] and summary["bundle"]["authenticated"] is False
    fwr = summary["bundle"]["firmware"]  # the package stage ran the firmware on QEMU where it could
    if shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
        assert fwr["board"] == "mps3-an547" and fwr["bit_exact_windows"] == fwr["windows"] > 0
        assert fwr["max_steps_vs_python_tflm"] <= 1 and fwr["instructions_per_inference"] > 0
    else:
        assert fwr is None and "firmware: mps3-an547" not in {c.name for c in report.checks}
    # stream: the JSONL holds the windows and events the summary counts; nothing lost
    s = summary["stream"]
    rows = [json.loads(line) for line in (out / "stream.jsonl").read_text().splitlines()]
    windows = [r for r in rows if r["type"] == "window"]
    events = [r for r in rows if r["type"] == "event"]
    assert s["offline_check"]["ok"] and s["offline_check"]["records"] == 2 and s["offline_check"]["windows"] == 2
    assert s["record"]["seconds"] == 60.0 and s["received"] == s["link"]["received"] == 60 * 130
    assert s["lost"] == s["link"]["lost"] == 0 and s["link"]["reconnects"] == 0
    assert s["windows"] == len(windows) == 11 and all(w["probabilities"] for w in windows if w["usable"])
    assert sum(s["events"].values()) == len(events) and events[-1]["kind"] == "end"
    # compare: the report covers teacher, student and the int8 artifacts
    cmp = json.loads((out / "compare" / "compare.json").read_text())
    assert {"teacher fp32", "student fp32", "pte-int8", "tflite-int8"} <= set(cmp["models"]) == set(summary["compare"]["models"])
    assert "<html" in (out / "compare" / "compare.html").read_text().lower()

    # A rerun replaces only what the demo wrote: a folder without the demo's file is refused, before anything is deleted.
    (out / "shards" / "dataset.json").unlink()
    capsys.readouterr()
    assert main(["demo", "--config", str(cfg), "--out", str(out)]) == 2
    assert "not written by the demo" in _one_line_error(capsys)
    assert (out / "teacher" / "checkpoint.pt").is_file()
    (out / "shards" / "dataset.json").write_text("{}")
    _clear_previous(out)
    assert not any((out / name).exists() for name in OUTPUT_FOLDERS) and (out / "config.json").is_file()


@pytest.mark.parametrize("data, message", [
    ("mitdb:/tmp", "--data: expected synthetic, ptbxl:PATH or cinc2017:PATH, got 'mitdb:/tmp'"),
    ("ptbxl", "--data: expected synthetic, ptbxl:PATH or cinc2017:PATH, got 'ptbxl'"),
    ("synthetic:x", "--data: expected synthetic, ptbxl:PATH or cinc2017:PATH, got 'synthetic:x'"),
    ("ptbxl:/no/such/folder", "--data: /no/such/folder: no such folder"),
])
def test_demo_bad_data_is_one_line(data: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--data", data, "--out", str(tmp_path / "d")]) == 2
    assert _one_line_error(capsys) == f"ecg-edge: error: {message}"


def test_demo_config_errors_name_the_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[distill]\nlead = 'V1'\n[pretrain]\nleads = ['I', 'II']\n")
    assert main(["demo", "--config", str(cfg), "--out", str(tmp_path / "d")]) == 2
    assert "distill.lead: 'V1' is not among the teacher's leads ['I', 'II']" in _one_line_error(capsys)


def test_demo_narrows_leads_for_single_lead_data(tmp_path: Path) -> None:
    from ecg_edge.demo import demo_config

    cfg = demo_config(None, f"cinc2017:{tmp_path}")
    assert cfg.data.source == f"cinc2017:{tmp_path}" and cfg.data.leads == cfg.pretrain.leads == ("I",)
    assert demo_config(None, "synthetic").data.leads == demo_config(None).data.leads


def test_demo_streams_the_wearable_through_the_stream_command(exports, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    """Stage 7's wearable is `ecg-edge wearable`'s one path (ecg_edge.stream.stream over the firmware_bridge
    facade, typed StreamOptions): the demo's figures are the command's counts, its closing lines the
    command's own, and its JSONL the one the command writes for the same replay."""
    pytest.importorskip("bumble")
    from train.data.synthetic import Synthetic

    from ecg_edge.demo import STAGES, Stages, _wearable_figures, _wearable_stream
    from ecg_edge.stream import summary_lines

    ds = Synthetic(2, seed=3, fs=500.0, duration_s=30.0)
    rec = ds.read(ds.ids()[1])  # an AFIB record
    npy = tmp_path / "record.npy"
    np.save(npy, rec.lead("I").astype(np.float64))
    manifest = exports.get("tflite_int8").manifest
    result, events = asyncio.run(_wearable_stream(npy, 500.0, "I", manifest, tmp_path / "demo.jsonl", False,
                                                  Stages(STAGES, bar=False)))
    printed = capsys.readouterr().out.splitlines()
    wear = _wearable_figures(result, events)
    assert wear["received"] == wear["link"]["received"] == 30 * 130 and wear["lost"] == 0
    assert wear["windows"] == sum(line.startswith("  window ") for line in printed) > 0
    assert sum(wear["events"].values()) == len(events) and events[-1].kind == "end"
    assert main(["wearable", "--source", f"replay:{npy}", "--fs", "500", "--lead", "I", "--artifact", str(manifest), "--fast",
                 "--no-live", "--jsonl", str(tmp_path / "cmd.jsonl")]) == 0
    command = capsys.readouterr().out.splitlines()
    summary = summary_lines(result)
    assert command[:len(summary)] == summary  # the same counts, said the same way
    assert any(line.startswith("  the recording's decision: ") for line in summary)  # the demo's model decides it
    strip = (lambda path: [{k: v for k, v in json.loads(line).items() if k != "latency_ms"}
                           for line in path.read_text().splitlines()])
    assert strip(tmp_path / "demo.jsonl") == strip(tmp_path / "cmd.jsonl")
