"""Honest evaluation numbers: per-class and macro AUROC / PRAUC with bootstrap CIs, operating
thresholds, and TPR/FPR gaps between patient groups.

Every metric is computed per *record*: pass one row per record (`aggregate_by_record` turns window
scores into record scores), so the bootstrap resamples patients' recordings, not overlapping windows
of the same recording (which would make the intervals far too narrow).

Point estimates come from `sklearn.metrics.roc_auc_score` / `average_precision_score`. The bootstrap
does not call them 1000 x K times (~2 ms a call: 10 s for 5 classes); a resample of records is a
vector of multiplicities, so AUROC (Mann-Whitney with mid-ranks for ties) and average precision
(sklearn's step-wise definition, sum of recall increments times precision) are evaluated for all
resamples at once from per-score weight sums. Tests check they equal sklearn on resampled data.

Percentile bootstrap: Efron B, Tibshirani RJ. "An Introduction to the Bootstrap", ch. 13 (1993).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from edge_runtime.errors import ConfigError

METRICS = ("auroc", "prauc")
RULES = ("youden", "f1")
AGE_BINS: tuple[tuple[str, float, float], ...] = (
    ("<40", 0.0, 40.0), ("40-59", 40.0, 60.0), ("60-79", 60.0, 80.0), (">=80", 80.0, math.inf))
#: Resamples evaluated together; bounds the (chunk, n_records) work arrays to a few MB.
_CHUNK_CELLS = 2_000_000


def _sk():
    from sklearn import metrics
    return metrics


def _check_pair(y: np.ndarray, score: np.ndarray, label_names: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(binary labels (n, K) bool, scores (n, K) float64, names); one-column vectors are promoted."""
    y, score = np.asarray(y), np.asarray(score, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if score.ndim == 1:
        score = score[:, None]
    if y.ndim != 2 or y.shape != score.shape:
        raise ConfigError(f"metrics: labels {y.shape} and scores {score.shape}; expected the same (n, K) shape")
    if not np.isfinite(score).all():
        raise ConfigError("metrics: scores hold NaN or infinite values")
    names = [str(n) for n in label_names] if label_names is not None else [str(k) for k in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise ConfigError(f"metrics: {len(names)} label_names for {y.shape[1]} classes")
    return y > 0.5, score, names


def aggregate_by_record(values: np.ndarray, record: np.ndarray, reduce: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(record ids (sorted unique), per-record values): window rows -> one row per record.

    `reduce`: "mean" (scores) or "max" (labels: a record is positive when any window is).
    """
    values, record = np.asarray(values), np.asarray(record)
    if len(values) != len(record):
        raise ConfigError(f"aggregate_by_record: {len(values)} rows but {len(record)} record indices")
    ids, inv = np.unique(record, return_inverse=True)
    flat = values.reshape(len(values), -1).astype(np.float64)
    if reduce == "mean":
        out = np.zeros((len(ids), flat.shape[1]))
        np.add.at(out, inv, flat)
        out /= np.bincount(inv, minlength=len(ids))[:, None]
    elif reduce == "max":
        out = np.full((len(ids), flat.shape[1]), -np.inf)
        np.maximum.at(out, inv, flat)
    else:
        raise ConfigError(f"aggregate_by_record: reduce {reduce!r}; expected 'mean' or 'max'")
    return ids, out.reshape((len(ids),) + values.shape[1:])


# ---------------------------------------------------------------------------------------- bootstrap

def _weighted_curves(pos_w: np.ndarray, neg_w: np.ndarray) -> dict[str, np.ndarray]:
    """AUROC and AP of each row from positive/negative weights per distinct score, scores ascending.

    pos_w, neg_w: (B, U) weights (record multiplicities) at each of U distinct scores.
    """
    n_pos, n_neg = pos_w.sum(axis=1), neg_w.sum(axis=1)
    neg_below = np.cumsum(neg_w, axis=1) - neg_w
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (pos_w * (neg_below + 0.5 * neg_w)).sum(axis=1) / (n_pos * n_neg)
        # thresholds from the highest score down: TP/FP counted at score >= threshold
        tp = np.cumsum(pos_w[:, ::-1], axis=1)
        fp = np.cumsum(neg_w[:, ::-1], axis=1)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (pos_w[:, ::-1] * precision).sum(axis=1) / n_pos
    return {"auroc": auroc, "prauc": ap}


def _resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> Iterable[np.ndarray]:
    """Multiplicity of each record in each resample, (chunk, n) per yield, drawn in one stream."""
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        flat = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        yield np.bincount(flat.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _bootstrap_class(counts_chunks: list[np.ndarray], y: np.ndarray, s: np.ndarray,
                     metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-resample values of each metric for one class (NaN where the resample lacks a label value)."""
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # first record of each distinct score
    out: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for counts in counts_chunks:
        c = counts[:, order]
        pos_w = np.add.reduceat(c * y_sorted, starts, axis=1)
        neg_w = np.add.reduceat(c * (1.0 - y_sorted), starts, axis=1)
        vals = _weighted_curves(pos_w, neg_w)
        bad = (pos_w.sum(axis=1) == 0) | (neg_w.sum(axis=1) == 0)
        for m in metrics:
            out[m].append(np.where(bad, np.nan, vals[m]))
    return {m: np.concatenate(v) for m, v in out.items()}


def _ci(values: np.ndarray, level: float) -> tuple[list[float] | None, int]:
    ok = values[np.isfinite(values)]
    if len(ok) == 0:
        return None, 0
    lo, hi = np.percentile(ok, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)], int(len(ok))


def bootstrap_scores(y: np.ndarray, score: np.ndarray, metrics: Sequence[str] = METRICS, n_boot: int = 1000,
                     seed: int = 0, label_names: Sequence[str] | None = None, level: float = 0.95) -> dict[str, Any]:
    """Per-class and macro AUROC / PRAUC, each with a percentile CI from the same record resamples.

    y: (n, K) 0/1 (multi-hot or one-hot), score: (n, K), one row per record. Returns

        {"n": n, "n_boot", "seed", "level",
         "<metric>": {"classes": {name: {"value", "ci": [lo, hi], "n_valid", "n_pos", "n_neg", "prevalence"}
                                        or {"value": None, "reason", "n_pos", "n_neg", "prevalence"}},
                      "macro": {"value", "ci", "n_valid", "classes": [...], "excluded": [...]}}}

    A class without both positives and negatives has value None and a reason, and is excluded from
    the macro. A resample that lacks a class's positives or negatives is skipped for that class (the
    same resamples for both metrics; `n_valid` counts the rest). The macro CI is the percentile of
    the macro of each resample over the included classes, from resamples valid for all of them.
    PRAUC is average precision; its chance level is the class prevalence, reported beside it.
    """
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ConfigError(f"bootstrap_scores: metrics {list(metrics)!r}; expected a subset of {METRICS}")
    if n_boot < 1 or not 0 < level < 1:
        raise ConfigError(f"bootstrap_scores: n_boot {n_boot} (expected >= 1), level {level} (expected in (0, 1))")
    yb, s, names = _check_pair(y, score, label_names)
    n = len(yb)
    rng = np.random.default_rng(seed)
    chunks = list(_resample_counts(rng, n, n_boot)) if n else []
    sk = _sk()
    point_fn = {"auroc": sk.roc_auc_score, "prauc": sk.average_precision_score}
    out: dict[str, Any] = {"n": n, "n_boot": n_boot, "seed": seed, "level": level}
    out.update({m: {"classes": {}, "macro": {}} for m in metrics})
    boot: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    included: list[str] = []
    for k, name in enumerate(names):
        n_pos = int(yb[:, k].sum())
        base = {"n_pos": n_pos, "n_neg": n - n_pos, "prevalence": n_pos / n if n else None}
        if n_pos == 0 or n_pos == n:
            reason = f"no {'positive' if n_pos == 0 else 'negative'} records of {name} among {n}"
            for m in metrics:
                out[m]["classes"][name] = {"value": None, "reason": reason, **base}
            continue
        included.append(name)
        per = _bootstrap_class(chunks, yb[:, k], s[:, k], metrics)
        for m in metrics:
            ci, n_valid = _ci(per[m], level)
            entry = {"value": float(point_fn[m](yb[:, k], s[:, k])), "ci": ci, "n_valid": n_valid, **base}
            if ci is None:
                entry["ci_reason"] = "no resample held both positives and negatives"
            out[m]["classes"][name] = entry
            boot[m].append(per[m])
    for m in metrics:
        out[m]["macro"] = _macro(out[m]["classes"], included, boot[m], names, level)
    return out


def _macro(classes: dict[str, Any], included: list[str], boot: list[np.ndarray], names: list[str],
           level: float) -> dict[str, Any]:
    excluded = [n for n in names if n not in included]
    if not included:
        return {"value": None, "reason": "no class has both positive and negative records",
                "classes": [], "excluded": excluded}
    value = float(np.mean([classes[n]["value"] for n in included]))
    per_resample = np.stack(boot).mean(axis=0)  # NaN wherever any included class was skipped
    ci, n_valid = _ci(per_resample, level)
    return {"value": value, "ci": ci, "n_valid": n_valid, "classes": included, "excluded": excluded}


# ---------------------------------------------------------------------------------------- thresholds

def operating_thresholds(y_val: np.ndarray, score_val: np.ndarray, rule: str = "youden") -> np.ndarray:
    """One decision threshold per class (predict positive when score >= threshold), chosen on validation.

    rule "youden": maximises TPR - FPR (Youden WJ, Cancer 3:32-35, 1950); "f1": maximises F1.
    Classes without both positives and negatives in y_val get NaN (`fairness_gaps` reports them).
    """
    if rule not in RULES:
        raise ConfigError(f"operating_thresholds: rule {rule!r}; expected one of {RULES}")
    yb, s, _ = _check_pair(y_val, score_val, None)
    sk = _sk()
    out = np.full(yb.shape[1], np.nan)
    for k in range(yb.shape[1]):
        if yb[:, k].all() or not yb[:, k].any():
            continue
        if rule == "youden":
            fpr, tpr, thr = sk.roc_curve(yb[:, k], s[:, k])
            j = np.argmax((tpr - fpr)[1:]) + 1  # thr[0] is +inf: "predict nothing"
            out[k] = thr[j]
        else:
            precision, recall, thr = sk.precision_recall_curve(yb[:, k], s[:, k])
            with np.errstate(invalid="ignore", divide="ignore"):
                f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
            out[k] = thr[np.argmax(f1[:-1])]  # the last point (recall 0) has no threshold
    return out


# ---------------------------------------------------------------------------------------- fairness

def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def age_groups(ages: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Age in years -> "<40", "40-59", "60-79", ">=80" (object array); None, NaN or negative -> None."""
    out = np.empty(len(ages), dtype=object)
    for i, a in enumerate(ages):
        out[i] = None
        if _missing(a) or isinstance(a, (bool, np.bool_)):
            continue
        a = float(a)
        for label, lo, hi in AGE_BINS:
            if lo <= a < hi:
                out[i] = label
    return out


def meta_groups(metas: Sequence[dict[str, Any]]) -> dict[str, np.ndarray | None]:
    """{"sex": M/F/None per record, "age": age_groups(...)} from records.jsonl "meta" dicts.

    A grouping with no known value at all (CinC 2017 has neither) is None, which `fairness_gaps`
    reports as not evaluable instead of a table of empty groups.
    """
    sex = np.array([m.get("sex") if m.get("sex") in ("M", "F") else None for m in metas], dtype=object)
    age = age_groups([m.get("age") for m in metas])
    return {name: (g if any(v is not None for v in g) else None) for name, g in (("sex", sex), ("age", age))}


def _rates(y: np.ndarray, pred: np.ndarray, labels: np.ndarray, order: list[str]) -> dict[str, dict[str, Any]]:
    per = {}
    for g in order:
        m = labels == g
        n_pos, n_neg = int((y & m).sum()), int((~y & m).sum())
        per[g] = {"n_pos": n_pos, "n_neg": n_neg,
                  "tpr": float((pred & y & m).sum() / n_pos) if n_pos else None,
                  "fpr": float((pred & ~y & m).sum() / n_neg) if n_neg else None}
    return per


def _gap(per: dict[str, dict[str, Any]], rate: str, count: str, min_count: int) -> dict[str, Any]:
    ok = {g: v[rate] for g, v in per.items() if v[count] >= min_count}
    kind = "positive" if count == "n_pos" else "negative"
    if len(ok) < 2:
        return {"value": None, "groups": sorted(ok),
                "reason": f"{len(ok)} group(s) with >= {min_count} {kind} records; need 2"}
    hi, lo = max(ok, key=ok.get), min(ok, key=ok.get)
    return {"value": ok[hi] - ok[lo], "max_group": hi, "min_group": lo, "groups": sorted(ok)}


def fairness_gaps(y: np.ndarray, score: np.ndarray, thresholds: np.ndarray, groups: dict[str, np.ndarray | None],
                  label_names: Sequence[str] | None = None, min_count: int = 5) -> dict[str, Any]:
    """TPR and FPR per patient group at fixed thresholds, and the largest gap between groups.

    groups: grouping name -> one label per record (e.g. "M"/"F", `age_groups(...)`), None/NaN/""
    for unknown; a grouping given as None is reported as not evaluable. Returns

        {"min_count": int, "groupings": {grouping: {"groups": [...], "n_missing": int,
                    "classes": {name: {"threshold", "per_group": {g: {"tpr", "fpr", "n_pos", "n_neg"}},
                                       "tpr_gap": {"value", "max_group", "min_group", "groups"} or
                                                  {"value": None, "reason", "groups"}, "fpr_gap": ...}}}}}

    A gap is max - min over groups with at least `min_count` positives (TPR) or negatives (FPR);
    records with an unknown group label are excluded and counted in "n_missing".
    """
    yb, s, names = _check_pair(y, score, label_names)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if len(thresholds) != yb.shape[1]:
        raise ConfigError(f"fairness_gaps: {len(thresholds)} thresholds for {yb.shape[1]} classes")
    out: dict[str, Any] = {"min_count": min_count, "groupings": {}}
    for gname, labels in groups.items():
        if labels is None:
            out["groupings"][gname] = {"value": None, "reason": f"no {gname} labels in this dataset"}
            continue
        labels = np.asarray(labels, dtype=object).reshape(-1)
        if len(labels) != len(yb):
            raise ConfigError(f"fairness_gaps: {gname!r} has {len(labels)} labels for {len(yb)} records")
        missing = np.array([_missing(v) for v in labels], dtype=bool)
        labels = np.where(missing, None, labels.astype(str))
        order = sorted({v for v in labels if v is not None})
        entry: dict[str, Any] = {"groups": order, "n_missing": int(missing.sum()), "classes": {}}
        for k, name in enumerate(names):
            t = thresholds[k]
            if not math.isfinite(t):
                entry["classes"][name] = {"threshold": None, "reason": "no operating threshold for this class"}
                continue
            per = _rates(yb[:, k], s[:, k] >= t, labels, order)
            entry["classes"][name] = {"threshold": float(t), "per_group": per,
                                      "tpr_gap": _gap(per, "tpr", "n_pos", min_count),
                                      "fpr_gap": _gap(per, "fpr", "n_neg", min_count)}
        out["groupings"][gname] = entry
    return out
