"""`ecg-edge compare`: quantized against full precision, on the same windows, with CIs.

One set of preprocessed windows (the student's evaluation splits: PTB-XL folds 9-10, the CinC 2017
test part, the synthetic val + test records) goes through

* the teacher in fp32 on all its leads (PyTorch; a probe on its embeddings when it has no head of
  its own, as `ecg-edge distill` scores it), thresholds chosen on the validation split with the
  rule the student's manifest uses;
* the student in fp32 on its lead (PyTorch): the reference every artifact is paired against;
* every artifact found under `--artifacts` (each manifest.json) on its own runtime (ExecuTorch,
  LiteRT, ONNX Runtime), and each int8 .tflite once more on the host TFLite Micro interpreter.

The student and the artifacts decide at the manifest's thresholds, on record probabilities made by
the manifest's record rule (window probabilities averaged, or their max where `ecg-edge cv` chose
it; the teacher by the same rule). Per model, per record: AUROC and PRAUC, F1 / sensitivity / specificity (and the CinC 2017
challenge F1) with bootstrap 95 % CIs (`distill.release.score`, the function `ecg-edge export`
scores with, so the figures equal export.json's and distill.json's for the same models); paired
bootstrap differences against the float student (`train.metrics.paired_difference`); decision
agreement with it; calibration (`train.metrics.calibration`); TPR / FPR gaps by sex and age group
where the records carry them (`train.metrics.fairness_gaps`); size, batch-1 latency measured in
this run, and RAM (`distill.footprint`, plus the runtime's own planned figure where it has one);
per model the record-level confusion matrix and ROC / PR points, per artifact the decision matrix
against the float student, the records whose decision flipped and per-class paired differences,
and the verdict: is each int8 artifact equivalent to the float student here
(`distill.compare_figures.EQUIVALENCE_RULE`), at what size and latency. For an artifact whose
manifest ships inconclusive bands (`abstain`), its coverage against accuracy on the same record
probabilities as the bands are scaled, with the kept decisions' agreement with the float student
(`distill.compare_figures.abstention`; "abstention" is None for an artifact without bands).

Writes OUT/compare.json (every figure), OUT/compare.html (`distill.report_html`, plots embedded)
and prints a table (`print_table`).
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.errors import ConfigError

REFERENCE = "student fp32"
#: Fewest positives (negatives) a patient group needs for a TPR (FPR) in the fairness gaps.
FAIRNESS_MIN_COUNT = 5
#: Packages whose versions go into the report.
VERSIONS = ("numpy", "torch", "executorch", "ai-edge-litert", "onnxruntime", "tflite-micro", "brevitas", "scikit-learn")


# --------------------------------------------------------------------------- data

def _normal(source: str) -> str:
    kind, sep, path = source.partition(":")
    return f"{kind}:{Path(path).resolve()}" if sep and path else source


def check_data_spec(data: str | None) -> None:
    """`--data`: None (the student's own shards) or a dataset spec of a known kind."""
    if data is not None and data.partition(":")[0] not in ("synthetic", "ptbxl", "cinc2017", "mitdb"):
        raise ConfigError(f"--data: expected synthetic, ptbxl:PATH or cinc2017:PATH, got {data!r}")


def resolve_shards(meta: dict[str, Any], data: str | None, out: Path, progress: Callable | None = None) -> Path:
    """The shards to compare on: the student's own when `data` is None or names the dataset they
    were built from; otherwise `data` built into OUT/shards with the student's preprocessing."""
    from edge_runtime.signal import PreprocessConfig
    from train.data.sources import DataConfig, open_dataset
    from train.data.shards import build_or_reuse

    own = Path(meta["shards"])
    info = json.loads((own / "dataset.json").read_text()) if (own / "dataset.json").is_file() else None
    if data is None:
        if info is None:
            raise ConfigError(f"{own}: the student's shards are gone (dataset.json not found); give --data")
        return own
    check_data_spec(data)
    if info is not None and _normal(info["source"]) == _normal(data):
        return own
    if info is None:
        raise ConfigError(f"{own}: the student's shards are gone, so their preprocessing is unknown; rebuild them")
    cfg = DataConfig(**{**info["data"], "source": data})
    names = list(open_dataset(cfg).label_names)
    if names != list(meta["label_names"]):
        raise ConfigError(f"--data: {data} has labels {names}; the student was trained for {meta['label_names']}")
    folder = out / "shards"
    build_or_reuse(cfg, PreprocessConfig(**info["preprocess"]), folder, progress=progress)
    return folder


# --------------------------------------------------------------------------- measurements

def _latency(fn: Callable[[], Any], runs: int, warmup: int = 3) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(max(runs, 1)):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    a = np.asarray(t)
    return {"p50_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "mean_ms": float(a.mean()),
            "runs": len(a), "batch": 1}


def _torch_bytes(module: Any) -> int:
    return int(sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()]))


def _versions() -> dict[str, str]:
    from edge_runtime.provenance import package_versions

    return {k: v for k, v in package_versions(VERSIONS, missing=None).items() if v is not None}  # installed only


# --------------------------------------------------------------------------- models

@dataclasses.dataclass
class Entry:
    """One model's window probabilities on the evaluation windows, and how it was run."""

    name: str
    role: str
    what: str
    runtime: str
    precision: str
    leads: tuple[str, ...]
    probs: np.ndarray
    thresholds: tuple[float, ...]
    size: dict[str, Any]
    latency: dict[str, Any]
    file: str | None = None
    sha256: str | None = None
    ram_probe: tuple[str, str, str | None] | None = None  # (kind, path, backend) for distill.footprint
    planned: tuple[int, str] | None = None
    abstain: tuple[float, ...] | None = None  # the manifest's inconclusive bands (artifacts)
    record_rule: str = "mean"  # how its window probabilities become a record's (the manifest's)


def _teacher(path: Path, shards: Path, data: Any, seed: int, threads: int, runs: int,
             log: Callable[[str], None]) -> Entry:
    import torch

    from distill.distill import _windows, teacher_from_checkpoint
    from distill.release import single_label_thresholds
    from edge_runtime.backends import probabilities
    from train.engine import load_checkpoint, predict
    from train.metrics import operating_thresholds

    ckpt = load_checkpoint(path)
    leads = tuple(ckpt["meta"]["encoder"]["kwargs"]["leads"])
    own = Path(data.meta["shards"])  # probe and thresholds from the training shards, never the scored data
    x_tr, y_tr, _, _ = _windows(own, ("train",), leads)
    teacher, tmeta = teacher_from_checkpoint(ckpt, x_tr, y_tr, None, seed=seed)
    del x_tr
    if tmeta["objective"] == "supervised" and tuple(tmeta.get("label_names") or data.labels) != data.labels:
        raise ConfigError(f"--teacher: {path} was trained for labels {tmeta.get('label_names')}; the student for "
                          f"{list(data.labels)}")
    fn = lambda x: teacher(x)[0]  # noqa: E731
    x_val, y_val, r_val, _ = _windows(own, ("val",), leads)
    p_val = probabilities(predict(teacher, x_val), data.multilabel)
    if data.multilabel:
        thr = tuple(float(t) if np.isfinite(t) else 0.5 for t in operating_thresholds(y_val, p_val, "youden"))
    else:
        thr = single_label_thresholds(p_val, y_val, r_val, data.labels, record_rule=data.spec.record_rule)
    x_ev, y_ev, r_ev = _windows(shards, data.eval_splits, leads)[:3] if data.eval_splits else (None,) * 3
    if data.short.n_padded:  # the padded short records, on the teacher's leads
        sh = data.short
        pad = sh.x[:, [sh.leads.index(k) for k in leads]]
        x_ev, y_ev, r_ev = (pad, sh.y, sh.rows) if x_ev is None else \
            (np.concatenate([x_ev, pad]), np.concatenate([y_ev, sh.y]), np.concatenate([r_ev, sh.rows]))
    if not (np.array_equal(r_ev, data.eval_records) and np.array_equal(y_ev, data.eval_y)):
        raise ConfigError(f"--teacher: its windows of {shards} do not line up with the student's")
    log(f"teacher: {tmeta['objective']} {tmeta['encoder']['name']} over {len(leads)} leads, {len(x_ev)} windows")
    probs = probabilities(predict(teacher, x_ev), data.multilabel)
    one = torch.from_numpy(np.ascontiguousarray(x_ev[:1]))
    with torch.inference_mode():
        lat = _latency(lambda: fn(one), runs)
    return Entry("teacher fp32", "teacher", f"{tmeta['objective']} {tmeta['encoder']['name']} over {len(leads)} "
                 f"leads ({tmeta['teacher_logits']})", "pytorch", "fp32", leads, probs, thr,
                 {"bytes": _torch_bytes(teacher), "what": "parameters and buffers (fp32) of encoder and head"},
                 lat | {"threads": threads}, str(path), tmeta.get("checkpoint_sha256"), ("teacher", str(path), None),
                 record_rule=data.spec.record_rule)


def _student(path: Path, data: Any, threads: int, runs: int) -> Entry:
    import torch

    from distill.release import BATCH
    from edge_runtime.backends import probabilities
    from train.engine import predict

    probs = probabilities(predict(data.student, data.eval_x, batch_size=BATCH), data.multilabel)
    one = torch.from_numpy(np.ascontiguousarray(data.eval_x[:1]))
    with torch.inference_mode():
        lat = _latency(lambda: data.student(one), runs)
    return Entry(REFERENCE, "student", f"{data.meta['encoder']['name']} on lead {data.spec.leads[0]} "
                 f"({data.meta['objective']})", "pytorch", "fp32", data.spec.leads, probs, data.spec.thresholds,
                 {"bytes": _torch_bytes(data.student), "what": "parameters and buffers (fp32)"},
                 lat | {"threads": threads}, str(path), data.meta["checkpoint_sha256"], ("student", str(path), None),
                 record_rule=data.spec.record_rule)


def find_artifacts(root: Path) -> list[Path]:
    """Every artifact manifest under `root` (a folder of `ecg-edge export` / `quantize`), sorted;
    a manifest that does not load is an error naming it."""
    from edge_runtime.artifact import load_artifact

    if not root.is_dir():
        raise ConfigError(f"--artifacts: {root} is not a folder")
    found = sorted(root.rglob("manifest.json"), key=lambda p: (len(p.relative_to(root).parts), str(p)))
    for m in found:
        load_artifact(m)  # one-line ArtifactError naming the file and field on a bad manifest
    if not found:
        raise ConfigError(f"--artifacts: no manifest.json under {root} (give the folder `ecg-edge export` wrote)")
    return found


def _artifacts(root: Path, data: Any, threads: int, runs: int, tflm: bool,
               log: Callable[[str], None]) -> list[Entry]:
    from edge_runtime.artifact import load_artifact
    from edge_runtime.backends import open_backend

    entries = []
    for manifest in find_artifacts(root):
        art = load_artifact(manifest)
        m = art.manifest
        if m.labels != data.labels or m.spec.leads != data.spec.leads:
            raise ConfigError(f"{manifest}: labels {list(m.labels)} on lead(s) {list(m.spec.leads)}; the student "
                              f"has {list(data.labels)} on {list(data.spec.leads)}")
        name = "/".join(manifest.parent.relative_to(root).parts) or manifest.parent.name
        backends = [None] + (["tflite_micro"] if tflm and m.runtime == "litert" and m.precision == "int8" else [])
        for backend in backends:
            b = open_backend(art, backend=backend, threads=threads)
            log(f"{name}: {len(data.eval_x)} windows on {b.name}")
            probs = b.probabilities(b.run(data.eval_x))
            one = np.ascontiguousarray(data.eval_x[:1])
            lat = _latency(lambda: b.run(one), runs) | {"threads": int(b.threads)}
            planned = _planned(art, backend)
            entries.append(Entry(
                name if backend is None else f"{name} on TFLM", "artifact",
                f"{m.model_file} ({m.precision}) on {b.name}" + (", the microcontroller interpreter's reference "
                                                                  "kernels on this host" if backend else ""),
                b.name, m.precision, m.spec.leads, probs, tuple(m.thresholds),
                {"bytes": art.model_path.stat().st_size, "what": f"{m.model_file} on disk (what is flashed)"},
                lat, str(manifest), m.sha256, ("artifact", str(manifest), backend), planned, m.abstain,
                m.record_rule))
    return entries


def _planned(art: Any, backend: str | None) -> tuple[int, str] | None:
    """The runtime's own memory figure: the TFLite Micro arena (measured, bytes) for an int8
    .tflite on TFLM, ExecuTorch's planned buffers for a .pte."""
    m = art.manifest
    if backend == "tflite_micro":
        from edge_runtime.backends import tflm_arena_bytes

        return tflm_arena_bytes(art.model_path.read_bytes()), "TFLite Micro tensor arena, measured (smallest that runs)"
    if m.runtime == "executorch":
        from edge_runtime.backends import executorch_planned_bytes

        return executorch_planned_bytes(art.model_path.read_bytes()), \
            "ExecuTorch planned buffers (XNNPACK workspace not included)"
    return None


# --------------------------------------------------------------------------- scoring

def _score_entry(e: Entry, data: Any, ref: Entry | None, groups: dict[str, Any] | None, n_boot: int,
                 decision_metric: str, ids: list[str]) -> dict[str, Any]:
    """Metrics, calibration, fairness, the confusion matrix and ROC / PR points of one model; against
    the reference also the paired differences (macro and per class), the decision matrix and the
    flipped records. `ids`: the record ids in sorted record order (as aggregate_by_record)."""
    from distill import compare_figures as cf
    from distill.release import score
    from edge_runtime.backends import decide
    from train.metrics import aggregate_by_record, calibration, fairness_gaps, paired_difference

    metrics = score(e.probs, data, n_boot, reference=None if ref is None else ref.probs, thresholds=e.thresholds)
    if ref is not None and tuple(ref.thresholds) != tuple(e.thresholds):
        raise ConfigError(f"{e.file}: thresholds {list(e.thresholds)} differ from the student's "
                          f"{list(ref.thresholds)}; agreement needs one operating point")
    _, s = aggregate_by_record(e.probs, data.eval_records, e.record_rule)
    _, y = aggregate_by_record(data.eval_y, data.eval_records, "max")
    dec = decide(s, e.thresholds, data.multilabel)  # this model's thresholds
    out: dict[str, Any] = {"metrics": metrics, "calibration": calibration(y, s, data.labels, n_boot=n_boot),
                           "confusion": cf.cross_table(y > 0.5, dec, data.labels, data.multilabel),
                           "curves": cf.curves(y, s, data.labels)}
    if groups is not None:
        # multi-label: probability >= threshold per label; single-label: the one-hot decision
        score_, thr = (s, e.thresholds) if data.multilabel else (dec.astype(float), [0.5] * len(data.labels))
        out["fairness"] = fairness_gaps(y, score_, thr, groups, label_names=data.labels,
                                        min_count=FAIRNESS_MIN_COUNT)
    else:
        out["fairness"] = None
    if ref is not None:
        _, r = aggregate_by_record(ref.probs, data.eval_records, e.record_rule)
        rdec = decide(r, e.thresholds, data.multilabel)  # the reference's thresholds are the same (checked above)
        out["paired_vs_reference"] = {
            **{m: paired_difference(y, s, r, m, n_boot=n_boot, label_names=data.labels) for m in ("auroc", "prauc")},
            decision_metric: paired_difference(y, dec.astype(float), rdec.astype(float), decision_metric,
                                               n_boot=n_boot, label_names=data.labels)}
        out["paired_per_class"] = cf.paired_per_class(y, s, r, dec, rdec, data.labels, n_boot)
        out["decisions_vs_reference"] = {
            "matrix": cf.cross_table(rdec, dec, data.labels, data.multilabel),  # rows: reference, columns: e
            "flipped": cf.flipped(ids, y, r, s, rdec, dec, data.labels)}
        out["abstention"] = cf.abstention(y, s, r, e.thresholds, e.abstain, data.labels, data.multilabel, REFERENCE)
    return out


def _groups(shards: Path, data: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """(sex / age groups per evaluated record, the records' ids), in sorted record order."""
    from train.loader import read_records
    from train.metrics import aggregate_by_record, meta_groups

    records = read_records(shards) + data.short.records()  # the padded short records after records.jsonl's
    rid, _ = aggregate_by_record(data.eval_y, data.eval_records, "max")
    rows = [records[int(r)] for r in rid]
    return meta_groups([r.get("meta") or {} for r in rows]), [str(r.get("id", int(i))) for r, i in zip(rows, rid)]


# --------------------------------------------------------------------------- cross-checks

def cross_checks(report: dict[str, Any], artifacts: Path, student: Path) -> list[dict[str, Any]]:
    """Compare this report's figures with those `ecg-edge distill` (distill.json beside the student's
    folder) and `ecg-edge export` / `quantize` (export.json, quantize.json in --artifacts) wrote for
    the same models; one row per figure found in both, "equal" within 1e-9."""
    rows = []

    def check(figure: str, ours: Any, theirs: Any, source: Path) -> None:
        if ours is None or theirs is None:
            return
        rows.append({"figure": figure, "compare": ours, "source": theirs, "file": str(source),
                     "equal": bool(abs(float(ours) - float(theirs)) <= 1e-9)})

    models = report["models"]
    folder = Path(student).resolve()
    folder = folder if folder.is_dir() else folder.parent  # OUT/distilled (or OUT/baseline) of ecg-edge distill
    distill_json = folder.parent / "distill.json"
    if distill_json.is_file() and report.get("same_records_as_training", report["same_shards_as_training"]):
        dj = json.loads(distill_json.read_text())
        role = folder.name  # "distilled" or "baseline"
        for name, key in (("teacher fp32", "teacher"), (REFERENCE, role)):
            if name in models and key in dj.get("models", {}):
                for metric in ("auroc", "prauc"):
                    check(f"{name} macro {metric.upper()}", models[name]["metrics"]["ranking"][metric]["macro"]["value"],
                          dj["models"][key]["metrics"][metric]["macro"]["value"], distill_json)
    by_sha = {m.get("sha256"): name for name, m in models.items() if m["role"] == "artifact" and "TFLM" not in name}
    for summary in sorted(Path(artifacts).rglob("*.json")):
        if summary.name not in ("export.json", "quantize.json") or \
                not report.get("same_records_as_training", report["same_shards_as_training"]):
            continue
        js = json.loads(summary.read_text())
        for aname, a in js.get("artifacts", {}).items():
            ours = models.get(by_sha.get(a.get("sha256"))) if a.get("sha256") else models.get(REFERENCE)
            if ours is None:
                continue
            label = by_sha.get(a.get("sha256"), REFERENCE)
            m, t = ours["metrics"], a["metrics"]
            for metric in ("auroc", "prauc"):
                check(f"{label} macro {metric.upper()}", m["ranking"][metric]["macro"]["value"],
                      t["ranking"][metric]["macro"]["value"], summary)
            dm = report["decision_metric"]
            pick = (lambda x: x["decisions"].get("challenge_f1", {}).get("value")) if dm == "challenge_f1" \
                else (lambda x: x["decisions"]["f1"]["macro"]["value"])
            check(f"{label} {dm}", pick(m), pick(t), summary)
            if "agreement" in t and "agreement" in m:
                check(f"{label} record agreement", m["agreement"]["records"], t["agreement"]["records"], summary)
    return rows


# --------------------------------------------------------------------------- the job

def compare(student: str | Path, artifacts: str | Path, out: str | Path, *, teacher: str | Path | None = None,
            data: str | None = None, n_boot: int = 1000, threads: int = 1, latency_runs: int = 50,
            ram: bool = True, tflm: bool = True, seed: int = 0, split: str = "eval", short: str = "pad",
            log: Callable[[str], None] = print, progress: Callable | None = None) -> dict[str, Any]:
    """Run the comparison (module docstring); write OUT/compare.json and OUT/compare.html.

    `split` (`distill.config.SPLIT_CHOICES`): the student's evaluation splits ("eval"), every
    record of the dataset whatever split its hash gives it ("all": a dataset that was never split),
    or one split. `short` (`distill.config.SHORT_CHOICES`): records shorter than one window are
    scored on one padded window ("pad") or counted as "too short". Thresholds are the manifest's,
    never chosen on the scored data."""
    import torch

    from distill.compare_figures import verdicts
    from distill.footprint import measure
    from distill.release import _is_cinc, check_every_record_read, load_release_data, scored_splits
    from distill.distill import load_student
    from edge_runtime.artifact import load_artifact
    from edge_runtime.config import write_json
    from train.metrics import aggregate_by_record

    out = Path(out)
    student, artifacts = Path(student), Path(artifacts)
    if n_boot < 1 or latency_runs < 1 or threads < 1:
        raise ConfigError(f"n_boot {n_boot}, latency_runs {latency_runs}, threads {threads}: each must be >= 1")
    _, meta = load_student(student)
    check_data_spec(data)
    manifests = find_artifacts(artifacts)  # checked before any shard is built
    first = load_artifact(manifests[0]).manifest
    for manifest in manifests:
        m = load_artifact(manifest).manifest
        made_from = ((m.provenance or {}).get("student") or {}).get("checkpoint_sha256")
        if made_from != meta["checkpoint_sha256"]:
            raise ConfigError(f"{manifest}: exported from student checkpoint sha256 {made_from}, not from --student "
                              f"({meta['checkpoint_sha256']}); give the artifacts of this student")
        if m.record_rule != first.record_rule:
            raise ConfigError(f"{manifest}: record_rule {m.record_rule!r} differs from the other manifests' "
                              f"{first.record_rule!r} ({manifests[0]}); agreement needs one decision rule")
    out.mkdir(parents=True, exist_ok=True)
    shards = resolve_shards(meta, data, out, progress)
    same = shards.resolve() == Path(meta["shards"]).resolve()
    thr = tuple(first.thresholds)  # the manifest's operating point and record rule, never re-chosen
    check_every_record_read(json.loads((shards / "dataset.json").read_text()), scored_splits(split, meta))
    data_ = load_release_data(student, shards=shards, seed=seed, split=split, short=short, thresholds=thr,
                              record_rule=first.record_rule)
    # the figures of distill.json / export.json are of the same records only on the same shards and splits
    same_records = same and split == "eval" and data_.short.n_padded == 0
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        entries = [_teacher(Path(teacher), shards, data_, seed, threads, latency_runs, log)] if teacher else []
        entries.append(_student(student, data_, threads, latency_runs))
        entries += _artifacts(artifacts, data_, threads, latency_runs, tflm, log)
    finally:
        torch.set_num_threads(saved)
    decision_metric = "challenge_f1" if _is_cinc(data_.labels) else "f1"
    groups, ids = _groups(shards, data_)  # a grouping the records never carry is None
    ref = next(e for e in entries if e.name == REFERENCE)
    models: dict[str, Any] = {}
    for e in entries:
        log(f"scoring {e.name}")
        scored = _score_entry(e, data_, None if e.role in ("teacher", "student") else ref, groups, n_boot,
                              decision_metric, ids)
        r = measure(*e.ram_probe) if ram and e.ram_probe else {"delta_bytes": None, "reason": "not measured (--no-ram)"}
        models[e.name] = {
            "role": e.role, "what": e.what, "runtime": e.runtime, "precision": e.precision, "leads": list(e.leads),
            "file": e.file, "sha256": e.sha256, "thresholds": [float(t) for t in e.thresholds], "size": e.size,
            "latency": e.latency,
            "ram": {"peak_rss_bytes": r.get("delta_bytes"), "what": r.get("what") or r.get("reason"),
                    **({"reason": r["reason"]} if r.get("reason") else {}),
                    "planned_bytes": e.planned[0] if e.planned else None,
                    "planned_what": e.planned[1] if e.planned else None},
            **scored}
    _, y = aggregate_by_record(data_.eval_y, data_.eval_records, "max")
    rule = data_.spec.record_rule
    notes = [f"Per record: window probabilities {'averaged' if rule == 'mean' else 'maxed (per label, the largest)'} "
             f"over each record's {data_.spec.preprocess.window_s:g} s windows (the manifest's record rule, "
             f"{rule!r}); a record is positive for a label when any of its windows is.",
             f"Student and artifacts decide at the manifest's thresholds ({data_.provenance['thresholds']}); the "
             "teacher at its own thresholds, chosen on the validation split by the same rule.",
             "Paired differences: the artifact minus the float student on the same bootstrap resamples of records.",
             "ECE: 10 equal-width bins per class, one-vs-rest. The plug-in ECE is biased upward, more so on "
             "resamples (its percentile interval can lie entirely above it), so the value shown is bias-corrected "
             "(2 x plug-in - median of the resamples) with the basic bootstrap interval (2 x plug-in - the "
             "percentiles), which always holds it; the plug-in value, which the reliability bins show, is in "
             "compare.json.",
             f"Latency: one window per call (batch 1), {threads} thread(s), median and 95th percentile of "
             f"{latency_runs} calls after 3 warm-up calls, measured in this run on {platform.machine()}."]
    if not same:
        notes.append(f"Compared on {shards}, not on the shards the student was trained on ({meta['shards']}); "
                     "thresholds are still the manifest's.")
    if split != "eval":
        notes.append(f"Split {split!r}: " + ("every record of the dataset, whatever split the hash gives it"
                     if split == "all" else f"the {split} split only") + f" (splits holding windows: "
                     f"{', '.join(data_.eval_splits) or 'none'}); "
                     "thresholds are the manifest's (chosen on the student's validation split), never chosen on "
                     "these records; the teacher's probe and thresholds also come from the student's training shards.")
    if same and split in ("all", "train"):
        notes.append("These records include those the student was trained on (the train split of its own shards): "
                     "their figures are optimistic.")
    sh = data_.short
    if sh.ids:
        notes.append(f"{len(sh.ids)} record(s) shorter than one {data_.spec.preprocess.window_s:g} s window: "
                     + ("each scored on one padded window: its samples normalised on their own, repeated from their "
                        "start up to the window"
                        if sh.policy == "pad" else "not scored, counted as 'too short' (n_records_too_short)") + ".")
    if not same_records and same:
        notes.append("Cross-checks against distill.json / export.json are left out: these are not the records "
                     "those commands scored.")
    if all(g is None for g in groups.values()):
        notes.append("Fairness gaps: this dataset's records carry no sex or age.")
    report = {
        "title": f"Quantized vs full precision: {data_.meta['encoder']['name']} on lead {data_.spec.leads[0]}, "
                 f"{json.loads((shards / 'dataset.json').read_text())['source']}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": json.loads((shards / "dataset.json").read_text())["source"], "shards": str(shards),
        "same_shards_as_training": same, "same_records_as_training": same_records, "split": split,
        "eval_splits": list(data_.eval_splits), "n_records": int(len(y)),
        "n_records_too_short": sh.n_too_short, "n_records_padded": sh.n_padded,
        "short_records": sh.summary(data_.spec.preprocess.window_s),
        "n_windows": int(len(data_.eval_x)), "labels": list(data_.labels), "multilabel": data_.multilabel,
        "decision_rule": "a label is present when its probability >= its threshold" if data_.multilabel
        else "one label per record: argmax(probability / threshold)",
        "decision_metric": decision_metric, "reference": REFERENCE, "n_boot": n_boot, "level": 0.95,
        "threads": threads, "models": models, "model_order": list(models), "notes": notes,
        "verdict": verdicts(models, REFERENCE, decision_metric),
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "versions": _versions()}}
    report["cross_checks"] = cross_checks(report, artifacts, student)
    write_json(out / "compare.json", report)
    from distill.report_html import write_html

    write_html(report, out / "compare.html")
    return report


# --------------------------------------------------------------------------- terminal

def _ci(entry: dict[str, Any] | None, signed: bool = False) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    ci = entry.get("ci")
    return f.format(entry["value"]) + (f" [{f.format(ci[0])}, {f.format(ci[1])}]" if ci else "")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per model: name, runtime, size, latency p50, RAM, macro AUROC, decision metric,
    paired AUROC difference vs the float student, record agreement, ECE."""
    dm = report["decision_metric"]
    rows = []
    order = [n for n in report.get("model_order", []) if n in report["models"]]
    for name in order + [n for n in report["models"] if n not in order]:
        m = report["models"][name]
        dec = m["metrics"]["decisions"].get("challenge_f1") if dm == "challenge_f1" else m["metrics"]["decisions"]["f1"]["macro"]
        pd = (m.get("paired_vs_reference") or {}).get("auroc")
        diff = _ci({"value": pd["difference"], "ci": pd["ci"]}, signed=True) if pd else "-"
        agree = m["metrics"].get("agreement")
        ram = m["ram"].get("peak_rss_bytes")
        rows.append([name, m["runtime"], f"{m['size']['bytes']:,}", f"{m['latency']['p50_ms']:.2f}",
                     f"{ram / 2**20:.1f}" if ram is not None else "n/a",
                     _ci(m["metrics"]["ranking"]["auroc"]["macro"]), _ci(dec), diff,
                     f"{agree['records']:.4f}" if agree else "-", _ci(m["calibration"]["macro"])])
    return rows


def print_table(report: dict[str, Any], file: Any = None) -> None:
    head = ["model", "runtime", "bytes", "p50 ms", "RAM MiB", "macro AUROC",
            {"f1": "macro F1", "challenge_f1": "challenge F1"}[report["decision_metric"]],
            "AUROC - fp32", "agreement", "ECE"]
    rows = table_rows(report)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print(f"{report['title']}: {report['n_records']} records, {report['n_windows']} windows "
          f"({'+'.join(report['eval_splits'])}), 95 % bootstrap CIs ({report['n_boot']} resamples)", file=file)
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) if i in (0, 1) else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))),
              file=file)
    verdict = report.get("verdict") or {}
    for name, v in (verdict.get("artifacts") or {}).items():
        ratio = lambda d: f"{d['ratio']:.2f}x" if d.get("ratio") is not None else "n/a"  # noqa: E731
        print(f"verdict {name}: {v['status']} ({v['reason']}); {report['decision_metric']} - fp32 "
              f"{_ci({'value': v['difference'], 'ci': v['ci']}, signed=True)}; size {ratio(v['size'])}, "
              f"latency {ratio(v['latency'])} of {verdict['reference']}", file=file)
    for name, m in report["models"].items():
        a = m.get("abstention")
        if a:
            at = a["at_band"]
            f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
            print(f"abstention {name}: bands {', '.join(f'{b:g}' for b in a['bands'])} (logit); coverage "
                  f"{f(at['coverage'])} ({at['kept']} of {at['of']}); accuracy kept {f(at['accuracy_kept'])} vs all "
                  f"{f(at['accuracy_all'])}; kept agreeing with {report['reference']} {f(at.get('agreement_kept'))}",
                  file=file)
    checks = report.get("cross_checks") or []
    if checks:
        bad = [c for c in checks if not c["equal"]]
        print(f"cross-checks against distill.json / export.json: {len(checks) - len(bad)} of {len(checks)} figures equal"
              + ("" if not bad else "; differ: " + ", ".join(c["figure"] for c in bad)), file=file)
