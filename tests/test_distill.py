"""Distillation (`ecg-edge distill`) and the release of a student (`ecg-edge quantize` / `export`):
the losses on hand-built inputs, the frozen teacher, and the whole chain on synthetic shards from
the CLI, down to int8 artifacts that pass parity on their runtimes and carry complete manifests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to distil")

from distill.config import DistillConfig  # noqa: E402
from distill.distill import DistillObjective, Teacher, kd_loss, label_loss, load_student  # noqa: E402
from ecg_edge.cli import main  # noqa: E402
from ecg_edge.config import load_pipeline_config  # noqa: E402
from edge_runtime.artifact import load_artifact, sha256_of  # noqa: E402
from edge_runtime.errors import ArtifactError, ConfigError, UnknownLeadError  # noqa: E402
from train.data.shards import build_shards  # noqa: E402
from train.data.sources import DataConfig  # noqa: E402
from train.engine import load_checkpoint  # noqa: E402
from train.models import create_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- losses

def test_kd_loss_is_minimal_where_the_student_matches_the_teacher() -> None:
    torch.manual_seed(0)
    t = torch.randn(16, 5)
    # multi-class: KL(teacher || student) is 0 for equal logits and > 0 otherwise
    assert kd_loss(t, t, 2.0, multilabel=False).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(t + torch.randn(16, 5), t, 2.0, multilabel=False).item() > 0.01
    # multi-label: BCE against soft targets has zero gradient where the student equals the teacher
    s = t.clone().requires_grad_(True)
    kd_loss(s, t, 2.0, multilabel=True).backward()
    assert s.grad.abs().max().item() < 1e-6
    # T^2 scaling keeps the gradient's size comparable across temperatures
    s1, s4 = (t + 1.0).requires_grad_(True), (t + 1.0).requires_grad_(True)
    kd_loss(s1, t, 1.0, multilabel=False).backward()
    kd_loss(s4, t, 4.0, multilabel=False).backward()
    ratio = s4.grad.norm() / s1.grad.norm()
    assert 0.2 < ratio.item() < 5.0


def test_label_loss_forms() -> None:
    logits = torch.tensor([[4.0, -4.0, -4.0], [-4.0, 4.0, 4.0]])
    multi_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert label_loss(logits, multi_hot, multilabel=True).item() < 0.02
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    ce = label_loss(logits, one_hot, multilabel=False).item()
    assert ce == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).item())


def test_teacher_stays_frozen_and_out_of_the_student_checkpoint() -> None:
    enc = create_model("test_resnet1d", leads=("I", "II"), embed_dim=8)
    teacher = Teacher(enc, torch.nn.Linear(8, 3))
    teacher.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student = create_model("test_student", leads=("II",), n_classes=3, window=1000)
    obj = DistillObjective(student, teacher, DistillConfig(lead="II"), lead_index=1, multilabel=False, teacher_dim=8)
    keys = list(obj.state_dict())
    assert keys and all(k.startswith(("student.", "proj.")) for k in keys)
    assert all(not any(p is q for q in teacher.parameters()) for p in obj.parameters())
    x = torch.randn(4, 2, 1000)
    loss, logs = obj({"x": x, "target": torch.eye(3)[[0, 1, 2, 0]]})
    assert set(logs) == {"label", "kd", "embed"} and torch.isfinite(loss)
    # the student reads exactly its lead: changing the other lead changes only the teacher's view
    assert torch.equal(obj.student_input(x), x[:, 1:2, None, :])


def test_student_augmentation_in_training_only_and_the_teacher_sees_the_clean_window() -> None:
    """`[distill.augment]`: the student's lead is augmented (seeded) in training mode only, the
    teacher still gets the clean window, a resolved config keeps the data's rate, and a bad field
    is one error line naming it."""
    from distill.distill import student_augment

    cfg = DistillConfig(lead="II", augment={"noise_std": [0.05, 0.05], "scale": [1, 1], "wander_amp": 0,
                                            "lead_dropout": 0})
    aug = student_augment(cfg, 250.0)
    assert aug.fs == 250.0 and aug.noise_std == (0.05, 0.05)
    assert student_augment(DistillConfig(), 100.0) is None
    with pytest.raises(ConfigError, match=r"^distill.augment: unknown field\(s\) \['noise'\]"):
        student_augment(DistillConfig(augment={"noise": 0.1}), 100.0)
    with pytest.raises(ConfigError, match="augment.noise_std"):
        student_augment(DistillConfig(augment={"noise_std": [0.2, 0.1]}), 100.0)
    with pytest.raises(ConfigError, match="distill.augment: expected a table"):
        DistillConfig(augment=0.1)

    enc = create_model("test_resnet1d", leads=("I", "II"), embed_dim=8)
    seen = []
    teacher = Teacher(enc, torch.nn.Linear(8, 3))
    teacher.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    student = create_model("test_student", leads=("II",), n_classes=3, window=1000)
    obj = DistillObjective(student, teacher, cfg, lead_index=1, multilabel=False, teacher_dim=8, augment=aug, seed=3)
    x = torch.randn(4, 2, 1000)
    first = obj.student_input(x)
    noise = first - x[:, 1:2, None, :]
    assert first.shape == (4, 1, 1, 1000) and 0.04 < float(noise.std()) < 0.06  # white noise of std 0.05
    assert not torch.equal(obj.student_input(x), first)  # a fresh draw every batch
    again = DistillObjective(student, teacher, cfg, lead_index=1, multilabel=False, teacher_dim=8, augment=aug, seed=3)
    assert torch.equal(again.student_input(x), first)  # seeded
    obj({"x": x, "target": torch.eye(3)[[0, 1, 2, 0]]})
    assert len(seen) == 1 and torch.equal(seen[0], x)  # the teacher ran on the clean window
    obj.eval()
    assert torch.equal(obj.student_input(x), x[:, 1:2, None, :])  # evaluation: no augmentation


@pytest.mark.slow
def test_the_teacher_runs_once_and_its_outputs_ride_with_their_windows(chain: dict[str, Path]) -> None:
    """The frozen teacher's outputs are computed once over the training windows (`teacher_outputs`)
    and carried by each example (`TeacherOutputs`): on a cross-validation fold's subset of real
    shards they are the teacher's outputs on that very window, and the distillation loss is the
    one computed with the teacher run on the batch."""
    from distill.crossval import _fold_windows
    from distill.distill import TeacherOutputs, _windows, teacher_from_checkpoint, teacher_outputs

    ckpt = load_checkpoint(chain["teacher"])
    leads = tuple(ckpt["meta"]["encoder"]["kwargs"]["leads"])
    x, y, _, _ = _windows(chain["shards"], ("train", "val"), leads)
    teacher, _ = teacher_from_checkpoint(ckpt, x, y, None)
    logits, emb = teacher_outputs(teacher, x, batch_size=7)
    keep = np.arange(len(x)) % 3 != 1  # a fold's training windows across both splits
    data = TeacherOutputs(_fold_windows(chain["shards"], ("train", "val"), leads, keep), logits[keep], emb[keep])
    assert len(data) == int(keep.sum())
    idx = [0, 5, len(data) // 2, len(data) - 1]
    items = [data[i] for i in idx]
    xb = torch.from_numpy(np.stack([it["x"] for it in items]))
    assert (xb.numpy() == x[np.flatnonzero(keep)[idx]]).all()
    t_logits, t_emb = teacher(xb)
    cached_logits = torch.from_numpy(np.stack([it["teacher_logits"] for it in items]))
    cached_emb = torch.from_numpy(np.stack([it["teacher_emb"] for it in items]))
    assert torch.allclose(cached_logits, t_logits, atol=1e-5) and torch.allclose(cached_emb, t_emb, atol=1e-5)
    student = create_model("test_student", leads=("I",), n_classes=t_logits.shape[1], window=x.shape[-1])
    obj = DistillObjective(student, teacher, DistillConfig(lead="I"), lead_index=leads.index("I"), multilabel=True,
                           teacher_dim=t_emb.shape[1]).eval()  # no dropout: two passes compare
    batch = {"x": xb, "target": torch.from_numpy(np.stack([it["target"] for it in items]))}
    live, live_logs = obj(batch)
    cached, cached_logs = obj(batch | {"teacher_logits": cached_logits, "teacher_emb": cached_emb})
    assert cached.item() == pytest.approx(live.item(), rel=1e-5) and set(cached_logs) == {"label", "kd", "embed"}
    # and the objective reads them, rather than running the teacher anyway: other outputs, other losses
    other, other_logs = obj(batch | {"teacher_logits": -cached_logits, "teacher_emb": -cached_emb})
    assert other_logs["kd"] != pytest.approx(live_logs["kd"], rel=1e-3)
    assert other_logs["embed"] != pytest.approx(live_logs["embed"], rel=1e-3)
    with pytest.raises(ConfigError, match="teacher outputs: 3 logits and 3 embeddings for"):
        TeacherOutputs(data, logits[:3], emb[:3])


def test_single_label_thresholds_are_fitted_to_the_validation_f1() -> None:
    from distill.release import single_label_thresholds
    from edge_runtime.backends import decide
    rng = np.random.default_rng(0)
    labels = ("N", "A", "O", "~")
    truth = rng.choice(4, 400, p=[0.6, 0.1, 0.25, 0.05])
    # a head that under-calls A: its A probability is squeezed below N's on most A records
    p = np.full((400, 4), 0.05)
    p[np.arange(400), truth] = 0.6
    a = truth == 1
    p[a, 0], p[a, 1] = 0.5, 0.4
    p /= p.sum(axis=1, keepdims=True)
    y, rec = np.eye(4)[truth], np.arange(400)
    th = single_label_thresholds(p, y, rec, labels)
    assert (decide(p, (0.5,) * 4, False).argmax(1)[a] == 0).all()  # plain argmax: no A found
    assert (decide(p, th, False).argmax(1) == truth).all() and th[1] < th[0]
    perfect = single_label_thresholds(np.eye(4)[truth], y, rec, labels)
    assert perfect == (0.5,) * 4  # nothing to gain: the start value stays


def test_distill_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="kd_weight or embed_weight"):
        DistillConfig(labels=False, kd_weight=0.0, embed_weight=0.0)
    with pytest.raises(ConfigError, match="eval_splits"):
        DistillConfig(eval_splits=("train",))
    with pytest.raises(UnknownLeadError, match="distill.lead"):
        DistillConfig(lead="lead I")
    base = DistillConfig(kd_weight=2.0, labels=False).baseline()
    assert base.kd_weight == base.embed_weight == 0.0 and base.labels


def test_every_distill_config_loads() -> None:
    for path in sorted((REPO / "configs" / "distill").glob("*.toml")):
        cfg = load_pipeline_config(path)
        assert cfg.distill.lead in cfg.data.leads, path


# --------------------------------------------------------------------------- the chain on synthetic data

@pytest.mark.slow
def test_distill_trains_the_distilled_and_the_label_only_student(chain: dict[str, Path]) -> None:
    res = json.loads((chain["students"] / "distill.json").read_text())
    assert set(res["models"]) == {"teacher", "distilled", "baseline"}
    assert res["lead"] == "I" and res["eval_splits"] == ["val", "test"]
    for name in ("teacher", "distilled", "baseline"):
        macro = res["models"][name]["metrics"]["auroc"]["macro"]
        assert macro["ci"][0] <= macro["value"] <= macro["ci"][1] and macro["n_valid"] > 0
        assert macro["classes"] == res["label_names"] and not macro["excluded"]  # every condition scored
    # the chain learns: the 12-lead teacher ranks the five conditions well, and the distilled lead-I
    # student beats chance with its whole 95 % interval
    assert res["models"]["teacher"]["metrics"]["auroc"]["macro"]["value"] >= 0.8
    assert res["models"]["distilled"]["metrics"]["auroc"]["macro"]["ci"][0] > 0.5
    distilled = load_checkpoint(chain["students"] / "distilled")
    baseline = load_checkpoint(chain["students"] / "baseline")
    teacher_sha = distilled["meta"]["teacher"]["checkpoint_sha256"]
    assert len(teacher_sha) == 64 and baseline["meta"]["teacher"] is None
    assert baseline["meta"]["distill"]["kd_weight"] == 0.0
    # different losses, same seed and data: different weights
    assert any(not torch.equal(distilled["state_dict"][k], baseline["state_dict"][k])
               for k in baseline["state_dict"] if k.startswith("student."))
    student, meta = load_student(chain["students"] / "distilled")
    assert student.leads == ("I",) and meta["spec"]["leads"] == ["I"] and not student.training
    with pytest.raises(ConfigError, match="expected a student checkpoint"):
        load_student(chain["teacher"])


def _eval_windows(shards: Path, leads: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The distill job's evaluation windows (val and test splits, `leads` order) and their targets."""
    from train.loader import WindowSet

    items = [s[i] for s in (WindowSet(shards, split, leads) for split in ("val", "test")) for i in range(len(s))]
    return np.stack([it["x"] for it in items]), np.stack([it["target"] for it in items])


@pytest.mark.slow
def test_distillation_moves_the_student_to_the_teacher_and_beats_its_untrained_self(chain: dict[str, Path]) -> None:
    """On the evaluation windows: KL(teacher || student) of the distilled student is well below that of
    the same student before training (same seed, same initial weights) and below the label-only
    baseline's, and its macro AUROC is far above the untrained student's."""
    from sklearn.metrics import roc_auc_score

    from distill.distill import teacher_from_checkpoint
    from train.engine import seed_everything

    ck = load_checkpoint(chain["teacher"])
    leads = tuple(ck["meta"]["encoder"]["kwargs"]["leads"])
    x, y = _eval_windows(chain["shards"], leads)
    teacher, _ = teacher_from_checkpoint(ck, x, y, np.arange(len(leads)))
    t_logits = teacher(torch.from_numpy(x))[0]
    seed_everything(0)  # the distill job's seed ([train] seed): the students' weights before training
    untrained = create_model("test_student", leads=("I",), n_classes=y.shape[1], window=x.shape[-1]).eval()
    students = {"untrained": untrained, "distilled": load_student(chain["students"] / "distilled")[0],
                "baseline": load_student(chain["students"] / "baseline")[0]}
    kl, auroc = {}, {}
    lead_i = torch.from_numpy(x[:, leads.index("I")][:, None, None, :].copy())
    for name, student in students.items():
        with torch.no_grad():
            logits = student(lead_i)
        kl[name] = kd_loss(logits, t_logits, 1.0, multilabel=False).item()
        auroc[name] = roc_auc_score(y, torch.softmax(logits, 1).numpy(), average="macro")
    assert kl["distilled"] < 0.6 * kl["untrained"] and kl["distilled"] < kl["baseline"], kl
    assert auroc["distilled"] > auroc["untrained"] + 0.2, auroc
    res = json.loads((chain["students"] / "distill.json").read_text())
    assert auroc["distilled"] == pytest.approx(res["models"]["distilled"]["metrics"]["auroc"]["macro"]["value"])


@pytest.mark.slow
def test_pure_distillation_needs_no_labels(chain: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pure"
    assert main(["distill", "--teacher", str(chain["teacher"]), "--config", str(chain["config"]), "--out", str(out),
                 "--no-labels", "--no-baseline", "--epochs", "1", "--n-boot", "20"]) == 0
    ck = load_checkpoint(out / "distilled")
    assert ck["meta"]["distill"]["labels"] is False
    assert set(json.loads((out / "distill.json").read_text())["models"]) == {"teacher", "distilled"}


@pytest.mark.slow
def test_distill_rejects_a_lead_the_teacher_lacks(chain: dict[str, Path], tmp_path: Path, capsys) -> None:
    """MLII is a lead the project knows (so the config check passes) that the 12-lead teacher lacks: the
    distill job's own check refuses it, with the teacher's leads; an unknown name fails earlier, in the config."""
    from cli_errors import assert_one_error_line

    argv = ["distill", "--teacher", str(chain["teacher"]), "--config", str(chain["config"]), "--out"]
    line = assert_one_error_line([*argv, str(tmp_path / "x"), "--lead", "ml2"], capsys)
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert line == f"ecg-edge: error: distill.lead: 'MLII' is not among the teacher's leads {leads}"
    assert not (tmp_path / "x" / "distilled").exists()
    line = assert_one_error_line([*argv, str(tmp_path / "y"), "--lead", "X"], capsys, "distill.lead")
    assert "unknown lead 'X'" in line


@pytest.mark.slow
def test_export_writes_every_format_parity_checked_and_scored(exported: dict) -> None:
    s = exported["summary"]
    names = {"pte-fp32", "tflite-fp32", "onnx-fp32", "pte-int8", "tflite-int8", "onnx-int8"}
    assert set(s["artifacts"]) == names | {"pytorch-fp32"}
    for name in names:
        a = s["artifacts"][name]
        assert a["parity"]["passed"] and a["parity"]["n"] > 0
        assert a["parity"]["max_abs_diff"] <= a["parity"]["tolerance"]
        m = a["metrics"]
        assert 0.0 <= m["ranking"]["auroc"]["macro"]["value"] <= 1.0
        assert 0.0 <= m["agreement"]["records"] <= 1.0 and m["agreement"]["n_records"] > 0
        art = load_artifact(a["manifest"])  # sha256 checked at load
        assert art.manifest.precision == name.split("-")[1]
    golden = np.load(exported["out"] / s["golden_inputs"]["file"])
    assert golden.dtype == np.float32 and golden.shape[1:] == (1, 1, 1000) and 1 <= len(golden) <= 8
    assert (exported["out"] / "pte-fp32" / "model.bpte").is_file()
    assert (exported["out"] / "pte-int8" / "model.bpte").is_file()
    fp32 = s["artifacts"]["tflite-fp32"]["metrics"]["agreement"]
    assert fp32["windows"] == 1.0  # the float .tflite decides as the float student on every window


@pytest.mark.slow
def test_manifests_carry_spec_thresholds_and_provenance(exported: dict, chain: dict[str, Path]) -> None:
    s = exported["summary"]
    ck = load_checkpoint(chain["students"] / "distilled")
    for name in ("pte-int8", "tflite-int8", "onnx-int8", "onnx-fp32"):
        m = load_artifact(s["artifacts"][name]["manifest"]).manifest
        assert m.spec.leads == ("I",) and m.labels == tuple(s["labels"])
        assert not m.multilabel and not s["multilabel"]  # synthetic: one class per record
        assert list(m.thresholds) == s["thresholds"] and len(s["thresholds"]) == len(s["labels"])
        assert m.filter_design is not None and m.filter_design["fs_in"] == 500.0  # synthetic records at 500 Hz
        p = m.provenance
        assert p["student"]["checkpoint_sha256"] == sha256_of(ck["path"])
        assert p["teacher"]["checkpoint_sha256"] == ck["meta"]["teacher"]["checkpoint_sha256"]
        assert p["data_sha256"] == ck["meta"]["data_hash"]
        assert "torch" in m.versions
    tfl = load_artifact(s["artifacts"]["tflite-int8"]["manifest"]).manifest
    assert tfl.input.dtype == "int8" and tfl.input.scale > 0 and tfl.output.dtype == "int8"
    assert tfl.provenance["calibration_windows"] > 0


@pytest.mark.slow
def test_export_runs_vela_and_the_cortex_m_lowering(exported: dict) -> None:
    e = exported["summary"]["embedded"]
    vela = e["ethos-u55-128"]
    assert vela["npu_op_share"] == 1.0 and vela["cpu_ops"] == 0 and vela["sram_kib"] > 0
    cm = e["cortex-m55"]
    assert cm["all_int8"] and not cm["float_ops"]
    tfl = load_artifact(exported["summary"]["artifacts"]["tflite-int8"]["manifest"]).manifest
    assert tfl.provenance["ethos_u"]["npu_op_share"] == 1.0
    pte = load_artifact(exported["summary"]["artifacts"]["pte-int8"]["manifest"]).manifest
    assert pte.provenance["cortex_m"]["all_int8"] is True
    assert (exported["out"] / "pte-int8" / pte.provenance["cortex_m"]["path"]).is_file()


@pytest.mark.slow
def test_quantize_qat_writes_int8_artifacts_that_pass_parity(chain: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "q"
    assert main(["quantize", "--student", str(chain["students"] / "distilled"), "--out", str(out),
                 "--method", "qat", "--qat-epochs", "1", "--n-boot", "20"]) == 0
    s = json.loads((out / "quantize.json").read_text())
    assert set(s["artifacts"]) == {"pytorch-fp32", "pte-int8", "tflite-int8"}
    for name in ("pte-int8", "tflite-int8"):
        a = s["artifacts"][name]
        assert a["parity"]["passed"]
        assert "prepare_qat_pt2e" in load_artifact(a["manifest"]).manifest.provenance["qat"]


@pytest.mark.slow
def test_a_tampered_export_fails_parity_or_load(exported: dict, tmp_path: Path) -> None:
    import shutil

    from distill.parity import check_parity
    from distill.release import load_release_data

    src = Path(exported["summary"]["artifacts"]["tflite-fp32"]["manifest"]).parent
    dst = tmp_path / "tampered"
    shutil.copytree(src, dst)
    model = dst / "model.tflite"
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(dst / "manifest.json")
    data = load_release_data(exported["summary"]["checkpoint"])
    other = create_model("test_student", leads=("I",), n_classes=len(data.labels), window=1000).eval()
    with pytest.raises(ArtifactError, match="parity check failed"):
        check_parity(src / "manifest.json", other, data.parity_x)


@pytest.mark.slow
def test_real_ptbxl_lead_i_student_int8_passes_parity_with_validation_thresholds(ptbxl_root: Path,
                                                                                tmp_path: Path) -> None:
    """The multi-label path on real records: a tiny 12-lead teacher, a lead-I student, PT2E int8."""
    cfg = load_pipeline_config(REPO / "configs" / "distill" / "ptbxl.toml")
    shards = tmp_path / "shards"
    build_shards(DataConfig(source=f"ptbxl:{ptbxl_root}"), cfg.preprocess, shards)
    conf = tmp_path / "tiny.toml"
    conf.write_text('[pretrain]\nobjective = "supervised"\nencoder = "test_resnet1d"\nembed_dim = 16\n'
                    '[distill]\nstudent = "test_student"\nlead = "I"\n'
                    '[train]\nepochs = 1\nbatch_size = 32\ndevice = "cpu"\n')
    assert main(["pretrain", "--config", str(conf), "--shards", str(shards), "--out", str(tmp_path / "t")]) == 0
    assert main(["distill", "--teacher", str(tmp_path / "t"), "--config", str(conf), "--out", str(tmp_path / "s"),
                 "--no-baseline", "--n-boot", "20"]) == 0
    assert main(["quantize", "--student", str(tmp_path / "s" / "distilled"), "--out", str(tmp_path / "q"),
                 "--n-boot", "20"]) == 0
    s = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert s["multilabel"] and s["labels"] == ["NORM", "MI", "STTC", "CD", "HYP"]
    assert len(s["thresholds"]) == 5 and all(0.0 < t < 1.0 for t in s["thresholds"])
    for name in ("pte-int8", "tflite-int8"):
        a = s["artifacts"][name]
        assert a["parity"]["passed"] and a["parity"]["n"] == 81  # every fold-9 (validation) window
        m = load_artifact(a["manifest"]).manifest
        assert m.multilabel and list(m.thresholds) == s["thresholds"]
        assert m.filter_design["fs_in"] == 100.0  # the records' own rate
        assert a["metrics"]["ranking"]["n"] == 147  # folds 9-10, per record
    # the quantized-vs-float report on the same records gives quantize.json's and distill.json's figures
    assert main(["compare", "--teacher", str(tmp_path / "t"), "--student", str(tmp_path / "s" / "distilled"),
                 "--artifacts", str(tmp_path / "q"), "--out", str(tmp_path / "c"), "--n-boot", "20",
                 "--latency-runs", "3", "--no-ram"]) == 0
    rep = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert rep["n_records"] == 147 and rep["same_shards_as_training"]
    assert {"sex", "age"} == set(rep["models"]["tflite-int8"]["fairness"]["groupings"])
    figures = {c["figure"] for c in rep["cross_checks"]}
    assert {"teacher fp32 macro AUROC", "student fp32 macro AUROC", "tflite-int8 f1", "pte-int8 macro PRAUC"} <= figures
    assert all(c["equal"] for c in rep["cross_checks"]), [c for c in rep["cross_checks"] if not c["equal"]]
    for name in ("pte-int8", "tflite-int8"):
        assert rep["models"][name]["metrics"] == s["artifacts"][name]["metrics"]
