"""Shards: one pass of the signal contract over a dataset, memory-mapped back, nothing dropped silently."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import DatasetError
from edge_runtime.signal import Preprocessor, PreprocessConfig
from train.data import shards as shards_mod
from train.data.shards import build_shards, open_shards, window_targets
from train.data.sources import DataConfig, open_dataset

PTBXL_PRE = PreprocessConfig(hop_s=10.0)


@pytest.fixture(scope="module")
def ptbxl_shards(ptbxl_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataConfig]:
    out = tmp_path_factory.mktemp("ptbxl") / "shards"
    cfg = DataConfig(source=f"ptbxl:{ptbxl_root}")
    build_shards(cfg, PTBXL_PRE, out, shard_windows=128)
    return out, cfg


def test_ptbxl_shards_hold_every_record_once(ptbxl_shards) -> None:
    out, cfg = ptbxl_shards
    info, splits = open_shards(out)
    assert info["records"] + len(info["skipped"]) == 500 and not info["skipped"]
    assert info["windows"] == {"train": len(splits["train"]), "val": len(splits["val"]), "test": len(splits["test"])}
    assert sum(info["windows"].values()) == 500  # 10 s records, 10 s windows
    positives = sum(sp.labels.sum(axis=0) for sp in splits.values())
    assert dict(zip(info["label_names"], positives.astype(int).tolist())) == \
        {"NORM": 297, "MI": 73, "STTC": 96, "CD": 78, "HYP": 40}
    sizes = [len(w) for w in splits["train"].windows()]
    assert sizes[:-1] == [128] * (len(sizes) - 1) and sum(sizes) == len(splits["train"])  # shards of 128
    assert splits["train"][0][0].shape == (12, 1000) and splits["train"][0][0].dtype == np.float32


def test_shard_windows_equal_the_signal_contract_on_the_record(ptbxl_shards) -> None:
    out, cfg = ptbxl_shards
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["split"] == "val")
    rec = open_dataset(cfg).read(row["id"])
    expected = Preprocessor(PTBXL_PRE, rec.fs, cfg.leads).process_record(rec.signal).data
    _, splits = open_shards(out)
    got = splits["val"][row["first_window"]][0]
    np.testing.assert_array_equal(got, expected[0])
    assert row["meta"]["sex"] in ("M", "F") and "report" in row["labels"]


def test_dataset_json_checksums_match_files(ptbxl_shards) -> None:
    out, _ = ptbxl_shards
    info = json.loads((out / "dataset.json").read_text())
    assert len(info["sha256"]) >= 10
    for rel, digest in info["sha256"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest, rel
    assert set(info["filter_designs"]) == {"100.0"}


def test_refuses_to_overwrite_and_rejects_a_broken_folder(ptbxl_shards, tmp_path: Path) -> None:
    out, cfg = ptbxl_shards
    with pytest.raises(DatasetError, match="already holds shards"):
        build_shards(cfg, PTBXL_PRE, out)
    with pytest.raises(DatasetError, match="dataset.json: not found"):
        open_shards(tmp_path)


def test_mitbih_window_labels_follow_af_episodes(mitdb_root: Path) -> None:
    ds = open_dataset(DataConfig(source=f"mitdb:{mitdb_root}", leads=("MLII",)))
    rec = ds.read("201")
    cfg = PreprocessConfig(hop_s=10.0)
    pre = Preprocessor(cfg, rec.fs, ("MLII",))
    win = pre.process_record(rec.lead("MLII"))
    y = window_targets(rec.labels, ds.label_names, win.start, rec.fs, cfg, pre.delay_s)[:, 0]
    af = [(e["start"] / rec.fs, e["end"] / rec.fs) for e in rec.labels["rhythm_episodes"] if e["rhythm"] == "AFIB"]
    mid = win.start / 100 - pre.delay_s + 5.0
    inside = np.array([any(a + 5 <= m <= b - 5 for a, b in af) for m in mid])
    outside = np.array([all(m + 5 <= a or m - 5 >= b for a, b in af) for m in mid])
    assert inside.sum() > 20 and outside.sum() > 20
    assert y[inside].all() and not y[outside].any()


def test_a_record_without_the_lead_is_skipped_with_its_reason(mitdb_root: Path) -> None:
    shards_mod._init_worker(DataConfig(source=f"mitdb:{mitdb_root}", leads=("MLII",)), PreprocessConfig())
    res = shards_mod._process("102")  # record 102 has V5 and V2, no MLII
    assert "skip" in res and "MLII" in res["skip"]
