"""Parity: does an exported artifact, run by the real runtime, reproduce its PyTorch reference?

`check_parity(manifest, reference, windows)` opens the artifact exactly as the device does
(`edge_runtime.backends.open_backend`: the .tflite int8 input quantized with the manifest's scale
and zero point, int8 outputs dequantized), runs the reference (`distill.export.Exported.reference`)
in torch on the same real preprocessed windows, and compares

* outputs: max |artifact - reference| in logit units (int8 outputs dequantized);
* decisions: the manifest's decision rule, `edge_runtime.backends.decide` (the one the streaming
  engine applies): argmax(softmax / threshold) for single-label heads (the plain argmax for equal
  thresholds); for multi-label heads a window agrees when every label's decision, sigmoid(logit)
  >= the manifest's threshold, is the same.

Default tolerances (`default_tolerance`), measured on real synthetic windows (500 per model):

* fp32 (.pte, .tflite, .onnx): 1e-4 absolute. Measured <= 6e-6 on logits spanning about -30..15:
  the runtimes only reorder float sums.
* int8: 2 sqrt(R) output quantization steps, R the activation requantizations of the reference
  (`requantizations`; a step is the int8 output's scale, or for the float-output .pte the scale
  of the reference's last dequantize). The runtimes requantize in fixed point, the convert_pt2e
  reference in float: rounding ties land one step away and add up through the layers like a
  random walk, so the worst case grows with depth. Measured max (pte / tflite): tiny test
  student, R = 7, 40 seeds: 2 / 3 steps (mostly 1 / 2); a 10-block depthwise-separable student,
  R = 22: 5 / 5 (a deeper student_s draft: 6 / 6); student_xs / s / m of train/models/student.py,
  R = 10..13: <= 2. Tolerance: 5.3 steps at R = 7, 6.3..7.2 at R = 10..13, 9.4 at R = 22, at
  least 2 steps above every measurement. A model file from other weights or of another precision
  misses by far more (tests/test_export.py). The tiny student's .tflite differs more often than
  its .pte (20..40 % of outputs by a step, against 5..12 %) because of its average pool: without
  the pool its .tflite differs by at most 1 step, on 8..9 % of outputs.

Decisions: an int8 artifact flips the argmax of windows whose top two reference logits lie within
its error of each other (measured raw agreement, tiny student: .tflite 0.984..1.0, .pte
0.992..1.0), a property of the data rather than of the file. So `min_agreement` applies to the
*clear* windows: those whose reference decision no error up to the default tolerance can change
(top-two margin > 2 x that tolerance; every logit further than it from its threshold's logit). A
looser `tolerance` passed by the caller does not shrink that set, so the decision check holds.
The raw agreement over all windows is reported as well.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edge_runtime.artifact import Artifact, TensorSpec, load_artifact
from edge_runtime.backends import decide, open_backend, probabilities
from edge_runtime.backends import int8_tolerance_steps
from edge_runtime.errors import ArtifactError, ConfigError
from train.engine import predict

#: Absolute tolerance on logits for fp32 artifacts, every runtime.
FP32_TOLERANCE = 1e-4
#: Reference batch: bounds torch's memory on a few thousand windows.
_BATCH = 256


def output_step(reference: nn.Module | None = None, output: TensorSpec | None = None) -> float | None:
    """One output quantization step: the int8 output tensor's scale, else the scale of the
    reference graph's final dequantize (a convert_pt2e module); None for a float model."""
    if output is not None and output.quantized:
        return float(output.scale)
    graph = getattr(reference, "graph", None)
    if graph is None:
        return None
    out = next((n for n in graph.nodes if n.op == "output"), None)
    if out is None:
        return None
    node = out.args[0]
    while isinstance(node, (list, tuple)) and node:
        node = node[0]
    if getattr(node, "op", None) == "call_function" and "dequantize_per_tensor" in str(node.target):
        return float(node.args[1])
    return None


def requantizations(reference: nn.Module | None) -> int | None:
    """Activation requantizations in a convert_pt2e reference (its quantize_per_tensor nodes: the
    input, and each layer or pool output); None when the reference is no such graph."""
    graph = getattr(reference, "graph", None)
    if graph is None:
        return None
    n = sum(1 for node in graph.nodes if node.op == "call_function" and "quantize_per_tensor" in str(node.target)
            and "dequantize" not in str(node.target))
    return n or None


def int8_steps(reference: nn.Module | None) -> float | None:
    """Default int8 tolerance in output steps: 2 sqrt(requantizations) (module docstring)."""
    n = requantizations(reference)
    return None if n is None else int8_tolerance_steps(n)


def default_tolerance(precision: str, reference: nn.Module | None = None, output: TensorSpec | None = None) -> float:
    """Max |artifact - reference| allowed: FP32_TOLERANCE, or for int8 `int8_steps` output steps.

    int8 needs the convert_pt2e reference (its requantizations; its output step when the artifact's
    output is float); ConfigError otherwise, asking for an explicit tolerance.
    """
    if precision == "fp32":
        return FP32_TOLERANCE
    step, steps = output_step(reference, output), int8_steps(reference)
    if step is None or steps is None:
        raise ConfigError("tolerance: no default for this int8 artifact (the reference is no convert_pt2e "
                          "module, so its requantizations and output step are unknown); pass tolerance=")
    # (1 + 1e-3): a difference of exactly k steps measures k * step * (1 + ~1e-5) in float32.
    return steps * step * (1 + 1e-3)


def _shifted(logits: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """Single-label: logit - log(threshold), the decision margin in logit units (its argmax is
    `decide`'s argmax(softmax / threshold)); `clear_windows` compares its top two with the tolerance."""
    th = np.clip(np.asarray(thresholds, dtype=np.float64), 1e-12, 1.0)
    return logits - np.log(th)


def _decisions(logits: np.ndarray, multilabel: bool, thresholds: tuple[float, ...]) -> np.ndarray:
    """(n, K) bool: the manifest's decision rule (`decide`) on the probabilities of the logits."""
    return decide(probabilities(logits, multilabel), thresholds, multilabel)


def clear_windows(logits: np.ndarray, multilabel: bool, thresholds: tuple[float, ...], tolerance: float) -> np.ndarray:
    """Windows whose reference decision no output error within `tolerance` can change: top-two
    margin above 2 x tolerance (single-label); every logit further than tolerance from its threshold's
    logit (multi-label)."""
    if not multilabel:
        if logits.shape[1] < 2:
            return np.ones(len(logits), dtype=bool)
        top2 = np.sort(_shifted(logits, thresholds), axis=1)[:, -2:]
        return (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    th = np.clip(np.asarray(thresholds, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        cut = np.log(th) - np.log1p(-th)  # logit(threshold); +-inf at 1 and 0
    return (np.abs(logits - cut) > tolerance).all(axis=1)


def check_parity(manifest_path: str | Path | Artifact, reference: nn.Module, windows: np.ndarray, *,
                 tolerance: float | None = None, min_agreement: float = 0.99, threads: int = 1,
                 raise_on_failure: bool = True) -> dict[str, Any]:
    """Compare an artifact on its runtime with its PyTorch reference on real preprocessed windows.

    windows: float32 (n, n_leads, 1, window), the training preprocessing's output (a few hundred
    for int8). tolerance: max |logit difference| allowed (None: `default_tolerance`). min_agreement:
    fraction of clear windows (module docstring) whose decision must agree. Returns a dict:
    max_abs_diff, agreement (all windows), agreement_clear, n, n_clear, tolerance, expected_error
    (the default tolerance, which defines clear windows), min_agreement, output_step (None for
    fp32), passed. Raises ArtifactError, one line naming the model file and the failed checks, when
    it fails and `raise_on_failure`; an artifact that does not load (sha256, manifest) raises
    load_artifact's ArtifactError.
    """
    art = manifest_path if isinstance(manifest_path, Artifact) else load_artifact(manifest_path)
    m = art.manifest
    if not isinstance(min_agreement, (int, float)) or isinstance(min_agreement, bool) or not 0 <= min_agreement <= 1:
        raise ConfigError(f"min_agreement: expected a fraction in 0..1, got {min_agreement!r}")
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                  or not tolerance >= 0):
        raise ConfigError(f"tolerance: expected a number >= 0, got {tolerance!r}")
    try:
        noise = default_tolerance(m.precision, reference, m.output)
    except ConfigError:
        if tolerance is None:
            raise
        noise = float(tolerance)
    tolerance = noise if tolerance is None else float(tolerance)
    x = np.ascontiguousarray(windows, dtype=np.float32) if isinstance(windows, np.ndarray) else windows
    got = open_backend(art, threads=threads).run(x)  # validates the windows' shape, dtype, finiteness
    want = predict(reference, x, batch_size=_BATCH)
    if want.shape != got.shape:
        raise ConfigError(f"reference: gives {want.shape} outputs for {len(x)} windows; the artifact gives {got.shape}")
    diff = float(np.abs(got.astype(np.float64) - want).max())
    same = (_decisions(got, m.multilabel, m.thresholds) == _decisions(want, m.multilabel, m.thresholds)).all(axis=1)
    clear = clear_windows(want, m.multilabel, m.thresholds, noise)  # a loose tolerance keeps the decision check
    agreement_clear = float(same[clear].mean()) if clear.any() else 1.0
    report = {"max_abs_diff": diff, "agreement": float(same.mean()), "agreement_clear": agreement_clear,
              "n": int(len(x)), "n_clear": int(clear.sum()), "tolerance": float(tolerance), "expected_error": noise,
              "min_agreement": float(min_agreement), "output_step": output_step(reference, m.output),
              "passed": bool(diff <= tolerance and agreement_clear >= min_agreement)}
    if not report["passed"] and raise_on_failure:
        failed = []
        if not diff <= tolerance:
            failed.append(f"max |output - reference| {diff:.4g} > tolerance {tolerance:.4g}")
        if agreement_clear < min_agreement:
            failed.append(f"decision agreement {agreement_clear:.4f} < {min_agreement:g} on the {int(clear.sum())} "
                          "windows whose reference decision is clear of the expected error")
        raise ArtifactError(f"{art.model_path}: parity check failed on {len(x)} windows: {'; '.join(failed)} "
                            f"({m.runtime} {m.precision} vs its PyTorch reference)")
    return report
