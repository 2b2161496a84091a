"""Teacher pretraining end to end: every objective from the CLI on synthetic and real PTB-XL shards,
checkpoint contents, resume, rebuilding a teacher from its checkpoint, and `ecg-edge evaluate`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to pretrain")

from ecg_edge.cli import main  # noqa: E402
from ecg_edge.config import load_pipeline_config  # noqa: E402
from edge_runtime.errors import ConfigError  # noqa: E402
from train.config import OBJECTIVE_NAMES, PretrainConfig, TrainConfig  # noqa: E402
from train.data.shards import build_shards  # noqa: E402
from train.data.sources import DataConfig  # noqa: E402
from train.engine import load_checkpoint  # noqa: E402
from train.loader import WindowSet, meta_row, report_text  # noqa: E402
from train.pretrain import build_models, load_teacher, pretrain  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRETRAIN_CONFIGS = sorted((REPO / "configs" / "pretrain").glob("*.toml"))
#: tiny models so every objective trains in about a second
TINY = dict(encoder="test_resnet1d", text_tower="test_text_transformer", embed_dim=16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_pipeline_config(REPO / "configs" / "pretrain" / "clip-cpu.toml")
    out = tmp_path_factory.mktemp("syn") / "shards"
    build_shards(DataConfig(n_records=40, seed=3), cfg.preprocess, out)
    return out


@pytest.fixture(scope="module")
def ptbxl_shards(ptbxl_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_pipeline_config(REPO / "configs" / "pretrain" / "clip-cpu.toml")
    out = tmp_path_factory.mktemp("ptbxl") / "shards"
    build_shards(DataConfig(source=f"ptbxl:{ptbxl_root}"), cfg.preprocess, out)
    return out


def _config(tmp: Path, objective: str, epochs: int = 1, **pretrain) -> Path:
    """A pipeline TOML with tiny models (values written as JSON, which TOML accepts for these)."""
    args = {**TINY, **pretrain}
    lines = ["[pretrain]", f'objective = "{objective}"'] + [f'{k} = {json.dumps(v)}' for k, v in args.items()]
    lines += ["[train]", f"epochs = {epochs}", "batch_size = 8", 'device = "cpu"']
    path = tmp / f"{objective}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("objective", OBJECTIVE_NAMES)
def test_every_objective_pretrains_from_the_cli_saves_and_resumes(objective: str, synthetic_shards: Path,
                                                                  tmp_path: Path) -> None:
    cfg, out = _config(tmp_path, objective, epochs=2), tmp_path / "run"
    base = ["pretrain", "--config", str(cfg), "--shards", str(synthetic_shards), "--out", str(out)]
    assert main(base + ["--stop-after-epochs", "1"]) == 0
    first = load_checkpoint(out)
    assert first["epoch"] == 1
    meta = first["meta"]
    assert meta["objective"] == objective and meta["encoder"]["name"] == "test_resnet1d"
    assert meta["spec"]["leads"] == list(PretrainConfig().leads) and meta["spec"]["fs"] == 100.0
    assert len(meta["data_hash"]) == 64 and meta["label_names"] == ["NORM", "AFIB", "SBRAD", "STACH", "WQRS"]
    assert (meta["text_tower"] is not None) == (objective in ("clip", "fgclep"))
    assert main(base + ["--resume"]) == 0
    final = load_checkpoint(out)
    assert final["epoch"] == 2 and [r["epoch"] for r in final["history"]] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in final["history"])
    assert any(not torch.equal(first["state_dict"][k], final["state_dict"][k]) for k in first["state_dict"])
    assert json.loads((out / "config.json").read_text())["pretrain"]["objective"] == objective
    assert len((out / "history.jsonl").read_text().splitlines()) == 2


def test_teacher_rebuilds_from_its_checkpoint_alone(synthetic_shards: Path, tmp_path: Path) -> None:
    pcfg = PretrainConfig(objective="clip", **TINY)
    pretrain(synthetic_shards, pcfg, TrainConfig(epochs=1, batch_size=8, device="cpu"), tmp_path, progress=False)
    teacher, meta = load_teacher(tmp_path)
    again, _ = load_teacher(tmp_path)
    x = torch.from_numpy(np.stack([WindowSet(synthetic_shards, "val", pcfg.leads)[i]["x"] for i in range(3)]))
    with torch.inference_mode():
        assert torch.equal(teacher.encode_ecg(x), again.encode_ecg(x))
        assert teacher.encode_text(["sinus rhythm"]).shape == (1, 16)
    assert meta["encoder"]["kwargs"]["leads"] == list(pcfg.leads)


def test_resume_of_another_objective_and_a_missing_checkpoint_fail_clearly(synthetic_shards: Path,
                                                                         tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["pretrain", "--config", str(_config(tmp_path, "ssl")), "--shards", str(synthetic_shards),
                 "--out", str(out)]) == 0
    assert main(["pretrain", "--config", str(_config(tmp_path, "clef")), "--shards", str(synthetic_shards),
                 "--out", str(out), "--resume"]) == 2
    assert "cannot resume: objective was 'ssl'" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(_config(tmp_path, "ssl")), "--shards", str(synthetic_shards),
                 "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_pretrain_builds_its_own_shards_and_reuses_them(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(_config(tmp_path, "supervised").read_text() + "[data]\nn_records = 20\n")
    out = tmp_path / "run"
    assert main(["pretrain", "--config", str(cfg), "--out", str(out)]) == 0
    stamp = (out / "shards" / "dataset.json").stat().st_mtime_ns
    assert main(["pretrain", "--config", str(cfg), "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert (out / "shards" / "dataset.json").stat().st_mtime_ns == stamp
    cfg.write_text(cfg.read_text().replace("n_records = 20", "n_records = 21"))
    assert main(["pretrain", "--config", str(cfg), "--out", str(out)]) == 2  # other data, same folder


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=[p.name for p in PRETRAIN_CONFIGS])
def test_every_pretrain_config_builds_its_models(path: Path) -> None:
    cfg = load_pipeline_config(path)
    assert path.stem.split("-")[0] == cfg.pretrain.objective
    model = build_models(cfg.pretrain, n_classes=5, multilabel=True)
    assert model.encoder.model_name == cfg.pretrain.encoder
    if path.stem.endswith("-cpu"):
        assert cfg.train.device == "cpu"
    else:
        assert cfg.train.device == "cuda" and cfg.train.precision == "bf16"


def test_loader_pairs_windows_with_their_record_text_and_metadata(ptbxl_shards: Path) -> None:
    ws = WindowSet(ptbxl_shards, "train", ("I", "V1"), needs=("text", "meta"))
    item = ws[0]
    assert item["x"].shape == (2, 1000) and item["x"].flags.writeable
    row = ws.records[int(ws.split.record[0])]
    assert item["text"] == report_text(row["labels"]) and row["labels"]["report"] in item["text"]
    assert row["labels"]["statement_text"].split(";")[0] in item["text"]
    full = WindowSet(ptbxl_shards, "train", PretrainConfig().leads)
    np.testing.assert_array_equal(item["x"], full[0]["x"][[0, 6]])
    values, present = meta_row({"age": 56.0, "sex": "F", "height": None, "weight": 63.0})
    assert values[:2].tolist() == [56.0, 1.0] and present.tolist() == [True, True, False]
    with pytest.raises(ConfigError, match="not in the shards' leads"):
        WindowSet(ptbxl_shards, "train", ("MLII",))


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVE_NAMES)
def test_every_objective_pretrains_on_real_ptbxl(objective: str, ptbxl_shards: Path, tmp_path: Path) -> None:
    pcfg = PretrainConfig(objective=objective, feature_workers=2, **TINY)
    summary = pretrain(ptbxl_shards, pcfg, TrainConfig(epochs=1, batch_size=32, device="cpu"), tmp_path, progress=False)
    assert summary["train_windows"] == 353 and summary["epochs_done"] == 1
    assert np.isfinite(summary["history"][0]["loss"])
    assert load_checkpoint(tmp_path)["meta"]["label_names"] == ["NORM", "MI", "STTC", "CD", "HYP"]


@pytest.mark.slow
def test_evaluate_reports_probe_zero_shot_fairness_and_saliency(synthetic_shards: Path, tmp_path: Path) -> None:
    pcfg = PretrainConfig(objective="clip", **TINY)
    pretrain(synthetic_shards, pcfg, TrainConfig(epochs=1, batch_size=8, device="cpu"), tmp_path / "t", progress=False)
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "t"), "--shards", str(synthetic_shards), "--out", str(out),
                 "--fractions", "0.1", "1.0", "--n-boot", "200", "--finetune", "--finetune-epochs", "1"]) == 0
    res = json.loads((out / "evaluation.json").read_text())
    settings = {(r["model"], r["setting"]) for r in res["runs"]}
    assert settings == {("clip:test_resnet1d", s) for s in ("linear probe 10%", "linear probe 100%", "fine-tune 10%",
                                                           "fine-tune 100%", "zero-shot")} | \
        {("random-init:test_resnet1d", s) for s in ("linear probe 10%", "linear probe 100%", "fine-tune 10%",
                                                   "fine-tune 100%")}
    probe = next(r for r in res["runs"] if r["setting"] == "linear probe 100%")
    assert probe["metrics"]["n"] == 8  # val + test records of the 40-record synthetic set
    assert set(probe["fairness"]["groupings"]) == {"sex", "age"}
    assert Path(res["saliency_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| clip:test_resnet1d | linear probe 100% |" in (out / "evaluation.md").read_text()


@pytest.mark.slow
def test_fgclep_reports_are_completed_and_identical_diagnoses_are_soft_positives(ptbxl_shards: Path) -> None:
    from train.objectives import soft_targets
    from train.pretrain import fgclep_reports

    texts, vecs = fgclep_reports(ptbxl_shards, PretrainConfig(objective="fgclep"))
    rows = [report_text(r["labels"]) for r in json.loads("[" + ",".join(
        (ptbxl_shards / "records.jsonl").read_text().splitlines()) + "]")]
    assert len(texts) == len(rows) == 500 and all(t.startswith(" ".join(b.split()).rstrip(".")) for t, b in zip(texts, rows))
    assert sum("Heart rate" in t for t in texts) >= 490 and sum("QRS" in t for t in texts) >= 490
    common = max(set(rows), key=rows.count)
    same = [i for i, r in enumerate(rows) if r == common]
    assert len(same) > 10 and "normal ECG" in common
    other = [k for k in range(500) if "myocardial infarction" in rows[k].lower()][:5]
    assert len(other) == 5
    targets = soft_targets(torch.from_numpy(vecs[same[:5] + other]), 0.9)
    assert torch.all(targets[:5, :5] > 0.99)   # the same diagnostic text: soft positives, not negatives
    assert torch.all(targets[:5, 5:] == 0)     # normal vs infarction: negatives
