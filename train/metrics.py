"""Honest evaluation numbers: per-class and macro AUROC / PRAUC with bootstrap CIs, operating
thresholds, and TPR/FPR gaps between patient groups.

Every metric is computed per *record*: pass one row per record (`aggregate_by_record` turns window
scores into record scores; `score_records`, the scoring every report uses, does that first), so
the bootstrap resamples patients' recordings, not overlapping windows of the same recording
(which would make the intervals far too narrow).

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

    `reduce`: "mean" (scores) or "max" (labels: a record is positive when any window is; scores
    under the "max" record rule, `edge_runtime.artifact.RECORD_RULES`).
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
    Each threshold lies half-way between the validation score it admits and the next lower one.
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
            fpr, tpr, thr = sk.roc_curve(yb[:, k], s[:, k], drop_intermediate=False)
            j = np.argmax((tpr - fpr)[1:]) + 1  # thr[0] is +inf: "predict nothing"
            below = thr[j + 1] if j + 1 < len(thr) else None  # thresholds descend
        else:
            precision, recall, thr = sk.precision_recall_curve(yb[:, k], s[:, k])
            with np.errstate(invalid="ignore", divide="ignore"):
                f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
            j = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold
            below = thr[j - 1] if j > 0 else None  # thresholds ascend
        # Half-way to the next lower score: the same decisions on the validation scores, but no
        # score sits exactly on the threshold, where float noise of another runtime would flip it.
        out[k] = thr[j] if below is None else (float(thr[j]) + float(below)) / 2
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
    from edge_runtime.backends import decide

    decided = decide(s, thresholds, True)  # per class: score >= threshold (NaN thresholds skipped below)
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
            per = _rates(yb[:, k], decided[:, k], labels, order)
            entry["classes"][name] = {"threshold": float(t), "per_group": per,
                                      "tpr_gap": _gap(per, "tpr", "n_pos", min_count),
                                      "fpr_gap": _gap(per, "fpr", "n_neg", min_count)}
        out["groupings"][gname] = entry
    return out


# ---------------------------------------------------------------------------------------- decisions

#: PhysioNet/CinC 2017 scoring: the mean F1 of these classes (noise "~" is scored only through them).
CHALLENGE_2017 = ("N", "A", "O")


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def decision_scores(y: np.ndarray, pred: np.ndarray, label_names: Sequence[str], n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95) -> dict[str, Any]:
    """F1, sensitivity and specificity per class and their macro, each with a bootstrap CI.

    y, pred: (n, K) 0/1, one row per record (`pred` the decisions: the argmax one-hot for
    single-label heads, score >= threshold for multi-label ones). When the classes include N, A
    and O (PhysioNet/CinC 2017), "challenge_f1" is the challenge's score: the mean of their F1
    (Clifford et al., CinC 2017), with its CI from the same resamples. Returns {"n", "n_boot",
    "f1" | "sensitivity" | "specificity": {"classes": {name: {"value", "ci"}}, "macro": {...}},
    "accuracy" (all labels of a record right), "challenge_f1"?}.
    """
    yb, pb = np.asarray(y) > 0.5, np.asarray(pred) > 0.5
    names = list(label_names)
    if yb.ndim != 2 or yb.shape != pb.shape or yb.shape[1] != len(names):
        raise ConfigError(f"decision_scores: y {yb.shape} and pred {pb.shape} must both be (n, {len(names)})")
    if n_boot < 1 or not 0 < level < 1:
        raise ConfigError(f"decision_scores: n_boot {n_boot} (expected >= 1), level {level} (expected in (0, 1))")
    n = len(yb)
    cells = np.stack([yb & pb, ~yb & pb, yb & ~pb, ~yb & ~pb]).astype(np.int64)  # tp fp fn tn: (4, n, K)
    rng = np.random.default_rng(seed)

    def stats(counts: np.ndarray) -> dict[str, np.ndarray]:  # counts: (B, 4, K)
        tp, fp, fn, tn = (counts[:, i] for i in range(4))
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"f1": _f1(tp, fp, fn), "sensitivity": np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), np.nan),
                    "specificity": np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan)}

    point = stats(cells.sum(axis=1)[None])
    boots: dict[str, list[np.ndarray]] = {m: [] for m in point}
    right = (yb == pb).all(axis=1)
    acc_boot = []
    for w in _resample_counts(rng, n, n_boot) if n else []:  # w: (B, n) resample counts
        s = stats(np.einsum("bn,cnk->bck", w, cells))
        for m in s:
            boots[m].append(s[m])
        acc_boot.append(w @ right / n)
    out: dict[str, Any] = {"n": n, "n_boot": n_boot, "seed": seed, "level": level}
    for m, value in point.items():
        b = np.concatenate(boots[m]) if boots[m] else np.zeros((0, len(names)))
        classes = {}
        for k, name in enumerate(names):
            v = value[0, k]
            classes[name] = {"value": None if np.isnan(v) else float(v), "ci": _ci(b[:, k], level)[0]}
        ok = [k for k in range(len(names)) if not np.isnan(value[0, k])]
        with np.errstate(invalid="ignore"):
            macro_b = b[:, ok].mean(axis=1) if ok else np.zeros(0)
        out[m] = {"classes": classes, "macro": {"value": float(value[0, ok].mean()) if ok else None,
                                                "ci": _ci(macro_b, level)[0], "classes": [names[k] for k in ok]}}
    out["accuracy"] = {"value": float(right.mean()) if n else None,
                       "ci": _ci(np.concatenate(acc_boot), level)[0] if acc_boot else None}
    if all(c in names for c in CHALLENGE_2017):
        idx = [names.index(c) for c in CHALLENGE_2017]
        b = np.concatenate(boots["f1"]) if boots["f1"] else np.zeros((0, len(names)))
        with np.errstate(invalid="ignore"):
            out["challenge_f1"] = {"value": float(np.mean(point["f1"][0, idx])),
                                   "ci": _ci(b[:, idx].mean(axis=1), level)[0], "classes": list(CHALLENGE_2017)}
    return out


def score_records(scores: np.ndarray, y: np.ndarray, record: np.ndarray, label_names: Sequence[str], *,
                  n_boot: int = 1000, seed: int = 0, thresholds: Sequence[float] | None = None,
                  multilabel: bool = True, reference: np.ndarray | None = None,
                  record_rule: str = "mean") -> dict[str, Any]:
    """The one per-record scoring of window scores (evaluation, distillation, export, compare).

    Window scores become record scores by `record_rule` (averaged, "mean", or their maximum, "max":
    `edge_runtime.artifact.RECORD_RULES`), labels OR-ed (`aggregate_by_record`); returns
    {"ranking": `bootstrap_scores`}, and with `thresholds` "decisions": `decision_scores` of the
    artifact's decision rule (`edge_runtime.backends.decide`) on the record scores; with
    `reference` too (another model's window scores, same windows) "agreement": the fractions of
    windows and of records on which both decide alike.
    """
    _, s = aggregate_by_record(scores, record, record_rule)
    _, t = aggregate_by_record(y, record, "max")
    names = tuple(label_names)
    out: dict[str, Any] = {"ranking": bootstrap_scores(t, s, n_boot=n_boot, seed=seed, label_names=names)}
    if thresholds is None:
        return out
    from edge_runtime.backends import decide

    dec = decide(s, thresholds, multilabel)
    out["decisions"] = decision_scores(t, dec, names, n_boot=n_boot, seed=seed)
    if reference is not None:
        _, r = aggregate_by_record(reference, record, record_rule)
        windows = decide(scores, thresholds, multilabel) == decide(reference, thresholds, multilabel)
        out["agreement"] = {"windows": float(windows.all(axis=1).mean()),
                            "records": float((dec == decide(r, thresholds, multilabel)).all(axis=1).mean()),
                            "n_windows": int(len(scores)), "n_records": int(len(s))}
    return out


#: Decision metrics `paired_difference` accepts besides METRICS: scores are then 0/1 decisions.
DECISION_METRICS = ("f1", "challenge_f1")


def paired_difference(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, metric: str = "auroc",
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                      label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Macro `metric` of A minus that of B on the same records, with a paired bootstrap CI.

    Both models are scored on each resample of the records, so the CI is that of the difference
    itself (much narrower than two overlapping CIs suggest when the models err on the same
    records). `metric`: "auroc" or "prauc" on scores, or "f1" / "challenge_f1" on 0/1 decisions
    (macro F1; challenge_f1: the mean F1 of N, A and O, PhysioNet/CinC 2017). Classes without both
    positive and negative records are left out of both macros; a resample where a kept class lacks
    positives or negatives (or an F1 is undefined) is skipped. Resample i draws
    `rng.integers(0, n, n)`; all resamples are scored at once from record multiplicities (the
    vectorised AUROC / AP of `bootstrap_scores`). Returns {"metric", "a", "b", "difference", "ci",
    "n_valid", "p_a_not_better" (share of resamples where A - B <= 0), "classes"}.
    """
    if metric not in METRICS + DECISION_METRICS:
        raise ConfigError(f"paired_difference: metric {metric!r}; expected one of {METRICS + DECISION_METRICS}")
    yb, sa, names = _check_pair(y, score_a, label_names)
    _, sb, _ = _check_pair(y, score_b, label_names)
    keep = [k for k in range(yb.shape[1]) if 0 < yb[:, k].sum() < len(yb)]
    if metric == "challenge_f1":
        if not all(c in names for c in CHALLENGE_2017):
            raise ConfigError(f"paired_difference: challenge_f1 needs the classes {list(CHALLENGE_2017)}; got {names}")
        keep = [names.index(c) for c in CHALLENGE_2017]
    if not keep:
        raise ConfigError("paired_difference: no class has both positive and negative records")
    n = len(yb)
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.integers(0, n, n) for _ in range(n_boot)]) if n_boot else np.zeros((0, n), np.int64)
    counts = np.stack([np.ones(n), *(np.bincount(d, minlength=n) for d in draws)]).astype(np.float64)

    def macro(s: np.ndarray) -> np.ndarray:  # (1 + n_boot,) macro per weighting, NaN where undefined
        if metric in METRICS:
            per = [_bootstrap_class([counts], yb[:, k], s[:, k], (metric,))[metric] for k in keep]
            return np.mean(per, axis=0)
        d = s[:, keep] > 0.5
        t = yb[:, keep]
        tp, fp, fn = counts @ (d & t), counts @ (d & ~t), counts @ (~d & t)
        valid = ((t.astype(np.float64).T @ counts.T) > 0).all(axis=0) & ((counts @ ~t) > 0).all(axis=1)
        f1 = _f1(tp, fp, fn).mean(axis=1)
        return np.where(valid, f1, np.nan)

    ma, mb = macro(sa), macro(sb)
    a, b = float(ma[0]), float(mb[0])
    d = ma[1:] - mb[1:]
    d = d[np.isfinite(d)]
    ci, n_valid = _ci(d, level)
    return {"metric": metric, "a": a, "b": b, "difference": a - b, "ci": ci, "n_valid": n_valid,
            "p_a_not_better": float((d <= 0).mean()) if len(d) else None, "classes": [names[k] for k in keep],
            "n_boot": n_boot, "seed": seed, "level": level}


def calibration(y: np.ndarray, p: np.ndarray, label_names: Sequence[str] | None = None, n_bins: int = 10,
                n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Expected calibration error per class (one-vs-rest) and its macro, with bootstrap CIs, and the
    reliability-diagram bins.

    y: (n, K) 0/1, p: (n, K) probabilities, one row per record. Bins: `n_bins` equal-width bins of
    [0, 1] (a probability of exactly 1 falls in the last). ECE = sum over bins of
    count / n * |observed frequency - mean probability| (Guo et al., ICML 2017, per class).

    That plug-in ECE is biased upward (the absolute value of a noisy gap), more so on bootstrap
    resamples, so its percentile interval can lie entirely above it. Each "ece" is therefore
    `bias_corrected` (median bias): the value is 2 * plug-in - median of the resamples and the CI
    the basic bootstrap interval [2 * plug-in - upper, 2 * plug-in - lower] of the resamples'
    percentiles, both clipped to [0, 1]; the value always lies inside its CI. The plug-in figure
    (what the reliability bins show) and the percentile interval are kept beside them.
    Returns {"n", "n_bins", "n_boot", "seed", "level", "method", "classes": {name: {"ece": {"value",
    "ci", "plugin", "percentile_ci"}, "bins": {"lower", "upper", "count", "confidence",
    "frequency"}}}, "macro": {same as "ece"}}; an empty bin has confidence and frequency None.
    """
    yb, s, names = _check_pair(y, p, label_names)
    if n_bins < 1 or n_boot < 1 or not 0 < level < 1:
        raise ConfigError(f"calibration: n_bins {n_bins}, n_boot {n_boot} (both >= 1), level {level} (in (0, 1))")
    if ((s < 0) | (s > 1)).any():
        raise ConfigError("calibration: probabilities must lie in [0, 1]")
    n = len(yb)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    onehot = (np.clip(np.searchsorted(edges, s, side="right") - 1, 0, n_bins - 1)[..., None]
              == np.arange(n_bins)).astype(np.float64)  # (n, K, bins)
    gap = (onehot * (yb[..., None] - s[..., None])).reshape(n, -1)  # per record: y - p in its bin

    def ece(w: np.ndarray) -> np.ndarray:  # w: (B, n) multiplicities -> (B, K)
        return np.abs(w @ gap).reshape(len(w), len(names), n_bins).sum(axis=2) / n

    point = ece(np.ones((1, n)))[0] if n else np.full(len(names), np.nan)
    boot = np.concatenate([ece(w) for w in _resample_counts(np.random.default_rng(seed), n, n_boot)]) if n \
        else np.zeros((0, len(names)))
    cnt = onehot.sum(axis=0)
    conf = (onehot * s[..., None]).sum(axis=0)
    freq = (onehot * yb[..., None]).sum(axis=0)
    classes = {}
    for k, name in enumerate(names):
        nz = cnt[k] > 0
        classes[name] = {
            "ece": bias_corrected(float(point[k]) if n else None, boot[:, k], level),
            "bins": {"lower": edges[:-1].tolist(), "upper": edges[1:].tolist(), "count": cnt[k].astype(int).tolist(),
                     "confidence": [float(c / m) if z else None for c, m, z in zip(conf[k], cnt[k], nz)],
                     "frequency": [float(f / m) if z else None for f, m, z in zip(freq[k], cnt[k], nz)]}}
    return {"n": n, "n_bins": n_bins, "n_boot": n_boot, "seed": seed, "level": level, "method": ECE_METHOD,
            "classes": classes, "macro": bias_corrected(float(point.mean()) if n else None, boot.mean(axis=1), level)}


#: How `calibration` states its ECE value and interval (compare.json "method", the report's note).
ECE_METHOD = ("bootstrap bias-corrected: value 2 * plug-in - median of resamples, basic interval "
              "[2 * plug-in - upper, 2 * plug-in - lower percentile], clipped to [0, 1]")


def bias_corrected(plugin: float | None, boot: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """A bootstrap-bias-corrected estimate and its basic (pivotal) interval, for a statistic in [0, 1].

    With q_lo, q_hi the resamples' percentiles and m their median, the value is 2 * plugin - m and
    the CI [2 * plugin - q_hi, 2 * plugin - q_lo] (Davison & Hinkley, "Bootstrap Methods and their
    Application", 1997, eq. 5.6; bias as in Efron & Tibshirani 1993, ch. 10, with the median for
    the mean). q_lo <= m <= q_hi, and clipping to [0, 1] keeps the order, so the value always lies
    inside the CI, where the percentile interval need not hold the plug-in at all. Returns
    {"value", "ci", "plugin", "percentile_ci"}; no finite resample: value = plugin, CIs None.
    """
    pct, _ = _ci(np.asarray(boot, dtype=np.float64), level)
    if plugin is None or pct is None:
        return {"value": plugin, "ci": None, "plugin": plugin, "percentile_ci": pct}
    ok = np.asarray(boot, dtype=np.float64)
    median = float(np.median(ok[np.isfinite(ok)]))
    clip = lambda v: float(min(max(v, 0.0), 1.0))  # noqa: E731
    return {"value": clip(2 * plugin - median), "ci": [clip(2 * plugin - pct[1]), clip(2 * plugin - pct[0])],
            "plugin": float(plugin), "percentile_ci": pct}
