"""The firmware of a TFLite Micro bundle on an emulated Arm board (firmware_bridge/bundle/firmware.py).

An int8 student_s is packaged for `cortex-m55`; its firmware/ is built with arm-none-eabi-gcc for
the Cortex-M55 and with the host compiler from the same sources, run on QEMU's mps3-an547 and
natively, and compared output by output. Needs the Arm toolchain and QEMU (Debian packages; .ci/run
installs them) and the vendored TFLite Micro tree (../shared/vendor): skipped with the reason where
they are missing, failed instead under CI=true.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.bundle import firmware as fw

pytest.importorskip("tflite_micro", reason="the 'export' extra (tflite-micro) is the firmware's reference")
pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to export the student")


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}: CI must run the firmware tests (.ci/run installs the toolchain)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    try:
        return fw.toolchain()
    except fw.ToolchainError as exc:
        _missing(str(exc))


@pytest.fixture(scope="module")
def tree() -> fw.TflmTree:
    try:
        return fw.tflm_tree()
    except Exception as exc:  # noqa: BLE001 - ConfigError naming what was tried
        _missing(f"vendored TFLite Micro tree unavailable: {exc}")


@pytest.fixture(scope="module")
def bundle(student_export: Path, tools: dict[str, str], tree: fw.TflmTree,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ecg_edge.cli import main

    out = tmp_path_factory.mktemp("fw") / "cortex-m55"
    assert main(["package", "--artifact", str(student_export / "tflite-int8"), "--target", "cortex-m55",
                 "--out", str(out)]) == 0
    return out


def _manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def _copy(b: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(b, tmp_path / b.name))


def _check(b: Path, tree: fw.TflmTree, tools: dict[str, str]) -> dict:
    man = _manifest(b)
    with np.load(b / "golden.npz") as z:
        x_q, ref = z["x_q"], z["expected_tflite_micro"]
    t = man["output"]["tensor"]
    return fw.check_firmware(b, x_q=x_q, reference=ref, reference_name="expected_tflite_micro",
                             output_scale=t["scale"], output_zero_point=t["zero_point"],
                             thresholds=man["output"]["thresholds"], multilabel=man["output"]["multilabel"],
                             tree=tree, tools=tools)


def test_kernel_sources_are_the_registered_operators_only(tree: fw.TflmTree) -> None:
    srcs = fw.kernel_sources(tree, ["AddConv2D", "AddFullyConnected", "AddReshape"])
    assert srcs == ["tensorflow/lite/micro/kernels/cmsis_nn/conv.cc", "tensorflow/lite/micro/kernels/conv_common.cc",
                    "tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cc",
                    "tensorflow/lite/micro/kernels/fully_connected_common.cc",
                    "tensorflow/lite/micro/kernels/reshape.cc", "tensorflow/lite/micro/kernels/reshape_common.cc"]
    with pytest.raises(fw.FirmwareError, match="AddNoSuchOp"):
        fw.kernel_sources(tree, ["AddNoSuchOp"])


def test_harness_output_parsing_and_instruction_calibration() -> None:
    text = ("semihosting noise\necg arena_used 21444 28672\necg calibration 64000 2000000\n"
            "ecg out 1 32000 0102\necg out 0 40000 ff80\necg stack_peak 2080\necg heap_peak 0\n"
            "ecg outputs_crc32 1234abcd\necg status 0\n")
    run = fw._parse("test", text, 0, 2)
    assert run.outputs.tolist() == [[-1, -128], [1, 2]]  # ordered by window index
    assert run.instructions() == [1_000_000, 1_250_000]  # 64000 ticks per 2 M instructions
    assert (run.arena_used, run.stack_peak, run.heap_peak, run.outputs_crc32) == (21444, 2080, 0, "1234abcd")
    assert fw._parse("test", "ecg out 0 0 00\n", 0, 1).instructions() is None  # no counter on the host


@pytest.mark.slow
def test_cortex_m55_bundle_runs_bit_exact_on_the_emulated_board(bundle: Path) -> None:
    """Acceptance: every golden window's int8 output on mps3-an547 equals the host build's bit for bit,
    is at most one step from the Python TFLite Micro interpreter, and every decision is identical."""
    from firmware_bridge.bundle import verify_bundle

    report = verify_bundle(bundle, on="qemu")
    row = {c.name: c for c in report.checks}["firmware: mps3-an547"]
    r = report.firmware
    assert row.status == "ok" and r["reference"] == "the Python tflite-micro interpreter"
    assert r["windows"] == _manifest(bundle)["golden"]["n"] == r["bit_exact_windows"] == r["decisions_equal"]
    assert r["max_steps_vs_reference"] <= 1
    assert r["outputs_crc32"] == r["host_outputs_crc32"]
    with np.load(bundle / "golden.npz") as z:  # the CRC the board printed is over the reference's bytes (or 1 step)
        if r["values_differing_from_reference"] == 0:
            assert r["outputs_crc32"] == f"{zlib.crc32(z['expected_tflite_micro'].tobytes()):08x}"


@pytest.mark.slow
def test_memory_is_measured_from_the_elf_and_meets_the_goals(bundle: Path) -> None:
    man = _manifest(bundle)
    f = man["firmware"]["measured"]
    mem = f["memory"]
    assert man["memory"]["flash_bytes"] == mem["flash_bytes"] and man["memory"]["ram_bytes"] == mem["ram_bytes"]
    assert "measured" in man["memory"]["flash_what"] and "measured" in man["memory"]["ram_what"]
    assert mem["model_bytes"] == man["model"]["bytes"]
    assert mem["flash_bytes"] == mem["model_bytes"] + mem["library_bytes"] + mem["other_code_bytes"]
    assert 20_000 < mem["library_bytes"] < mem["flash_bytes"] and mem["other_code_bytes"] > 0
    assert mem["golden_test_bytes"] >= man["golden"]["n"] * man["input"]["window"]  # counted apart
    assert mem["ram_static_bytes"] >= man["tflm"]["arena_bytes"]  # the arena lives in .bss
    assert 0 < mem["arena_used_bytes"] <= man["tflm"]["arena_bytes"]
    assert 256 < mem["stack_peak_bytes"] < mem["stack_reserved_bytes"] and mem["heap_peak_bytes"] == 0
    assert mem["ram_bytes"] == mem["ram_static_bytes"] + mem["stack_peak_bytes"] + mem["heap_peak_bytes"]
    # student_s goals: flash (model + library with its operators) <= 256 KiB, RAM <= 64 KiB
    assert mem["flash_bytes"] <= 256 * 1024 and mem["ram_bytes"] <= 64 * 1024
    ins = f["instructions_per_inference"]
    assert 10_000 < ins["min"] <= ins["median"] <= ins["max"] < 1.05 * ins["min"]  # deterministic per window
    readme = (bundle / "README.md").read_text()
    assert f"| **flash total** | **{mem['flash_bytes']:,}** |" in readme
    assert f"| **RAM total** (.data + .bss + stack peak + heap used) | **{mem['ram_bytes']:,}** |" in readme
    assert f"{ins['median']:,} instructions per inference" in readme


@pytest.mark.slow
def test_firmware_sources_build_without_warnings(bundle: Path) -> None:
    man = _manifest(bundle)
    builds = man["firmware"]["measured"]["builds"]
    for arch, b in builds.items():
        log = fw.cache_root() / "firmware" / b["key"] / "build.log"
        assert log.is_file(), arch
        assert fw.warnings_in(log.read_text()) == [], arch
    files = {p.name for p in (bundle / "firmware").iterdir()}
    assert set(fw.TEMPLATE_FILES) | {"golden_data.c", "golden_data.h", "config.mk"} == files
    assert all(f"firmware/{n}" in man["files"] for n in files)  # checksummed like every other file


@pytest.mark.slow
def test_flipped_model_byte_fails_the_emulated_run(bundle: Path, tree: fw.TflmTree, tools: dict[str, str],
                                                   tmp_path: Path) -> None:
    """A changed byte of model_data.c (manifest checksum updated): `verify` stops at the C array check;
    the firmware itself refuses the model (status 2); with the firmware's own CRC updated as well, its
    outputs differ from the interpreter's and the check names the window and the output index."""
    from firmware_bridge.bundle import BundleError, verify_bundle

    b = _copy(bundle, tmp_path)
    src = (b / "model_data.c").read_text()
    model = bytearray((b / "model.tflite").read_bytes())
    i = int(len(model) * 0.6)  # inside the weights (they are most of the file)
    model[i] ^= 0xFF
    rows = re.search(r"\{\n(.*)\n\};", src, re.S)
    body = ",\n  ".join(", ".join(f"0x{v:02x}" for v in model[j:j + 12]) for j in range(0, len(model), 12))
    (b / "model_data.c").write_text(src[:rows.start(1)] + "  " + body + src[rows.end(1):])
    man = _manifest(b)
    import hashlib

    man["files"]["model_data.c"] = hashlib.sha256((b / "model_data.c").read_bytes()).hexdigest()
    blob = (json.dumps(man, indent=2) + "\n").encode()
    (b / "manifest.json").write_bytes(blob)
    (b / "manifest.json.sha256").write_text(f"{hashlib.sha256(blob).hexdigest()}  manifest.json\n")
    with pytest.raises(BundleError, match="C array check failed"):
        verify_bundle(b, on="qemu")
    with pytest.raises(fw.FirmwareError, match=r"status 2 \(model checksum mismatch\)"):
        _check(b, tree, tools)
    h = b / "firmware" / "golden_data.h"
    h.write_text(re.sub(r"ECG_MODEL_CRC32 0x[0-9a-f]{8}u", f"ECG_MODEL_CRC32 0x{zlib.crc32(bytes(model)):08x}u",
                        h.read_text()))
    with pytest.raises(fw.FirmwareError, match=r"window \d+ output \d+: mps3-an547 gives -?\d+, expected_tflite_micro"):
        _check(b, tree, tools)


@pytest.mark.slow
def test_too_small_arena_fails_loudly_on_the_board(bundle: Path, tree: fw.TflmTree, tools: dict[str, str]) -> None:
    n_out = len(_manifest(bundle)["output"]["labels"])
    small = fw.build(bundle, "cm55", tree=tree, tools=tools, arena_bytes=4096)
    run = fw.run_qemu(small.image, n_out, tools)
    assert run.status == 5 and run.outputs.shape[0] == 0
    assert any("AllocateTensors failed" in e for e in run.errors)
    with pytest.raises(fw.FirmwareError, match=r"status 5 \(AllocateTensors failed"):
        fw._require_ok(bundle, run, 1)


@pytest.mark.slow
def test_a_stack_overflow_is_caught_by_msplim(bundle: Path, tree: fw.TflmTree, tools: dict[str, str],
                                              tmp_path: Path) -> None:
    """The stack limit register stops an overflow before it corrupts the arena: a 1 KiB stack faults."""
    b = _copy(bundle, tmp_path)
    mk = b / "firmware" / "Makefile"
    mk.write_text(mk.read_text().replace("STACK_BYTES ?= 16384", "STACK_BYTES ?= 1024"))
    run = fw.run_qemu(fw.build(b, "cm55", tree=tree, tools=tools).image, 1, tools)
    assert run.status == 8 and any("stack overflow (MSPLIM)" in e for e in run.errors)


@pytest.mark.slow
def test_the_cmsis_nn_fix_is_what_makes_the_board_match(bundle: Path, tree: fw.TflmTree, tools: dict[str, str],
                                                        tmp_path: Path) -> None:
    """Without cmsis-nn-1xn-stride.patch the Helium 1xN convolution (stride 2 here) reads past its input
    and the board's outputs differ from the host build's: the bit-exact check catches it."""
    b = _copy(bundle, tmp_path)
    mk = b / "firmware" / "Makefile"
    mk.write_text(mk.read_text().replace("CMSIS_NN_FIX ?= 1", "CMSIS_NN_FIX ?= 0"))  # the vendored file as it is
    with pytest.raises(fw.FirmwareError, match=r"window \d+ output \d+: mps3-an547 gives .* the host build"):
        _check(b, tree, tools)


@pytest.mark.slow
def test_a_vendor_rebuilds_and_runs_it_with_make_alone(bundle: Path, tree: fw.TflmTree, tools: dict[str, str],
                                                       tmp_path: Path) -> None:
    """The README's commands: `make -C firmware TFLM=...` and `make ... run` from the bundle folder alone
    (OBJ points at the library objects the check already compiled, so only the harness is rebuilt)."""
    import subprocess

    b = _copy(bundle, tmp_path)
    man = _manifest(b)
    obj = next((fw.cache_root() / "tflm" / tree.sha256[:16]).glob("obj-cm55-*"))
    res = subprocess.run(["make", "-C", str(b / "firmware"), f"TFLM={tree.root}", f"OBJ={obj}", "run"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    run = fw._parse("make run", res.stdout + res.stderr, res.returncode, len(man["output"]["labels"]))
    assert (b / "firmware" / "build" / "cm55" / "firmware.elf").is_file()
    with np.load(b / "golden.npz") as z:
        assert np.array_equal(run.outputs, z["expected_tflite_micro"]) or \
            np.abs(run.outputs.astype(int) - z["expected_tflite_micro"].astype(int)).max() <= 1
    assert run.outputs_crc32 == man["firmware"]["measured"]["outputs_crc32"]


@pytest.mark.slow
def test_missing_toolchain_is_one_error_line_naming_the_packages(student_export: Path, tmp_path: Path) -> None:
    """cortex-m55 needs the Arm toolchain: without it on PATH, one line naming the Debian packages,
    exit status 2, and no half-written bundle."""
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"  # a PATH with python but without arm-none-eabi-gcc or qemu
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    out = tmp_path / "b"
    res = subprocess.run([sys.executable, "-m", "ecg_edge.cli", "package", "--artifact",
                          str(student_export / "tflite-int8"), "--target", "cortex-m55", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": str(bin_dir)},
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 2, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ecg-edge: error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr
    assert "arm-none-eabi-gcc" in errors[0] and "apt-get install gcc-arm-none-eabi" in errors[0]
    assert not out.exists()


@pytest.mark.slow
def test_bench_firmware_prints_the_figures(bundle: Path, student_export: Path, tmp_path: Path) -> None:
    """bench/firmware.py on the same export: JSON with the measured figures (the images come from the cache)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "firmware.json"
    res = subprocess.run([sys.executable, str(repo / "bench" / "firmware.py"), "--export", str(student_export),
                          "--out", str(out)], capture_output=True, text=True, timeout=900, cwd=repo)
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads(out.read_text())["targets"]["cortex-m55"]
    m = _manifest(bundle)["firmware"]["measured"]
    assert r["golden_windows"] == r["bit_exact_windows"] == m["windows"] and r["verify_on_qemu"]["ok"]
    assert r["flash_bytes"] == m["memory"]["flash_bytes"] == r["model_bytes"] + r["library_flash_bytes"] \
        + r["other_code_bytes"]
    assert r["ram"]["total_bytes"] == m["memory"]["ram_bytes"]
    a, b = r["instructions_per_inference"]["median"], m["instructions_per_inference"]["median"]
    assert abs(a - b) <= 0.001 * b  # the same image; one SysTick tick is 31.25 instructions
    assert set(r["build_seconds"]) == {"cm55", "host"}
