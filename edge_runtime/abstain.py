"""Abstention near the decision threshold: an "inconclusive" band per class (numpy only).

A decision's **margin** is its signed distance to the decision boundary in logit units, one value
per class (`margins`):

- multi-label: m_k = logit(p_k) - logit(t_k); label k is decided present when m_k >= 0
  (p_k >= t_k, `edge_runtime.backends.decide`);
- single-label: m_k = log(p_k / t_k) - max_{j != k} log(p_j / t_j); the decided class is the one
  with m_k >= 0 (argmax p / t). For softmax probabilities and equal thresholds this is the logit
  difference z_k - z_j to the runner-up.

A decision is **inconclusive** (`inconclusive`) when its margin is below the band of its class:
multi-label, label k when |m_k| < band_k; single-label, the record when the decided class c has
m_c < band_c. int8 rounding moves logits by a few output steps, so the decisions int8 and fp32
disagree on sit at small margins; a band of a fraction of a logit catches most of them.

The bands are chosen on out-of-fold scores of the int8 model itself (`choose_bands`, run by
`ecg-edge cv`), ship in the artifact's manifest (`abstain`), are used by the streaming engine's
decisions and events, and are reported as coverage against accuracy (`coverage_curve`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: probabilities are clipped to [EPS, 1 - EPS] before logs, so a saturated output has a finite margin
EPS = 1e-7
#: `choose_bands` defaults: the int8-vs-fp32 agreement wanted among the decisions a class keeps,
#: and the most of a class's decisions its band may set aside to get there
TARGET_AGREEMENT = 0.999
MAX_ABSTAIN = 0.10
#: band multiples of `coverage_curve` (1 = the shipped band)
CURVE_SCALES = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def _thresholds(thresholds: Any, k: int) -> np.ndarray:
    return np.full(k, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)


def margins(probabilities: np.ndarray, thresholds: Any, multilabel: bool) -> np.ndarray:
    """Signed margins (N, K) in logit units (module docstring); >= 0 where the class is decided."""
    p = np.asarray(probabilities, dtype=np.float64)
    p = np.clip(p[None, :] if p.ndim == 1 else p, EPS, 1 - EPS)
    t = np.clip(_thresholds(thresholds, p.shape[-1]), EPS, 1 - EPS)
    if multilabel:
        return (np.log(p) - np.log1p(-p)) - (np.log(t) - np.log1p(-t))
    s = np.log(p) - np.log(t)
    if s.shape[-1] == 1:
        return np.full_like(s, np.inf)
    order = np.sort(s, axis=-1)
    best, second = order[:, -1:], order[:, -2:-1]
    # against the best other class: the runner-up for the top class, the top class for the rest
    return s - np.where(s >= best, second, best)


def inconclusive(probabilities: np.ndarray, thresholds: Any, bands: Any, multilabel: bool) -> np.ndarray:
    """bool (N, K): multi-label, the labels whose |margin| is below their band; single-label, the
    decided class where its margin is below its band (a row with any True is an inconclusive
    record). bands None: nothing is inconclusive."""
    m = margins(probabilities, thresholds, multilabel)
    if bands is None:
        return np.zeros(m.shape, dtype=bool)
    b = np.asarray(bands, dtype=np.float64)
    if multilabel:
        return np.abs(m) < b
    decided = np.arange(m.shape[-1])[None, :] == np.argmax(m, axis=-1)[:, None]
    return decided & (m < b)


def check_bands(bands: Any, n_labels: int, where: str = "abstain") -> tuple[float, ...]:
    """The bands as a tuple of n_labels finite numbers >= 0, or a ConfigError naming `where`."""
    from edge_runtime.errors import ConfigError

    if isinstance(bands, (str, bytes)) or not isinstance(bands, Sequence) or len(bands) != n_labels \
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0
                   for v in bands):
        raise ConfigError(f"{where}: expected {n_labels} finite margins >= 0 in logit units (one per label), "
                          f"got {bands!r}")
    return tuple(float(v) for v in bands)


def _class_rows(m: np.ndarray, ref_m: np.ndarray, k: int, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    """|margin| of the decisions that class k's band acts on, and whether the reference agrees."""
    if multilabel:
        return np.abs(m[:, k]), (m[:, k] >= 0) == (ref_m[:, k] >= 0)
    mine = np.argmax(m, axis=1) == k
    return m[mine, k], np.argmax(ref_m[mine], axis=1) == k


def choose_bands(probs: np.ndarray, reference: np.ndarray, thresholds: Any, multilabel: bool, *,
                 target: float = TARGET_AGREEMENT, max_abstain: float = MAX_ABSTAIN) -> tuple[float, ...]:
    """One band per class from record probabilities of the int8 model (`probs`) and of its float
    reference on the same records (out-of-fold scores): the smallest band at which the decisions
    the class keeps agree with the reference on >= `target` of records, setting aside at most
    `max_abstain` of that class's decisions (at the cap when the target is out of reach; 0 when
    the class already meets it)."""
    m, ref_m = margins(probs, thresholds, multilabel), margins(reference, thresholds, multilabel)
    bands = []
    for k in range(m.shape[1]):
        mag, agree = _class_rows(m, ref_m, k, multilabel)
        n = len(mag)
        if n == 0:
            bands.append(0.0)
            continue
        order = np.argsort(mag, kind="stable")
        mag, agree = mag[order], agree[order].astype(np.float64)
        kept_agree = agree.sum() - np.concatenate([[0.0], np.cumsum(agree)])[:n]  # abstain the first i
        ok = kept_agree / (n - np.arange(n)) >= target
        cap = int(np.floor(max_abstain * n))
        hit = np.flatnonzero(ok[:cap + 1])
        i = int(hit[0]) if len(hit) else cap
        bands.append(0.0 if i == 0 else float(mag[min(i, n - 1)]))
    return tuple(bands)


def coverage_curve(probs: np.ndarray, truth: np.ndarray, thresholds: Any, bands: Any, multilabel: bool,
                   scales: Sequence[float] = CURVE_SCALES, reference: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Coverage against accuracy as the bands are scaled (`scales`, 1 = `bands` as given): per
    scale the share of decisions kept (single-label: records; multi-label: record-label pairs),
    the accuracy of the kept ones (decided == truth) and of all, and with `reference` (the float
    model's probabilities on the same records) the agreement of the kept decisions with it."""
    from edge_runtime.backends import decide

    truth = np.asarray(truth) > 0.5
    pred = decide(probs, thresholds, multilabel)
    ref = None if reference is None else decide(reference, thresholds, multilabel)
    b = np.zeros(pred.shape[1]) if bands is None else np.asarray(bands, dtype=np.float64)
    rows = []
    for s in scales:
        inc = inconclusive(probs, thresholds, b * float(s), multilabel)
        if multilabel:
            kept, correct = ~inc, pred == truth
            same = None if ref is None else pred == ref
        else:
            kept = ~inc.any(axis=1)
            correct = (pred == truth).all(axis=1)
            same = None if ref is None else (pred == ref).all(axis=1)
        n_kept = int(kept.sum())
        row = {"scale": float(s), "coverage": float(kept.mean()) if kept.size else float("nan"),
               "kept": n_kept, "of": int(kept.size),
               "accuracy_kept": float(correct[kept].mean()) if n_kept else float("nan"),
               "accuracy_all": float(correct.mean()) if correct.size else float("nan")}
        if same is not None:
            row["agreement_kept"] = float(same[kept].mean()) if n_kept else float("nan")
        rows.append(row)
    return rows
