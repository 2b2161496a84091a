"""The pipeline config: one file with a table per stage (`configs/*.toml`, or a written `config.json`).

The stage tables (`[data]`, `[preprocess]`, `[pretrain]`, `[train]`, `[distill]`) live beside the
code they configure; the command tables (`[quantize]`, `[export]`, `[compare]`, `[package]` below,
and `[stream]`: `ecg_edge.stream.StreamOptions`) hold the settings of the commands that were flags
only. A flag overrides the field it is bound to (`ecg_edge.cli`), and every command writes what it
ran with as JSON, which `--config` reads back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from edge_runtime.config import NON_NEGATIVE, POSITIVE, POSITIVE_INT, check_values, expect, load_toml
from edge_runtime.signal import PreprocessConfig
from ecg_edge.stream import StreamOptions
from distill.config import SHORT_CHOICES, SPLIT_CHOICES, CvConfig, DistillConfig
from train.config import PretrainConfig, TrainConfig
from train.data.sources import DataConfig

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class QuantizeConfig:
    """The `[quantize]` table: int8 artifacts of a student (`ecg-edge quantize`).

    student: the checkpoint folder of `ecg-edge distill`; method: ptq | qat | brevitas (one or more);
    device_fs: the device input rate whose filter design goes into each manifest (None: the rate
    the training data was recorded at)."""

    TABLE: ClassVar[str] = "quantize"
    METHODS: ClassVar[tuple[str, ...]] = ("ptq", "qat", "brevitas")

    student: str | None = None
    method: tuple[str, ...] = ("ptq",)
    device_fs: float | None = None
    qat_epochs: int = 2
    qat_lr: float = 1e-4
    n_boot: int = 1000
    threads: int = 1

    def __post_init__(self) -> None:
        method = (self.method,) if isinstance(self.method, str) else tuple(self.method)
        expect(f"{self.TABLE}.method", bool(method) and set(method) <= set(self.METHODS)
                and len(set(method)) == len(method), f"distinct names out of {', '.join(self.METHODS)}", self.method)
        object.__setattr__(self, "method", method)
        check_values(self.TABLE, self, {"device_fs": POSITIVE, "qat_epochs": NON_NEGATIVE, "qat_lr": POSITIVE,
                              "n_boot": POSITIVE_INT, "threads": POSITIVE_INT})


@dataclass(frozen=True)
class ExportConfig(QuantizeConfig):
    """The `[export]` table: every artifact of a student (`ecg-edge export`). method: at most one of
    ptq / qat (the int8 .pte and .tflite), plus brevitas for the Brevitas onnx-int8; embedded: run
    Vela and the Cortex-M lowering."""

    TABLE: ClassVar[str] = "export"

    embedded: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        expect("export.method", len(set(self.method) & {"ptq", "qat"}) == 1,
                "one of ptq or qat (the int8 .pte and .tflite), and brevitas if wanted", list(self.method))


@dataclass(frozen=True)
class CompareConfig:
    """The `[compare]` table (`ecg-edge compare`): the student checkpoint, the artifacts folder, an
    optional teacher checkpoint and dataset (None: the shards the student was trained on), the
    records scored (split: eval = the student's evaluation splits, all = every record, or train /
    val / test; short: pad = a record shorter than one window gets one padded window, too-short =
    it is counted, not scored), and how much to measure."""

    TABLE: ClassVar[str] = "compare"
    SPLITS: ClassVar[tuple[str, ...]] = SPLIT_CHOICES
    SHORT: ClassVar[tuple[str, ...]] = SHORT_CHOICES

    student: str | None = None
    artifacts: str | None = None
    teacher: str | None = None
    data: str | None = None
    n_boot: int = 1000
    threads: int = 1
    latency_runs: int = 50
    ram: bool = True
    tflm: bool = True
    seed: int = 0
    split: str = "eval"
    short: str = "pad"

    def __post_init__(self) -> None:
        check_values(self.TABLE, self, {"n_boot": POSITIVE_INT, "threads": POSITIVE_INT, "latency_runs": POSITIVE_INT,
                              "seed": NON_NEGATIVE})
        expect("compare.split", self.split in self.SPLITS, f"one of {', '.join(self.SPLITS)}", self.split)
        expect("compare.short", self.short in self.SHORT, f"one of {', '.join(self.SHORT)}", self.short)


@dataclass(frozen=True)
class PackageConfig:
    """The `[package]` table (`ecg-edge package`): the int8 artifact folder, the target, the golden
    windows (None: golden.npy beside the artifact), the signing key (None: unsigned), the arena
    headroom, the C array's name, the vendored TFLite Micro tree and whether to write firmware."""

    TABLE: ClassVar[str] = "package"

    artifact: str | None = None
    target: str | None = None
    golden: str | None = None
    sign: str | None = None
    headroom: float = 0.25
    c_name: str = "ecg_model"
    tflm: str | None = None
    firmware: bool = True

    def __post_init__(self) -> None:
        check_values(self.TABLE, self, {"headroom": NON_NEGATIVE})
        expect("package.c_name", self.c_name.isidentifier(), "a C identifier", self.c_name)


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of every stage and of every command that has more than flags."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    shard_windows: int = 8192
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    cv: CvConfig = field(default_factory=CvConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    package: PackageConfig = field(default_factory=PackageConfig)
    stream: StreamOptions = field(default_factory=StreamOptions)


def load_pipeline_config(path: str | Path | None) -> PipelineConfig:
    """Load a pipeline TOML (or a written config.json); None gives the built-in defaults (synthetic data)."""
    return PipelineConfig() if path is None else load_toml(path, PipelineConfig)
