"""What the Raspberry Pi comparison rests on (bench/pi.py): the `--audit` dump of the engine's window
inputs, raw model outputs and R peaks; single-channel records named by no lead; and the install
messages a runtime-only machine sees."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cli_errors import assert_one_error_line
from ecg_edge.cli import main
from edge_runtime.beats import RPeakDetector
from edge_runtime.engine import Engine, EngineConfig
from edge_runtime.errors import MissingExtraError, missing_extra, require
from edge_runtime.outputs import AuditSink
from edge_runtime.signal import Preprocessor, PreprocessConfig
from edge_runtime.sources import ArraySource


class LinearModel:
    """A model with logits: the window's mean and standard deviation, sigmoid as probabilities."""

    labels = ("MEAN", "STD")
    thresholds = (0.5, 0.5)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        return np.stack([windows[:, 0].mean(axis=-1), windows[:, 0].std(axis=-1)], axis=1).astype(np.float32)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-logits))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return self.probabilities(self.logits(windows))


def _record(mitdb_root: Path) -> np.ndarray:
    from train.data.mitdb import MitBih

    return MitBih(mitdb_root).read("100").lead("MLII")[: 360 * 90].astype(np.float64)[None, :]


def _stream(x: np.ndarray, audit: bool, tmp_path: Path | None = None):
    eng = Engine(Preprocessor(PreprocessConfig(hop_s=5.0), 360.0, ("MLII",)), LinearModel(), RPeakDetector(360.0),
                 EngineConfig(audit=audit))
    results, events = eng.run(ArraySource(x, 360.0, chunk=73).chunks())
    if audit:
        sink = AuditSink(tmp_path / "audit.npz", eng)
        sink(results, events)
        sink.close()
    return eng, results


def test_audit_dump_holds_what_the_engine_classified(mitdb_root: Path, tmp_path: Path) -> None:
    x = _record(mitdb_root)
    _, plain = _stream(x, audit=False)
    eng, audited = _stream(x, audit=True, tmp_path=tmp_path)
    # auditing changes nothing the user sees
    assert [(r.t_start_s, r.usable, r.probabilities, r.hr_bpm) for r in plain] == \
        [(r.t_start_s, r.usable, r.probabilities, r.hr_bpm) for r in audited]
    d = np.load(tmp_path / "audit.npz")
    assert d["index"].tolist() == [r.index for r in audited] and d["inputs"].shape == (len(audited), 1, 1000)
    assert d["inputs"].dtype == np.float32 and list(d["labels"]) == ["MEAN", "STD"]
    usable = d["usable"]
    assert usable.any() and np.isnan(d["logits"][~usable]).all() and np.isfinite(d["logits"][usable]).all()
    # the logits are the model's on the dumped inputs, and the probabilities the engine reported follow from them
    np.testing.assert_array_equal(d["logits"][usable], LinearModel().logits(d["inputs"][usable]))
    probs = np.array([[r.probabilities[k] for k in LinearModel.labels] for r in audited if r.usable])
    np.testing.assert_allclose(probs, LinearModel().probabilities(d["logits"][usable]), rtol=1e-6)
    # the R peaks are the detector's on the whole record: 90 s of record 100 at about 75 bpm
    whole = RPeakDetector(360.0).process(np.concatenate([x[0], np.full(360, x[0, -1])]))
    assert 100 <= d["peaks"].size <= 120 and set(d["peaks"].tolist()) <= set(whole.tolist())


def test_audit_sink_needs_an_auditing_engine() -> None:
    eng = Engine(Preprocessor(PreprocessConfig(), 360.0, ("MLII",)), LinearModel())
    with pytest.raises(ValueError, match="EngineConfig\\(audit=True\\)"):
        AuditSink("unused.npz", eng)


def test_single_channel_record_named_by_no_lead(cinc2017_root: Path, capsys: pytest.CaptureFixture) -> None:
    """CinC 2017 names its one channel "ECG": --lead says which lead it is; without it, one line says so."""
    rec = str(cinc2017_root / "A00001")
    assert main(["stream", "--source", f"replay:{rec}", "--lead", "I", "--fast", "--no-live"]) == 0
    assert "lead I (300 Hz): 9000 samples received, 0 lost" in capsys.readouterr().out
    assert_one_error_line(["stream", "--source", f"replay:{rec}", "--fast", "--no-live"], capsys,
                          "A00001.hea", "unknown lead 'ECG'", "--lead says which lead it is")


def test_missing_extra_names_package_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wfdb", None)
    with pytest.raises(MissingExtraError) as exc:
        require("wfdb", "replay", "replaying a WFDB record")
    assert str(exc.value) == ("replaying a WFDB record needs wfdb (wfdb is not installed), in the 'replay' extra: "
                              "pip install 'ecg-edge[replay]'")
    assert "needs scikit-learn (sklearn is not installed)" in str(missing_extra("x", "sklearn", "train"))
    assert "needs tflite-micro (tflite_micro is not installed), pip install tflite-micro" in \
        str(missing_extra("backend 'tflite_micro'", "tflite_micro", None))


def test_missing_extra_on_aarch64_says_there_is_no_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    msg = str(missing_extra("backend 'tflite_micro'", "tflite_micro", None))
    assert msg == ("backend 'tflite_micro' needs tflite-micro (tflite_micro is not installed), which has no wheel "
                   "for aarch64 (x86-64 only)")
