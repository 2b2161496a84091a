"""Where the int8 student's disagreements with its float model come from; prints one JSON object.

    python bench/int8_flips.py --cv DIR --shards DIR [--candidate I [J ...]] [--out FILE]

On the out-of-fold windows of an `ecg-edge cv` run (each fold's student of the chosen
configuration, or of `--candidate`, on its held-out fold: windows no step of that student trained
on), the float student's decisions (the cv's threshold rule and record rule; another candidate's
thresholds are that rule on its own out-of-fold record scores) against those of:

* "int8": the student quantized as it ships (PT2E PTQ, LiteRT int8, calibrated on the same 512
  windows of its training folds as `ecg-edge cv` draws) and run on LiteRT: the cv's own int8
  out-of-fold agreement, recomputed ("matches_cv" says whether it is the same figure);
* "input rounding": the float student on its windows rounded to the int8 model's input grid
  (the scale and zero point in the .tflite's manifest, clipped to int8): the int8 input is the
  only error;
* "int8 weights": the float student (BatchNorm folded, as exported) with every convolution and
  linear weight rounded to int8 per output channel (max-abs scale, [-127, 127], the quantizer's
  grid) and float activations;
* "int16 activations": PT2E with litert-torch's quantizer configuration but int16 activations
  (int8 weights, a "16x8" model), run as the PyTorch reference (no model file is written);
* "int8, float logits": the int8 reference (`convert_pt2e`, as the .tflite is converted from) with
  its last requantization, the int8 logits, removed.

Per variant: windows and records whose decision differs from the float student's (any label
counts), their share, and a Wilson 95 % interval of the record agreement (records are the
independent units; windows of one record are not, so the window share has no interval).
"input_grid", fold by fold: the .tflite's input scale and zero point, and the share of held-out
samples that land on the grid's ends (clipped).
With several candidates (`--candidate 0 1 2`, the same folds and records), one such object per
candidate under "candidates", and "paired": each candidate's record agreement of every variant
minus the first candidate's, with a paired bootstrap 95 % interval over records.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import emit  # noqa: E402  (bench/report.py, beside this script)


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """Wilson score interval of the proportion k / n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [(centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)]


def int8_weights(model: Any) -> Any:
    """A copy of `model` whose Conv / Linear weights sit on the int8 per-channel symmetric grid."""
    import torch

    m = copy.deepcopy(model)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
                w = mod.weight
                scale = (w.abs().flatten(1).max(dim=1).values.clamp(min=2 ** -12) / 127).view(-1, *[1] * (w.ndim - 1))
                w.copy_(torch.clamp(torch.round(w / scale), -127, 127) * scale)
    return m


def int16_quantizer() -> Any:
    """litert-torch's PT2EQuantizer configuration (per-channel symmetric int8 weights, histogram
    observers) with int16 activations."""
    import torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e.observer import HistogramObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    base = pq.get_symmetric_quantization_config(is_per_channel=True)
    act = QuantizationSpec(dtype=torch.int16, quant_min=-32768, quant_max=32767, qscheme=torch.per_tensor_symmetric,
                           observer_or_fake_quant_ctr=HistogramObserver.with_args(eps=2 ** -12))
    return pq.PT2EQuantizer().set_global(pq.QuantizationConfig(act, act, base.weight, base.bias, None))


def float_logits(reference: Any) -> Any:
    """The `convert_pt2e` reference with its output's last quantize / dequantize pair removed."""
    graph = reference.graph
    out = next(n for n in graph.nodes if n.op == "output")
    nested = isinstance(out.args[0], (tuple, list))
    dq = out.args[0][0] if nested else out.args[0]
    if "dequantize" not in str(dq.target) or "quantize" not in str(dq.args[0].target):
        raise RuntimeError(f"int8 reference: its output is {dq.target}, not a quantize / dequantize pair")
    out.args = ((dq.args[0].args[0],),) if nested else (dq.args[0].args[0],)
    graph.eliminate_dead_code()
    reference.recompile()
    return reference


def _run(module: Any, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))).numpy()
                               for i in range(0, len(x), batch)])


def measure(cv_dir: Path, shards: Path, candidate: int | None = None) -> dict[str, Any]:
    """The flips of one candidate (default: the chosen one); JSON-ready."""
    return _measure(cv_dir, shards, candidate)[0]


def paired_agreement(agree_a: np.ndarray, agree_b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Record agreement of B minus that of A on the same records, with a paired bootstrap 95 % CI."""
    a, b = np.asarray(agree_a, np.float64), np.asarray(agree_b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired_agreement: expected two equal-length 1-D arrays, got {a.shape} and {b.shape}")
    idx = np.random.default_rng(seed).integers(0, len(a), (n_boot, len(a)))
    diffs = (b - a)[idx].mean(axis=1)
    return {"difference": float((b - a).mean()), "ci": [float(v) for v in np.quantile(diffs, [0.025, 0.975])],
            "n_boot": n_boot}


def measure_candidates(cv_dir: Path, shards: Path, candidates: list[int]) -> dict[str, Any]:
    """`measure` of each candidate, and each one's agreement minus the first's (paired, per variant)."""
    runs = [_measure(cv_dir, shards, c) for c in candidates]
    first_res, first_agree = runs[0]
    paired = [{"candidate": res["candidate_index"], "against": first_res["candidate_index"],
               "variants": {k: paired_agreement(first_agree[k], agree[k]) for k in agree}}
              for res, agree in runs[1:]]
    return {"cv": str(cv_dir), "candidates": [res for res, _ in runs], "paired": paired}


def _measure(cv_dir: Path, shards: Path, candidate: int | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import torch

    from distill.crossval import N_CALIB, _int8_probs, candidate_configs, fold_of, group_key, thresholds_by_rule
    from distill.distill import _windows
    from distill.export import ExportSpec, pt2e_quantizer, prepare_model, quantize_pt2e
    from ecg_edge.config import PipelineConfig
    from edge_runtime.artifact import load_artifact
    from edge_runtime.backends import decide, probabilities
    from edge_runtime.config import load_toml
    from edge_runtime.errors import ConfigError
    from edge_runtime.signal import PreprocessConfig
    from train.data.shards import open_shards
    from train.loader import read_records
    from train.metrics import aggregate_by_record
    from train.models import create_model

    res_path = cv_dir / "cv.json"
    if not res_path.is_file():
        raise ConfigError(f"{res_path}: not found; expected the output folder of `ecg-edge cv`")
    res = json.loads(res_path.read_text())
    cfg = load_toml(cv_dir / "config.json", PipelineConfig)
    chosen = res["chosen"]
    configs = candidate_configs(cfg.distill, cfg.train, cfg.cv)
    ci = chosen["candidate"] if candidate is None else candidate
    if not 0 <= ci < len(configs):
        raise ConfigError(f"--candidate: {ci}; the cv at {cv_dir} has candidates 0 to {len(configs) - 1}")
    _, dcfg, tcfg = configs[ci]
    info, _ = open_shards(shards)
    labels, multilabel = tuple(info["label_names"]), bool(info["multilabel"])
    if info["source"] != res["dataset"] or list(labels) != res["labels"]:
        raise ConfigError(f"{shards}: shards of {info['source']} {list(labels)}; the cv ran on {res['dataset']} "
                          f"{res['labels']}")
    thresholds, record_rule = tuple(chosen["thresholds"]), chosen["record_rule"]
    if ci != chosen["candidate"]:  # the chosen threshold rule on this candidate's own OOF record scores
        with np.load(cv_dir / "oof.npz") as oof:
            thresholds = thresholds_by_rule(chosen["rule"], oof[f"fp32_candidate{ci}" + (
                "" if record_rule == "mean" else f"_{record_rule}")], oof["truth"], labels, multilabel)
    spec = ExportSpec(preprocess=PreprocessConfig(**info["preprocess"]), leads=(dcfg.lead,), labels=labels,
                      multilabel=multilabel, thresholds=thresholds, record_rule=record_rule)
    x, _, rows, _ = _windows(shards, tuple(res["pool"]), (dcfg.lead,))
    x = np.ascontiguousarray(x[:, :, None, :], dtype=np.float32)  # (n, 1, 1, T): the student's input
    records = read_records(shards)
    rec_ids = np.unique(rows)
    rec_fold = fold_of([group_key(records[int(r)]) for r in rec_ids], res["folds"])
    win_fold = rec_fold[np.searchsorted(rec_ids, rows)]
    names = ("int8", "input rounding", "int8 weights", "int16 activations", "int8, float logits")
    probs = {k: np.zeros((len(x), len(labels)), np.float32) for k in ("float", *names)}
    rng = np.random.default_rng(tcfg.seed)  # the calibration windows `ecg-edge cv` drew, fold by fold
    grids = []
    for f in range(res["folds"]):
        held = win_fold == f
        path = cv_dir / "folds" / f"candidate{ci}" / f"fold{f}" / "checkpoint.pt"
        if not path.is_file():
            raise ConfigError(f"{path}: not found; the cv run's fold students are needed")
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        student = create_model(dcfg.student, leads=(dcfg.lead,), n_classes=len(labels), window=x.shape[-1],
                               **dcfg.student_args)
        student.load_state_dict({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")})
        student.eval()
        train_idx = np.flatnonzero(~held)
        calib = x[np.sort(rng.choice(train_idx, min(N_CALIB, len(train_idx)), replace=False))]
        xh = x[held]
        probs["float"][held] = probabilities(_run(student, xh), multilabel)
        with tempfile.TemporaryDirectory() as tmp:
            probs["int8"][held] = _int8_probs(student, spec, calib, xh, Path(tmp))
            inp = load_artifact(Path(tmp) / "manifest.json").manifest.input
        q = np.clip(np.round(xh / inp.scale) + inp.zero_point, -128, 127)
        grids.append({"fold": f, "scale": float(inp.scale), "zero_point": int(inp.zero_point),
                      "clipped_samples": float(np.mean((q == -128) | (q == 127)))})
        m = prepare_model(student, spec)
        probs["input rounding"][held] = probabilities(_run(m, ((q - inp.zero_point) * inp.scale).astype(np.float32)),
                                                      multilabel)
        probs["int8 weights"][held] = probabilities(_run(int8_weights(m), xh), multilabel)
        probs["int16 activations"][held] = probabilities(
            _run(quantize_pt2e(m, spec, int16_quantizer(), calib, fold_quantize=False), xh), multilabel)
        ref = quantize_pt2e(m, spec, pt2e_quantizer("litert"), calib, fold_quantize=False)
        probs["int8, float logits"][held] = probabilities(_run(float_logits(ref), xh), multilabel)

    def decisions(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return decide(p, thresholds, multilabel), decide(aggregate_by_record(p, rows, record_rule)[1], thresholds,
                                                         multilabel)

    ref_w, ref_r = decisions(probs["float"])
    variants, agree = {}, {}
    for k in names:
        w, r = decisions(probs[k])
        agree[k] = ~(r != ref_r).any(axis=1)
        dw, dr = int((w != ref_w).any(axis=1).sum()), int((r != ref_r).any(axis=1).sum())
        variants[k] = {"windows_differ": dw, "window_agreement": 1 - dw / len(w), "records_differ": dr,
                       "record_agreement": 1 - dr / len(r), "record_agreement_ci": wilson(len(r) - dr, len(r))}
    # the cv quantized only its chosen candidate: only that one has a cv figure to match
    cv_int8 = (res.get("int8") or {}).get("agreement_records") if ci == chosen["candidate"] else None
    result = {"cv": str(cv_dir), "dataset": res["dataset"], "candidate": res["candidates"][ci]["what"],
              "candidate_index": ci, "chosen": ci == chosen["candidate"], "folds": res["folds"],
              "record_rule": record_rule, "thresholds": [float(t) for t in thresholds], "windows": int(len(x)),
              "records": int(len(rec_ids)), "input_grid": grids, "variants": variants,
              "cv_int8_agreement_records": cv_int8,
              "matches_cv": None if cv_int8 is None else bool(abs(variants["int8"]["record_agreement"] - cv_int8) < 1e-9)}
    return result, agree


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cv", type=Path, required=True, help="an `ecg-edge cv` output folder (cv.json, config.json, folds/)")
    p.add_argument("--shards", type=Path, required=True, help="the shards the cv ran on")
    p.add_argument("--candidate", type=int, nargs="+", metavar="I",
                   help="the cv candidate(s) to measure (default: the chosen one); several: also their paired "
                        "agreement differences against the first")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    if a.candidate and len(a.candidate) > 1:
        return emit(measure_candidates(a.cv, a.shards, a.candidate), a.out)
    return emit(measure(a.cv, a.shards, a.candidate[0] if a.candidate else None), a.out)


if __name__ == "__main__":
    sys.exit(main())
