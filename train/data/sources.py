"""One way to name a dataset: "synthetic", "ptbxl:PATH", "cinc2017:PATH" or "mitdb:PATH".

Every reader follows the `Dataset` protocol, so shards, training and evaluation take any of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

from edge_runtime.errors import ConfigError
from edge_runtime.spec import STANDARD_LEADS, Record, canonical_leads

DATASET_NAMES = ("synthetic", "ptbxl", "cinc2017", "mitdb")
SPLITS = ("train", "val", "test")


def check_split(split: str | None) -> None:
    """Raise `ConfigError` unless `split` is None, "train", "val" or "test"."""
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split: expected None, 'train', 'val' or 'test', got {split!r}")


@runtime_checkable
class Dataset(Protocol):
    """What every reader offers. `labels["target"]` of each Record is aligned with `label_names`."""

    name: str
    label_names: tuple[str, ...]
    multilabel: bool

    def ids(self, split: str | None = None) -> list[str]: ...
    def read(self, record_id: str) -> Record: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Record]: ...


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, and for the synthetic one how much of it.

    source: "synthetic" or "<name>:<path>". fs: native rate to read (PTB-XL: 100 or 500; synthetic:
    any rate 100..1000; None: the dataset's default). leads: the leads kept, by name.
    """

    source: str = "synthetic"
    n_records: int = 200
    seed: int = 0
    fs: float | None = None
    duration_s: float = 10.0
    leads: tuple[str, ...] = STANDARD_LEADS

    def __post_init__(self) -> None:
        name = self.source.split(":", 1)[0]
        if name not in DATASET_NAMES:
            raise ConfigError(f"data.source: unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
        if name != "synthetic" and ":" not in self.source:
            raise ConfigError(f"data.source: expected '{name}:PATH' (the folder holding the dataset)")
        if self.n_records < 1:
            raise ConfigError(f"data.n_records: expected >= 1, got {self.n_records}")
        object.__setattr__(self, "leads", canonical_leads(self.leads, where="data.leads"))


def open_dataset(cfg: DataConfig) -> Dataset:
    """Open the reader named by `cfg.source` (imports only that reader's dependencies)."""
    name, _, path = cfg.source.partition(":")
    root = Path(path).expanduser()
    if name == "synthetic":
        from train.data.synthetic import Synthetic
        return Synthetic(cfg.n_records, seed=cfg.seed, fs=cfg.fs or 500.0, duration_s=cfg.duration_s)
    if name == "ptbxl":
        from train.data.ptbxl import PtbXl
        return PtbXl(root, fs=int(cfg.fs or 100))
    if name == "cinc2017":
        from train.data.cinc2017 import Cinc2017
        return Cinc2017(root)
    from train.data.mitdb import MitBih
    return MitBih(root)
