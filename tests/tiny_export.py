"""Test helper: a tiny student-like model exported to every artifact kind the runtime loads.

The model has the students' form (ARCHITECTURE.md, FACTS.md): Conv2d over (N, C, 1, T) with (1, k)
kernels, strided convs and ReLU, a small (1, 4) average pool over the last 8 steps (not a wide
global pool, which Ethos-U leaves on the CPU), and a linear head giving one logit per
synthetic condition. It is trained for a few seconds on real preprocessed windows so its logits
carry decisions worth comparing; int8 is calibrated on other real windows, never on random tensors.

Every `export_*` writes an artifact with `edge_runtime.artifact.write_artifact` and returns the
manifest path together with the PyTorch reference the artifact must reproduce (the float model,
or the `convert_pt2e` module for int8).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
import importlib.util
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edge_runtime.artifact import TensorSpec, write_artifact
from edge_runtime.signal import PreprocessConfig, Preprocessor
from train.data.synthetic import CONDITIONS, Synthetic

FS_DEVICE = 500.0
LEADS = ("I",)
LABELS = CONDITIONS
CONFIG = PreprocessConfig()
WINDOW = CONFIG.window
EXAMPLE = (torch.zeros(1, len(LEADS), 1, WINDOW),)


class TinyStudent(nn.Module):
    """(N, 1, 1, 1000) -> (N, 5) logits: 1000 -> 500 -> 125 -> 32 -> 8 -> pool (1, 4) -> 2 steps x 16."""

    def __init__(self, n_leads: int = len(LEADS), n_labels: int = len(LABELS)) -> None:
        super().__init__()
        def conv(cin: int, cout: int, k: int, s: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, (1, k), (1, s), (0, k // 2)), nn.ReLU()]
        self.features = nn.Sequential(*conv(n_leads, 8, 7, 2), *conv(8, 16, 5, 4), *conv(16, 16, 5, 4),
                                      *conv(16, 16, 5, 4), nn.AvgPool2d((1, 4), (1, 4)))
        self.head = nn.Linear(16 * 2, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def synthetic_windows(n_records: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed lead-I windows (n, 1, 1, 1000) float32 and condition indices (n,) from the
    seeded synthetic generator at 500 Hz, through the repo's signal contract."""
    syn = Synthetic(n_records, seed=seed, fs=FS_DEVICE, duration_s=30.0)
    pre = Preprocessor(CONFIG, FS_DEVICE, LEADS)
    xs, ys = [], []
    for rid in syn.ids():
        rec = syn.read(rid)
        w = pre.process_record(rec.select(LEADS).signal, where=rid)
        xs.append(w.data)
        ys.append(np.full(len(w), int(np.argmax(rec.labels["target"]))))
    return np.concatenate(xs)[:, :, None, :], np.concatenate(ys)


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
def train_tiny(x: np.ndarray, y: np.ndarray, steps: int = 150, seed: int = 0) -> TinyStudent:
    """A few Adam steps on real windows (deterministic for a given seed: one thread)."""
    torch.manual_seed(seed)
    model = TinyStudent()
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


@dataclass
class Exported:
    """An artifact on disk and the PyTorch module its outputs must match."""

    manifest: Path
    reference: torch.nn.Module


def _versions(*names: str) -> dict[str, str]:
    return {n: metadata.version(n) for n in ("torch", *names)}


def _write(model: bytes, out_dir: Path, runtime: str, precision: str, inp: TensorSpec, out: TensorSpec,
           provenance: dict, versions: dict) -> Path:
    return write_artifact(model, out_dir=out_dir, runtime=runtime, precision=precision, spec=CONFIG.spec(LEADS),
                          preprocess=CONFIG, labels=LABELS, input=inp, output=out, multilabel=False,
                          filter_design=CONFIG.design(FS_DEVICE), versions=versions,
                          provenance={"model": "TinyStudent (tests/tiny_export.py)", **provenance})


def _pt2e_prepare(model: nn.Module, quantizer: object, calib: np.ndarray) -> torch.fx.GraphModule:
    """Export with a dynamic batch, insert observers, calibrate on real windows in batches."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    ex2 = torch.zeros(2, len(LEADS), 1, WINDOW)
    graph = torch.export.export(copy.deepcopy(model), (ex2,),
                                dynamic_shapes={"x": {0: torch.export.Dim("batch", max=4096)}}).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i in range(0, len(calib), 64):
            prepared(torch.from_numpy(calib[i:i + 64]))
    return prepared


def _tflite_tensor(detail: dict) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    quantized = dtype == "int8"
    return TensorSpec(detail["name"], tuple(int(d) for d in detail["shape"]), dtype,
                      float(scale) if quantized else None, int(zero_point) if quantized else None)


def _write_tflite(edge_model: object, out_dir: Path, precision: str, provenance: dict) -> Path:
    from ai_edge_litert.interpreter import Interpreter
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "export.tflite.tmp"
    edge_model.export(str(tmp))
    data = tmp.read_bytes()
    tmp.unlink()
    it = Interpreter(model_content=data)
    inp, out = _tflite_tensor(it.get_input_details()[0]), _tflite_tensor(it.get_output_details()[0])
    return _write(data, out_dir, "litert", precision, inp, out, provenance, _versions("litert-torch", "torchao"))


def export_tflite_fp32(model: nn.Module, out_dir: Path) -> Exported:
    """fp32 .tflite via litert_torch.convert."""
    import litert_torch
    edge = litert_torch.convert(copy.deepcopy(model).eval(), EXAMPLE)
    return Exported(_write_tflite(edge, out_dir, "fp32", {"export": "litert_torch.convert"}), model)


def export_tflite_int8(model: nn.Module, calib: np.ndarray, out_dir: Path) -> Exported:
    """Full-int8 .tflite with int8 input and output: PT2E + litert-torch's quantizer (per-channel)."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))
    reference = convert_pt2e(_pt2e_prepare(model, quantizer, calib), fold_quantize=False)
    edge = litert_torch.convert(reference, EXAMPLE, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    prov = {"export": "PT2E PT2EQuantizer per-channel symmetric + litert_torch.convert",
            "calibration": f"{len(calib)} preprocessed synthetic lead-I windows"}
    return Exported(_write_tflite(edge, out_dir, "int8", prov), reference)


def _pte_bytes(module: nn.Module) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    program = torch.export.export(module, EXAMPLE)
    return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def _write_pte(data: bytes, out_dir: Path, precision: str, provenance: dict) -> Path:
    shape_in, shape_out = (1, len(LEADS), 1, WINDOW), (1, len(LABELS))
    # The XNNPACK int8 flow keeps float I/O: quantize/dequantize run inside the delegate.
    return _write(data, out_dir, "executorch", precision, TensorSpec("x", shape_in), TensorSpec("logits", shape_out),
                  provenance, _versions("executorch", "torchao"))


def export_pte_fp32(model: nn.Module, out_dir: Path) -> Exported:
    """fp32 .pte lowered to XNNPACK."""
    data = _pte_bytes(copy.deepcopy(model).eval())
    return Exported(_write_pte(data, out_dir, "fp32", {"export": "to_edge_transform_and_lower + XNNPACK"}), model)


def export_pte_int8(model: nn.Module, calib: np.ndarray, out_dir: Path) -> Exported:
    """int8 .pte: PT2E XNNPACKQuantizer (per-channel symmetric), lowered to XNNPACK; float I/O."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    reference = convert_pt2e(_pt2e_prepare(model, quantizer, calib))
    prov = {"export": "PT2E XNNPACKQuantizer per-channel symmetric + XNNPACK",
            "calibration": f"{len(calib)} preprocessed synthetic lead-I windows"}
    return Exported(_write_pte(_pte_bytes(reference), out_dir, "int8", prov), reference)


def export_onnx_fp32(model: nn.Module, out_dir: Path) -> Exported:
    """fp32 .onnx (opset 17, TorchScript exporter) with a dynamic batch dimension."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "export.onnx.tmp"
    torch.onnx.export(copy.deepcopy(model).eval(), EXAMPLE, str(tmp), opset_version=17, dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    data = tmp.read_bytes()
    tmp.unlink()
    inp = TensorSpec("x", (-1, len(LEADS), 1, WINDOW))
    out = TensorSpec("logits", (-1, len(LABELS)))
    return Exported(_write(data, out_dir, "onnxruntime", "fp32", inp, out, {"export": "torch.onnx.export opset 17"},
                           _versions("onnx")), model)


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
