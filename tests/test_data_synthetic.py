"""The synthetic 12-lead generator: API, determinism, and the physiology each label claims.

Physical properties are measured from the signals the way one would measure a real ECG (R
peaks with neurokit2 on lead II, RR statistics, beat-locked averages, slope-based QRS limits),
never read back from the generator, except to compare a measurement with its nominal value.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.integrate
from scipy.signal import resample_poly, welch

nk = pytest.importorskip("neurokit2", reason="the 'synthetic' or 'train' extra (neurokit2) generates the records")
from neurokit2.ecg.ecg_simulate import _ecg_simulate_derivsecgsyn  # noqa: E402

from edge_runtime.errors import ConfigError, DatasetError  # noqa: E402
from edge_runtime.spec import STANDARD_LEADS  # noqa: E402
from train.data.synthetic import (CONDITIONS, Synthetic, af_r_times, ecgsyn_relaxation,  # noqa: E402
                                  fibrillatory_waves, sinus_r_times, wave_trains)

N_PER_CONDITION = 5
INDEPENDENT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


# -- measurement helpers ----------------------------------------------------------------------

def r_peaks(rec) -> np.ndarray:
    """R-peak samples from lead II, minus those within 0.25 s of either end (neurokit2 cleans
    with zero-phase filters whose edge transients can pass for a peak there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peaks = np.asarray(nk.ecg_peaks(rec.lead("II"), sampling_rate=rec.fs)[1]["ECG_R_Peaks"])
    edge = int(0.25 * rec.fs)
    return peaks[(peaks >= edge) & (peaks < rec.signal.shape[1] - edge)]


def rr_s(rec) -> np.ndarray:
    return np.diff(r_peaks(rec)) / rec.fs


def p_window_energy(rec) -> float | None:
    """Mean-square (mV^2) of the R-locked average of lead II 250-120 ms before R, over beats
    whose preceding RR is >= 0.6 s (so the previous T wave has ended): beat-locked atrial
    activity. Activity not locked to R (f-waves, noise) averages out. None: < 3 such beats."""
    fs, x, r = rec.fs, rec.lead("II").astype(float), r_peaks(rec)
    a, b = int(0.25 * fs), int(0.12 * fs)
    segs = [x[p - a:p - b] for p, rr in zip(r[1:], np.diff(r) / fs) if rr >= 0.6 and p >= a]
    if len(segs) < 3:
        return None
    avg = np.mean(segs, axis=0)
    return float(np.mean((avg - avg.mean()) ** 2))


def qrs_ms(rec) -> float:
    """Median global QRS duration: first to last sample, within R-150..R+200 ms, where the
    spatial velocity of I, II, V1-V6 exceeds 15 % of its peak (needs a noise-free record: the
    derivative of white noise would cross any slope threshold)."""
    fs = rec.fs
    sig = np.stack([rec.lead(n) for n in INDEPENDENT]).astype(float)
    speed = np.sqrt(((np.gradient(sig, axis=1) * fs) ** 2).sum(axis=0))
    widths = []
    for p in r_peaks(rec)[1:-1]:
        w = speed[p - int(0.15 * fs):p + int(0.2 * fs)]
        above = np.flatnonzero(w > 0.15 * w.max())
        widths.append((above[-1] - above[0]) / fs * 1e3)
    return float(np.median(widths))


def qrst_residual(rec, lead: str) -> np.ndarray:
    """The lead with its average R-locked QRST (R-300..R+450 ms) subtracted at every beat."""
    fs, x = rec.fs, rec.lead(lead).astype(float).copy()
    a, b = int(0.3 * fs), int(0.45 * fs)
    peaks = [p for p in r_peaks(rec) if a <= p <= x.size - b]
    template = np.mean([x[p - a:p + b] for p in peaks], axis=0)
    for p in peaks:
        x[p - a:p + b] -= template
    return x


def by_condition(ds: Synthetic, records: dict) -> dict[str, list]:
    out: dict[str, list] = {c: [] for c in ds.label_names}
    for rec in records.values():
        out[rec.labels["condition"]].append(rec)
    return out


@pytest.fixture(scope="module")
def clean():
    ds = Synthetic(N_PER_CONDITION * len(CONDITIONS), seed=7, noise_mv=0.0)
    return ds, by_condition(ds, {rid: ds.read(rid) for rid in ds.ids()})


@pytest.fixture(scope="module")
def noisy():
    ds = Synthetic(N_PER_CONDITION * len(CONDITIONS), seed=7)  # default 0.01 mV noise
    return ds, by_condition(ds, {rid: ds.read(rid) for rid in ds.ids()})


# -- API ----------------------------------------------------------------------------------------

def test_record_contract():
    ds = Synthetic(10, seed=1)
    assert (ds.name, ds.multilabel, ds.label_names, len(ds)) == ("synthetic", False, CONDITIONS, 10)
    rec = ds.read("syn_000003")
    assert rec.signal.dtype == np.float32 and rec.signal.shape == (12, 5000)
    assert rec.leads == STANDARD_LEADS and rec.fs == 500.0
    assert rec.source == "synthetic:seed=1:index=3"
    lab = rec.labels
    assert lab["condition"] == CONDITIONS[3]
    assert lab["target"].dtype == np.float32 and lab["target"].sum() == 1.0
    assert ds.label_names[int(np.argmax(lab["target"]))] == lab["condition"]
    assert f"heart rate {round(lab['heart_rate_bpm'])} bpm" in lab["report"]
    assert lab["report"].startswith("Sinus tachycardia") and lab["report"].endswith(".")
    assert ds.labels("syn_000003")["report"] == lab["report"]
    assert [r.record_id for r in ds] == ds.ids()


def test_reports_name_the_condition():
    ds = Synthetic(5, seed=2)
    starts = {"NORM": "Sinus rhythm", "AFIB": "Atrial fibrillation", "SBRAD": "Sinus bradycardia",
              "STACH": "Sinus tachycardia", "WQRS": "Sinus rhythm"}
    for rid in ds.ids():
        lab = ds.labels(rid)
        assert lab["report"].startswith(starts[lab["condition"]])
    assert "wide QRS" in ds.labels("syn_000004")["report"]
    assert "no P waves" in ds.labels("syn_000001")["report"]


def test_conditions_are_balanced_and_a_subset_can_be_chosen():
    ds = Synthetic(200)
    counts = {c: 0 for c in CONDITIONS}
    for rid in ds.ids():
        counts[ds.labels(rid)["condition"]] += 1
    assert set(counts.values()) == {40}
    two = Synthetic(4, conditions=("AFIB", "NORM"))
    assert two.label_names == ("AFIB", "NORM")
    assert [two.labels(r)["condition"] for r in two.ids()] == ["AFIB", "NORM"] * 2
    assert two.read("syn_000000").labels["target"].tolist() == [1.0, 0.0]


def test_splits_are_disjoint_80_10_10_blocks_and_balanced():
    ds = Synthetic(200)
    train, val, test = ds.ids("train"), ds.ids("val"), ds.ids("test")
    assert (len(train), len(val), len(test)) == (160, 20, 20)
    assert train + val + test == ds.ids() and not set(train) & set(val) | set(val) & set(test)
    for split in (val, test):
        conds = [ds.labels(r)["condition"] for r in split]
        assert {conds.count(c) for c in CONDITIONS} == {4}
    with pytest.raises(ConfigError, match="'train', 'val' or 'test'"):
        ds.ids("validation")


@pytest.mark.parametrize("kwargs, field", [
    ({"n_records": 0}, "n_records"), ({"n_records": 2.5}, "n_records"),
    ({"fs": 50.0}, "fs"), ({"fs": 2000}, "fs"), ({"fs": float("nan")}, "fs"),
    ({"duration_s": 1.5}, "duration_s"), ({"noise_mv": -0.1}, "noise_mv"),
    ({"seed": -1}, "seed"), ({"conditions": ("NORM", "MI")}, "conditions"),
    ({"conditions": ()}, "conditions"), ({"conditions": ("NORM", "NORM")}, "conditions"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"Synthetic.{field}: expected"):
        Synthetic(**kwargs)


@pytest.mark.parametrize("rid", ["syn_000010", "syn_3", "000003", "syn_-00001", 3])
def test_unknown_record_id(rid):
    with pytest.raises(DatasetError, match="syn_NNNNNN"):
        Synthetic(10).read(rid)


# -- determinism and speed ----------------------------------------------------------------

def test_same_seed_is_bit_identical_and_any_record_regenerates_alone():
    a, b = Synthetic(12, seed=5), Synthetic(300, seed=5)
    walked = {rec.record_id: rec for rec in a}
    for rid in reversed(a.ids()):  # alone, in another order, from a differently sized set
        rec = b.read(rid)
        assert rec.signal.tobytes() == walked[rid].signal.tobytes()
        assert rec.meta == walked[rid].meta and rec.labels["report"] == walked[rid].labels["report"]
    other = Synthetic(12, seed=6).read("syn_000004")
    assert not np.allclose(other.signal, walked["syn_000004"].signal, atol=0.05)


def test_sampling_rate_changes_only_the_sampling():
    """The same heart at 100 Hz equals the 500 Hz record decimated with an anti-alias filter:
    the model is band-limited enough to be sampled directly at 100 Hz without aliasing."""
    hi = Synthetic(5, seed=4, fs=500, noise_mv=0.0)
    lo = Synthetic(5, seed=4, fs=100, noise_mv=0.0)
    for rid in hi.ids():
        ref = resample_poly(hi.read(rid).signal.astype(float), 1, 5, axis=1)
        got = lo.read(rid).signal
        assert got.shape == (12, 1000)
        assert np.abs(got - ref)[:, 50:-50].max() < 0.02  # mV, QRS peaks ~1 mV
        assert lo.read(rid).meta == hi.read(rid).meta


def test_generation_gives_finite_12_lead_records_of_the_asked_length():
    """(Its speed, against neurokit2's multileads ODE, is measured by bench/hotpaths.py.)"""
    ds = Synthetic(25, seed=9)
    for rid in ds.ids():
        x = ds.read(rid).signal
        assert x.shape == (12, 5000) and np.isfinite(x).all()  # 10 s at 500 Hz


# -- physiology ---------------------------------------------------------------------------

def test_heart_rate_from_r_peaks(noisy):
    ds, recs = noisy
    for cond, lo, hi in (("NORM", 60, 100), ("SBRAD", 30, 60), ("STACH", 100, 200),
                         ("WQRS", 60, 100)):
        for rec in recs[cond]:
            hr = 60.0 / float(np.mean(rr_s(rec)))
            assert lo < hr < hi, (cond, hr)
            assert abs(hr - rec.labels["heart_rate_bpm"]) < 2.0, (cond, hr)


def test_af_rr_is_irregular(noisy):
    """NORM's RR CV is about hr_std / hr <= 3 / 65 < 0.05; AF's is drawn in 0.18-0.32, and a
    10 s sample of 10-20 intervals stays above 0.08."""
    _, recs = noisy
    cv = {c: [float(np.std(rr) / np.mean(rr)) for rr in map(rr_s, recs[c])] for c in recs}
    assert max(cv["NORM"]) < 0.06 and min(cv["AFIB"]) > 0.08
    assert np.median(cv["AFIB"]) > 4 * np.median(cv["NORM"])


def test_rr_generators_af_uncorrelated_sinus_correlated():
    rng = np.random.default_rng(0)
    rr = np.diff(af_r_times(0.0, 1500.0, 90.0, 0.2, rng))
    assert rr.min() > 0.3 and abs(60 / rr.mean() - 90) < 2
    assert abs(rr.std() / rr.mean() - 0.2) < 0.02
    assert abs(np.corrcoef(rr[:-1], rr[1:])[0, 1]) < 0.1  # ~2000 intervals: SD of r1 ~ 0.02
    sinus = np.diff(sinus_r_times(0.0, 300.0, 70.0, 3.0, np.random.default_rng(0)))
    assert np.corrcoef(sinus[:-1], sinus[1:])[0, 1] > 0.3  # ECGSYN's LF/HF modulation


def test_no_p_waves_in_af(noisy):
    _, recs = noisy
    norm = [p_window_energy(r) for r in recs["NORM"]]
    af = [e for e in map(p_window_energy, recs["AFIB"]) if e is not None]
    assert len(af) >= 2 and None not in norm
    assert max(af) < min(norm)
    assert np.median(norm) > 10 * np.median(af)


def test_af_has_f_waves_at_the_drawn_rate_strongest_in_v1(clean):
    ds, recs = clean
    for rec in recs["AFIB"]:
        f0 = ds.plan(rec.record_id).atrial[0]
        power = {}
        for lead in STANDARD_LEADS:
            f, pxx = welch(qrst_residual(rec, lead), fs=rec.fs, nperseg=int(4 * rec.fs))
            band = (f >= 3) & (f <= 12)
            if lead == "V1":
                assert abs(f[band][np.argmax(pxx[band])] - f0) <= 0.5
            power[lead] = pxx[(f > f0 - 1) & (f < f0 + 1)].sum()
        assert max(power, key=power.get) == "V1"


def test_fibrillatory_wave_model():
    t = np.arange(0, 20, 1 / 500)
    x = fibrillatory_waves(t, (6.0, 0.1, 0.1, 0.2, 0.3, 0.1, 0.0, 0.0, 0.0))
    f, pxx = welch(x, fs=500, nperseg=4000)
    assert abs(f[np.argmax(pxx)] - 6.0) < 0.3
    assert 0.07 < np.abs(x).max() < 0.1 * 1.3 * 1.05 and abs(x.mean()) < 0.005


def test_qrs_width(clean):
    ds, recs = clean
    for cond, recs_c in recs.items():
        for rec in recs_c:
            width = qrs_ms(rec)
            if cond == "WQRS":
                assert width >= 120, width
            else:
                assert width < 110, (cond, width)  # rate-independent: SBRAD/STACH too
            assert abs(width - ds.plan(rec.record_id).qrs_ms) < 15


def test_amplitudes_are_plausible(noisy):
    _, recs = noisy
    for rec in (r for rs in recs.values() for r in rs):
        ii = rec.lead("II")
        r_amp = float(np.median(ii[r_peaks(rec)]) - np.median(ii))
        assert 0.5 < r_amp < 3.0, r_amp
        assert np.abs(rec.signal).max() < 4.0
        avr = rec.lead("aVR")  # normal axis: QRS mostly negative in aVR
        assert np.median(avr[r_peaks(rec)]) < np.median(avr)


def test_limb_leads_obey_einthoven_and_goldberger(noisy):
    _, recs = noisy
    for rec in (r for rs in recs.values() for r in rs):
        i, ii = rec.lead("I").astype(float), rec.lead("II").astype(float)
        for lead, expected in (("III", ii - i), ("aVR", -(i + ii) / 2),
                               ("aVL", i - ii / 2), ("aVF", ii - i / 2)):
            assert np.abs(rec.lead(lead) - expected).max() < 1e-5, lead


def test_neurokit2_multileads_is_not_einthoven_consistent():
    """Why the limb leads are derived here: neurokit2 rescales each lead on its own."""
    df = nk.ecg_simulate(duration=4, sampling_rate=100, method="multileads", noise=0,
                         random_state=0)
    assert np.abs(df["III"] - (df["II"] - df["I"])).max() > 0.2


def test_closed_form_matches_neurokit2_ecgsyn_ode():
    """ECGSYN's own equations (neurokit2's derivative, solved tightly) at 60 bpm with its
    default wave parameters equal our Gaussians + relaxation once initial states have decayed."""
    fs, dur = 250, 10.0
    ti = np.deg2rad([-70, -15, 0, 15, 100])
    ai = np.array([1.2, -5, 30, -7.5, 0.75])
    bi = np.array([0.25, 0.1, 0.1, 0.1, 0.4])
    t = np.arange(int(dur * fs)) / fs
    rr = np.ones(t.size + 1)

    def solve(a):
        fun = lambda tt, x: _ecg_simulate_derivsecgsyn(tt, x, rr, ti, fs, a, bi)  # noqa: E731
        return scipy.integrate.solve_ivp(fun, (0, t[-1]), [1, 0, 0.04], t_eval=t,
                                         rtol=1e-8, atol=1e-10).y[2]

    z_ode = solve(ai) - solve(0 * ai)  # the waves' response alone
    w, beats = 2 * np.pi, np.arange(0.0, dur + 1)
    trains = wave_trains(t, beats, np.tile(ti / w, (beats.size, 1)),
                         np.tile(bi / w, (beats.size, 1)))
    z = ecgsyn_relaxation((ai * bi ** 2 / w) @ trains, fs)
    late = t >= 7.0
    assert np.abs(z - z_ode)[late].max() < 0.005 * np.ptp(z_ode[late])


def test_metadata_missing_about_ten_percent_and_never_invented():
    ds = Synthetic(200, seed=11, fs=100)
    metas = [ds.read(rid).meta for rid in ds.ids()]
    for key, ok in (("age", lambda v: isinstance(v, int) and 18 <= v <= 90),
                    ("sex", lambda v: v in ("M", "F")),
                    ("height", lambda v: 130 < v < 215), ("weight", lambda v: 35 < v < 200)):
        values = [m[key] for m in metas]
        missing = sum(v is None for v in values) / len(values)
        assert 0.05 <= missing <= 0.16, (key, missing)  # binomial(200, 0.1): SD 0.021
        assert all(ok(v) for v in values if v is not None), key
    ages = [m["age"] for m in metas if m["age"] is not None]
    assert np.std(ages) > 15  # drawn, not a constant default


def test_follows_the_dataset_protocol():
    from train.data.sources import DataConfig, Dataset, open_dataset
    ds = open_dataset(DataConfig(n_records=5, seed=3, fs=250.0))
    assert isinstance(ds, Synthetic) and isinstance(ds, Dataset)
    assert ds.read("syn_000001").signal.shape == (12, 2500)
