"""Brevitas QAT (distill/brevitas_qat.py): float student -> Brevitas copy -> QAT -> QCDQ ONNX -> ONNX Runtime.

The student is the trained tiny model of tests/tiny_export.py on real preprocessed synthetic
windows; a BatchNorm-carrying Sequential of the students' layer set covers the folding.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("brevitas", reason="brevitas is in the 'export' extra")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'export' extra")
pytest.importorskip("onnxoptimizer", reason="Brevitas's ONNX export needs onnxoptimizer")
import torch  # noqa: E402
from torch import nn  # noqa: E402

from distill.brevitas_qat import (  # noqa: E402
    export_qcdq_onnx, fold_batchnorm, onnx_parity, qat_finetune, to_brevitas,
)
from edge_runtime.errors import ConfigError  # noqa: E402
from tiny_export import one_thread, synthetic_windows  # noqa: E402


def _logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def train_windows() -> tuple[np.ndarray, np.ndarray]:
    """The windows tiny_export.Exports trained the float model on (same seed)."""
    return synthetic_windows(40, seed=1)


@pytest.fixture(scope="module")
def ptq(exports) -> nn.Module:
    """Brevitas copy of the trained tiny student, activation scales calibrated on real windows."""
    with one_thread():
        return to_brevitas(exports.model, calib=exports.calib)


@pytest.fixture(scope="module")
def qat(ptq, train_windows) -> nn.Module:
    x, y = train_windows
    with one_thread():
        return qat_finetune(copy.deepcopy(ptq), x, y, multilabel=False, epochs=3, seed=0)


def test_to_brevitas_replaces_every_layer_and_keeps_weights(exports, ptq) -> None:
    import brevitas.nn as qnn
    assert type(ptq) is type(exports.model)  # converted in place: same class, same forward
    kinds = [type(m).__name__ for m in ptq.modules()]
    floats = [type(m).__name__ for m in exports.model.modules()]
    assert kinds.count("QuantConv2d") == floats.count("Conv2d") > 0 and kinds.count("QuantLinear") == 1
    assert kinds.count("QuantReLU") == floats.count("ReLU") > 0
    converted = dict(ptq.named_modules())
    for name, m in exports.model.named_modules():
        if type(m) in (nn.Conv2d, nn.Linear, nn.ReLU):
            assert type(converted[name]).__name__ == "Quant" + type(m).__name__, name
    # the weights are the float model's with BatchNorm folded in (what the device computes)
    float_convs = [m for m in fold_batchnorm(exports.model).modules() if isinstance(m, nn.Conv2d)]
    quant_convs = [m for m in ptq.modules() if isinstance(m, qnn.QuantConv2d)]
    assert len(float_convs) == len(quant_convs)
    for f, q in zip(float_convs, quant_convs):
        assert torch.equal(f.weight, q.weight) and q.stride == f.stride and q.padding == f.padding
    # Only the first conv quantizes its (float) input; later layers get QuantTensors.
    assert [q.input_quant.is_quant_enabled for q in quant_convs] == [True] + [False] * (len(quant_convs) - 1)
    assert float_convs[0].weight.data_ptr() != quant_convs[0].weight.data_ptr()  # a copy, not shared


def test_ptq_reproduces_float_decisions(exports, ptq) -> None:
    fl, q = _logits(exports.model, exports.x), _logits(ptq, exports.x)
    agree = (fl.argmax(1) == q.argmax(1)).mean()
    assert agree >= 0.95, f"int8 fake-quant agrees with float on {agree:.0%} of windows"
    assert np.abs(fl - q).max() < 0.1 * np.abs(fl).max()


def test_qat_keeps_accuracy_and_is_deterministic(exports, ptq, qat, train_windows) -> None:
    float_acc = (_logits(exports.model, exports.x).argmax(1) == exports.y).mean()
    qat_acc = (_logits(qat, exports.x).argmax(1) == exports.y).mean()
    assert qat_acc >= float_acc - 0.05, f"QAT accuracy {qat_acc:.2f} vs float {float_acc:.2f}"
    changed = [not torch.equal(a, b) for a, b in zip(ptq.state_dict().values(), qat.state_dict().values())]
    assert any(changed), "qat_finetune changed no parameter"
    x, y = train_windows
    with one_thread():
        again = qat_finetune(copy.deepcopy(ptq), x, y, multilabel=False, epochs=3, seed=0)
    for (name, a), b in zip(qat.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between two seeded runs"


def test_qat_with_teacher_logits_runs(exports, ptq, train_windows) -> None:
    x, y = train_windows
    teacher = _logits(exports.model, x) * 2.0  # a sharper "teacher": any (n, K) logits
    with one_thread():
        q = qat_finetune(copy.deepcopy(ptq), x[:64], y[:64], multilabel=False, epochs=1, teacher_logits=teacher[:64])
    assert np.isfinite(_logits(q, exports.x)).all()
    with pytest.raises(ConfigError, match="teacher_logits"):
        qat_finetune(copy.deepcopy(ptq), x[:8], y[:8], multilabel=False, teacher_logits=teacher[:4])


@pytest.mark.parametrize("which", ["ptq", "qat"])
def test_qcdq_onnx_matches_brevitas_in_onnxruntime(exports, ptq, qat, which, tmp_path) -> None:
    qmodel = {"ptq": ptq, "qat": qat}[which]
    path = export_qcdq_onnx(qmodel, exports.x[:1], tmp_path / "student_qcdq.onnx")
    r = onnx_parity(path, qmodel, exports.x)
    assert r["n"] == len(exports.x)
    # QuantizeLinear on the input, after each ReLU and the pool; DequantizeLinear on weights and biases too.
    convs = sum(isinstance(m, nn.Conv2d) for m in exports.model.modules())
    assert r["onnx_ops"]["QuantizeLinear"] >= convs + 2
    assert r["onnx_ops"]["DequantizeLinear"] >= (convs + 2) + 2 * (convs + 1)  # activations, weights and biases
    assert r["onnx_ops"]["Conv"] == convs and r["onnx_ops"]["Gemm"] == 1
    # Every window to 1e-5 but (rarely) one whose float sum lands on a rounding boundary: one step.
    assert r["frac_within_tol"] >= 0.97, r
    assert r["max_abs_diff"] < 0.05, r
    assert r["decision_agreement"] >= 0.99, r


def _bn_student() -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, (1, 7), (1, 2), (0, 3), bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 8, (1, 5), (1, 3), (0, 2)), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
                      nn.AvgPool2d((1, 4), (1, 4)), nn.Flatten(), nn.Linear(8 * 41, 3))
    with torch.no_grad():
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return m.eval()


def test_batchnorm_is_folded_and_the_bn_student_exports(exports, tmp_path) -> None:
    model = _bn_student()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the input model was modified"
    x = exports.x[:16]
    np.testing.assert_allclose(_logits(folded, x), _logits(model, x), atol=1e-4, rtol=1e-4)
    with one_thread():
        q = to_brevitas(model, calib=exports.calib)
        y = np.eye(3, dtype=np.float32)[np.arange(len(exports.calib)) % 3]  # multi-hot rows, 3 labels
        q = qat_finetune(q, exports.calib, y, multilabel=True, epochs=1, lr=1e-5)
        r = onnx_parity(export_qcdq_onnx(q, x[:1], tmp_path / "bn.onnx"), q, x, multilabel=True)
    assert r["frac_within_tol"] >= 0.9 and r["decision_agreement"] >= 0.95, r


def test_the_registered_test_student_converts_and_exports(exports, tmp_path) -> None:
    """train.models.student: depthwise-separable Conv2d/BN/ReLU blocks, pool, Flatten, Dropout + Linear head."""
    student = pytest.importorskip("train.models.student", reason="train/models/student.py not present")
    torch.manual_seed(0)
    model = student.test_student()
    with torch.no_grad():  # non-trivial BatchNorm statistics from real windows
        model.train()(torch.from_numpy(exports.calib))
    model.eval()
    with one_thread():
        q = to_brevitas(model, calib=exports.calib)
        r = onnx_parity(export_qcdq_onnx(q, exports.x[:1], tmp_path / "s.onnx"), q, exports.x)
    assert (_logits(q, exports.x).argmax(1) == _logits(model, exports.x).argmax(1)).mean() >= 0.9
    n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert r["onnx_ops"]["Conv"] == n_conv and r["frac_within_tol"] >= 0.97 and r["decision_agreement"] >= 0.99, r


@pytest.mark.parametrize("bad, name", [(nn.GELU(), "GELU"), (nn.MaxPool2d((1, 2)), "MaxPool2d"),
                                       (nn.Conv1d(8, 8, 3), "Conv1d")])
def test_unsupported_layer_raises_config_error_naming_it(bad: nn.Module, name: str) -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, (1, 3)), nn.ReLU(), bad, nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ConfigError, match=rf"^2: layer {name} is not supported"):
        to_brevitas(model)


def test_batchnorm_without_a_conv_before_it_is_refused() -> None:
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 4, (1, 3)), nn.Flatten(), nn.Linear(4 * 998, 2))
    with pytest.raises(ConfigError, match="0: BatchNorm2d not directly after a Conv2d"):
        to_brevitas(model)


def test_bit_widths_are_validated() -> None:
    with pytest.raises(ConfigError, match="weight_bit_width"):
        to_brevitas(nn.Sequential(nn.Linear(2, 2)), weight_bit_width=16)


def test_onnx_parity_decides_at_the_artifacts_thresholds(exports, ptq, tmp_path) -> None:
    """Given an artifact, agreement is that of its manifest's decision rule (edge_runtime.backends.decide
    at its thresholds), as in distill.parity; a bare .onnx decides at 0.5 each."""
    import dataclasses

    import tiny_export as tx
    from distill.export import write_model_artifact
    from edge_runtime.artifact import TensorSpec
    from edge_runtime.backends import decide, probabilities

    onnx_path = export_qcdq_onnx(ptq, exports.x[:1], tmp_path / "q.onnx")
    other = copy.deepcopy(ptq)
    with torch.no_grad():
        other.head[-1].bias.add_(torch.tensor([0.0, 1.5, 0.0, 0.0, 0.0]))  # favours one class: some windows flip
    th = (0.5, 0.9, 0.5, 0.5, 0.5)  # which the artifact's threshold for that class takes back, in part
    spec = dataclasses.replace(tx.SPEC, thresholds=th)
    manifest = write_model_artifact(onnx_path.read_bytes(), spec, tmp_path / "art", runtime="onnxruntime",
                                    precision="int8", input=TensorSpec("x", (-1, *spec.input_shape)),
                                    output=TensorSpec("logits", (-1, len(spec.labels))), provenance={})
    a, b = _logits(ptq, exports.x), _logits(other, exports.x)
    want = {t: float((decide(probabilities(a, False), t, False) == decide(probabilities(b, False), t, False))
                     .all(axis=1).mean()) for t in (None, th)}
    assert want[None] != want[th]  # the test tells the two rules apart
    at_manifest = onnx_parity(manifest, other, exports.x)["decision_agreement"]
    assert at_manifest == pytest.approx(want[th], abs=2 / len(exports.x))  # ORT vs Brevitas: a step at most
    assert onnx_parity(manifest.parent, other, exports.x)["decision_agreement"] == at_manifest
    assert onnx_parity(onnx_path, other, exports.x)["decision_agreement"] == pytest.approx(want[None],
                                                                                          abs=2 / len(exports.x))
    assert onnx_parity(onnx_path, other, exports.x, thresholds=th)["decision_agreement"] == at_manifest
