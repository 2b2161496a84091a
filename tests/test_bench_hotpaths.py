"""bench/hotpaths.py (`ecg-edge bench hotpaths`): the speed of the tokenizer, the synthetic generator
and the bootstrap, which the tests no longer assert, measured against baselines timed in the same run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the 'train' extra (torch) is needed: the tokenizer lives in train.models")
pytest.importorskip("neurokit2", reason="the 'train' extra (neurokit2) is the synthetic generator's baseline")
pytest.importorskip("sklearn", reason="the 'train' extra (scikit-learn) is the bootstrap's baseline")

REPO = Path(__file__).resolve().parents[1]
ROWS = {"tokenizer": "256 reports", "synthetic": "1 record", "bootstrap": "1000 resamples"}


def test_hotpaths_is_a_registered_benchmark() -> None:
    from ecg_edge.cli import BENCH_DIR, BENCHMARKS

    assert (BENCH_DIR / BENCHMARKS["hotpaths"]).is_file()


@pytest.mark.slow
def test_every_hot_path_is_timed_against_its_baseline(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(REPO / "bench" / "hotpaths.py"), "--repeats", "2",
                          "--baseline-resamples", "5", "--out", str(tmp_path / "h.json")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert json.loads((tmp_path / "h.json").read_text()) == out
    assert out["benchmark"] == "hotpaths" and out["env"]["threads"] == "1" and set(out["rows"]) == set(ROWS)
    for name, row in out["rows"].items():
        assert row["unit"] == ROWS[name] and row["seconds"] > 0 and row["baseline_seconds"] > 0
        assert row["speedup_vs_baseline"] == pytest.approx(row["baseline_seconds"] / row["seconds"])
        assert row["meets_goal"] == (row["seconds"] <= row["goal_seconds"])
    assert out["all_meet_goal"] == all(r["meets_goal"] for r in out["rows"].values())
    # the closed-form generator and the vectorised bootstrap are each two orders of magnitude faster
    # than what they replace (~190x and ~600x on a 2-core x86); a tenth of that is a ratio, not a clock
    assert out["rows"]["synthetic"]["speedup_vs_baseline"] > 10
    assert out["rows"]["bootstrap"]["speedup_vs_baseline"] > 10
