"""`ecg-edge demo`: the main job, on built-in synthetic data unless a config names a real dataset.

Today it runs the part of the pipeline that exists: generate (or read) records -> preprocess them
once into shards -> pretrain a teacher (the config's `[pretrain]` objective, default clip) -> evaluate
it with a linear probe against the same encoder at random init -> stream the held-out records chunk
by chunk through the same signal contract, as a wearable would deliver them, and check the streamed
windows equal the offline shards. Later stages (distil, quantize, export, package, compare) join
here as they land.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edge_runtime.config import to_jsonable, write_json
from edge_runtime.errors import DatasetError
from edge_runtime.signal import Preprocessor, Windows
from ecg_edge.config import load_pipeline_config
from ecg_edge.evaluate import EvalOptions, run_evaluate
from train.data.shards import build_shards, open_shards
from train.data.sources import open_dataset
from train.evaluate import fmt_ci
from train.pretrain import pretrain

#: Samples per streamed chunk: one Polar H10 ECG notification carries 73 samples.
STREAM_CHUNK = 73
TOLERANCE = 1e-5


def _fresh(folder: Path) -> Path:
    """Remove a shard folder this demo wrote before; refuse to touch anything else."""
    if folder.exists():
        if not (folder / "dataset.json").is_file():
            raise DatasetError(f"{folder}: exists and was not written by the demo; choose another --out")
        shutil.rmtree(folder)
    return folder


def stream_check(shards: Path, cfg, record_ids: list[str]) -> dict:
    """Stream records in 73-sample chunks; compare with their offline windows in the shards."""
    dataset = open_dataset(cfg.data)
    rows = {r["id"]: r for r in map(json.loads, (shards / "records.jsonl").read_text().splitlines())}
    _, splits = open_shards(shards)
    worst, n_windows, signal_s, elapsed = 0.0, 0, 0.0, 0.0
    for record_id in record_ids:
        rec = dataset.read(record_id).select(cfg.data.leads)
        row = rows[record_id]
        first = row["first_window"]
        offline = np.stack([splits[row["split"]][i][0] for i in range(first, first + row["n_windows"])])
        pre = Preprocessor(cfg.preprocess, rec.fs, cfg.data.leads)
        t0 = time.perf_counter()
        parts = [pre.process(rec.signal[:, i:i + STREAM_CHUNK]) for i in range(0, rec.signal.shape[1], STREAM_CHUNK)]
        elapsed += time.perf_counter() - t0
        streamed = Windows.concat(parts).data
        worst = max(worst, float(np.abs(streamed - offline).max()) if streamed.shape == offline.shape else float("inf"))
        n_windows += len(streamed)
        signal_s += rec.duration_s
    return {"records": len(record_ids), "windows": n_windows, "max_abs_diff": worst,
            "chunk_samples": STREAM_CHUNK, "leads": len(cfg.data.leads), "fs_in": rec.fs,
            "real_time_factor": signal_s / elapsed}


def run_demo(config: str | None, out: Path, progress: Callable | None = None) -> int:
    cfg = load_pipeline_config(config)
    out.mkdir(parents=True, exist_ok=True)
    shards = _fresh(out / "shards")
    print(f"[1/4] data: {cfg.data.source} -> preprocessed shards ({cfg.preprocess.window_s:g} s windows at "
          f"{cfg.preprocess.fs_out:g} Hz)")
    info = build_shards(cfg.data, cfg.preprocess, shards, shard_windows=cfg.shard_windows, progress=progress)
    write_json(out / "config.json", cfg)
    teacher = out / "teacher"
    p = cfg.pretrain
    print(f"[2/4] pretrain: {p.objective} teacher, {p.encoder} over {len(p.leads)} leads, {cfg.train.epochs} epochs "
          f"on the train split")
    trained = pretrain(shards, p, cfg.train, teacher, config=to_jsonable(cfg))
    print("[3/4] evaluate: linear probe on the frozen teacher vs the same encoder at random init")
    evaluation = run_evaluate([teacher], shards, out / "evaluation", EvalOptions(fractions=(0.1, 1.0), n_boot=200))
    probes = {r["model"].split(":")[0]: r["metrics"]["auroc"]["macro"] for r in evaluation["runs"]
              if r["setting"] == "linear probe 100%"}
    test_ids = [r["id"] for r in map(json.loads, (shards / "records.jsonl").read_text().splitlines())
                if r["split"] == "test"]
    print(f"[4/4] stream: {len(test_ids)} held-out records in {STREAM_CHUNK}-sample chunks through the same signal contract")
    check = stream_check(shards, cfg, test_ids)
    summary = {"shards": str(shards), "windows": info["windows"], "records": info["records"],
               "skipped": len(info["skipped"]), "label_names": info["label_names"], "stream_check": check,
               "teacher": {"checkpoint": trained["checkpoint"], "objective": p.objective, "encoder": p.encoder,
                           "final_loss": trained["history"][-1]["loss"], "ecg_per_s": trained["history"][-1]["ecg_per_s"]},
               "linear_probe_macro_auroc": probes}
    write_json(out / "demo.json", summary)
    ok = check["max_abs_diff"] <= TOLERANCE
    print(f"  windows per split: {info['windows']}  (labels {', '.join(info['label_names'])})")
    for model, entry in probes.items():
        print(f"  linear probe, {model}: macro AUROC {fmt_ci(entry)} on {evaluation['runs'][0]['metrics']['n']} "
              f"held-out records")
    print(f"  streamed == offline: max |diff| = {check['max_abs_diff']:.2e} over {check['windows']} windows "
          f"of {check['records']} records ({'OK' if ok else 'MISMATCH'}); real-time factor {check['real_time_factor']:,.0f}x "
          f"({check['leads']} leads at {check['fs_in']:g} Hz)")
    print("outputs:")
    for path, what in ((shards, "memory-mapped windows, labels, index, dataset.json"),
                       (teacher / "checkpoint.pt", "the pretrained teacher"),
                       (out / "evaluation" / "evaluation.md", "probe AUROC/PRAUC with 95 % CIs, fairness gaps"),
                       (Path(evaluation["saliency_png"]) if evaluation["saliency_png"] else out / "evaluation",
                        "saliency over the leads"),
                       (out / "config.json", "resolved config"), (out / "demo.json", "this summary")):
        print(f"  {path}  ({what})")
    return 0 if ok else 1
