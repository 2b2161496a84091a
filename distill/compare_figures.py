"""The figures `ecg-edge compare` adds to its metrics, all from the per-record scores and decisions
(`edge_runtime.backends.decide`) that the metrics use: no second rule.

* `cross_table`: a record-level confusion matrix (true label x decided label) or, between two
  models, the decision matrix (float student's decision x artifact's decision);
* `flipped`: the records whose decision differs between the artifact and the float student, with
  both models' probabilities;
* `curves`: ROC and precision-recall points per class, downsampled for the page;
* `paired_per_class`: per-class paired bootstrap differences (AUROC, F1) against the float student;
* `verdict` / `verdicts`: is an int8 artifact equivalent to the float student here (the rule in
  `EQUIVALENCE_RULE`), and what it costs in size and time;
* `abstention`: for an artifact whose manifest ships inconclusive bands (`abstain`), coverage
  against accuracy as the bands are scaled (`edge_runtime.abstain.coverage_curve`), with the
  agreement of the kept decisions with the float student.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: The decision metric's paired 95 % CI (artifact minus float student) must lie inside +-margin ...
EQUIVALENCE_MARGIN = 0.02
#: ... and the two must decide alike (every label) on at least this share of records.
EQUIVALENCE_MIN_AGREEMENT = 0.99
EQUIVALENCE_RULE = ("equivalent: the paired 95 % CI of the {metric} difference (artifact minus {reference}) lies "
                    "inside +-{margin:g} and the two decide alike on >= {agreement:g} % of records; not equivalent: "
                    "record agreement below that, or the CI entirely outside +-{margin:g}; otherwise inconclusive")
#: How the rule names the decision metric.
METRIC_NAMES = {"f1": "macro F1", "challenge_f1": "challenge F1"}
#: Flipped records kept per artifact in compare.json (their count is always given).
FLIPPED_MAX = 1000
#: Points kept per ROC / PR curve.
CURVE_POINTS = 101
#: What compare.json's "abstention" figures are (the page says it too).
ABSTENTION_WHAT = ("A decision is inconclusive when its margin to the threshold (logit units, "
                   "edge_runtime.abstain.margins) is below its label's band (the manifest's abstain); "
                   "coverage: share of decisions kept ({unit}); accuracy_kept / accuracy_all: kept / all decisions "
                   "equal to the truth; agreement_kept: kept decisions equal to {reference}'s on the same records; "
                   "curve: the bands scaled by each 'scale' (1 = as shipped, 0 = no abstention), on the record "
                   "probabilities the other figures use")


def cross_table(a: np.ndarray, b: np.ndarray, labels: Sequence[str], multilabel: bool) -> dict[str, Any]:
    """Counts of records by (a, b), both (n, K) bool. Single-label: a K x K "matrix" (rows: a's label,
    columns: b's; rows where a has no label are counted in "n_unlabelled"). Multi-label: per class
    {"both", "a_only", "b_only", "neither"}."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    names = [str(x) for x in labels]
    if multilabel:
        return {"kind": "multi-label", "n": int(len(a)), "classes": {
            name: {"both": int((a[:, k] & b[:, k]).sum()), "a_only": int((a[:, k] & ~b[:, k]).sum()),
                   "b_only": int((~a[:, k] & b[:, k]).sum()), "neither": int((~a[:, k] & ~b[:, k]).sum())}
            for k, name in enumerate(names)}}
    k = len(names)
    ok = a.any(axis=1) & b.any(axis=1)
    flat = np.bincount(a[ok].argmax(axis=1) * k + b[ok].argmax(axis=1), minlength=k * k)
    return {"kind": "single-label", "n": int(len(a)), "labels": names, "matrix": flat.reshape(k, k).tolist(),
            "n_unlabelled": int((~ok).sum())}


def _names(row: np.ndarray, labels: Sequence[str]) -> list[str]:
    return [str(labels[k]) for k in np.flatnonzero(row)]


def flipped(ids: Sequence[str], y: np.ndarray, p_ref: np.ndarray, p_art: np.ndarray, d_ref: np.ndarray,
            d_art: np.ndarray, labels: Sequence[str], limit: int = FLIPPED_MAX) -> dict[str, Any]:
    """The records on which the two decisions differ (any label), in record order: record id, true
    labels, each model's decided labels and per-class probabilities (record means, as decided on)."""
    rows = np.flatnonzero((np.asarray(d_ref) != np.asarray(d_art)).any(axis=1))
    out = [{"record": str(ids[i]), "labels": _names(y[i] > 0.5, labels),
            "reference": _names(d_ref[i], labels), "artifact": _names(d_art[i], labels),
            "p_reference": [round(float(v), 6) for v in p_ref[i]],
            "p_artifact": [round(float(v), 6) for v in p_art[i]]} for i in rows[:limit]]
    return {"n": int(len(rows)), "of": int(len(d_ref)), "records": out, "truncated": bool(len(rows) > limit)}


def _keep(n: int, points: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n - 1, min(n, points))).astype(int))


def curves(y: np.ndarray, s: np.ndarray, labels: Sequence[str], points: int = CURVE_POINTS) -> dict[str, Any]:
    """Per class, ROC ("fpr", "tpr", from (0, 0)) and PR ("recall", "precision", from recall 0 at
    precision 1) at every distinct score as threshold (score >= threshold), as scikit-learn's
    roc_curve(drop_intermediate=False) / precision_recall_curve, then `points` evenly spaced of
    them (the ends kept). A class without both positives and negatives is None."""
    out: dict[str, Any] = {}
    yb = np.asarray(y) > 0.5
    for k, name in enumerate(labels):
        t, sc = yb[:, k], np.asarray(s, dtype=np.float64)[:, k]
        n_pos = int(t.sum())
        if n_pos in (0, len(t)):
            out[str(name)] = None
            continue
        order = np.argsort(-sc, kind="stable")
        last = np.r_[np.flatnonzero(np.diff(sc[order])), len(sc) - 1]  # last record of each distinct score
        tp = np.cumsum(t[order])[last].astype(np.float64)
        fp = (last + 1) - tp
        fpr, tpr = np.r_[0.0, fp / (len(t) - n_pos)], np.r_[0.0, tp / n_pos]
        recall, precision = np.r_[0.0, tp / n_pos], np.r_[1.0, tp / (tp + fp)]
        i, j = _keep(len(fpr), points), _keep(len(recall), points)
        out[str(name)] = {"n_pos": n_pos, "n_neg": int(len(t) - n_pos),
                          "roc": {"fpr": np.round(fpr[i], 5).tolist(), "tpr": np.round(tpr[i], 5).tolist()},
                          "pr": {"recall": np.round(recall[j], 5).tolist(),
                                 "precision": np.round(precision[j], 5).tolist()}}
    return out


def paired_per_class(y: np.ndarray, s: np.ndarray, r: np.ndarray, dec: np.ndarray, rdec: np.ndarray,
                     labels: Sequence[str], n_boot: int) -> dict[str, Any]:
    """{"auroc" | "f1": {class: `train.metrics.paired_difference` on that class alone}} of the
    artifact (s, dec) minus the reference (r, rdec); a class without both positives and negatives
    is {"difference": None, "reason"}."""
    from train.metrics import paired_difference

    out: dict[str, Any] = {"auroc": {}, "f1": {}}
    for k, name in enumerate(labels):
        n_pos = int((np.asarray(y)[:, k] > 0.5).sum())
        for metric, a, b in (("auroc", s, r), ("f1", dec, rdec)):
            if n_pos in (0, len(y)):
                out[metric][str(name)] = {"difference": None, "reason": f"no {'positive' if not n_pos else 'negative'} "
                                          f"records of {name}"}
                continue
            out[metric][str(name)] = paired_difference(y[:, [k]], np.asarray(a, dtype=np.float64)[:, [k]],
                                                       np.asarray(b, dtype=np.float64)[:, [k]], metric,
                                                       n_boot=n_boot, label_names=[str(name)])
    return out


def _ratio(a: Any, b: Any) -> float | None:
    return float(a) / float(b) if a is not None and b else None


def verdict(paired: Mapping[str, Any], agreement: float | None, size: tuple[Any, Any], latency: tuple[Any, Any],
            margin: float = EQUIVALENCE_MARGIN, min_agreement: float = EQUIVALENCE_MIN_AGREEMENT) -> dict[str, Any]:
    """One artifact against the float student: "status" (equivalent / not equivalent /
    inconclusive, by `EQUIVALENCE_RULE`), "reason", the paired difference and CI, the record
    agreement, and the size and latency (artifact, reference) with their ratio."""
    ci = paired.get("ci")
    if agreement is not None and agreement < min_agreement:
        status, reason = "not equivalent", f"records agree {agreement:.2%} < {min_agreement:.2%}"
    elif not ci:
        status, reason = "inconclusive", "no bootstrap CI for the difference"
    elif -margin <= ci[0] and ci[1] <= margin:
        status, reason = "equivalent", f"CI inside +-{margin:g}" + (
            f" and records agree {agreement:.2%} >= {min_agreement:.2%}" if agreement is not None else "")
    elif ci[0] > margin or ci[1] < -margin:
        status, reason = "not equivalent", f"CI entirely outside +-{margin:g}"
    elif ci[1] - ci[0] > 2 * margin:
        status, reason = "inconclusive", f"CI wider than the margin band +-{margin:g}"
    else:
        status, reason = "inconclusive", f"CI crosses the margin {'+' if ci[1] > margin else '-'}{margin:g}"
    return {"status": status, "reason": reason, "difference": paired.get("difference"), "ci": ci,
            "a": paired.get("a"), "b": paired.get("b"), "agreement": agreement, "margin": margin,
            "min_agreement": min_agreement,
            "size": {"bytes": size[0], "reference_bytes": size[1], "ratio": _ratio(*size)},
            "latency": {"p50_ms": latency[0], "reference_p50_ms": latency[1], "ratio": _ratio(*latency)}}


def verdicts(models: Mapping[str, Any], reference: str, metric: str, margin: float = EQUIVALENCE_MARGIN,
             min_agreement: float = EQUIVALENCE_MIN_AGREEMENT) -> dict[str, Any]:
    """The report's "verdict": the rule, one `verdict` per int8 artifact (report order) and the
    overall status: equivalent when every one is, not equivalent when any is, else inconclusive."""
    ref = models[reference]
    per = {}
    for name, m in models.items():
        if m.get("precision") != "int8" or metric not in (m.get("paired_vs_reference") or {}):
            continue
        per[name] = verdict(m["paired_vs_reference"][metric], (m["metrics"].get("agreement") or {}).get("records"),
                            (m["size"]["bytes"], ref["size"]["bytes"]),
                            (m["latency"].get("p50_ms"), ref["latency"].get("p50_ms")), margin, min_agreement)
    states = {v["status"] for v in per.values()}
    overall = None if not per else "equivalent" if states == {"equivalent"} else \
        "not equivalent" if "not equivalent" in states else "inconclusive"
    return {"status": overall, "metric": metric, "reference": reference, "margin": margin,
            "min_agreement": min_agreement,
            "rule": EQUIVALENCE_RULE.format(metric=METRIC_NAMES.get(metric, metric), reference=reference,
                                            margin=margin, agreement=100 * min_agreement),
            "artifacts": per}


def _finite(row: Mapping[str, Any]) -> dict[str, Any]:
    """A curve row with NaN (nothing kept) as None, so compare.json stays strict JSON."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in row.items()}


def abstention(y: np.ndarray, s: np.ndarray, r: np.ndarray, thresholds: Sequence[float], bands: Sequence[float] | None,
               labels: Sequence[str], multilabel: bool, reference: str = "the reference") -> dict[str, Any] | None:
    """An artifact's abstention figures from its record probabilities `s` and the reference's `r`
    (truth `y`, all (n, K), records in the same order) at `thresholds`; None without `bands`.

    "bands" per label, "inconclusive" per label (records whose decision for it is inside its band
    at the shipped band), "at_band" (the curve's row at scale 1), "curve" (`coverage_curve` with
    the reference) and "what" (`ABSTENTION_WHAT`)."""
    from edge_runtime.abstain import coverage_curve, inconclusive

    if bands is None:
        return None
    curve = [_finite(row) for row in coverage_curve(s, y, thresholds, bands, multilabel, reference=r)]
    inc = inconclusive(s, thresholds, bands, multilabel)
    unit = "record-label pairs" if multilabel else "records"
    return {"bands": [float(b) for b in bands],
            "inconclusive": {str(name): int(inc[:, k].sum()) for k, name in enumerate(labels)},
            "at_band": next(row for row in curve if row["scale"] == 1.0), "curve": curve,
            "what": ABSTENTION_WHAT.format(unit=unit, reference=reference)}
