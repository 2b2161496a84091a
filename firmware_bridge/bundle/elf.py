"""Flash and static RAM of a linked Cortex-M firmware image, from `arm-none-eabi-size` and the map file."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any


def elf_memory(image: Path, model_bytes: int, tools: dict[str, str] | None = None) -> dict[str, Any]:
    """Flash and static RAM of a linked Cortex-M image, from `arm-none-eabi-size -A` and the map file.

    flash: everything loaded into the ITCM (code, constants, init arrays, .data's initial values)
    except the golden windows (.ecg_golden, test data of the harness); split into the model array,
    the TFLite Micro + CMSIS-NN library (objects of libtflm.a, only the registered operators are
    linked) and the rest (harness, board layer, libc/libm/libgcc). ram_static: .data + .bss (the
    tensor arena is in .bss)."""
    size = (tools or {}).get("size") or shutil.which("arm-none-eabi-size") or "arm-none-eabi-size"
    text = subprocess.run([size, "-A", str(image)], capture_output=True, text=True, check=True).stdout
    sections = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+", text, re.M)}
    loaded = sum(v for k, v in sections.items() if k in (".text", ".ARM.extab", ".ARM.exidx", ".init_array", ".data"))
    golden = sections.get(".ecg_golden", 0)
    library = _library_bytes(image.with_suffix(".map"))
    return {"flash_bytes": loaded, "model_bytes": model_bytes, "library_bytes": library,
            "other_code_bytes": loaded - model_bytes - library, "golden_test_bytes": golden,
            "data_bytes": sections.get(".data", 0), "bss_bytes": sections.get(".bss", 0),
            "ram_static_bytes": sections.get(".data", 0) + sections.get(".bss", 0),
            "heap_reserved_bytes": sections.get(".heap", 0), "stack_reserved_bytes": sections.get(".stack", 0),
            "sections": sections}


_MAP_LINE = re.compile(r"^ (\.(?:text|rodata|data|ARM\.ex\w+)\S*)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")


def _library_bytes(map_file: Path) -> int:
    """Bytes of flash-resident input sections that came from libtflm.a, from the linker map."""
    total, pending, in_discarded = 0, None, False
    for line in map_file.read_text(errors="replace").splitlines():
        if line.startswith("Discarded input sections"):
            in_discarded = True
        elif line.startswith("Memory Configuration") or line.startswith("Linker script and memory map"):
            in_discarded = False
        if in_discarded:
            continue
        name_only = re.match(r"^ (\.(?:text|rodata|data|ARM\.ex\w+)\S*)$", line)
        if name_only:
            pending = name_only.group(1)
            continue
        m = _MAP_LINE.match(line)
        if m and (m.group(1) or pending) and "libtflm.a(" in m.group(4):
            total += int(m.group(3), 16)
        pending = None
    return total
