"""Cortex-M CPUs: ExecuTorch + CMSIS-NN (Vela for the Ethos-U NPU is `firmware_bridge.bundle.vela`).

`cortex_m_lower` quantizes a student with ExecuTorch's `CortexMQuantizer` on real windows and
lowers it with the Cortex-M pass manager to CMSIS-NN operators (no delegate: the operators are
rewritten in place), with int8 input and output by default, then reports every operator of the
lowered program and any that still touches a floating-point tensor. It follows Arm's own
`executorch/backends/arm/scripts/aot_arm_compiler.py` (Cortex-M path): channels-last model and
inputs, `prepare_pt2e` / `convert_pt2e`, `to_edge_transform_and_lower` with
`cortex_m_edge_compile_config()`, then `CortexMPassManager`. The CMSIS-NN kernels themselves run
only on a board or Arm's simulator; on the host the lowered program is checked with the operators'
Python reference implementations against the `convert_pt2e` module.
"""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from edge_runtime.errors import ConfigError, missing_extra

#: Cortex-M CPUs ExecuTorch's CortexMTargetConfig knows (cortex-m55 and cortex-m85 get the MVE kernels).
CORTEX_M_CPUS = ("cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m23", "cortex-m33",
                 "cortex-m35p", "cortex-m55", "cortex-m85")


# --------------------------------------------------------------------------- Cortex-M (CMSIS-NN)

def _cortex_m() -> None:
    """The Cortex-M backend imports executorch.backends.arm, which imports tosa_serializer at load."""
    if importlib.util.find_spec("executorch") is None:
        raise missing_extra("ExecuTorch's Cortex-M lowering", "executorch", "export")
    if importlib.util.find_spec("tosa_serializer") is None:
        raise missing_extra("executorch.backends.cortex_m (executorch 1.5.1 pins tosa-tools 2026.5.0)",
                            "tosa_serializer", "export")


def _dense(x: Any) -> torch.Tensor:
    """A fresh float32 tensor with ordinary strides: ExecuTorch refuses a 0 stride, which numpy views
    made with `[:, :, None, :]` carry on their size-1 axis."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return torch.empty(t.shape, dtype=torch.float32).copy_(t)


def _is_quantized(module: nn.Module) -> bool:
    graph = getattr(module, "graph", None)
    return graph is not None and any("quantize_per" in str(n.target) for n in graph.nodes if n.op == "call_function")


def _quantize(model: nn.Module, example: torch.Tensor, calib: torch.Tensor) -> torch.fx.GraphModule:
    """CortexMQuantizer PT2E on a channels-last batch-1 export, calibrated window by window."""
    from executorch.backends.cortex_m.quantizer.quantizer import CortexMQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from distill.brevitas_qat import fold_batchnorm
    cl = torch.channels_last
    m = fold_batchnorm(model).to(memory_format=cl)
    # check_guards=False: calibration windows are other tensors than the example (FACTS.md).
    graph = torch.export.export(m, (example.to(memory_format=cl),)).module(check_guards=False)
    prepared = prepare_pt2e(graph, CortexMQuantizer())
    with torch.no_grad():
        for i in range(len(calib)):  # the graph is specialised to a batch of 1
            prepared(calib[i:i + 1].to(memory_format=cl))
    return convert_pt2e(prepared)


def cortex_m_lower(model_or_reference: nn.Module, example: Any, calib: Any, *, cpu: str = "cortex-m55",
                   int8_io: bool = True, out: str | Path | None = None, n_check: int = 16) -> dict[str, Any]:
    """Lower a student for Cortex-M (CMSIS-NN) and report whether anything is left in floating point.

    model_or_reference: a float student (quantized here with `CortexMQuantizer` on `calib`, real
    preprocessed windows (n, C, 1, T)) or an already converted PT2E module (lowered as it is).
    example: one (1, C, 1, T) window. int8_io strips the input quantize and output dequantize, so
    the program takes and returns int8 (their scale / zero point under "io"); with False they stay
    as the float boundary ops. `out` writes the .pte there.

    Returns {"pte_bytes": int, "operators": {name: count}, "float_ops": [names of operators with a
    float input or output], "all_int8": bool, "portable_ops": [operators that are not CMSIS-NN
    kernels, e.g. an int8 view or layout copy run by ExecuTorch's portable kernels],
    "scratch_buffers": CMSIS-NN scratch allocations, "io": {"input": {...}, "output": {...}} or None,
    "max_abs_diff": lowered program vs the `convert_pt2e` reference on the first `n_check` calib
    windows (float units), "output_step": the output scale, "reference": the `convert_pt2e` module,
    "path": the .pte written or None}.
    """
    if cpu not in CORTEX_M_CPUS:
        raise ConfigError(f"cpu: expected one of {CORTEX_M_CPUS}, got {cpu!r}")
    _cortex_m()
    from executorch.backends.cortex_m.edge_compile_config import cortex_m_edge_compile_config
    from executorch.backends.cortex_m.passes.cortex_m_pass_manager import CortexMPassManager
    from executorch.backends.cortex_m.target_config import CortexMTargetConfig
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.passes.quantize_io_pass import QuantizeInputs, QuantizeOutputs

    ex, windows = _dense(example)[:1], _dense(calib)
    if ex.ndim != 4 or windows.ndim != 4 or windows.shape[1:] != ex.shape[1:] or not len(windows):
        raise ConfigError(f"calib: expected windows (n, {', '.join(map(str, ex.shape[1:]))}) like the example, "
                          f"got {tuple(windows.shape)}")
    model = copy.deepcopy(model_or_reference).eval()
    reference = model if _is_quantized(model) else _quantize(model, ex, windows)
    program = torch.export.export(reference, (ex.to(memory_format=torch.channels_last),))
    edge = to_edge_transform_and_lower(program, compile_config=cortex_m_edge_compile_config())
    io = None
    if int8_io:
        q_in, q_out = QuantizeInputs(edge, [0]), QuantizeOutputs(edge, [0])
        edge = edge.transform([q_in, q_out])
        io = {"input": _qparams(q_in.quant_args[0]), "output": _qparams(q_out.dequant_args[0])}
    manager = CortexMPassManager(edge.exported_program(), target_config=CortexMTargetConfig.from_target_string(cpu))
    # As aot_arm_compiler.py does: the pass manager returns a new program for the "forward" method.
    edge._edge_programs["forward"] = manager.transform()
    lowered = edge.exported_program()
    operators, float_ops, scratch = _census(lowered.graph)
    diff, step = _check(lowered.module(), reference, windows[:n_check], io)
    data = edge.to_executorch().buffer
    path = None
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {"pte_bytes": len(data), "operators": operators, "float_ops": float_ops, "all_int8": not float_ops,
            "portable_ops": sorted(n for n in operators if not n.startswith("cortex_m.")), "scratch_buffers": scratch,
            "io": io, "max_abs_diff": diff, "output_step": step, "reference": reference, "path": path}


def _qparams(args: Sequence[Any]) -> dict[str, Any]:
    scale, zero_point, qmin, qmax, dtype = args[:5]
    return {"scale": float(scale), "zero_point": int(zero_point), "quant_min": int(qmin), "quant_max": int(qmax),
            "dtype": str(dtype).replace("torch.", "")}


def _census(graph: torch.fx.Graph) -> tuple[dict[str, int], list[str], int]:
    """Operator name -> count, the operators with a floating-point input or output tensor, and the
    number of scratch buffers (`executorch.exir.memory.alloc` nodes: memory, not operators)."""
    operators: dict[str, int] = {}
    float_ops: list[str] = []
    scratch = 0
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        if getattr(node.target, "__module__", "") == "executorch.exir.memory":
            scratch += 1
            continue
        name = str(getattr(node.target, "__name__", None) or node.target)
        operators[name] = operators.get(name, 0) + 1
        vals = [a.meta.get("val") for a in node.all_input_nodes] + [node.meta.get("val")]
        if any(isinstance(v, torch.Tensor) and v.dtype.is_floating_point for v in vals) and name not in float_ops:
            float_ops.append(name)
    return operators, float_ops, scratch


@torch.no_grad()
def _check(lowered: nn.Module, reference: nn.Module, windows: torch.Tensor,
           io: dict[str, Any] | None) -> tuple[float, float | None]:
    """Max |lowered - reference| over `windows`, running the CMSIS-NN dialect operators' Python
    reference implementations on the host, and the output quantization step."""
    diffs = []
    for i in range(len(windows)):
        x = windows[i:i + 1].to(memory_format=torch.channels_last)
        want = reference(x)
        if io is not None:
            qi, qo = io["input"], io["output"]
            xq = torch.clamp(torch.round(x / qi["scale"]) + qi["zero_point"], qi["quant_min"], qi["quant_max"])
            got = (lowered(xq.to(torch.int8)).float() - qo["zero_point"]) * qo["scale"]
        else:
            got = lowered(x)
        diffs.append(float((got - want).abs().max()))
    step = io["output"]["scale"] if io is not None else None
    return max(diffs) if diffs else float("nan"), step
