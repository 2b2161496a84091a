"""Benchmark vendor bundles per target; prints one JSON object.

    python bench/package.py --export DIR [--targets tflm ethos-u55-128 ...] [--headroom 0.25] [--out FILE]

DIR is an `ecg-edge export` folder (tflite-int8/, pte-int8/ with cortex-m55.pte, golden.npy).
For each target the bundle is packaged into a temporary folder (`firmware_bridge.bundle.package`) and
checked (`firmware_bridge.bundle.verify_bundle`); reported: model bytes (what is flashed), arena or
planned RAM bytes (TFLite Micro: measured on the host interpreter, then headroom; Ethos-U: Vela's
SRAM estimate + headroom; ExecuTorch: memory-planned buffers), NPU operator share, cycles and
inference time (Vela's estimates, Ethos-U only), bundle bytes, the packaging seconds and the
verify result.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from firmware_bridge.bundle import TARGETS, package, verify_bundle  # noqa: E402
from report import emit  # noqa: E402  (bench/report.py, beside this script)


def measure(export: Path, target: str, headroom: float, tmp: Path) -> dict:
    folder = export / ("pte-int8" if target in ("xnnpack", "cortex-m") else "tflite-int8")
    out = tmp / target
    t0 = time.perf_counter()
    man = package(folder, target, out, headroom=headroom, log=lambda s: print(s, file=sys.stderr))
    seconds = time.perf_counter() - t0
    report = verify_bundle(out)
    v = man.get("ethos_u") or {}
    tflm = man.get("tflm") or {}
    return {"model_file": man["model"]["file"], "model_bytes": man["model"]["bytes"],
            "flash_bytes": man["memory"]["flash_bytes"], "flash_what": man["memory"]["flash_what"],
            "arena_bytes": tflm.get("arena_bytes", man["memory"]["ram_bytes"]),
            "ram_bytes": man["memory"]["ram_bytes"], "ram_what": man["memory"]["ram_what"],
            "arena_measured_bytes": tflm.get("arena_measured_bytes"),
            "npu_op_share": v.get("npu_op_share"), "sram_kib": v.get("sram_kib"), "dram_kib": v.get("dram_kib"),
            "flash_kib": (v["on_chip_flash_kib"] + v["off_chip_flash_kib"]) if v else None,
            "cycles": v.get("cycles_total"), "inference_time_s": v.get("inference_time_s"),
            "clock_hz": v.get("clock_hz"),
            "bundle_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
            "package_seconds": round(seconds, 3), "verified": report.ok,
            "checks": {c.name: c.status for c in report.checks}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, required=True, help="an `ecg-edge export` output folder")
    ap.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    ap.add_argument("--headroom", type=float, default=0.25)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    result = {"export": str(args.export), "headroom": args.headroom, "targets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets:
            result["targets"][target] = measure(args.export, target, args.headroom, Path(tmp))
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
