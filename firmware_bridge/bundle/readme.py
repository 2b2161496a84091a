"""The README.md of a vendor bundle (`firmware_bridge.bundle.package`): what a firmware engineer needs, from the manifest.

Every figure in it is read from the bundle manifest it is written beside, so the README and
manifest.json cannot disagree (a test checks the flash and RAM lines against the manifest).
"""
from __future__ import annotations

from typing import Any


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def memory_lines(man: dict[str, Any]) -> list[str]:
    """The README's flash and RAM lines (tests compare them with the manifest)."""
    mem = man["memory"]
    return [f"- Flash: {mem['flash_bytes']} bytes ({_kib(mem['flash_bytes'])}): {mem['flash_what']}; the model "
            f"`{man['model']['file']}` ({man['model']['bytes']} bytes) is the C array `{man['model']['c_array']['name']}`",
            f"- RAM: {mem['ram_bytes']} bytes ({_kib(mem['ram_bytes'])}): {mem['ram_what']}; arena headroom: "
            f"{mem['headroom']}"]


def firmware_lines(man: dict[str, Any]) -> list[str]:
    """The README's firmware section: how to build and run it, and what the emulated board measured."""
    f = man.get("firmware")
    if not f:
        return []
    if f.get("not_written"):
        return ["## Firmware", "", f"No firmware project in this bundle: {f['not_written']}.", ""]
    lines = ["## Firmware (`firmware/`)", "",
             f"A firmware project for a Cortex-M55 ({f['board']} board: code and constants in the ITCM, data in the "
             "DTCM, `mps3_an547.ld`): `main.cc` registers exactly the model's operators (`model_ops.h`), places the "
             f"{f['arena_bytes']}-byte tensor arena, runs the {f['golden_windows']} golden int8 windows "
             "(`golden_data.c` = golden.npz `x_q`) and prints every output, a CRC-32 of them and the memory used; "
             "exit status 0 only when all ran (2 model checksum, 5 arena too small, 8 fault: see `main.cc`). "
             "`mps3_an547.c` is the board layer (semihosting output, SysTick, stack painting, MSPLIM); replace it "
             "with your board's (`platform.h`). Rebuild it from this bundle and the vendored TFLite Micro + CMSIS-NN "
             "tree (verify first: `ecg-edge verify` refuses any file it did not package, `firmware/build/` "
             "included, so verify a fresh copy or `rm -rf firmware/build` before it):", "", "```sh",
             "ecg-edge verify . --on qemu                            # both builds, compared output by output",
             "make -C firmware TFLM=/path/to/tflite-micro            # firmware/build/cm55/firmware.elf",
             "make -C firmware TFLM=/path/to/tflite-micro run        # on QEMU: qemu-system-arm -M mps3-an547",
             "make -C firmware TFLM=/path/to/tflite-micro ARCH=host  # the same sources for this computer",
             "```", "",
             "`cmsis-nn-1xn-stride.patch` fixes CMSIS-NN's Helium (MVE) 1xN convolution, which read past its input "
             "for stride > 1 and changed the last output column; the Makefile applies it to a copy of the file.", ""]
    m = f.get("measured")
    if not m:
        return lines + [f"Not built when packaged: {f.get('not_measured', 'no toolchain')}.", ""]
    mem, ins = m["memory"], m["instructions_per_inference"]
    return lines + [
        f"Measured on QEMU {m['board']} with {m['toolchain']['gcc']} (from the linked ELF and the run):", "",
        "| what | bytes |", "|---|---|",
        f"| flash: model (`{man['model']['c_array']['name']}`) | {mem['model_bytes']:,} |",
        f"| flash: TFLite Micro + CMSIS-NN (registered operators only) | {mem['library_bytes']:,} |",
        f"| flash: harness, board layer, libc | {mem['other_code_bytes']:,} |",
        f"| **flash total** | **{mem['flash_bytes']:,}** |",
        f"| (golden test windows, harness only, not counted) | {mem['golden_test_bytes']:,} |",
        f"| RAM: .data + .bss (tensor arena {f['arena_bytes']:,} included) | {mem['ram_static_bytes']:,} |",
        f"| RAM: arena used on the Cortex-M55 (`arena_used_bytes()`) | {mem['arena_used_bytes']:,} |",
        f"| RAM: stack high-water mark (of {mem['stack_reserved_bytes']:,} reserved) | {mem['stack_peak_bytes']:,} |",
        f"| RAM: heap used (of {mem['heap_reserved_bytes']:,} reserved) | {mem['heap_peak_bytes']:,} |",
        f"| **RAM total** (.data + .bss + stack peak + heap used) | **{mem['ram_bytes']:,}** |", "",
        f"Work: {ins['median']:,} instructions per inference (median of {len(ins['per_window'])} windows; "
        "QEMU's instruction clock, not cycles or milliseconds). Outputs: bit-identical to the host build on "
        f"{m['bit_exact_windows']} of {m['windows']} windows; {m['values_differing_from_reference']} values one step "
        f"from {m['reference']}; decisions equal on {m['decisions_equal']}.", ""]


def _input(man: dict[str, Any]) -> list[str]:
    i, t = man["input"], man["input"]["tensor"]
    p = i["preprocess"]
    q = (f"int8, real = (q - ({t['zero_point']})) * {t['scale']:.9g}, so q = clamp(round(x / {t['scale']:.9g}) + "
         f"({t['zero_point']}), -128, 127)" if t["dtype"] == "int8" else "float32")
    return [f"- Lead {i['lead']}, {i['fs']:g} Hz, one window of {i['window']} samples ({i['window_s']:g} s), "
            f"tensor shape {t['shape']} ({t['name']})",
            f"- Signal in {i['units']}: high-pass {p['highpass_hz']} Hz, low-pass {p['lowpass_hz']} Hz, notch "
            f"{p['notch_hz']}, resampled to {p['fs_out']:g} Hz, normalised {p['normalize']} per window "
            "(the edge runtime's `edge_runtime.signal.Preprocessor` is the reference; `manifest.json` holds it)",
            f"- Input tensor: {q}"]


def _output(man: dict[str, Any]) -> list[str]:
    o, t = man["output"], man["output"]["tensor"]
    deq = f"int8, logit = (q - ({t['zero_point']})) * {t['scale']:.9g}" if t["dtype"] == "int8" else "float32 logits"
    pairs = ", ".join(f"{lab}{' >=' if o['multilabel'] else ''} {th:.4f}" for lab, th in zip(o["labels"], o["thresholds"]))
    rule = o.get("record_rule", "mean")
    return [f"- Output tensor: {t['shape']}, {deq}", f"- Probabilities: {o['activation']}",
            f"- A label is present when its probability clears its threshold: {pairs}" if o["multilabel"] else
            f"- The decided label is the one with the largest probability / threshold; thresholds: {pairs}",
            f"- A recording of several windows is decided on the {'mean' if rule == 'mean' else 'maximum'} of its "
            f"windows' probabilities per label (record rule {rule!r}), then by the rule above, as `ecg-edge "
            "compare` scores a recording and the edge runtime's `record` event decides one"]


def _how_to_call(man: dict[str, Any]) -> list[str]:
    target, name = man["target"], man["model"]["c_array"]["name"]
    if target in ("xnnpack", "cortex-m"):
        return ["```cpp",
                f"// {man['model']['file']} is an ExecuTorch program: load it from {name} with a BufferDataLoader,",
                "// plan memory with the sizes the program declares, then run method \"forward\":",
                f"executorch::extension::BufferDataLoader loader({name}, {name}_len);",
                "auto program = executorch::runtime::Program::load(&loader);",
                "auto method = program->load_method(\"forward\", &memory_manager);",
                "method->set_input(input_tensor, 0); method->execute(); auto out = method->get_output(0);",
                "```"]
    ops = man["tflm"]["operators"]
    return ["```cpp", "#include \"model_data.h\"", "#include \"model_ops.h\"",
            "#include \"tensorflow/lite/micro/micro_interpreter.h\"", "",
            f"alignas(16) static uint8_t tensor_arena[{man['memory']['ram_bytes']}];",
            f"const tflite::Model* model = tflite::GetModel({name});",
            f"tflite::MicroMutableOpResolver<{len(ops)}> resolver;",
            "RegisterEcgModelOps(resolver);  // " + ", ".join(man["tflm"]["resolver"]),
            "tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, sizeof(tensor_arena));",
            "interpreter.AllocateTensors();",
            "// quantize one preprocessed window into interpreter.input(0)->data.int8, then:",
            "interpreter.Invoke();  // logits in interpreter.output(0)->data.int8", "```"]


def _checks(man: dict[str, Any]) -> list[str]:
    out = []
    for c in man["golden"]["checks"]:
        if c.get("not_run"):
            out.append(f"- `{c['name']}`: not run on a host: {c['not_run']}")
        else:
            out.append(f"- `{c['name']}`: `{c['model']}` on {c['runtime']} must match golden.npz "
                       f"within {c['tolerance']:g} {c['units']}")
    if man["golden"].get("host_model"):
        out.append(f"- Host model: {man['golden']['host_model']}")
    return out


def _target_facts(man: dict[str, Any]) -> list[str]:
    if "ethos_u" in man:
        v = man["ethos_u"]
        return [f"- Vela ({v['accelerator']}, {v['system_config']}, {v['memory_mode']}): "
                f"{v['npu_op_share']:.0%} of operators on the NPU ({v['npu_ops']} NPU, {v['cpu_ops']} CPU), "
                f"SRAM {v['sram_kib']:.1f} KiB, flash {v['on_chip_flash_kib'] + v['off_chip_flash_kib']:.1f} KiB, "
                f"DRAM {v['dram_kib']:.1f} KiB, "
                f"{v['cycles_total']:.0f} cycles, {v['inference_time_s'] * 1e3:.3f} ms at {v['clock_hz'] / 1e6:g} MHz "
                "(NPU part; Vela's estimate)", f"- Vela's summary: `{v['summary_csv']}`"]
    if "tflm" in man and "arena_measured_bytes" in man["tflm"]:
        t = man["tflm"]
        return [f"- TFLite Micro arena measured on the host interpreter: {t['arena_measured_bytes']} bytes; "
                f"give the firmware {t['arena_bytes']} bytes", f"- Operators: {', '.join(t['operators'])}"]
    if "cortex_m" in man:
        return [f"- CMSIS-NN operators: {', '.join(sorted(man['cortex_m'].get('operators', {})))}",
                f"- All int8: {man['cortex_m'].get('all_int8')}"]
    return [f"- ExecuTorch bundled program: `{man['executorch']['bundled_program']}` "
            f"({man['executorch']['test_cases']} test cases)"]


def render_readme(man: dict[str, Any]) -> str:
    """README.md text for a bundle manifest (before its `files` table is added)."""
    sig = man.get("signature")
    lines = [f"# ECG model bundle: {man['target']}", "",
             f"Model `{man['model']['file']}` ({man['model']['runtime']}), labels {', '.join(man['output']['labels'])}. "
             "Generated by `ecg-edge package`; check it with `ecg-edge verify`.", "",
             "## Memory", "", *memory_lines(man), *_target_facts(man), "",
             "## Input", "", *_input(man), "", "## Output", "", *_output(man), "",
             "## How to call it", "", *_how_to_call(man), "", *firmware_lines(man),
             "## How to verify it", "",
             "```sh", "ecg-edge verify ." + (" --pubkey signing_key.pub.pem" if sig else "")
             + (" [--on qemu]" if man.get("firmware") else ""), "```", "",
             "It recomputes every sha256 in `manifest.json` (`files`) and the manifest's own "
             "(`manifest.json.sha256`), checks that the C array in `model_data.c` holds exactly the model's bytes"
             + (", checks the Ed25519 signature `manifest.json.sig` (raw 64 bytes over the exact bytes of "
                "manifest.json)" if sig else "") + " and runs the golden inputs (`golden.npz`) on the host runtimes:",
             "", *_checks(man), "",
             "On the device: feed `golden.npz` `x_q` (or `x` for float input) window by window and compare "
             "with the expected outputs within the tolerance above.", ""]
    return "\n".join(lines)
