"""Records shorter than one window: padded, or the "too short" outcome? Prints one JSON object.

    python bench/short_records.py --artifact DIR/manifest.json --shards DIR [--split test]
                                  [--seconds 9] [--fill repeat zeros] [--n-boot 1000] [--out FILE]

The artifact (its own runtime, its manifest's thresholds, record rule and decision rule,
`edge_runtime.backends.record_probabilities` and `decide`) scores the records of a dataset (the one `--shards` was built from,
preprocessed as it was: `edge_runtime.signal.Preprocessor`), per record, challenge F1 (CinC 2017)
or macro F1 with bootstrap 95 % CIs (`train.metrics.decision_scores`):

* "short": the real records shorter than one window (`dataset.json` "skipped", `too_short`; the
  shard builder kept no window of them, so no training step and no threshold saw them), each on
  its one padded window (the first `--fill`, the library's default): the decision and whether it
  is right;
* "with_short": the records of `--split` plus those short records, three ways: the short ones
  padded; counted as "too short" and wrong (no label: a miss for their class); or left out
  (abstention: coverage below 1, F1 on the records answered);
* "truncated": every record of `--split` cut to its first `--seconds` s (shorter than a window, as a
  wearable's short recording), padded with each `--fill` (`edge_runtime.signal.PAD_FILLS`: the
  samples repeated, or zeros), against the same records at full length and on their first
  full window only (what the padding costs beside having one window), and against "too short"
  counted wrong (F1 0) or abstained (coverage 0).

"choice": the policy with the higher F1 over every record ("pad" or "too-short" counted wrong);
abstention is reported beside it with its coverage.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import emit  # noqa: E402  (bench/report.py, beside this script)

from edge_runtime.signal import PAD_FILLS  # noqa: E402


def _f1(y: np.ndarray, pred: np.ndarray, labels: tuple[str, ...], n_boot: int) -> dict[str, Any]:
    """The decision metric (challenge F1 for CinC 2017 labels, else macro F1) and accuracy, with CIs."""
    from train.metrics import decision_scores

    d = decision_scores(y, pred, labels, n_boot=n_boot)
    metric = d.get("challenge_f1") or d["f1"]["macro"]
    return {"n": int(len(y)), "f1": metric["value"], "ci": metric["ci"], "accuracy": d["accuracy"]["value"],
            "metric": "challenge_f1" if "challenge_f1" in d else "macro f1"}


def _windows(pre: Any, signal: np.ndarray, pad: bool, fill: str = "repeat") -> np.ndarray:
    return pre.process_record(signal, pad=pad, fill=fill).data[:, :, None, :]  # (n, leads, 1, T): the artifact's input


def measure(artifact: Path, shards: Path, split: str, seconds: float, n_boot: int,
            fills: tuple[str, ...] = ("repeat", "zeros")) -> dict[str, Any]:
    from edge_runtime.artifact import load_artifact
    from edge_runtime.backends import decide, open_backend, record_probabilities
    from edge_runtime.signal import Preprocessor, PreprocessConfig
    from train.data.shards import is_too_short
    from train.data.sources import DataConfig, open_dataset

    info = json.loads((shards / "dataset.json").read_text())
    art = load_artifact(artifact)
    m = art.manifest
    backend = open_backend(art, threads=1)
    ds = open_dataset(DataConfig(**info["data"]))
    cfg = PreprocessConfig(**info["preprocess"])
    labels = tuple(m.labels)
    if not 0 < seconds < cfg.window_s:
        raise SystemExit(f"--seconds: expected below one {cfg.window_s:g} s window, got {seconds:g}")
    pre: dict[float, Preprocessor] = {}

    def decision(windows: np.ndarray) -> np.ndarray:  # the record's decision by the manifest's record rule
        p = record_probabilities(backend.probabilities(backend.run(windows)), m.record_rule)
        return decide(p, m.thresholds, m.multilabel)[0]

    def read(rid: str) -> tuple[np.ndarray, float, np.ndarray]:
        rec = ds.read(rid).select(m.spec.leads)
        if rec.fs not in pre:
            pre[rec.fs] = Preprocessor(cfg, rec.fs, m.spec.leads)
        return rec.signal, rec.fs, np.asarray(rec.labels["target"]) > 0.5

    short = [s for s in info["skipped"] if is_too_short(s)]
    rows = []
    for s in short:  # per record (the few shorter than one window)
        x, fs, y = read(s["id"])
        d = decision(_windows(pre[fs], x, pad=True, fill=fills[0]))
        rows.append({"id": s["id"], "split": s["split"], "duration_s": round(x.shape[1] / fs, 2),
                     "truth": [k for k, v in zip(labels, y) if v], "decision": [k for k, v in zip(labels, d) if v],
                     "correct": bool((d == y).all()), "y": y, "d": d})
    ids = [rid for rid in ds.ids(split) if rid not in {s["id"] for s in short}]  # those with a window
    full, first, truth = [], [], []
    cut: dict[str, list[np.ndarray]] = {f: [] for f in fills}
    for rid in ids:  # per record: its full-length windows, its first window, its first `seconds` s padded
        x, fs, y = read(rid)
        w = _windows(pre[fs], x, pad=False)
        full.append(decision(w))
        first.append(decision(w[:1]))
        for f in fills:
            cut[f].append(decision(_windows(pre[fs], x[:, :int(round(seconds * fs))], pad=True, fill=f)))
        truth.append(y)
    full, first, truth = np.array(full), np.array(first), np.array(truth)
    sy = np.array([r.pop("y") for r in rows]).reshape(-1, len(labels))
    sd = np.array([r.pop("d") for r in rows]).reshape(-1, len(labels))
    y_all = np.concatenate([truth, sy])
    none = np.zeros_like(sd)
    with_short = {
        "n_records": int(len(y_all)), "n_short": len(rows),
        "pad": _f1(y_all, np.concatenate([full, sd]), labels, n_boot),
        "too_short_as_wrong": _f1(y_all, np.concatenate([full, none]), labels, n_boot),
        "too_short_as_abstention": {**_f1(truth, full, labels, n_boot), "coverage": len(truth) / len(y_all)}}
    truncated = {
        "n_records": int(len(truth)), "seconds": seconds,
        "full_length": _f1(truth, full, labels, n_boot),
        "first_window": _f1(truth, first, labels, n_boot),
        "pad": _f1(truth, np.array(cut[fills[0]]), labels, n_boot),
        **{f"pad_{f}": _f1(truth, np.array(cut[f]), labels, n_boot) for f in fills},
        "too_short_as_wrong": _f1(truth, np.zeros_like(truth), labels, n_boot),
        "too_short_as_abstention": {"coverage": 0.0, "f1": None}}
    pad_better = truncated["pad"]["f1"] > truncated["too_short_as_wrong"]["f1"] and \
        with_short["pad"]["f1"] >= with_short["too_short_as_wrong"]["f1"]
    return {"artifact": str(artifact), "runtime": m.runtime, "precision": m.precision, "dataset": info["source"],
            "window_s": cfg.window_s, "split": split, "fill": fills[0], "thresholds": list(m.thresholds),
            "short": {"n": len(rows), "correct": sum(r["correct"] for r in rows), "records": rows},
            "with_short": with_short, "truncated": truncated, "choice": "pad" if pad_better else "too-short"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--artifact", type=Path, required=True, help="an artifact's manifest.json (ecg-edge export)")
    p.add_argument("--shards", type=Path, required=True, help="the student's shards (their dataset and preprocessing)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="records cut short and scored")
    p.add_argument("--seconds", type=float, default=9.0, help="length the records are cut to (below one window)")
    p.add_argument("--fill", nargs="+", default=["repeat", "zeros"], choices=PAD_FILLS,
                   help="how the padded window is filled after the samples; the first is used for the real short records")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of records")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    a = p.parse_args(argv)
    return emit(measure(a.artifact, a.shards, a.split, a.seconds, a.n_boot, tuple(a.fill)), a.out)


if __name__ == "__main__":
    sys.exit(main())
