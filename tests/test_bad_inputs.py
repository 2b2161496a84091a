"""The bad-input corpus of files, flags and configs: every case ends the command with one line.

Each row of `CASES` is a command line (`{d}` is the module's folder of bad files, built once) and
the names its one `ecg-edge: error:` line must hold: the file or field, and what was expected
(`tests/cli_errors.py`: non-zero exit, exactly one error line, no traceback, no usage block).
Stream and wearable cases run `--fast --no-live`, so a case that wrongly succeeds ends quickly
and fails on its exit status. Below the table: the same check through the installed console
script in a subprocess, and the .npy contract's good cases (what must still stream).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_errors import assert_one_error_line
from ecg_edge.cli import main

REPO = Path(__file__).resolve().parents[1]
FS = 250.0
N = 5000  # 20 s at 250 Hz
S = ("stream", "--fast", "--no-live")  # stream cases: never real time, never the live view
W = ("wearable", "--fast", "--no-live")


def _wfdb(folder: Path, name: str, *, fs: str = "250", units: str = "mV", dat: bool = True) -> None:
    """A two-lead WFDB record written by wfdb, its header's rate field then replaced by `fs`."""
    wfdb = pytest.importorskip("wfdb")
    t = np.arange(N) / FS
    sig = np.stack([np.sin(2 * np.pi * 1.2 * t), np.cos(2 * np.pi * 1.2 * t)], axis=1)
    wfdb.wrsamp(name, fs=FS, units=["mV", "mV"], sig_name=["I", "II"], p_signal=sig, fmt=["16", "16"],
                write_dir=str(folder))
    hea = folder / f"{name}.hea"
    lines = hea.read_text().splitlines()
    rec = lines[0].split()
    if fs:
        rec[2] = fs
    else:  # no rate and so no length either (fields are positional)
        del rec[2:]
    lines[0] = " ".join(rec)
    hea.write_text("\n".join([lines[0]] + [ln.replace(" mV ", f" {units} ").replace("/mV ", f"/{units} ")
                                           for ln in lines[1:]]) + "\n")
    if not dat:
        (folder / f"{name}.dat").unlink()


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's bad files: .npy arrays, WFDB records and TOML configs."""
    root = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    arrays = {"rows3": rng.normal(size=(3, N)), "cols2": rng.normal(size=(N, 2)), "col1": rng.normal(size=(N, 1)),
              "empty": np.zeros(0), "empty_row": np.zeros((1, 0)), "no_rows": np.zeros((0, N)),
              "nan": np.full(N, np.nan), "inf": np.full((1, N), np.inf), "cube": np.zeros((2, 3, N)),
              "scalar": np.array(1.5), "bools": np.ones(N, bool), "complex": np.ones(N, complex),
              "strings": np.array(["a", "b"])}
    for name, arr in arrays.items():
        np.save(root / f"{name}.npy", arr)
    np.save(root / "objects.npy", np.array([1.0, "mV"], dtype=object), allow_pickle=True)
    (root / "text.npy").write_text("not an array\n")
    (root / "folder.npy").mkdir()
    _wfdb(root, "rate_abc", fs="abc")
    _wfdb(root, "rate_zero", fs="0")
    _wfdb(root, "rate_none", fs="")
    _wfdb(root, "units_mmhg", units="mmHg")
    _wfdb(root, "no_dat", dat=False)
    _wfdb(root, "good")
    (root / "type.toml").write_text('[preprocess]\nwindow_s = "ten"\n')
    (root / "unknown.toml").write_text("[preprocess]\nwindow_seconds = 10\n")
    (root / "table.toml").write_text("[frobnicate]\nx = 1\n")
    (root / "syntax.toml").write_text("[preprocess\n")
    (root / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    (root / "config_dir.toml").mkdir()
    # the command tables ([export], [compare], [package], [stream]) and a written config.json
    (root / "export_key.toml").write_text("[export]\nquant = 'qat'\n")
    (root / "export_two_int8.toml").write_text("[export]\nstudent = 's'\nmethod = ['ptq', 'qat']\n")
    (root / "compare_type.toml").write_text("[compare]\nn_boot = 'many'\n")
    (root / "package_headroom.toml").write_text("[package]\nheadroom = -1\n")
    (root / "stream_chunk.toml").write_text("[stream]\nsource = 'synthetic'\nchunk = 0\n")
    (root / "stream_profile.toml").write_text("[stream]\nsource = 'synthetic'\nprofile = 'garmin'\n")
    (root / "written.json").write_text('{"stream": {"source": "synthetic", "speed": "fast"}}\n')
    (root / "broken.json").write_text('{"stream": {"source": \n')
    return root


NPY = ("--fs", "250", "--lead", "I")
#: (id, argv, names the error line must hold). `{d}`: the folder of bad files.
CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    # --- .npy replays: the contract is (n,) or (1, n) in mV; (k, n) needs --row
    ("npy_rows_without_row", (*S, "--source", "replay:{d}/rows3.npy", "--fs", "250", "--lead", "III"),
     ("rows3.npy", "--row", "(3, 5000)")),
    ("npy_row_out_of_range", (*S, "--source", "replay:{d}/rows3.npy", *NPY, "--row", "3"), ("rows3.npy", "--row")),
    ("npy_transposed", (*S, "--source", "replay:{d}/cols2.npy", *NPY), ("cols2.npy", "transposed", "(5000, 2)")),
    ("npy_column", (*S, "--source", "replay:{d}/col1.npy", *NPY), ("col1.npy", "transposed")),
    ("npy_empty", (*S, "--source", "replay:{d}/empty.npy", *NPY), ("empty.npy", "no samples")),
    ("npy_empty_row", (*S, "--source", "replay:{d}/empty_row.npy", *NPY), ("empty_row.npy", "no samples")),
    ("npy_no_rows", (*S, "--source", "replay:{d}/no_rows.npy", *NPY), ("no_rows.npy",)),
    ("npy_all_nan", (*S, "--source", "replay:{d}/nan.npy", *NPY), ("nan.npy", "finite")),
    ("npy_all_inf", (*S, "--source", "replay:{d}/inf.npy", *NPY), ("inf.npy", "finite")),
    ("npy_3d", (*S, "--source", "replay:{d}/cube.npy", *NPY), ("cube.npy", "(2, 3, 5000)")),
    ("npy_scalar", (*S, "--source", "replay:{d}/scalar.npy", *NPY), ("scalar.npy",)),
    ("npy_bool", (*S, "--source", "replay:{d}/bools.npy", *NPY), ("bools.npy", "bool")),
    ("npy_complex", (*S, "--source", "replay:{d}/complex.npy", *NPY), ("complex.npy", "complex")),
    ("npy_strings", (*S, "--source", "replay:{d}/strings.npy", *NPY), ("strings.npy",)),
    ("npy_object", (*S, "--source", "replay:{d}/objects.npy", *NPY), ("objects.npy", "numeric")),
    ("npy_text", (*S, "--source", "replay:{d}/text.npy", *NPY), ("text.npy",)),
    ("npy_folder", (*S, "--source", "replay:{d}/folder.npy", *NPY), ("folder.npy",)),
    ("npy_missing", (*S, "--source", "replay:{d}/missing.npy", *NPY), ("missing.npy", "not found")),
    ("npy_without_fs", (*S, "--source", "replay:{d}/rows3.npy", "--lead", "I"), ("--fs", "rows3.npy")),
    ("npy_without_lead", (*S, "--source", "replay:{d}/rows3.npy", "--fs", "250"), ("--lead", "rows3.npy")),
    ("wearable_npy_rows", (*W, "--source", "replay:{d}/rows3.npy", "--fs", "250"), ("rows3.npy", "--row")),
    ("wearable_npy_transposed", (*W, "--source", "replay:{d}/cols2.npy", "--fs", "250"), ("cols2.npy", "transposed")),
    ("wearable_npy_empty", (*W, "--source", "replay:{d}/empty.npy", "--fs", "250"), ("empty.npy", "no samples")),
    ("wearable_npy_nan", (*W, "--source", "replay:{d}/nan.npy", "--fs", "250"), ("nan.npy", "finite")),
    ("wearable_npy_object", (*W, "--source", "replay:{d}/objects.npy", "--fs", "250"), ("objects.npy",)),
    ("wearable_npy_missing", (*W, "--source", "replay:{d}/missing.npy", "--fs", "250"), ("missing.npy",)),
    ("wearable_npy_without_fs", (*W, "--source", "replay:{d}/rows3.npy", "--row", "1"), ("--fs", "rows3.npy")),
    # --- WFDB records: header rate checked by us (wfdb silently defaults to 250 Hz)
    ("wfdb_missing", (*S, "--source", "replay:{d}/missing"), ("missing.hea", "not found")),
    ("wfdb_missing_hea_suffix", (*S, "--source", "replay:{d}/missing.hea"), ("missing.hea",)),
    ("wearable_wfdb_missing", (*W, "--source", "replay:{d}/missing"), ("missing.hea", "not found")),
    ("wfdb_rate_abc", (*S, "--source", "replay:{d}/rate_abc"), ("rate_abc.hea", "'abc'", "sampling rate")),
    ("wearable_wfdb_rate_abc", (*W, "--source", "replay:{d}/rate_abc", "--lead", "I"), ("rate_abc.hea", "'abc'")),
    ("wfdb_rate_zero", (*S, "--source", "replay:{d}/rate_zero"), ("rate_zero.hea", "sampling rate")),
    ("wfdb_rate_absent", (*S, "--source", "replay:{d}/rate_none"), ("rate_none.hea", "sampling rate")),
    ("wearable_wfdb_rate_absent", (*W, "--source", "replay:{d}/rate_none", "--lead", "I"), ("rate_none.hea",)),
    ("wfdb_units", (*S, "--source", "replay:{d}/units_mmhg"), ("units_mmhg.hea", "mmHg")),
    ("wearable_wfdb_units", (*W, "--source", "replay:{d}/units_mmhg", "--lead", "I"), ("units_mmhg.hea", "mmHg")),
    ("wfdb_no_dat", (*S, "--source", "replay:{d}/no_dat"), ("no_dat",)),
    ("wearable_wfdb_no_dat", (*W, "--source", "replay:{d}/no_dat", "--lead", "I"), ("no_dat",)),
    ("wfdb_unknown_lead", (*S, "--source", "replay:{d}/good", "--lead", "V1"), ("good.hea", "V1", "I, II")),
    ("wearable_wfdb_unknown_lead", (*W, "--source", "replay:{d}/good", "--lead", "V1"), ("good.hea", "V1")),
    ("wfdb_with_row", (*S, "--source", "replay:{d}/good", "--row", "1"), ("--row",)),
    ("wfdb_with_other_fs", (*S, "--source", "replay:{d}/good", "--fs", "500"), ("--fs", "good.hea", "250")),
    # --- --source and --lead
    ("source_unknown_kind", (*S, "--source", "file:x"), ("--source", "'file:x'")),
    ("source_empty_replay", (*S, "--source", "replay:"), ("--source", "replay:PATH")),
    ("source_synthetic_argument", (*S, "--source", "synthetic:AF"), ("--source", "--condition")),
    ("source_missing", ("stream", "--fast"), ("--source",)),
    ("wearable_empty_replay", (*W, "--source", "replay:"), ("--source", "replay:PATH")),
    ("wearable_source_not_replay", (*W, "--source", "synthetic"), ("--source", "replay:PATH", "'synthetic'")),
    ("lead_unknown", (*S, "--source", "synthetic", "--lead", "XYZ"), ("--lead", "'XYZ'")),
    ("lead_not_in_synthetic", (*S, "--source", "synthetic", "--lead", "MLII"), ("synthetic", "MLII")),
    ("condition_unknown", (*S, "--source", "synthetic", "--condition", "VFIB"), ("--condition", "'VFIB'", "AFIB")),
    ("condition_on_replay", (*S, "--source", "replay:{d}/good", "--condition", "AFIB"), ("--condition",)),
    ("model_missing", (*S, "--source", "synthetic", "--seconds", "20", "--artifact", "{d}/nope/manifest.json"),
     ("nope",)),
    # --- numeric flags, checked at parse time
    ("chunk_zero", (*S, "--source", "synthetic", "--chunk", "0"), ("argument --chunk", "positive integer", "0")),
    ("chunk_negative", (*S, "--source", "synthetic", "--chunk", "-5"),
     ("argument --chunk: expected a positive integer, got -5",)),
    ("chunk_not_a_number", (*S, "--source", "synthetic", "--chunk", "abc"), ("argument --chunk", "'abc'")),
    ("chunk_fraction", (*S, "--source", "synthetic", "--chunk", "7.5"), ("argument --chunk", "7.5")),
    ("speed_negative", (*S, "--source", "synthetic", "--speed", "-1"), ("argument --speed", "positive number")),
    ("speed_zero", (*S, "--source", "synthetic", "--speed", "0"), ("argument --speed",)),
    ("speed_nan", (*S, "--source", "synthetic", "--speed", "nan"), ("argument --speed",)),
    ("seconds_negative", (*S, "--source", "synthetic", "--seconds", "-5"), ("argument --seconds", "non-negative")),
    ("seconds_inf", (*S, "--source", "synthetic", "--seconds", "inf"), ("argument --seconds",)),
    ("fs_zero", (*S, "--source", "synthetic", "--fs", "0"), ("argument --fs",)),
    ("fs_negative", (*S, "--source", "replay:{d}/rows3.npy", "--fs", "-250", "--lead", "I"), ("argument --fs",)),
    ("fs_synthetic_out_of_range", (*S, "--source", "synthetic", "--fs", "50"), ("--fs", "100..1000")),
    ("seconds_synthetic_too_short", (*S, "--source", "synthetic", "--seconds", "1"), ("--seconds", ">= 2")),
    ("threads_zero", (*S, "--source", "synthetic", "--threads", "0"), ("argument --threads",)),
    ("bridge_zero", (*S, "--source", "synthetic", "--bridge-max-s", "0"), ("argument --bridge-max-s",)),
    ("seed_negative", (*S, "--source", "synthetic", "--seed", "-1"), ("argument --seed",)),
    ("row_negative", (*S, "--source", "replay:{d}/rows3.npy", *NPY, "--row", "-1"), ("argument --row",)),
    ("backend_unknown", (*S, "--source", "synthetic", "--backend", "tensorrt"), ("argument --backend", "'tensorrt'")),
    ("profile_unknown", (*W, "--source", "replay:{d}/good", "--profile", "garmin"), ("argument --profile", "'garmin'")),
    ("unknown_flag", (*S, "--source", "synthetic", "--bogus"), ("--bogus",)),
    ("wearable_without_source", ("wearable", "--fast"), ("--source", "replay:PATH")),
    ("wearable_chunk_zero", (*W, "--source", "replay:{d}/good", "--chunk", "0"), ("argument --chunk",)),
    ("wearable_drop_above_one", (*W, "--source", "replay:{d}/good", "--drop", "1.5"), ("argument --drop", "0 <= x < 1")),
    ("wearable_drop_negative", (*W, "--source", "replay:{d}/good", "--drop", "-0.1"), ("argument --drop",)),
    ("wearable_device_fs_zero", (*W, "--source", "replay:{d}/good", "--device-fs", "0"), ("argument --device-fs",)),
    ("wearable_disconnect_negative", (*W, "--source", "replay:{d}/good", "--disconnect-after", "-1"),
     ("argument --disconnect-after",)),
    ("wearable_seconds_negative", (*W, "--source", "replay:{d}/good", "--seconds", "-5"), ("argument --seconds",)),
    ("wearable_speed_negative", ("wearable", "--source", "replay:{d}/good", "--speed", "-1"), ("argument --speed",)),
    ("ble_scan_timeout_zero", ("ble", "scan", "--timeout", "0"), ("argument --timeout",)),
    ("download_workers_zero", ("data", "download", "ptbxl", "{d}/dl", "--workers", "0"), ("argument --workers",)),
    ("download_unknown_dataset", ("data", "download", "imagenet", "{d}/dl"), ("argument dataset", "'imagenet'")),
    ("build_n_records_zero", ("data", "build", "--out", "{d}/o", "--n-records", "0"), ("argument --n-records",)),
    ("build_without_out", ("data", "build"), ("--out",)),
    ("pretrain_epochs_zero", ("pretrain", "--out", "{d}/o", "--epochs", "0"), ("argument --epochs",)),
    ("pretrain_batch_negative", ("pretrain", "--out", "{d}/o", "--batch-size", "-8"), ("argument --batch-size",)),
    ("evaluate_fraction_zero", ("evaluate", "--checkpoint", "c.pt", "--out", "{d}/o", "--fractions", "0"),
     ("argument --fractions", "0 < x <= 1")),
    ("evaluate_fraction_above_one", ("evaluate", "--checkpoint", "c.pt", "--out", "{d}/o", "--fractions", "1.5"),
     ("argument --fractions",)),
    ("evaluate_n_boot_zero", ("evaluate", "--checkpoint", "c.pt", "--out", "{d}/o", "--n-boot", "0"),
     ("argument --n-boot",)),
    ("distill_epochs_negative", ("distill", "--out", "{d}/o", "--epochs", "-1"), ("argument --epochs",)),
    ("export_threads_zero", ("export", "--student", "s", "--out", "{d}/o", "--threads", "0"), ("argument --threads",)),
    ("export_device_fs_zero", ("export", "--student", "s", "--out", "{d}/o", "--device-fs", "0"),
     ("argument --device-fs",)),
    ("quantize_qat_lr_negative", ("quantize", "--student", "s", "--out", "{d}/o", "--qat-lr", "-1"),
     ("argument --qat-lr",)),
    ("package_headroom_negative", ("package", "--artifact", "a", "--target", "tflm", "--out", "{d}/o",
                                   "--headroom", "-0.5"), ("argument --headroom",)),
    ("compare_latency_runs_zero", ("compare", "--student", "s", "--artifacts", "a", "--latency-runs", "0"),
     ("argument --latency-runs",)),
    ("bench_unknown", ("bench", "nope"), ("argument name", "'nope'")),
    ("command_unknown", ("frobnicate",), ("'frobnicate'",)),
    ("command_missing", (), ("<command>",)),
    # --- config files (`--config`): the file and the field
    ("config_wrong_type", ("data", "build", "--config", "{d}/type.toml", "--out", "{d}/o"),
     ("type.toml", "preprocess.window_s")),
    ("config_unknown_key", ("data", "build", "--config", "{d}/unknown.toml", "--out", "{d}/o"),
     ("unknown.toml", "preprocess.window_seconds", "unknown key")),
    ("config_unknown_table", ("data", "build", "--config", "{d}/table.toml", "--out", "{d}/o"),
     ("table.toml", "frobnicate")),
    ("config_bad_syntax", ("data", "build", "--config", "{d}/syntax.toml", "--out", "{d}/o"),
     ("syntax.toml", "not valid TOML")),
    ("config_not_text", ("data", "build", "--config", "{d}/binary.toml", "--out", "{d}/o"), ("binary.toml", "UTF-8")),
    ("config_is_a_folder", ("data", "build", "--config", "{d}/config_dir.toml", "--out", "{d}/o"),
     ("config_dir.toml",)),
    ("config_missing", ("data", "build", "--config", "{d}/missing.toml", "--out", "{d}/o"),
     ("missing.toml", "not found")),
    ("pretrain_config_wrong_type", ("pretrain", "--config", "{d}/type.toml", "--out", "{d}/o"),
     ("type.toml", "preprocess.window_s")),
    ("distill_config_unknown_key", ("distill", "--config", "{d}/unknown.toml", "--out", "{d}/o", "--shards", "x"),
     ("unknown.toml", "preprocess.window_seconds")),
    ("export_config_unknown_key", ("export", "--config", "{d}/export_key.toml"), ("export_key.toml", "export.quant",
                                                                                 "unknown key")),
    ("export_config_two_int8_methods", ("export", "--config", "{d}/export_two_int8.toml"),
     ("export_two_int8.toml", "export.method", "one of ptq or qat")),
    ("export_flags_two_int8_methods", ("export", "--student", "s", "--method", "ptq", "qat"),
     ("export.method", "one of ptq or qat")),
    ("export_without_student", ("export",), ("--student", "export.student")),
    ("compare_config_wrong_type", ("compare", "--config", "{d}/compare_type.toml"), ("compare_type.toml",
                                                                                   "compare.n_boot")),
    ("compare_without_artifacts", ("compare", "--student", "s"), ("--artifacts", "compare.artifacts")),
    ("package_config_negative_headroom", ("package", "--config", "{d}/package_headroom.toml", "--out", "{d}/b"),
     ("package_headroom.toml", "package.headroom")),
    ("package_without_target", ("package", "--artifact", "a", "--out", "{d}/b"), ("--target", "package.target")),
    ("stream_config_chunk_zero", (*S, "--config", "{d}/stream_chunk.toml"), ("stream_chunk.toml", "stream.chunk")),
    ("stream_config_unknown_profile", (*S, "--config", "{d}/stream_profile.toml"),
     ("stream_profile.toml", "stream.profile", "'garmin'")),
    ("stream_written_config_wrong_type", (*S, "--config", "{d}/written.json"), ("written.json", "stream.speed")),
    ("stream_written_config_not_json", (*S, "--config", "{d}/broken.json"), ("broken.json", "not valid JSON")),
]


@pytest.mark.parametrize("argv,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(argv: tuple[str, ...], names: tuple[str, ...], d: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    if argv[:1] == ("wearable",) and "--source" in argv:
        pytest.importorskip("bumble")
    assert_one_error_line([a.replace("{d}", str(d)) for a in argv], capsys, *names)


def test_case_ids_are_unique() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 90


@pytest.mark.parametrize("argv,names", [
    (("stream", "--source", "synthetic", "--chunk", "-5"), ("argument --chunk: expected a positive integer, got -5",)),
    (("wearable", "--source", "replay:{d}/missing", "--fast", "--no-live"), ("missing.hea",)),
], ids=["chunk_negative", "wearable_missing_record"])
def test_console_script_prints_one_line(argv: tuple[str, ...], names: tuple[str, ...], d: Path) -> None:
    """The installed `ecg-edge` script, as a user runs it: exit 2, one stderr line, nothing else."""
    script = Path(sys.executable).with_name("ecg-edge")
    if not script.is_file():
        pytest.skip(f"{script}: the console script is not installed (pip install -e .)")
    r = subprocess.run([str(script), *(a.replace("{d}", str(d)) for a in argv)], capture_output=True, text=True,
                       timeout=120, cwd=REPO, env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecg-edge: error: "), r.stderr
    assert all(n in lines[0] for n in names), lines[0]


def test_help_still_prints_usage(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["stream", "--help"])
    assert exc.value.code == 0 and "--chunk" in capsys.readouterr().out


@pytest.mark.parametrize("shape,row", [((N,), None), ((1, N), None), ((3, N), 2)], ids=["1d", "1xn", "kxn_row"])
def test_npy_contract_good_cases_stream(shape: tuple[int, ...], row: int | None, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """(n,) and (1, n) stream as one lead; (k, n) streams the --row asked for; --seconds cuts it."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    np.save(tmp_path / "x.npy", x)
    argv = [*S, "--source", f"replay:{tmp_path / 'x.npy'}", *NPY, "--seconds", "12", "--no-beats"]
    assert main(argv + (["--row", str(row)] if row is not None else [])) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "3000 samples received" in out  # 12 s at 250 Hz of the 20 s file
    if row is not None:
        assert f"row {row}, lead I" in out
