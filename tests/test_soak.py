"""`ecg-edge bench soak` with tiny arguments: three one-minute "hours", no model (no torch needed)."""
from __future__ import annotations

import json

import pytest

from ecg_edge.cli import main


@pytest.mark.slow
def test_soak_benchmark_reports_each_period_and_checks_rss(capfd: pytest.CaptureFixture) -> None:
    pytest.importorskip("neurokit2")
    pytest.importorskip("rich")
    rc = main(["bench", "soak", "--hours", "0.05", "--period-s", "60", "--loop-s", "60", "--no-model"])
    out = json.loads(capfd.readouterr().out)
    assert rc == 0 and out["benchmark"] == "soak" and out["check"]["ok"] is True
    periods = out["periods"]
    assert [p["period"] for p in periods] == [1, 2, 3] and [p["signal_end_s"] for p in periods] == [60, 120, 180]
    assert sum(p["windows"] for p in periods) == out["windows"] == 35  # (180 s - 10 s) / 5 s + 1
    assert all(p["rss_mb"] > 0 and p["window_compute_ms"]["p99"] >= p["window_compute_ms"]["p50"] > 0 for p in periods)
    assert out["samples"] == 180 * 130 and out["lost"] == 0 and not out["torch_imported"]
    assert all(p["af_rr_onsets"] == p["rhythm_onsets"] == 1 for p in periods)  # the loop's AFIB part, once a loop
    assert out["check"]["rss_growth_mb_first_to_last_period"] == periods[-1]["rss_mb"] - periods[0]["rss_mb"]
    assert "no model" in out["model"]
