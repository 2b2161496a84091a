"""PhysioNet/CinC 2017 reader on the real records in ../shared/data/physionet2017 (5,970 records)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from edge_runtime.errors import ConfigError, DatasetError

pytest.importorskip("wfdb", reason="the 'replay' or 'train' extra (wfdb) reads the WFDB records")
from train.data.cinc2017 import Cinc2017, split_of  # noqa: E402


@pytest.fixture(scope="module")
def cinc(cinc2017_root: Path) -> Cinc2017:
    return Cinc2017(cinc2017_root)


def test_index_and_class_counts(cinc: Cinc2017) -> None:
    assert len(cinc) == 5970 and len(cinc.ids()) == 5970
    assert cinc.class_counts() == {"N": 3535, "A": 517, "O": 1719, "~": 199}
    targets = np.stack([cinc.labels(rid)["target"] for rid in cinc.ids()])
    assert targets.dtype == np.float32 and (targets.sum(axis=1) == 1).all()
    assert targets.sum(axis=0).tolist() == [3535, 517, 1719, 199]


@pytest.mark.parametrize("record_id", ["A00001", "A00004", "A00005"])
def test_read_shape_duration_and_labels(cinc: Cinc2017, record_id: str) -> None:
    rec = cinc.read(record_id)
    assert rec.signal.dtype == np.float32 and rec.signal.shape[0] == 1 and rec.leads == ("I",)
    assert rec.fs == 300 and 9 <= rec.signal.shape[1] / 300 <= 61
    assert rec.meta["device"] == "AliveCor" and rec.meta["lead_note"] == "single lead, lead-I-like (AliveCor)"
    letter = rec.labels["rhythm"]
    assert rec.labels["target"][cinc.label_names.index(letter)] == 1.0 and rec.labels["target"].sum() == 1
    assert rec.source.endswith(f"{record_id}.hea")


def test_reference_labels_reach_records(cinc: Cinc2017) -> None:
    assert cinc.read("A00004").labels["rhythm"] == "A"  # REFERENCE.csv line 3
    assert cinc.read("A00001").labels["rhythm"] == "N"


def test_signal_is_mat_val_over_gain(cinc2017_root: Path, cinc: Cinc2017) -> None:
    raw = scipy.io.loadmat(cinc2017_root / "A00001.mat")["val"]
    assert raw.dtype == np.int16 and raw.shape[0] == 1
    rec = cinc.read("A00001")
    np.testing.assert_allclose(rec.signal, raw.astype(np.float64) / 1000.0, rtol=1e-6, atol=1e-7)
    assert 0.05 < float(rec.signal.std()) < 2.0


def test_splits_disjoint_complete_and_stable(cinc2017_root: Path, cinc: Cinc2017, tmp_path: Path) -> None:
    parts = {s: cinc.ids(s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 5970
    assert set().union(*parts.values()) == set(cinc.ids())
    assert set(parts["train"]).isdisjoint(parts["val"]) and set(parts["val"]).isdisjoint(parts["test"])
    assert set(parts["train"]).isdisjoint(parts["test"])
    for name, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(len(parts[name]) / 5970 - share) < 0.02, name
        counts = cinc.class_counts(parts[name])
        assert min(counts.values()) > 0, (name, counts)
    assert all(split_of(rid) == s for s, ids in parts.items() for rid in ids[:50])
    # the split of a record does not depend on which other records are listed
    lines = (cinc2017_root / "REFERENCE.csv").read_text().splitlines()[::7]
    (tmp_path / "REFERENCE.csv").write_text("\n".join(lines) + "\n")
    subset = Cinc2017(tmp_path)
    for name in ("train", "val", "test"):
        assert set(subset.ids(name)) <= set(parts[name])
    with pytest.raises(ConfigError, match="'train', 'val' or 'test'"):
        cinc.ids("validation")


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [("A00002,X", "label 'X'"), ("A00002,N,extra", "expected 2 fields"), ("A00002", "expected 2 fields")],
)
def test_bad_reference_line(tmp_path: Path, bad_line: str, message: str) -> None:
    (tmp_path / "REFERENCE.csv").write_text(f"A00001,N\n{bad_line}\nA00004,A\n")
    with pytest.raises(DatasetError, match=rf"REFERENCE\.csv:2: {message}"):
        Cinc2017(tmp_path)


def test_missing_reference(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"REFERENCE\.csv: not found"):
        Cinc2017(tmp_path)


def test_missing_and_damaged_record_files(cinc2017_root: Path, tmp_path: Path) -> None:
    (tmp_path / "REFERENCE.csv").write_text("A00001,N\nA99999,A\n")
    shutil.copy(cinc2017_root / "A00001.hea", tmp_path / "A00001.hea")  # header without its .mat
    reader = Cinc2017(tmp_path)
    with pytest.raises(DatasetError, match=r"A99999\.hea: WFDB header not found"):
        reader.read("A99999")
    with pytest.raises(DatasetError, match=r"A00001\.hea: unreadable WFDB record .*A00001\.mat"):
        reader.read("A00001")
    with pytest.raises(DatasetError, match="no record 'B00001'"):
        reader.read("B00001")


def test_physionet_download_layout(cinc2017_root: Path, tmp_path: Path) -> None:
    """Records in `training/A00/` with the labels in a separate file, as PhysioNet serves them."""
    (tmp_path / "training" / "A00").mkdir(parents=True)
    for ext in ("hea", "mat"):
        (tmp_path / "training" / "A00" / f"A00001.{ext}").symlink_to(cinc2017_root / f"A00001.{ext}")
    (tmp_path / "REFERENCE-v3.csv").write_text("A00001,N\n")
    reader = Cinc2017(tmp_path / "training", reference=tmp_path / "REFERENCE-v3.csv")
    rec = reader.read("A00001")
    assert rec.signal.shape == (1, 9000) and rec.source.endswith("training/A00/A00001.hea")
