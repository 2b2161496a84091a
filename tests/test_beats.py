"""Streaming R peaks, heart rate, AF episodes and window quality (edge_runtime.beats / .rhythm).

Real-data tests read MIT-BIH from ../shared/data (skipped with the reason when absent). Figures
asserted below were measured with `python bench/rpeaks_mitbih.py` (the same detector, 73-sample
chunks, which give the same peaks as a whole record); each assert leaves a small margin.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from edge_runtime.beats import RPeakDetector, heart_rate_bpm, rr_intervals
from edge_runtime.errors import ConfigError, SamplingRateError, SignalShapeError, SignalValueError
from edge_runtime.rhythm import AfDetector, rr_irregularity, sample_entropy, window_quality
from test_signal import _chunks  # noqa: E402  (the one random-chunking helper of the tests)

TOL_S = 0.150


def _match(ref_s: np.ndarray, det_s: np.ndarray) -> tuple[int, int, int]:
    """(TP, FN, FP) with a 150 ms window, each detection used once."""
    used = np.zeros(det_s.size, bool)
    tp = 0
    for t in ref_s:
        near = np.flatnonzero(~used & (np.abs(det_s - t) <= TOL_S))
        if near.size:
            used[near[np.argmin(np.abs(det_s[near] - t))]] = True
            tp += 1
    return tp, ref_s.size - tp, int((~used).sum())


def _synthetic(fs: float, seconds: float, rr_s: float = 0.8, polarity: float = 1.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """QRS-like spikes (R, then a smaller S) plus T waves, wander and noise; returns (x, R times)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(fs * seconds)) / fs
    r_times = np.arange(0.5, seconds - 0.5, rr_s)
    x = 0.3 * np.sin(2 * np.pi * 0.2 * t) + rng.normal(0, 0.01, t.size)
    for r in r_times:
        x += polarity * (np.exp(-((t - r) / 0.012) ** 2) - 0.3 * np.exp(-((t - r - 0.03) / 0.012) ** 2))
        x += 0.25 * np.exp(-((t - r - 0.25) / 0.05) ** 2)
    return x, r_times


# --- without data ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fs", [100, 130, 250, 360, 500, 1000])
@pytest.mark.parametrize("polarity", [1.0, -1.0])
def test_synthetic_beats_found_on_the_r_wave(fs: float, polarity: float) -> None:
    x, r_times = _synthetic(fs, 40, polarity=polarity)
    peaks = RPeakDetector(fs).process(x) / fs
    tp, fn, fp = _match(r_times, peaks)
    assert (fn, fp) == (0, 0)
    err = np.abs(peaks - r_times[np.argmin(np.abs(r_times[:, None] - peaks[None, :]), axis=0)])
    assert err.max() <= 1.5 / fs + 0.005  # on the R wave (either polarity), not on S or T


def test_flat_and_tiny_signals_give_no_beats() -> None:
    det = RPeakDetector(130)
    assert det.process(np.zeros(130 * 30)).size == 0
    det.reset()
    assert det.process(np.random.default_rng(0).normal(0, 0.005, 130 * 30)).size == 0


def test_latency_within_delay_s() -> None:
    fs = 130.0
    x, _ = _synthetic(fs, 30)
    det = RPeakDetector(fs)
    lags = []
    for i in range(x.size):  # one sample at a time: report time - R time
        lags += [(i - p) / fs for p in det.process(x[i:i + 1]) if p > 6 * fs]
    assert lags and max(lags) <= det.delay_s and det.delay_s < 0.5


def test_rr_and_heart_rate_definition() -> None:
    peaks = np.array([0, 100, 200, 310, 400])  # at 100 Hz: RR 1.0, 1.0, 1.1, 0.9 s
    np.testing.assert_allclose(rr_intervals(peaks, 100), [1.0, 1.0, 1.1, 0.9])
    assert heart_rate_bpm(peaks, 100, 0.0, 10.0) == pytest.approx(60.0)  # mean RR 1.0 s
    assert heart_rate_bpm(peaks, 100, 0.5, 3.2) == pytest.approx(60 / 1.05)  # beats at 1, 2, 3.1 s
    assert math.isnan(heart_rate_bpm(peaks, 100, 3.5, 3.9))  # one beat
    assert math.isnan(heart_rate_bpm(np.array([], np.int64), 100, 0, 10))


def test_af_detector_on_synthetic_rr() -> None:
    rng = np.random.default_rng(1)
    sinus = 0.8 + 0.02 * np.sin(np.arange(300) / 5)       # sinus arrhythmia, regular
    af = rng.uniform(0.4, 1.1, 300)                        # irregularly irregular
    beats = np.cumsum(np.concatenate([sinus, af, sinus]))
    det = AfDetector()
    closed = det.process(beats[:450]) + det.process(beats[450:])
    assert len(closed) == 1
    onset, offset = beats[300], beats[600]
    ep = closed[0]
    assert abs(ep.onset_s - onset) < 15 and abs(ep.offset_s - offset) < 15
    assert rr_irregularity(af[:32])["nrmssd"] > 0.1 > rr_irregularity(sinus[:32])["nrmssd"]
    assert sample_entropy(np.ones(20), 1, 0.01) == 0.0


def test_quality_flags_flat_saturated_and_noise() -> None:
    fs = 250.0
    x, _ = _synthetic(fs, 10, seed=3)
    clean = window_quality(x, fs)
    assert clean.usable and clean.ksqi > 5
    noisy = window_quality(x + np.random.default_rng(4).normal(0, 0.5, x.size), fs)
    assert noisy.noisy and not noisy.usable
    assert window_quality(np.full(x.size, 0.3), fs).flat
    assert window_quality(x * 12, fs).saturated
    assert window_quality(x, fs, saturated=True).saturated  # a flag computed upstream passes through


@pytest.mark.parametrize("call,error,text", [
    (lambda: RPeakDetector(360).process(np.array([0.0, 0.1, np.nan])), SignalValueError, "sample 2 is nan"),
    (lambda: RPeakDetector(360).process(np.zeros((2, 10))), SignalShapeError, "expected a 1-D chunk"),
    (lambda: RPeakDetector(360).process(np.array(["a", "b"])), SignalShapeError, "dtype"),
    (lambda: RPeakDetector(50), SamplingRateError, "RPeakDetector.fs: expected 100..1000 Hz"),
    (lambda: RPeakDetector(2000), SamplingRateError, "RPeakDetector.fs"),
    (lambda: RPeakDetector(float("nan")), SamplingRateError, "RPeakDetector.fs"),
    (lambda: rr_intervals([3, 2, 1], 100), SignalValueError, "strictly increasing"),
    (lambda: heart_rate_bpm(np.zeros((2, 2)), 100, 0, 1), SignalShapeError, "1-D array"),
    (lambda: AfDetector(window=4), ConfigError, "AfDetector.window"),
    (lambda: AfDetector().process([1.0, 0.5]), SignalValueError, "not after"),
    (lambda: AfDetector().process([1.0, np.inf]), SignalValueError, "finite"),
    (lambda: window_quality(np.zeros(100), 250), SignalShapeError, "at least 2 s"),
    (lambda: window_quality(np.zeros((2, 1000)), 250), SignalShapeError, "1-D window"),
    (lambda: window_quality(np.zeros(1000), 60), SamplingRateError, "window_quality.fs"),
])
def test_bad_input_raises_one_line_errors(call, error: type, text: str) -> None:
    with pytest.raises(error, match=text) as info:
        call()
    assert "\n" not in str(info.value)


# --- MIT-BIH ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mitdb(mitdb_root: Path):
    from train.data.mitdb import MitBih
    ds = MitBih(mitdb_root)
    cache: dict = {}

    def load(rid: str) -> tuple[np.ndarray, np.ndarray, list]:
        if rid not in cache:
            rec = ds.read(rid)
            x = rec.signal[rec.leads.index("MLII")].astype(np.float64)
            cache[rid] = (x, rec.labels["beats"]["sample"] / rec.fs, rec.labels["rhythm_episodes"])
        return cache[rid]
    return load


@pytest.mark.parametrize("fs", [360.0, 130.0])
def test_chunked_equals_whole_on_a_real_record(mitdb, fs: float) -> None:
    x, _, _ = mitdb("208")  # PVCs, fusion beats and noise
    x = x[: 360 * 150] if fs == 360 else resample_poly(x[: 360 * 150], 13, 36)
    det = RPeakDetector(fs)
    whole = det.process(x)
    det.reset()
    rng = np.random.default_rng(int(fs))
    chunked = np.concatenate([det.process(x[a:b]) for a, b in _chunks(rng, x.size)])
    assert whole.size > 150 and np.all(np.diff(whole) > 0)
    np.testing.assert_array_equal(whole, chunked)


# Measured (bench/rpeaks_mitbih.py), Se / +P in %: at 360 Hz and at 130 Hz.
MEASURED = {
    "100": ((99.956, 100.0), (99.956, 100.0)),
    "101": ((99.946, 99.839), (99.946, 99.839)),
    "103": ((100.0, 100.0), (100.0, 100.0)),
    "105": ((99.572, 98.349), (99.611, 98.274)),   # long noise bursts
    "119": ((100.0, 100.0), (100.0, 99.899)),      # ventricular bigeminy
    "200": ((99.885, 99.923), (99.885, 99.885)),
    "203": ((98.792, 99.292), (98.859, 99.359)),   # multiform PVCs, AF, noise: the hardest
    "208": ((99.526, 99.864), (99.492, 99.864)),   # PVCs and fusion beats
    "210": ((99.736, 99.924), (99.660, 99.773)),
    "228": ((99.951, 99.130), (99.951, 99.178)),
}


@pytest.mark.parametrize("fs", [360.0, 130.0])
def test_sensitivity_and_predictivity_on_ten_records(mitdb, fs: float) -> None:
    totals = np.zeros(3, int)
    for rid, figures in MEASURED.items():
        x, ref_s, _ = mitdb(rid)
        if fs != 360:
            x = resample_poly(x, 13, 36)
        tp, fn, fp = _match(ref_s, RPeakDetector(fs).process(x) / fs)
        se_min, ppv_min = figures[0 if fs == 360 else 1]
        assert 100 * tp / (tp + fn) >= se_min - 0.2, rid
        assert 100 * tp / (tp + fp) >= ppv_min - 0.2, rid
        totals += (tp, fn, fp)
    tp, fn, fp = totals
    assert tp / (tp + fn) >= 0.9955 and tp / (tp + fp) >= 0.9945  # measured 99.69 / 99.61 (360), 99.69 / 99.59 (130)


def test_heart_rate_within_2_bpm_on_a_non_paced_record(mitdb) -> None:
    x, ref_s, _ = mitdb("119")  # ventricular bigeminy stretches
    x130 = resample_poly(x, 13, 36)
    peaks = RPeakDetector(130).process(x130)
    ok = [abs(heart_rate_bpm(peaks, 130, a, a + 10) - heart_rate_bpm(ref_s * 360, 360, a, a + 10)) <= 2
          for a in range(0, int(x.size / 360) - 10, 10)]
    assert np.mean(ok) >= 0.97  # measured 0.989


@pytest.mark.parametrize("rid,t_end_s", [("201", 370.0), ("203", 270.0)])
def test_af_found_in_af_records(mitdb, rid: str, t_end_s: float) -> None:
    x, _, episodes = mitdb(rid)
    x = x[: int(t_end_s * 360)]
    ref = [(e["start"] / 360, min(e["end"] / 360, t_end_s)) for e in episodes
           if e["rhythm"] == "AFIB" and e["start"] / 360 < t_end_s]
    det = AfDetector()
    det.process(RPeakDetector(360).process(x) / 360)
    found = det.episodes + det.flush(t_end_s)
    covered = sum(max(0.0, min(b, e.offset_s) - max(a, e.onset_s)) for a, b in ref for e in found)
    assert covered >= 0.8 * sum(b - a for a, b in ref)


@pytest.mark.parametrize("rid", ["100", "103"])
def test_no_af_in_sinus_records(mitdb, rid: str) -> None:
    x, _, _ = mitdb(rid)
    det = AfDetector()
    assert det.process(RPeakDetector(360).process(x) / 360) == []
    assert not det.in_af


def test_quality_flags_a_noise_burst_in_a_real_record(mitdb) -> None:
    x, _, _ = mitdb("100")
    win = x[360 * 60: 360 * 70].copy()
    assert window_quality(win, 360).usable
    win[360 * 3: 360 * 8] += np.random.default_rng(5).normal(0, 0.5, 360 * 5)  # 5 s of Gaussian noise
    q = window_quality(win, 360)
    assert q.noisy and not q.usable


def test_final_until_is_a_promise_kept(mitdb_root) -> None:
    """No peak is ever reported before a `final_until` the detector already announced."""
    from train.data.mitdb import MitBih

    x = MitBih(mitdb_root).read("203").lead("MLII")[: 360 * 120].astype(np.float64)
    det = RPeakDetector(360.0)
    promised, later_violations, n = 0, 0, 0
    for i in range(0, x.size, 73):
        peaks = det.process(x[i:i + 73])
        later_violations += int((peaks < promised).sum())
        n += peaks.size
        assert det.final_until >= promised or det.final_until == 0
        promised = max(promised, det.final_until)
    assert n > 100 and later_violations == 0
    assert x.size - promised < 3 * 360  # finality trails the input by well under 3 s


def test_vectorised_welch_equals_scipy() -> None:
    from scipy.signal import welch

    from edge_runtime.rhythm import welch_psd

    x = np.random.default_rng(3).normal(size=950)
    for nper in (200, 201, 950):
        f_ref, p_ref = welch(x, fs=100.0, nperseg=nper)
        f, p = welch_psd(x, 100.0, nper)
        np.testing.assert_allclose(f, f_ref)
        np.testing.assert_allclose(p, p_ref, rtol=1e-10)
