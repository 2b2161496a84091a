"""Abstention near the threshold: the margins and bands of `edge_runtime.abstain`, the manifest's
`abstain` field, and the streaming engine's inconclusive windows and held events (numpy only)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_engine import FS, DominantFrequencyModel, _signal  # noqa: E402

from edge_runtime.abstain import (  # noqa: E402
    check_bands, choose_bands, coverage_curve, inconclusive, margins)
from edge_runtime.artifact import Manifest, TensorSpec, load_artifact, write_artifact  # noqa: E402
from edge_runtime.backends import ArtifactModel, decide  # noqa: E402
from edge_runtime.engine import Engine, EngineConfig  # noqa: E402
from edge_runtime.errors import ArtifactError, ConfigError  # noqa: E402
from edge_runtime.outputs import JsonlSink, TextSink  # noqa: E402
from edge_runtime.signal import Preprocessor, PreprocessConfig  # noqa: E402
from edge_runtime.sources import Chunk  # noqa: E402


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- edge_runtime.abstain

@pytest.mark.parametrize("multilabel", [True, False])
def test_margin_sign_is_the_decision(multilabel: bool) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (500, 4))
    p = _sigmoid(z) if multilabel else _softmax(z)
    t = np.array([0.5, 0.3, 0.2, 0.6]) if multilabel else np.array([0.4, 0.2, 0.25, 0.15])
    assert ((margins(p, t, multilabel) >= 0) == decide(p, t, multilabel)).all()
    if multilabel:
        np.testing.assert_allclose(margins(p, t, True), z - _logit(t), atol=1e-9)


def test_single_label_margin_is_the_logit_difference_at_equal_thresholds() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, (200, 4))  # no probability below abstain.EPS, where margins are clipped
    m = margins(_softmax(z), (0.25,) * 4, False)
    top = np.sort(z, axis=1)
    best, second = top[:, -1:], top[:, -2:-1]
    expect = np.where(z >= best, z - second, z - best)  # the top class against the runner-up, the rest against the top
    np.testing.assert_allclose(m, expect, atol=1e-8)
    one = margins(_softmax(z[:, :1]), (0.5,), False)  # one class: always decided, never near a boundary
    assert np.isinf(one).all()


def test_inconclusive_is_the_band_around_the_threshold() -> None:
    p = np.array([[0.5, 0.52, 0.9], [0.45, 0.1, 0.6]])
    inc = inconclusive(p, (0.5, 0.5, 0.5), (0.2, 0.05, 0.5), True)  # logit(0.52) = 0.08, logit(0.45) = -0.2
    assert inc.tolist() == [[True, False, False], [False, False, True]]
    assert not inconclusive(p, None, None, True).any()
    single = inconclusive(np.array([[0.4, 0.35, 0.25], [0.8, 0.1, 0.1]]), None, (0.2, 0.2, 0.2), False)
    assert single.tolist() == [[True, False, False], [False, False, False]]  # log(0.4 / 0.35) = 0.13 < 0.2


def _constructed(n: int = 400, flip: float = 0.3, seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One label: int8 margins spread over -3..3, the float reference disagreeing exactly where |m| < flip."""
    m = np.random.default_rng(seed).permutation(np.linspace(-3, 3, n))[:, None]
    t = np.array([0.4])
    probs = _sigmoid(m + _logit(t))
    ref_m = np.where(np.abs(m) < flip, -m, m)
    return probs, _sigmoid(ref_m + _logit(t)), t


def test_choose_bands_reaches_the_target_with_the_smallest_band() -> None:
    probs, ref, t = _constructed()
    (band,) = choose_bands(probs, ref, t, True, target=0.999, max_abstain=0.5)
    m = np.abs(margins(probs, t, True)[:, 0])
    agree = decide(probs, t, True)[:, 0] == decide(ref, t, True)[:, 0]
    kept = m >= band
    assert agree[kept].mean() >= 0.999 and 0.25 < band <= 0.32
    smaller = m[m < band].max()  # one more decision kept: below the target
    assert agree[m >= smaller].mean() < 0.999
    row = next(r for r in coverage_curve(probs, ref > t, t, (band,), True, reference=ref) if r["scale"] == 1.0)
    assert row["agreement_kept"] >= 0.999 and row["coverage"] == pytest.approx(kept.mean())


def test_band_is_zero_where_everything_agrees_and_capped_where_nothing_can() -> None:
    probs, _, t = _constructed()
    assert choose_bands(probs, probs, t, True) == (0.0,)
    rng = np.random.default_rng(3)
    noise = _sigmoid(rng.normal(0, 3, probs.shape))  # a reference unrelated to the model: the target is out of reach
    (band,) = choose_bands(probs, noise, t, True, target=0.999, max_abstain=0.1)
    m = np.abs(margins(probs, t, True)[:, 0])
    assert (m < band).sum() == int(np.floor(0.1 * len(m)))  # exactly the cap set aside
    z = rng.normal(0, 2, (300, 3))
    single = choose_bands(_softmax(z), _softmax(z + rng.normal(0, 0.3, z.shape)), None, False, max_abstain=0.2)
    assert len(single) == 3 and all(0 <= b < np.inf for b in single)


def test_coverage_curve_runs_from_everything_kept_to_less() -> None:
    probs, ref, t = _constructed()
    truth = ref > t
    curve = coverage_curve(probs, truth, t, (0.3,), True, reference=ref)
    assert [r["scale"] for r in curve][0] == 0.0 and curve[0]["coverage"] == 1.0
    assert curve[0]["accuracy_kept"] == curve[0]["accuracy_all"]
    cov = [r["coverage"] for r in curve]
    assert cov == sorted(cov, reverse=True) and all(r["of"] == len(probs) for r in curve)


@pytest.mark.parametrize("bad", [(0.1,), (0.1, -0.2), ("a", 0.1), (True, 0.1), (0.1, float("nan")), "0.1",
                                 (0.1, float("inf"))])
def test_check_bands_names_the_field(bad) -> None:
    with pytest.raises(ConfigError, match=r"^abstain: expected 2 finite margins >= 0 in logit units"):
        check_bands(bad, 2)
    assert check_bands([0, 0.5], 2) == (0.0, 0.5)


# --------------------------------------------------------------------------- the manifest

LABELS = ("NORM", "FAST")


def _artifact(out: Path, **kw) -> Path:
    """A manifest beside a stand-in model file (the manifest is all these tests read)."""
    pre = PreprocessConfig(hop_s=5.0)
    return write_artifact(b"not a model, only its bytes", out_dir=out, runtime="onnxruntime", precision="fp32",
                          spec=pre.spec(("I",)), preprocess=pre, labels=LABELS,
                          input=TensorSpec("x", (-1, 1, 1, pre.window)), output=TensorSpec("logits", (-1, 2)), **kw)


def test_manifest_abstain_round_trips(tmp_path: Path) -> None:
    path = _artifact(tmp_path, abstain=[0.25, 1])
    data = json.loads(path.read_text())
    assert data["abstain"] == [0.25, 1.0] and data["format"] == 1
    m = load_artifact(path).manifest
    assert m.abstain == (0.25, 1.0) and Manifest.from_dict(m.to_dict()) == m
    assert ArtifactModel(load_artifact(path), backend=None).abstain == (0.25, 1.0)


def test_a_manifest_without_abstain_is_written_and_read_as_before(tmp_path: Path) -> None:
    path = _artifact(tmp_path)
    data = json.loads(path.read_text())
    assert "abstain" not in data  # what a reader older than the field reads
    assert load_artifact(path).manifest.abstain is None
    assert ArtifactModel(load_artifact(path), backend=None).abstain is None
    path.write_text(json.dumps({**data, "abstain": None}))
    assert load_artifact(path).manifest.abstain is None


@pytest.mark.parametrize("bad", [[0.1], [0.1, -0.5], ["x", 0.1], "0.1", [0.1, True], [0.1, float("nan")]])
def test_bad_abstain_is_one_line_naming_the_field(tmp_path: Path, bad) -> None:
    path = _artifact(tmp_path)
    path.write_text(json.dumps({**json.loads(path.read_text()), "abstain": bad}))
    with pytest.raises(ArtifactError) as err:
        load_artifact(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: abstain") and "\n" not in msg, msg
    with pytest.raises(ConfigError, match=r"^abstain: expected 2 finite margins"):
        _artifact(tmp_path / "w", abstain=(0.1, -1.0))
    assert not (tmp_path / "w" / "manifest.json").exists()  # validated before anything is written


# --------------------------------------------------------------------------- the engine

class ScriptedModel:
    """Multi-label: P(FAST) of the i-th window classified is `fast[i]` (NORM its complement)."""

    labels = LABELS
    thresholds = (0.5, 0.5)
    multilabel = True

    def __init__(self, fast: list[float], abstain: tuple[float, ...] | None) -> None:
        self.fast, self.abstain, self.i = list(fast), abstain, 0

    def predict(self, windows: np.ndarray) -> np.ndarray:
        p = np.array(self.fast[self.i:self.i + len(windows)])
        self.i += len(windows)
        return np.stack([1 - p, p], axis=1)


def _run(model, seconds: float = 60.0, **cfg):
    pre = Preprocessor(PreprocessConfig(hop_s=5.0), FS, ("CHEST",))
    eng = Engine(pre, model, config=EngineConfig(noise_gate=False, **{"smoothing_windows": 1, **cfg}))
    results, events = eng.run([Chunk(_signal(seconds), 0, FS)])
    return eng, results, [e for e in events if e.kind == "rhythm"], events[-1]


class BandedDominantFrequency(DominantFrequencyModel):
    abstain = (0.5, 0.5)


def test_decisions_outside_the_band_give_todays_events_and_windows() -> None:
    """P(FAST) 0.9 / 0.1 (margins +-2.2 logits) against a 0.5 band: nothing inconclusive, the same
    windows, events and counts as the model without a band (3-window smoothing included)."""
    plain = _run(DominantFrequencyModel(), 180.0, smoothing_windows=3)
    banded = _run(BandedDominantFrequency(), 180.0, smoothing_windows=3)
    assert [(e.label, e.t_start_s, e.t_end_s, e.detail) for e in banded[2]] == \
        [(e.label, e.t_start_s, e.t_end_s, e.detail) for e in plain[2]] and len(plain[2]) == 2
    assert [r.smoothed for r in banded[1]] == [r.smoothed for r in plain[1]]
    assert all(r.inconclusive == [] for r in plain[1] + banded[1])
    assert banded[0].stats.windows_inconclusive == {"NORM": 0, "FAST": 0} and plain[0].stats.windows_inconclusive == {}
    assert "inconclusive: NORM 0, FAST 0" in banded[3].detail and "inconclusive" not in plain[3].detail


def test_windows_inside_the_band_are_inconclusive_and_open_no_event(tmp_path: Path) -> None:
    """P(FAST) 0.55 every window: positive at threshold 0.5, but its margin (0.2 logit) is inside a
    0.5 band; without the band it opens an episode, with it every window is inconclusive and none
    opens. The JSONL log and the text lines say so."""
    n = 11  # 60 s at a 5 s hop
    _, _, plain_events, _ = _run(ScriptedModel([0.55] * n, None))
    assert [e.detail for e in plain_events] == ["onset", "offset at end of stream"]
    eng, results, events, end = _run(ScriptedModel([0.55] * n, (0.5, 0.5)))
    assert len(results) == n and events == []
    assert all(r.inconclusive == ["NORM", "FAST"] for r in results)
    assert eng.stats.windows_inconclusive == {"NORM": n, "FAST": n} and f"inconclusive: NORM {n}, FAST {n}" in end.detail
    # the recording's decision (mean of the windows: P(FAST) 0.55) is inside the bands too
    assert eng.stats.record["decided"] == ["FAST"] and eng.stats.record["inconclusive"] == ["NORM", "FAST"]
    sink = JsonlSink(tmp_path / "events.jsonl")
    sink(results, [end])
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [d["inconclusive"] for d in lines if d["type"] == "window"] == [["NORM", "FAST"]] * n
    text: list[str] = []
    TextSink(text.append)(results[:1], [])
    assert text[0].endswith("inconclusive NORM, FAST")


def test_an_inconclusive_window_holds_the_run_that_opens_and_closes_an_episode() -> None:
    """event_on = event_off = 2: a window inside the band between two positive ones neither resets
    nor advances the run, so the episode opens at the first positive window (without the band the
    negative window in between resets it); likewise between two negative ones it closes the episode,
    which ends where the last conclusive positive window ended."""
    fast = [0.9, 0.45, 0.9, 0.9, 0.1, 0.55, 0.1, 0.1, 0.1, 0.1, 0.1]
    _, plain_results, plain, _ = _run(ScriptedModel(fast, None))
    _, results, banded, _ = _run(ScriptedModel(fast, (1.0, 1.0)))
    assert [r.inconclusive for r in results][:6] == [[], ["NORM", "FAST"], [], [], [], ["NORM", "FAST"]]
    assert [(e.detail, e.t_start_s) for e in plain] == [("onset", plain_results[2].t_start_s), ("offset", plain_results[2].t_start_s)]
    onset, offset = banded
    assert onset.detail == "onset" and onset.t_start_s == results[0].t_start_s
    assert offset.detail == "offset" and offset.t_end_s == results[3].t_end_s
    assert len(results) == len(fast)


def test_a_single_label_window_inside_the_band_holds_every_label() -> None:
    """Single-label: A wins over O by log(1.233 / 1.167) = 0.056 logit. With a band of 0.1 the
    decided label A is inconclusive and no label's episode opens; with 0.01 A's opens as today."""

    class Constant:
        labels, thresholds, multilabel = ("N", "A", "O"), (0.5, 0.3, 0.3), False

        def __init__(self, abstain):
            self.abstain = abstain

        def predict(self, windows):
            return np.tile([0.28, 0.37, 0.35], (len(windows), 1))

    eng, results, events, _ = _run(Constant((0.1, 0.1, 0.1)))
    assert events == [] and all(r.inconclusive == ["A"] for r in results)
    assert eng.stats.windows_inconclusive == {"N": 0, "A": len(results), "O": 0}
    _, results, events, _ = _run(Constant((0.01, 0.01, 0.01)))
    assert [(e.label, e.detail) for e in events] == [("A", "onset"), ("A", "offset at end of stream")]
    assert all(r.inconclusive == [] for r in results)
