"""Run by tests/test_training.py under `torchrun --nproc_per_node 2`: one tiny `fit` per rank.

Each rank writes the window indices it trained on and its final weights to OUT/rank<R>.pt, so the
test can check that ranks saw disjoint data and ended with identical weights.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_fixtures import SeenModel, TinySet  # noqa: E402

from train.config import TrainConfig  # noqa: E402
from train.engine import fit, seed_everything, setup_distributed  # noqa: E402


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist = setup_distributed("cpu")
    seed_everything(0)
    model = SeenModel()
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, device="cpu", seed=0)
    summary = fit(model, TinySet(64), cfg, Path(out) / "run", meta={"task": "ddp-test"}, progress=False, dist=dist)
    torch.save({"seen": model.seen, "state": model.state_dict(), "world": summary["world_size"],
                "history": summary["history"]}, Path(out) / f"rank{dist.rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    assert int(os.environ["WORLD_SIZE"]) == 2
    main(sys.argv[1])
