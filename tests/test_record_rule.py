"""The record rule: how a record's window probabilities become its probabilities before it is
decided ("mean" or "max"), carried by the manifest, used by the one scoring (`score_records`),
chosen by `ecg-edge cv` (`[cv] record_rules`) and stated in a vendor bundle's README (numpy only;
the streaming engine's record event is in test_engine, compare's in test_compare)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_abstain import _artifact  # noqa: E402  (a manifest beside a stand-in model file)

from edge_runtime.artifact import RECORD_RULES, Manifest, load_artifact  # noqa: E402
from edge_runtime.backends import ArtifactModel, decide, record_probabilities  # noqa: E402
from edge_runtime.errors import ArtifactError, ConfigError  # noqa: E402

LABELS = ("N", "A")


def test_manifest_record_rule_round_trips_and_the_mean_is_written_as_before(tmp_path: Path) -> None:
    assert RECORD_RULES == ("mean", "max")
    path = _artifact(tmp_path / "max", record_rule="max")
    data = json.loads(path.read_text())
    assert data["record_rule"] == "max" and data["format"] == 1
    m = load_artifact(path).manifest
    assert m.record_rule == "max" and Manifest.from_dict(m.to_dict()) == m
    assert ArtifactModel(load_artifact(path), backend=None).record_rule == "max"
    mean = _artifact(tmp_path / "mean")
    data = json.loads(mean.read_text())
    assert "record_rule" not in data  # a reader older than the field reads it as before
    assert load_artifact(mean).manifest.record_rule == "mean"
    mean.write_text(json.dumps({**data, "record_rule": "mean"}))
    assert load_artifact(mean).manifest.record_rule == "mean"


@pytest.mark.parametrize("bad", ["median", "", 1, None, ["max"]])
def test_a_bad_record_rule_is_one_line_naming_the_field(tmp_path: Path, bad) -> None:
    path = _artifact(tmp_path)
    path.write_text(json.dumps({**json.loads(path.read_text()), "record_rule": bad}))
    with pytest.raises(ArtifactError) as err:
        load_artifact(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: record_rule: expected") and "\n" not in msg, msg
    if isinstance(bad, str):
        assert "expected one of ['mean', 'max']" in msg, msg
    with pytest.raises(ConfigError, match=r"^record_rule: expected one of \['mean', 'max'\], got 'median'"):
        _artifact(tmp_path / "w", record_rule="median")
    assert not (tmp_path / "w" / "manifest.json").exists()  # validated before anything is written


def test_score_records_decides_on_the_max_of_the_windows() -> None:
    """AF in one window of three: averaged away by the mean, decided by the max; score_records'
    decisions are `decide` on `record_probabilities` of each record's windows under each rule."""
    from train.metrics import decision_scores, score_records

    record = np.repeat(np.arange(40), 3)
    truth = np.eye(2)[(np.arange(40) % 2)]  # odd records hold A
    p = np.tile([0.9, 0.1], (len(record), 1))
    p[[3 * r + r % 3 for r in range(1, 40, 2)]] = [0.05, 0.95]  # one window of each odd record
    y = truth[record]
    th = (0.5, 0.5)
    for rule in RECORD_RULES:
        rec = np.stack([record_probabilities(p[record == r], rule) for r in range(40)])
        out = score_records(p, y, record, LABELS, n_boot=20, thresholds=th, multilabel=False, record_rule=rule)
        assert out["decisions"] == decision_scores(truth, decide(rec, th, False), LABELS, n_boot=20)
    f1 = {rule: score_records(p, y, record, LABELS, n_boot=1, thresholds=th, multilabel=False, record_rule=rule)
          ["decisions"]["f1"]["classes"]["A"]["value"] for rule in RECORD_RULES}
    assert f1 == {"mean": 0.0, "max": 1.0}
    with pytest.raises(ConfigError, match="reduce 'median'"):
        score_records(p, y, record, LABELS, n_boot=1, record_rule="median")


def test_cv_config_record_rules() -> None:
    from distill.config import CvConfig

    assert CvConfig().record_rules == ("mean", "max") and CvConfig(record_rules="max").record_rules == ("max",)
    for bad in ((), ("mean", "mean"), ("median",)):
        with pytest.raises(ConfigError, match=r"^cv.record_rules: expected distinct rules out of \['mean', 'max'\]"):
            CvConfig(record_rules=bad)


def test_the_bundle_readme_states_the_record_rule() -> None:
    from firmware_bridge.bundle.readme import _output

    tensor = {"shape": [1, 4], "dtype": "int8", "scale": 0.1, "zero_point": 3}
    for multilabel, rule, words in ((False, "max", "maximum"), (True, "mean", "mean")):
        out = {"tensor": tensor, "labels": ["N", "A", "O", "~"], "multilabel": multilabel,
               "activation": "softmax over labels", "thresholds": [0.9, 0.35, 0.5, 0.4], "record_rule": rule}
        lines = _output({"output": out})
        assert f"decided on the {words} of its windows' probabilities per label (record rule {rule!r})" in lines[-1]
        if multilabel:
            assert "A label is present when its probability clears its threshold: N >= 0.9000" in lines[2]
        else:
            assert lines[2] == ("- The decided label is the one with the largest probability / threshold; "
                                "thresholds: N 0.9000, A 0.3500, O 0.5000, ~ 0.4000")
