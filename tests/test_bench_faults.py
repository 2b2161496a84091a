"""bench/faults.py: both profiles through the virtual wearable with every fault, the accounting checked."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bleak")
pytest.importorskip("bumble")

REPO = Path(__file__).resolve().parents[1]


def test_bench_faults_accounts_for_every_sample(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "faults.py"), "--seconds", "90", "--speed", "400",
                          "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["ok"] and len(r["checks"]) == 2 * 8 and all(r["checks"].values())
    for name, p in r["profiles"].items():
        assert p["received"] + p["lost"] == p["sent"] and p["lost"] == p["withheld"] > p["device"]["outage_samples"]
        assert p["reconnects"] == 3 and p["duplicate"] > 0 and p["reordered"] > 0
        assert p["malformed"] == (3 if name == "open" else 2) and p["rejected"] == (1 if name == "open" else 0)
        assert p["windows_touching_loss"] == p["windows_touching_loss_flagged"] > 0
        assert p["engine"]["events"]["error"] == p["malformed"] + p["rejected"]


def test_bench_faults_is_registered() -> None:
    from ecg_edge.cli import BENCHMARKS, BENCH_DIR

    assert (BENCH_DIR / BENCHMARKS["faults"]).is_file()
