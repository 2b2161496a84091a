"""Stream outputs: the JSONL log, the per-window CSV and the live view show what the engine found."""
from __future__ import annotations

import asyncio
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from test_engine import FS, DominantFrequencyModel, _engine, _signal  # noqa: E402

from edge_runtime.engine import Event, StreamStats, WindowResult, run_stream  # noqa: E402
from edge_runtime.outputs import CsvSink, JsonlSink, LiveView, sparkline  # noqa: E402
from edge_runtime.sources import ArraySource, Chunk  # noqa: E402


async def _lossy(x: np.ndarray):
    for i, c in enumerate(ArraySource(x, FS, chunk=73).chunks()):
        if i != 30:  # one notification lost
            yield c


def test_jsonl_csv_and_live_view(tmp_path: Path) -> None:
    from rich.console import Console

    x = _signal(180)
    eng = _engine()
    jsonl, table = JsonlSink(tmp_path / "events.jsonl"), CsvSink(tmp_path / "windows.csv", DominantFrequencyModel.labels)
    view = LiveView(eng.stats, "test", console=Console(record=True, width=120, force_terminal=False))
    with view:
        stats = asyncio.run(run_stream(_lossy(x), eng, [jsonl, table, view], taps=(view.tap,)))
    jsonl.close()
    table.close()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    windows = [d for d in lines if d["type"] == "window"]
    events = [d for d in lines if d["type"] == "event"]
    assert len(windows) == stats.windows == 35  # (180 s - 10 s) / 5 s + 1: nothing lost to the gap
    assert [e["kind"] for e in events if e["kind"] in ("gap", "reset")] == ["gap"]  # 0.56 s <= 1 s: bridged
    assert events[-1]["kind"] == "end" and f"{stats.lost} lost" in events[-1]["detail"]
    assert {e["detail"] for e in events if e["kind"] == "rhythm" and e["label"] == "FAST"} == {"onset", "offset"}
    rows = list(csv.DictReader(open(tmp_path / "windows.csv")))
    assert len(rows) == 35 and {"p_FAST", "smoothed_NORM", "latency_end_to_end_ms"} <= set(rows[0])
    fast = [float(r["p_FAST"]) for r in rows if r["p_FAST"] and 70 <= float(r["t_start_s"]) <= 105]
    assert fast and min(fast) > 0.5
    text = view.console.export_text()
    assert "lost 73" in text and "FAST" in text and "end" in text
    assert sum(r["gap"] == "1" for r in rows) == 2  # the two windows holding the bridged notification


def test_the_csv_keeps_each_windows_inconclusive_labels(tmp_path: Path) -> None:
    """A window whose decision sat inside the model's abstention band says so in its row, as in the
    JSONL; a decided window and one the model never saw leave the column empty."""
    table = CsvSink(tmp_path / "windows.csv", ("NORM", "FAST"))
    probs = {"NORM": 0.45, "FAST": 0.55}
    results = [_window(0, 1.0), _window(1, 1.0), _window(2, 1.0), _window(3, 1.0, usable=False, flat=["I"])]
    for r, inc in zip(results[:3], (["FAST"], [], ["NORM", "FAST"])):
        r.probabilities, r.smoothed, r.inconclusive = probs, probs, inc
    table(results, [])
    table.close()
    rows = list(csv.DictReader(open(tmp_path / "windows.csv")))
    assert [r["inconclusive"] for r in rows] == ["FAST", "", "NORM FAST", ""]
    assert rows[3]["p_FAST"] == "" and rows[3]["flat"] == "I" and rows[0]["smoothed_FAST"] == "0.550000"


def test_sparkline_shape() -> None:
    line = sparkline(np.sin(np.linspace(0, 6.28, 500)), 40)
    assert len(line) == 40 and set(line) <= set("▁▂▃▄▅▆▇█") and "▁" in line and "█" in line
    assert sparkline(np.zeros(1), 10) == ""
    eng = _engine()
    eng.feed(Chunk(np.zeros((1, 10)), 0, FS))
    assert eng.stats.used == 10


def _window(index: int, latency_ms: float, usable: bool = True, **flags) -> WindowResult:
    f = {"flat": [], "saturated": [], "gap": False, "noisy": False, **flags}
    return WindowResult(index, 5.0 * index, 5.0 * index + 10.0, usable, f, hr_bpm=72.0,
                        latency_ms={"end_to_end": latency_ms})


def test_live_view_fits_80_columns_and_says_what_it_shows() -> None:
    """At 80 columns nothing wraps; an offset shows when the episode ended; an unusable window says
    why; the first window (warm-up) stays out of the latency percentiles, and the view says so."""
    from rich.console import Console

    stats = StreamStats(received=123_456_789, used=122_000_000, lost=1_234_567, bridged_gaps=12_000, reset_gaps=345,
                        duplicate=123_456, invalid=654_321, rejected=111_111)
    view = LiveView(stats, "ecg-edge stream: replay /data/a/rather/long/path/to/the/record/100 lead MLII (360 Hz)",
                    console=Console(width=80, record=True, force_terminal=False))
    view.tap(Chunk(np.sin(np.linspace(0, 60, 1000))[None, :], 0, FS))
    view([_window(0, 900.0)] + [_window(i, 1.0) for i in range(1, 200)], [])
    view([_window(200, 1.0, usable=False, noisy=True)],
         [Event("rhythm", 12.0, None, "AF (RR)", "onset"), Event("rhythm", 12.0, 45.5, "AF (RR)", "offset")])
    view.console.print(view.render())
    lines = view.console.export_text().splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    for first, last in (("received 123456789", "12345 gaps)"), ("duplicate 123456", "rejected 111111")):
        row = [line for line in lines if first in line]
        assert row and last in row[0], (first, last, lines)  # one counters row, not wrapped onto two lines
    assert any("unusable (noisy)" in line for line in lines)
    offset = [line for line in lines if "offset" in line]
    assert offset and "45.5" in offset[0]
    latency = [line for line in lines if "p99" in line]
    assert latency and "p99 1.00 ms" in latency[0] and "900" not in latency[0]
    assert "warm-up" in "\n".join(lines)
    view([_window(201, 1.0, usable=False, flat=["II"], gap=True)], [])
    view.console.print(view.render())
    assert "unusable (flat II, gap)" in view.console.export_text()
