"""From a student checkpoint to verified runtime artifacts: `ecg-edge quantize` and `ecg-edge export`.

Everything starts from a checkpoint written by `ecg-edge distill` (its meta names the shards, the
lead, the labels, the preprocessing and the teacher) and the shards it was trained on:

* calibration windows: `n_calib` windows of the train split (seeded choice), real preprocessed
  windows, never random tensors;
* decision thresholds: those of the checkpoint's `decision` where `ecg-edge cv` chose them (with
  the abstention bands and the record rule) on out-of-fold scores of the training records;
  otherwise chosen on the
  validation split with the float student: Youden's J per label
  for multi-label heads (a label is present when its probability >= its threshold); for
  single-label heads one threshold per label maximising the validation records' challenge F1
  (CinC 2017) or macro F1 of the decision argmax(probability / threshold)
  (`single_label_thresholds`). The same thresholds go into every artifact's manifest, so fp32 and
  int8 are compared at one operating point;
* parity windows: up to `n_parity` windows of the validation split;
* scoring: the student's evaluation splits (`[distill] eval_splits`: PTB-XL folds 9-10, the CinC
  2017 test part), each artifact run on its real runtime (`edge_runtime.backends.open_backend`),
  window probabilities made record probabilities by the record rule (`Manifest.record_rule`: their
  mean, or their max where `ecg-edge cv` chose it).

Quantization methods (`METHODS`): "ptq" (PT2E post-training, one quantizer per runtime: XNNPACK
for the .pte, litert-torch for the .tflite), "qat" (PT2E `prepare_qat_pt2e`, a short fine-tune with
the float student's logits as soft targets, then the same lowering) and "brevitas" (Brevitas QAT,
exported as QCDQ ONNX for ONNX Runtime). Every artifact passes `distill.parity.check_parity`
against its PyTorch reference on the parity windows, or the command fails naming the file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from distill.config import SHORT_CHOICES, SPLIT_CHOICES
from edge_runtime.errors import ConfigError
from train.engine import predict

METHODS = ("ptq", "qat", "brevitas")
#: artifact folder names: <format>-<precision>
FP32_FORMATS = ("pte-fp32", "tflite-fp32", "onnx-fp32")
INT8_FORMATS = {"ptq": ("pte-int8", "tflite-int8"), "qat": ("pte-int8", "tflite-int8"), "brevitas": ("onnx-int8",)}
#: Brevitas QCDQ ONNX vs the Brevitas module, in logits. Both compute in float between quantizers,
#: so they agree to ~1e-6 except where a value lands on a rounding boundary and one activation
#: rounds one step apart (distill/brevitas_qat.py: 0.017 on the logits once in 100 windows).
BREVITAS_TOLERANCE = 0.1
#: Golden windows bundled into each .bpte.
N_GOLDEN = 8


@dataclass
class ShortRecords:
    """The records of the scored splits that are shorter than one window (the shard builder keeps
    no window of them, `dataset.json` "skipped" lists them `too_short`).

    policy "pad": each is scored on its one padded window, as record row `rows[i]` of the
    evaluation windows (rows after those of records.jsonl); `x` holds that window on every lead of
    the shards (`leads`) for models of other leads (the teacher), `y` its targets. policy
    "too-short": none is scored; each is counted as the "too short" outcome."""

    policy: str
    ids: tuple[str, ...] = ()
    durations_s: tuple[float, ...] = ()
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    leads: tuple[str, ...] = ()
    metas: tuple[dict[str, Any], ...] = ()

    @property
    def n_padded(self) -> int:
        return len(self.ids) if self.policy == "pad" else 0

    @property
    def n_too_short(self) -> int:
        return len(self.ids) if self.policy == "too-short" else 0

    def records(self) -> list[dict[str, Any]]:
        """records.jsonl-like rows (id, meta) of the padded records, in `rows` order."""
        return [{"id": i, "meta": m} for i, m in zip(self.ids, self.metas)] if self.n_padded else []

    def summary(self, window_s: float) -> dict[str, Any]:
        what = (f"scored on one {window_s:g} s window: their samples, normalised on their own, repeated from "
                "their start up to the window (edge_runtime.signal.Windower.pad_tail)"
                if self.policy == "pad" else "not scored: the explicit 'too short' outcome, counted here")
        return {"policy": self.policy, "n_records_padded": self.n_padded, "n_records_too_short": self.n_too_short,
                "ids": list(self.ids), "durations_s": list(self.durations_s),
                "what": f"records shorter than one {window_s:g} s window: {what}"}


@dataclass
class ReleaseData:
    """A student, its export spec and the real windows quantization and scoring use."""

    student: nn.Module
    meta: dict[str, Any]
    spec: Any  # distill.export.ExportSpec
    calib: np.ndarray
    fit_x: np.ndarray
    fit_y: np.ndarray
    parity_x: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray
    eval_records: np.ndarray
    eval_splits: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    short: ShortRecords = field(default_factory=lambda: ShortRecords("too-short"))

    @property
    def multilabel(self) -> bool:
        return bool(self.spec.multilabel)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels


def _student_windows(shards: Path, split: str, lead: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows (n, 1, 1, T) float32, targets (n, K), record rows) of one split, the student's lead."""
    from train.loader import WindowSet

    ws = WindowSet(shards, split, (lead,))
    if not len(ws):
        raise ConfigError(f"{shards}: split {split!r} holds no windows")
    x = np.concatenate(list(ws.split.windows()))[:, ws._channels]
    return np.ascontiguousarray(x[:, :, None, :], dtype=np.float32), ws.targets, ws.record_rows


def _choose(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, k), replace=False))


#: Batch of the student's torch passes (`train.engine.predict`).
BATCH = 512


def scored_splits(split: str, meta: dict[str, Any]) -> tuple[str, ...]:
    """The splits `--split` names: "eval" the student's evaluation splits (`[distill] eval_splits`),
    "all" every split (every record of the dataset), else that one split."""
    from train.data.sources import SPLITS

    if split not in SPLIT_CHOICES:
        raise ConfigError(f"compare.split: expected one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if split == "eval":
        return tuple((meta.get("distill") or {}).get("eval_splits") or ("val", "test"))
    return SPLITS if split == "all" else (split,)


def check_every_record_read(info: dict[str, Any], splits: tuple[str, ...]) -> None:
    """A `ConfigError` naming the first record of `splits` that the shard builder skipped for another
    reason than being shorter than one window (listed in the labels but missing or unreadable):
    external evaluation scores or counts every listed record."""
    from train.data.shards import is_too_short

    bad = [s for s in info.get("skipped") or [] if s["split"] in splits and not is_too_short(s)]
    if bad:
        raise ConfigError(f"{info['source']}: record {bad[0]['id']} ({bad[0]['split']} split) is listed but was "
                          f"not read: {bad[0]['reason']}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def short_records(shards: Path, info: dict[str, Any], splits: tuple[str, ...], policy: str) -> ShortRecords:
    """The records of `splits` shorter than one window (`ShortRecords`); with "pad" each read again
    and preprocessed as the shards were, padded to one window."""
    from edge_runtime.signal import PreprocessConfig
    from train.data.shards import is_too_short, padded_records
    from train.data.sources import DataConfig
    from train.loader import read_records

    if policy not in SHORT_CHOICES:
        raise ConfigError(f"compare.short: expected one of {', '.join(SHORT_CHOICES)}, got {policy!r}")
    skipped = [s for s in info.get("skipped") or [] if s["split"] in splits and is_too_short(s)]
    ids = tuple(s["id"] for s in skipped)
    durations = tuple(float(s.get("duration_s", float("nan"))) for s in skipped)
    if policy == "too-short" or not ids:
        return ShortRecords(policy, ids, durations)
    res = padded_records(DataConfig(**info["data"]), PreprocessConfig(**info["preprocess"]), ids)
    first = len(read_records(shards))
    return ShortRecords(policy, ids, durations, np.arange(first, first + len(res), dtype=np.int64),
                        np.concatenate([r["windows"].data for r in res]), np.concatenate([r["targets"] for r in res]),
                        tuple(info["spec"]["leads"]), tuple(r["meta"] or {} for r in res))


def _eval_windows(shards: Path, splits: tuple[str, ...], lead: str, every: bool,
                  short: ShortRecords) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """The student's windows of `splits` (with `every`, splits holding none are left out), the
    padded short records' windows after them, and the splits read."""
    from train.data.shards import open_shards

    _, present = open_shards(shards)
    use = [s for s in splits if not every or (s in present and len(present[s]))]
    if not use and not short.n_padded:
        raise ConfigError(f"{shards}: no windows in split(s) {', '.join(splits)}")
    parts = [_student_windows(shards, s, lead) for s in use]
    if short.n_padded:
        k = short.leads.index(lead)
        parts.append((np.ascontiguousarray(short.x[:, k:k + 1, None, :], dtype=np.float32), short.y, short.rows))
    x, y, r = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return x, y, r, tuple(use)


def load_release_data(checkpoint: str | Path, *, fs_device: float | None = None, n_calib: int = 512,
                      n_fit: int = 4096, n_parity: int = 512, seed: int = 0,
                      shards: str | Path | None = None, split: str = "eval", short: str = "too-short",
                      thresholds: tuple[float, ...] | None = None, record_rule: str | None = None) -> ReleaseData:
    """Load a student checkpoint and the windows of its shards, or of `shards` built with the same
    preprocessing and labels (module docstring). `split`: the splits scored (`scored_splits`);
    `short`: what records shorter than one window get (`short_records`). With `thresholds` (the
    manifest's: `ecg-edge compare`) nothing is chosen, so no train or validation window is read and
    calib / fit / parity are empty; `record_rule` is then the manifest's too. Otherwise thresholds,
    bands and record rule are the checkpoint's `decision` (`ecg-edge cv`), or thresholds chosen on
    the validation split with the "mean" record rule."""
    from distill.distill import load_student
    from distill.export import ExportSpec
    from edge_runtime.backends import probabilities
    from edge_runtime.signal import PreprocessConfig
    from train.data.shards import open_shards
    from train.metrics import operating_thresholds

    student, meta = load_student(checkpoint)
    shards = Path(meta["shards"] if shards is None else shards)
    if not (shards / "dataset.json").is_file():
        raise ConfigError(f"{shards}: the shards this student was trained on are gone (dataset.json not found); "
                          "rebuild them with `ecg-edge data` and the student's config")
    info, _ = open_shards(shards)
    lead = meta["spec"]["leads"][0]
    labels, multilabel = tuple(meta["label_names"]), bool(meta["multilabel"])
    splits = scored_splits(split, meta)
    shorts = short_records(shards, info, splits, short)
    eval_x, eval_y, eval_r, splits = _eval_windows(shards, splits, lead, split == "all", shorts)
    empty = np.empty((0, *eval_x.shape[1:]), np.float32)
    decision = meta.get("decision") or None  # chosen by `ecg-edge cv` on out-of-fold scores
    abstain = None
    rule = record_rule or (decision or {}).get("record_rule") or "mean"
    if thresholds is not None:
        x_tr = x_val = empty
        y_tr = np.empty((0, len(labels)), np.float32)
    else:
        x_tr, y_tr, _ = _student_windows(shards, "train", lead)
        x_val, y_val, r_val = _student_windows(shards, "val", lead)
        if decision is not None:
            thresholds = tuple(float(t) for t in decision["thresholds"])
            abstain = tuple(decision["abstain"]) if decision.get("abstain") is not None else None
        else:
            p_val = probabilities(predict(student, x_val, batch_size=BATCH), multilabel)
            thresholds = tuple(float(t) if np.isfinite(t) else 0.5 for t in operating_thresholds(y_val, p_val, "youden")) \
                if multilabel else single_label_thresholds(p_val, y_val, r_val, labels)
    if fs_device is None:  # the rate the dataset was recorded at: its filter design goes into the manifest
        designs = sorted(float(k) for k in (info.get("filter_designs") or {}))
        fs_device = designs[0] if len(designs) == 1 else None
    calib_idx = _choose(len(x_tr), n_calib, seed)
    fit_idx = _choose(len(x_tr), n_fit, seed + 1)
    ckpt_sha = meta["checkpoint_sha256"]
    provenance = {
        "student": {"checkpoint_sha256": ckpt_sha, "model": meta["encoder"]["name"], "objective": meta["objective"]},
        "teacher": meta.get("teacher"), "data_sha256": meta["data_hash"], "dataset": info["source"],
        "thresholds": decision["how"] if decision is not None
        else "Youden's J per label on the validation split (float student)" if multilabel
        else "per label on the validation records (float student), maximising the "
             + ("CinC 2017 challenge F1" if _is_cinc(labels) else "macro F1")
             + " of the decision argmax(probability / threshold)",
    }
    if abstain is not None:
        provenance["abstain"] = decision.get("abstain_how")
    spec = ExportSpec(preprocess=PreprocessConfig(**info["preprocess"]), leads=(lead,), labels=labels,
                      multilabel=multilabel, thresholds=tuple(thresholds), fs_device=fs_device, provenance=provenance,
                      abstain=abstain, record_rule=rule)
    return ReleaseData(student=student, meta=meta, spec=spec, calib=x_tr[calib_idx], fit_x=x_tr[fit_idx],
                       fit_y=y_tr[fit_idx].astype(np.float32), parity_x=x_val[_choose(len(x_val), n_parity, seed)],
                       eval_x=eval_x, eval_y=eval_y, eval_records=eval_r, eval_splits=splits, provenance=provenance,
                       short=shorts)


def _is_cinc(labels: tuple[str, ...]) -> bool:
    from train.metrics import CHALLENGE_2017

    return all(c in labels for c in CHALLENGE_2017)


def single_label_thresholds(probs: np.ndarray, y: np.ndarray, records: np.ndarray, labels: tuple[str, ...],
                            rounds: int = 3, record_rule: str = "mean") -> tuple[float, ...]:
    """Per-label thresholds for a single-label head, chosen on validation records: coordinate ascent
    over a 0.05..0.95 grid (start 0.5 each, ties keep the current value) of the record-level
    challenge F1 (CinC 2017 labels) or macro F1 of the decision argmax(p / t)
    (`edge_runtime.backends.decide`) of the records' probabilities by `record_rule`."""
    from edge_runtime.backends import decide
    from train.metrics import CHALLENGE_2017, aggregate_by_record

    _, p = aggregate_by_record(probs, records, record_rule)
    _, t = aggregate_by_record(y, records, "max")
    truth = np.eye(len(labels), dtype=bool)[t.argmax(axis=1)]
    scored = [labels.index(c) for c in CHALLENGE_2017] if _is_cinc(labels) else list(range(len(labels)))

    def f1(th: np.ndarray) -> float:
        pred = decide(p, th, False)[:, scored]
        tp, denom = (pred & truth[:, scored]).sum(axis=0), pred.sum(axis=0) + truth[:, scored].sum(axis=0)
        return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))

    th = np.full(len(labels), 0.5)
    best = f1(th)
    grid = np.round(np.linspace(0.05, 0.95, 19), 2)
    for _ in range(rounds):
        changed = False
        for k in range(len(labels)):
            for g in grid:
                trial = th.copy()
                trial[k] = g
                score = f1(trial)
                if score > best + 1e-12:
                    th, best, changed = trial, score, True
        if not changed:
            break
    return tuple(float(v) for v in th)


# --------------------------------------------------------------------------- scoring

def score(probs: np.ndarray, data: ReleaseData, n_boot: int = 1000, reference: np.ndarray | None = None,
          thresholds: tuple[float, ...] | None = None) -> dict[str, Any]:
    """`train.metrics.score_records` of window probabilities on the evaluation windows: per-record
    ranking and decision scores at `thresholds` (None: the manifest's) with the manifest's record
    rule, and with `reference` (the float student's window probabilities) decision agreement per
    window and per record."""
    from train.metrics import score_records

    return score_records(probs, data.eval_y, data.eval_records, data.labels, n_boot=n_boot, multilabel=data.multilabel,
                         thresholds=data.spec.thresholds if thresholds is None else thresholds, reference=reference,
                         record_rule=data.spec.record_rule)


def run_artifact(manifest: str | Path, x: np.ndarray, threads: int = 1) -> tuple[np.ndarray, float]:
    """Window probabilities of an artifact on its own runtime, and the run's seconds per window."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.backends import open_backend

    backend = open_backend(load_artifact(manifest), threads=threads)
    t0 = time.perf_counter()
    logits = backend.run(x)
    return backend.probabilities(logits), (time.perf_counter() - t0) / max(len(x), 1)


# --------------------------------------------------------------------------- building artifacts

@dataclass
class Built:
    """One artifact folder, the PyTorch module it must reproduce and the parity tolerance to use."""

    name: str
    manifest: Path
    reference: nn.Module
    tolerance: float | None = None


def _golden(data: ReleaseData) -> np.ndarray:
    return data.parity_x[:N_GOLDEN]


def build_fp32(data: ReleaseData, out: Path, formats: tuple[str, ...] = FP32_FORMATS) -> list[Built]:
    from distill.export import export_bpte, export_onnx, export_tflite

    built = []
    for name in formats:
        folder = out / name
        if name == "pte-fp32":
            e = export_bpte(data.student, data.spec, folder, _golden(data), "fp32")
        elif name == "tflite-fp32":
            e = export_tflite(data.student, data.spec, folder, "fp32")
        elif name == "onnx-fp32":
            e = export_onnx(data.student, data.spec, folder)
        else:
            raise ConfigError(f"formats: unknown fp32 format {name!r}; expected one of {FP32_FORMATS}")
        built.append(Built(name, e.manifest, e.reference))
    return built


def build_int8(data: ReleaseData, out: Path, method: str = "ptq", *, qat_epochs: int = 2, qat_lr: float = 1e-4,
               log: Callable[[str], None] = print, embedded: Embedded | None = None) -> list[Built]:
    """The int8 artifacts of one quantization method (module docstring); `embedded` compiles the
    first int8 .pte / .tflite of a release for its embedded targets, into their manifests."""
    from distill.export import export_bpte, export_tflite, prepare_model, pt2e_quantizer

    if method not in METHODS:
        raise ConfigError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "brevitas":
        return [_build_brevitas(data, out, qat_epochs, qat_lr, log)]
    how = {"quantization": method, "calibration": f"{len(data.calib)} train-split windows (seeded choice)"}
    cortex_m = embedded.cortex_m(data, out / "pte-int8") if embedded else {}
    ethos_u = embedded.ethos_u if embedded else None
    if method == "ptq":
        pte = export_bpte(data.student, data.spec, out / "pte-int8", _golden(data), "int8", calib=data.calib,
                          provenance=cortex_m)
        tfl = export_tflite(data.student, data.spec, out / "tflite-int8", "int8", calib=data.calib,
                            provenance=how, compiler=ethos_u)
        return [Built("pte-int8", pte.manifest, pte.reference), Built("tflite-int8", tfl.manifest, tfl.reference)]
    # QAT: one fine-tune under XNNPACK's fake quantization, the float student's logits as soft
    # targets. The .pte lowers its convert_pt2e module. litert-torch 0.10's QAT annotation fails
    # under torchao 0.18 (it hands torch.export a function), so the .tflite takes the same
    # fine-tuned weights (the int8 scheme is the same: per-channel symmetric weights, int8
    # activations) and calibrates its ranges with litert-torch's quantizer on `calib`.
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from distill.export import qat_finetune_pt2e, quantize_pt2e, with_weights_of
    float_model = prepare_model(data.student, data.spec)
    soft = predict(float_model, data.fit_x, batch_size=BATCH)
    how |= {"qat": f"prepare_qat_pt2e (XNNPACKQuantizer), {qat_epochs} epochs at lr {qat_lr:g} on "
                   f"{len(data.fit_x)} train-split windows, labels + the float student's logits (T = 2, weight 0.5)"}
    log(f"QAT: {qat_epochs} epochs on {len(data.fit_x)} windows")
    prepared = qat_finetune_pt2e(float_model, data.spec, pt2e_quantizer("executorch", qat=True), data.calib,
                                 data.fit_x, data.fit_y, multilabel=data.multilabel, epochs=qat_epochs, lr=qat_lr,
                                 teacher_logits=soft)
    tuned = with_weights_of(prepared, float_model)
    pte = export_bpte(convert_pt2e(prepared), data.spec, out / "pte-int8", _golden(data), "int8",
                      provenance=how | cortex_m)
    ref = quantize_pt2e(tuned, data.spec, pt2e_quantizer("litert"), data.calib, fold_quantize=False)
    tfl = export_tflite(ref, data.spec, out / "tflite-int8", "int8", compiler=ethos_u, provenance=how | {
        "qat_tflite": "the QAT-tuned weights, ranges calibrated by litert-torch's PT2EQuantizer"})
    return [Built("pte-int8", pte.manifest, pte.reference), Built("tflite-int8", tfl.manifest, tfl.reference)]


class _PlainLogits(nn.Module):
    """A Brevitas model's QuantTensor output as a plain tensor (what ONNX Runtime returns)."""

    def __init__(self, qmodel: nn.Module) -> None:
        super().__init__()
        self.qmodel = qmodel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from distill.brevitas_qat import _value

        return _value(self.qmodel(x))


def _build_brevitas(data: ReleaseData, out: Path, epochs: int, lr: float, log: Callable[[str], None]) -> Built:
    from distill.brevitas_qat import calibrate, export_qcdq_onnx, qat_finetune, to_brevitas
    from distill.export import prepare_model, write_model_artifact
    from edge_runtime.artifact import TensorSpec

    float_model = prepare_model(data.student, data.spec)
    soft = predict(float_model, data.fit_x, batch_size=BATCH)
    log(f"Brevitas QAT: {epochs} epochs on {len(data.fit_x)} windows")
    q = calibrate(to_brevitas(data.student), data.calib)
    q = qat_finetune(q, data.fit_x, data.fit_y, multilabel=data.multilabel, epochs=epochs, lr=lr,
                     teacher_logits=soft)
    folder = out / "onnx-int8"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = export_qcdq_onnx(q, data.calib[:1], folder / "export.onnx.tmp")
    try:
        blob = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    shape = (-1, *data.spec.input_shape)
    manifest = write_model_artifact(
        blob, data.spec, folder, runtime="onnxruntime", precision="int8",
        input=TensorSpec("x", shape), output=TensorSpec("logits", (-1, len(data.labels))),
        provenance={"export": "Brevitas QAT -> QCDQ ONNX (opset 13)", "quantization": "brevitas",
                    "calibration": f"{len(data.calib)} train-split windows (seeded choice)",
                    "qat": f"{epochs} epochs at lr {lr:g} on {len(data.fit_x)} train-split windows, labels + "
                           "the float student's logits (T = 2, weight 0.5)"},
        versions=("brevitas", "onnx"), model=data.student)
    return Built("onnx-int8", manifest, _PlainLogits(q).eval(), tolerance=BREVITAS_TOLERANCE)


@dataclass
class Embedded:
    """The embedded compilers of one release: Vela (ethos-u55-128) on its first int8 .tflite and
    the Cortex-M (CMSIS-NN, cortex-m55) lowering of the int8 student into its first int8 .pte
    folder, each run while that artifact is built so that its provenance is in the manifest the
    export writes (once). `vela` is the compiler (`firmware_bridge.bundle.vela.vela_compile`,
    handed in by the composition root: Vela belongs to the wearable side); None skips it.
    `results`: what each target reported, by target name (the summary's "embedded")."""

    vela: Callable[..., dict[str, Any]] | None = None
    log: Callable[[str], None] = print
    results: dict[str, Any] = field(default_factory=dict)

    def ethos_u(self, model_file: Path) -> dict[str, Any]:
        """Vela on the .tflite in its artifact folder (the first one only): {"ethos_u": figures}."""
        if self.vela is None or "ethos-u55-128" in self.results:
            return {}
        folder = model_file.parent
        self.log("Vela: ethos-u55-128")
        v = self.vela(model_file, folder / "vela", "ethos-u55-128")
        v = {k: (str(Path(val).relative_to(folder)) if isinstance(val, Path) else val) for k, val in v.items()}
        self.results["ethos-u55-128"] = v
        return {"ethos_u": v}

    def cortex_m(self, data: ReleaseData, folder: Path) -> dict[str, Any]:
        """The student lowered to FOLDER/cortex-m55.pte (the first folder only): {"cortex_m": report}."""
        from distill.embedded import cortex_m_lower
        from edge_runtime.provenance import sha256_of

        if "cortex-m55" in self.results:
            return {}
        self.log("Cortex-M: CMSIS-NN lowering (cortex-m55)")
        folder.mkdir(parents=True, exist_ok=True)
        example = torch.from_numpy(data.calib[:1].copy())
        c = cortex_m_lower(data.student, example, torch.from_numpy(data.calib.copy()), out=folder / "cortex-m55.pte")
        c = {k: v for k, v in c.items() if k not in ("reference",)}
        c["path"] = "cortex-m55.pte"
        c["sha256"] = sha256_of(folder / "cortex-m55.pte")
        self.results["cortex-m55"] = c
        return {"cortex_m": c}

    def summary(self) -> dict[str, Any]:
        return {k: self.results[k] for k in ("ethos-u55-128", "cortex-m55") if k in self.results}


# --------------------------------------------------------------------------- the jobs

def verify_and_score(built: list[Built], data: ReleaseData, *, n_boot: int = 1000, threads: int = 1,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Parity (raises on failure) and per-record scores of every artifact, beside the float student."""
    from distill.parity import check_parity
    from edge_runtime.artifact import load_artifact
    from edge_runtime.backends import probabilities

    ref_probs = probabilities(predict(data.student, data.eval_x, batch_size=BATCH), data.multilabel)
    results: dict[str, Any] = {"pytorch-fp32": {"what": "the float student in PyTorch (eager)",
                                                "metrics": score(ref_probs, data, n_boot)}}
    for b in built:
        parity = check_parity(b.manifest, b.reference, data.parity_x, tolerance=b.tolerance, threads=threads)
        probs, sec = run_artifact(b.manifest, data.eval_x, threads=threads)
        art = load_artifact(b.manifest)
        m = art.manifest
        results[b.name] = {"manifest": str(b.manifest), "runtime": m.runtime, "precision": m.precision,
                           "model_bytes": art.model_path.stat().st_size, "sha256": m.sha256, "parity": parity,
                           "seconds_per_window": sec, "metrics": score(probs, data, n_boot, reference=ref_probs)}
        a = results[b.name]["metrics"]["agreement"]
        log(f"{b.name:12s} parity max |diff| {parity['max_abs_diff']:.3g} (tol {parity['tolerance']:.3g}), "
            f"agreement vs fp32 student: {a['records']:.4f} of records, {a['windows']:.4f} of windows")
    return results


def release(checkpoint: str | Path, out: str | Path, *, methods: tuple[str, ...] = ("ptq",),
            fp32: bool = True, embedded: bool = True, fs_device: float | None = None, qat_epochs: int = 2,
            qat_lr: float = 1e-4, n_boot: int = 1000, threads: int = 1, summary_name: str = "export.json",
            log: Callable[[str], None] = print, vela: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Export fp32 artifacts and/or int8 ones of each method into OUT/<format>-<precision>[-<method>],
    run the embedded compilers while building (`vela`: see `Embedded`), check parity, score them;
    write OUT/<summary_name>.

    Folders: OUT/pte-fp32, tflite-fp32, onnx-fp32; OUT/pte-int8 and tflite-int8 (ptq or qat; both
    together go to OUT/ptq/... and OUT/qat/...); OUT/onnx-int8 (brevitas). OUT/golden.npy holds the
    float32 windows bundled into every .bpte (vendor packages reuse them as golden inputs).
    """
    from edge_runtime.config import write_json

    out = Path(out)
    data = load_release_data(checkpoint, fs_device=fs_device)
    log(f"{data.meta['encoder']['name']} on lead {data.spec.leads[0]}: {len(data.calib)} calibration windows, "
        f"{len(data.parity_x)} parity windows, {len(data.eval_x)} evaluation windows "
        f"({'+'.join(data.eval_splits)})")
    if not methods and not fp32:
        raise ConfigError("nothing to export: no quantization method and no fp32 formats")
    bad = [m for m in methods if m not in METHODS]
    if bad or len(set(methods)) != len(methods):
        raise ConfigError(f"methods: expected distinct names from {METHODS}, got {list(methods)}")
    out.mkdir(parents=True, exist_ok=True)
    golden = out / "golden.npy"  # the windows every .bpte bundles; vendor packages reuse them
    np.save(golden, _golden(data))
    built: list[Built] = build_fp32(data, out) if fp32 else []
    clash = "ptq" in methods and "qat" in methods  # both make pte-int8 and tflite-int8
    targets = Embedded(vela, log) if embedded else None
    for method in methods:
        sub = out / method if clash and method != "brevitas" else out
        for b in build_int8(data, sub, method, qat_epochs=qat_epochs, qat_lr=qat_lr, log=log, embedded=targets):
            b.name = f"{b.name}-{method}" if clash and method != "brevitas" else b.name
            built.append(b)
    summary: dict[str, Any] = {
        "checkpoint": str(checkpoint), "student": data.meta["encoder"]["name"], "lead": data.spec.leads[0],
        "labels": list(data.labels), "multilabel": data.multilabel, "thresholds": data.spec.thresholds,
        "eval_splits": list(data.eval_splits), "dataset": data.provenance["dataset"], "methods": list(methods),
        "short_records": data.short.summary(data.spec.preprocess.window_s),
        "golden_inputs": {"file": golden.name, "shape": list(_golden(data).shape),
                          "what": "preprocessed float32 validation windows (n, leads, 1, window)"},
        "artifacts": verify_and_score(built, data, n_boot=n_boot, threads=threads, log=log)}
    if targets is not None:
        summary["embedded"] = targets.summary()
    write_json(out / summary_name, summary)
    return summary


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Terminal table rows: artifact, runtime, bytes, macro AUROC, the decision score, agreement."""
    from train.evaluate import fmt_ci

    rows = []
    for name, a in summary["artifacts"].items():
        m = a["metrics"]
        dec = m["decisions"].get("challenge_f1") or m["decisions"]["f1"]["macro"]
        agree = m.get("agreement")
        rows.append([name, a.get("runtime", "torch"), str(a.get("model_bytes", "")),
                     fmt_ci(m["ranking"]["auroc"]["macro"]), fmt_ci(dec),
                     f"{agree['records']:.4f}" if agree else "-"])
    return rows
