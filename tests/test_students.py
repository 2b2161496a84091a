"""Students (train/models/student.py): shapes, budgets, BatchNorm folding, allowed layers, export parity.

Parity is checked on real preprocessed windows (tests/tiny_export.synthetic_windows) after a few
Adam steps in train mode, so BatchNorm statistics and weights are not the initial ones.
"""
from __future__ import annotations

import importlib.util
import json
import operator
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed for the models")

import tiny_export as te  # noqa: E402
from edge_runtime.errors import ConfigError  # noqa: E402
from train.models import count_parameters, create_model, list_models, model_entry  # noqa: E402
from train.models.student import ALLOWED_LAYERS, MAX_POOL, Student, fuse_batchnorm, macs  # noqa: E402

STUDENTS = list_models(kind="student")
#: Parameter budgets with default arguments (lead I, 5 classes, 1000 samples).
BUDGETS = {"student_xs": 20_000, "student_s": 100_000, "student_m": 500_000, "test_student": 5_000}
#: Acceptance target: the full-int8 student_s .tflite fits in 64 KB.
INT8_TFLITE_MAX_BYTES = 65_536
#: The only call_function ops a student's exported graph may contain.
ALLOWED_OPS = {"aten.conv2d.default", "aten.batch_norm.default", "aten.relu.default", "aten.avg_pool2d.default",
               "aten.flatten.using_ints", "aten.dropout.default", "aten.linear.default"}


@pytest.fixture(autouse=True)
def _one_thread():
    with te.one_thread():
        yield


@pytest.fixture(scope="module")
def windows() -> tuple[np.ndarray, np.ndarray]:
    """30 real preprocessed lead-I windows (N, 1, 1, 1000) and their condition indices."""
    return te.synthetic_windows(6, seed=3)


def _trained(name: str, windows: tuple[np.ndarray, np.ndarray], steps: int = 2) -> Student:
    """A student after a few Adam steps in train mode (BatchNorm statistics moved), in eval mode."""
    torch.manual_seed(0)
    model = create_model(name).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.from_numpy(windows[0]), torch.from_numpy(windows[1]).long()
    for i in range(steps):
        idx = torch.arange(i * 8, i * 8 + 8)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# --- registry and shapes ------------------------------------------------------------------------

def test_registry_lists_the_student_family() -> None:
    assert STUDENTS == ["student_m", "student_s", "student_xs", "test_student"]
    assert all(model_entry(n).kind == "student" for n in STUDENTS)
    assert model_entry("student_s").doc.startswith("Student S")


@pytest.mark.parametrize("name", STUDENTS)
def test_shapes_for_default_window_and_leads(name: str) -> None:
    torch.manual_seed(0)
    for kwargs in ({}, {"window": 500}, {"leads": ("I", "II"), "n_classes": 3}):
        model = create_model(name, **kwargs).eval()
        leads, window = kwargs.get("leads", ("I",)), kwargs.get("window", 1000)
        n_classes = kwargs.get("n_classes", 5)
        assert model.leads == leads and model.window == window and model.n_classes == n_classes
        assert model.input_shape == (1, len(leads), 1, window)
        x = torch.randn(3, len(leads), 1, window)
        with torch.no_grad():
            logits, feats = model(x), model.forward_features(x)
        assert logits.shape == (3, n_classes) and logits.dtype == torch.float32
        assert feats.shape == (3, model.feature_dim)
        torch.testing.assert_close(model.head(feats), logits)  # eval: dropout is the identity
        assert torch.isfinite(logits).all() and not torch.allclose(logits[0], logits[1])


@pytest.mark.parametrize("name", STUDENTS)
def test_parameter_budget_and_macs(name: str) -> None:
    model = create_model(name)
    assert count_parameters(model) <= BUDGETS[name]
    # Hand count from the layers: conv MACs = T_out * C_out * C_in * k, linear = in * out.
    expected, t = 0, model.window
    for m in model.features:
        if isinstance(m, torch.nn.Conv2d):
            t = (t + 2 * m.padding[1] - m.kernel_size[1]) // m.stride[1] + 1
            expected += t * m.out_channels * m.in_channels * m.kernel_size[1]
    expected += model.feature_dim * model.n_classes
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert macs(model) == expected
    assert model.training and int(bn.num_batches_tracked) == 0  # macs left mode and statistics alone


def test_student_sizes_grow_with_the_name() -> None:
    params = [count_parameters(create_model(n)) for n in ("test_student", "student_xs", "student_s", "student_m")]
    work = [macs(create_model(n)) for n in ("test_student", "student_xs", "student_s", "student_m")]
    assert params == sorted(params) and work == sorted(work)


@pytest.mark.parametrize("name", STUDENTS)
def test_only_layers_every_backend_delegates(name: str) -> None:
    model = create_model(name).eval()
    assert [n for n, _ in model.named_children()] == ["features", "head"]
    assert isinstance(model.features[-1], torch.nn.Flatten) and isinstance(model.head[-1], torch.nn.Linear)
    for m in model.modules():
        assert m is model or isinstance(m, ALLOWED_LAYERS), type(m).__name__
        if isinstance(m, torch.nn.Conv2d):
            assert m.kernel_size[0] == 1 and m.stride[0] == 1 and m.padding[0] == 0 and m.dilation == (1, 1)
        if isinstance(m, torch.nn.AvgPool2d):
            assert m.kernel_size[0] == 1 and m.kernel_size[1] <= MAX_POOL
    with torch.no_grad():  # the time axis at the flatten is small: no wide global pool needed
        assert model.features[:-1](torch.zeros(model.input_shape)).shape[-1] <= 8
    graph = torch.export.export(model, (torch.zeros(model.input_shape),)).graph
    ops = {str(n.target) for n in graph.nodes if n.op == "call_function"}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS  # no residual add, max pool or mean


@pytest.mark.parametrize("shape", [(2, 1, 1000), (2, 2, 1, 1000), (2, 1, 1, 999), (2, 1, 2, 1000)])
def test_wrong_input_shape_is_a_config_error(shape: tuple[int, ...]) -> None:
    model = create_model("test_student").eval()
    with pytest.raises(ConfigError, match=r"expected \(N, 1, 1, 1000\) with leads I"):
        model(torch.zeros(shape))
    with pytest.raises(ConfigError, match=r"leads I, II"):
        create_model("test_student", leads=("I", "II")).forward_features(torch.zeros(2, 1, 1, 1000))


def test_bad_arguments_are_config_errors() -> None:
    for kwargs in ({"window": 0}, {"n_classes": 2.5}, {"dropout": 1.0}, {"leads": ()}):
        with pytest.raises(ConfigError):
            create_model("test_student", **kwargs)


# --- BatchNorm folding ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", STUDENTS)
def test_fuse_batchnorm_equals_the_model(name: str, windows: tuple[np.ndarray, np.ndarray]) -> None:
    model = _trained(name, windows)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.running_mean.abs().sum() > 0 for m in bns)  # statistics moved away from the init
    fused = fuse_batchnorm(model)
    assert not fused.training and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, torch.nn.Identity) for m in fused.modules()) == len(bns)
    assert all(m.bias is not None for m in fused.modules() if isinstance(m, torch.nn.Conv2d))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.from_numpy(windows[0][16:])
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fused.forward_features(x), model.forward_features(x), atol=1e-5, rtol=1e-5)


# --- export parity ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fused_students(windows: tuple[np.ndarray, np.ndarray]) -> dict[str, torch.nn.Module]:
    with te.one_thread():
        return {n: fuse_batchnorm(_trained(n, windows)) for n in ("test_student", "student_s")}


def _tflite_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a .tflite window by window (its batch is 1); quantize int8 input, dequantize int8 output."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    results = []
    for w in x:
        if inp["dtype"] == np.int8:
            scale, zp = inp["quantization"]
            w = np.clip(np.round(w / scale) + zp, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], w[None])
        it.invoke()
        y = it.get_tensor(out["index"])[0]
        if out["dtype"] == np.int8:
            scale, zp = out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        results.append(y)
    return np.stack(results)


def _model_file(manifest: Path) -> Path:
    return manifest.parent / json.loads(manifest.read_text())["model_file"]


@pytest.mark.parametrize("name", ["test_student", "student_s"])
def test_fp32_tflite_matches_torch(name: str, fused_students: dict, windows: tuple, tmp_path: Path) -> None:
    pytest.importorskip("litert_torch", reason="litert-torch is needed to export .tflite")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is needed to run .tflite")
    model, x = fused_students[name], windows[0][:4]
    exported = te.export_tflite_fp32(model, tmp_path)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_tflite_outputs(_model_file(exported.manifest), x), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["test_student", "student_s"])
def test_fp32_pte_is_one_xnnpack_delegate_and_matches_torch(name: str, fused_students: dict, windows: tuple,
                                                            tmp_path: Path) -> None:
    pytest.importorskip("executorch", reason="executorch is needed to export .pte")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    model = fused_students[name]
    edge = to_edge_transform_and_lower(torch.export.export(model, te.EXAMPLE), partitioner=[XnnpackPartitioner()])
    calls = [n for n in edge.exported_program().graph.nodes if n.op == "call_function"]
    assert [str(n.target) for n in calls if n.target is not operator.getitem] == ["executorch_call_delegate"]
    path = tmp_path / "model.pte"
    path.write_bytes(edge.to_executorch().buffer)
    method = Runtime.get().load_program(path).load_method("forward")
    for w in windows[0][4:8]:
        x = torch.from_numpy(w[None])
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(method.execute([x])[0], expected, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def student_s_int8(fused_students: dict, tmp_path_factory: pytest.TempPathFactory) -> te.Exported:
    for module in ("litert_torch", "ai_edge_litert", "torchao"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'ecg-edge[export]')")
    calib, _ = te.synthetic_windows(4, seed=2)
    with te.one_thread():
        return te.export_tflite_int8(fused_students["student_s"], calib, tmp_path_factory.mktemp("student_s_int8"))


@pytest.mark.slow
def test_student_s_int8_tflite_fits_64_kb_and_tracks_its_reference(student_s_int8: te.Exported,
                                                                    windows: tuple) -> None:
    path = _model_file(student_s_int8.manifest)
    assert path.stat().st_size <= INT8_TFLITE_MAX_BYTES, path.stat().st_size
    x = windows[0][8:16]
    with torch.no_grad():
        reference = student_s_int8.reference(torch.from_numpy(x)).numpy()
    got = _tflite_outputs(path, x)
    scale = json.loads(student_s_int8.manifest.read_text())["output"]["scale"]
    # The convert_pt2e module is the int8 reference: 1 output step apart here (fp32 is ~14 steps off).
    assert np.abs(got - reference).max() <= 3 * scale


@pytest.mark.slow
def test_student_s_int8_runs_wholly_on_the_ethos_u_npu(student_s_int8: te.Exported, tmp_path: Path) -> None:
    if importlib.util.find_spec("ethosu") is None:
        pytest.skip("ethos-u-vela is not installed")
    cmd = [sys.executable, "-m", "ethosu.vela", str(_model_file(student_s_int8.manifest)),
           "--accelerator-config", "ethos-u55-128", "--output-dir", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "CPU operators = 0 (0.0%)" in run.stdout, run.stdout
