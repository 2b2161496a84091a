"""Embedded targets: Vela for the Ethos-U NPU (firmware_bridge/bundle/vela.py), ExecuTorch Cortex-M for
CMSIS-NN (distill/embedded.py).

Every model is an int8 export calibrated on real preprocessed windows (tests/tiny_export.py).
What these tests pin down (see the report in vela.py too): a student with a stride-4 convolution
(the registry's `Student` layers with one stride of 4) is refused by Vela 5.2 on an Ethos-U55 / U65
(regor fails the compile; the legacy core leaves it on the CPU), while an Ethos-U85 runs all of it;
the registry's tiny `test_student` (strides 2) runs 100 % on a U55.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to export the models")
from torch import nn  # noqa: E402

from distill.embedded import cortex_m_lower  # noqa: E402
from edge_runtime.errors import ArtifactError, ConfigError  # noqa: E402
from firmware_bridge.bundle.vela import vela_compile  # noqa: E402
from tiny_export import EXAMPLE, LABELS, LEADS, export_tflite_int8, one_thread, tiny_student  # noqa: E402

needs_vela = pytest.mark.skipif(importlib.util.find_spec("ethosu") is None,
                                reason="ethos-u-vela is in the 'export' extra")
needs_cortex_m = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None or importlib.util.find_spec("tosa_serializer") is None,
    reason="executorch's Cortex-M backend imports tosa_serializer: pip install tosa-tools==2026.5.0")


def _model_file(manifest: Path) -> Path:
    return manifest.parent / "model.tflite"


def _stride4_student() -> nn.Module:
    """The students' layer set with one stride-4 convolution, which an Ethos-U55 cannot run."""
    from train.models.student import Student

    return Student([(8, 7, 2), (16, 5, 4), (16, 5, 4), (16, 5, 4)], leads=LEADS, n_classes=len(LABELS)).eval()


@pytest.fixture(scope="module")
def npu_tflite(exports, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    with one_thread():
        exported = export_tflite_int8(tiny_student().eval(), exports.calib, tmp_path_factory.mktemp("npu_int8"))
    return _model_file(exported.manifest)


def _check_estimates(r: dict, clock_hz: float) -> None:
    assert r["clock_hz"] == clock_hz
    assert r["sram_kib"] > 0 and r["off_chip_flash_kib"] + r["dram_kib"] > 0
    assert r["cycles_total"] >= r["cycles_npu"] > 0 and r["macs"] > 0
    # Vela's time is its cycle count at its clock.
    assert r["inference_time_s"] == pytest.approx(r["cycles_total"] / r["clock_hz"], rel=1e-3)
    assert Path(r["compiled_model"]).is_file() and Path(r["summary_csv"]).is_file()


@needs_vela
def test_vela_runs_an_npu_friendly_student_wholly_on_a_u55(npu_tflite, tmp_path) -> None:
    r = vela_compile(npu_tflite, tmp_path / "u55")
    assert r["npu_op_share"] == 1.0 and r["cpu_ops"] == 0 and r["npu_ops"] > 0 and r["cpu_fallback"] == []
    assert (r["accelerator"], r["system_config"], r["memory_mode"]) == \
        ("ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram")
    _check_estimates(r, 500e6)
    assert r["inference_time_s"] < 1e-3  # a ~0.24 MMAC model: tens of microseconds at 500 MHz


@needs_vela
def test_vela_u65_with_a_named_system_config(npu_tflite, tmp_path) -> None:
    r = vela_compile(npu_tflite, tmp_path / "u65", accelerator="ethos-u65-256",
                     system_config="Ethos_U65_High_End", memory_mode="Dedicated_Sram")
    assert (r["system_config"], r["memory_mode"]) == ("Ethos_U65_High_End", "Dedicated_Sram")
    assert r["npu_op_share"] == 1.0
    _check_estimates(r, 1e9)


@needs_vela
def test_vela_refuses_a_stride4_conv_on_a_u55(exports, tmp_path) -> None:
    torch.manual_seed(0)
    with one_thread():
        tflite = _model_file(export_tflite_int8(_stride4_student(), exports.calib, tmp_path / "int8").manifest)
    with pytest.raises(ArtifactError) as err:
        vela_compile(tflite, tmp_path / "u55")
    msg = str(err.value)
    assert msg.startswith(str(tflite)) and "\n" not in msg
    assert "CONV_2D" in msg and "Unsupported kernel stride: 4, 1" in msg
    # The same model runs wholly on an Ethos-U85 ...
    assert vela_compile(tflite, tmp_path / "u85", accelerator="ethos-u85-256")["npu_op_share"] == 1.0
    # ... and Vela's legacy core places the two operators a U55 cannot run on the CPU.
    r = vela_compile(tflite, tmp_path / "legacy", extra_args=["--debug-force-legacy-core"])
    assert sorted(f["op"] for f in r["cpu_fallback"]) == ["CONV_2D", "TRANSPOSE"]
    assert r["cpu_ops"] == 2 and 0.8 < r["npu_op_share"] < 1.0
    _check_estimates(r, 500e6)


@needs_vela
def test_vela_leaves_a_float_tflite_on_the_cpu(exports, tmp_path) -> None:
    r = vela_compile(_model_file(exports.get("tflite_fp32").manifest), tmp_path / "fp32")
    assert r["npu_op_share"] < 1.0 and r["cpu_ops"] > 0
    assert r["cpu_fallback"] and all("Float32" in f["reason"] for f in r["cpu_fallback"])
    assert {"FULLY_CONNECTED", "AVERAGE_POOL_2D"} <= {f["op"] for f in r["cpu_fallback"]}


@needs_vela
def test_vela_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        vela_compile(tmp_path / "missing.tflite", tmp_path)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(ArtifactError, match=rf"^{junk}: Vela \(ethos-u55-128\) failed"):
        vela_compile(junk, tmp_path / "out")
    with pytest.raises(ConfigError, match="accelerator"):
        vela_compile(junk, tmp_path / "out", accelerator="ethos-u99")


@pytest.fixture(scope="module")
def cortex_m(exports, tmp_path_factory) -> dict:
    with one_thread():
        return cortex_m_lower(exports.model, EXAMPLE[0], exports.calib, out=tmp_path_factory.mktemp("cm") / "m.pte")


@needs_cortex_m
def test_cortex_m_lowering_leaves_no_float_operator(cortex_m, exports) -> None:
    r = cortex_m
    assert r["all_int8"] is True and r["float_ops"] == []
    ops = r["operators"]
    # conv 1 (one input channel) becomes a depthwise kernel, the others CMSIS-NN convs; no aten compute
    # operator is left.
    convs = sum(isinstance(m, nn.Conv2d) for m in exports.model.modules())
    assert ops["cortex_m.quantized_depthwise_conv2d.default"] == 1 and ops["cortex_m.quantized_conv2d.default"] == convs - 1
    assert ops["cortex_m.quantized_avg_pool2d.default"] == 1 and ops["cortex_m.quantized_linear.default"] == 1
    assert set(r["portable_ops"]) <= {"aten.view_copy.default", "dim_order_ops._clone_dim_order.default"}
    assert r["io"]["input"]["dtype"] == "int8" and r["io"]["output"]["dtype"] == "int8"
    # The lowered program (operators' reference implementations) against convert_pt2e: within parity's
    # int8 bound, 2 sqrt(requantizations) output steps (input, each conv, pool, linear). Measured on
    # test_student: 2 steps.
    from edge_runtime.backends import int8_tolerance_steps

    assert r["max_abs_diff"] <= int8_tolerance_steps(convs + 3) * r["output_step"] * 1.001
    data = Path(r["path"]).read_bytes()
    assert len(data) == r["pte_bytes"] and data[4:8] == b"ET12"


@needs_cortex_m
def test_cortex_m_census_sees_the_float_boundary_when_io_stays_float(exports) -> None:
    with one_thread():
        r = cortex_m_lower(exports.model, EXAMPLE[0], exports.calib[:8], int8_io=False, n_check=4)
    assert r["all_int8"] is False and r["io"] is None
    assert r["float_ops"] == ["cortex_m.quantize_per_tensor.default", "cortex_m.dequantize_per_tensor.default"]


@needs_cortex_m
def test_cortex_m_rejects_mismatched_windows(exports) -> None:
    with pytest.raises(ConfigError, match="calib"):
        cortex_m_lower(exports.model, EXAMPLE[0], exports.calib[:, :, :, :500])
    with pytest.raises(ConfigError, match="cpu"):
        cortex_m_lower(exports.model, EXAMPLE[0], exports.calib, cpu="cortex-a53")
