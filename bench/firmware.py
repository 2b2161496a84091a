"""Benchmark the firmware of TFLite Micro bundles on the emulated Cortex-M55; prints one JSON object.

    python bench/firmware.py [--export DIR] [--targets cortex-m55 tflm] [--cold] [--out FILE]

DIR is an `ecg-edge export` folder (tflite-int8/ and golden.npy). Without it the benchmark makes
its own: student_s (the registry's) trained for 30 Adam steps on seeded synthetic lead-I windows
through the signal contract, exported int8 with `distill.export.export_tflite`, so it runs on a
fresh clone. For each target the bundle is packaged (which builds the firmware for the Cortex-M55
and the host and runs both) and then verified with `--on qemu`; reported per target: model bytes,
library flash bytes (TFLite Micro + CMSIS-NN, registered operators only), total flash, RAM (arena
given and used, .data + .bss, stack high-water mark, heap), instructions per inference (QEMU's
instruction clock: instructions, not cycles), build seconds per architecture (0 when the image came
from the cache), golden windows compared and how many equal the host build bit for bit. `--cold`
builds into an empty cache folder (a temporary ECG_EDGE_CACHE) to measure the from-scratch build.
Needs the `export` extra, the Arm toolchain and QEMU (apt-get install gcc-arm-none-eabi
libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import emit  # noqa: E402  (bench/report.py, beside this script)

TARGETS = ("cortex-m55", "tflm")


def own_export(out: Path, seed: int = 0) -> Path:
    """student_s trained briefly on seeded synthetic windows, exported as tflite-int8 + golden.npy."""
    import numpy as np
    import torch

    from distill.export import ExportSpec, export_tflite
    from edge_runtime.signal import PreprocessConfig
    from train.data.synthetic import CONDITIONS, condition_windows
    from train.models import create_model

    fs, leads, cfg = 500.0, ("I",), PreprocessConfig()
    x, y = condition_windows(24, seed, fs=fs, leads=leads, preprocess=cfg)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = create_model("student_s", leads=leads, n_classes=len(CONDITIONS), window=cfg.window)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for step in range(30):
        idx = torch.arange(step * 16, step * 16 + 32) % len(xt)
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    spec = ExportSpec(cfg, leads, CONDITIONS, fs_device=fs,
                      provenance={"model": "student_s, 30 steps on synthetic windows (bench/firmware.py)",
                                  "calibration": "64 preprocessed synthetic lead-I windows"})
    out.mkdir(parents=True, exist_ok=True)
    export_tflite(model, spec, out / "tflite-int8", "int8", calib=x[:64])
    np.save(out / "golden.npy", x[64:72])
    return out


def measure(export: Path, target: str, tmp: Path) -> dict:
    from firmware_bridge.bundle import package, verify_bundle

    out = tmp / target
    t0 = time.perf_counter()
    man = package(export / "tflite-int8", target, out, log=lambda s: print(s, file=sys.stderr))
    package_s = time.perf_counter() - t0
    f = man["firmware"]["measured"]
    t0 = time.perf_counter()
    report = verify_bundle(out, on="qemu")
    verify_s = time.perf_counter() - t0
    mem, ins = f["memory"], f["instructions_per_inference"]
    return {"model_bytes": mem["model_bytes"], "library_flash_bytes": mem["library_bytes"],
            "other_code_bytes": mem["other_code_bytes"], "flash_bytes": mem["flash_bytes"],
            "golden_test_bytes": mem["golden_test_bytes"],
            "ram": {"arena_bytes": man["tflm"]["arena_bytes"], "arena_used_bytes": mem["arena_used_bytes"],
                    "host_arena_measured_bytes": man["tflm"]["arena_measured_bytes"],
                    "statics_bytes": mem["ram_static_bytes"], "stack_peak_bytes": mem["stack_peak_bytes"],
                    "heap_peak_bytes": mem["heap_peak_bytes"], "total_bytes": mem["ram_bytes"]},
            "instructions_per_inference": {k: ins[k] for k in ("median", "min", "max")},
            "instructions_what": ins["what"],
            "build_seconds": {arch: b["seconds"] for arch, b in f["builds"].items()},
            "build_cached": {arch: b["cached"] for arch, b in f["builds"].items()},
            "golden_windows": f["windows"], "bit_exact_windows": f["bit_exact_windows"],
            "max_steps_vs_python_tflm": f["max_steps_vs_reference"], "decisions_equal": f["decisions_equal"],
            "verify_on_qemu": {"ok": report.ok, "bit_exact_windows": report.firmware["bit_exact_windows"]},
            "package_seconds": round(package_s, 2), "verify_seconds": round(verify_s, 2),
            "qemu_wall_s": f["qemu_wall_s"], "toolchain": f["toolchain"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, help="an `ecg-edge export` output folder (default: make one)")
    ap.add_argument("--targets", nargs="+", choices=TARGETS, default=["cortex-m55"])
    ap.add_argument("--cold", action="store_true", help="build into an empty cache (from-scratch build time)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.cold:
            os.environ["ECG_EDGE_CACHE"] = str(Path(tmp) / "cache")
        export = args.export or own_export(Path(tmp) / "export")
        result = {"export": str(args.export) if args.export else "own (student_s, synthetic, bench/firmware.py)",
                  "cache": "cold (empty)" if args.cold else "the user cache (warm where built before)",
                  "targets": {t: measure(export, t, Path(tmp)) for t in args.targets}}
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
