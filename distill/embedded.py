"""Embedded targets: the Arm Ethos-U NPU (Vela) and Cortex-M CPUs (ExecuTorch + CMSIS-NN).

`vela_compile` runs Arm's Vela compiler on an int8 .tflite and reads what it estimates: the share
of operators on the NPU and the ones left on the CPU, SRAM and flash use, cycles and inference
time at the configured clock. Vela 5 compiles Ethos-U55/U65 with its "regor" core: an operator
type the NPU never runs (anything float, for one) is passed through to the CPU, but an int8
operator of a supported type that breaks a constraint (e.g. a stride-4 CONV_2D with SAME padding
on a U55) fails the whole compile, which `vela_compile` reports as ArtifactError naming the
operator and Vela's reason. Vela's time and cycle figures cover the NPU part only: operators left
on the CPU are not in them.

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
import csv
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from edge_runtime.errors import ArtifactError, ConfigError, MissingExtraError

#: Accelerator configurations Vela 5.2 accepts (`vela --help`).
ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u65-512",
                "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024", "ethos-u85-2048")
VELA_TIMEOUT_S = 300
#: Cortex-M CPUs ExecuTorch's CortexMTargetConfig knows (cortex-m55 and cortex-m85 get the MVE kernels).
CORTEX_M_CPUS = ("cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m23", "cortex-m33",
                 "cortex-m35p", "cortex-m55", "cortex-m85")


# --------------------------------------------------------------------------- Ethos-U (Vela)

def _vela_command() -> list[str]:
    """The venv's `vela` console script next to sys.executable, else one on PATH, else `python -m ethosu.vela`."""
    beside = Path(sys.executable).parent / "vela"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("vela")
    if found:
        return [found]
    if importlib.util.find_spec("ethosu") is not None:
        return [sys.executable, "-m", "ethosu.vela"]
    raise MissingExtraError("Vela is not installed (pip install 'ecg-edge[export]', package ethos-u-vela)")


def vela_compile(tflite_path: str | Path, out_dir: str | Path, accelerator: str = "ethos-u55-128",
                 system_config: str | None = None, memory_mode: str | None = None,
                 extra_args: Sequence[str] = ()) -> dict[str, Any]:
    """Compile an int8 .tflite with Vela and return its estimates.

    system_config / memory_mode name entries of Vela's default `vela.ini` (e.g.
    "Ethos_U55_High_End_Embedded", "Shared_Sram"); None lets Vela pick its default for the
    accelerator. `extra_args` go to Vela unchanged. Returns a dict: accelerator, system_config,
    memory_mode, clock_hz, npu_ops, cpu_ops, npu_op_share (0..1), cpu_fallback (list of {"op",
    "name", "reason"}), sram_kib, dram_kib, on_chip_flash_kib, off_chip_flash_kib, cycles_total,
    cycles_npu, macs, inference_time_s and inferences_per_second (NPU part, at clock_hz),
    compiled_model (path of the *_vela.tflite), summary_csv. Raises ArtifactError naming the file
    when Vela is refused the model or fails, ConfigError for an unknown accelerator.
    """
    src = Path(tflite_path)
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"accelerator: expected one of {ACCELERATORS}, got {accelerator!r}")
    if not src.is_file():
        raise ArtifactError(f"{src}: .tflite not found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [*_vela_command(), str(src), "--accelerator-config", accelerator, "--output-dir", str(out)]
    if system_config is not None:
        cmd += ["--system-config", system_config]
    if memory_mode is not None:
        cmd += ["--memory-mode", memory_mode]
    cmd += [str(a) for a in extra_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=VELA_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{src}: Vela ({accelerator}) did not finish in {VELA_TIMEOUT_S} s") from None
    log = proc.stdout + "\n" + proc.stderr
    fallback = _cpu_fallback(log)
    if proc.returncode != 0:
        raise ArtifactError(f"{src}: Vela ({accelerator}) failed: {_failure(log, fallback)}")
    counts = {kind: int(n) for kind, n in re.findall(r"^(CPU|NPU) operators = (\d+)", log, re.M)}
    if set(counts) != {"CPU", "NPU"}:
        raise ArtifactError(f"{src}: Vela ({accelerator}) printed no operator summary: {_last_line(log)}")
    compiled = out / f"{src.stem}_vela.tflite"
    csvs = sorted(out.glob(f"{src.stem}_summary_*.csv"), key=lambda p: p.stat().st_mtime)
    if not compiled.is_file() or not csvs:
        raise ArtifactError(f"{src}: Vela ({accelerator}) wrote no {compiled.name} or summary CSV into {out}")
    row = _summary_row(csvs[-1])
    total = counts["CPU"] + counts["NPU"]
    return {
        "accelerator": accelerator, "system_config": row["system_config"], "memory_mode": row["memory_mode"],
        "clock_hz": _num(row, "core_clock"), "npu_ops": counts["NPU"], "cpu_ops": counts["CPU"],
        "npu_op_share": counts["NPU"] / total if total else 0.0, "cpu_fallback": fallback,
        "sram_kib": _num(row, "sram_memory_used"), "dram_kib": _num(row, "dram_memory_used"),
        "on_chip_flash_kib": _num(row, "on_chip_flash_memory_used"),
        "off_chip_flash_kib": _num(row, "off_chip_flash_memory_used"),
        "cycles_total": _num(row, "cycles_total"), "cycles_npu": _num(row, "cycles_npu"), "macs": _num(row, "nn_macs"),
        "inference_time_s": _num(row, "inference_time"), "inferences_per_second": _num(row, "inferences_per_second"),
        "compiled_model": compiled, "summary_csv": csvs[-1],
    }


def _cpu_fallback(log: str) -> list[dict[str, str]]:
    """Operators Vela leaves on the CPU, from its warnings (regor's and the legacy core's wording)."""
    found: list[dict[str, str]] = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"Warning \(supported operators\) operator: (\w+), ofm: '(.*)'$", line)
        if m:
            reason = lines[i + 1][len("Reason: "):] if i + 1 < len(lines) and lines[i + 1].startswith("Reason: ") else ""
            found.append({"op": m.group(1), "name": m.group(2), "reason": reason.strip()})
            continue
        m = re.match(r"Warning: (\w+) '(.*)' is not supported on the NPU", line)
        if m:
            reason = lines[i + 1].strip(" -") if i + 1 < len(lines) else ""
            found.append({"op": m.group(1), "name": m.group(2), "reason": reason})
    return found


def _failure(log: str, fallback: list[dict[str, str]]) -> str:
    last = _last_line(log)
    if fallback:
        worst = fallback[-1]  # regor stops at the operator it could not place
        return f"{last}; {worst['op']} {worst['name']!r}: {worst['reason']}"
    return last


def _last_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _summary_row(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ArtifactError(f"{path}: Vela summary CSV has no rows")
    return rows[-1]


def _num(row: dict[str, str], key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, ValueError):
        raise ArtifactError(f"Vela summary CSV: column {key!r} missing or not a number ({row.get(key)!r})") from None


# --------------------------------------------------------------------------- Cortex-M (CMSIS-NN)

def _cortex_m() -> None:
    """The Cortex-M backend imports executorch.backends.arm, which imports tosa_serializer at load."""
    if importlib.util.find_spec("executorch") is None:
        raise MissingExtraError("executorch is not installed: pip install 'ecg-edge[export]'")
    if importlib.util.find_spec("tosa_serializer") is None:
        raise MissingExtraError("executorch.backends.cortex_m needs tosa_serializer: pip install tosa-tools==2026.5.0 "
                                "(executorch 1.5.1's ethos-u extra pins that version)")


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
