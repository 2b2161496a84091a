"""Test helper: the registry's tiny student exported to every artifact kind the runtime loads.

The model is `train.models.student.test_student` (`create_model("test_student")`): the students'
form (ARCHITECTURE.md, FACTS.md), Conv2d over (N, C, 1, T) with (1, k) kernels, BatchNorm and ReLU,
a small average pool (not a wide global pool, which Ethos-U leaves on the CPU), and a linear head
giving one logit per synthetic condition. It is trained for a few seconds on real preprocessed
windows so its logits carry decisions worth comparing; int8 is calibrated on other real windows,
never on random tensors.

Every `export_*` delegates to the library exporters in `distill.export` (which fold BatchNorm and
write the artifact with `edge_runtime.artifact.write_artifact`) and returns the manifest path
together with the PyTorch reference the artifact must reproduce (the float model, or the
`convert_pt2e` module for int8).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from distill import export
from distill.export import Exported, ExportSpec
from edge_runtime.signal import PreprocessConfig
from train.data.synthetic import CONDITIONS, condition_windows
from train.models import create_model

FS_DEVICE = 500.0
LEADS = ("I",)
LABELS = CONDITIONS
CONFIG = PreprocessConfig()
WINDOW = CONFIG.window
EXAMPLE = (torch.zeros(1, len(LEADS), 1, WINDOW),)


def tiny_student(leads: tuple[str, ...] = LEADS, n_labels: int = len(LABELS)) -> nn.Module:
    """The registry's `test_student` for `leads` and `n_labels` classes, on the contract's window."""
    return create_model("test_student", leads=leads, n_classes=n_labels, window=WINDOW)


def synthetic_windows(n_records: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed lead-I windows (n, 1, 1, 1000) float32 and condition indices (n,) from the
    seeded synthetic generator at 500 Hz, through the repo's signal contract."""
    return condition_windows(n_records, seed, fs=FS_DEVICE, leads=LEADS, preprocess=CONFIG)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: same weights on any machine, and no thread spinning on a busy
    2-core CI box (training took 31 s instead of 2.3 s with 2 threads under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@one_thread()
def train_tiny(x: np.ndarray, y: np.ndarray, steps: int = 150, seed: int = 0,
               leads: tuple[str, ...] = LEADS) -> nn.Module:
    """A few Adam steps of `tiny_student` on real windows (deterministic for a given seed: one thread)."""
    torch.manual_seed(seed)
    model = tiny_student(leads)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (32,), generator=gen)
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


#: The manifest facts every tiny artifact carries (distill.export writes them).
SPEC = ExportSpec(CONFIG, LEADS, LABELS, fs_device=FS_DEVICE,
                  provenance={"model": "test_student (train.models.student), trained by tests/tiny_export.py"})


def _calibrated(calib: np.ndarray) -> ExportSpec:
    prov = {**SPEC.provenance, "calibration": f"{len(calib)} preprocessed synthetic lead-I windows"}
    return dataclasses.replace(SPEC, provenance=prov)


def export_tflite_fp32(model: nn.Module, out_dir: Path) -> Exported:
    """fp32 .tflite via litert_torch.convert."""
    return export.export_tflite(model, SPEC, out_dir, "fp32")


def export_tflite_int8(model: nn.Module, calib: np.ndarray, out_dir: Path) -> Exported:
    """Full-int8 .tflite with int8 input and output: PT2E + litert-torch's quantizer (per-channel)."""
    return export.export_tflite(model, _calibrated(calib), out_dir, "int8", calib)


def export_pte_fp32(model: nn.Module, out_dir: Path) -> Exported:
    """fp32 .pte lowered to XNNPACK."""
    return export.export_pte(model, SPEC, out_dir, "fp32")


def export_pte_int8(model: nn.Module, calib: np.ndarray, out_dir: Path) -> Exported:
    """int8 .pte: PT2E XNNPACKQuantizer (per-channel symmetric), lowered to XNNPACK; float I/O."""
    return export.export_pte(model, _calibrated(calib), out_dir, "int8", calib)


def export_onnx_fp32(model: nn.Module, out_dir: Path) -> Exported:
    """fp32 .onnx (opset 17, TorchScript exporter) with a dynamic batch dimension."""
    return export.export_onnx(model, SPEC, out_dir)


#: artifact kind -> (module that must be importable to export it, its runtime module, exporter)
KINDS: dict[str, tuple[str, str, Any]] = {
    "tflite_fp32": ("litert_torch", "ai_edge_litert", lambda m, c, d: export_tflite_fp32(m, d)),
    "tflite_int8": ("litert_torch", "ai_edge_litert", export_tflite_int8),
    "pte_fp32": ("executorch", "executorch", lambda m, c, d: export_pte_fp32(m, d)),
    "pte_int8": ("executorch", "executorch", export_pte_int8),
    "onnx_fp32": ("onnx", "onnxruntime", lambda m, c, d: export_onnx_fp32(m, d)),
}


class Exports:
    """Session cache: the trained tiny model, its windows, and each artifact exported on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        x_train, y_train = synthetic_windows(40, seed=1)
        self.calib, _ = synthetic_windows(12, seed=2)
        self.x, self.y = synthetic_windows(20, seed=3)
        self.model = train_tiny(x_train, y_train)
        self._done: dict[str, Exported] = {}

    def get(self, kind: str) -> Exported:
        if kind not in self._done:
            for module in KINDS[kind][:2]:
                if importlib.util.find_spec(module) is None:
                    pytest.skip(f"{module} is not installed (pip install 'ecg-edge[export]' / '[edge]')")
            with one_thread():
                self._done[kind] = KINDS[kind][2](self.model, self.calib, self.root / kind)
        return self._done[kind]

    def reference(self, kind: str, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.get(kind).reference(torch.from_numpy(x)).numpy()
