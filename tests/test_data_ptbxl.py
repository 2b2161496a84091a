"""PTB-XL reader on the real records in ../shared/data/ptbxl (ecg_id 1..500; 500 Hz for 1..50)."""
from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb", reason="the 'replay' or 'train' extra (wfdb) reads the WFDB records")

from edge_runtime.errors import ConfigError, DatasetError  # noqa: E402
from edge_runtime.spec import STANDARD_LEADS  # noqa: E402
from train.data.ptbxl import PtbXl  # noqa: E402
from edge_runtime.wfdb_io import read_wfdb_mv  # noqa: E402


@pytest.fixture(scope="module")
def ptbxl(ptbxl_root: Path) -> PtbXl:
    return PtbXl(ptbxl_root)


@pytest.fixture(scope="module")
def csv_rows(ptbxl_root: Path) -> dict[str, dict[str, str]]:
    with (ptbxl_root / "ptbxl_database.csv").open(newline="") as fh:
        return {str(int(float(r["ecg_id"]))): r for r in csv.DictReader(fh)}


def _copy_index(ptbxl_root: Path, dst: Path, edit=None) -> Path:
    """Copy the two index CSVs to `dst`, passing the database text through `edit`."""
    shutil.copy(ptbxl_root / "scp_statements.csv", dst / "scp_statements.csv")
    text = (ptbxl_root / "ptbxl_database.csv").read_text(encoding="utf-8")
    (dst / "ptbxl_database.csv").write_text(edit(text) if edit else text, encoding="utf-8")
    return dst


def test_index_and_superclass_counts(ptbxl: PtbXl) -> None:
    assert len(ptbxl) == 500
    assert ptbxl.ids()[:3] == ["1", "2", "3"] and ptbxl.ids()[-1] == "500"
    assert ptbxl.superclass_counts() == {"NORM": 297, "MI": 73, "STTC": 96, "CD": 78, "HYP": 40, "none": 12}


def test_targets_match_superclasses(ptbxl: PtbXl) -> None:
    targets = np.stack([ptbxl.labels(rid)["target"] for rid in ptbxl.ids()])
    assert targets.dtype == np.float32 and targets.shape == (500, 5)
    assert targets.sum(axis=0).tolist() == [297, 73, 96, 78, 40]
    assert int((targets.sum(axis=1) == 0).sum()) == 12


def test_rhythm_counts(ptbxl: PtbXl) -> None:
    counts = Counter(code for rid in ptbxl.ids() for code in ptbxl.labels(rid)["rhythm"])
    assert (counts["SR"], counts["AFIB"], counts["AFLT"]) == (407, 13, 8)


def test_splits_follow_strat_fold(ptbxl: PtbXl, csv_rows: dict[str, dict[str, str]]) -> None:
    folds = {rid: int(csv_rows[rid]["strat_fold"]) for rid in ptbxl.ids()}
    assert set(folds.values()) == set(range(1, 11))
    train, val, test = (ptbxl.ids(s) for s in ("train", "val", "test"))
    assert len(train) + len(val) + len(test) == 500
    assert set(train).isdisjoint(val) and set(train).isdisjoint(test) and set(val).isdisjoint(test)
    assert {folds[r] for r in val} == {9} and {folds[r] for r in test} == {10}
    assert {folds[r] for r in train} == set(range(1, 9))
    with pytest.raises(ConfigError, match="'train', 'val' or 'test'"):
        ptbxl.ids("dev")


def test_read_100hz(ptbxl: PtbXl) -> None:
    rec = ptbxl.read("1")
    assert rec.leads == STANDARD_LEADS
    assert rec.signal.shape == (12, 1000) and rec.signal.dtype == np.float32 and rec.fs == 100
    assert np.abs(rec.signal).max() < 20
    assert 0.05 < float(rec.lead("II").std()) < 2
    assert rec.source.endswith("records100/00000/00001_lr.hea")
    assert rec.labels["superclasses"] == ["NORM"] and rec.labels["statements"]["NORM"] == 100.0
    assert rec.labels["report"] == "sinusrhythmus periphere niederspannung"
    assert rec.labels["statement_text"].split("; ")[0] == "normal ECG"


def test_every_record_is_plausible(ptbxl: PtbXl) -> None:
    seen = 0
    for rec in ptbxl:
        assert rec.signal.shape == (12, 1000), rec.record_id
        assert np.isfinite(rec.signal).all() and np.abs(rec.signal).max() < 20, rec.record_id
        seen += 1
    assert seen == 500


def test_read_500hz_matches_100hz_scale(ptbxl_root: Path, ptbxl: PtbXl) -> None:
    hi = PtbXl(ptbxl_root, fs=500).read("1")
    lo = ptbxl.read("1")
    assert hi.signal.shape == (12, 5000) and hi.fs == 500 and hi.leads == lo.leads
    rms_hi = np.sqrt(np.mean(hi.signal**2, axis=1))
    rms_lo = np.sqrt(np.mean(lo.signal**2, axis=1))
    np.testing.assert_allclose(rms_hi, rms_lo, rtol=0.2)


def test_500hz_absent_record_names_file(ptbxl_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"00051_hr\.hea"):
        PtbXl(ptbxl_root, fs=500).read("51")


def test_bad_fs_and_unknown_id(ptbxl_root: Path, ptbxl: PtbXl) -> None:
    with pytest.raises(ConfigError, match="100 or 500"):
        PtbXl(ptbxl_root, fs=250)
    with pytest.raises(DatasetError, match="ptbxl_database.csv: no ecg_id '9999'"):
        ptbxl.read("9999")


def test_meta(ptbxl: PtbXl, csv_rows: dict[str, dict[str, str]]) -> None:
    meta = ptbxl.read("1").meta
    assert meta["height"] is None and csv_rows["1"]["height"] == ""
    assert meta["weight"] == 63.0 and meta["age"] == 56.0 and meta["age_capped"] is False
    assert meta["sex"] == "F" and meta["patient_id"] == 15709 and meta["strat_fold"] == 3
    assert meta["static_noise"] == ", I-V1," and meta["burst_noise"] is None
    sexes = Counter(ptbxl.read(rid).meta["sex"] for rid in ("1", "2", "3", "4", "5"))
    raw = Counter({"0": "M", "1": "F"}[csv_rows[rid]["sex"]] for rid in ("1", "2", "3", "4", "5"))
    assert sexes == raw


def test_capped_age(ptbxl_root: Path, tmp_path: Path) -> None:
    edit = lambda text: text.replace("\n1,15709.0,56.0,", "\n1,15709.0,300.0,", 1)  # noqa: E731
    reader = PtbXl(_copy_index(ptbxl_root, tmp_path, edit))
    (tmp_path / "records100").symlink_to(ptbxl_root / "records100")
    meta = reader.read("1").meta
    assert meta["age"] == 90.0 and meta["age_capped"] is True


def test_statement_descriptions(ptbxl: PtbXl) -> None:
    desc = ptbxl.statement_descriptions()
    assert desc["NORM"] == "normal ECG" and desc["SR"] == "sinus rhythm" and len(desc) == 71
    assert all(isinstance(v, str) and v for v in desc.values())


def test_broken_database_header(ptbxl_root: Path, tmp_path: Path) -> None:
    _copy_index(ptbxl_root, tmp_path, lambda t: t.replace("scp_codes", "scp_kodes", 1))
    expected = re.escape(f"{tmp_path / 'ptbxl_database.csv'}: header lacks") + ".*scp_codes"
    with pytest.raises(DatasetError, match=expected):
        PtbXl(tmp_path)


def test_malformed_row_and_missing_file(ptbxl_root: Path, tmp_path: Path) -> None:
    broken = "\"{'NORM': 100.0,, 'LVOLT'"  # a syntax error in record 1's scp_codes (CSV line 2)
    _copy_index(ptbxl_root, tmp_path, lambda t: t.replace("\"{'NORM': 100.0, 'LVOLT'", broken, 1))
    with pytest.raises(DatasetError, match=r"ptbxl_database.csv:2: scp_codes"):
        PtbXl(tmp_path)
    (tmp_path / "scp_statements.csv").unlink()
    with pytest.raises(DatasetError, match="scp_statements.csv: not found"):
        PtbXl(tmp_path)


def test_damaged_signal_file(ptbxl_root: Path, tmp_path: Path) -> None:
    _copy_index(ptbxl_root, tmp_path)
    rec_dir = tmp_path / "records100" / "00000"
    rec_dir.mkdir(parents=True)
    (rec_dir / "00001_lr.hea").write_text("00001_lr twelve 100 1000\n")
    with pytest.raises(DatasetError, match=r"00001_lr\.hea: unreadable WFDB record"):
        PtbXl(tmp_path).read("1")


@pytest.mark.parametrize(("units", "scale"), [("mV", 1.0), ("uV", 1e-3), ("V", 1e3)])
def test_read_wfdb_mv_converts_units(tmp_path: Path, units: str, scale: float) -> None:
    digital = (np.arange(200, dtype=np.int64).reshape(100, 2) - 50).astype(np.int16)
    wfdb.wrsamp("rec", fs=250, units=[units, units], sig_name=["I", "II"], d_signal=digital,
                fmt=["16", "16"], adc_gain=[2.0, 2.0], baseline=[0, 0], write_dir=str(tmp_path))
    sig = read_wfdb_mv(tmp_path / "rec")
    assert sig.signal.shape == (2, 100) and sig.signal.dtype == np.float32 and sig.fs == 250
    np.testing.assert_allclose(sig.signal, digital.T / 2.0 * scale, rtol=1e-6)


def test_read_wfdb_mv_rejects_other_units(tmp_path: Path) -> None:
    wfdb.wrsamp("rec", fs=250, units=["mmHg"], sig_name=["ABP"], d_signal=np.zeros((10, 1), np.int16),
                fmt=["16"], adc_gain=[1.0], baseline=[0], write_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=r"rec\.hea: channel 0 units 'mmHg'"):
        read_wfdb_mv(tmp_path / "rec")
