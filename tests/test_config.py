"""The one config approach: every shipped config loads; bad values name the file and field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecg_edge.config import PipelineConfig, load_pipeline_config
from edge_runtime.config import from_dict, load_toml, to_jsonable, write_json
from edge_runtime.errors import EcgEdgeError
from edge_runtime.signal import PreprocessConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.toml"))


def test_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"default.toml", "ptbxl.toml", "cinc2017.toml", "mitdb.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_designs_its_filters(path: Path) -> None:
    cfg = load_pipeline_config(path)
    fs_native = {"synthetic": cfg.data.fs or 500, "ptbxl": cfg.data.fs or 100, "cinc2017": 300, "mitdb": 360}
    fs = fs_native[cfg.data.source.split(":")[0]]
    design = cfg.preprocess.design(fs)   # the notch must be possible at the dataset's own rate
    assert design.fs_out == cfg.preprocess.fs_out
    again = from_dict(PipelineConfig, json.loads(json.dumps(to_jsonable(cfg))))
    assert again == cfg  # resolved JSON round-trips


def test_default_toml_is_the_builtin_default() -> None:
    assert load_pipeline_config(REPO / "configs" / "default.toml") == load_pipeline_config(None) == PipelineConfig()


@pytest.mark.parametrize("text,message", [
    ("[preprocess]\nlowpass_hz = 70\n", "preprocess.lowpass_hz: expected below fs_out/2"),
    ("[preprocess]\nwindow = 10\n", "preprocess.window: unknown key"),
    ("[data]\nsource = 'ptbxl'\n", "data.source: expected 'ptbxl:PATH'"),
    ("[data]\nn_records = 'many'\n", "data.n_records: expected int"),
    ("[data]\nleads = ['I', 'V9']\n", "data.leads: unknown lead 'V9'"),
    ("shard_windows = [\n", "not valid TOML"),
    ("[export]\nquant = 'qat'\n", "export.quant: unknown key"),
    ("[export]\nmethod = ['brevitas']\n", "export.method: expected one of ptq or qat"),
    ("[quantize]\nmethod = ['ptq', 'int4']\n", "quantize.method: expected distinct names out of ptq, qat, brevitas"),
    ("[compare]\nram = 'yes'\n", "compare.ram: expected bool"),
    ("[compare]\nlatency_runs = 0\n", "compare.latency_runs: expected a positive integer, got 0"),
    ("[compare]\nsplit = 'every'\n", "compare.split: expected one of eval, all, train, val, test"),
    ("[compare]\nshort = 'skip'\n", "compare.short: expected one of pad, too-short"),
    ("[package]\nc_name = '1model'\n", "package.c_name: expected a C identifier"),
    ("[stream]\nchunk = 0\n", "stream.chunk: expected a positive integer, got 0"),
    ("[stream]\ndrop = 1.0\n", "stream.drop: expected a fraction 0 <= x < 1"),
    ("[stream]\nshort = 'skip'\n", "stream.short: expected one of pad, too-short"),
    ("[stream]\nmodel = 'm.json'\n", "stream.model: unknown key"),
])
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(EcgEdgeError) as err:  # ConfigError, or UnknownLeadError for a lead name
        load_toml(path, PipelineConfig)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_none_string_and_json_writeback(tmp_path: Path) -> None:
    cfg = from_dict(PreprocessConfig, {"notch_hz": "none", "hop_s": 2})
    assert cfg.notch_hz is None and cfg.hop_s == 2.0
    out = write_json(tmp_path / "cfg.json", cfg)
    assert json.loads(out.read_text())["hop_s"] == 2.0


def test_written_json_config_loads_back(tmp_path: Path) -> None:
    """What a command writes beside its output is a config `--config` accepts (the one loader)."""
    from dataclasses import replace

    cfg = PipelineConfig()
    cfg = replace(cfg, export=replace(cfg.export, student="s", method=("qat", "brevitas"), device_fs=130.0),
                  stream=replace(cfg.stream, source="synthetic", speed=None, disconnect_after=(5, 9)))
    path = write_json(tmp_path / "config.json", cfg)
    assert load_pipeline_config(path) == cfg
    (tmp_path / "bad.json").write_text('{"export": {"student": 3}}')
    with pytest.raises(EcgEdgeError, match=r"bad.json: export.student: expected str, got 3"):
        load_pipeline_config(tmp_path / "bad.json")


def test_stream_table_is_the_stream_options() -> None:
    """`[stream]` is `ecg_edge.stream.StreamOptions`, the options the stream command runs with (no copy)."""
    from dataclasses import fields

    from ecg_edge.stream import StreamOptions

    assert {f.name: f.type for f in fields(PipelineConfig)}["stream"] in (StreamOptions, "StreamOptions")
    assert type(PipelineConfig().stream) is StreamOptions


#: The README's command lines and the same runs from configs/commands/ptbxl.toml.
README_RUNS = [
    "ecg-edge export --student runs/ptbxl_cv/final/distilled --out runs/ptbxl_export --method ptq brevitas",
    "ecg-edge quantize --student runs/ptbxl_cv/final/distilled --method ptq qat brevitas --out runs/ptbxl_quant",
    "ecg-edge package --artifact runs/ptbxl_export/tflite-int8 --target cortex-m55 --out bundles/cm55 "
    "--sign keys/signing_key.pem",
]


@pytest.mark.parametrize("line", README_RUNS, ids=[r.split()[1] for r in README_RUNS])
def test_shipped_command_config_equals_the_readme_command(line: str) -> None:
    from ecg_edge.cli import build_parser
    from ecg_edge.flags import command_table

    assert line in " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    argv = line.split()[1:]
    out = argv[argv.index("--out"):argv.index("--out") + 2]
    from_flags = command_table(build_parser().parse_args(argv))
    from_config = command_table(build_parser().parse_args([argv[0], "--config", str(REPO / "configs/commands/ptbxl.toml"), *out]))
    assert from_config == from_flags
