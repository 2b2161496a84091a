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
