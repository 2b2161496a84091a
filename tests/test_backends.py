"""Artifacts and inference backends: parity with PyTorch on real preprocessed windows, integrity, errors.

A tiny student (tests/tiny_export.py) is trained for a few seconds on seeded synthetic windows and
exported once per session to fp32 and int8 .tflite, fp32 and int8 .pte, and fp32 .onnx. Evaluation
windows come from other records of the generator than training and calibration.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.artifact import MANIFEST_MAX_BYTES, Manifest, TensorSpec, load_artifact
from edge_runtime.backends import ArtifactModel, Backend, open_backend, probabilities, quantize
from edge_runtime.errors import ArtifactError, ConfigError, MissingExtraError, SignalShapeError
from edge_runtime.signal import PreprocessConfig

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to export test models")
import tiny_export as tx  # noqa: E402  (needs torch)
from tiny_export import KINDS, Exports  # noqa: E402
from train.data.synthetic import Synthetic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
def _output_step(exports: Exports, kind: str) -> float:
    """The int8 output scale: from the manifest (int8 output) or the reference's last dequantize."""
    spec = load_artifact(exports.get(kind).manifest).manifest.output
    if spec.quantized:
        return float(spec.scale)
    graph = exports.get(kind).reference.graph
    out = next(n for n in graph.nodes if n.op == "output").args[0]
    node = out[0] if isinstance(out, (list, tuple)) else out
    assert "dequantize" in str(node.target), node.target
    return float(node.args[1])


def _copy(exports: Exports, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exports.get(kind).manifest.parent, tmp_path / kind))


@pytest.mark.parametrize("kind", list(KINDS))
def test_backend_matches_pytorch_reference(exports: Exports, kind: str, record_property: Any) -> None:
    art = load_artifact(exports.get(kind).manifest)
    backend = open_backend(art)
    logits = backend.run(exports.x)
    ref = exports.reference(kind, exports.x)
    assert logits.dtype == np.float32 and logits.shape == (len(exports.x), len(tx.LABELS))
    diff = float(np.abs(logits - ref).max())
    agree = float((logits.argmax(1) == ref.argmax(1)).mean())
    record_property("max_abs_diff", diff)
    record_property("agreement", agree)
    print(f"\n{kind}: max |diff| {diff:.3g}, decision agreement {agree:.3f}, logits span "
          f"{ref.min():.1f}..{ref.max():.1f}")
    if art.manifest.precision == "fp32":
        assert diff <= 1e-4
        return
    # int8 vs the convert_pt2e module: the runtimes requantize in fixed point, the reference in float,
    # so each requantization's rounding tie can move the output by a step (scale); the bound is the
    # one parity uses, 2 sqrt(requantizations) steps (distill.parity.int8_steps: 6.3 for test_student's
    # 10). Measured on test_student: 3 steps for the .tflite, 1 for the .pte.
    from distill.parity import int8_steps

    step = _output_step(exports, kind)
    print(f"{kind}: output step {step:.4g}, max |diff| = {diff / step:.2f} steps")
    assert diff <= int8_steps(exports.get(kind).reference) * step + 1e-6
    assert agree >= 0.95


def test_int8_tflite_takes_int8_io_and_pte_keeps_float_io(exports: Exports) -> None:
    tfl = load_artifact(exports.get("tflite_int8").manifest).manifest
    pte = load_artifact(exports.get("pte_int8").manifest).manifest
    assert tfl.input.dtype == tfl.output.dtype == "int8" and tfl.input.scale > 0
    assert pte.precision == "int8" and pte.input.dtype == "float32" and pte.input.scale is None
    # The backend's input quantization is torch's, element for element, on real windows.
    x = torch.from_numpy(exports.x)
    want = torch.ops.quantized_decomposed.quantize_per_tensor(x, tfl.input.scale, tfl.input.zero_point,
                                                               -128, 127, torch.int8).numpy()
    np.testing.assert_array_equal(quantize(exports.x, tfl.input.scale, tfl.input.zero_point), want)


@pytest.mark.parametrize("kind", list(KINDS))
def test_batch_gives_the_same_rows_as_single_windows(exports: Exports, kind: str) -> None:
    backend = open_backend(exports.get(kind).manifest)
    x = exports.x[:5]
    rows = np.concatenate([backend.run(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(backend.run(x), rows)


@pytest.mark.parametrize("kind", ["tflite_int8", "tflite_fp32"])
def test_tflite_micro_host_interpreter_matches_litert(exports: Exports, kind: str) -> None:
    """The microcontroller's interpreter (reference kernels) on the same .tflite: int8 logits equal
    LiteRT's (XNNPACK) to within the depth rule's steps (edge_runtime.backends.int8_tolerance_steps,
    the tolerance of a bundle's LiteRT golden check; measured on test_student: 2 of 6), float ones
    to float rounding."""
    from edge_runtime.backends import int8_tolerance_steps
    from firmware_bridge.bundle.package import tflite_requantizations

    manifest = exports.get(kind).manifest
    micro, lite = open_backend(manifest, backend="tflite_micro"), open_backend(manifest)
    assert micro.name == "tflite_micro" and micro.threads == 1
    x = exports.x[:6]
    got, want = micro.run(x), lite.run(x)
    m = load_artifact(manifest).manifest
    steps = int(int8_tolerance_steps(tflite_requantizations(micro.artifact.model_path.read_bytes()))) \
        if m.output.quantized else 1
    step = m.output.scale if m.output.quantized else 1e-5
    assert got.shape == want.shape and np.abs(got - want).max() <= steps * step * 1.0001
    np.testing.assert_array_equal(micro.run(x[2:3]), got[2:3])  # one window per invoke: no batch effects


def test_fixed_batch_models_run_in_padded_blocks(exports: Exports) -> None:
    seen = []

    class Batch4(Backend):  # a model file with a fixed batch of 4: first 5 samples of each window
        name = "stub"

        def _invoke(self, x: np.ndarray) -> np.ndarray:
            seen.append(x.shape[0])
            return x.reshape(len(x), -1)[:, :5].copy()

    backend = Batch4(load_artifact(exports.get("onnx_fp32").manifest), threads=1)
    backend._model_batch = 4
    x = exports.x[:6]
    np.testing.assert_array_equal(backend.run(x), x.reshape(6, -1)[:, :5])
    assert seen == [4, 4]


@pytest.mark.parametrize("kind", ["tflite_int8", "pte_fp32", "onnx_fp32"])
def test_thread_count_is_honoured(exports: Exports, kind: str) -> None:
    backend = open_backend(exports.get(kind).manifest, threads=2)
    assert backend.threads == 2
    np.testing.assert_array_equal(backend.run(exports.x[:3]), open_backend(exports.get(kind).manifest).run(exports.x[:3]))
    assert open_backend(exports.get(kind).manifest, threads=1).threads == 1
    with pytest.raises(ConfigError, match="threads"):
        open_backend(exports.get(kind).manifest, threads=0)


def test_load_accepts_folder_manifest_or_model_file(exports: Exports) -> None:
    path = exports.get("tflite_int8").manifest
    arts = [load_artifact(p) for p in (path, path.parent, path.parent / "model.tflite")]
    assert arts[0].manifest == arts[1].manifest == arts[2].manifest
    assert arts[0].model_path == path.parent.resolve() / "model.tflite"
    assert arts[0].manifest.versions["ecg_edge"] and arts[0].manifest.versions["torch"] == torch.__version__


def test_tampered_model_file_is_refused(exports: Exports, tmp_path: Path) -> None:
    folder = _copy(exports, "tflite_int8", tmp_path)
    model = folder / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        load_artifact(folder)
    msg = str(err.value)
    assert str(model.resolve()) in msg and "sha256" in msg and "\n" not in msg
    assert load_artifact(exports.get("tflite_int8").manifest).manifest.sha256 in msg


def test_model_symlinked_out_of_its_folder_is_refused(exports: Exports, tmp_path: Path) -> None:
    """A model file that is a symlink leaving the artifact folder is not followed, whatever its bytes:
    load_artifact, open_backend and ArtifactModel.open refuse it with one line naming the field."""
    folder = _copy(exports, "tflite_int8", tmp_path)
    outside = tmp_path / "elsewhere.tflite"
    (folder / "model.tflite").rename(outside)  # same bytes: the sha256 matches
    (folder / "model.tflite").symlink_to(outside)
    for load in (load_artifact, open_backend, ArtifactModel.open):
        with pytest.raises(ArtifactError) as err:
            load(folder)
        msg = str(err.value)
        assert "manifest.json: model_file: 'model.tflite'" in msg and "outside" in msg and "\n" not in msg, msg


def test_oversize_manifest_is_refused_before_parsing(exports: Exports, tmp_path: Path) -> None:
    folder = _copy(exports, "tflite_int8", tmp_path)
    path = folder / "manifest.json"
    path.write_text(path.read_text() + " " * MANIFEST_MAX_BYTES)  # still valid JSON
    with pytest.raises(ArtifactError) as err:
        load_artifact(folder)
    assert str(err.value).startswith(f"{path}: {path.stat().st_size} bytes, over the {MANIFEST_MAX_BYTES} byte")


@pytest.mark.parametrize("kind, backend", [("tflite_int8", "litert"), ("tflite_int8", "tflite_micro"),
                                           ("tflite_int8", None), ("onnx_fp32", None),
                                           pytest.param("pte_fp32", None, marks=pytest.mark.slow)])  # loads executorch
def test_unloadable_model_with_matching_sha256_gives_one_line(exports: Exports, tmp_path: Path, kind: str,
                                                                backend: str | None) -> None:
    """Bytes no runtime can load, the manifest's sha256 updated to match: one ArtifactError naming the
    file and the format expected (LiteRT raised ValueError, TFLite Micro struct.error; ExecuTorch
    aborted the process on a file without its identifier)."""
    folder = _copy(exports, kind, tmp_path)
    model = folder / load_artifact(folder).manifest.model_file
    model.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    _edit_manifest(folder, lambda d: d.update(sha256=hashlib.sha256(model.read_bytes()).hexdigest()))
    code = textwrap.dedent(f"""
        from edge_runtime.backends import ArtifactModel, open_backend
        from edge_runtime.errors import ArtifactError
        for load in (lambda: open_backend({str(folder)!r}, {backend!r}), lambda: ArtifactModel.open({str(folder)!r}, {backend!r})):
            try:
                load()
            except ArtifactError as exc:
                print(exc)
    """)  # a process of its own: a runtime that aborts instead of raising fails this test, not the session
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    lines = res.stdout.strip().splitlines()
    assert res.returncode == 0 and len(lines) == 2, res.stdout + res.stderr
    expected = {"tflite_int8": ".tflite flatbuffer", "onnx_fp32": ".onnx model", "pte_fp32": "ExecuTorch .pte program"}[kind]
    assert all(line.startswith(f"{model.resolve()}: ") and f"expected a valid {expected}" in line for line in lines), lines


def _edit_manifest(folder: Path, edit: Any) -> Path:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["input"].update(shape=[1, 1, 1, 500]), "input.shape"),
    (lambda d: d.update(colour="blue"), "colour"),
    (lambda d: d["output"].update(units="mV"), "output.units"),
    (lambda d: d.update(format=2), "format"),
    (lambda d: d.update(thresholds=[0.5, 0.5]), "thresholds"),
    (lambda d: d.pop("labels"), "labels"),
    (lambda d: d["filter_design"].update(band_sos=[[1.0, 2.0]]), "filter_design"),
])
def test_bad_manifest_gives_one_line_naming_file_and_field(exports: Exports, tmp_path: Path, edit: Any,
                                                           field: str) -> None:
    path = _edit_manifest(_copy(exports, "onnx_fp32", tmp_path), edit)
    with pytest.raises(ArtifactError) as err:
        load_artifact(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {field}") and "\n" not in msg, msg


def test_manifest_disagreeing_with_the_model_file_is_refused(exports: Exports, tmp_path: Path) -> None:
    path = _edit_manifest(_copy(exports, "tflite_int8", tmp_path), lambda d: d["input"].update(scale=0.5))
    with pytest.raises(ArtifactError, match=r"model\.tflite: model input quantization"):
        open_backend(path)


def test_manifest_validation_names_the_field(exports: Exports) -> None:
    m = load_artifact(exports.get("pte_fp32").manifest).manifest
    fields = {f: getattr(m, f) for f in Manifest.__dataclass_fields__}
    with pytest.raises(ConfigError, match=r"^thresholds: expected 5 values"):
        Manifest(**{**fields, "thresholds": (0.5,)})
    with pytest.raises(ConfigError, match=r"^input\.shape: expected \(batch, 1, 1, 1000\)"):
        Manifest(**{**fields, "input": TensorSpec("x", (1, 2, 1, 1000))})
    with pytest.raises(ConfigError, match=r"^output\.zero_point"):
        Manifest(**{**fields, "output": TensorSpec("y", (1, 5), "int8", 0.1, 300)})
    with pytest.raises(ConfigError, match=r"^model_file: expected a \.pte file"):
        Manifest(**{**fields, "model_file": "model.onnx"})


def test_wrong_input_to_run_gives_one_clear_error(exports: Exports) -> None:
    backend = open_backend(exports.get("tflite_int8").manifest)
    for bad in (exports.x[:, :, 0, :], exports.x.astype(np.float64), exports.x[:, :, :, :500]):
        with pytest.raises(SignalShapeError) as err:
            backend.run(bad)
        msg = str(err.value)
        assert "expected float32 windows of shape (N, 1, 1, 1000)" in msg and "\n" not in msg


def test_backend_choice_and_missing_runtimes(exports: Exports, monkeypatch: pytest.MonkeyPatch) -> None:
    tfl, pte, onnx = (exports.get(k).manifest for k in ("tflite_fp32", "pte_fp32", "onnx_fp32"))
    with pytest.raises(ConfigError, match="'onnxruntime' cannot run model.tflite"):
        open_backend(tfl, backend="onnxruntime")
    with pytest.raises(ConfigError, match="backend: expected one of"):
        open_backend(tfl, backend="tensorrt")
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter",
                   "executorch.runtime", "onnxruntime"):
        monkeypatch.setitem(sys.modules, module, None)  # import of a None entry raises ImportError
    for path, extra in ((tfl, "edge"), (pte, "export"), (onnx, "export")):
        with pytest.raises(MissingExtraError, match=rf"in the '{extra}' extra: pip install 'ecg-edge\[{extra}\]'"):
            open_backend(path)
    with pytest.raises(MissingExtraError, match="pip install tflite-runtime"):
        open_backend(tfl, backend="tflite_runtime")
    monkeypatch.setitem(sys.modules, "tflite_micro.python.tflite_micro", None)
    with pytest.raises(MissingExtraError, match="pip install tflite-micro"):
        open_backend(tfl, backend="tflite_micro")


def test_probabilities_follow_the_manifest(exports: Exports) -> None:
    backend = open_backend(exports.get("onnx_fp32").manifest)
    p = backend.probabilities(backend.run(exports.x))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    logits = np.array([[0.0, 2.0, -50.0]], np.float32)
    np.testing.assert_allclose(probabilities(logits, True), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    np.testing.assert_array_equal(quantize(np.array([-1e3, 0.26, 1e3], np.float32), 0.1, 3), [-128, 6, 127])


def test_preprocessor_reproduces_the_stored_design(exports: Exports, tmp_path: Path) -> None:
    # A stored design that differs from what the config would design today must win at its rate.
    other = PreprocessConfig(highpass_hz=0.7).design(tx.FS_DEVICE).to_dict()
    path = _edit_manifest(_copy(exports, "onnx_fp32", tmp_path), lambda d: d.update(filter_design=other))
    art = load_artifact(path)
    design = art.preprocessor(tx.FS_DEVICE).design
    np.testing.assert_array_equal(design.band_sos, np.asarray(other["band_sos"]))
    np.testing.assert_array_equal(design.resample_phases, np.asarray(other["resample_phases"]))
    assert not np.array_equal(design.band_sos, tx.CONFIG.design(tx.FS_DEVICE).band_sos)
    # The real artifact's design gives the very windows the exporter's own Preprocessor gave.
    rec = Synthetic(1, seed=3, fs=tx.FS_DEVICE, duration_s=30.0).read("syn_000000").select(tx.LEADS)
    windows = load_artifact(exports.get("onnx_fp32").manifest).preprocessor(tx.FS_DEVICE).process_record(rec.signal)
    np.testing.assert_array_equal(windows.data[:, :, None, :], exports.x[:len(windows)])
    at_130 = art.preprocessor(130)
    assert at_130.design.fs_in == 130.0 and at_130.spec == art.manifest.spec


def test_litert_backend_runs_where_torch_cannot_be_imported(exports: Exports, tmp_path: Path) -> None:
    """A Raspberry Pi install: no torch. The int8 .tflite gives the same logits as in-process."""
    manifest = exports.get("tflite_int8").manifest
    np.save(tmp_path / "x.npy", exports.x)
    code = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {{'torch', 'litert_torch', 'executorch', 'pandas', 'neurokit2', 'train'}}:
                    raise ImportError(f'{{name}} blocked for this test')
        sys.meta_path.insert(0, Block())
        import numpy as np
        from edge_runtime.artifact import load_artifact
        from edge_runtime.backends import open_backend
        backend = open_backend(load_artifact({str(manifest)!r}))
        np.save({str(tmp_path / "y.npy")!r}, backend.run(np.load({str(tmp_path / "x.npy")!r})))
        print(sorted(m for m in sys.modules if m.split('.')[0] in {{'torch', 'executorch', 'train'}}))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), open_backend(manifest).run(exports.x))
