"""The firmware project of a TensorFlow Lite Micro bundle: written, built, run and measured.

Every int8 `.tflite` bundle (`tflm`, `cortex-m55`) holds `firmware/`: the harness `main.cc`
(registers exactly the model's operators with `model_ops.h`, places the tensor arena, runs every
golden int8 window, prints each output, a CRC-32 and the memory used, returns a status), the board
layer for Arm's MPS3 AN547 (`mps3_an547.c`: vector table, reset, faults, SysTick, semihosting) and
its linker script, a host board layer, the golden windows as C (`golden_data.c`) and a Makefile
that compiles the vendored TFLite Micro + CMSIS-NN tree with `arm-none-eabi-gcc -mcpu=cortex-m55`.

`check_firmware` builds it twice from the same sources (Cortex-M55, and the host with CMSIS-NN's
portable C path), runs the first on QEMU's `mps3-an547` board and the second natively, and compares
every golden output: target == host bit for bit; target vs the Python `tflite-micro` interpreter
(reference kernels) at most one int8 step apart, with the manifest's decision identical on every
window. Memory comes from the linked ELF (`arm-none-eabi-size`, the map file) and the run (arena
used, stack high-water mark by painting, heap). The work figure is instructions per inference:
QEMU's `-icount shift=0` runs a deterministic instruction clock, SysTick counts it, and a
two-instruction calibration loop in the firmware turns ticks into instructions. Not cycles.

Builds are cached outside the bundle (`cache_root()`): the unpacked vendor tree, the library
objects per architecture and compiler, and each firmware image by the sha256 of its sources and
flags. Nothing is written into the bundle folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import ArtifactError, ConfigError, EcgEdgeError
from edge_runtime.provenance import sha256_of
from firmware_bridge.bundle.elf import elf_memory

FIRMWARE_DIR = "firmware"
TEMPLATES = Path(__file__).with_name("firmware")
#: Files copied as they are from the template folder into a bundle's firmware/.
TEMPLATE_FILES = ("Makefile", "main.cc", "platform.h", "mps3_an547.c", "mps3_an547.ld", "host.c",
                  "cmsis-nn-1xn-stride.patch")
BOARD = "mps3-an547"
TARBALL = "tflite-micro-cmsis-nn.tar.xz"
APT_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm gcc make patch"
QEMU_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 3600
#: Harness exit status -> meaning (main.cc, mps3_an547.c).
STATUS = {0: "ok", 2: "model checksum mismatch", 3: "model schema version", 4: "operator registration",
          5: "AllocateTensors failed (tensor arena too small)", 6: "input/output tensor type or size",
          7: "Invoke failed", 8: "fault"}


class FirmwareError(ArtifactError):
    """The firmware could not be built or run, or its outputs differ; names the bundle and the step."""


class ToolchainError(EcgEdgeError):
    """The Arm toolchain or QEMU is not installed; the message names the packages to install."""


def cache_root() -> Path:
    """$ECG_EDGE_CACHE, else $XDG_CACHE_HOME/ecg-edge, else ~/.cache/ecg-edge."""
    if os.environ.get("ECG_EDGE_CACHE"):
        return Path(os.environ["ECG_EDGE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ecg-edge"


def toolchain(need_qemu: bool = True) -> dict[str, str]:
    """Paths and versions of arm-none-eabi-gcc (and qemu-system-arm); ToolchainError naming the
    Debian packages when one is missing."""
    tools = {"gcc": "arm-none-eabi-gcc", "size": "arm-none-eabi-size", "host_gcc": "gcc", "make": "make",
             "patch": "patch"}
    if need_qemu:
        tools["qemu"] = "qemu-system-arm"
    found = {k: shutil.which(v) for k, v in tools.items()}
    missing = [tools[k] for k, v in found.items() if v is None]
    if missing:
        raise ToolchainError(f"{', '.join(missing)} not found: the firmware check needs the Arm toolchain and "
                             f"QEMU (Debian: apt-get install {APT_PACKAGES})")
    out = {k: str(v) for k, v in found.items()}
    for k in ("gcc", "host_gcc") + (("qemu",) if need_qemu else ()):
        first = subprocess.run([out[k], "--version"], capture_output=True, text=True).stdout.splitlines()
        out[f"{k}_version"] = first[0] if first else "unknown"
    return out


# --------------------------------------------------------------------------- the vendored tree

@dataclass(frozen=True)
class TflmTree:
    """An unpacked TFLite Micro + CMSIS-NN tree and the hosted platform files beside it."""

    root: Path           # holds tensorflow/, third_party/
    host_platform: Path  # debug_log.cc, micro_time.cc for a hosted build
    sha256: str          # of the tarball it came from (or of the tree's file list when given unpacked)


def _vendor_candidates(explicit: str | Path | None) -> list[Path]:
    if explicit is not None:
        return [Path(explicit)]
    if os.environ.get("ECG_EDGE_TFLM"):
        return [Path(os.environ["ECG_EDGE_TFLM"])]
    repo = Path(__file__).resolve().parents[2]
    return [repo.parent / "shared" / "vendor" / "tflite-micro", repo / "shared" / "vendor" / "tflite-micro"]


def tflm_tree(vendor: str | Path | None = None) -> TflmTree:
    """The vendored tree, unpacked once into the cache.

    `vendor` (or $ECG_EDGE_TFLM; default ../shared/vendor/tflite-micro beside the repository) is the
    folder holding `tflite-micro-cmsis-nn.tar.xz` and `host-platform/`, or an unpacked tree
    (a folder with tensorflow/lite/micro and host-platform/ inside or beside it)."""
    for cand in _vendor_candidates(vendor):
        if (cand / TARBALL).is_file():
            return _unpack(cand / TARBALL, cand / "host-platform")
        if (cand / "tensorflow" / "lite" / "micro").is_dir():
            hp = next((p for p in (cand / "host-platform", cand.parent / "host-platform") if p.is_dir()), None)
            if hp is None:
                raise ConfigError(f"{cand}: no host-platform/ folder inside or beside the tree")
            names = sorted(str(p.relative_to(cand)) for p in cand.rglob("*") if p.is_file())
            return TflmTree(cand, hp, hashlib.sha256("\n".join(names).encode()).hexdigest())
    tried = ", ".join(str(c) for c in _vendor_candidates(vendor))
    raise ConfigError(f"TFLite Micro tree not found (tried {tried}): give --tflm DIR or set ECG_EDGE_TFLM to the "
                      f"folder with {TARBALL} and host-platform/, or to an unpacked tree")


def _unpack(tarball: Path, host_platform: Path) -> TflmTree:
    sha = sha256_of(tarball)
    dest = cache_root() / "tflm" / sha[:16]
    root = dest / "tflite-micro"
    if not (dest / "unpacked").is_file():
        if not host_platform.is_dir():
            raise ConfigError(f"{host_platform}: not found (the hosted debug_log.cc / micro_time.cc beside {tarball.name})")
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with tarfile.open(tarball) as tf:
            tf.extractall(tmp, filter="data")  # refuses absolute paths, '..' and links leaving tmp
        if not (tmp / "tflite-micro" / "tensorflow" / "lite" / "micro").is_dir():
            raise ConfigError(f"{tarball}: expected one folder tflite-micro/ with tensorflow/lite/micro inside")
        shutil.copytree(host_platform, tmp / "host-platform")
        (tmp / "unpacked").write_text(sha + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return TflmTree(root, dest / "host-platform", sha)


def kernel_sources(tree: TflmTree, resolver: list[str]) -> list[str]:
    """Kernel sources (relative to the tree) for the resolver's `AddX` calls: the file defining each
    call's `Register_OP()` (CMSIS-NN's where the tree has one) and its `*_common.cc`."""
    header = (tree.root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    kernels = tree.root / "tensorflow/lite/micro/kernels"
    files = sorted((kernels / "cmsis_nn").glob("*.cc")) + sorted(kernels.glob("*.cc"))
    texts = {p: p.read_text(errors="replace") for p in files}
    out: list[str] = []
    for call in resolver:
        m = re.search(rf"TfLiteStatus {re.escape(call)}\((.*?)(?=TfLiteStatus Add|\Z)", header, re.S)
        reg = re.search(r"Register_(\w+)\(\)", m.group(1)) if m else None
        if reg is None:
            raise FirmwareError(f"micro_mutable_op_resolver.h: no {call}() registering a kernel in this TFLite Micro tree")
        pattern = re.compile(rf"TFLMRegistration\*?\s+Register_{reg.group(1)}\s*\(\s*\)\s*\{{")
        src = next((p for p in files if pattern.search(texts[p])), None)
        if src is None:
            raise FirmwareError(f"{kernels}: no kernel defines Register_{reg.group(1)}() ({call})")
        for p in (src, kernels / f"{src.stem}_common.cc"):
            rel = str(p.relative_to(tree.root))
            if p.is_file() and rel not in out:
                out.append(rel)
    return out


# --------------------------------------------------------------------------- writing the project

def _c_rows(values: np.ndarray, per_row: int = 20) -> str:
    flat = [str(int(v)) for v in values.reshape(-1)]
    return ",\n    ".join(", ".join(flat[i:i + per_row]) for i in range(0, len(flat), per_row))


def write_project(dest: Path, *, model: bytes, c_name: str, x_q: np.ndarray, n_outputs: int, arena_bytes: int,
                  kernels: list[str]) -> dict[str, Any]:
    """Write firmware/ into the bundle folder `dest`; return the manifest's `firmware` entry
    (everything but the measured figures)."""
    fw = dest / FIRMWARE_DIR
    fw.mkdir()
    for name in TEMPLATE_FILES:
        shutil.copyfile(TEMPLATES / name, fw / name)
    if x_q.dtype != np.int8 or x_q.ndim < 2 or not len(x_q):
        raise ConfigError(f"golden inputs: expected int8 windows (n, ...), got {x_q.dtype} {x_q.shape}")
    n, k = len(x_q), int(np.prod(x_q.shape[1:]))
    crc = zlib.crc32(model)
    (fw / "golden_data.h").write_text(
        "// Generated by `ecg-edge package`: the golden int8 windows the harness runs, and the model's checksum.\n"
        "#ifndef ECG_GOLDEN_DATA_H_\n#define ECG_GOLDEN_DATA_H_\n\n#include <stdint.h>\n\n"
        f"#define ECG_GOLDEN_WINDOWS {n}u\n#define ECG_GOLDEN_INPUT_BYTES {k}u\n"
        f"#define ECG_GOLDEN_OUTPUT_BYTES {n_outputs}u\n#define ECG_MODEL_BYTES {len(model)}u\n"
        f"#define ECG_MODEL_CRC32 0x{crc:08x}u  // zlib.crc32 of model.tflite\n"
        f"#define ECG_MODEL_ARRAY {c_name}  // model_data.h\n#define ECG_MODEL_LEN {c_name}_len\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n"
        "extern const int8_t ecg_golden_inputs[ECG_GOLDEN_WINDOWS][ECG_GOLDEN_INPUT_BYTES];\n"
        "#ifdef __cplusplus\n}\n#endif\n\n#endif  // ECG_GOLDEN_DATA_H_\n")
    rows = ",\n  ".join("{\n    " + _c_rows(w) + "}" for w in x_q.reshape(n, k))
    (fw / "golden_data.c").write_text(
        "// Generated by `ecg-edge package`: golden.npz x_q, the int8 windows the device takes.\n"
        "#include \"golden_data.h\"\n\n"
        "__attribute__((section(\".ecg_golden\"), aligned(16)))\n"
        f"const int8_t ecg_golden_inputs[ECG_GOLDEN_WINDOWS][ECG_GOLDEN_INPUT_BYTES] = {{\n  {rows}\n}};\n")
    (fw / "config.mk").write_text(
        "# Generated by `ecg-edge package`: this bundle's figures for the Makefile.\n"
        f"ARENA_BYTES ?= {arena_bytes}\nBUNDLE ?= ..\nKERNEL_SRCS := {' '.join(kernels)}\n")
    return {"folder": FIRMWARE_DIR, "board": BOARD, "cpu": "cortex-m55", "arena_bytes": arena_bytes,
            "golden_windows": n, "model_crc32": f"{crc:08x}", "kernel_sources": kernels,
            "build": "make -C firmware TFLM=/path/to/tflite-micro  (then `make ... run` runs it on QEMU)"}


# --------------------------------------------------------------------------- building

@dataclass
class Build:
    arch: str
    image: Path
    seconds: float
    cached: bool
    key: str
    log: str = ""


def _sources_digest(fw: Path, bundle: Path, extra: list[str]) -> str:
    h = hashlib.sha256()
    names = sorted(p.name for p in fw.iterdir() if p.is_file())
    for path in [fw / n for n in names] + [bundle / "model_data.c", bundle / "model_data.h", bundle / "model_ops.h"]:
        h.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
    h.update("\0".join(extra).encode())
    return h.hexdigest()


def build(bundle: str | Path, arch: str = "cm55", *, tree: TflmTree | None = None, arena_bytes: int | None = None,
          jobs: int | None = None, tools: dict[str, str] | None = None) -> Build:
    """Build the bundle's firmware for `arch` ("cm55": the ELF for mps3-an547; "host": a native
    program) into the cache, reusing an image built from the same sources and flags."""
    root = Path(bundle)
    fw = root / FIRMWARE_DIR
    if not (fw / "Makefile").is_file():
        raise FirmwareError(f"{fw}: no firmware project in this bundle (targets tflm and cortex-m55 write one)")
    if arch not in ("cm55", "host"):
        raise ConfigError(f"arch: expected 'cm55' or 'host', got {arch!r}")
    tree = tree or tflm_tree()
    tools = tools or toolchain(need_qemu=False)
    compiler = tools["gcc_version"] if arch == "cm55" else tools["host_gcc_version"]
    flags = [arch, compiler, tree.sha256, f"arena={arena_bytes}"]
    key = _sources_digest(fw, root, flags)[:24]
    out = cache_root() / "firmware" / key
    image = out / ("firmware.elf" if arch == "cm55" else "firmware")
    if (out / "built.json").is_file() and image.is_file():
        return Build(arch, image, 0.0, True, key)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    base = ["make", "-C", str(fw), f"ARCH={arch}", f"TFLM={tree.root}", f"HOST_PLATFORM={tree.host_platform}",
            f"OUT={tmp}", f"BUNDLE={root.resolve()}", "--no-print-directory"]
    if arena_bytes is not None:
        base.append(f"ARENA_BYTES={int(arena_bytes)}")
    obj = _library_objects(base, arch, compiler, tree, fw)
    cmd = [*base, f"OBJ={obj}", f"-j{jobs or os.cpu_count() or 1}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    seconds = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FirmwareError(f"{root}: firmware build ({arch}) failed: {_build_error(log)}")
    (tmp / "build.log").write_text(log)
    (tmp / "built.json").write_text(json.dumps({"seconds": seconds, "command": cmd}) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return Build(arch, image, seconds, False, key, log)


_OBJ_PLACEHOLDER = "/ecg-edge-library-objects"


def _library_objects(base: list[str], arch: str, compiler: str, tree: TflmTree, fw: Path) -> Path:
    """The cache folder of the library objects: keyed by the exact commands that compile them (a dry
    run of the Makefile) and the patch files, so bundles with the same flags share one build. The
    patched CMSIS-NN file has a folder per CMSIS_NN_FIX value inside, so it is left out of the key."""
    dry = subprocess.run([*base, f"OBJ={_OBJ_PLACEHOLDER}", "-n"], capture_output=True, text=True)
    commands = sorted(ln.strip() for ln in dry.stdout.splitlines() if _OBJ_PLACEHOLDER in ln
                      and " -c " in ln and "ecg-edge-patched-" not in ln)
    h = hashlib.sha256("\0".join([arch, compiler, tree.sha256, *commands,
                                   *(p.read_text() for p in sorted(fw.glob("*.patch")))]).encode())
    return cache_root() / "tflm" / tree.sha256[:16] / f"obj-{arch}-{h.hexdigest()[:12]}"


def _build_error(log: str) -> str:
    """The first compiler, linker or make error line of a build log."""
    lines = log.strip().splitlines()
    for pattern in (": error:", "undefined reference", "region `", "*** "):
        hit = next((ln.strip() for ln in lines if pattern in ln), None)
        if hit:
            return hit
    return lines[-1].strip() if lines else "no output"


def warnings_in(log: str) -> list[str]:
    """Compiler and linker warnings of a build log."""
    return [ln for ln in log.splitlines() if "warning:" in ln]


# --------------------------------------------------------------------------- running

@dataclass
class Run:
    """What the harness printed: outputs (n, n_outputs) int8 and the measured figures."""

    where: str
    status: int
    outputs: np.ndarray
    ticks: list[int]
    calibration: tuple[int, int] | None = None  # (ticks, instructions) of the calibration loop
    arena_used: int | None = None
    stack_peak: int | None = None
    heap_peak: int | None = None
    outputs_crc32: str | None = None
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def instructions(self) -> list[int] | None:
        """Instructions per inference, per window (None where the board counted nothing)."""
        if not self.calibration or not self.calibration[0]:
            return None
        ticks, insns = self.calibration
        return [int(round(t * insns / ticks)) for t in self.ticks]


def _parse(where: str, text: str, status: int, n_outputs: int) -> Run:
    rows: dict[int, bytes] = {}
    run = Run(where, status, np.zeros((0, n_outputs), np.int8), [])
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) < 2 or parts[0] != "ecg":
            continue
        tag, rest = parts[1], parts[2:]
        if tag == "out" and len(rest) == 3:
            rows[int(rest[0])] = bytes.fromhex(rest[2])
            run.ticks.append(int(rest[1]))
        elif tag == "arena_used" and rest:
            run.arena_used = int(rest[0])
        elif tag == "calibration" and len(rest) == 2:
            run.calibration = (int(rest[0]), int(rest[1]))
        elif tag == "stack_peak" and rest:
            run.stack_peak = int(rest[0])
        elif tag == "heap_peak" and rest:
            run.heap_peak = int(rest[0])
        elif tag == "outputs_crc32" and rest:
            run.outputs_crc32 = rest[0]
        elif tag == "error":
            run.errors.append(" ".join(rest))
    if rows:
        run.outputs = np.frombuffer(b"".join(rows[i] for i in sorted(rows)), np.int8).reshape(len(rows), n_outputs)
    return run


def run_qemu(image: Path, n_outputs: int, tools: dict[str, str] | None = None,
             timeout: float = QEMU_TIMEOUT_S) -> Run:
    """Run a Cortex-M55 image on QEMU's mps3-an547 with the instruction clock (-icount shift=0)."""
    tools = tools or toolchain()
    cmd = [tools["qemu"], "-M", BOARD, "-nographic", "-monitor", "none", "-semihosting-config",
           "enable=on,target=native", "-icount", "shift=0", "-kernel", str(image)]
    return _run(cmd, BOARD, n_outputs, timeout)


def run_host(image: Path, n_outputs: int, timeout: float = QEMU_TIMEOUT_S) -> Run:
    return _run([str(image)], "host", n_outputs, timeout)


def _run(cmd: list[str], where: str, n_outputs: int, timeout: float) -> Run:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"{cmd[-1]}: the firmware did not finish on {where} in {timeout:g} s") from None
    run = _parse(where, proc.stdout + "\n" + proc.stderr, proc.returncode, n_outputs)
    run.wall_s = time.perf_counter() - t0
    return run


# --------------------------------------------------------------------------- the check

def _require_ok(bundle: Path, run: Run, n: int) -> None:
    if run.status != 0:
        what = STATUS.get(run.status, f"exit status {run.status}")
        said = f": {run.errors[-1]}" if run.errors else ""
        raise FirmwareError(f"{bundle}: firmware on {run.where} failed with status {run.status} ({what}){said}")
    if run.outputs.shape[0] != n:
        raise FirmwareError(f"{bundle}: firmware on {run.where} printed {run.outputs.shape[0]} of {n} golden outputs")


def _first_difference(a: np.ndarray, b: np.ndarray, tolerance: int) -> tuple[int, int] | None:
    bad = np.argwhere(np.abs(a.astype(np.int32) - b.astype(np.int32)) > tolerance)
    return (int(bad[0][0]), int(bad[0][1])) if len(bad) else None


def check_firmware(bundle: str | Path, *, x_q: np.ndarray, reference: np.ndarray, reference_name: str,
                   output_scale: float, output_zero_point: int, thresholds: Any, multilabel: bool,
                   tree: TflmTree | None = None, tools: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the bundle's firmware for the Cortex-M55 and the host, run both on every golden window
    and compare (module docstring). Raises FirmwareError naming the bundle, the window and the output
    index on any mismatch; returns the figures (memory, instructions, builds, comparisons)."""
    from edge_runtime.backends import decide, dequantize, probabilities

    root = Path(bundle)
    tools = tools or toolchain()
    tree = tree or tflm_tree()
    n, n_out = int(len(x_q)), int(reference.shape[1])
    arm, host = build(root, "cm55", tree=tree, tools=tools), build(root, "host", tree=tree, tools=tools)
    target = run_qemu(arm.image, n_out, tools)
    _require_ok(root, target, n)
    native = run_host(host.image, n_out)
    _require_ok(root, native, n)
    where = _first_difference(target.outputs, native.outputs, 0)
    if where is not None:
        w, i = where
        raise FirmwareError(f"{root}: window {w} output {i}: {BOARD} gives {int(target.outputs[w, i])}, the host build "
                            f"of the same sources {int(native.outputs[w, i])} (expected bit-identical)")
    steps = np.abs(target.outputs.astype(np.int32) - reference.astype(np.int32))
    where = _first_difference(target.outputs, reference, 1)
    if where is not None:
        w, i = where
        raise FirmwareError(f"{root}: window {w} output {i}: {BOARD} gives {int(target.outputs[w, i])}, "
                            f"{reference_name} {int(reference[w, i])} (more than 1 int8 step apart)")

    def decisions(q: np.ndarray) -> np.ndarray:
        return decide(probabilities(dequantize(q, output_scale, output_zero_point), multilabel), thresholds, multilabel)

    differ = np.flatnonzero((decisions(target.outputs) != decisions(reference)).any(axis=1))
    if len(differ):
        raise FirmwareError(f"{root}: window {int(differ[0])}: the decision on {BOARD} differs from {reference_name}'s "
                            f"(outputs {target.outputs[differ[0]].tolist()} vs {reference[differ[0]].tolist()})")
    model_bytes = len((root / "model.tflite").read_bytes()) if (root / "model.tflite").is_file() else 0
    mem = elf_memory(arm.image, model_bytes, tools)
    mem["arena_used_bytes"] = target.arena_used
    mem["stack_peak_bytes"] = target.stack_peak
    mem["heap_peak_bytes"] = target.heap_peak
    mem["ram_bytes"] = mem["ram_static_bytes"] + int(target.stack_peak or 0) + int(target.heap_peak or 0)
    insns = target.instructions() or []
    return {
        "board": BOARD, "cpu": "cortex-m55", "windows": n,
        "bit_exact_windows": int((target.outputs == native.outputs).all(axis=1).sum()),
        "reference": reference_name, "max_steps_vs_reference": int(steps.max()) if steps.size else 0,
        "values_differing_from_reference": int((steps > 0).sum()), "decisions_equal": n,
        "outputs_crc32": target.outputs_crc32, "host_outputs_crc32": native.outputs_crc32,
        "memory": mem,
        "instructions_per_inference": {
            "median": int(np.median(insns)) if insns else None, "min": min(insns, default=None),
            "max": max(insns, default=None), "per_window": insns,
            "what": "instructions executed per Invoke on QEMU's instruction clock (-icount shift=0), counted by "
                    "SysTick and calibrated with a 2-instruction loop; instructions, not cycles"},
        "builds": {b.arch: {"seconds": round(b.seconds, 2), "cached": b.cached, "key": b.key,
                            "warnings": len(warnings_in(b.log))} for b in (arm, host)},
        "toolchain": {"gcc": tools["gcc_version"], "host_gcc": tools["host_gcc_version"], "qemu": tools["qemu_version"]},
        "tflm_tree_sha256": tree.sha256, "qemu_wall_s": round(target.wall_s, 2),
    }
