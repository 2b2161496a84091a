"""bench/int8_flips.py: the pieces that isolate each int8 error source (the whole bench on a real
`ecg-edge cv` output runs in tests/test_crossval.py)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to quantize")
pytest.importorskip("litert_torch", reason="the 'export' extra (litert-torch) is needed for its quantizer")

REPO = Path(__file__).resolve().parents[1]


def _bench():
    if str(REPO / "bench") not in sys.path:  # the bench imports its sibling bench/report.py
        sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("int8_flips", REPO / "bench" / "int8_flips.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _student_and_spec():
    from distill.export import ExportSpec, prepare_model
    from edge_runtime.signal import PreprocessConfig
    from train.models import create_model

    torch.manual_seed(0)
    student = create_model("test_student", leads=("I",), n_classes=3, window=1000).eval()
    spec = ExportSpec(preprocess=PreprocessConfig(fs_out=100.0, window_s=10.0, hop_s=5.0), leads=("I",),
                      labels=("a", "b", "c"), multilabel=False, thresholds=(0.5, 0.5, 0.5))
    return prepare_model(student, spec), spec


def test_wilson_interval() -> None:
    b = _bench()
    lo, hi = b.wilson(95, 100)
    assert lo == pytest.approx(0.8882, abs=1e-4) and hi == pytest.approx(0.9785, abs=1e-4)
    assert b.wilson(0, 0) == [0.0, 1.0]
    lo, hi = b.wilson(100, 100)
    assert hi == pytest.approx(1.0) and 0.96 < lo < 0.97


def test_int8_weights_sit_on_the_per_channel_grid_and_nothing_else_changes() -> None:
    m, _ = _student_and_spec()
    q = _bench().int8_weights(m)
    convs = [(a, b) for a, b in zip(m.modules(), q.modules()) if isinstance(a, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs
    for a, b in convs:
        scale = a.weight.abs().flatten(1).max(dim=1).values / 127
        steps = b.weight.flatten(1) / scale[:, None]
        assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= 127 + 1e-3
        assert not torch.equal(a.weight, b.weight)  # the copy is rounded, the original is untouched
        assert (a.bias is None) or torch.equal(a.bias, b.bias)


def test_float_logits_removes_only_the_output_requantization() -> None:
    from distill.export import pt2e_quantizer, quantize_pt2e

    m, spec = _student_and_spec()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((64, 1, 1, 1000)).astype(np.float32)
    ref = quantize_pt2e(m, spec, pt2e_quantizer("litert"), calib, fold_quantize=False)
    x = torch.from_numpy(rng.standard_normal((16, 1, 1, 1000)).astype(np.float32))
    with torch.no_grad():
        q = ref(x)
        out = next(n for n in ref.graph.nodes if n.op == "output")
        dq = out.args[0][0] if isinstance(out.args[0], (tuple, list)) else out.args[0]
        scale = float(dq.args[0].args[1])
        f = _bench().float_logits(ref)(x)
    assert torch.allclose(torch.round(q / scale) * scale, q, atol=1e-5)  # int8 logits: on their grid
    assert not torch.allclose(torch.round(f / scale) * scale, f, atol=1e-5)  # now float: off it
    assert (f - q).abs().max() <= scale / 2 + 1e-5  # and the same logits up to that rounding
    with pytest.raises(RuntimeError, match="not a quantize / dequantize pair"):
        _bench().float_logits(ref)  # already removed: a second call names what it found


def test_bench_flips_is_registered() -> None:
    from ecg_edge.cli import BENCHMARKS, BENCH_DIR

    assert (BENCH_DIR / BENCHMARKS["flips"]).is_file()


def test_paired_agreement_is_the_difference_of_the_agreements_with_a_paired_interval() -> None:
    b = _bench()
    a = np.ones(200, bool)
    a[:10] = False  # A agrees on 95 % of records
    same = b.paired_agreement(a, a)
    assert same["difference"] == 0.0 and same["ci"] == [0.0, 0.0]  # identical records: no spread at all
    better = a.copy()
    better[:6] = True  # B fixes 6 of A's 10 disagreements and breaks none
    d = b.paired_agreement(a, better, n_boot=2000)
    assert d["difference"] == pytest.approx(0.03)
    lo, hi = d["ci"]
    assert 0.0 < lo < 0.03 < hi < 0.06  # paired: only the 6 changed records vary, so 0 is outside
    with pytest.raises(ValueError, match="two equal-length 1-D arrays"):
        b.paired_agreement(a, better[:-1])
