"""`ecg-edge demo`: the main job, on built-in synthetic data unless `--data` or the config names a real dataset.

Eight stages, each timed (demo.json "seconds"):

1. data: generate (or read) records -> preprocess them once into shards;
2. pretrain: a teacher (the config's `[pretrain]`: a CLIP-style 12-lead teacher by default);
3. evaluate: linear probe of the frozen teacher against the same encoder at random init;
4. distill: a single-lead student (`[distill]`) from the teacher, and the same student from labels alone;
5. export: int8 (PT2E PTQ) .pte and .tflite plus the fp32 .pte/.tflite/.onnx, each parity-checked and
   scored, Vela (Ethos-U55) and the Cortex-M lowering (`distill.release.release`);
6. package: a TFLite Micro vendor bundle from the int8 .tflite with its firmware project, verified
   (`firmware_bridge.bundle`), on QEMU's Cortex-M55 board where the Arm toolchain is installed;
7. stream: the held-out records in 73-sample chunks through the 12-lead signal contract (streamed
   windows must equal the offline shards), then one held-out record from a virtual Polar H10 on
   bumble over BLE into the edge engine with the int8 .tflite student, as fast as it goes
   (20x real time under the live view on a terminal);
8. compare: teacher, float student and every artifact on the same windows (`distill.compare`).

Exit status 0, or 1 when the streamed windows differ from the offline ones; a bundle that does not
verify stops the demo with one error line (status 2). A distilled student below macro AUROC 0.6 is
reported with a warning.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge_runtime.config import to_jsonable, write_json
from edge_runtime.errors import ConfigError, DatasetError
from edge_runtime.signal import Preprocessor, Windows
from ecg_edge.config import load_pipeline_config
from train.data.sources import DEMO_DATASETS, open_dataset

#: Samples per streamed chunk: one Polar H10 ECG notification carries 73 samples.
STREAM_CHUNK = 73
TOLERANCE = 1e-5
#: Seconds of the held-out synthetic record the virtual wearable replays (real records: their length).
STREAM_SECONDS = 60.0
#: The virtual wearable (a Polar H10) replays as fast as it goes (`--fast`), or at this speed when the
#: live view shows it on a terminal (60 s of signal in 3 s).
LIVE_SPEED = 20.0
#: Bootstrap resamples and latency calls: fewer than the commands' defaults, to keep the demo short.
N_BOOT = 200
LATENCY_RUNS = 20
#: Below this macro AUROC the distilled student has learned next to nothing: the demo warns.
MIN_STUDENT_AUROC = 0.6
#: `--data` choices: the dataset kinds the demo runs on.
DATA_KINDS = DEMO_DATASETS
#: Datasets with fewer leads than a 12-lead teacher wants: the demo narrows the leads to these.
DATASET_LEADS = {"cinc2017": ("I",)}

STAGES = ("data", "pretrain", "evaluate", "distill", "export", "package", "stream", "compare")
#: Output folders the demo writes, each with the file that shows the demo wrote it (a rerun
#: replaces them; anything else in its place is refused).
OUTPUT_FOLDERS = {"shards": ("dataset.json",), "teacher": ("checkpoint.pt", "history.jsonl"),
                  "evaluation": ("evaluation.json",), "students": ("distill.json", "distilled", "baseline"),
                  "export": ("export.json", "golden.npy"), "bundle": ("manifest.json",),
                  "stream": ("record.npy",), "compare": ("compare.json",)}


# --------------------------------------------------------------------------- config and output folder

def demo_config(config: str | Path | None, data: str | None = None):
    """The pipeline config with `--data` applied; single-lead datasets narrow the leads (say so)."""
    cfg = load_pipeline_config(config)
    if data is not None:
        kind, sep, path = data.partition(":")
        if kind not in DATA_KINDS or (kind == "synthetic") == bool(sep) or (sep and not path):
            raise ConfigError(f"--data: expected synthetic, ptbxl:PATH or cinc2017:PATH, got {data!r}")
        if path and not Path(path).expanduser().is_dir():
            raise ConfigError(f"--data: {path}: no such folder")
        cfg = replace(cfg, data=replace(cfg.data, source=data))
    kind = cfg.data.source.partition(":")[0]
    leads = DATASET_LEADS.get(kind)
    if leads and not set(cfg.pretrain.leads) <= set(leads):
        print(f"note: {kind} records have lead{'s' if len(leads) > 1 else ''} {', '.join(leads)} only: the teacher "
              f"and the shards use {'them' if len(leads) > 1 else 'it'} (config: {len(cfg.pretrain.leads)} leads)")
        cfg = replace(cfg, data=replace(cfg.data, leads=leads), pretrain=replace(cfg.pretrain, leads=leads))
    if cfg.distill.lead not in cfg.pretrain.leads:
        raise ConfigError(f"distill.lead: {cfg.distill.lead!r} is not among the teacher's leads "
                          f"{list(cfg.pretrain.leads)} (pretrain.leads)")
    return cfg


def _clear_previous(out: Path) -> None:
    """Remove the output folders an earlier demo wrote into OUT; refuse to touch anything else."""
    for name, marks in OUTPUT_FOLDERS.items():
        folder = out / name
        if not folder.exists():
            continue
        if not folder.is_dir() or (any(folder.iterdir()) and not any((folder / m).exists() for m in marks)):
            raise DatasetError(f"{folder}: exists and was not written by the demo (no {' or '.join(marks)}); "
                               "choose another --out")
    for name in OUTPUT_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("stream.jsonl", "demo.json"):
        (out / name).unlink(missing_ok=True)


# --------------------------------------------------------------------------- terminal: stage bar

@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables the user has not set, for the block."""
    added = [k for k in values if k not in os.environ]
    os.environ.update({k: values[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


class _Lines:
    """stdout for the stages: whole lines go out through tqdm.write, so progress bars stay intact."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write, self._buf = write, ""

    def write(self, s: str) -> int:
        self._buf += s
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self._write(line)
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class Stages:
    """The stage bar (`[k/N] stage`, tqdm on stderr) and each stage's wall time."""

    def __init__(self, names: tuple[str, ...], bar: bool) -> None:
        self.names, self.seconds = names, {}
        self.stdout = sys.stdout
        self.bar = None
        if bar:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=len(names), unit="stage", file=sys.stderr, position=0, leave=True,
                                bar_format="{desc} |{bar:20}| {n_fmt}/{total_fmt} stages [{elapsed}]", dynamic_ncols=True)
                self._tqdm = tqdm

    def say(self, line: str = "") -> None:
        if self.bar is not None:
            self._tqdm.write(line, file=self.stdout)
        else:
            print(line, file=self.stdout, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str, headline: str) -> Iterator[None]:
        k = self.names.index(name) + 1
        label = f"[{k}/{len(self.names)}] {name}"
        self.say(f"{label}: {headline}")
        if self.bar is not None:
            self.bar.set_description_str(label)
        t0 = time.perf_counter()
        redirect = contextlib.redirect_stdout(_Lines(self.say)) if self.bar is not None else contextlib.nullcontext()
        with redirect, warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):  # the export libraries' notices to their developers
                warnings.simplefilter("ignore", category)
            yield
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        if self.bar is not None:
            self.bar.update(1)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hide the bar (a live view owns the terminal meanwhile)."""
        if self.bar is not None:
            self.bar.clear()
        try:
            yield
        finally:
            if self.bar is not None:
                self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- stage 7: stream

def stream_check(shards: Path, cfg, record_ids: list[str]) -> dict:
    """Stream records in 73-sample chunks; compare with their offline windows in the shards."""
    from train.data.shards import open_shards
    from train.loader import read_records

    dataset = open_dataset(cfg.data)
    rows = {r["id"]: r for r in read_records(shards)}
    _, splits = open_shards(shards)
    worst, n_windows, signal_s, elapsed, fs_in = 0.0, 0, 0.0, 0.0, None
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
        fs_in = rec.fs
    return {"records": len(record_ids), "windows": n_windows, "max_abs_diff": worst,
            "chunk_samples": STREAM_CHUNK, "leads": len(cfg.data.leads), "fs_in": fs_in,
            "real_time_factor": signal_s / max(elapsed, 1e-9)}


def held_out_record(cfg, shards: Path, lead: str) -> dict[str, Any]:
    """The record the virtual wearable replays: the first test-split record with an abnormal label
    (else the first); synthetic records are regenerated STREAM_SECONDS long (same seed and index,
    so the same condition; never trained on)."""
    from edge_runtime.engine import NORMAL_LABELS
    from train.data.shards import open_shards
    from train.loader import read_records

    names = open_shards(shards)[0]["label_names"]
    rows = [r for r in read_records(shards) if r["split"] == "test"]
    if not rows:
        raise DatasetError(f"{shards}: the test split holds no records to stream")

    def labels_of(row: dict[str, Any]) -> list[str]:
        return [n for n, t in zip(names, row["labels"]["target"]) if t]

    row = next((r for r in rows if set(labels_of(r)) - set(NORMAL_LABELS)), rows[0])
    data = cfg.data
    if data.source == "synthetic":
        data = replace(data, duration_s=max(data.duration_s, STREAM_SECONDS))
    rec = open_dataset(data).read(row["id"])
    return {"id": row["id"], "labels": labels_of(row), "fs": float(rec.fs), "seconds": float(rec.duration_s),
            "signal_mv": np.asarray(rec.lead(lead), dtype=np.float64)}


async def _wearable_stream(npy: Path, fs: float, lead: str, manifest: Path, jsonl: Path, live: bool,
                           stages: Stages) -> tuple[Any, list]:
    """What `ecg-edge wearable --source replay:NPY --fs FS --lead LEAD --artifact MANIFEST --fast --jsonl JSONL` does
    (at LIVE_SPEED under the live view on a terminal, else one line per window and event); returns the
    stream's `ecg_edge.stream.StreamResult` and its events."""
    from edge_runtime.outputs import TextSink
    from ecg_edge.stream import StreamOptions, stream

    opts = StreamOptions(source=f"virtual:{npy}", artifact=manifest, lead=lead, fs=fs,
                         speed=LIVE_SPEED if live else None, jsonl=jsonl, live=live, title="ecg-edge demo")
    events: list = []
    sinks: list = [lambda results, new: events.extend(new)]
    if not live:
        return await stream(opts, sinks + [TextSink(lambda line: stages.say(f"  {line}"))]), events
    from rich.console import Console

    with stages.paused():
        return await stream(opts, sinks, console=Console(file=stages.stdout)), events


def _wearable_figures(result: Any, events: list) -> dict[str, Any]:
    """demo.json's figures of the wearable stream: the engine's and the link's counts, events by kind,
    closed rhythm episodes."""
    s, link = result.stats, result.link
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    rhythm = [{"label": e.label, "t_start_s": round(e.t_start_s, 2), "t_end_s": round(e.t_end_s, 2)}
              for e in events if e.kind == "rhythm" and e.t_end_s is not None]  # closed episodes
    return {"source": result.describe, "fs_device": result.fs, "lead": result.lead, "wall_s": round(result.wall_s, 2),
            "received": s.received, "used": s.used, "lost": s.lost, "duplicate": s.duplicate,
            "invalid": s.invalid, "rejected": s.rejected, "windows": s.windows,
            "windows_unusable": s.windows_unusable, "beats": s.beats, "events": kinds, "rhythm_episodes": rhythm,
            "link": {"received": link.received, "lost": link.lost, "gaps": len(link.gaps), "duplicated": link.duplicated,
                     "reordered": link.reordered, "malformed": link.malformed, "reconnects": link.reconnects}}


# --------------------------------------------------------------------------- the demo

def _macro(metrics: dict[str, Any]) -> dict[str, Any]:
    m = metrics["auroc"]["macro"]
    return {"value": m["value"], "ci": m["ci"]}


def _firmware_summary(r: dict[str, Any] | None) -> dict[str, Any] | None:
    """The figures of the firmware check for demo.json (None when it did not run)."""
    if r is None:
        return None
    mem = r["memory"]
    return {"board": r["board"], "windows": r["windows"], "bit_exact_windows": r["bit_exact_windows"],
            "max_steps_vs_python_tflm": r["max_steps_vs_reference"], "flash_bytes": mem["flash_bytes"],
            "ram_bytes": mem["ram_bytes"], "instructions_per_inference": r["instructions_per_inference"]["median"]}


def run_demo(config: str | None, out: Path, progress: Callable | None = None, data: str | None = None) -> int:
    from distill.distill import distill_students
    from distill.release import release
    from ecg_edge.stream import summary_lines
    from train.protocol import EvalOptions, run_evaluate
    from firmware_bridge.bundle import BundleError, package, verify_bundle
    from firmware_bridge.bundle.vela import vela_compile
    from train.data.shards import build_shards
    from train.evaluate import fmt_ci
    from train.loader import read_records
    from train.pretrain import pretrain

    t_start = time.perf_counter()
    cfg = demo_config(config, data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    write_json(out / "config.json", cfg)
    p, d, tr = cfg.pretrain, cfg.distill, cfg.train
    shards, teacher, students, export, bundle = (out / n for n in ("shards", "teacher", "students", "export", "bundle"))
    summary: dict[str, Any] = {"config": str(config) if config else "built-in defaults (configs/default.toml)",
                               "out": str(out)}
    stages = Stages(STAGES, bar=progress is not None)
    say = stages.say
    try:
        with stages.stage("data", f"{cfg.data.source} -> preprocessed shards ({cfg.preprocess.window_s:g} s windows "
                                  f"every {cfg.preprocess.hop_s:g} s at {cfg.preprocess.fs_out:g} Hz)"):
            info = build_shards(cfg.data, cfg.preprocess, shards, shard_windows=cfg.shard_windows, progress=progress)
            if not info["windows"].get("train"):
                raise DatasetError(f"data.leads: no training windows: {len(info['skipped'])} records skipped "
                                   f"({info['skipped'][0]['reason'] if info['skipped'] else 'none read'})")
            say(f"  {info['records']} records, windows per split {info['windows']}, labels {', '.join(info['label_names'])}, "
                f"{len(info['skipped'])} skipped")
        summary["data"] = {"source": cfg.data.source, "shards": str(shards), "records": info["records"],
                           "windows": info["windows"], "skipped": len(info["skipped"]), "label_names": info["label_names"]}

        with stages.stage("pretrain", f"{p.objective} teacher, {p.encoder} over {len(p.leads)} leads, {tr.epochs} epochs "
                                      f"on the train split"):
            trained = pretrain(shards, p, tr, teacher, config=to_jsonable(cfg))
        last = trained["history"][-1]
        summary["teacher"] = {"checkpoint": trained["checkpoint"], "objective": p.objective, "encoder": p.encoder,
                              "leads": list(p.leads), "epochs": tr.epochs, "first_loss": trained["history"][0]["loss"],
                              "final_loss": last["loss"], "ecg_per_s": last["ecg_per_s"]}
        teacher_ckpt = Path(trained["checkpoint"])

        with stages.stage("evaluate", "linear probe on the frozen teacher vs the same encoder at random init"):
            evaluation = run_evaluate([teacher_ckpt], shards, out / "evaluation",
                                      EvalOptions(fractions=(0.1, 1.0), n_boot=N_BOOT))
            probes = {r["model"].split(":")[0]: r["metrics"]["auroc"]["macro"] for r in evaluation["runs"]
                      if r["setting"] == "linear probe 100%"}
            for model, entry in probes.items():
                say(f"  linear probe, {model}: macro AUROC {fmt_ci(entry)} on {evaluation['runs'][0]['metrics']['n']} "
                    f"held-out records")
        summary["evaluation"] = {"linear_probe_macro_auroc": {k: {"value": v["value"], "ci": v["ci"]} for k, v in probes.items()},
                                 "report": str(out / "evaluation" / "evaluation.md")}

        with stages.stage("distill", f"{d.student} on lead {d.lead} from the teacher (T = {d.temperature:g}), and the "
                                     f"same student from labels alone; {tr.epochs} epochs each"):
            dres = distill_students(shards, teacher_ckpt, d, tr, students, baseline=True, n_boot=N_BOOT)
            for name, m in dres["models"].items():
                say(f"  {name:9s} macro AUROC {fmt_ci(m['metrics']['auroc']['macro'])}   {m['what']}")
            diff = dres.get("distilled_minus_baseline", {}).get("auroc")
            if diff:
                say(f"  distilled - baseline, macro AUROC: {diff['difference']:+.3f}"
                    + (f" [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]" if diff["ci"] else ""))
        distilled = dres["models"]["distilled"]
        summary["distill"] = {
            "student": d.student, "lead": d.lead, "eval_splits": dres["eval_splits"], "report": str(students / "distill.json"),
            "models": {k: {"macro_auroc": _macro(m["metrics"]), **({"checkpoint": m["checkpoint"],
                                                                     "parameters": m["parameters"]} if "checkpoint" in m else {})}
                       for k, m in dres["models"].items()},
            "distilled_minus_baseline_auroc": diff and {"difference": diff["difference"], "ci": diff["ci"]}}
        auroc = distilled["metrics"]["auroc"]["macro"]["value"]
        summary["distill"]["learned"] = auroc is not None and auroc >= MIN_STUDENT_AUROC
        if not summary["distill"]["learned"]:
            say(f"  warning: the distilled student's macro AUROC is {auroc if auroc is None else round(auroc, 3)}, "
                f"below {MIN_STUDENT_AUROC}: it learned next to nothing (more train.epochs or data.n_records)")
        student_ckpt = Path(distilled["checkpoint"])

        with stages.stage("export", "int8 (PT2E post-training quantization) .pte and .tflite, fp32 .pte/.tflite/.onnx; "
                                    "parity, scores, Vela (Ethos-U55) and Cortex-M"):
            with _env(LITERT_TORCH_SHOW_PROGRESS="n"):  # litert-torch's own per-pass log
                rel = release(student_ckpt, export, methods=("ptq",), fp32=True, embedded=True, n_boot=N_BOOT,
                              threads=1, log=say, vela=vela_compile)
            for name, a in rel["artifacts"].items():
                if "model_bytes" in a:
                    say(f"  {name:12s} {a['runtime']:11s} {a['model_bytes']:>8,} bytes  macro AUROC "
                        f"{fmt_ci(a['metrics']['ranking']['auroc']['macro'])}  parity max |diff| "
                        f"{a['parity']['max_abs_diff']:.3g}")
        missing = [n for n in ("pte-int8", "tflite-int8") if n not in rel["artifacts"]]
        if missing:
            raise ConfigError(f"export: no {', '.join(missing)} artifact was written")
        summary["export"] = {
            "folder": str(export), "report": str(export / "export.json"), "thresholds": rel["thresholds"],
            "artifacts": {k: {"runtime": a.get("runtime", "torch"), "precision": a.get("precision", "fp32"),
                              **({"bytes": a["model_bytes"], "manifest": a["manifest"],
                                  "parity_max_abs_diff": a["parity"]["max_abs_diff"],
                                  "record_agreement": a["metrics"]["agreement"]["records"]} if "manifest" in a else {}),
                              "macro_auroc": _macro(a["metrics"]["ranking"])} for k, a in rel["artifacts"].items()},
            "embedded": {k: {f: v[f] for f in ("npu_op_share", "sram_kib", "cycles_total", "all_int8", "pte_bytes")
                             if f in v} for k, v in rel.get("embedded", {}).items()}}

        with stages.stage("package", "TFLite Micro vendor bundle from the int8 .tflite with its Cortex-M55 firmware, "
                                     "then verify it (on QEMU's mps3-an547 where the Arm toolchain is installed)"):
            man = package(export / "tflite-int8", "tflm", bundle, log=say)
            firmware = man.get("firmware") or {}
            on = "qemu" if firmware.get("measured") else None
            if on is None:
                say(f"  firmware check not run: {firmware.get('not_measured') or firmware.get('not_written')}")
            try:
                report = verify_bundle(bundle, on=on)
            except BundleError as exc:
                for row in (exc.report.rows() if exc.report is not None else []):
                    say(f"  {row[0]:26s} {row[1]:8s} {row[2]}")
                raise
            for name, status, detail in report.rows():
                say(f"  {name:26s} {status:8s} {detail}")
        summary["bundle"] = {"folder": str(bundle), "target": man["target"], "verified": True,
                             "authenticated": report.authenticated,  # the demo's bundle is unsigned
                             "flash_bytes": man["memory"]["flash_bytes"], "ram_bytes": man["memory"]["ram_bytes"],
                             "ram_what": man["memory"]["ram_what"], "files": len(man["files"]),
                             "checks": {name: status for name, status, _ in report.rows()},
                             "firmware": _firmware_summary(report.firmware)}

        test_ids = [r["id"] for r in read_records(shards) if r["split"] == "test"]
        rec = held_out_record(cfg, shards, d.lead)
        with stages.stage("stream", f"{len(test_ids)} held-out records through the signal contract in {STREAM_CHUNK}-sample "
                                    f"chunks; held-out record {rec['id']} ({', '.join(rec['labels']) or 'no label'}, "
                                    f"{rec['seconds']:g} s, lead {d.lead}) from a virtual Polar H10 over BLE into the "
                                    f"engine with the int8 .tflite"):
            check = stream_check(shards, cfg, test_ids)
            check["ok"] = check["max_abs_diff"] <= TOLERANCE
            say(f"  streamed == offline: max |diff| = {check['max_abs_diff']:.2e} over {check['windows']} windows "
                f"of {check['records']} records ({'OK' if check['ok'] else 'MISMATCH'}); real-time factor "
                f"{check['real_time_factor']:,.0f}x ({check['leads']} leads at {check['fs_in']:g} Hz)")
            (out / "stream").mkdir(exist_ok=True)
            npy = out / "stream" / "record.npy"
            np.save(npy, rec["signal_mv"])
            live = stages.bar is not None and stages.stdout.isatty()
            result, events = asyncio.run(_wearable_stream(npy, rec["fs"], d.lead, export / "tflite-int8" / "manifest.json",
                                                          out / "stream.jsonl", live, stages))
            wear = _wearable_figures(result, events)
            for line in summary_lines(result):  # the lines `ecg-edge wearable` ends with
                say(f"  {line}")
            say(f"  events {', '.join(f'{k} {v}' for k, v in sorted(wear['events'].items())) or 'none'}; "
                f"{rec['seconds']:g} s of signal in {wear['wall_s']:.1f} s")
        summary["stream"] = {"offline_check": check, "record": {k: rec[k] for k in ("id", "labels", "fs", "seconds")},
                             "replay": str(npy), "log": str(out / "stream.jsonl"), **wear}

        with stages.stage("compare", "teacher, float student and every artifact on the same held-out windows"):
            from distill.compare import compare, print_table

            cmp = compare(student_ckpt, export, out / "compare", teacher=teacher_ckpt, n_boot=N_BOOT, threads=1,
                          latency_runs=LATENCY_RUNS, log=say)
            print_table(cmp)
        summary["compare"] = {
            "report": str(out / "compare" / "compare.html"), "json": str(out / "compare" / "compare.json"),
            "models": {k: {"runtime": m["runtime"], "bytes": m["size"]["bytes"], "p50_ms": m["latency"]["p50_ms"],
                           "macro_auroc": _macro(m["metrics"]["ranking"])} for k, m in cmp["models"].items()}}
    finally:
        stages.close()

    summary["seconds"] = {**stages.seconds, "total": round(time.perf_counter() - t_start, 1)}
    write_json(out / "demo.json", summary)
    ok = summary["stream"]["offline_check"]["ok"]
    say(f"done in {summary['seconds']['total']:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in stages.seconds.items()) + ")")
    say("outputs:")
    for path, what in ((shards, "memory-mapped windows, labels, index, dataset.json"),
                       (teacher_ckpt, "the pretrained teacher"),
                       (out / "evaluation" / "evaluation.md", "linear probe AUROC/PRAUC with 95 % CIs, fairness gaps, saliency"),
                       (students / "distill.json", "distilled and label-only students (distilled/, baseline/) with CIs"),
                       (export / "export.json", f"artifacts: {', '.join(k for k in rel['artifacts'] if k != 'pytorch-fp32')}"),
                       (bundle, f"TFLite Micro vendor bundle ({len(man['files'])} files, integrity verified, "
                                f"{'authenticated' if report.authenticated else 'unsigned: not authenticated'})"),
                       (out / "stream.jsonl", "the wearable stream's windows and events (replay: stream/record.npy)"),
                       (out / "compare" / "compare.html", "quantized vs full precision report (compare.json beside it)"),
                       (out / "config.json", "resolved config"), (out / "demo.json", "every stage's figures and seconds")):
        say(f"  {path}  ({what})")
    say(f"replay the held-out record in real time: ecg-edge wearable --source replay:{npy} --fs {rec['fs']:g} --lead {d.lead} "
        f"--artifact {export / 'tflite-int8'}")
    return 0 if ok else 1
