"""The one CLI, called as `main(argv)`: data commands, the demo, one-line errors, missing extras."""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ecg_edge.cli import main
from edge_runtime.errors import MissingExtraError


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ecg-edge: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.slow
def test_data_build_and_info_on_ptbxl(ptbxl_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "shards"
    rc = main(["data", "build", "--config", "configs/ptbxl.toml", "--data", f"ptbxl:{ptbxl_root}",
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
        rc = main(["data", "download", "ptbxl", "--out", str(dest), "--base-url", url,
                   "--include", "scp_statements.csv", "records100/00000/00001_lr.*"])
        assert rc == 0, capsys.readouterr().err
        printed = capsys.readouterr()
        assert "3 downloaded" in printed.out and printed.err.count(" bytes)\n") == 3  # a line per file
        assert (dest / "records100/00000/00001_lr.dat").read_bytes() == \
            (ptbxl_root / "records100/00000/00001_lr.dat").read_bytes()
        rc = main(["-q", "data", "download", "ptbxl", "--out", str(tmp_path / "quiet"), "--base-url", url,
                   "--include", "scp_statements.csv", "records100/00000/00001_lr.*"])
        printed = capsys.readouterr()
        assert rc == 0 and "3 downloaded" in printed.out and printed.err == ""  # -q: the result only
        rc = main(["data", "download", "ptbxl", "--out", str(dest), "--base-url", url + "missing/"])
        assert rc == 2 and "missing/SHA256SUMS.txt" in _one_line_error(capsys)
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


def test_bad_config_is_one_line_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("wfdb", reason="`ecg-edge data build` needs the 'train' extra (wfdb) before it reads a config")
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


# --- the shared vocabulary: deprecated spellings, help, --version, --config tables ----------------

def _parse(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[dict, list[str]]:
    """The namespace `argv` parses to, and the deprecation lines it printed."""
    from ecg_edge.cli import build_parser

    capsys.readouterr()
    ns = vars(build_parser().parse_args(argv))
    return ns, [line for line in capsys.readouterr().err.splitlines() if line.startswith("ecg-edge: deprecated: ")]


#: (subcommand, old spelling, new spelling, old flags named): the old spelling parses to exactly the
#: new one's namespace.
DEPRECATED = [
    ("data build", ["--source", "synthetic", "--out", "o"], ["--data", "synthetic", "--out", "o"], ["--source"]),
    ("data download", ["ptbxl", "d"], ["ptbxl", "--out", "d"], ["DEST"]),
    ("stream", ["--source", "synthetic", "--model", "m.json"], ["--source", "synthetic", "--artifact", "m.json"],
     ["--model"]),
    ("wearable", ["--replay", "rec"], ["--source", "replay:rec"], ["--replay"]),
    ("wearable", ["--source", "replay:rec", "--model", "m.json"], ["--source", "replay:rec", "--artifact", "m.json"],
     ["--model"]),
    ("pretrain", ["--encoder", "resnet1d_34"], ["--arch", "resnet1d_34"], ["--encoder"]),
    ("distill", ["--student", "student_m", "--out", "o"], ["--arch", "student_m", "--out", "o"], ["--student"]),
    ("export", ["--student", "s", "--fs-device", "130"], ["--student", "s", "--device-fs", "130"], ["--fs-device"]),
    ("quantize", ["--student", "s", "--fs-device", "130"], ["--student", "s", "--device-fs", "130"], ["--fs-device"]),
    ("export", ["--student", "s", "--quant", "qat"], ["--student", "s", "--method", "qat"], ["--quant"]),
    ("export", ["--student", "s", "--brevitas"], ["--student", "s", "--method", "ptq", "brevitas"], ["--brevitas"]),
    ("export", ["--student", "s", "--brevitas", "--quant", "qat"], ["--student", "s", "--method", "qat", "brevitas"],
     ["--brevitas", "--quant"]),
]


def _deprecated_actions() -> dict[tuple[str, str], Any]:
    """(subcommand, old flag or positional's metavar) -> its `Deprecated` action, from the parser."""
    from ecg_edge.cli import build_parser
    from ecg_edge.flags import Deprecated, leaves

    return {(p.prog.removeprefix("ecg-edge "), (a.option_strings or [a.metavar])[0]): a
            for p in leaves(build_parser()) for a in p._actions if isinstance(a, Deprecated)}


@pytest.mark.parametrize("command,old,new,named", DEPRECATED, ids=[f"{c} {' '.join(o)}" for c, o, _, _ in DEPRECATED])
def test_a_deprecated_spelling_parses_as_the_new_one_and_says_so_once(command: str, old: list[str], new: list[str],
                                                                      named: list[str],
                                                                      capsys: pytest.CaptureFixture) -> None:
    ns_old, lines = _parse([*command.split(), *old], capsys)
    ns_new, none = _parse([*command.split(), *new], capsys)
    assert ns_old == ns_new and none == []
    actions = _deprecated_actions()
    shown = {"DEST": "the positional DEST"}
    assert lines == [f"ecg-edge: deprecated: {shown.get(flag, flag)} is now {actions[command, flag].new} (the old "
                     "spelling goes in a later release)" for flag in named]


def test_every_deprecated_spelling_is_tested() -> None:
    assert set(_deprecated_actions()) == {(c, flag) for c, _, _, named in DEPRECATED for flag in named}


def test_a_deprecated_spelling_runs_the_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("wfdb")
    assert main(["data", "build", "--source", "synthetic", "--n-records", "12", "--out", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert err.count("ecg-edge: deprecated: --source is now --data") == 1
    assert json.loads((tmp_path / "s" / "config.json").read_text())["data"]["source"] == "synthetic"


def test_every_option_of_every_subcommand_has_help_text() -> None:
    from ecg_edge.cli import build_parser
    from ecg_edge.flags import Deprecated, leaves

    leaves = leaves(build_parser())
    assert [p.prog.removeprefix("ecg-edge ") for p in leaves] == [
        "data download", "data build", "data info", "stream", "wearable", "ble scan", "pretrain", "evaluate", "distill", "cv",
        "quantize", "export", "compare", "package", "verify", "keygen", "bench", "demo"]  # pipeline order
    missing = [f"{p.prog} {a.option_strings or a.dest}" for p in leaves for a in p._actions
               if not isinstance(a, (Deprecated, argparse._HelpAction)) and not (a.help or "").strip()]
    assert missing == []


def test_help_shows_defaults_and_config_keys(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0
    assert "(default: 1000; config key export.n_boot)" in text and "(default: runs/export)" in text
    assert "--fs-device" not in text and "--quant" not in text  # deprecated spellings stay out of the help


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"ecg-edge {version('ecg-edge')}"


def test_verbose_and_quiet_set_the_project_log_levels() -> None:
    import logging

    from ecg_edge.flags import LOGGERS, set_verbosity

    try:
        for level, shift in ((0, 0), (1, -10), (-1, 10)):
            set_verbosity(level)
            assert {n: logging.getLogger(n).level for n in LOGGERS} == {n: d + shift for n, d in LOGGERS.items()}
    finally:
        set_verbosity(0)


#: A command of each table, its flags, and the table's fields those flags must set.
TABLE_RUNS = [
    ("export", ["--student", "s", "--method", "qat", "brevitas", "--device-fs", "130", "--no-embedded", "--n-boot", "20"],
     {"student": "s", "method": ("qat", "brevitas"), "device_fs": 130.0, "embedded": False, "n_boot": 20}),
    ("quantize", ["--student", "s", "--method", "ptq", "qat", "--qat-epochs", "0"],
     {"student": "s", "method": ("ptq", "qat"), "qat_epochs": 0}),
    ("compare", ["--student", "s", "--artifacts", "a", "--data", "synthetic", "--no-ram", "--latency-runs", "5"],
     {"student": "s", "artifacts": "a", "data": "synthetic", "ram": False, "latency_runs": 5}),
    ("package", ["--artifact", "a", "--target", "tflm", "--no-firmware", "--headroom", "0.5", "--c-name", "m"],
     {"artifact": "a", "target": "tflm", "firmware": False, "headroom": 0.5, "c_name": "m"}),
    ("stream", ["--source", "synthetic", "--artifact", "m.json", "--chunk", "10", "--no-beats", "--jsonl", "x.jsonl"],
     {"source": "synthetic", "artifact": "m.json", "chunk": 10, "beats": False, "jsonl": "x.jsonl"}),
    ("wearable", ["--source", "replay:rec", "--drop", "0.1", "--disconnect-after", "5", "9", "--device-fs", "200"],
     {"source": "replay:rec", "drop": 0.1, "disconnect_after": (5, 9), "device_fs": 200.0}),
]


#: A flag per command set to 3 over the written config.
OVERRIDE = {"export": ["--threads", "3"], "quantize": ["--threads", "3"], "compare": ["--threads", "3"],
            "package": ["--headroom", "3"], "stream": ["--threads", "3"], "wearable": ["--chunk", "3"]}


@pytest.mark.parametrize("command,flags,expected", TABLE_RUNS, ids=[t[0] for t in TABLE_RUNS])
def test_config_table_round_trip(command: str, flags: list[str], expected: dict, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    """Flags set the table; the written config read back with --config gives the same table; a flag
    overrides the file's value."""
    from ecg_edge.cli import build_parser
    from ecg_edge.flags import command_table, write_table

    out = [] if command in ("stream", "wearable") else ["--out", str(tmp_path / "out")]  # not a table setting
    args = build_parser().parse_args([command, *out, *flags])
    table = command_table(args)
    assert {k: getattr(table, k) for k in expected} == expected
    written = write_table(tmp_path / "config.json", args, table)
    again = command_table(build_parser().parse_args([command, *out, "--config", str(written)]))
    assert again == table
    override = command_table(build_parser().parse_args([command, *out, "--config", str(written), *OVERRIDE[command]]))
    assert override == replace(table, **{OVERRIDE[command][0][2:].replace("-", "_"): 3})


def test_stream_writes_its_config_and_reruns_from_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("neurokit2")
    first = tmp_path / "a.jsonl"
    assert main(["stream", "--source", "synthetic", "--seconds", "20", "--fast", "--no-live", "--jsonl", str(first)]) == 0
    written = tmp_path / "a.config.json"
    cfg = json.loads(written.read_text())["stream"]
    assert cfg["source"] == "synthetic" and cfg["seconds"] == 20 and cfg["speed"] is None  # --fast
    second = tmp_path / "b.jsonl"
    assert main(["stream", "--config", str(written), "--no-live", "--jsonl", str(second)]) == 0
    strip = (lambda path: [{k: v for k, v in json.loads(line).items() if k != "latency_ms"}
                           for line in path.read_text().splitlines()])
    assert strip(first) == strip(second) and len(strip(first)) > 2


def test_flags_are_applied_to_the_config_in_one_place() -> None:
    """Only `ecg_edge.flags.resolve_config` loads --config for the CLI (every handler gets its settings
    from it), and `Deprecated` is the one argparse action of the project (old spellings go through it)."""
    import ast

    def calls(module: str) -> dict[str, set[str]]:
        tree = ast.parse((Path(__file__).resolve().parents[1] / "ecg_edge" / module).read_text())
        return {f.name: {getattr(n.func, "id", getattr(n.func, "attr", "")) for n in ast.walk(f) if isinstance(n, ast.Call)}
                for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}

    cli, flags = calls("cli.py"), calls("flags.py")
    assert [f for f, c in {**cli, **flags}.items() if "load_pipeline_config" in c] == ["resolve_config"]
    root = Path(__file__).resolve().parents[1]
    actions = [f"{path.name}:{c.name}" for pkg in ("ecg_edge", "edge_runtime", "train", "distill", "firmware_bridge")
               for path in sorted((root / pkg).rglob("*.py")) for c in ast.walk(ast.parse(path.read_text()))
               if isinstance(c, ast.ClassDef) and any(getattr(b, "attr", "") == "Action" for b in c.bases)]
    assert actions == ["flags.py:Deprecated"]
