"""The README.md of a vendor bundle (`distill.package`): what a firmware engineer needs, from the manifest.

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
    return [f"- Flash (model): {mem['flash_bytes']} bytes ({_kib(mem['flash_bytes'])}), "
            f"`{man['model']['file']}` = the C array `{man['model']['c_array']['name']}`",
            f"- RAM: {mem['ram_bytes']} bytes ({_kib(mem['ram_bytes'])}): {mem['ram_what']}; headroom: {mem['headroom']}"]


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
    pairs = ", ".join(f"{lab} >= {th:.4f}" for lab, th in zip(o["labels"], o["thresholds"]))
    return [f"- Output tensor: {t['shape']}, {deq}", f"- Probabilities: {o['activation']}",
            f"- A label is present when its probability clears its threshold: {pairs}"]


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
             "## How to call it", "", *_how_to_call(man), "",
             "## How to verify it", "",
             "```sh", "ecg-edge verify ." + (" --pubkey signing_key.pub.pem" if sig else ""), "```", "",
             "It recomputes every sha256 in `manifest.json` (`files`) and the manifest's own "
             "(`manifest.json.sha256`), checks that the C array in `model_data.c` holds exactly the model's bytes"
             + (", checks the Ed25519 signature `manifest.json.sig` (raw 64 bytes over the exact bytes of "
                "manifest.json)" if sig else "") + " and runs the golden inputs (`golden.npz`) on the host runtimes:",
             "", *_checks(man), "",
             "On the device: feed `golden.npz` `x_q` (or `x` for float input) window by window and compare "
             "with the expected outputs within the tolerance above.", ""]
    return "\n".join(lines)
