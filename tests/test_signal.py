"""The one signal contract: chunked == whole, filter specs, resampling, quality flags, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.errors import (
    ConfigError, EmptySignalError, SamplingRateError, SignalShapeError, SignalValueError, UnknownLeadError,
)
from edge_runtime.filters import FilterDesign
from edge_runtime.signal import Preprocessor, PreprocessConfig, Windows
from edge_runtime.spec import STANDARD_LEADS, SignalSpec


def _chunks(rng: np.random.Generator, n: int):
    """Random chunk sizes: many 1-sample chunks, some up to 300 samples."""
    i = 0
    while i < n:
        size = 1 if rng.random() < 0.3 else int(rng.integers(2, 300))
        yield i, min(n, i + size)
        i += size


def _ecg_like(rng: np.random.Generator, n_leads: int, fs: float, seconds: float) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    beats = np.exp(-((t[None, :] % 0.8) - 0.4) ** 2 / 2e-4) * rng.uniform(0.5, 2.0, (n_leads, 1))
    wander = 0.4 * np.sin(2 * np.pi * 0.2 * t)[None, :] + rng.normal(0, 1.0, (n_leads, 1))
    return beats + wander + rng.normal(0, 0.02, (n_leads, t.size))


@pytest.mark.parametrize("fs_in,n_leads", [(130, 1), (250, 1), (300, 1), (360, 2), (500, 12), (1000, 1), (100, 12)])
def test_chunked_equals_whole(fs_in: float, n_leads: int) -> None:
    rng = np.random.default_rng(fs_in + n_leads)
    leads = STANDARD_LEADS[:n_leads]
    cfg = PreprocessConfig(notch_hz=50 if fs_in > 100 else None, hop_s=2.5)
    pre = Preprocessor(cfg, fs_in, leads)
    x = _ecg_like(rng, n_leads, fs_in, 31.7)
    x[0, int(fs_in * 3): int(fs_in * 3.5)] = 12.0  # saturated burst: flags must match too
    whole = pre.process_record(x)
    parts = [pre.process(x[:, a:b]) for a, b in _chunks(rng, x.shape[1])]
    chunked = Windows.concat(parts)
    n_out = -(-x.shape[1] * 100 // fs_in)  # ceil: outputs whose newest input has arrived
    assert len(whole) == (n_out - 1000) // 250 + 1
    assert whole.data.shape == chunked.data.shape
    assert np.abs(whole.data - chunked.data).max() <= 1e-5
    np.testing.assert_array_equal(whole.start, chunked.start)
    np.testing.assert_array_equal(whole.saturated, chunked.saturated)
    np.testing.assert_array_equal(whole.flat, chunked.flat)
    assert whole.saturated[:, 0].any() and not whole.saturated[:, 1:].any()


def test_filtered_stream_equals_whole_and_state_resets() -> None:
    rng = np.random.default_rng(7)
    pre = Preprocessor(PreprocessConfig(), 360, ("MLII",))
    x = _ecg_like(rng, 1, 360, 20)
    whole, _ = pre.filter(x)
    pre.reset()
    chunked = np.concatenate([pre.filter(x[:, a:b])[0] for a, b in _chunks(rng, x.shape[1])], axis=1)
    assert whole.shape == (1, 2000)
    assert np.abs(whole - chunked).max() <= 1e-9


def _tone_gain_db(cfg: PreprocessConfig, fs_in: float, freq: float, seconds: float = 60, settle_s: float = 20) -> float:
    t = np.arange(int(fs_in * seconds)) / fs_in
    x = np.sin(2 * np.pi * freq * t)[None, :]
    y, _ = Preprocessor(cfg, fs_in, ("II",)).filter(x)
    y = y[0, int(settle_s * cfg.fs_out):]
    return 20 * np.log10(np.sqrt(np.mean(y ** 2)) / np.sqrt(0.5))


@pytest.mark.parametrize("mains", [50, 60])
def test_notch_removes_mains_by_30_db(mains: int) -> None:
    cfg = PreprocessConfig(fs_out=500, highpass_hz=None, lowpass_hz=None, notch_hz=mains)
    assert _tone_gain_db(cfg, 500, mains) <= -30
    assert abs(_tone_gain_db(cfg, 500, 10)) < 0.2  # the ECG band passes


def test_baseline_wander_removed_by_20_db() -> None:
    cfg = PreprocessConfig(lowpass_hz=None)
    assert _tone_gain_db(cfg, 500, 0.1, seconds=200, settle_s=60) <= -20
    assert abs(_tone_gain_db(cfg, 500, 5.0)) < 0.2


def test_resampling_360_to_100_keeps_10_hz_and_suppresses_aliases() -> None:
    cfg = PreprocessConfig(highpass_hz=None, lowpass_hz=None)
    gain = 10 ** (_tone_gain_db(cfg, 360, 10.0, seconds=30, settle_s=5) / 20)
    assert abs(gain - 1) <= 0.01
    for freq in (50.0, 55.0, 70.0, 90.0, 130.0, 170.0):  # would alias to 50, 45, 30, 10, 30, 30 Hz
        assert _tone_gain_db(cfg, 360, freq, seconds=30, settle_s=5) <= -40, freq


def test_default_chain_passes_ecg_band() -> None:
    cfg = PreprocessConfig()
    for freq in (1.0, 5.0, 15.0):
        assert abs(_tone_gain_db(cfg, 130, freq, seconds=40, settle_s=10)) < 0.5


def test_resample_delay_matches_measured_lag() -> None:
    cfg = PreprocessConfig(fs_out=100, highpass_hz=None, lowpass_hz=None)
    pre = Preprocessor(cfg, 500, ("I",))
    x = np.zeros((1, 5000))
    x[0, 2500] = 1.0
    y, _ = pre.filter(x)
    peak_s = np.argmax(y[0]) / 100
    assert abs(peak_s - (5.0 + pre.delay_s)) <= 0.011


def test_windows_are_normalised_per_window_only() -> None:
    rng = np.random.default_rng(3)
    pre = Preprocessor(PreprocessConfig(hop_s=10), 500, ("I", "II"))
    x = _ecg_like(rng, 2, 500, 60)
    a = pre.process_record(x)
    x2 = x.copy()
    x2[:, 40 * 500:] *= 7.0  # scale only the last 20 s
    b = pre.process_record(x2)
    np.testing.assert_allclose(a.data[:3], b.data[:3], atol=1e-6)  # windows before 30 s unchanged
    assert np.allclose(a.data.mean(axis=2), 0, atol=1e-4)
    assert np.allclose(a.data.std(axis=2), 1, atol=1e-3)
    raw = Preprocessor(PreprocessConfig(hop_s=10, normalize="none"), 500, ("I", "II")).process_record(x)
    assert raw.data.std(axis=2).max() < 2.5  # still in mV


def test_flat_and_saturated_are_flagged_not_raised() -> None:
    rng = np.random.default_rng(4)
    x = _ecg_like(rng, 2, 250, 40)
    x[1, 250 * 12: 250 * 28] = 0.3          # lead II disconnected for 16 s
    x[0, 250 * 33: 250 * 33 + 40] = 15.0    # lead I saturates briefly
    w = Preprocessor(PreprocessConfig(hop_s=5), 250, ("I", "II")).process_record(x)
    starts_s = w.start / 100
    inside_flat = (starts_s >= 13) & (starts_s + 10 <= 27)
    assert inside_flat.any() and w.flat[inside_flat, 1].all()
    assert not w.flat[:, 0].any() and not w.flat[starts_s + 10 <= 11.5, 1].any()
    assert w.saturated[(starts_s <= 33) & (starts_s + 10 >= 34), 0].all()
    assert not w.saturated[:, 1].any()
    assert not w.usable[inside_flat].any() and w.usable[0]


def test_design_roundtrips_through_json_exactly() -> None:
    cfg = PreprocessConfig(notch_hz=60)
    pre = Preprocessor(cfg, 360, ("MLII",))
    restored = FilterDesign.from_dict(json.loads(json.dumps(pre.design.to_dict())))
    np.testing.assert_array_equal(restored.resample_phases, pre.design.resample_phases)
    np.testing.assert_array_equal(restored.band_sos, pre.design.band_sos)
    x = _ecg_like(np.random.default_rng(5), 1, 360, 25)
    again = Preprocessor(cfg, 360, ("MLII",), design=restored).process_record(x)
    np.testing.assert_array_equal(again.data, pre.process_record(x).data)
    with pytest.raises(ConfigError, match="expected 130 -> 100 Hz"):
        Preprocessor(cfg, 130, ("MLII",), design=restored)


def test_bad_inputs_give_one_clear_error() -> None:
    pre = Preprocessor(PreprocessConfig(), 500, ("I", "II"))
    x = np.zeros((2, 5000))
    bad = x.copy()
    bad[1, 17] = np.nan
    with pytest.raises(SignalValueError, match="lead II sample 17 is nan"):
        pre.process_record(bad)
    bad[1, 17] = np.inf
    with pytest.raises(SignalValueError, match="lead II sample 17 is inf"):
        pre.process(bad)
    with pytest.raises(SignalShapeError, match=r"expected shape \(2, n_samples\).*got \(5000, 2\)"):
        pre.process_record(x.T)
    with pytest.raises(SignalShapeError, match="dtype complex128"):
        pre.process_record(x.astype(complex))
    with pytest.raises(SignalShapeError, match="dtype <U"):
        pre.process_record(np.array([["a"], ["b"]]))
    with pytest.raises(EmptySignalError, match="record: expected at least one sample"):
        pre.process_record(np.zeros((2, 0)))
    with pytest.raises(UnknownLeadError, match="unknown lead 'V7'"):
        Preprocessor(PreprocessConfig(), 500, ("I", "V7"))
    for fs in (10, 20_000, float("nan"), "500"):
        with pytest.raises(SamplingRateError, match="fs_in: expected a sampling rate"):
            Preprocessor(PreprocessConfig(), fs, ("I",))
    with pytest.raises(SamplingRateError, match="notch_hz: 50 Hz is at or above the Nyquist"):
        Preprocessor(PreprocessConfig(notch_hz=50), 100, ("I",))
    for field, value in (("lowpass_hz", 60.0), ("normalize", "minmax"), ("notch_hz", 55), ("window_s", -1),
                         ("hop_s", 0.015), ("fs_out", 0)):
        with pytest.raises(ConfigError, match=f"preprocess.{field}"):
            PreprocessConfig(**{field: value})


def test_empty_chunk_is_a_no_op_in_a_stream() -> None:
    pre = Preprocessor(PreprocessConfig(), 130, ("CHEST",))
    assert len(pre.process(np.zeros(0))) == 0
    assert len(pre.process(np.zeros((1, 0)))) == 0


def test_signal_spec_validates_and_roundtrips() -> None:
    spec = PreprocessConfig(hop_s=2).spec(["i", "avr"])
    assert spec.leads == ("I", "aVR") and spec.window == 1000 and spec.hop == 200
    assert SignalSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ConfigError, match="SignalSpec.units"):
        SignalSpec(100, ("I",), units="uV")
    with pytest.raises(ConfigError, match="SignalSpec.fs"):
        SignalSpec(5, ("I",))


def test_gap_marks_reach_exactly_the_windows_they_touch_chunked_or_whole() -> None:
    rng = np.random.default_rng(11)
    pre = Preprocessor(PreprocessConfig(hop_s=5.0), 360, ("MLII",))
    x = _ecg_like(rng, 1, 360, 60)
    gap = np.zeros(x.shape[1], bool)
    gap[int(360 * 31.0): int(360 * 31.2)] = True  # bridged samples at 31.0-31.2 s
    whole = Windows.concat([pre.process(x, gap)])
    pre.reset()
    parts = [pre.process(x[:, a:b], gap[a:b]) for a, b in _chunks(rng, x.shape[1])]
    chunked = Windows.concat(parts)
    np.testing.assert_array_equal(whole.gap, chunked.gap)
    span = whole.start / 100 - pre.delay_s
    expected = (span <= 31.2) & (span + 10 >= 31.0)
    np.testing.assert_array_equal(whole.gap, expected)
    assert not whole.usable[whole.gap].any() and whole.usable[~whole.gap].all()


def test_fast_sos_kernel_equals_the_public_path() -> None:
    from edge_runtime.filters import SosStage, _sos_kernel

    rng = np.random.default_rng(12)
    sos = PreprocessConfig(notch_hz=None).design(500).band_sos
    x = rng.normal(size=(3, 5000)) + 2.0
    fast, public = SosStage(sos, 3), SosStage(sos, 3, fast=False)
    a = np.concatenate([fast(x[:, i:i + 73]) for i in range(0, 5000, 73)], axis=1)
    b = np.concatenate([public(x[:, i:i + 73]) for i in range(0, 5000, 73)], axis=1)
    assert np.abs(a - b).max() <= 1e-12
    assert _sos_kernel() is not None  # scipy's kernel is in use on the pinned stack


@pytest.mark.parametrize("fs_in,fill", [(300, "repeat"), (500, "repeat"), (300, "zeros")])
def test_a_record_shorter_than_one_window_is_padded_only_when_asked(fs_in: float, fill: str) -> None:
    """9.2 s of ECG: no window, or with pad one window flagged padded: its filtered samples z-scored
    on their own (the same numbers as normalising the unpadded filtered signal), then those samples
    again from their start (repeat) or zeros; a stream of it padded at its end
    (`Preprocessor.pad_tail`) gives the same window."""
    rng = np.random.default_rng(int(fs_in))
    pre = Preprocessor(PreprocessConfig(notch_hz=60), fs_in, ("I", "II"))
    x = _ecg_like(rng, 2, fs_in, 9.2)
    x[1, 100:140] = 12.0  # saturated on lead II only
    assert len(pre.process_record(x)) == 0
    w = pre.process_record(x, pad=True, fill=fill)
    assert len(w) == 1 and w.padded.tolist() == [True] and w.start.tolist() == [0]
    y, _ = pre.filter(x)  # the same chain, unwindowed: the real part of the padded window
    pre.reset()
    n = y.shape[1]
    assert n < pre.config.window
    real = (y - y.mean(axis=1, keepdims=True)) / y.std(axis=1, keepdims=True)
    np.testing.assert_allclose(w.data[0, :, :n], real, atol=1e-5)
    tail = real[:, :pre.config.window - n] if fill == "repeat" else 0.0  # the record from its start again, or zeros
    np.testing.assert_allclose(w.data[0, :, n:], np.broadcast_to(tail, (2, pre.config.window - n)), atol=1e-5)
    assert w.saturated.tolist() == [[False, True]] and not w.flat.any() and not w.gap.any()
    for a, b in _chunks(rng, x.shape[1]):  # streamed: nothing until the end, then the same window
        assert len(pre.process(x[:, a:b])) == 0
    np.testing.assert_array_equal(pre.pad_tail(fill).data, w.data)
    with pytest.raises(ConfigError, match="pad fill: expected one of repeat, zeros"):
        pre.pad_tail("mirror")


def test_pad_leaves_records_with_a_window_alone() -> None:
    rng = np.random.default_rng(5)
    pre = Preprocessor(PreprocessConfig(), 250, ("I",))
    x = _ecg_like(rng, 1, 250, 23.0)
    plain, padded = pre.process_record(x), pre.process_record(x, pad=True)
    np.testing.assert_array_equal(plain.data, padded.data)
    assert len(plain) == 3 and not padded.padded.any()
    pre.process(x)
    assert len(pre.pad_tail()) == 0  # windows were cut: the tail is the usual unclassified partial window
    both = Windows.concat([plain, pre.process_record(x[:, :2000], pad=True)])
    assert both.padded.tolist() == [False, False, False, True]
