"""MIT-BIH Arrhythmia reader on the real records in ../shared/data/mitdb (all 48)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb", reason="the 'replay' or 'train' extra (wfdb) reads the WFDB records")

from edge_runtime.errors import ConfigError, DatasetError  # noqa: E402
from train.data.mitdb import MitBih  # noqa: E402

# The test's own AAMI table (ANSI/AAMI EC57; de Chazal et al. 2004), kept apart from the reader's.
AAMI_OF = {**dict.fromkeys("NLRej", "N"), **dict.fromkeys("AaJS", "S"), **dict.fromkeys("VE", "V"),
           "F": "F", **dict.fromkeys("/fQ", "Q")}
# Records with AFIB episodes: these seven, plus the paced record 217 (about 250 s of AFIB between
# paced stretches in its .atr rhythm notes).
AFIB_RECORDS = {"201", "202", "203", "210", "219", "221", "222", "217"}
PACED = {"102", "104", "107", "217"}


@pytest.fixture(scope="module")
def mitdb(mitdb_root: Path) -> MitBih:
    return MitBih(mitdb_root)


@pytest.fixture(scope="module")
def all_labels(mitdb: MitBih) -> dict[str, dict]:
    """Labels of every record (annotations and headers only, no signals)."""
    return {rid: mitdb.labels(rid) for rid in mitdb.ids()}


def test_index(mitdb: MitBih) -> None:
    assert len(mitdb) == 48 and len(set(mitdb.ids())) == 48
    assert mitdb.ids()[0] == "100" and mitdb.ids()[-1] == "234"


def test_total_aami_counts(mitdb: MitBih) -> None:
    total = dict.fromkeys("NSVFQ", 0)
    for rid in mitdb.ids():
        for cls, n in mitdb.beat_counts(rid).items():
            total[cls] += n
    assert total == {"N": 90631, "S": 2781, "V": 7236, "F": 803, "Q": 8043}


def test_counts_per_record_match_raw_annotations(mitdb_root: Path, mitdb: MitBih, all_labels: dict) -> None:
    for rid in mitdb.ids():
        ann = wfdb.rdann(str(mitdb_root / rid), "atr")
        expected = dict.fromkeys("NSVFQ", 0)
        for sym in ann.symbol:
            if sym in AAMI_OF:
                expected[AAMI_OF[sym]] += 1
        assert mitdb.beat_counts(rid) == expected, rid
        beats = all_labels[rid]["beats"]
        assert beats["sample"].dtype == np.int64 and np.all(np.diff(beats["sample"]) >= 0), rid
        assert [AAMI_OF[s] for s in beats["symbol"]] == beats["aami"].tolist(), rid
        assert len(beats["sample"]) == sum(expected.values()), rid


def test_afib_records_and_episodes(mitdb_root: Path, mitdb: MitBih, all_labels: dict) -> None:
    afib = {rid for rid, lab in all_labels.items() if lab["target"][0] == 1.0}
    assert afib == AFIB_RECORDS
    assert afib - PACED == {"201", "202", "203", "210", "219", "221", "222"}
    for rid, lab in all_labels.items():
        eps = lab["rhythm_episodes"]
        sig_len = wfdb.rdheader(str(mitdb_root / rid)).sig_len
        assert eps, rid  # every record starts with a rhythm annotation
        assert lab["target"].dtype == np.float32 and lab["target"].shape == (1,)
        assert any(e["rhythm"] == "AFIB" for e in eps) == (rid in AFIB_RECORDS), rid
        for a, b in zip(eps, eps[1:]):
            assert a["end"] <= b["start"] and a["rhythm"] != b["rhythm"], (rid, a, b)
        assert all(0 <= e["start"] < e["end"] <= sig_len for e in eps), rid
        assert eps[-1]["end"] == sig_len and all("\x00" not in e["rhythm"] for e in eps), rid


def test_afib_episode_boundaries_of_201(all_labels: dict) -> None:
    eps = all_labels["201"]["rhythm_episodes"]
    assert eps[0] == {"rhythm": "AFIB", "start": 60, "end": eps[1]["start"]}
    assert {e["rhythm"] for e in eps} >= {"AFIB", "N"}


def test_record_114_leads_by_name(mitdb_root: Path, mitdb: MitBih) -> None:
    rec = mitdb.read("114")
    assert rec.leads == ("V5", "MLII")
    direct = wfdb.rdrecord(str(mitdb_root / "114"), channel_names=["MLII"]).p_signal[:, 0]
    np.testing.assert_allclose(rec.lead("MLII"), direct, atol=1e-5)
    assert rec.select(["MLII", "V5"]).leads == ("MLII", "V5")


def test_signal_in_mv(mitdb_root: Path, mitdb: MitBih) -> None:
    rec = mitdb.read("100")
    assert rec.signal.shape == (2, 650000) and rec.signal.dtype == np.float32 and rec.fs == 360
    assert rec.leads == ("MLII", "V5") and np.isfinite(rec.signal).all()
    mlii = rec.lead("MLII")
    assert 0.1 < float(mlii.std()) < 1.0
    raw = wfdb.rdrecord(str(mitdb_root / "100"), physical=False, channels=[0])
    expected = (raw.d_signal[:, 0] - raw.baseline[0]) / raw.adc_gain[0]
    np.testing.assert_allclose(mlii, expected, atol=1e-5)
    assert rec.source.endswith("100.hea")


def test_meta(mitdb: MitBih) -> None:
    meta = mitdb.read("100").meta
    assert (meta["age"], meta["sex"], meta["paced"]) == (69, "M", False)
    assert meta["comments"] == ["Aldomet, Inderal"]
    assert mitdb.read("103").meta["age"] is None  # header says -1
    assert mitdb.read("107").meta["paced"] is True


def test_splits(mitdb: MitBih) -> None:
    train, val, test = (mitdb.ids(s) for s in ("train", "val", "test"))
    assert len(train) == 22 and len(test) == 22 and val == []
    assert set(train).isdisjoint(test) and not (set(train) | set(test)) & PACED
    assert set(train) | set(test) | PACED == set(mitdb.ids())
    assert "114" in train and "100" in test
    with pytest.raises(ConfigError, match="'train', 'val' or 'test'"):
        mitdb.ids("DS1")


def test_missing_files(mitdb_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"RECORDS: not found"):
        MitBih(tmp_path)
    (tmp_path / "RECORDS").write_text("100\n999\n")
    (tmp_path / "100.hea").write_text((mitdb_root / "100.hea").read_text())
    reader = MitBih(tmp_path)
    with pytest.raises(DatasetError, match=r"999\.hea: WFDB header not found"):
        reader.read("999")
    with pytest.raises(DatasetError, match=r"100\.hea: unreadable WFDB record"):
        reader.read("100")  # header present, 100.dat absent
    with pytest.raises(DatasetError, match=r"100\.atr: annotation file not found"):
        reader.beat_counts("100")
    with pytest.raises(DatasetError, match="no record '101'"):
        reader.read("101")
