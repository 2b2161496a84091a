"""The one training loop: schedule, determinism, checkpoint/resume, and a real 2-process torchrun."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed for the training loop")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_fixtures import SeenModel, TinySet  # noqa: E402

from edge_runtime.errors import ConfigError, DatasetError  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.engine import fit, load_checkpoint, seed_everything, warmup_cosine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CFG = TrainConfig(epochs=3, batch_size=8, lr=1e-2, device="cpu", seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(out: Path | None, cfg: TrainConfig = CFG, **kw) -> tuple[SeenModel, dict]:
    seed_everything(cfg.seed)
    model = SeenModel()
    return model, fit(model, TinySet(64), cfg, out, meta={"task": "test", "objective": "bce"}, progress=False, **kw)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_warmup_then_cosine_to_zero() -> None:
    f = warmup_cosine(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(99) < 0.01
    assert all(f(i) >= f(i + 1) for i in range(10, 99))


def test_training_is_deterministic_and_learns(tmp_path: Path) -> None:
    a, sa = _train(None)
    b, sb = _train(None)
    assert _same(a.state_dict(), b.state_dict())
    losses = [row["loss"] for row in sa["history"]]
    assert losses[-1] < losses[0]
    assert [r["ecgs"] for r in sa["history"]] == [64, 64, 64]


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    straight, _ = _train(tmp_path / "a")
    first, s1 = _train(tmp_path / "b", stop_after=1)
    assert s1["epochs_done"] == 1 and load_checkpoint(tmp_path / "b")["epoch"] == 1
    resumed, s2 = _train(tmp_path / "b", resume=True)
    assert s2["epochs_done"] == 3 and len(s2["history"]) == 3
    assert _same(straight.state_dict(), resumed.state_dict())
    final = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert _same(final["state_dict"], straight.state_dict())


def test_resume_refuses_another_model_or_data(tmp_path: Path) -> None:
    _train(tmp_path, stop_after=1)
    seed_everything(0)
    with pytest.raises(ConfigError, match="cannot resume: objective was 'bce'"):
        fit(SeenModel(), TinySet(64), CFG, tmp_path, meta={"task": "test", "objective": "clip"}, resume=True,
            progress=False)


def test_bad_checkpoint_and_too_few_windows_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(DatasetError, match="make no full batch of 8"):
        fit(SeenModel(), TinySet(5), CFG, None, meta={}, progress=False)
    with pytest.raises(ConfigError, match="train.precision"):
        TrainConfig(precision="fp16")


@pytest.mark.slow
def test_torchrun_two_cpu_processes_see_disjoint_data_and_end_identical(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "ddp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    per_epoch = 64 // 2  # DistributedSampler: each rank gets half of the 64 examples per epoch
    for epoch in range(2):
        s0 = r0["seen"][epoch * per_epoch:(epoch + 1) * per_epoch]
        s1 = r1["seen"][epoch * per_epoch:(epoch + 1) * per_epoch]
        assert len(s0) == len(s1) == per_epoch
        assert not set(s0) & set(s1) and set(s0) | set(s1) == set(range(64))
    assert _same(r0["state"], r1["state"])
    assert r0["history"][-1]["ecgs"] == 64
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["world_size"] == 2 and _same(ckpt["state_dict"], r0["state"])
