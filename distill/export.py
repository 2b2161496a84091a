"""Student export: any (N, C, 1, T) -> (N, K) module to a runtime artifact (model file + manifest.json).

One function per format, each writing an artifact folder with `edge_runtime.artifact.write_artifact`
and returning `Exported(manifest, reference)`, where `reference` is the PyTorch module the artifact
must reproduce (`distill.parity.check_parity` checks it): the float model (BatchNorm folded) for
fp32, the `convert_pt2e` module for int8. What every manifest needs travels in one `ExportSpec`.

* `export_pte`: ExecuTorch, XNNPACK-lowered; int8 by PT2E `XNNPACKQuantizer` (per-channel
  symmetric weights). The int8 program keeps float input and output: quantize / dequantize run
  inside the delegate, so the manifest's tensors are float32.
* `export_bpte`: the same .pte plus `model.bpte` beside it, a bundled program carrying golden
  inputs and the outputs this .pte gives for them on the ExecuTorch runtime, for a vendor to run
  on the device (`verify_bpte`). The runtime never reads the .bpte; the manifest's provenance
  records its name and sha256 under "bundled_program" (the manifest can name only one model file,
  and a .bpte is no runtime format).
* `export_tflite`: LiteRT via litert-torch; int8 is full integer with int8 input and output
  (litert-torch's PT2EQuantizer, per-channel), the manifest carrying their scale and zero point.
* `export_onnx`: fp32, opset 17, TorchScript exporter (dynamo=False), dynamic batch.

Every int8 export is calibrated on real preprocessed windows (`calib`), never on random tensors;
their count and sha256 go into the provenance. .pte and .tflite have a batch of 1 (the streaming
case; the runtime runs batches window by window), .onnx any batch.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edge_runtime.abstain import check_bands
from edge_runtime.artifact import RECORD_RULES, TensorSpec, write_artifact
from edge_runtime.errors import ArtifactError, ConfigError
from edge_runtime.filters import FilterDesign
from edge_runtime.provenance import package_versions
from edge_runtime.signal import PreprocessConfig, check_fs
from edge_runtime.spec import SignalSpec, canonical_leads

PRECISIONS = ("fp32", "int8")
#: PT2E calibration batch; the prepared graph is exported with a dynamic batch for it.
CALIB_BATCH = 64


@dataclass(frozen=True)
class ExportSpec:
    """What every manifest carries besides the model: signal contract, head, history.

    preprocess: the training `PreprocessConfig` (its `fs_out` and window are the model's input).
    leads: input channels by name, in order. labels / multilabel: the head (sigmoid per label when
    multilabel, else softmax). thresholds: one decision threshold per label on the probability,
    chosen by the caller on validation data (None: 0.5 each). abstain: one inconclusive band per
    label in logit units, >= 0, chosen on out-of-fold scores of the int8 model
    (`edge_runtime.abstain.choose_bands`; None: no abstention), written into every format's
    manifest as thresholds are. record_rule: how a record's window probabilities become its
    probabilities before it is decided (`edge_runtime.artifact.RECORD_RULES`; chosen by `ecg-edge
    cv`, "mean" otherwise). fs_device: the device input rate in
    Hz whose filter design is stored so that the device reproduces preprocessing exactly (None:
    no stored design; the runtime designs filters from `preprocess`). provenance: free-form, e.g.
    teacher / student checkpoint sha256, data sha256, a calibration description.
    """

    preprocess: PreprocessConfig
    leads: tuple[str, ...]
    labels: tuple[str, ...]
    multilabel: bool = False
    thresholds: tuple[float, ...] | None = None
    abstain: tuple[float, ...] | None = None
    record_rule: str = "mean"
    fs_device: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ConfigError(f"preprocess: expected a PreprocessConfig, got {type(self.preprocess).__name__}")
        object.__setattr__(self, "leads", canonical_leads(self.leads, where="export.leads"))
        labels = (self.labels,) if isinstance(self.labels, str) else tuple(self.labels)
        if not labels or not all(isinstance(s, str) and s for s in labels) or len(set(labels)) != len(labels):
            raise ConfigError(f"labels: expected distinct non-empty names, got {self.labels!r}")
        object.__setattr__(self, "labels", labels)
        if not isinstance(self.multilabel, bool):
            raise ConfigError(f"multilabel: expected true or false, got {self.multilabel!r}")
        if self.thresholds is not None:
            th = tuple(float(t) for t in self.thresholds)
            if len(th) != len(labels) or not all(0.0 <= t <= 1.0 for t in th):
                raise ConfigError(f"thresholds: expected {len(labels)} probabilities in 0..1 (one per label), "
                                  f"got {self.thresholds!r}")
            object.__setattr__(self, "thresholds", th)
        if self.abstain is not None:
            object.__setattr__(self, "abstain", check_bands(self.abstain, len(labels), "abstain"))
        if self.record_rule not in RECORD_RULES:
            raise ConfigError(f"record_rule: expected one of {list(RECORD_RULES)}, got {self.record_rule!r}")
        if self.fs_device is not None:
            object.__setattr__(self, "fs_device", check_fs(self.fs_device, "fs_device"))
            self.preprocess.design(self.fs_device)  # refuses a notch at or above the device Nyquist
        if not isinstance(self.provenance, dict):
            raise ConfigError(f"provenance: expected a dict, got {type(self.provenance).__name__}")

    @property
    def signal(self) -> SignalSpec:
        return self.preprocess.spec(self.leads)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One window as the model takes it: (n_leads, 1, window)."""
        return (len(self.leads), 1, self.preprocess.window)

    @property
    def filter_design(self) -> FilterDesign | None:
        return None if self.fs_device is None else self.preprocess.design(self.fs_device)

    def example(self, batch: int = 1) -> tuple[torch.Tensor]:
        return (torch.zeros(batch, *self.input_shape),)


@dataclass
class Exported:
    """An artifact on disk (its manifest.json) and the PyTorch module its outputs must match."""

    manifest: Path
    reference: nn.Module


# --------------------------------------------------------------------------- model preparation

def prepare_model(model: nn.Module, spec: ExportSpec) -> nn.Module:
    """A deep copy in eval mode, BatchNorm folded (`train.models.student.fuse_batchnorm`), checked
    against `spec` by one forward pass."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    from train.models.student import fuse_batchnorm

    m = fuse_batchnorm(model)
    _check_model(m, spec)
    return m


def _check_model(model: nn.Module, spec: ExportSpec) -> None:
    name = type(model).__name__
    leads = getattr(model, "leads", None)
    if leads is not None and canonical_leads(leads, where=f"{name}.leads") != spec.leads:
        raise ConfigError(f"leads: the model takes {tuple(leads)}, the export spec says {spec.leads}")
    for attr, want in (("n_classes", len(spec.labels)), ("window", spec.preprocess.window)):
        have = getattr(model, attr, None)
        if isinstance(have, int) and have != want:
            raise ConfigError(f"{attr}: the model has {have}, the export spec implies {want}")
    with torch.no_grad():
        out = model(*spec.example())
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, len(spec.labels)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model: expected (1, {len(spec.labels)}) logits for a (1, {', '.join(map(str, spec.input_shape))}) "
                          f"window, got {got}")


def _check_precision(precision: str, calib: Any, spec: ExportSpec) -> np.ndarray | None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if calib is None:
        raise ConfigError("calib: int8 export needs real preprocessed calibration windows "
                          f"(n, {', '.join(map(str, spec.input_shape))}); got None")
    return check_windows(calib, spec, "calib")


def check_windows(x: Any, spec: ExportSpec, where: str) -> np.ndarray:
    """float32 C-contiguous (n, n_leads, 1, window) windows, n >= 1, finite; ConfigError otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating) or x.ndim != 4 \
            or x.shape[1:] != spec.input_shape or len(x) < 1:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ConfigError(f"{where}: expected float windows (n, {', '.join(map(str, spec.input_shape))}), got {got}")
    if not np.isfinite(x).all():
        raise ConfigError(f"{where}: expected finite values, got NaN or inf")
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------- PT2E int8

def quantize_pt2e(model: nn.Module, spec: ExportSpec, quantizer: Any, calib: np.ndarray,
                  fold_quantize: bool = True) -> torch.fx.GraphModule:
    """prepare_pt2e on a dynamic-batch export, calibrate on `calib` in batches, convert_pt2e.

    The returned module is the int8 reference (float in, float out, quantized arithmetic).
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    # A batch-2 example keeps the batch symbolic (a batch-1 example would be specialised to 1).
    graph = torch.export.export(model, spec.example(2),
                                dynamic_shapes=({0: torch.export.Dim("batch", max=4096)},)).module()
    prepared = prepare_pt2e(graph, quantizer)
    n_chunks = max(1, -(-len(calib) // CALIB_BATCH))
    with torch.no_grad():
        for chunk in np.array_split(calib, n_chunks):
            prepared(torch.from_numpy(chunk))
    return convert_pt2e(prepared, fold_quantize=fold_quantize)


def pt2e_quantizer(runtime: str, qat: bool = False) -> Any:
    """The PT2E quantizer of a runtime: XNNPACKQuantizer ("executorch") or litert-torch's
    PT2EQuantizer ("litert"), per-channel symmetric weights, int8 activations; `qat` gives the
    fake-quantize (QAT) form of the same configuration."""
    if runtime == "executorch":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer, get_symmetric_quantization_config,
        )
        return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))
    if runtime == "litert":
        from litert_torch.quantize import pt2e_quantizer as pq
        return pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))
    raise ConfigError(f"runtime: expected 'executorch' or 'litert' for a PT2E quantizer, got {runtime!r}")


def qat_finetune_pt2e(model: nn.Module, spec: ExportSpec, quantizer: Any, calib: np.ndarray, windows: np.ndarray,
                      targets: np.ndarray, *, multilabel: bool, epochs: int = 2, lr: float = 1e-4,
                      batch_size: int = 64, seed: int = 0, teacher_logits: np.ndarray | None = None,
                      temperature: float = 2.0, alpha: float = 0.5) -> torch.fx.GraphModule:
    """PT2E quantization-aware fine-tune: prepare_qat_pt2e -> observe `calib` -> a short seeded
    fine-tune on `windows` / `targets` with fake quantization in the loop (label loss, plus logit
    distillation from `teacher_logits`, usually the float student's, weighted `alpha`). Returns the
    prepared module in eval mode: `convert_pt2e` it for the int8 reference, or take its
    fine-tuned float weights (`with_weights_of`).

    `model` is the float student with BatchNorm folded (`prepare_model`), so the fine-tune adjusts
    the weights the device runs. targets: (n, K) multi-hot or one-hot.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from distill.distill import finetune
    x = torch.from_numpy(check_windows(windows, spec, "windows"))
    y = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    if tuple(y.shape) != (len(x), len(spec.labels)):
        raise ConfigError(f"targets: expected shape ({len(x)}, {len(spec.labels)}), got {tuple(y.shape)}")
    t = None if teacher_logits is None else torch.as_tensor(np.asarray(teacher_logits, dtype=np.float32))
    if t is not None and tuple(t.shape) != tuple(y.shape):
        raise ConfigError(f"teacher_logits: expected shape {tuple(y.shape)}, got {tuple(t.shape)}")
    if epochs < 1 or batch_size < 2 or not lr > 0 or not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"qat: expected epochs >= 1, batch_size >= 2, lr > 0, 0 <= alpha <= 1; got "
                          f"{epochs}, {batch_size}, {lr}, {alpha}")
    calib = check_windows(calib, spec, "calib")
    torch.manual_seed(seed)
    graph = torch.export.export(copy.deepcopy(model).train(), spec.example(2),
                                dynamic_shapes=({0: torch.export.Dim("batch", max=4096)},)).module()
    prepared = prepare_qat_pt2e(graph, quantizer)
    move_exported_model_to_eval(prepared)
    with torch.no_grad():  # observers first see the calibration windows, as in PTQ
        for chunk in np.array_split(calib, max(1, -(-len(calib) // CALIB_BATCH))):
            prepared(torch.from_numpy(chunk))
    move_exported_model_to_train(prepared)
    finetune(prepared, prepared, x, y, multilabel=multilabel, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
             teacher_logits=t, temperature=temperature, alpha=alpha, where="qat")
    return move_exported_model_to_eval(prepared)


def with_weights_of(prepared: torch.fx.GraphModule, model: nn.Module) -> nn.Module:
    """A copy of the float `model` holding the fine-tuned weights of its QAT-prepared graph (call
    before `convert_pt2e`, which rewrites them). torch.export keeps parameter names, so every
    parameter of `model` must be found; ConfigError otherwise."""
    tuned = dict(prepared.named_parameters())
    out = copy.deepcopy(model).eval()
    missing = [k for k, _ in out.named_parameters() if k not in tuned]
    if missing:
        raise ConfigError(f"with_weights_of: the prepared graph lacks parameters {missing[:3]} of the model")
    with torch.no_grad():
        for k, v in out.named_parameters():
            v.copy_(tuned[k].detach())
    return out


def _calib_provenance(calib: np.ndarray) -> dict[str, Any]:
    return {"calibration_windows": int(len(calib)), "calibration_sha256": hashlib.sha256(calib.tobytes()).hexdigest()}


def _versions(*names: str) -> dict[str, str | None]:
    return package_versions(("torch", *names))


def _write(data: bytes, spec: ExportSpec, out_dir: str | Path, runtime: str, precision: str, inp: TensorSpec,
           out: TensorSpec, provenance: dict[str, Any], versions: dict[str, str], model: nn.Module) -> Path:
    facts = {"model_class": type(model).__name__, **provenance}
    for attr in ("model_name", "model_kwargs"):  # recorded by train.models.create_model
        value = getattr(model, attr, None)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        if value:
            facts[attr] = value
    return write_artifact(data, out_dir=out_dir, runtime=runtime, precision=precision, spec=spec.signal,
                          preprocess=spec.preprocess, labels=spec.labels, input=inp, output=out,
                          multilabel=spec.multilabel, thresholds=spec.thresholds, abstain=spec.abstain,
                          record_rule=spec.record_rule, filter_design=spec.filter_design,
                          provenance={**spec.provenance, **facts}, versions=versions)


def write_model_artifact(data: bytes, spec: ExportSpec, out_dir: str | Path, *, runtime: str, precision: str,
                         input: TensorSpec, output: TensorSpec, provenance: dict[str, Any],
                         versions: tuple[str, ...] = (), model: nn.Module | None = None) -> Path:
    """An artifact from model bytes made elsewhere (e.g. Brevitas's QCDQ ONNX), with the same
    manifest as the exporters here write; `versions` names the packages to record beside torch."""
    return _write(data, spec, out_dir, runtime, precision, input, output, provenance, _versions(*versions),
                  model if model is not None else nn.Identity())


# --------------------------------------------------------------------------- ExecuTorch

def _xnnpack_reference(model: nn.Module, spec: ExportSpec, precision: str, calib: Any) -> tuple[nn.Module, dict]:
    """The module to lower (float model or convert_pt2e module) and its provenance."""
    calib = _check_precision(precision, calib, spec)
    m = prepare_model(model, spec)
    if calib is None:
        return m, {"export": "torch.export + to_edge_transform_and_lower + XNNPACK"}
    reference = quantize_pt2e(m, spec, pt2e_quantizer("executorch"), calib)
    return reference, {"export": "PT2E XNNPACKQuantizer per-channel symmetric + XNNPACK", **_calib_provenance(calib)}


def _lower(module: nn.Module, spec: ExportSpec) -> Any:
    """torch.export at batch 1 -> XNNPACK-lowered ExecutorchProgramManager (`.buffer` is the .pte)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    program = torch.export.export(module, spec.example())
    return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()


def _pte_tensors(spec: ExportSpec) -> tuple[TensorSpec, TensorSpec]:
    # The XNNPACK int8 flow keeps float I/O: quantize/dequantize run inside the delegate.
    return TensorSpec("x", (1, *spec.input_shape)), TensorSpec("logits", (1, len(spec.labels)))


def export_pte(model: nn.Module, spec: ExportSpec, out_dir: str | Path, precision: str = "fp32",
               calib: np.ndarray | None = None, provenance: dict[str, Any] | None = None) -> Exported:
    """XNNPACK-lowered .pte (batch 1, float I/O); int8 calibrated on `calib` real windows, or, when
    `model` already is an int8 reference (a convert_pt2e module from `pt2e_quantizer("executorch")`,
    e.g. `convert_pt2e` of `qat_finetune_pt2e`'s), that module lowered as it is. `provenance` adds to the manifest's."""
    if precision == "int8" and _is_quantized(model):
        _check_model(model, spec)
        reference, prov = model, {"export": "PT2E int8 reference (given) + XNNPACK"}
    else:
        reference, prov = _xnnpack_reference(model, spec, precision, calib)
    prov.update(provenance or {})
    data = _lower(reference, spec).buffer
    path = _write(data, spec, out_dir, "executorch", precision, *_pte_tensors(spec), prov,
                  _versions("executorch", "torchao"), model)
    return Exported(path, reference)


def _is_quantized(module: nn.Module) -> bool:
    graph = getattr(module, "graph", None)
    return graph is not None and any("quantize_per" in str(n.target) for n in graph.nodes if n.op == "call_function")


def export_bpte(model_or_reference: nn.Module, spec: ExportSpec, out_dir: str | Path, golden_inputs: np.ndarray,
                precision: str = "fp32", calib: np.ndarray | None = None,
                provenance: dict[str, Any] | None = None) -> Exported:
    """A .pte artifact plus `model.bpte`: the same program bundled with golden test cases.

    `model_or_reference`: the float model; for int8 either the float model with `calib`, or an int8
    reference (`export_pte(..., "int8").reference`, a convert_pt2e module), which lowers to the
    same .pte as that export. `golden_inputs` (n, n_leads, 1, window): one test case per window,
    its expected output what the .pte gives on the ExecuTorch runtime here. The bundle is verified
    here before anything is written; provenance["bundled_program"] records the file, its sha256 and
    the tolerances a device run should use (`distill.parity.default_tolerance`). `provenance` adds
    to the manifest's.
    """
    golden = check_windows(golden_inputs, spec, "golden_inputs")
    if precision == "fp32" and _is_quantized(model_or_reference):
        raise ConfigError("precision: 'fp32' bundle asked for an int8 (convert_pt2e) module; expected 'int8'")
    if precision == "int8" and _is_quantized(model_or_reference):
        reference = model_or_reference
        _check_model(reference, spec)
        prov = {"export": "PT2E int8 reference (given) + XNNPACK"}
    else:
        reference, prov = _xnnpack_reference(model_or_reference, spec, precision, calib)
    manager = _lower(reference, spec)
    data = manager.buffer
    bpte, expected = _bundle(manager, golden)
    verify_bpte(bpte, pte=data, where=str(Path(out_dir) / "model.bpte"))
    from distill.parity import default_tolerance
    atol = default_tolerance(precision, reference)
    prov["bundled_program"] = {
        "file": "model.bpte", "sha256": hashlib.sha256(bpte).hexdigest(), "method": "forward",
        "test_cases": int(len(golden)), "expected": f"outputs of model.pte on the ExecuTorch runtime (XNNPACK, {platform.machine()})",
        "device_atol": atol, "device_rtol": 0.0,
        "max_abs_expected": float(np.abs(expected).max())}
    prov.update(provenance or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.bpte").write_bytes(bpte)
    path = _write(data, spec, out, "executorch", precision, *_pte_tensors(spec), prov,
                  _versions("executorch", "torchao"), model_or_reference)
    return Exported(path, reference)


def _bundle(manager: Any, golden: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Run each golden window through the program on the runtime; bundle inputs and outputs."""
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer
    from executorch.runtime import Runtime
    method = Runtime.get().load_program(manager.buffer).load_method("forward")
    cases, outs = [], []
    for i in range(len(golden)):
        x = torch.from_numpy(golden[i:i + 1].copy())  # fresh strides: the bundle refuses a 0 stride
        y = method.execute([x])[0].clone()
        cases.append(MethodTestCase(inputs=[x], expected_outputs=[y]))
        outs.append(y.numpy())
    bundle = BundledProgram(manager, [MethodTestSuite(method_name="forward", test_cases=cases)])
    return serialize_from_bundled_program_to_flatbuffer(bundle), np.concatenate(outs)


def verify_bpte(bpte: bytes | str | Path, *, pte: bytes | str | Path | None = None, rtol: float = 1e-5,
                atol: float = 1e-8, where: str | None = None) -> int:
    """Run every bundled test case of a .bpte on the ExecuTorch runtime; return how many passed.

    `pte`: when given, the program inside the bundle must be exactly this .pte. Raises ArtifactError
    (one line naming the file and the first failing case or check). The default tolerances are
    ExecuTorch's own: on the machine that made the bundle the outputs are identical; on another
    device use the manifest's provenance["bundled_program"]["device_atol"].
    """
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program
    from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer
    is_bytes = isinstance(bpte, (bytes, bytearray))
    data = bytes(bpte) if is_bytes else Path(bpte).read_bytes()
    name = where or ("bundled program" if is_bytes else str(bpte))
    try:
        schema = deserialize_from_flatbuffer_to_bundled_program(data)
        module = _load_bundled_program_from_buffer(data)
    except Exception as exc:  # flatc or the runtime: anything here means an unreadable bundle
        raise ArtifactError(f"{name}: not a loadable bundled program ({type(exc).__name__}: {exc})") from None
    if pte is not None:
        program = pte if isinstance(pte, (bytes, bytearray)) else Path(pte).read_bytes()
        if bytes(schema.program) != bytes(program):
            raise ArtifactError(f"{name}: the bundled program is not the .pte it should carry "
                                f"({len(schema.program)} vs {len(program)} bytes)")
    suites = {s.method_name: len(s.test_cases) for s in schema.method_test_suites}
    if not suites.get("forward"):
        raise ArtifactError(f"{name}: no test cases for method 'forward' (suites: {suites})")
    for i in range(suites["forward"]):
        try:
            module.verify_result_with_bundled_expected_output("forward", i, rtol=rtol, atol=atol)
        except RuntimeError as exc:
            raise ArtifactError(f"{name}: bundled test case {i} failed verification "
                                f"(rtol {rtol:g}, atol {atol:g}): {exc}") from None
    return suites["forward"]


# --------------------------------------------------------------------------- LiteRT

def _tflite_tensor(detail: dict[str, Any]) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    q = dtype == "int8"
    return TensorSpec(str(detail["name"]), tuple(int(d) for d in detail["shape"]), dtype,
                      float(scale) if q else None, int(zero_point) if q else None)


def _tflite_io(data: bytes) -> tuple[TensorSpec, TensorSpec]:
    """Input / output TensorSpec (with int8 scale and zero point) as the runtime's interpreter reads them."""
    from edge_runtime.backends import interpreter_class  # the runtime's own LiteRT import and fallback
    it = interpreter_class("litert")(model_content=data)
    return _tflite_tensor(it.get_input_details()[0]), _tflite_tensor(it.get_output_details()[0])


def _tflite_bytes(edge_model: Any, out_dir: Path) -> bytes:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "export.tflite.tmp"
    try:
        with contextlib.redirect_stdout(sys.stderr):  # litert_torch's progress lines (see _litert_convert)
            edge_model.export(str(tmp))
        return tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)


def _litert_quant_config() -> Any:
    from litert_torch.quantize.quant_config import QuantConfig
    return QuantConfig(pt2e_quantizer=pt2e_quantizer("litert"))


def _litert_convert(model: nn.Module, example: tuple, **kwargs: Any) -> Any:
    """`litert_torch.convert`, its progress lines sent to stderr: stdout is where a job's result
    goes (the benchmarks' JSON, a table)."""
    import litert_torch

    with contextlib.redirect_stdout(sys.stderr):
        return litert_torch.convert(model, example, **kwargs)


def export_tflite(model: nn.Module, spec: ExportSpec, out_dir: str | Path, precision: str = "fp32",
                  calib: np.ndarray | None = None, provenance: dict[str, Any] | None = None,
                  compiler: Callable[[Path], dict[str, Any]] | None = None) -> Exported:
    """.tflite at batch 1 via litert-torch; int8 is full integer with int8 input and output.

    `model` may instead be an int8 reference made with `pt2e_quantizer("litert")` and
    `fold_quantize=False`, converted as it is. `provenance` adds to the manifest's. `compiler`, e.g.
    Vela (`distill.release.Embedded.ethos_u`), is run on OUT_DIR/model.tflite before the manifest
    is written; what it returns adds to the provenance, so the manifest is written once.

    int8: litert-torch's PT2EQuantizer (per-channel symmetric weights, int8 activations) calibrated
    on `calib`, `convert_pt2e(fold_quantize=False)` (the reference), then `litert_torch.convert`.
    The manifest's input / output TensorSpec carry the int8 scale and zero point read back from
    the model file; the runtime quantizes windows with them.
    """
    if precision == "int8" and _is_quantized(model):  # a convert_pt2e(fold_quantize=False) reference
        _check_model(model, spec)
        reference = model
        edge = _litert_convert(reference, spec.example(), quant_config=_litert_quant_config())
        prov = {"export": "PT2E int8 reference (given) + litert_torch.convert"}
    elif (calib := _check_precision(precision, calib, spec)) is None:
        m = prepare_model(model, spec)
        reference, edge = m, _litert_convert(m, spec.example())
        prov = {"export": "litert_torch.convert"}
    else:
        m = prepare_model(model, spec)
        reference = quantize_pt2e(m, spec, pt2e_quantizer("litert"), calib, fold_quantize=False)
        edge = _litert_convert(reference, spec.example(), quant_config=_litert_quant_config())
        prov = {"export": "PT2E litert-torch PT2EQuantizer per-channel symmetric + litert_torch.convert",
                **_calib_provenance(calib)}
    prov.update(provenance or {})
    data = _tflite_bytes(edge, Path(out_dir))
    inp, out = _tflite_io(data)
    if precision == "int8" and not (inp.quantized and out.quantized):
        raise ArtifactError(f"{Path(out_dir) / 'model.tflite'}: int8 export gave {inp.dtype} input and "
                            f"{out.dtype} output; expected int8 for both")
    if compiler is not None:
        model_file = Path(out_dir) / "model.tflite"  # where write_artifact puts it (same bytes)
        model_file.write_bytes(data)
        prov.update(compiler(model_file))
    path = _write(data, spec, out_dir, "litert", precision, inp, out, prov, _versions("litert-torch", "torchao"), model)
    return Exported(path, reference)


# --------------------------------------------------------------------------- ONNX

def export_onnx(model: nn.Module, spec: ExportSpec, out_dir: str | Path,
                provenance: dict[str, Any] | None = None) -> Exported:
    """fp32 .onnx, opset 17, TorchScript exporter (dynamo=False), dynamic batch ("x" -> "logits")."""
    m = prepare_model(model, spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "export.onnx.tmp"
    try:
        torch.onnx.export(m, spec.example(), str(tmp), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    inp, outp = TensorSpec("x", (-1, *spec.input_shape)), TensorSpec("logits", (-1, len(spec.labels)))
    path = _write(data, spec, out, "onnxruntime", "fp32", inp, outp,
                  {"export": "torch.onnx.export opset 17", **(provenance or {})},
                  _versions("onnx"), model)
    return Exported(path, m)
