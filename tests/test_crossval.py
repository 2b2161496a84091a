"""`ecg-edge cv` (distill.crossval): folds by hash, cross-fitted threshold choice, the chosen
configuration, int8 out-of-fold scores and bands, the final student and what export takes from it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distill.config import CvConfig
from distill.crossval import cross_fitted, decision_key, fold_of, group_key, thresholds_by_rule
from edge_runtime.backends import decide
from edge_runtime.errors import ConfigError
from train.metrics import decision_scores


def test_folds_come_from_the_hash_of_the_key_and_keep_a_patient_together() -> None:
    keys = [f"record:A{i:05d}" for i in range(2000)]
    a, b = fold_of(keys, 5), fold_of(list(reversed(keys)), 5)[::-1]
    assert (a == b).all()  # the order of the list plays no part
    assert set(a) == set(range(5)) and np.bincount(a).min() > 300  # about a fifth each
    assert (fold_of(keys[:100], 5) == a[:100]).all()  # adding records moves none
    assert group_key({"id": "7", "meta": {"patient_id": 15709}}) == "patient:15709"
    assert group_key({"id": "A00001", "meta": {"device": "AliveCor"}}) == "record:A00001"
    assert fold_of([group_key({"id": "1", "meta": {"patient_id": 3}})], 5) == \
        fold_of([group_key({"id": "2", "meta": {"patient_id": 3}})], 5)


def test_cv_config_is_checked() -> None:
    assert CvConfig().folds == 5 and CvConfig().pool == ("train", "val")
    with pytest.raises(ConfigError, match="cv.folds"):
        CvConfig(folds=1)
    with pytest.raises(ConfigError, match=r"cv.candidates\[1\]: unknown key 'epoch'"):
        CvConfig(candidates=({"epochs": 3}, {"epoch": 3}))
    with pytest.raises(ConfigError, match="cv.pool"):
        CvConfig(pool=("train", "holdout"))
    with pytest.raises(ConfigError, match="cv.max_abstain"):
        CvConfig(max_abstain=1.0)


def _noisy_single_label(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cls = rng.choice(4, size=n, p=[0.6, 0.1, 0.25, 0.05])
    z = rng.normal(size=(n, 4)) + 1.5 * np.eye(4)[cls] + np.array([0.8, 0, 0, 0])  # biased to N
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return p, np.eye(4)[cls]


def test_thresholds_by_rule_and_cross_fitting() -> None:
    labels = ("N", "A", "O", "~")
    p, y = _noisy_single_label(600, 0)
    assert thresholds_by_rule("argmax", p, y, labels, False) == (0.5,) * 4
    tuned = thresholds_by_rule("tuned", p, y, labels, False)
    f1 = lambda th: decision_scores(y, decide(p, th, False), labels, n_boot=1)["challenge_f1"]["value"]  # noqa: E731
    assert f1(tuned) >= f1((0.5,) * 4)  # tuned on these records, at least as good on them
    with pytest.raises(ConfigError, match="threshold rule 'youden'"):
        thresholds_by_rule("youden", p, y, labels, False)
    fold = fold_of([str(i) for i in range(len(p))], 3)
    pred = cross_fitted(p, y, fold, "tuned", labels, False)
    for f in range(3):  # each fold decided at thresholds chosen without it
        held = fold == f
        th = thresholds_by_rule("tuned", p[~held], y[~held], labels, False)
        assert (pred[held] == decide(p[held], th, False)).all()
    assert decision_key(labels) == "challenge_f1" and decision_key(("NORM", "MI")) == "f1"
    ml = thresholds_by_rule("youden", 1 / (1 + np.exp(-np.random.default_rng(1).normal(size=(200, 2)))),
                            np.random.default_rng(2).integers(0, 2, size=(200, 2)), ("a", "b"), True)
    assert len(ml) == 2 and all(0 < t < 1 for t in ml)


@pytest.mark.slow
def test_cv_chooses_on_out_of_fold_scores_and_export_ships_the_choice(chain: dict[str, Path], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """The whole command on the synthetic chain: 2 folds over the train records, two candidates;
    what cv.json says is recomputed from oof.npz; the final student's checkpoint carries the
    decision and `ecg-edge export` writes its thresholds and bands into the manifests."""
    import torch

    from ecg_edge.cli import main

    conf = tmp_path / "cv.toml"
    base = chain["config"].read_text()
    conf.write_text(base.replace("[train]\nepochs = 20", "[train]\nepochs = 4")
                    + '[cv]\nfolds = 2\npool = ["val"]\ncandidates = [{ epochs = 2 }, { epochs = 4 }]\n')
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # the part scored once may not be cross-validated: one error line, exit status 2
        assert main(["cv", "--teacher", str(chain["teacher"]), "--config", str(conf), "--out",
                     str(tmp_path / "bad")]) == 2
        assert "cv.pool ['val'] overlaps distill.eval_splits" in capsys.readouterr().err
        conf.write_text(conf.read_text().replace('pool = ["val"]', 'pool = ["train"]'))
        assert main(["cv", "--teacher", str(chain["teacher"]), "--config", str(conf), "--out", str(tmp_path / "cv"),
                     "--n-boot", "20"]) == 0
        # started again on the folds it finished: they are reused, not trained again, and choose the same
        import shutil

        shutil.copytree(tmp_path / "cv" / "folds", tmp_path / "again" / "folds")
        again = sorted((tmp_path / "again" / "folds").glob("candidate*/fold*/checkpoint.pt"))
        stamps = [f.stat().st_mtime_ns for f in again]
        assert len(again) == 4
        assert main(["cv", "--teacher", str(chain["teacher"]), "--config", str(conf), "--out", str(tmp_path / "again"),
                     "--n-boot", "20", "--no-int8", "--no-final"]) == 0
        assert [f.stat().st_mtime_ns for f in again] == stamps
    finally:
        torch.set_num_threads(before)
    res = json.loads((tmp_path / "cv" / "cv.json").read_text())
    rerun = json.loads((tmp_path / "again" / "cv.json").read_text())
    assert rerun["chosen"] == res["chosen"] and "final" not in rerun and "int8" not in rerun
    oof = np.load(tmp_path / "cv" / "oof.npz")
    key, labels = res["decision_metric"], tuple(res["labels"])
    assert len(res["candidates"]) == 2 and res["folds"] == 2 and res["pool"] == ["train"]
    assert res["records"] == len(oof["truth"]) == sum(res["records_per_fold"])
    # the choice is the best cross-fitted score over candidates, record rules and threshold rules
    rr_all, rules = res["record_rules"], res["rules"]
    several = rr_all == ["mean", "max"]  # some record has more than one window, else only the mean is scored
    assert rr_all in (["mean", "max"], ["mean"])
    combos = [(i, rr, r) for i in range(len(res["candidates"])) for rr in rr_all for r in rules]
    value = {(i, rr, r): res["candidates"][i]["record_rules"][rr][r][key]["value"] for i, rr, r in combos}
    best = max(combos, key=lambda c: (value[c], -c[0], -rr_all.index(c[1]), -rules.index(c[2])))
    ch = res["chosen"]
    assert (ch["candidate"], ch["record_rule"], ch["rule"]) == best
    # the paired differences: the chosen decisions against every other candidate, record rule and rule, once each
    assert len(res["paired"]) == len(combos) - 1
    assert sorted((d["candidate"], d["record_rule"], d["rule"]) for d in res["paired"]) == sorted(set(combos) - {best})
    for d in res["paired"]:  # A is always the chosen decisions, B the other's cross-fitted figure
        assert d["a"] == pytest.approx(value[best])
        assert d["b"] == pytest.approx(value[d["candidate"], d["record_rule"], d["rule"]])
    # the record scores of each candidate and record rule are its window scores aggregated by that rule
    suffix = {"mean": "", "max": "_max"}
    assert (oof["fp32"] == oof[f"fp32_candidate{ch['candidate']}{suffix[ch['record_rule']]}"]).all()
    if several:
        assert not np.allclose(oof["fp32_candidate0"], oof["fp32_candidate0_max"])
        assert (oof["fp32_candidate0_max"] >= oof["fp32_candidate0"] - 1e-6).all()
    # the shipped thresholds are the rule's on all out-of-fold record scores of the chosen candidate
    assert tuple(ch["thresholds"]) == pytest.approx(thresholds_by_rule(ch["rule"], oof["fp32"], oof["truth"], labels,
                                                                       False))
    # bands: from the int8 out-of-fold scores against the float ones
    from edge_runtime.abstain import choose_bands

    assert res["int8"]["bands"] == pytest.approx(list(choose_bands(oof["int8"], oof["fp32"],
                                                                   res["chosen"]["thresholds"], False)))
    same = (decide(oof["int8"], res["chosen"]["thresholds"], False)
            == decide(oof["fp32"], res["chosen"]["thresholds"], False)).all(axis=1).mean()
    assert res["int8"]["agreement_records"] == pytest.approx(same)
    # bench/int8_flips.py on this run: its "int8" variant redraws the cv's calibration windows and
    # finds the cv's own int8 agreement; every variant counts windows and records it compares
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import int8_flips

    flips = int8_flips.measure(tmp_path / "cv", chain["shards"])
    assert flips["matches_cv"] is True and flips["records"] == res["records"]
    assert set(flips["variants"]) == {"int8", "input rounding", "int8 weights", "int16 activations",
                                      "int8, float logits"}
    for v in flips["variants"].values():
        assert 0 <= v["records_differ"] <= flips["records"] and 0 <= v["windows_differ"] <= flips["windows"]
        assert v["record_agreement"] == pytest.approx(1 - v["records_differ"] / flips["records"])
        lo, hi = v["record_agreement_ci"]
        assert lo <= v["record_agreement"] <= hi
    assert [g["fold"] for g in flips["input_grid"]] == list(range(res["folds"]))
    assert all(g["scale"] > 0 and -128 <= g["zero_point"] <= 127 and 0 <= g["clipped_samples"] < 1
               for g in flips["input_grid"])
    # both candidates on the same records: the chosen one first reproduces `measure`, the other has no
    # cv int8 figure to match, and each paired difference is the difference of the two agreements
    other = 1 - res["chosen"]["candidate"]
    both = int8_flips.measure_candidates(tmp_path / "cv", chain["shards"], [res["chosen"]["candidate"], other])
    assert both["candidates"][0]["variants"] == flips["variants"] and both["candidates"][1]["matches_cv"] is None
    assert both["candidates"][1]["candidate_index"] == other and both["candidates"][1]["records"] == flips["records"]
    for k, d in both["paired"][0]["variants"].items():
        a, b = (c["variants"][k]["record_agreement"] for c in both["candidates"])
        assert d["difference"] == pytest.approx(b - a) and d["ci"][0] <= d["difference"] + 1e-12
        assert d["difference"] <= d["ci"][1] + 1e-12
    with pytest.raises(ConfigError, match="--candidate: 2; the cv at .* has candidates 0 to 1"):
        int8_flips.measure(tmp_path / "cv", chain["shards"], 2)
    # the final student trained on the pool only, scored on the evaluation splits, carries the decision
    from distill.distill import load_student

    _, meta = load_student(tmp_path / "cv" / "final" / "distilled")
    assert meta["train_splits"] == ["train"] and meta["decision"]["thresholds"] == res["chosen"]["thresholds"]
    assert meta["decision"]["record_rule"] == res["chosen"]["record_rule"]
    assert res["final"]["eval_splits"] == ["val", "test"]
    assert "decisions" in res["final"]["models"]["distilled"]
    # quantize (as export): the manifests carry the cross-validated thresholds and bands
    assert main(["quantize", "--student", str(tmp_path / "cv" / "final" / "distilled"), "--out",
                 str(tmp_path / "exp"), "--n-boot", "20"]) == 0
    m = json.loads((tmp_path / "exp" / "tflite-int8" / "manifest.json").read_text())
    assert m["thresholds"] == pytest.approx(res["chosen"]["thresholds"])
    assert m["abstain"] == pytest.approx(res["int8"]["bands"])
    assert m.get("record_rule", "mean") == res["chosen"]["record_rule"]
    assert "out-of-fold" in m["provenance"]["thresholds"]


def test_the_record_rule_is_chosen_with_the_candidate_and_the_threshold_rule() -> None:
    """Records of three windows where AF shows in one window only: under the mean it is averaged
    away, under the max it decides the record; `score_oof` scores both record rules (cross-fitted,
    per fold) and `choose` takes the max; with identical scores the earlier candidate, the mean and
    the earlier threshold rule win."""
    from distill.crossval import SINGLE_LABEL_RULES, choose, score_oof

    labels = ("N", "A", "O", "~")
    rng = np.random.default_rng(0)
    n_rec = 120
    rows = np.repeat(np.arange(n_rec), 3)
    cls = rng.integers(0, 4, n_rec)
    truth = np.eye(4)[cls]
    p = np.full((len(rows), 4), 0.05)
    p[np.arange(len(rows)), np.where(cls[rows] == 1, 0, cls[rows])] = 0.85  # AF records look normal...
    af_window = [3 * r + r % 3 for r in np.flatnonzero(cls == 1)]
    p[af_window] = [0.05, 0.95, 0.05, 0.05]  # ...but in one window
    fold = np.arange(n_rec) % 4
    views, scores, preds = score_oof(p, rows, truth, fold, ("mean", "max"), SINGLE_LABEL_RULES, labels, False, 20)
    assert set(views) == {"mean", "max"} and set(preds) == {(r, rr) for r in SINGLE_LABEL_RULES for rr in views}
    assert views["max"] == pytest.approx(p.reshape(n_rec, 3, 4).max(axis=1))
    assert views["mean"] == pytest.approx(p.reshape(n_rec, 3, 4).mean(axis=1))
    f1 = {rr: scores["record_rules"][rr]["argmax"]["challenge_f1"]["value"] for rr in views}
    assert f1["max"] == pytest.approx(1.0) and f1["mean"] < 0.8
    assert len(scores["record_rules"]["max"]["tuned"]["per_fold"]) == 4
    entry = {"record_rules": scores["record_rules"]}
    assert choose([entry], ("mean", "max"), ("argmax",), "challenge_f1") == (0, "max", "argmax")
    # tuned thresholds (A's lowered) rescue the mean here too: a tie, which goes to the mean
    assert scores["record_rules"]["mean"]["tuned"]["challenge_f1"]["value"] == pytest.approx(1.0)
    assert choose([entry], ("mean", "max"), SINGLE_LABEL_RULES, "challenge_f1") == (0, "mean", "tuned")
    # identical scores everywhere: the first of each
    same = {rr: {r: {"challenge_f1": {"value": 0.5}} for r in SINGLE_LABEL_RULES} for rr in ("mean", "max")}
    assert choose([{"record_rules": same}] * 2, ("mean", "max"), SINGLE_LABEL_RULES, "challenge_f1") == \
        (0, "mean", "tuned")
