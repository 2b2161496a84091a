"""A tiny dataset and model for training-loop tests (no shards, no registry)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


class TinySet(Dataset):
    """n examples of (3, 50) signals whose target is the sign of channel 0's mean."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((n, 3, 50)).astype(np.float32)
        self.y = (self.x[:, 0].mean(axis=1, keepdims=True) > 0).astype(np.float32)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "target": self.y[i], "index": i}


class SeenModel(nn.Module):
    """Conv + BatchNorm + head with a BCE loss; remembers which example indices it trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 5)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 1)
        self.gen = torch.Generator().manual_seed(0)
        self.seen: list[int] = []

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        if self.training:
            self.seen += batch["index"].tolist()
        noise = 0.01 * torch.randn(batch["x"].shape, generator=self.gen)
        h = torch.relu(self.bn(self.conv(batch["x"] + noise))).mean(dim=2)
        loss = nn.functional.binary_cross_entropy_with_logits(self.head(h), batch["target"])
        return loss, {"bce": loss.detach()}
