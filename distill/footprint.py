"""Peak memory of one model in a fresh process: `python -m distill.footprint KIND PATH [--backend B]`.

The child imports the runtime first (numpy, torch or the inference runtime, the ecg-edge module
that opens the model), resets the kernel's peak-RSS counter (`/proc/self/clear_refs`, Linux), then
loads the model and runs one window. It prints one JSON line: the resident set after the imports
("baseline_rss_bytes"), the peak during load + one inference ("peak_rss_bytes") and their
difference ("delta_bytes"): what the model costs a process that already has its runtime.

KIND: "teacher" (a pretraining checkpoint: its encoder on all its leads, in PyTorch), "student"
(a distillation checkpoint, in PyTorch) or "artifact" (a manifest; `--backend` as in
`edge_runtime.backends.open_backend`).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge_runtime.errors import ConfigError

WHAT = ("peak resident memory growth of a fresh process while it loads the model and runs one window, "
        "after importing its runtime (Linux VmHWM after clear_refs)")


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _probe(kind: str, path: str, backend: str | None) -> dict[str, Any]:
    import numpy as np

    if kind in ("teacher", "student"):
        import torch

        torch.set_num_threads(1)
        from train.engine import load_checkpoint
        if kind == "student":
            from distill.distill import load_student
        else:
            from train.pretrain import load_teacher
    elif kind == "artifact":
        from edge_runtime.artifact import load_artifact
        from edge_runtime.backends import BACKENDS, interpreter_class, open_backend

        name = backend or load_artifact(path).manifest.runtime
        if name in BACKENDS and BACKENDS.entry(name).runtime == "litert" and name != "tflite_micro":
            interpreter_class(name)
        runtime_modules = {"tflite_micro": ("tflite_micro.python.tflite_micro.runtime",),
                           "executorch": ("torch", "executorch.extension.pybindings.portable_lib", "executorch.runtime"),
                           "onnxruntime": ("onnxruntime",)}
        for module in runtime_modules.get(name, ()):
            importlib.import_module(module)
    else:
        raise ConfigError(f"footprint: kind {kind!r}; expected teacher, student or artifact")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    base = _status()["VmRSS"]
    if kind == "artifact":
        b = open_backend(path, backend=backend, threads=1)
        b.run(np.zeros((1, *b.input_shape), np.float32))
    elif kind == "student":
        model, meta = load_student(path)
        with torch.inference_mode():
            model(torch.zeros(1, 1, 1, model.window))
    else:
        objective, meta = load_teacher(load_checkpoint(path))
        enc = objective.encoder.eval()
        window = int(meta["spec"]["window_s"] * meta["spec"]["fs"])
        with torch.inference_mode():
            enc(torch.zeros(1, len(enc.leads), window))
    peak = _status()["VmHWM"]
    return {"baseline_rss_bytes": base, "peak_rss_bytes": peak, "delta_bytes": peak - base}


def measure(kind: str, path: str | Path, backend: str | None = None, timeout: float = 300.0) -> dict[str, Any]:
    """Run the probe in a fresh interpreter; {"delta_bytes", "peak_rss_bytes", "baseline_rss_bytes", "what"}
    or {"delta_bytes": None, "reason"} where it cannot be measured (not Linux, or the probe failed)."""
    if not Path("/proc/self/clear_refs").exists():
        return {"delta_bytes": None, "reason": "needs Linux /proc (VmHWM, clear_refs)", "what": WHAT}
    cmd = [sys.executable, "-m", "distill.footprint", kind, str(path)] + (["--backend", backend] if backend else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                       cwd=str(Path(__file__).resolve().parents[1]))
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"delta_bytes": None, "reason": f"probe failed: {tail}", "what": WHAT}
    return json.loads(lines[-1]) | {"what": WHAT}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distill.footprint", description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=("teacher", "student", "artifact"))
    p.add_argument("path")
    p.add_argument("--backend")
    args = p.parse_args(argv)
    print(json.dumps(_probe(args.kind, args.path, args.backend)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
