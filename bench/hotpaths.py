"""Benchmark the teacher side's vectorised hot paths, each against a plain baseline; prints one JSON object.

    python bench/hotpaths.py [--repeats 5] [--baseline-resamples 100] [--out FILE]

The speed these paths must keep used to be asserted inside the tests (wall-clock bounds that fail
on a loaded machine); it is measured here instead. Each row times the project's function and a
baseline doing the same job the plain way, one after the other in the same run on one core (BLAS
and OpenMP pinned to 1 before numpy loads), best of `--repeats` (of at most 3 for the slow baselines):

- tokenizer: `train.models.text.HashTokenizer` on 256 ECG reports (its crc cache cleared before
  each run) vs the same reports lowercased and `str.split` (the floor of any Python tokenizer);
- synthetic: `train.data.synthetic.Synthetic.read` of one 10 s 12-lead 500 Hz record vs
  `neurokit2.ecg_simulate(method="multileads")` of the same length and rate (the ODE it replaces);
- bootstrap: `train.metrics.bootstrap_scores` (AUROC and PRAUC, 1000 resamples, 5 classes, 100
  records with tied scores) vs a loop calling scikit-learn's `roc_auc_score` and
  `average_precision_score` per resample and class (`--baseline-resamples` of them, scaled per resample).

Per row: `seconds` (ours), `baseline_seconds`, `speedup_vs_baseline` = baseline / ours (per unit of
work), `goal_seconds` (the bound the tests held) and `meets_goal`.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import emit  # noqa: E402  (bench/report.py, beside this script)

REPORTS = ("sinus rhythm. normal ECG", "atrial fibrillation with rapid ventricular response, QT 0.42 s",
           "left bundle branch block; inferior myocardial infarction, age undetermined")
N_REPORTS = 256
#: The wall-clock bounds the tests used to assert, per row (seconds per unit of work).
GOALS = {"tokenizer": 0.05, "synthetic": 0.1, "bootstrap": 2.0}


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Smallest wall time of `repeats` calls of fn, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def row(name: str, what: str, baseline: str, ours_s: float, base_s: float, unit: str) -> dict[str, Any]:
    return {"what": what, "baseline": baseline, "unit": unit, "seconds": ours_s, "baseline_seconds": base_s,
            "speedup_vs_baseline": base_s / ours_s, "goal_seconds": GOALS[name], "meets_goal": ours_s <= GOALS[name]}


def tokenizer(repeats: int) -> dict[str, Any]:
    from train.models.text import HashTokenizer, _crc

    reports = [f"{REPORTS[i % len(REPORTS)]} {i}" for i in range(N_REPORTS)]
    tok = HashTokenizer()

    def ours() -> None:
        _crc.cache_clear()
        tok(reports)

    ours_s = best_of(ours, repeats)
    base_s = best_of(lambda: [r.lower().split() for r in reports], repeats)
    return row("tokenizer", f"HashTokenizer()({N_REPORTS} reports), crc cache cleared", "str.lower().split() per report",
               ours_s, base_s, f"{N_REPORTS} reports")


def synthetic(repeats: int) -> dict[str, Any]:
    import neurokit2 as nk

    from train.data.synthetic import Synthetic

    ds = Synthetic(repeats, seed=9)
    ids = iter(ds.ids())
    ours_s = best_of(lambda: ds.read(next(ids)), repeats)  # a new record each time: nothing cached

    def base() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nk.ecg_simulate(duration=ds.duration_s, sampling_rate=int(ds.fs), method="multileads", random_state=0)

    base_s = best_of(base, max(1, min(repeats, 3)))  # ~1 s a call
    return row("synthetic", f"Synthetic.read of a {ds.duration_s:g} s 12-lead {ds.fs:g} Hz record",
               'neurokit2.ecg_simulate(method="multileads"), same length and rate', ours_s, base_s, "1 record")


def _noisy(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(np.float32)
    return y, np.round(rng.random((n, k)), 1) + 0.3 * y  # rounded: many tied scores


def bootstrap(repeats: int, baseline_resamples: int) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from train.metrics import bootstrap_scores

    n_boot = 1000
    y, s = _noisy(100, 5, seed=6)
    ours_s = best_of(lambda: bootstrap_scores(y, s, n_boot=n_boot), repeats)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y), size=(baseline_resamples, len(y)))

    def base() -> None:
        for rows in idx:
            for k in range(y.shape[1]):
                yk = y[rows, k]
                if 0 < yk.sum() < len(yk):
                    roc_auc_score(yk, s[rows, k])
                    average_precision_score(yk, s[rows, k])

    base_s = best_of(base, max(1, min(repeats, 3))) * n_boot / baseline_resamples
    return row("bootstrap", f"bootstrap_scores, AUROC and PRAUC, {n_boot} resamples, 5 classes, 100 records",
               f"scikit-learn per resample and class ({baseline_resamples} resamples timed, scaled to {n_boot})",
               ours_s, base_s, f"{n_boot} resamples")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (the best is kept)")
    p.add_argument("--baseline-resamples", type=int, default=100, help="resamples the scikit-learn loop times")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.baseline_resamples < 1:
        raise SystemExit("--repeats and --baseline-resamples: expected integers >= 1")
    rows = {"tokenizer": tokenizer(args.repeats), "synthetic": synthetic(args.repeats),
            "bootstrap": bootstrap(args.repeats, args.baseline_resamples)}
    result = {"benchmark": "hotpaths", "repeats": args.repeats, "rows": rows,
              "all_meet_goal": all(r["meets_goal"] for r in rows.values()),
              "env": {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
                      "threads": os.environ["OMP_NUM_THREADS"]}}
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
