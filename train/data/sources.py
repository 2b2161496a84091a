"""One way to name a dataset: "synthetic", "ptbxl:PATH", "cinc2017:PATH" or "mitdb:PATH".

Every reader follows the `Dataset` protocol, so shards, training and evaluation take any of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, runtime_checkable

from edge_runtime.errors import ConfigError
from edge_runtime.registry import Registry
from edge_runtime.spec import STANDARD_LEADS, Record, canonical_leads

SPLITS = ("train", "val", "test")

#: The datasets by name (`edge_runtime.registry.Registry`, the project's one registry style): each
#: entry opens its reader from `(DataConfig, root folder)`, importing only that reader's
#: dependencies. Tags: `folder` (named "NAME:PATH"), `download` (fetched by `ecg-edge data
#: download`; its remote files: `train.data.download.DATASETS`), `demo` (record-level labels the
#: demo's teacher and students learn: not MIT-BIH, whose labels are beats).
DATASETS: Registry[Callable[["DataConfig", Path], "Dataset"]] = Registry("dataset")


@DATASETS.register("synthetic", folder=False, download=False, demo=True)
def _synthetic(cfg: DataConfig, root: Path) -> Dataset:
    from train.data.synthetic import Synthetic
    return Synthetic(cfg.n_records, seed=cfg.seed, fs=cfg.fs or 500.0, duration_s=cfg.duration_s)


@DATASETS.register("ptbxl", folder=True, download=True, demo=True)
def _ptbxl(cfg: DataConfig, root: Path) -> Dataset:
    from train.data.ptbxl import PtbXl
    return PtbXl(root, fs=int(cfg.fs or 100))


@DATASETS.register("cinc2017", folder=True, download=True, demo=True)
def _cinc2017(cfg: DataConfig, root: Path) -> Dataset:
    from train.data.cinc2017 import Cinc2017
    return Cinc2017(root)


@DATASETS.register("mitdb", folder=True, download=True, demo=False)
def _mitdb(cfg: DataConfig, root: Path) -> Dataset:
    from train.data.mitdb import MitBih
    return MitBih(root)


#: The one list of dataset names, and the two subsets the CLI offers (`data download`, `demo --data`).
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
DOWNLOADABLE: tuple[str, ...] = tuple(DATASETS.names(download=True))
DEMO_DATASETS: tuple[str, ...] = tuple(DATASETS.names(demo=True))


def hash_bucket(key: str, n: int) -> int:
    """Bucket 0..n-1 of `key`: the first 8 bytes of SHA-256(key) as a big-endian integer, modulo n.
    The same on every machine, needing no seed, and unmoved when other keys come or go: the CinC
    2017 splits (`train.data.cinc2017.split_of`) and the cross-validation folds
    (`distill.crossval.fold_of`) both come from it."""
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % n


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
        if name not in DATASETS:
            raise ConfigError(f"data.source: unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
        if DATASETS.entry(name).folder and ":" not in self.source:
            raise ConfigError(f"data.source: expected '{name}:PATH' (the folder holding the dataset)")
        if self.n_records < 1:
            raise ConfigError(f"data.n_records: expected >= 1, got {self.n_records}")
        object.__setattr__(self, "leads", canonical_leads(self.leads, where="data.leads"))


def open_dataset(cfg: DataConfig) -> Dataset:
    """Open the reader named by `cfg.source` (imports only that reader's dependencies)."""
    name, _, path = cfg.source.partition(":")
    return DATASETS.get(name)(cfg, Path(path).expanduser())
