"""Brevitas quantization-aware training of a float student, and its int8 QCDQ ONNX export.

`to_brevitas` turns a trained float student (the students' layer set: Conv2d with (1, k) kernels,
BatchNorm2d, ReLU, small AvgPool2d, Flatten, Dropout, Linear) into a Brevitas copy with the same
weights: the first convolution quantizes the float input to int8 itself, per-channel int8
weights, int32 biases at the accumulator's scale, and uint8 / int8 per-tensor activations whose
scales are calibrated on real windows and then learned during `qat_finetune`. BatchNorm is folded into the convolutions first.
An average pool becomes a float AvgPool2d followed by a requantizing QuantIdentity: exported as
DequantizeLinear -> AveragePool -> QuantizeLinear, which ONNX Runtime runs (and fuses) exactly as
Brevitas computes it. Brevitas's TruncAvgPool2d replaces the division by a rounding shift that the
exported graph does not reproduce (3.7e-3 off on the test model), so it is not used.

Brevitas modules cannot be captured by `torch.export` (FACTS.md), so the QAT result leaves through
ONNX only: `export_qcdq_onnx` writes QuantizeLinear/DequantizeLinear ("QCDQ") ONNX with Brevitas's
TorchScript exporter (which needs the `onnxoptimizer` package), and `onnx_parity` checks ONNX Runtime
against the Brevitas module, deciding as the artifact does (`edge_runtime.backends.decide`). The .pte
and .tflite int8 paths use PT2E instead (`distill.export`).

`qat_finetune` is a plain loop, not `train.engine`: a few epochs on one process need neither the
engine's torch.export-based checkpoints nor DDP, and Brevitas's quantizer state (running
activation statistics, learned scales) is not something those features would handle.
"""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edge_runtime.errors import ArtifactError, ConfigError, missing_extra, require

#: Leaf layers `to_brevitas` accepts; BatchNorm2d must directly follow a Conv2d in an nn.Sequential.
SUPPORTED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Linear, nn.Identity)
#: ONNX opset of the QCDQ export (per-channel DequantizeLinear needs >= 13).
OPSET = 13


def _brevitas() -> Any:
    return require("brevitas.nn", "export", "Brevitas QAT")


# --------------------------------------------------------------------------- BatchNorm folding

def fold_batchnorm(model: nn.Module) -> nn.Module:
    """`train.models.student.fuse_batchnorm` (a deep copy in eval mode, each Conv2d -> BatchNorm2d
    pair in an nn.Sequential folded), refusing a BatchNorm2d it could not fold: quantizers must see
    the tensors the device computes."""
    from train.models.student import fuse_batchnorm

    m = fuse_batchnorm(model)
    for name, mod in m.named_modules():
        if isinstance(mod, nn.BatchNorm2d):
            raise ConfigError(f"{name}: BatchNorm2d not directly after a Conv2d in an nn.Sequential; "
                              "cannot fold it for quantization")
    return m


# --------------------------------------------------------------------------- float -> Brevitas

class _RequantAvgPool2d(nn.Module):
    """Float average pool, then requantization to the activation bit width (see module docstring)."""

    def __init__(self, pool: nn.AvgPool2d, requant: nn.Module) -> None:
        super().__init__()
        self.pool, self.requant = pool, requant

    def forward(self, x: Any) -> Any:
        return self.requant(self.pool(x))


def _value(y: Any) -> Tensor:
    """The float tensor of a model output (a Brevitas QuantTensor carries it as `.value`)."""
    return y if isinstance(y, Tensor) else y.value


def _act(qnn: Any, signed: bool, bits: int) -> nn.Module:
    from brevitas.quant import Int8ActPerTensorFloat, Uint8ActPerTensorFloat
    quant = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat
    return qnn.QuantIdentity(act_quant=quant, bit_width=bits, return_quant_tensor=True)


class _Walk:
    """What reaches the next layer, in module registration order: "float" (a plain tensor: the
    model input, or a conv / linear output), "int" or "uint" (a signed / unsigned QuantTensor)."""

    def __init__(self, qnn: Any, wbits: int, abits: int) -> None:
        self.qnn, self.wbits, self.abits, self.state = qnn, wbits, abits, "float"

    def convert(self, mod: nn.Module, where: str) -> nn.Module:
        from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int32Bias, Uint8ActPerTensorFloat
        qnn, kind = self.qnn, type(mod)
        if kind in (nn.Conv2d, nn.Linear):
            kw: dict[str, Any] = dict(weight_quant=Int8WeightPerChannelFloat, weight_bit_width=self.wbits,
                                      bias_quant=Int32Bias)
            if self.state == "float":  # Int32Bias needs a quantized input: quantize it here (int8)
                kw.update(input_quant=Int8ActPerTensorFloat, input_bit_width=self.abits)
            self.state = "float"
            if kind is nn.Conv2d:
                q = qnn.QuantConv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                                    mod.dilation, mod.groups, bias=mod.bias is not None,
                                    padding_mode=mod.padding_mode, **kw)
            else:
                q = qnn.QuantLinear(mod.in_features, mod.out_features, bias=mod.bias is not None, **kw)
            with torch.no_grad():
                q.weight.copy_(mod.weight)
                if mod.bias is not None:
                    q.bias.copy_(mod.bias)
            return q
        if kind is nn.ReLU:
            self.state = "uint"
            return qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=self.abits, return_quant_tensor=True)
        if kind is nn.AvgPool2d:
            self.state = "uint" if self.state == "uint" else "int"
            return _RequantAvgPool2d(copy.deepcopy(mod), _act(qnn, signed=self.state == "int", bits=self.abits))
        if kind in (nn.Flatten, nn.Dropout, nn.Identity):
            return copy.deepcopy(mod)  # a QuantTensor passes through these unchanged
        allowed = ", ".join(t.__name__ for t in SUPPORTED)
        raise ConfigError(f"{where}: layer {kind.__name__} is not supported for Brevitas QAT; expected only {allowed}")

    def children(self, module: nn.Module, prefix: str) -> None:
        for name, child in list(module.named_children()):
            where = f"{prefix}.{name}" if prefix else name
            if len(child._modules):
                if any(True for _ in child.parameters(recurse=False)):
                    raise ConfigError(f"{where}: {type(child).__name__} holds its own parameters; only standard "
                                      "layers can be quantized")
                self.children(child, where)
            else:
                setattr(module, name, self.convert(child, where))


def to_brevitas(model: nn.Module, weight_bit_width: int = 8, act_bit_width: int = 8, *,
                calib: np.ndarray | None = None) -> nn.Module:
    """A Brevitas QAT copy of a float student, starting from its trained weights.

    Layers are replaced where they sit, so the copy keeps the student's class, attributes and
    `forward` (e.g. `head(flatten(features(x)))`); between layers flow Brevitas QuantTensors, so
    that forward may use only shape functions QuantTensor supports (flatten, reshape). The model
    input stays a float tensor: the first Conv2d / Linear quantizes it (int8) itself. Layers are
    walked in registration order, which must be the order they run in (as in nn.Sequential).
    `calib`, real preprocessed windows (n, C, 1, T), initialises the activation scales
    (`calibrate`); without it they are initialised from the first training batches of QAT.
    Unsupported layers raise ConfigError naming the layer; a missing brevitas, MissingExtraError.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for name, bits in (("weight_bit_width", weight_bit_width), ("act_bit_width", act_bit_width)):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
            raise ConfigError(f"{name}: expected an integer in 2..8, got {bits!r}")
    qnn = _brevitas()
    qmodel = fold_batchnorm(model)
    if not len(qmodel._modules):
        qmodel = nn.Sequential(qmodel)  # a bare layer: convert it as the only child
    _Walk(qnn, weight_bit_width, act_bit_width).children(qmodel, "")
    qmodel.eval()
    if calib is not None:
        calibrate(qmodel, calib)
    return qmodel


def _tensor(x: Any, where: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, Tensor) else x.float()
    if t.ndim != 4 or t.shape[2] != 1 or len(t) < 1:
        raise ConfigError(f"{where}: expected windows (n, C, 1, T), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ConfigError(f"{where}: expected finite values, got NaN or inf")
    return t


@torch.no_grad()
def calibrate(qmodel: nn.Module, windows: np.ndarray, batch_size: int = 64) -> nn.Module:
    """Set every activation scale from statistics over `windows` (Brevitas `calibration_mode`).

    Not an inference pass (so not `train.engine.predict`): calibration mode puts the activation
    quantizers in training mode to collect statistics, and predict's `eval()` would switch that off."""
    from brevitas.graph.calibrate import calibration_mode
    x = _tensor(windows, "calib")
    qmodel.eval()
    with calibration_mode(qmodel):
        for i in range(0, len(x), batch_size):
            qmodel(x[i:i + batch_size])
    return qmodel.eval()


# --------------------------------------------------------------------------- QAT

def qat_finetune(qmodel: nn.Module, windows: np.ndarray, targets: np.ndarray, *, multilabel: bool, epochs: int = 3,
                 lr: float = 1e-4, batch_size: int = 64, seed: int = 0, teacher_logits: np.ndarray | None = None,
                 temperature: float = 2.0, alpha: float = 0.5) -> nn.Module:
    """A short, seeded fine-tune of a `to_brevitas` model with fake quantization in the loop.

    targets: (n, K) multi-hot for `multilabel` (BCE), else (n,) class indices or (n, K) one-hot
    (cross-entropy). teacher_logits (n, K) add logit distillation at `temperature`
    (`distill.distill.kd_loss`): loss = (1 - alpha) * label loss + alpha * KD. Deterministic for a
    given seed on one thread. Returns the model in eval mode.
    """
    from distill.distill import finetune
    x = _tensor(windows, "windows")
    y = torch.as_tensor(np.asarray(targets))
    if len(y) != len(x):
        raise ConfigError(f"targets: expected {len(x)} rows (one per window), got {len(y)}")
    with torch.no_grad():
        n_out = _value(qmodel.eval()(x[:1])).shape[1]
    y = _targets(y, n_out, multilabel)
    t = None
    if teacher_logits is not None:
        t = torch.as_tensor(np.asarray(teacher_logits, dtype=np.float32))
        if tuple(t.shape) != (len(x), n_out):
            raise ConfigError(f"teacher_logits: expected shape ({len(x)}, {n_out}), got {tuple(t.shape)}")
    if not 0.0 <= alpha <= 1.0 or not temperature > 0 or epochs < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(f"qat_finetune: expected 0 <= alpha <= 1, temperature > 0, epochs, batch_size >= 1 "
                          f"and lr > 0; got alpha={alpha}, temperature={temperature}, epochs={epochs}, "
                          f"batch_size={batch_size}, lr={lr}")
    torch.manual_seed(seed)
    qmodel.train()
    finetune(qmodel, lambda b: _value(qmodel(b)), x, y, multilabel=multilabel, epochs=epochs, lr=lr,
             batch_size=batch_size, seed=seed, teacher_logits=t, temperature=temperature, alpha=alpha,
             where="qat_finetune")
    return qmodel.eval()


def _targets(y: Tensor, k: int, multilabel: bool) -> Tensor:
    """(n, K) float targets as `distill.distill.label_loss` takes them."""
    if y.ndim == 1 and not multilabel:
        if y.dtype.is_floating_point or int(y.min()) < 0 or int(y.max()) >= k:
            raise ConfigError(f"targets: expected class indices in 0..{k - 1}")
        return nn.functional.one_hot(y.long(), k).float()
    if y.ndim != 2 or y.shape[1] != k:
        raise ConfigError(f"targets: expected (n, {k}) {'multi-hot' if multilabel else 'one-hot'} rows"
                          f"{'' if multilabel else ' or (n,) class indices'}, got shape {tuple(y.shape)}")
    return y.float()


# --------------------------------------------------------------------------- QCDQ ONNX

def export_qcdq_onnx(qmodel: nn.Module, example: Tensor | np.ndarray, path: str | Path) -> Path:
    """Write `qmodel` as QCDQ ONNX (opset 13) to `path`, input "x" and output "logits" with a free batch.

    `example` is one (1, C, 1, T) window. Calibrate (or fine-tune) the model first: the exported
    scales are the ones it holds. Export failures raise ArtifactError naming the file.
    """
    if importlib.util.find_spec("onnxoptimizer") is None:
        raise missing_extra("Brevitas's ONNX export", "onnxoptimizer", "export")
    from brevitas.export import export_onnx_qcdq
    x = _tensor(example, "example")[:1].contiguous()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    qmodel.eval()
    try:
        export_onnx_qcdq(qmodel, args=x, export_path=str(out), dynamo=False, opset_version=OPSET,
                         input_names=["x"], output_names=["logits"],
                         dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{out}: QCDQ ONNX export failed: {str(exc).splitlines()[0]}") from None
    return out


def onnx_parity(path: str | Path, qmodel: nn.Module, windows: np.ndarray, *, multilabel: bool | None = None,
                thresholds: tuple[float, ...] | None = None, tol: float = 1e-5, batch_size: int = 256) -> dict[str, Any]:
    """ONNX Runtime against the Brevitas module on `windows`.

    `path`: the .onnx, or an artifact (its manifest.json or folder), whose head (`multilabel`) and
    `thresholds` are then used unless given. Returns {"max_abs_diff", "frac_within_tol" (windows
    whose logits all agree to `tol`), "decision_agreement" (windows on which every label's decision,
    `edge_runtime.backends.decide` at `thresholds` (None: 0.5 each), is the same), "n", "onnx_ops"
    (op type -> count), "qdq_nodes" (QuantizeLinear + DequantizeLinear count)}.

    Both sides compute each layer in float between quantizers, in a different summation order, so
    a pre-activation that lands within float noise of a rounding boundary can round one step apart
    at the next QuantizeLinear: then that window differs by about one quantization step (seen: 1
    window in 100 after QAT, 0.017 on the logits), all others to ~1e-6.
    """
    import onnx
    import onnxruntime as ort

    from edge_runtime.backends import decide, probabilities, qdq_session_options
    from train.engine import predict
    p = Path(path)
    if p.is_dir() or p.suffix == ".json":
        from edge_runtime.artifact import load_artifact
        art = load_artifact(p)
        p, multilabel = art.model_path, art.manifest.multilabel if multilabel is None else multilabel
        thresholds = art.manifest.thresholds if thresholds is None else thresholds
    multilabel = bool(multilabel)
    try:
        graph = onnx.load(str(p)).graph
        sess = ort.InferenceSession(str(p), sess_options=qdq_session_options(ort), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnx / onnxruntime raise their own types for unreadable models
        raise ArtifactError(f"{p}: cannot load the ONNX model ({str(exc).splitlines()[0]})") from None
    x = _tensor(windows, "windows").detach().numpy()
    name = sess.get_inputs()[0].name
    a = np.concatenate([sess.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)])
    b = predict(qmodel, x, batch_size=batch_size, forward=lambda t: _value(qmodel(t)))
    ops: dict[str, int] = {}
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    agree = (decide(probabilities(a, multilabel), thresholds, multilabel)
             == decide(probabilities(b, multilabel), thresholds, multilabel)).all(axis=1)
    diff = np.abs(a - b).max(axis=1)
    return {"max_abs_diff": float(diff.max()), "frac_within_tol": float((diff <= tol).mean()),
            "decision_agreement": float(agree.mean()),
            "n": int(len(x)), "onnx_ops": ops, "qdq_nodes": ops.get("QuantizeLinear", 0) + ops.get("DequantizeLinear", 0)}
