"""One registry style (edge_runtime.registry) behind models, objectives, backends and datasets, and
one definition of each small helper (file digest, package versions, WFDB reader, stream accounting)."""
from __future__ import annotations

import argparse
import ast
import functools
from pathlib import Path

import pytest

from edge_runtime.errors import ConfigError
from edge_runtime.registry import Registry

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_runtime", "firmware_bridge", "train", "distill", "ecg_edge", "bench", "tests")


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]


@functools.cache
def _nodes() -> tuple[tuple[Path, tuple[ast.AST, ...]], ...]:
    """Every source file's AST nodes, parsed once for all the lookups of this module."""
    return tuple((path, tuple(ast.walk(ast.parse(path.read_text(encoding="utf-8"))))) for path in _sources())


def _calls(name: str) -> list[str]:
    """'path:line' of every call whose dotted callee ends with `name` (e.g. 'metadata.version')."""
    last = name.rsplit(".", 1)[-1]
    found = []
    for path, nodes in _nodes():
        for node in nodes:
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)) == last \
                    and ast.unparse(f).endswith(name):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def _definitions(name: str) -> list[str]:
    """'path' of every class or function definition called `name`."""
    return [str(path.relative_to(REPO)) for path, nodes in _nodes() for node in nodes
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name]


def test_registry_decorator_lookup_tags_and_errors() -> None:
    reg: Registry = Registry("widget")

    @reg.register("b", size=2)
    @reg.register("a", size=1)
    def make() -> str:
        """Make a widget.

        More text."""
        return "w"

    assert list(reg) == ["a", "b"] and reg.names(size=2) == ["b"] and reg.names("a*") == ["a"]
    assert reg.get("a") is make and reg.entry("b").size == 2 and reg.entry("a").doc == "Make a widget."
    with pytest.raises(ConfigError, match=r"widget: unknown name 'c'; expected one of a, b"):
        reg.get("c")
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register("a")(lambda: None)
    with pytest.raises(AttributeError, match="colour"):
        reg.entry("a").colour


def test_the_four_tables_are_registries() -> None:
    pytest.importorskip("torch")
    from edge_runtime.backends import BACKENDS
    from train.data.sources import DATASETS
    from train.models import MODELS
    from train.objectives import OBJECTIVES

    for table in (MODELS, OBJECTIVES, BACKENDS, DATASETS):
        assert isinstance(table, Registry) and len(table) > 0
    assert BACKENDS.names(runtime="litert") == ["litert", "tflite_runtime", "tflite_micro"]
    assert all(e == OBJECTIVES.get(e).name for e in OBJECTIVES)


def test_one_list_of_dataset_names() -> None:
    from ecg_edge import demo
    from train.data import download
    from train.data.sources import DATASET_NAMES, DATASETS, DEMO_DATASETS, DOWNLOADABLE

    assert DATASET_NAMES == tuple(DATASETS) and set(DOWNLOADABLE) | set(DEMO_DATASETS) <= set(DATASET_NAMES)
    assert set(download.DATASETS) == set(DOWNLOADABLE)  # every downloadable dataset has its remote files
    assert demo.DATA_KINDS is DEMO_DATASETS
    cli = (REPO / "ecg_edge" / "cli.py").read_text(encoding="utf-8")
    assert "choices=DOWNLOADABLE" in cli and '"cinc2017", "mitdb"' not in cli


def test_torch_free_copies_agree_with_the_registries() -> None:
    """train.config and the CLI name objectives and backends without importing torch or scipy: they
    must list exactly what the registries hold."""
    pytest.importorskip("torch")
    from ecg_edge.cli import build_parser
    from edge_runtime.backends import BACKENDS
    from train.config import OBJECTIVE_NAMES, TEXT_OBJECTIVES
    from train.objectives import OBJECTIVES

    assert OBJECTIVE_NAMES == tuple(OBJECTIVES)
    assert TEXT_OBJECTIVES == tuple(n for n in OBJECTIVES if "text" in OBJECTIVES.get(n).needs)
    choices = {a.dest: a.choices for p in _subparsers(build_parser()) for a in p._actions if a.choices}
    assert tuple(choices["backend"]) == tuple(BACKENDS) and tuple(choices["objective"]) == tuple(OBJECTIVES)


def _subparsers(parser):  # every (sub)parser of the CLI
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _subparsers(sub)


def test_one_file_digest_and_one_version_lookup() -> None:
    assert _definitions("sha256_of") == ["edge_runtime/provenance.py"] and not _definitions("_sha256")
    for call in ("file_digest", "metadata.version"):
        where = _calls(call)
        assert where and all(c.startswith("edge_runtime/provenance.py:") for c in where), where


def test_one_wfdb_reader_for_datasets_stream_and_replay(mitdb_root: Path) -> None:
    """train's dataset readers, `stream --source replay:` and the wearable replay read WFDB through
    edge_runtime.wfdb_io alone; a part read (one lead, from start_s for duration_s) is a slice of the whole."""
    pytest.importorskip("wfdb")
    import numpy as np

    from edge_runtime.wfdb_io import read_wfdb_mv
    from firmware_bridge.replay import replay_signal

    assert _definitions("read_wfdb_mv") == ["edge_runtime/wfdb_io.py"]
    assert all(c.startswith("edge_runtime/wfdb_io.py:") for c in _calls("rdrecord") if not c.startswith("tests/"))
    whole = read_wfdb_mv(mitdb_root / "100")
    part = read_wfdb_mv(mitdb_root / "100.hea", ("MLII",), start_s=2.0, duration_s=3.0)
    i, fs = whole.sig_name.index("MLII"), int(whole.fs)
    assert part.signal.dtype == np.float32 and part.sig_name == ("MLII",)
    np.testing.assert_array_equal(part.signal[0], whole.signal[i, 2 * fs:5 * fs])
    y = replay_signal(mitdb_root / "100", fs_out=whole.fs, lead="MLII", start_s=2.0, duration_s=3.0)
    np.testing.assert_array_equal(y, np.rint(part.signal[0].astype(np.float64) * 1000.0).astype(np.int32))
