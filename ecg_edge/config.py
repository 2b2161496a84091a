"""The pipeline config: one TOML file with a table per stage (`configs/*.toml`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.config import load_toml
from edge_runtime.signal import PreprocessConfig
from distill.config import DistillConfig
from train.config import PretrainConfig, TrainConfig
from train.data.sources import DataConfig

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of every stage that exists so far; later stages add their own table."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    shard_windows: int = 8192
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


def load_pipeline_config(path: str | Path | None) -> PipelineConfig:
    """Load a pipeline TOML; None gives the built-in defaults (synthetic data)."""
    return PipelineConfig() if path is None else load_toml(path, PipelineConfig)
