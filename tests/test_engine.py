"""The streaming engine: chunked == whole, every sample accounted for, events, bad sources."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edge_runtime.engine import Engine, EngineConfig, run_stream
from edge_runtime.signal import Preprocessor, PreprocessConfig
from edge_runtime.sources import ArraySource, Chunk

FS = 130.0


class DominantFrequencyModel:
    """Deterministic test model: P(FAST) is high when a window's dominant frequency is above 4 Hz."""

    labels = ("NORM", "FAST")
    thresholds = (0.5, 0.5)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        spec = np.abs(np.fft.rfft(windows[:, 0, 0] if windows.ndim == 4 else windows[:, 0], axis=-1))
        freqs = np.fft.rfftfreq(windows.shape[-1], 1 / 100.0)
        fast = (freqs[np.argmax(spec[:, 1:], axis=1) + 1] > 4.0).astype(float) * 0.8 + 0.1
        return np.stack([1 - fast, fast], axis=1)


def _signal(seconds: float = 180.0) -> np.ndarray:
    t = np.arange(int(FS * seconds)) / FS
    slow = np.sin(2 * np.pi * 1.0 * t)
    fast = np.sin(2 * np.pi * 8.0 * t)
    return np.where((t >= 60) & (t < 120), fast, slow)[None, :] + 0.3


def _engine(**cfg) -> Engine:
    """Mechanics tests stream sines, which the ECG noise gate (kurtosis SQI) rightly rejects."""
    pre = Preprocessor(PreprocessConfig(hop_s=5.0), FS, ("CHEST",))
    return Engine(pre, DominantFrequencyModel(), config=EngineConfig(noise_gate=False, **cfg))


def _feed_all(engine: Engine, chunks: list[Chunk]):
    return engine.run(chunks)


def _key(results):
    return [(r.index, round(r.t_start_s, 9), r.usable, r.flags["gap"], r.probabilities, r.smoothed) for r in results]


def test_chunked_equals_whole_and_events_follow_the_signal() -> None:
    x = _signal()
    whole, ev_whole = _feed_all(_engine(), [Chunk(x, 0, FS)])
    rng = np.random.default_rng(0)
    cuts = np.unique(np.concatenate([[0], rng.integers(1, x.shape[1], 800), [x.shape[1]]]))
    chunked, ev_chunked = _feed_all(_engine(), [Chunk(x[:, a:b], int(a), FS) for a, b in zip(cuts[:-1], cuts[1:])])
    assert _key(whole) == _key(chunked)
    assert len(whole) == (int(180 * 100) - 1000) // 500 + 1
    rhythm = [e for e in ev_whole if e.kind == "rhythm" and e.label == "FAST"]
    assert [e.detail for e in rhythm] == ["onset", "offset"]
    onset, offset = rhythm
    assert 55 <= onset.t_start_s <= 70 and 120 <= offset.t_end_s <= 140  # smoothing lags by about a hop
    assert [(e.t_start_s, e.t_end_s) for e in ev_chunked if e.kind == "rhythm"] == \
        [(e.t_start_s, e.t_end_s) for e in rhythm]
    assert not any(e.kind == "rhythm" and e.label == "NORM" for e in ev_whole)  # normal class raises no episode


def test_gaps_are_counted_bridged_or_reset_and_flagged() -> None:
    x = _signal(120)
    chunks = ArraySource(x, FS, chunk=73).chunks()
    dropped_short = {60, 61}              # 146 samples (1.12 s)
    dropped_tiny = {150}                  # 73 samples (0.56 s)
    eng = _engine(bridge_max_s=1.2)       # both bridged
    kept = [c for i, c in enumerate(chunks) if i not in dropped_short | dropped_tiny]
    results, events = _feed_all(eng, kept)
    s = eng.stats
    assert s.lost == 73 * 3 and s.received + s.lost == x.shape[1]
    assert s.bridged_gaps == 2 and s.reset_gaps == 0
    gaps = [e for e in events if e.kind == "gap"]
    assert [e.detail for e in gaps] == ["146 samples lost, bridged", "73 samples lost, bridged"]
    assert abs(gaps[0].t_start_s - 60 * 73 / FS) < 1e-9
    flagged = [r for r in results if r.flags["gap"]]
    assert flagged and all(not r.usable and r.probabilities is None for r in flagged)
    for r in flagged:  # every flagged window overlaps a gap, up to the resampler's FIR support (0.4 s)
        assert any(r.t_start_s - 0.4 <= g.t_end_s and g.t_start_s <= r.t_end_s for g in gaps)
    assert len(flagged) == 6  # three windows per gap at a 5 s hop
    eng2 = _engine(bridge_max_s=0.25)     # both reset
    results2, events2 = _feed_all(eng2, kept)
    assert eng2.stats.reset_gaps == 2 and [e.kind for e in events2].count("reset") == 2
    after = [r for r in results2 if r.t_start_s > 150 * 73 / FS]
    assert after and after[0].t_start_s >= 151 * 73 / FS - 0.5  # output resumes a window after the gap


def test_duplicates_and_reordering_are_dropped_and_counted() -> None:
    x = _signal(60)
    chunks = ArraySource(x, FS, chunk=73).chunks()
    messy = chunks[:10] + [chunks[8], chunks[9]] + chunks[10:40] + [chunks[20]] + chunks[40:]
    clean_results, _ = _feed_all(_engine(), chunks)
    eng = _engine()
    results, _ = _feed_all(eng, messy)
    assert _key(results) == _key(clean_results)
    assert eng.stats.duplicate == 3 * 73 and eng.stats.lost == 0
    partial = Chunk(x[:, 30:200], 30, FS)  # overlaps what was sent: only the new part is used
    eng = _engine()
    eng.feed(Chunk(x[:, :100], 0, FS))
    eng.feed(partial)
    assert eng.stats.duplicate == 70 and eng.stats.used == 200


def test_bad_chunks_give_events_and_the_engine_keeps_running() -> None:
    x = _signal(60)
    eng = _engine()
    chunks = ArraySource(x, FS, chunk=73).chunks()
    bad_nan = chunks[5].samples.copy()
    bad_nan[0, 10:20] = np.nan
    stream = chunks[:5] + [Chunk(bad_nan, chunks[5].first_index, FS), Chunk(chunks[6].samples, chunks[6].first_index, 250.0),
                           Chunk(np.zeros((2, 73)), chunks[6].first_index, FS),
                           Chunk(np.array([["x"] * 73]), chunks[6].first_index, FS)] + chunks[6:]
    results, events = _feed_all(eng, stream)
    kinds = [e.kind for e in events]
    assert "invalid" in kinds and kinds.count("error") == 3
    errors = [e.detail for e in events if e.kind == "error"]
    assert "fs 250 Hz, expected 130 Hz" in errors[0] and "shape (2, 73), expected (1, n)" in errors[1]
    assert "dtype <U1, expected real numbers" in errors[2]
    assert eng.stats.invalid == 10 and eng.stats.rejected == 219
    assert eng.stats.received == x.shape[1] + 219
    assert results[0].flags["gap"] and len(results) == 11
    assert events[-1].kind == "end" and "the last partial window is not classified" in events[-1].detail


def test_async_stream_reports_stalls_and_a_source_that_stops() -> None:
    x = _signal(30)

    async def stalling():
        for i, c in enumerate(ArraySource(x, FS, chunk=73).chunks()):
            if i == 20:
                await asyncio.sleep(0.25)  # the source goes silent for a while
            yield c
            if i == 40:
                return  # and then stops mid-stream

    seen: list = []
    eng = _engine(stall_timeout_s=0.1)
    stats = asyncio.run(asyncio.wait_for(run_stream(stalling(), eng, [lambda r, e: seen.extend(e)]), 10))
    kinds = [e.kind for e in seen]
    assert kinds.count("stall") >= 1 and kinds[-1] == "end"
    assert stats.received == 41 * 73


def test_engine_config_validates() -> None:
    with pytest.raises(Exception, match="engine.smoothing_windows"):
        EngineConfig(smoothing_windows=0)


def test_real_ecg_beats_hr_and_noise_gate(mitdb_root) -> None:
    """MIT-BIH 100 with a noise burst: HR from the detector, the noisy windows left unclassified,
    and streaming in chunks gives the same windows (heart rate included) as feeding it whole."""
    from edge_runtime.beats import RPeakDetector
    from train.data.mitdb import MitBih

    rec = MitBih(mitdb_root).read("100")
    x = rec.lead("MLII")[: 360 * 120].astype(np.float64)[None, :]
    x[0, 360 * 60: 360 * 72] += np.random.default_rng(0).normal(0, 1.0, 360 * 12)  # 12 s of heavy noise

    def run(chunks):
        eng = Engine(Preprocessor(PreprocessConfig(hop_s=5.0), 360.0, ("MLII",)), DominantFrequencyModel(),
                     RPeakDetector(360.0))
        return _feed_all(eng, chunks)

    whole, _ = run([Chunk(x, 0, 360.0)])
    streamed, events = run(ArraySource(x, 360.0, chunk=73).chunks())
    assert [(r.t_start_s, r.hr_bpm, r.n_beats, r.usable, r.flags) for r in whole] == \
        [(r.t_start_s, r.hr_bpm, r.n_beats, r.usable, r.flags) for r in streamed]
    noisy = [r for r in whole if r.flags["noisy"]]
    assert noisy and all(55 <= r.t_end_s and r.t_start_s <= 72 for r in noisy)
    assert all(r.probabilities is None for r in noisy)
    clean = [r for r in whole if r.t_end_s < 58]
    assert clean and all(r.usable and 65 <= r.hr_bpm <= 85 for r in clean)


def test_a_long_gap_closes_open_episodes_and_releases_held_windows() -> None:
    x = _signal(180)
    chunks = ArraySource(x, FS, chunk=73).chunks()
    gap = set(range(160, 164))  # 2.2 s lost at ~90 s, inside the FAST stretch (60-120 s)
    eng = _engine()
    results, events = _feed_all(eng, [c for i, c in enumerate(chunks) if i not in gap])
    fast = [e for e in events if e.kind == "rhythm" and e.label == "FAST"]
    assert [e.detail for e in fast][:3] == ["onset", "offset at a gap", "onset"]
    assert fast[1].t_end_s <= 160 * 73 / FS + 0.01  # closed no later than the gap
    assert [r.index for r in results] == sorted(r.index for r in results)  # every window out once, in order
    assert len({r.index for r in results}) == len(results) == eng.stats.windows


class ConstantModel:
    """Always the same probabilities: A and O both clear their thresholds, A by the larger ratio."""

    labels = ("N", "A", "O")
    thresholds = (0.5, 0.3, 0.3)

    def __init__(self, multilabel: bool) -> None:
        self.multilabel = multilabel

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return np.tile([0.28, 0.37, 0.35], (len(windows), 1))


@pytest.mark.parametrize("multilabel, expected", [(False, {"A"}), (True, {"A", "O"})])
def test_single_label_events_follow_the_release_rule(multilabel: bool, expected: set[str]) -> None:
    """Single-label heads raise one label per window, argmax(p / t) (distill.release); multi-label
    heads every label whose probability clears its threshold."""
    pre = Preprocessor(PreprocessConfig(hop_s=5.0), FS, ("CHEST",))
    eng = Engine(pre, ConstantModel(multilabel), config=EngineConfig(noise_gate=False))
    _, events = _feed_all(eng, [Chunk(_signal(60), 0, FS)])
    assert {e.label for e in events if e.kind == "rhythm" and e.detail == "onset"} == expected


def test_engine_refuses_a_beat_detector_at_another_rate() -> None:
    from edge_runtime.beats import RPeakDetector
    from edge_runtime.errors import ConfigError

    pre = Preprocessor(PreprocessConfig(), 130.0, ("CHEST",))
    with pytest.raises(ConfigError, match="R-peak detector runs at 360 Hz, the preprocessor takes 130 Hz"):
        Engine(pre, None, RPeakDetector(360.0))
    assert Engine(pre, None, RPeakDetector(130.0)).fs_in == 130.0


@pytest.mark.parametrize("pad", [True, False])
def test_a_stream_shorter_than_one_window_ends_with_a_padded_window_or_an_explicit_line(pad: bool) -> None:
    """7 s of signal: with pad_short one window, flagged padded, classified on exactly the window
    `Preprocessor.process_record(pad=True)` gives; without it no window and an end line that says
    too short (never nothing)."""
    x = _signal(7.0)
    eng = _engine(pad_short=pad)
    results, events = _feed_all(eng, ArraySource(x, FS, chunk=73).chunks())
    end = events[-1]
    assert end.kind == "end" and "the stream (7.0 s) is shorter than one 10 s window" in end.detail
    if not pad:
        assert results == [] and "too short, no decision" in end.detail and eng.stats.windows_padded == 0
        return
    assert len(results) == 1 and results[0].flags["padded"] and results[0].usable
    assert eng.stats.windows == eng.stats.windows_padded == 1 and "padded to one window" in end.detail
    w = Preprocessor(PreprocessConfig(hop_s=5.0), FS, ("CHEST",)).process_record(x, pad=True)
    expected = DominantFrequencyModel().predict(w.data)[0]
    assert [results[0].probabilities[k] for k in ("NORM", "FAST")] == pytest.approx(expected.tolist())


def test_a_stream_with_windows_is_never_padded() -> None:
    results, events = _feed_all(_engine(), ArraySource(_signal(23.0), FS, chunk=73).chunks())
    assert len(results) == 3 and not any(r.flags["padded"] for r in results)
    assert "0 padded); the last partial window is not classified" in events[-1].detail


class RuleModel(DominantFrequencyModel):
    """DominantFrequencyModel with a record rule, as an `ArtifactModel` of a manifest carries one."""

    def __init__(self, record_rule: str) -> None:
        self.record_rule = record_rule


@pytest.mark.parametrize("rule, decided", [("mean", "NORM"), ("max", "NORM, FAST")])
def test_the_recordings_decision_follows_the_models_record_rule(rule: str, decided: str) -> None:
    """One "record" event before the end line: the classified windows' probabilities made one by
    the model's record rule, exactly as `train.metrics.aggregate_by_record` makes a record's for
    compare / export, decided at the thresholds. 60 s of 8 Hz in 180 s: the mean keeps FAST under
    its threshold, the max does not."""
    from edge_runtime.backends import record_probabilities
    from train.metrics import aggregate_by_record

    pre = Preprocessor(PreprocessConfig(hop_s=5.0), FS, ("CHEST",))
    eng = Engine(pre, RuleModel(rule), config=EngineConfig(noise_gate=False))
    results, events = _feed_all(eng, [Chunk(_signal(), 0, FS)])
    record = [e for e in events if e.kind == "record"]
    assert len(record) == 1 and events[-2] is record[0] and events[-1].kind == "end"
    probs = np.array([[r.probabilities[k] for k in ("NORM", "FAST")] for r in results if r.probabilities])
    assert len(probs) == len(results) == eng.stats.windows
    expected = aggregate_by_record(probs, np.zeros(len(probs), int), rule)[1][0]
    assert record_probabilities(probs, rule) == pytest.approx(expected)
    assert record[0].label == decided
    assert record[0].detail == (f"the recording's decision: {rule} of {len(probs)} windows' probabilities: "
                                f"NORM {expected[0]:.3f}, FAST {expected[1]:.3f}")
    assert (record[0].t_start_s, record[0].t_end_s) == (0.0, events[-1].t_end_s)
    assert eng.stats.record == {"decided": decided.split(", "), "record_rule": rule, "windows": len(probs),
                                "probabilities": {"NORM": pytest.approx(expected[0]), "FAST": pytest.approx(expected[1])},
                                "inconclusive": []}
    from ecg_edge.stream import StreamResult, summary_lines

    line = summary_lines(StreamResult("a recording", FS, "CHEST", eng.stats, None, 0.0))[1]
    assert line == f"  the recording's decision: {decided}, {rule} of {len(probs)} classified window(s)' probabilities"


def test_no_recording_decision_without_a_classified_window() -> None:
    """Too short and not padded, or no model: no "record" event, the end line says why."""
    _, events = _feed_all(_engine(pad_short=False), ArraySource(_signal(7.0), FS, chunk=73).chunks())
    assert [e.kind for e in events] == ["end"] and "too short, no decision" in events[-1].detail
    pre = Preprocessor(PreprocessConfig(hop_s=5.0), FS, ("CHEST",))
    _, events = _feed_all(Engine(pre, None, config=EngineConfig(noise_gate=False)), [Chunk(_signal(60), 0, FS)])
    assert not any(e.kind == "record" for e in events)


def test_record_probabilities_refuses_an_unknown_rule_and_no_windows() -> None:
    from edge_runtime.backends import record_probabilities
    from edge_runtime.errors import ConfigError

    p = np.array([[0.2, 0.8], [0.6, 0.1]])
    assert record_probabilities(p, "mean") == pytest.approx([0.4, 0.45])
    assert record_probabilities(p, "max") == pytest.approx([0.6, 0.8])
    with pytest.raises(ConfigError, match=r"record rule 'median': expected one of \['mean', 'max'\]"):
        record_probabilities(p, "median")
    with pytest.raises(ConfigError, match="expected \\(n_windows >= 1, n_labels\\)"):
        record_probabilities(np.zeros((0, 2)), "mean")
