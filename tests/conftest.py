"""Shared fixtures: where the real PhysioNet data lives, and skipping with a reason when it is absent.

The data is read from `../shared/data` relative to the repository root, or from the folder named
by the `ECG_EDGE_SHARED_DATA` environment variable. It is never copied into the repository.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: The session fixtures that pretrain and distil the chain, export it with QAT, or export the student
#: with Vela and the Cortex-M lowering (minutes on 2 cores together). A test that requests one, itself
#: or through another fixture, is marked `slow`, so that `pytest -m "not slow"` builds none of them
#: (tests/test_tiers.py checks it).
HEAVY_FIXTURES = frozenset({"chain", "exported", "student_export"})


def shared_data_dir() -> Path:
    env = os.environ.get("ECG_EDGE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _dataset(sub: str, marker_file: str) -> Path:
    """The folder of a real dataset; skips when it is absent or when wfdb, which reads its records, is
    not installed (a runtime-only install)."""
    root = shared_data_dir() / sub
    if not (root / marker_file).is_file():
        pytest.skip(f"real data absent: {root / marker_file} not found (set ECG_EDGE_SHARED_DATA)")
    pytest.importorskip("wfdb", reason="the 'replay' or 'train' extra (wfdb) reads the real WFDB records")
    return root


@pytest.fixture(scope="session")
def ptbxl_root() -> Path:
    return _dataset("ptbxl", "ptbxl_database.csv")


@pytest.fixture(scope="session")
def cinc2017_root() -> Path:
    return _dataset("physionet2017", "REFERENCE.csv")


@pytest.fixture(scope="session")
def mitdb_root() -> Path:
    return _dataset("mitdb", "100.hea")


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory):
    """Tiny student artifacts (tests/tiny_export.py), each exported once per session on first use."""
    pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to export test models")
    from tiny_export import Exports

    return Exports(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def student_export(exports, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """student_s (the registry's, a few training steps on real synthetic windows) exported as
    tflite-int8 and pte-int8 (.pte, .bpte, cortex-m55.pte), and golden.npy beside them, once per
    session (vendor bundles and the firmware tests). (The tiny test model has stride-4 convolutions
    Vela refuses on an Ethos-U55.)"""
    for mod in ("executorch", "litert_torch", "tflite_micro"):
        pytest.importorskip(mod, reason="the 'export' extra is needed to export the student")
    import numpy as np
    import tiny_export as tx
    import torch
    from distill.embedded import cortex_m_lower
    from distill.export import export_bpte
    from edge_runtime.provenance import sha256_of
    from train.models import create_model

    root = tmp_path_factory.mktemp("export")
    golden = exports.x[:4]
    np.save(root / "golden.npy", golden)
    with tx.one_thread():
        torch.manual_seed(0)
        model = create_model("student_s", leads=tx.LEADS, n_classes=len(tx.LABELS), window=tx.WINDOW)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        xt, yt = torch.from_numpy(exports.x), torch.from_numpy(exports.y).long()
        for _ in range(20):
            loss = torch.nn.functional.cross_entropy(model(xt[:32]), yt[:32])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        spec = tx._calibrated(exports.calib)
        from distill.export import export_tflite
        export_tflite(model, spec, root / "tflite-int8", "int8", calib=exports.calib)
        c = cortex_m_lower(model, torch.from_numpy(exports.calib[:1].copy()),
                           torch.from_numpy(exports.calib.copy()), out=root / "pte-int8" / "cortex-m55.pte")
        cm = {k: v for k, v in c.items() if k != "reference"} | {
            "path": "cortex-m55.pte", "sha256": sha256_of(root / "pte-int8" / "cortex-m55.pte")}
        export_bpte(model, spec, root / "pte-int8", golden, "int8", calib=exports.calib, provenance={"cortex_m": cm})
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `hardware` need a real wearable in range: run them with ECG_EDGE_HARDWARE=1."""
    if os.environ.get("ECG_EDGE_HARDWARE") == "1":
        return
    skip = pytest.mark.skip(reason="needs real Bluetooth hardware and a wearable in range: set ECG_EDGE_HARDWARE=1")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (deterministic CPU kernels, no oversubscription); restored after.
    Modules use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`. Without torch (a
    runtime-only install) there is nothing to pin: the tests that need torch skip on their own."""
    try:
        import torch
    except ImportError:
        yield
        return

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- the synthetic chain

@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic shards -> a tiny supervised 12-lead teacher -> a distilled lead-I test_student
    (and its label-only baseline), through the CLI; shared by test_distill and test_compare. Trained
    long enough to learn (about 10 s on one thread): the teacher and the students rank the five
    conditions well above chance on the 20 validation and test records, so that a broken
    distillation fails test_distill."""
    torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to train the chain")
    from ecg_edge.cli import main
    from ecg_edge.config import load_pipeline_config
    from train.data.shards import build_shards
    from train.data.sources import DataConfig

    tmp = tmp_path_factory.mktemp("distill")
    cfg = load_pipeline_config(REPO / "configs" / "pretrain" / "supervised-cpu.toml")
    shards = tmp / "shards"
    build_shards(DataConfig(n_records=100, seed=5), cfg.preprocess, shards)
    conf = tmp / "tiny.toml"
    conf.write_text('[pretrain]\nobjective = "supervised"\nencoder = "test_resnet1d"\nembed_dim = 16\n'
                    '[distill]\nstudent = "test_student"\nlead = "I"\n'
                    '[train]\nepochs = 20\nbatch_size = 16\nlr = 5e-3\ndevice = "cpu"\n')
    teacher = tmp / "teacher"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["pretrain", "--config", str(conf), "--shards", str(shards), "--out", str(teacher)]) == 0
        students = tmp / "students"
        assert main(["distill", "--teacher", str(teacher), "--config", str(conf), "--out", str(students),
                     "--n-boot", "50"]) == 0
    finally:
        torch.set_num_threads(before)
    return {"shards": shards, "teacher": teacher, "students": students, "config": conf, "tmp": tmp}


@pytest.fixture(scope="session")
def exported(chain: dict[str, Path]) -> dict:
    """Every artifact of the chain's distilled student (`ecg-edge export --brevitas`)."""
    import torch

    from ecg_edge.cli import main

    out = chain["tmp"] / "export"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["export", "--student", str(chain["students"] / "distilled"), "--out", str(out),
                     "--n-boot", "50", "--method", "ptq", "brevitas", "--qat-epochs", "1"]) == 0
    finally:
        torch.set_num_threads(before)
    return {"out": out, "summary": json.loads((out / "export.json").read_text())}
