"""Vendor bundles: `ecg-edge package` turns an int8 artifact into a folder a firmware engineer flashes.

A bundle holds the model file, the same bytes as a `const`, 16-byte aligned C array
(`model_data.h` / `model_data.c`, xxd -i style), golden inputs with the outputs the host runtimes
gave for them (`golden.npz`), `manifest.json` (input spec, int8 scale and zero point, labels,
thresholds, memory, versions, the sha256 of every other file), `manifest.json.sha256` (integrity
of the manifest itself), optionally `manifest.json.sig` (Ed25519 over the exact bytes of
manifest.json: authenticity) and a README.md for the firmware engineer. Per target:

* "tflm" / "cortex-m55": the int8 .tflite; the operators to register, as `MicroMutableOpResolver`
  calls (`model_ops.h`); the tensor arena measured with the host TFLite Micro interpreter (the
  smallest arena it allocates and invokes in, to 16 bytes) plus `headroom` (a fraction, rounded up
  to 1 KiB); and `firmware/`, a firmware project for a Cortex-M55 (`firmware_bridge.bundle.firmware`).
  The firmware is built and run on QEMU's mps3-an547 board at packaging, and flash and RAM measured
  from the linked ELF and the run replace the host estimates in the manifest: required for
  "cortex-m55", done for "tflm" when the Arm toolchain is installed (otherwise the manifest says why
  not and keeps the host figures).
* "ethos-u55-128" / "ethos-u65-256": the Vela-compiled .tflite (flash this one) and Vela's summary
  (NPU operator share, SRAM, flash, cycles, inference time at the configured clock). The compiled
  model holds an `ethos-u` custom operator no host runtime runs, so the golden check runs the
  *input* int8 .tflite (also in the bundle) on TFLite Micro and LiteRT; the manifest says so.
* "xnnpack": the XNNPACK int8 .pte (float input and output) and its .bpte bundled golden test.
* "cortex-m": the ExecuTorch CMSIS-NN .pte (`cortex-m55.pte`, int8 input and output) `ecg-edge
  export` wrote beside the XNNPACK one; ExecuTorch's Cortex-M runtime is not built here, so there
  is no golden run for it (stated in the manifest and README; the golden inputs, int8, are in the
  bundle). The TFLite Micro "cortex-m55" bundle is the one proven on an emulated Cortex-M55.

Torch-free except where the target is an ExecuTorch program (xnnpack, cortex-m: reading its
planned memory and running it need executorch, which links libtorch).
`firmware_bridge.bundle.verify.verify_bundle` checks a bundle.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.artifact import Artifact, load_artifact
from edge_runtime.backends import (executorch_planned_bytes, int8_tolerance_steps, open_backend, quantize,
                                   tflm_arena_bytes)
from edge_runtime.errors import ArtifactError, ConfigError, missing_extra
from edge_runtime.provenance import package_versions, sha256_of
from firmware_bridge.bundle import firmware as fw
from firmware_bridge.bundle.format import (BUNDLE_FORMAT, C_ALIGNMENT, C_HEADER, C_SOURCE, GOLDEN, INT8_TOLERANCE_STEPS,
                                           MANIFEST, MANIFEST_SHA256, OPS_HEADER, README, SIGNATURE, TARGETS,
                                           TFLM_TARGETS, c_identifier, render_c_array, render_ops_header,
                                           resolver_call)
from firmware_bridge.bundle.signing import load_private_key, public_key_sha256


def with_headroom(measured: int, headroom: float) -> int:
    """measured * (1 + headroom), rounded up to a whole KiB."""
    return int(math.ceil(measured * (1.0 + headroom) / 1024.0) * 1024)


def tflite_operators(data: bytes) -> list[str]:
    """Operator codes of a .tflite in the order the model declares them: builtin names
    ("CONV_2D") and custom codes ("ethos-u")."""
    try:
        from tflite_micro.python.tflite_micro import runtime
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    except ImportError:
        raise missing_extra("reading a .tflite's operators", "tflite_micro", None) from None
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    model = runtime.convert_bytearray_to_object(bytearray(data))
    out = []
    for code in model.operatorCodes:
        builtin = runtime.get_builtin_code_from_operator_code(code)
        name = code.customCode.decode() if builtin == fb.BuiltinOperator.CUSTOM and code.customCode else names[builtin]
        if name not in out:
            out.append(name)
    return out


#: Operators that move int8 values without requantizing them (same scale in and out).
_NO_REQUANT = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "PAD"})


def tflite_requantizations(data: bytes) -> int:
    """Activation requantizations of an int8 .tflite: its input, and each operator of its main
    graph that writes a new quantized tensor (every one but reshape-like moves and zero padding)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    except ImportError:
        raise missing_extra("reading a .tflite's operators", "tflite_micro", None) from None
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    model = runtime.convert_bytearray_to_object(bytearray(data))
    codes = [names.get(runtime.get_builtin_code_from_operator_code(c), "CUSTOM") for c in model.operatorCodes]
    return 1 + sum(codes[op.opcodeIndex] not in _NO_REQUANT for op in model.subgraphs[0].operators)


def _versions() -> dict[str, str | None]:
    return package_versions(("ecg-edge", "numpy", "tflite-micro", "ai-edge-litert", "ethos-u-vela", "executorch",
                             "cryptography"), missing="not installed")


def _golden_windows(artifact_dir: Path, golden: str | Path | None, shape: tuple[int, ...]) -> tuple[np.ndarray, Path]:
    path = Path(golden) if golden is not None else artifact_dir.parent / "golden.npy"
    if not path.is_file():
        raise ConfigError(f"{path}: golden windows not found; give --golden FILE (float32 (n, leads, 1, window) "
                          "preprocessed windows, e.g. the golden.npy `ecg-edge export` writes)")
    x = np.load(path, allow_pickle=False)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape) or not len(x):
        raise ConfigError(f"{path}: expected windows (n, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    return np.ascontiguousarray(x, dtype=np.float32), path


def _check_target(artifact: Any, target: str, src: Path) -> None:
    if target not in TARGETS:
        raise ConfigError(f"target: expected one of {TARGETS}, got {target!r}")
    want = "executorch" if target in ("xnnpack", "cortex-m") else "litert"  # noqa: the rest are .tflite
    m = artifact.manifest
    if m.runtime != want or m.precision != "int8":
        kind = "pte-int8 (.pte)" if want == "executorch" else "tflite-int8 (.tflite)"
        raise ConfigError(f"{src}: target {target!r} needs an int8 {kind} artifact, got {m.runtime} {m.precision}")


def package(artifact_dir: str | Path, target: str, out: str | Path, *, golden: str | Path | None = None,
            sign_key: str | Path | None = None, headroom: float = 0.25, c_name: str = "ecg_model",
            tflm: str | Path | None = None, firmware: bool = True,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write a vendor bundle for `target` into `out` (module docstring); return its manifest.

    tflm: the vendored TFLite Micro tree for the firmware project (`firmware.tflm_tree`).
    firmware: False writes no firmware project for a tflm bundle (one flashed with the vendor's own
    firmware, or checked only on host runtimes); a cortex-m55 bundle is its firmware, so it needs it."""
    src = Path(artifact_dir)
    artifact = load_artifact(src)  # checks the source model's sha256
    _check_target(artifact, target, src)
    if not 0.0 <= headroom <= 4.0:
        raise ConfigError(f"headroom: expected a fraction in 0..4, got {headroom!r}")
    m = artifact.manifest
    x, golden_path = _golden_windows(src, golden, tuple(m.input.shape[1:]))
    tree, no_tree = None, None
    if not firmware and target == "cortex-m55":
        raise ConfigError("--no-firmware: a cortex-m55 bundle is its firmware (built and measured); use --target tflm")
    if not firmware:
        no_tree = "not asked for (--no-firmware)"
    elif target in TFLM_TARGETS:  # before writing anything: cortex-m55 needs the tree, tflm says why it has none
        try:
            tree = fw.tflm_tree(tflm)
        except ConfigError as exc:
            if target == "cortex-m55":
                raise
            no_tree = str(exc)
    if target == "cortex-m55":
        fw.toolchain()  # ToolchainError naming the packages, before anything is written
    dest = Path(out)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest}: exists and is not empty; give a new folder")
    existed = dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _write(artifact, target, dest, x, golden_path, tree, no_tree, sign_key=sign_key, headroom=headroom,
                      c_name=c_name, log=log)
    except BaseException:  # no half-written bundle (its firmware failed, say): leave the folder as it was
        for p in list(dest.iterdir()) if existed else []:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _write(artifact: Artifact, target: str, dest: Path, x: np.ndarray, golden_path: Path, tree: fw.TflmTree | None,
           no_tree: str | None, *, sign_key: str | Path | None, headroom: float, c_name: str,
           log: Callable[[str], None]) -> dict[str, Any]:
    builder = {"xnnpack": _xnnpack_part, "cortex-m": _cortex_m_part}.get(target, _ethos_u_part)
    part = (_tflm_part if target in TFLM_TARGETS else builder)(artifact, target, dest, x, headroom, log)
    flashed = dest / part["model"]["file"]
    header, source = render_c_array(flashed.read_bytes(), c_name, flashed.name)
    (dest / C_HEADER).write_text(header)
    (dest / C_SOURCE).write_text(source)
    part["model"]["c_array"] = {"header": C_HEADER, "source": C_SOURCE, "name": c_identifier(c_name),
                                "length_name": c_identifier(c_name) + "_len", "alignment": C_ALIGNMENT}
    if tree is not None:
        _firmware_part(artifact, target, dest, part, tree, c_identifier(c_name), log)
    elif no_tree is not None:
        part["firmware"] = {"folder": None, "not_written": no_tree}
        log(f"firmware: not written ({no_tree})")
    np.savez(dest / GOLDEN, **part.pop("arrays"))
    manifest = _manifest(artifact, target, part, x, golden_path, headroom)
    key = load_private_key(sign_key) if sign_key is not None else None
    if key is not None:
        manifest["signature"] = {"algorithm": "Ed25519", "file": SIGNATURE, "encoding": "raw 64 bytes",
                                 "covers": "the exact bytes of manifest.json",
                                 "public_key_sha256": public_key_sha256(key.public_key())}
    from firmware_bridge.bundle.readme import render_readme

    (dest / README).write_text(render_readme(manifest))
    manifest["files"] = {p.relative_to(dest).as_posix(): sha256_of(p) for p in sorted(dest.rglob("*")) if p.is_file()}
    blob = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    (dest / MANIFEST).write_bytes(blob)
    (dest / MANIFEST_SHA256).write_text(f"{hashlib.sha256(blob).hexdigest()}  {MANIFEST}\n")
    if key is not None:
        (dest / SIGNATURE).write_bytes(key.sign(blob))
    log(f"{target}: {flashed.name} flash {manifest['memory']['flash_bytes']} bytes ({manifest['memory']['flash_what']}), "
        f"RAM {manifest['memory']['ram_bytes']} bytes ({manifest['memory']['ram_what']}) -> {dest}")
    return manifest


def _quantized(x: np.ndarray, t: Any) -> np.ndarray:
    return quantize(x, t.scale, t.zero_point)


def golden_outputs(artifact: Artifact, x_q: np.ndarray, backend: str, arena: int | None = None) -> np.ndarray:
    """Raw int8 outputs of the artifact's .tflite for golden int8 windows on a host runtime
    ("tflite_micro" or "litert"), through `edge_runtime.backends` (one window per invoke)."""
    return open_backend(artifact, backend, arena=arena).run_quantized(x_q)


def _host_tflite_checks(artifact: Artifact, x_q: np.ndarray, arena: int, model_file: str) -> tuple[list, dict, dict]:
    """Golden checks of an int8 .tflite on TFLite Micro and LiteRT, with their expected outputs."""
    y_tflm, y_lite = golden_outputs(artifact, x_q, "tflite_micro", arena), golden_outputs(artifact, x_q, "litert")
    # TFLite Micro's reference kernels are portable integer C: the same outputs on any host, within a
    # step for CMSIS-NN. LiteRT runs XNNPACK's per-architecture kernels (x86 AVX against Arm NEON),
    # whose rounding ties differ per layer: parity's depth rule (measured on the emulated Pi: 2 steps
    # for test_student's 10 requantizations, where the rule allows 6).
    litert = int(int8_tolerance_steps(tflite_requantizations(artifact.model_path.read_bytes())))
    checks = [{"name": name, "runtime": name, "model": model_file, "input": "x_q", "expected": f"expected_{name}",
               "tolerance": tol, "units": "int8 output steps"}
              for name, tol in (("tflite_micro", INT8_TOLERANCE_STEPS), ("litert", max(litert, INT8_TOLERANCE_STEPS)))]
    cross = int(np.abs(y_tflm.astype(np.int32) - y_lite.astype(np.int32)).max())
    return checks, {"expected_tflite_micro": y_tflm, "expected_litert": y_lite}, {"tflm_vs_litert_max_steps": cross}


def _tflm_part(artifact: Artifact, target: str, dest: Path, x: np.ndarray, headroom: float,
               log: Callable[[str], None]) -> dict[str, Any]:
    data = artifact.model_path.read_bytes()
    shutil.copyfile(artifact.model_path, dest / "model.tflite")
    measured = tflm_arena_bytes(data)
    arena = with_headroom(measured, headroom)
    ops = tflite_operators(data)
    (dest / OPS_HEADER).write_text(render_ops_header(ops, "ecg_model"))
    x_q = _quantized(x, artifact.manifest.input)
    checks, expected, info = _host_tflite_checks(artifact, x_q, arena, "model.tflite")
    log(f"TFLite Micro arena: {measured} bytes measured on the host, {arena} with headroom; operators: {', '.join(ops)}")
    return {"model": {"file": "model.tflite", "bytes": len(data), "runtime": "TensorFlow Lite Micro"},
            "memory": {"flash_bytes": len(data), "flash_what": "model only (host estimate: firmware not built)",
                       "ram_bytes": arena, "ram_what": "TFLite Micro tensor arena (host measured + headroom)"},
            "tflm": {"arena_measured_bytes": measured, "arena_bytes": arena, "operators": ops,
                     "resolver": [resolver_call(o) for o in ops], "ops_header": OPS_HEADER},
            "golden_checks": checks, "golden_info": info, "arrays": {"x": x, "x_q": x_q, **expected}}


def _firmware_part(artifact: Artifact, target: str, dest: Path, part: dict[str, Any], tree: fw.TflmTree,
                   c_name: str, log: Callable[[str], None]) -> None:
    """Write firmware/; build and run it on the emulated board (required for cortex-m55, done for
    tflm where the toolchain is installed) and put the measured flash and RAM into `part`."""
    arrays, t = part["arrays"], part["tflm"]
    info = fw.write_project(dest, model=(dest / part["model"]["file"]).read_bytes(), c_name=c_name,
                            x_q=arrays["x_q"], n_outputs=len(artifact.manifest.labels),
                            arena_bytes=t["arena_bytes"], kernels=fw.kernel_sources(tree, t["resolver"]))
    try:
        tools = fw.toolchain()
    except fw.ToolchainError as exc:
        if target == "cortex-m55":
            raise
        info["measured"] = None
        info["not_measured"] = str(exc)
        log(f"firmware: written, not built ({exc})")
        part["firmware"] = info
        return
    m = artifact.manifest
    result = fw.check_firmware(dest, x_q=arrays["x_q"], reference=arrays["expected_tflite_micro"],
                               reference_name="the Python tflite-micro interpreter (expected_tflite_micro)",
                               output_scale=m.output.scale, output_zero_point=m.output.zero_point,
                               thresholds=m.thresholds, multilabel=m.multilabel, tree=tree, tools=tools)
    info["measured"] = result
    mem = result["memory"]
    part["memory"] = {"flash_bytes": mem["flash_bytes"],
                      "flash_what": "measured from the linked Cortex-M55 ELF: model + TFLite Micro/CMSIS-NN with "
                                    "the registered operators + harness and libc (golden test data excluded)",
                      "ram_bytes": mem["ram_bytes"],
                      "ram_what": "measured: .data + .bss (tensor arena included) + stack high-water mark + heap used"}
    part["firmware"] = info
    log(f"firmware ({fw.BOARD}): flash {mem['flash_bytes']} bytes, RAM {mem['ram_bytes']} bytes, "
        f"{result['instructions_per_inference']['median']:,} instructions per inference; outputs equal the host "
        f"build's on {result['bit_exact_windows']}/{result['windows']} windows")


def _ethos_u_part(artifact: Any, target: str, dest: Path, x: np.ndarray, headroom: float,
                  log: Callable[[str], None]) -> dict[str, Any]:
    from firmware_bridge.bundle.vela import vela_compile

    data = artifact.model_path.read_bytes()
    shutil.copyfile(artifact.model_path, dest / "model.tflite")
    log(f"Vela: {target}")
    v = vela_compile(dest / "model.tflite", dest / "vela", target)
    compiled = Path(v.pop("compiled_model"))
    shutil.move(str(compiled), dest / "model_vela.tflite")
    v["summary_csv"] = str(Path(v["summary_csv"]).relative_to(dest))
    for extra in (dest / "vela").iterdir():  # keep Vela's summary, not its other by-products
        if extra.is_file() and extra.suffix != ".csv":
            extra.unlink()
    compiled_bytes = (dest / "model_vela.tflite").stat().st_size
    ops = tflite_operators((dest / "model_vela.tflite").read_bytes())
    (dest / "model_ops.h").write_text(render_ops_header(ops, "ecg_model"))
    sram = int(round(v["sram_kib"] * 1024))
    arena = with_headroom(sram, headroom)
    cpu_arena = with_headroom(tflm_arena_bytes(data), headroom)
    x_q = _quantized(x, artifact.manifest.input)
    checks, expected, info = _host_tflite_checks(artifact, x_q, cpu_arena, "model.tflite")
    info["host_model"] = ("model.tflite, the int8 model Vela compiled: model_vela.tflite holds an ethos-u custom "
                          "operator no host runtime runs, so the golden outputs are the input model's")
    return {"model": {"file": "model_vela.tflite", "bytes": compiled_bytes,
                      "runtime": f"TensorFlow Lite Micro + Ethos-U driver ({target})", "host_model": "model.tflite"},
            "memory": {"flash_bytes": compiled_bytes, "flash_what": "the Vela-compiled model",
                       "ram_bytes": arena, "ram_what": "tensor arena: Vela's SRAM estimate + headroom"},
            "ethos_u": v, "tflm": {"operators": ops, "resolver": [resolver_call(o) for o in ops],
                                   "ops_header": "model_ops.h", "arena_bytes": arena,
                                   "cpu_only_arena_bytes": cpu_arena},
            "golden_checks": checks, "golden_info": info, "arrays": {"x": x, "x_q": x_q, **expected}}


def _xnnpack_part(artifact: Any, target: str, dest: Path, x: np.ndarray, headroom: float,
                  log: Callable[[str], None]) -> dict[str, Any]:
    src = artifact.model_path.parent
    bpte = src / "model.bpte"
    if not bpte.is_file():
        raise ArtifactError(f"{bpte}: not found; the xnnpack bundle needs the .bpte `ecg-edge export` writes")
    data = artifact.model_path.read_bytes()
    shutil.copyfile(artifact.model_path, dest / "model.pte")
    shutil.copyfile(bpte, dest / "model.bpte")
    y = open_backend(artifact, "executorch").run(x)
    bp = artifact.manifest.provenance.get("bundled_program") or {}
    planned = executorch_planned_bytes(data)
    checks = [{"name": "executorch_bpte", "runtime": "executorch", "model": "model.bpte",
               "test_cases": int(bp.get("test_cases") or 0),
               "tolerance": float(bp.get("device_atol", 0.0)), "units": "logits (absolute)",
               "what": "every test case bundled in model.bpte, run on the ExecuTorch runtime"}]
    return {"model": {"file": "model.pte", "bytes": len(data), "runtime": "ExecuTorch (XNNPACK delegate)"},
            "memory": {"flash_bytes": len(data), "flash_what": "the .pte program",
                       "ram_bytes": planned,
                       "ram_what": "ExecuTorch memory-planned buffers (XNNPACK's own workspace not included)"},
            "executorch": {"bundled_program": "model.bpte", "test_cases": bp.get("test_cases"),
                           "planned_memory_bytes": planned},
            "golden_checks": checks, "golden_info": {"expected_from": "model.pte on the ExecuTorch runtime here"},
            "arrays": {"x": x, "expected_executorch": y}}


def _cortex_m_part(artifact: Any, target: str, dest: Path, x: np.ndarray, headroom: float,
                   log: Callable[[str], None]) -> dict[str, Any]:
    src = artifact.model_path.parent
    cm = artifact.manifest.provenance.get("cortex_m")
    path = src / (cm or {}).get("path", "cortex-m55.pte")
    if not cm or not path.is_file():
        raise ArtifactError(f"{path}: no Cortex-M program beside this artifact (manifest provenance.cortex_m); "
                            "run `ecg-edge export` without --no-embedded")
    if cm.get("sha256") and sha256_of(path) != cm["sha256"]:
        raise ArtifactError(f"{path}: sha256 differs from the manifest's provenance.cortex_m.sha256")
    data = path.read_bytes()
    shutil.copyfile(path, dest / path.name)
    io = cm["io"]
    x_q = quantize(x, io["input"]["scale"], io["input"]["zero_point"])
    planned = executorch_planned_bytes(data)
    checks = [{"name": "cortex_m", "runtime": None, "model": path.name,
               "not_run": "ExecuTorch's Cortex-M runtime is not built here: feed golden.npz x_q on the board "
                          "(the TFLite Micro target cortex-m55 runs on an emulated Cortex-M55: verify --on qemu)"}]
    return {"model": {"file": path.name, "bytes": len(data), "runtime": "ExecuTorch (CMSIS-NN, cortex-m55)"},
            "memory": {"flash_bytes": len(data), "flash_what": "the .pte program", "ram_bytes": planned,
                       "ram_what": "ExecuTorch memory-planned buffers incl. CMSIS-NN scratch"},
            "cortex_m": {k: cm[k] for k in ("operators", "all_int8", "portable_ops", "io", "max_abs_diff")
                         if k in cm} | {"planned_memory_bytes": planned},
            "io_override": io, "golden_checks": checks, "golden_info": {}, "arrays": {"x": x, "x_q": x_q}}


def _manifest(artifact: Any, target: str, part: dict[str, Any], x: np.ndarray, golden_path: Path,
              headroom: float) -> dict[str, Any]:
    m = artifact.manifest
    inp, outp = m.to_dict()["input"], m.to_dict()["output"]
    if "io_override" in part:  # the Cortex-M program takes and returns int8 with its own parameters
        io = part.pop("io_override")
        inp = {**inp, "dtype": "int8", "scale": io["input"]["scale"], "zero_point": io["input"]["zero_point"]}
        outp = {**outp, "dtype": "int8", "scale": io["output"]["scale"], "zero_point": io["output"]["zero_point"]}
    out = {
        "bundle_format": BUNDLE_FORMAT, "target": target, "model": part["model"],
        "input": {"lead": m.spec.leads[0], "leads": list(m.spec.leads), "fs": m.spec.fs, "window": m.spec.window,
                  "window_s": m.spec.window / m.spec.fs, "units": f"{m.spec.units}, then preprocessed as below "
                  f"({m.preprocess.normalize} per window): the tensor takes the preprocessed window",
                  "tensor": inp, "preprocess": m.to_dict()["preprocess"]},
        "output": {"tensor": outp, "labels": list(m.labels), "multilabel": m.multilabel,
                   "activation": "sigmoid per label" if m.multilabel else "softmax over labels",
                   "thresholds": list(m.thresholds), "record_rule": m.record_rule},
        "memory": {**part["memory"], "headroom": f"{headroom:g} of the measured figure, rounded up to 1 KiB"
                   if target not in ("xnnpack", "cortex-m") else "none (planned by ExecuTorch ahead of time)"},
        "golden": {"file": GOLDEN, "n": int(len(x)), "source": golden_path.name,
                   "arrays": "x: float32 preprocessed windows; x_q: the same as the int8 tensor the device takes; "
                             "expected_<check>: raw outputs of that runtime on this host",
                   "checks": part["golden_checks"], **part["golden_info"]},
        "source_artifact": m.to_dict(),  # the whole artifact manifest: verify runs the model through it
        "versions": _versions(),
    }
    for key in ("tflm", "firmware", "ethos_u", "executorch", "cortex_m"):
        if key in part:
            out[key] = part[key]
    return out
