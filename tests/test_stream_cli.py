"""`ecg-edge stream` / `wearable` end to end: real artifacts on their runtime, real BLE path, real data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecg_edge.cli import main
from edge_runtime.backends import ArtifactModel
from edge_runtime.engine import Engine
from edge_runtime.sources import ArraySource, Chunk


def _jsonl(path: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r["type"] == "window"], [r for r in rows if r["type"] == "event"]


def test_int8_tflite_model_streams_chunked_equal_to_whole(exports) -> None:
    from train.data.synthetic import Synthetic

    model = ArtifactModel.open(exports.get("tflite_int8").manifest)
    ds = Synthetic(10, seed=5, fs=500.0, duration_s=40.0)
    rec = ds.read(ds.ids()[1]).select(("I",))  # an AFIB record

    def run(chunks: list[Chunk]) -> list:
        eng = Engine(model.preprocessor(500.0), model)
        return [r for c in chunks for r in eng.feed(c)[0]]

    whole = run([Chunk(rec.signal, 0, 500.0)])
    streamed = run(ArraySource(rec.signal, 500.0, chunk=73).chunks())
    assert len(whole) == len(streamed) == 7
    for a, b in zip(whole, streamed):
        assert a.probabilities == b.probabilities and a.t_start_s == b.t_start_s
    assert all(abs(sum(r.probabilities.values()) - 1) < 1e-4 for r in whole)  # softmax over 5 conditions


def test_stream_command_with_a_model(exports, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = exports.get("tflite_int8").manifest
    out = tmp_path / "s.jsonl"
    rc = main(["stream", "--source", "synthetic", "--fs", "500", "--seconds", "60", "--artifact", str(manifest),
               "--fast", "--no-live", "--jsonl", str(out), "--csv", str(tmp_path / "s.csv")])
    assert rc == 0, capsys.readouterr().err
    windows, events = _jsonl(out)
    assert len(windows) == 11 and all(w["probabilities"] is not None for w in windows)
    assert all(50 <= w["hr_bpm"] <= 110 for w in windows)  # seed 0, record 0 is NORM
    assert events[-1]["kind"] == "end"
    assert "30000 samples received, 0 lost" in capsys.readouterr().out
    rc = main(["stream", "--source", "synthetic", "--lead", "II", "--artifact", str(manifest), "--fast", "--no-live"])
    assert rc == 2 and "expects lead I; the source gives II" in capsys.readouterr().err


def test_a_stream_shorter_than_one_window_is_padded_or_too_short(exports, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """--short (`[stream] short`, `EngineConfig.pad_short`): 6 s of signal, less than one 10 s window,
    is classified on one window flagged padded (pad, the default), or gets no window and ends with
    the explicit "too short, no decision" line (too-short), from the flag or from a config file (a
    flag overrides the file); the written config keeps the choice; a bad value is one error line."""
    from cli_errors import assert_one_error_line
    from ecg_edge.cli import build_parser

    pytest.importorskip("neurokit2", reason="--source synthetic needs the 'synthetic' extra (neurokit2)")
    manifest = exports.get("tflite_int8").manifest
    base = ["stream", "--source", "synthetic", "--fs", "500", "--seconds", "6", "--artifact", str(manifest),
            "--fast", "--no-live"]
    conf = tmp_path / "short.toml"
    conf.write_text('[stream]\nshort = "too-short"\n')
    runs = {"default": ([], "pad"), "pad": (["--short", "pad"], "pad"),
            "too-short": (["--short", "too-short"], "too-short"), "config": (["--config", str(conf)], "too-short"),
            "flag-over-config": (["--config", str(conf), "--short", "pad"], "pad")}
    for name, (extra, policy) in runs.items():
        out = tmp_path / f"{name}.jsonl"
        rc = main([*base, *extra, "--jsonl", str(out)])
        assert rc == 0, capsys.readouterr().err
        text = capsys.readouterr().out
        windows, events = _jsonl(out)
        end = events[-1]
        assert end["kind"] == "end" and "the stream (6.0 s) is shorter than one 10 s window" in end["detail"], name
        if policy == "pad":
            assert len(windows) == 1 and windows[0]["flags"]["padded"] and windows[0]["probabilities"], name
            assert end["detail"].endswith("padded to one window (flagged padded)"), name
            assert "1 windows (0 unusable, 1 padded)" in text and "classified on one padded window" in text, name
        else:
            assert windows == [] and end["detail"].endswith("too short, no decision"), name
            assert "0 windows (0 unusable, 0 padded)" in text and "too short, no decision" in text, name
        assert json.loads(out.with_suffix(".config.json").read_text())["stream"]["short"] == policy, name
    assert build_parser().parse_args(["wearable", "--source", "replay:r.npy", "--short", "too-short"]).short \
        == "too-short"
    assert_one_error_line([*base[:3], "--short", "cut"], capsys, "argument --short", "'cut'")
    conf.write_text('[stream]\nshort = "cut"\n')
    assert_one_error_line([*base[:3], "--config", str(conf)], capsys, "short.toml", "stream.short",
                          "expected one of pad, too-short, got 'cut'")


def test_replay_of_a_wfdb_record(mitdb_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.jsonl"
    rc = main(["stream", "--source", f"replay:{mitdb_root / '100'}", "--lead", "MLII", "--seconds", "120",
               "--fast", "--no-live", "--jsonl", str(out)])
    assert rc == 0
    windows, _ = _jsonl(out)
    assert len(windows) == 23 and all(65 <= w["hr_bpm"] <= 85 for w in windows)  # record 100: ~75 bpm
    rc = main(["stream", "--source", f"replay:{mitdb_root / '100'}", "--lead", "V1", "--fast", "--no-live"])
    assert rc == 2 and "has no lead V1; it has MLII, V5" in capsys.readouterr().err


def test_virtual_wearable_with_drops_and_disconnects(mitdb_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("bumble")
    out = tmp_path / "w.jsonl"
    rc = main(["wearable", "--source", f"replay:{mitdb_root / '100'}", "--seconds", "300", "--fast", "--drop", "0.01",
               "--disconnect-after", "100", "200", "300", "--seed", "3", "--no-live", "--jsonl", str(out)])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    runtime_line, link_line = text.splitlines()[:2]
    lost_runtime = int(runtime_line.split(" lost")[0].split(", ")[-1])
    lost_link = int(link_line.split(" lost")[0].split(", ")[-1])
    assert lost_runtime == lost_link > 0 and "3 reconnects" in link_line  # both layers count the same loss
    windows, events = _jsonl(out)
    gaps = [e for e in events if e["kind"] in ("gap", "reset")]
    assert sum(int(e["detail"].split()[0]) for e in gaps) == lost_runtime
    marked = [w for w in windows if w["flags"]["gap"]]
    assert marked and all(not w["usable"] for w in marked)
    for e in (e for e in gaps if e["kind"] == "gap"):  # windows around a bridged gap are marked
        around = [w for w in windows if w["t_start_s"] <= e["t_start_s"] and w["t_end_s"] >= e["t_end_s"]]
        assert around and all(w["flags"]["gap"] for w in around)
    assert np.isfinite([w["hr_bpm"] for w in windows if w["usable"] and w["hr_bpm"] is not None]).all()


def test_ble_without_an_adapter_is_one_line(capsys: pytest.CaptureFixture) -> None:
    """Here (and in CI) there is no BlueZ: scanning must say so in one line, not a traceback."""
    pytest.importorskip("bleak")
    rc = main(["ble", "scan", "--timeout", "1"])
    if rc == 0:  # a machine with a working adapter: the listing ends with its count
        assert "device(s) found" in capsys.readouterr().out
        return
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("ecg-edge: error: no Bluetooth adapter reachable") and "\n" not in err


@pytest.mark.slow
def test_virtual_wearable_in_real_time_ends_with_its_recording(mitdb_root: Path, tmp_path: Path) -> None:
    """Not --fast: the wearable marks itself finished after its last frame, when no further chunk
    will come; the stream must still end (it used to wait forever, logging stalls)."""
    pytest.importorskip("bumble")
    import subprocess
    import sys

    out = tmp_path / "rt.jsonl"
    r = subprocess.run([sys.executable, "-m", "ecg_edge", "wearable", "--source", f"replay:{mitdb_root / '100'}",
                        "--seconds", "30", "--speed", "20", "--no-live", "--no-beats", "--jsonl", str(out)],
                       capture_output=True, text=True, timeout=90, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "0 lost" in r.stdout
    _, events = _jsonl(out)
    assert not [e for e in events if e["kind"] == "stall"] and events[-1]["kind"] == "end"


def _in_a_terminal(argv: list[str], ctrl_c: bool = False, timeout: float = 120) -> tuple[int, str, str]:
    """Run `ecg-edge argv` with stdin/stdout on a pseudo-terminal of 80 columns (the live view on) and
    stderr on a pipe; with `ctrl_c`, type Ctrl-C once the panel shows. Returns (status, tty output, stderr)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    import threading
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "ecg_edge", *argv], stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE, preexec_fn=controlling_terminal,
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "TERM": "xterm-256color"})
    os.close(slave)
    out = bytearray()

    def drain() -> None:
        while True:
            try:
                block = os.read(master, 65536)
            except OSError:  # EIO once the child has closed the terminal
                return
            if not block:
                return
            out.extend(block)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if ctrl_c:
            deadline = time.monotonic() + timeout
            while b"samples" not in out and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            time.sleep(0.5)
            os.write(master, b"\x03")  # the key, not a signal: the tty echoes it and signals the process group
        err = proc.stderr.read().decode()
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(5)
        os.close(master)
    return proc.returncode, out.decode(errors="replace"), err


def test_ctrl_c_stops_the_live_view_cleanly() -> None:
    """Ctrl-C: exit 130 with one line, the final panel whole, the cursor back, and no echoed ^C (at
    80 columns it wrapped below the panel and the last redraw left the old top border behind)."""
    pytest.importorskip("rich")
    pytest.importorskip("neurokit2", reason="--source synthetic needs the 'synthetic' extra (neurokit2)")
    rc, out, err = _in_a_terminal(["stream", "--source", "synthetic", "--seconds", "60", "--speed", "5",
                                   "--no-beats"], ctrl_c=True)
    assert rc == 130 and err.strip() == "ecg-edge: interrupted", (rc, err[-2000:])
    assert "^C" not in out, out[-600:]
    assert out.rfind("╭") < out.rfind("╰") and out.rstrip().endswith("\x1b[?25h"), out[-600:]


@pytest.mark.slow
def test_live_view_keeps_litert_info_line_off_the_panel(exports) -> None:
    """LiteRT's C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to fd 2 when the
    interpreter allocates; with the live view on it must not land above the panel."""
    import subprocess
    import sys

    manifest = str(exports.get("tflite_int8").manifest)
    argv = ["stream", "--source", "synthetic", "--fs", "500", "--seconds", "20", "--artifact", manifest, "--fast"]
    plain = subprocess.run([sys.executable, "-m", "ecg_edge", *argv, "--no-live"], capture_output=True, text=True,
                           timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert plain.returncode == 0, plain.stderr[-2000:]
    if "XNNPACK" not in plain.stderr:
        pytest.skip("this LiteRT build prints no XNNPACK line")
    rc, out, err = _in_a_terminal(argv)
    assert rc == 0 and "samples" in out, (rc, err[-2000:])
    assert "XNNPACK" not in err + out


def test_synthetic_source_plays_the_condition_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--condition picks the generator's rhythm (it always played NORM); AF (for AFIB) shows as an
    RR-irregularity episode, the default NORM as none; the heart rate follows STACH."""
    pytest.importorskip("neurokit2", reason="--source synthetic needs the 'synthetic' extra (neurokit2)")
    found = {}
    for condition in ("AF", "NORM", "STACH"):
        out = tmp_path / f"{condition}.jsonl"
        rc = main(["stream", "--source", "synthetic", "--condition", condition, "--seconds", "120", "--fast",
                   "--no-live", "--jsonl", str(out)])
        assert rc == 0, capsys.readouterr().err
        windows, events = _jsonl(out)
        found[condition] = (capsys.readouterr().out, [e for e in events if e["label"] == "AF (RR)"],
                            np.nanmedian([w["hr_bpm"] or np.nan for w in windows]))
    assert found["AF"][0].startswith("synthetic AFIB") and found["AF"][1][0]["detail"] == "onset"
    assert found["NORM"][0].startswith("synthetic NORM") and not found["NORM"][1]
    assert found["STACH"][2] > 100 > found["NORM"][2]


def test_stream_takes_typed_options_and_leaves_the_wearable_to_the_facade() -> None:
    """The composition root stays thin: ecg_edge.stream takes `StreamOptions` (no argparse namespace; no
    SimpleNamespace anywhere in ecg_edge), does not import the CLI back, and nothing in ecg_edge builds
    a wearable itself: `firmware_bridge.open_wearable` chooses the bleak device or the bumble one."""
    import ast

    root = Path(__file__).resolve().parents[1] / "ecg_edge"
    trees = {p.name: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(root.glob("*.py"))}
    names = {n.id for t in trees.values() for n in ast.walk(t) if isinstance(n, ast.Name)} | \
        {n.attr for t in trees.values() for n in ast.walk(t) if isinstance(n, ast.Attribute)}
    assert "SimpleNamespace" not in names
    assert not names & {"VirtualWearable", "virtual_link", "EcgClient", "Faults"}
    stream = trees["stream.py"]
    modules = {n.module for n in ast.walk(stream) if isinstance(n, ast.ImportFrom)}
    assert "ecg_edge.cli" not in modules and "firmware_bridge" in modules
    params = {a.arg for f in ast.walk(stream) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for a in f.args.args + f.args.kwonlyargs}
    assert "args" not in params and "opts" in params
