"""Arm Ethos-U NPU: Vela compiles a bundle's int8 .tflite and estimates what it costs.

`vela_compile` runs Arm's Vela compiler on an int8 .tflite and reads what it estimates: the share
of operators on the NPU and the ones left on the CPU, SRAM and flash use, cycles and inference
time at the configured clock. Vela 5 compiles Ethos-U55/U65 with its "regor" core: an operator
type the NPU never runs (anything float, for one) is passed through to the CPU, but an int8
operator of a supported type that breaks a constraint (e.g. a stride-4 CONV_2D with SAME padding
on a U55) fails the whole compile, which `vela_compile` reports as ArtifactError naming the
operator and Vela's reason. Vela's time and cycle figures cover the NPU part only: operators left
on the CPU are not in them. Torch-free: Vela (`ethos-u-vela`) is a program of its own.
"""
from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from edge_runtime.errors import ArtifactError, ConfigError, missing_extra

ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u65-512",
                "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024", "ethos-u85-2048")
VELA_TIMEOUT_S = 300


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
    raise missing_extra("Vela (ethos-u55/u65 bundles)", "ethosu", "export")


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
