"""The one CLI, called as `main(argv)`: data commands, the demo, one-line errors, missing extras."""
from __future__ import annotations

import functools
import http.server
import json
import sys
import threading
from pathlib import Path

import pytest

from ecg_edge.cli import main
from edge_runtime.errors import MissingExtraError


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ecg-edge: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_data_build_and_info_on_ptbxl(ptbxl_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "shards"
    rc = main(["data", "build", "--config", "configs/ptbxl.toml", "--source", f"ptbxl:{ptbxl_root}",
               "--out", str(out), "--workers", "2"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "500 records" in stdout and "skipped records: 0" in stdout
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["data"]["source"] == f"ptbxl:{ptbxl_root}" and resolved["preprocess"]["notch_hz"] is None
    assert main(["data", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sum(info["windows"].values()) == 500
    assert sum(p["NORM"] for p in info["positives"].values()) == 297


def test_data_download_from_a_local_mirror(ptbxl_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    handler = functools.partial(_QuietHandler, directory=str(ptbxl_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        dest = tmp_path / "ptbxl"
        rc = main(["data", "download", "ptbxl", str(dest), "--base-url", url,
                   "--include", "scp_statements.csv", "records100/00000/00001_lr.*"])
        assert rc == 0, capsys.readouterr().err
        assert "3 downloaded" in capsys.readouterr().out
        assert (dest / "records100/00000/00001_lr.dat").read_bytes() == \
            (ptbxl_root / "records100/00000/00001_lr.dat").read_bytes()
        rc = main(["data", "download", "ptbxl", str(dest), "--base-url", url + "missing/"])
        assert rc == 2 and "missing/SHA256SUMS.txt" in _one_line_error(capsys)
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


def test_bad_config_is_one_line_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[preprocess]\nhop_s = -5\n")
    assert main(["data", "build", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert str(bad) in err and "preprocess.hop_s" in err


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "wfdb", None)  # import wfdb now raises ImportError
    assert main(["data", "build", "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert "needs wfdb (wfdb is not installed), in the 'train' extra: pip install 'ecg-edge[train]'" in err
    assert issubclass(MissingExtraError, ImportError)


def test_bench_subcommand_runs_a_benchmark(capfd: pytest.CaptureFixture) -> None:
    assert main(["bench", "preprocess", "--seconds", "20", "--repeats", "1"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert out["benchmark"] == "preprocess" and out["stream"]["real_time_factor"] > 0
    assert out["stream_baseline"]["real_time_factor"] > out["stream"]["real_time_factor"]
