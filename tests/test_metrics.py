"""train.metrics: bootstrap AUROC/PRAUC against sklearn and hand-built cases, thresholds, fairness gaps."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the 'train' extra (scikit-learn via neurokit2) is needed")
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from edge_runtime.errors import ConfigError  # noqa: E402
from train.metrics import (  # noqa: E402
    _bootstrap_class, _resample_counts, age_groups, aggregate_by_record, bootstrap_scores, fairness_gaps,
    meta_groups, operating_thresholds)


def _noisy(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(np.float32)
    return y, np.round(rng.random((n, k)), 1) + 0.3 * y  # rounded: many tied scores


def test_perfect_scores_give_auroc_one_with_a_degenerate_interval() -> None:
    y = np.array([[0], [0], [1], [1], [0], [1]] * 5, dtype=float)
    r = bootstrap_scores(y, y * 0.8 + 0.1, n_boot=200, label_names=["A"])
    for metric in ("auroc", "prauc"):
        entry = r[metric]["classes"]["A"]
        assert entry["value"] == 1.0 and entry["ci"] == [1.0, 1.0]
        assert entry["n_valid"] == 200 and entry["n_pos"] == 15
    assert r["auroc"]["macro"]["value"] == 1.0 and r["auroc"]["macro"]["ci"] == [1.0, 1.0]


def test_random_scores_are_at_chance_and_the_interval_contains_it() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((2000, 1)) < 0.4).astype(float)
    r = bootstrap_scores(y, rng.random((2000, 1)), n_boot=500, seed=1)
    entry = r["auroc"]["classes"]["0"]
    assert abs(entry["value"] - 0.5) < 0.04
    assert entry["ci"][0] < 0.5 < entry["ci"][1]
    assert entry["ci"][1] - entry["ci"][0] < 0.08
    pr = r["prauc"]["classes"]["0"]
    assert pr["ci"][0] < pr["prevalence"] < pr["ci"][1]  # chance level of PRAUC is the prevalence


def test_class_without_positives_is_none_with_a_reason_and_left_out_of_the_macro() -> None:
    y, s = _noisy(60, 3, seed=0)
    y[:, 1] = 0
    r = bootstrap_scores(y, s, n_boot=100, label_names=["a", "b", "c"])
    entry = r["auroc"]["classes"]["b"]
    assert entry["value"] is None and "no positive" in entry["reason"]
    assert r["auroc"]["macro"]["excluded"] == ["b"] and r["auroc"]["macro"]["classes"] == ["a", "c"]
    y[:, 1] = 1
    assert "no negative" in bootstrap_scores(y, s, n_boot=10)["prauc"]["classes"]["1"]["reason"]


def test_resamples_without_positives_are_skipped_and_counted() -> None:
    y = np.zeros((40, 1))
    y[0] = 1  # one positive: about (39/40)^40 = 36 % of resamples miss it
    s = np.linspace(0, 1, 40)[:, None]
    entry = bootstrap_scores(y, s, n_boot=400)["auroc"]["classes"]["0"]
    assert 200 < entry["n_valid"] < 320


def test_point_estimates_equal_sklearn_and_macro_is_the_mean_of_classes() -> None:
    y, s = _noisy(150, 4, seed=2)
    r = bootstrap_scores(y, s, n_boot=50)
    for k in range(4):
        assert r["auroc"]["classes"][str(k)]["value"] == pytest.approx(roc_auc_score(y[:, k], s[:, k]))
        assert r["prauc"]["classes"][str(k)]["value"] == pytest.approx(average_precision_score(y[:, k], s[:, k]))
    for metric in ("auroc", "prauc"):
        mean = np.mean([r[metric]["classes"][str(k)]["value"] for k in range(4)])
        assert r[metric]["macro"]["value"] == pytest.approx(mean)
        lo, hi = r[metric]["macro"]["ci"]
        assert lo <= r[metric]["macro"]["value"] <= hi


def test_vectorised_resample_metrics_equal_sklearn_on_the_same_resamples() -> None:
    y, s = _noisy(80, 1, seed=4)
    n_boot = 30
    per = _bootstrap_class(list(_resample_counts(np.random.default_rng(7), 80, n_boot)), y[:, 0] > 0.5, s[:, 0],
                           ("auroc", "prauc"))
    idx = np.random.default_rng(7).integers(0, 80, size=(n_boot, 80))  # the same draws
    for b in range(n_boot):
        yb, sb = y[idx[b], 0], s[idx[b], 0]
        assert per["auroc"][b] == pytest.approx(roc_auc_score(yb, sb), abs=1e-12)
        assert per["prauc"][b] == pytest.approx(average_precision_score(yb, sb), abs=1e-12)


def test_interval_narrows_with_more_records_and_is_deterministic_per_seed() -> None:
    widths = []
    for n in (100, 1600):
        rng = np.random.default_rng(0)
        y = (rng.random((n, 1)) < 0.5).astype(float)
        s = y + rng.normal(0, 1.0, (n, 1))
        ci = bootstrap_scores(y, s, n_boot=300)["auroc"]["classes"]["0"]["ci"]
        widths.append(ci[1] - ci[0])
    assert widths[1] < 0.5 * widths[0]
    y, s = _noisy(100, 2, seed=5)
    assert bootstrap_scores(y, s, seed=3, n_boot=100) == bootstrap_scores(y, s, seed=3, n_boot=100)
    assert bootstrap_scores(y, s, seed=3, n_boot=100) != bootstrap_scores(y, s, seed=4, n_boot=100)


def test_bootstrap_of_1000_resamples_5_classes_100_records() -> None:
    """(Its speed, against scikit-learn per resample, is measured by bench/hotpaths.py.)"""
    y, s = _noisy(100, 5, seed=6)
    r = bootstrap_scores(y, s, n_boot=1000)
    assert r["auroc"]["macro"]["n_valid"] == 1000


def test_bad_inputs_raise_config_errors() -> None:
    y, s = _noisy(20, 2, seed=0)
    with pytest.raises(ConfigError, match="shape"):
        bootstrap_scores(y, s[:, :1])
    with pytest.raises(ConfigError, match="metrics"):
        bootstrap_scores(y, s, metrics=("accuracy",))
    s[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        bootstrap_scores(y, s)


def test_aggregate_by_record_means_scores_and_maxes_labels() -> None:
    record = np.array([3, 3, 1, 1, 1])
    ids, mean = aggregate_by_record(np.array([[1.0], [3.0], [0.0], [3.0], [6.0]]), record)
    assert ids.tolist() == [1, 3] and mean[:, 0].tolist() == [3.0, 2.0]
    _, mx = aggregate_by_record(np.array([0, 1, 0, 0, 0]), record, reduce="max")
    assert mx.tolist() == [0.0, 1.0]


def test_operating_thresholds_youden_and_f1() -> None:
    # positives at 0.9, 0.8, 0.3; negatives at 0.7, 0.6, 0.5 and twenty at 0.1
    s = np.r_[0.9, 0.8, 0.3, 0.7, 0.6, 0.5, np.full(20, 0.1)][:, None]
    y = (np.arange(26) < 3).astype(float)[:, None]
    # youden: >= 0.3 gives TPR 1 at FPR 3/23 (J 0.87); >= 0.8 gives TPR 2/3 at FPR 0 (J 0.67)
    # each threshold lies half-way to the next lower score: same decisions, no score on the threshold
    youden = operating_thresholds(y, s, "youden")[0]
    assert youden == pytest.approx((0.3 + 0.1) / 2)
    assert ((s[:, 0] >= youden) == (s[:, 0] >= 0.3)).all()
    # f1: >= 0.8 gives precision 1, recall 2/3 (F1 0.8); >= 0.3 gives precision 1/2, recall 1 (0.67)
    f1 = operating_thresholds(y, s, "f1")[0]
    assert f1 == pytest.approx((0.8 + 0.7) / 2)
    assert ((s[:, 0] >= f1) == (s[:, 0] >= 0.8)).all()
    assert np.isnan(operating_thresholds(np.zeros((26, 1)), s)[0])
    with pytest.raises(ConfigError, match="youden"):
        operating_thresholds(y, s, "accuracy")


def test_fairness_gaps_are_exact_on_hand_built_groups() -> None:
    # group M: 10 positives (8 detected), 10 negatives (1 false alarm); F: 10 pos (5), 10 neg (4)
    y = np.r_[np.ones(10), np.zeros(10), np.ones(10), np.zeros(10)][:, None]
    pred = np.r_[np.arange(10) < 8, np.arange(10) < 1, np.arange(10) < 5, np.arange(10) < 4]
    sex = np.array(["M"] * 20 + ["F"] * 20, dtype=object)
    r = fairness_gaps(y, pred.astype(float)[:, None], np.array([0.5]), {"sex": sex}, label_names=["AFIB"])
    c = r["groupings"]["sex"]["classes"]["AFIB"]
    assert c["per_group"]["M"] == {"n_pos": 10, "n_neg": 10, "tpr": 0.8, "fpr": 0.1}
    assert c["per_group"]["F"] == {"n_pos": 10, "n_neg": 10, "tpr": 0.5, "fpr": 0.4}
    assert c["tpr_gap"]["value"] == pytest.approx(0.3) and c["tpr_gap"]["max_group"] == "M"
    assert c["fpr_gap"]["value"] == pytest.approx(0.3) and c["fpr_gap"]["max_group"] == "F"
    assert r["groupings"]["sex"]["n_missing"] == 0


def test_fairness_small_groups_and_missing_labels() -> None:
    y = np.r_[np.ones(12), np.zeros(12)][:, None]
    score = np.linspace(0, 1, 24)[:, None]
    sex = np.array((["M", "F", None] * 8), dtype=object)  # 8 records without a sex
    sex[:12][sex[:12] == "F"] = None  # F keeps no positives
    r = fairness_gaps(y, score, [0.5], {"sex": sex, "age": None}, min_count=3)
    g = r["groupings"]["sex"]
    assert g["n_missing"] == 12 and g["groups"] == ["F", "M"]
    c = g["classes"]["0"]
    assert c["per_group"]["F"]["n_pos"] == 0 and c["per_group"]["F"]["tpr"] is None
    assert c["tpr_gap"]["value"] is None and "need 2" in c["tpr_gap"]["reason"]
    assert c["fpr_gap"]["value"] is not None  # both groups hold >= 3 negatives
    assert r["groupings"]["age"]["value"] is None and "no age" in r["groupings"]["age"]["reason"]
    assert fairness_gaps(y, score, [np.nan], {"sex": sex})["groupings"]["sex"]["classes"]["0"]["threshold"] is None


def test_age_groups_bins_and_missing() -> None:
    out = age_groups([18, 39.9, 40, 59, 60, 79.5, 80, 95, None, float("nan"), -1])
    assert out.tolist() == ["<40", "<40", "40-59", "40-59", "60-79", "60-79", ">=80", ">=80", None, None, None]
    g = meta_groups([{"age": 50, "sex": "F"}, {"age": None, "sex": None}, {"sex": "X"}])
    assert g["sex"].tolist() == ["F", None, None] and g["age"].tolist() == ["40-59", None, None]
    assert meta_groups([{"device": "AliveCor"}]) == {"sex": None, "age": None}


# --------------------------------------------------------------------------- decisions and paired differences

def test_decision_scores_match_sklearn_and_the_challenge_definition() -> None:
    from sklearn.metrics import f1_score

    from train.metrics import decision_scores
    rng = np.random.default_rng(0)
    names = ("N", "A", "O", "~")
    true = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, true, rng.integers(0, 4, 300))
    y, p = np.eye(4)[true], np.eye(4)[pred]
    out = decision_scores(y, p, names, n_boot=200)
    per = f1_score(true, pred, average=None, labels=[0, 1, 2, 3])
    for k, name in enumerate(names):
        assert out["f1"]["classes"][name]["value"] == pytest.approx(per[k])
        lo, hi = out["f1"]["classes"][name]["ci"]
        assert lo <= per[k] <= hi
    assert out["challenge_f1"]["value"] == pytest.approx(per[:3].mean())  # noise is not scored
    assert out["accuracy"]["value"] == pytest.approx((true == pred).mean())
    sens = ((pred == 1) & (true == 1)).sum() / (true == 1).sum()
    assert out["sensitivity"]["classes"]["A"]["value"] == pytest.approx(sens)
    perfect = decision_scores(y, y, names, n_boot=50)
    assert perfect["challenge_f1"]["value"] == 1.0 and perfect["challenge_f1"]["ci"] == [1.0, 1.0]
    assert "challenge_f1" not in decision_scores(y, p, ("a", "b", "c", "d"), n_boot=10)


def test_paired_difference_is_zero_for_one_model_and_signed_for_two() -> None:
    from train.metrics import paired_difference
    rng = np.random.default_rng(1)
    y = (rng.random((200, 3)) < 0.3).astype(float)
    good = y + rng.normal(0, 0.5, y.shape)
    bad = y + rng.normal(0, 2.0, y.shape)
    same = paired_difference(y, good, good, n_boot=100)
    assert same["difference"] == 0.0 and same["ci"] == [0.0, 0.0]
    d = paired_difference(y, good, bad, n_boot=200)
    assert d["difference"] > 0 and d["ci"][0] > 0 and d["p_a_not_better"] == 0.0
    assert d["a"] > d["b"]
    with pytest.raises(ConfigError, match="metric"):
        paired_difference(y, good, bad, metric="accuracy")


def test_paired_difference_equals_the_resample_loop_with_sklearn() -> None:
    """The vectorised bootstrap scores exactly the resamples a loop over sklearn would (ties included)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from train.metrics import _ci, paired_difference
    rng = np.random.default_rng(1)
    y = (rng.random((60, 3)) < [0.3, 0.1, 0.05]).astype(float)
    a = np.round(y + rng.normal(0, 0.5, y.shape), 1)  # rounded: many tied scores
    b = np.round(y + rng.normal(0, 2.0, y.shape), 1)
    for metric, fn in (("auroc", roc_auc_score), ("prauc", average_precision_score)):
        r = np.random.default_rng(0)
        diffs = []
        for _ in range(200):
            idx = r.integers(0, len(y), len(y))
            if all(0 < y[idx, k].sum() < len(idx) for k in range(3)):
                diffs.append(np.mean([fn(y[idx, k], a[idx, k]) for k in range(3)])
                             - np.mean([fn(y[idx, k], b[idx, k]) for k in range(3)]))
        got = paired_difference(y, a, b, metric, n_boot=200)
        ci, n_valid = _ci(np.asarray(diffs), 0.95)
        assert got["n_valid"] == n_valid and 0 < n_valid < 200  # rare classes: some resamples skipped
        assert got["ci"] == pytest.approx(ci, abs=1e-12)
        assert got["a"] - got["b"] == pytest.approx(np.mean([fn(y[:, k], a[:, k]) - fn(y[:, k], b[:, k]) for k in range(3)]))


def test_paired_difference_of_decisions_f1_and_challenge_f1() -> None:
    from sklearn.metrics import f1_score

    from train.metrics import paired_difference
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 4, 300)
    y = np.eye(4)[truth]
    right = np.where(rng.random(300) < 0.9, truth, rng.integers(0, 4, 300))
    wrong = np.where(rng.random(300) < 0.6, truth, rng.integers(0, 4, 300))
    pa, pb = np.eye(4)[right], np.eye(4)[wrong]
    names = ("N", "A", "O", "~")
    d = paired_difference(y, pa, pb, "f1", n_boot=300, label_names=names)
    assert d["a"] == pytest.approx(f1_score(truth, right, average="macro"))
    assert d["difference"] > 0 and d["ci"][0] > 0
    c = paired_difference(y, pa, pb, "challenge_f1", n_boot=300, label_names=names)
    assert c["classes"] == ["N", "A", "O"]
    assert c["a"] == pytest.approx(np.mean(f1_score(truth, right, average=None)[:3]))
    same = paired_difference(y, pa, pa, "f1", n_boot=50, label_names=names)
    assert same["difference"] == 0 and same["ci"] == [0.0, 0.0]
    with pytest.raises(ConfigError, match="challenge_f1 needs"):
        paired_difference(y, pa, pb, "challenge_f1", n_boot=10, label_names=("a", "b", "c", "d"))


def test_calibration_error_by_hand() -> None:
    from train.metrics import calibration
    y = np.array([[1], [0], [0], [0], [0], [0], [0], [0], [0], [0]], dtype=float)
    exact = calibration(y, np.full((10, 1), 0.1), n_boot=50)  # 10 % predicted, 10 % observed
    assert exact["classes"]["0"]["ece"]["plugin"] == pytest.approx(0.0)
    assert exact["classes"]["0"]["ece"]["value"] == pytest.approx(0.0)  # bias-corrected, clipped at 0
    bins = exact["classes"]["0"]["bins"]
    assert bins["count"][1] == 10 and sum(bins["count"]) == 10 and bins["confidence"][0] is None
    assert bins["frequency"][1] == pytest.approx(0.1)
    over = calibration(y, np.full((10, 1), 0.9), n_boot=50)  # 90 % predicted, 10 % observed
    assert over["classes"]["0"]["ece"]["plugin"] == pytest.approx(0.8)
    # two bins: 0.2 predicted for 5 records with 0 positives, 1.0 (last bin) for 5 with 5
    y2 = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=float)[:, None]
    p2 = np.array([0.2] * 5 + [1.0] * 5)[:, None]
    two = calibration(y2, p2, label_names=["AF"], n_boot=200)
    assert two["classes"]["AF"]["ece"]["plugin"] == pytest.approx(0.5 * 0.2)
    assert two["classes"]["AF"]["bins"]["count"][-1] == 5
    lo, hi = two["macro"]["ci"]
    assert lo <= two["macro"]["value"] <= hi
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        calibration(y, np.full((10, 1), 1.5))


def test_ece_value_lies_inside_its_bias_corrected_interval_where_the_percentile_one_excludes_it() -> None:
    """A calibrated model (y ~ Bernoulli(p)): the plug-in ECE is only noise, resamples add more, so
    the percentile interval lies above the plug-in. The bias-corrected value 2 * plug-in - median
    sits inside the basic interval [2 * plug-in - q_hi, 2 * plug-in - q_lo], every class and macro."""
    from train.metrics import bias_corrected, calibration

    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, (300, 2))
    y = (rng.uniform(0, 1, (300, 2)) < p).astype(float)
    cal = calibration(y, p, ["a", "b"], n_boot=500)
    entries = [cal["classes"]["a"]["ece"], cal["classes"]["b"]["ece"], cal["macro"]]
    excluded = [e for e in entries if not e["percentile_ci"][0] <= e["plugin"] <= e["percentile_ci"][1]]
    assert excluded, "the case must be one where the percentile interval misses the plug-in"
    for e in entries:
        lo, hi = e["ci"]
        assert 0 <= lo <= e["value"] <= hi <= 1, e
        assert e["value"] < e["plugin"]  # the upward bias removed
        q_lo, q_hi = e["percentile_ci"]
        assert (lo, hi) == pytest.approx((max(0.0, 2 * e["plugin"] - q_hi), 2 * e["plugin"] - q_lo))
    # by hand: resamples at 0.3, 0.4, 0.5 around a plug-in of 0.3 (median 0.4)
    b = bias_corrected(0.3, np.array([0.3, 0.4, 0.5] * 10), level=0.5)
    assert b["value"] == pytest.approx(0.2) and b["plugin"] == 0.3
    q = np.percentile([0.3, 0.4, 0.5] * 10, [25, 75])
    assert b["ci"] == pytest.approx([0.6 - q[1], 0.6 - q[0]]) and b["percentile_ci"] == pytest.approx(list(q))
    assert bias_corrected(0.01, np.array([0.2, 0.3]))["value"] == 0.0  # clipped at 0, CI too
    assert bias_corrected(None, np.array([0.1]))["ci"] is None


def test_score_records_scores_record_means_and_decides_with_the_one_rule() -> None:
    """score_records: window scores averaged per record, labels OR-ed, then bootstrap_scores; with
    thresholds the decisions are edge_runtime.backends.decide's on the record scores."""
    from edge_runtime.backends import decide
    from train.metrics import decision_scores, score_records

    rng = np.random.default_rng(4)
    record = np.repeat(np.arange(30), 3)  # three windows per record
    truth = rng.integers(0, 3, 30)
    y = np.eye(3)[truth][record]
    p = rng.dirichlet(np.ones(3), len(record)) * 0.5 + 0.5 * y  # rows sum to 1, the true class raised
    names = ("a", "b", "c")
    ranking_only = score_records(p, y, record, names, n_boot=50)
    rec_p = p.reshape(30, 3, 3).mean(axis=1)
    assert ranking_only == {"ranking": bootstrap_scores(np.eye(3)[truth], rec_p, n_boot=50, label_names=names)}
    th = (0.5, 0.2, 0.5)  # b favoured: argmax(p / t) differs from the plain argmax on some records
    out = score_records(p, y, record, names, n_boot=50, thresholds=th, multilabel=False, reference=p[::-1].copy())
    dec = decide(rec_p, th, False)
    assert (dec.sum(axis=1) == 1).all() and (dec.argmax(1) != rec_p.argmax(1)).any()
    assert out["decisions"] == decision_scores(np.eye(3)[truth], dec, names, n_boot=50)
    same = (decide(p, th, False) == decide(p[::-1], th, False)).all(axis=1)
    assert out["agreement"]["windows"] == pytest.approx(same.mean()) and out["agreement"]["n_records"] == 30
    multi = score_records(p, y, record, names, n_boot=20, thresholds=th, multilabel=True)
    assert multi["decisions"] == decision_scores(np.eye(3)[truth], rec_p >= np.array(th), names, n_boot=20)
