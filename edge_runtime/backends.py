"""One small interface over the inference runtimes: `open_backend(artifact).run(windows) -> logits`.

Every backend takes preprocessed windows as float32 (N, n_leads, 1, window) (the student's
Conv2d-over-(N, C, 1, T) input; `Windows.data[:, :, None, :]`) and returns float32 logits
(N, n_labels). For an int8 model the backend quantizes the input with the manifest's scale and
zero point, `q = clip(round(x / scale) + zero_point, -128, 127)`, and dequantizes the output,
`(q - zero_point) * scale`, vectorized over the batch.

Runtimes, each imported lazily when asked for:

* "litert": `ai_edge_litert.interpreter.Interpreter` (extra `edge`), falling back to the legacy
  `tflite_runtime.interpreter` when only that is installed ("tflite_runtime" forces it);
* "executorch": `executorch.runtime.Runtime` (extra `export`; it links libtorch, so torch is
  imported here and only here);
* "onnxruntime": `onnxruntime.InferenceSession` on the CPU provider (extra `export`); int8 (QCDQ)
  models run with the basic graph optimizations only (`qdq_session_options`).

A model with a fixed batch runs the windows in model-batch blocks (the last one zero-padded); a
model with a dynamic batch (-1, ONNX) runs them in one call. LiteRT models run at their allocated
batch, 1 for the exported students (the streaming case): litert-torch 0.10 cannot convert this
model family with a dynamic batch, and `resize_tensor_input` on a batch-1 model fails in the XNNPACK
delegate (the flatten's reshape is fixed). Measured on x86 for the tiny test student: a model
exported at batch 100 costs 5.1 us per window, 100 batch-1 invokes 6.8 us per window; not worth a
second model file.
"""
from __future__ import annotations

import math

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.artifact import RECORD_RULES, Artifact, TensorSpec, load_artifact
from edge_runtime.errors import (ArtifactError, ConfigError, MissingExtraError, SignalShapeError, SignalValueError,
                                 missing_extra)
from edge_runtime.registry import Registry
from edge_runtime.signal import Preprocessor

#: The backends by name (`edge_runtime.registry.Registry`, the project's one registry style), each
#: class registered with the tag `runtime`: the manifest runtime (model format) it runs.
BACKENDS: Registry[type["Backend"]] = Registry("backend")


def probabilities(logits: np.ndarray, multilabel: bool) -> np.ndarray:
    """Sigmoid per label (multi-label) or softmax over labels (single-label) of (N, n_labels) logits.
    (scipy.special is imported here, not at module level: building the CLI's parser reads the
    backend registry and should not pay for scipy.)"""
    from scipy.special import expit, softmax

    logits = np.asarray(logits, dtype=np.float32)
    return expit(logits) if multilabel else softmax(logits, axis=-1)


def decide(probabilities: np.ndarray, thresholds: Any, multilabel: bool) -> np.ndarray:
    """The decision rule of an artifact, for (N, n_labels) probabilities: multi-label, each label
    whose probability clears its threshold (p >= t); single-label, the one label argmax(p / t).
    thresholds None means 0.5 each. Returns bool (N, n_labels)."""
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[None, :] if p.ndim == 1 else p
    t = np.full(p.shape[-1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if multilabel:
        return p >= t
    return np.arange(p.shape[-1])[None, :] == np.argmax(p / t, axis=-1)[:, None]


def record_probabilities(window_probabilities: np.ndarray, rule: str = "mean") -> np.ndarray:
    """One record's probabilities (n_labels,) from its (n_windows, n_labels) window probabilities
    by the record rule (`edge_runtime.artifact.RECORD_RULES`), to be decided by `decide`;
    `train.metrics.aggregate_by_record` does the same for many records at once."""
    p = np.asarray(window_probabilities, dtype=np.float64)
    if p.ndim != 2 or not len(p):
        raise ConfigError(f"record_probabilities: expected (n_windows >= 1, n_labels) probabilities, got {p.shape}")
    if rule == "mean":
        return p.mean(axis=0)
    if rule == "max":
        return p.max(axis=0)
    raise ConfigError(f"record rule {rule!r}: expected one of {list(RECORD_RULES)}")


#: int8 tolerance between two integer implementations of one model (an artifact against its
#: reference, one host's kernels against another's): this many output steps times the square root
#: of the activation requantizations, since each can round a tie one step apart and the steps add up
#: through the layers like a random walk (measurements: distill/parity.py's docstring).
INT8_STEPS_PER_SQRT_REQUANT = 2.0


def int8_tolerance_steps(requantizations: int) -> float:
    """The int8 tolerance in output steps for a model with `requantizations` activation
    requantizations (its input and each layer's output): 2 sqrt(requantizations)."""
    return INT8_STEPS_PER_SQRT_REQUANT * math.sqrt(max(int(requantizations), 1))


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float -> int8 with the affine parameters of a tensor (round half to even, as torch and TFLite)."""
    q = np.rint(x / np.float32(scale)) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 -> float32: (q - zero_point) * scale."""
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


class Backend:
    """Base of every backend: input checks, int8 (de)quantization, fixed-batch blocking.

    Attributes: `artifact`, `manifest`, `name` (backend name), `threads` (the thread count the
    runtime reports it uses, where it can report one; otherwise the one it was given).
    """

    name = ""

    def __init__(self, artifact: Artifact, threads: int) -> None:
        self.artifact = artifact
        self.manifest = artifact.manifest
        self.threads = threads
        self._model_batch = -1  # set by subclasses from the model file: -1 dynamic, else fixed

    @classmethod
    def open(cls, artifact: Artifact, threads: int, name: str, arena: int | None) -> "Backend":
        """How `open_backend` builds a registered backend: `name` as registered, `arena` for TFLite Micro."""
        return cls(artifact, threads)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one window as the model takes it: (n_leads, 1, window)."""
        return tuple(self.manifest.input.shape[1:])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, n_labels) float32 for preprocessed windows x, float32 (N, n_leads, 1, window)."""
        self._check(x)
        spec_in, spec_out = self.manifest.input, self.manifest.output
        xin = quantize(x, spec_in.scale, spec_in.zero_point) if spec_in.quantized else x
        y = self._blocks(xin)
        y = dequantize(y, spec_out.scale, spec_out.zero_point) if spec_out.quantized else y.astype(np.float32)
        return y.reshape(x.shape[0], len(self.manifest.labels))

    def run_quantized(self, x_q: np.ndarray) -> np.ndarray:
        """Raw model outputs (N, n_labels) for windows already in the model's input dtype: the int8
        tensors a device takes (golden tests compare these bytes, no (de)quantization here)."""
        want = np.dtype(self.manifest.input.dtype)
        if not isinstance(x_q, np.ndarray) or x_q.dtype != want or x_q.ndim != 4 \
                or x_q.shape[1:] != self.input_shape or x_q.shape[0] < 1:
            got = f"{x_q.dtype} {x_q.shape}" if isinstance(x_q, np.ndarray) else type(x_q).__name__
            raise SignalShapeError(f"{self.name} backend input: expected {want} windows of shape "
                                   f"(N, {', '.join(map(str, self.input_shape))}), got {got}")
        return self._blocks(x_q).reshape(x_q.shape[0], len(self.manifest.labels))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid or softmax of `run`'s logits, as the manifest's `multilabel` says."""
        return probabilities(logits, self.manifest.multilabel)

    def _check(self, x: Any) -> None:
        leads = ", ".join(self.manifest.spec.leads)
        want = f"float32 windows of shape (N, {', '.join(map(str, self.input_shape))}) (batch, leads {leads}, 1, window)"
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 \
                or x.shape[1:] != self.input_shape or x.shape[0] < 1:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise SignalShapeError(f"{self.name} backend input: expected {want}, got {got}")
        if not np.isfinite(x).all():
            raise SignalValueError(f"{self.name} backend input: expected finite values, got NaN or inf")

    def _blocks(self, x: np.ndarray) -> np.ndarray:
        """Run `_invoke` on the whole batch (dynamic) or on model-batch blocks, zero-padding the last."""
        b = self._model_batch
        if b == -1 or b == x.shape[0]:
            return self._invoke(np.ascontiguousarray(x))
        n = x.shape[0]
        pad = -n % b
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        outs = [self._invoke(np.ascontiguousarray(x[i:i + b])) for i in range(0, n + pad, b)]
        return np.concatenate(outs)[:n]

    def _invoke(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_model_io(self, shape: Any, dtype: Any, output_shape: Any) -> None:
        """The model file's input must agree with the manifest; remember its batch."""
        shape, out_shape = [int(d) if d is not None and int(d) >= 0 else -1 for d in shape], list(output_shape)
        spec: TensorSpec = self.manifest.input
        if tuple(shape[1:]) != self.input_shape or np.dtype(dtype) != np.dtype(spec.dtype):
            raise ArtifactError(f"{self.artifact.model_path}: model input is {np.dtype(dtype)} {tuple(shape)}, "
                                f"manifest input says {spec.dtype} {tuple(spec.shape)}")
        if out_shape and out_shape[-1] not in (-1, None, len(self.manifest.labels)):
            raise ArtifactError(f"{self.artifact.model_path}: model output has {out_shape[-1]} values, "
                                f"manifest labels has {len(self.manifest.labels)}")
        self._model_batch = shape[0]


#: The extra that installs each runtime module (None: the package alone; tflite-runtime needs numpy < 2).
_EXTRA = {"ai_edge_litert": "edge", "tflite_runtime": None, "executorch": "export", "onnxruntime": "export",
          "tflite_micro": None}


def _missing(backend: str, module: str, exc: ImportError) -> MissingExtraError:
    return missing_extra(f"backend {backend!r}", module, _EXTRA[module], exc.name)


#: Runtime -> what its model file must be, for the error when it cannot load one.
_FORMAT = {"litert": "a valid .tflite flatbuffer", "executorch": "a valid ExecuTorch .pte program",
           "onnxruntime": "a valid .onnx model"}


def _unloadable(artifact: Artifact, runtime: str, exc: Exception, where: str = "") -> ArtifactError:
    """One line for a model file its sha256 vouches for but the runtime cannot load (LiteRT raises
    ValueError, TFLite Micro struct.error or TypeError, others RuntimeError): a file re-sealed with
    garbage is bad input, not a crash."""
    last = (str(exc).strip().splitlines() or [""])[-1][:200]
    return ArtifactError(f"{artifact.model_path}: {runtime} cannot load this model{where}: expected "
                         f"{_FORMAT[artifact.manifest.runtime]} ({type(exc).__name__}: {last})")


def interpreter_class(name: str) -> Callable[..., Any]:
    """LiteRT's Interpreter class; "litert" falls back to the legacy tflite_runtime when only that is installed."""
    first: ImportError | None = None
    if name == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter
            return Interpreter
        except ImportError as exc:
            first = exc
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except ImportError as exc:
        if first is not None:
            raise _missing(name, "ai_edge_litert", first) from None
        raise _missing(name, "tflite_runtime", exc) from None


@BACKENDS.register("tflite_runtime", runtime="litert")
@BACKENDS.register("litert", runtime="litert")  # decorators apply bottom-up: "litert" is registered first
class LiteRTBackend(Backend):
    """A .tflite model on the LiteRT interpreter; tensors allocated once at open."""

    @classmethod
    def open(cls, artifact: Artifact, threads: int, name: str, arena: int | None) -> Backend:
        return cls(artifact, threads, name)

    def __init__(self, artifact: Artifact, threads: int, name: str = "litert") -> None:
        super().__init__(artifact, threads)
        self.name = name
        interpreter = interpreter_class(name)
        try:
            self.interpreter = interpreter(model_path=str(artifact.model_path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise _unloadable(artifact, "LiteRT", exc) from None
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self._check_model_io(inp["shape"], inp["dtype"], out["shape"])  # as allocated: batch fixed
        self._check_quantization(inp, self.manifest.input, "input")
        self._check_quantization(out, self.manifest.output, "output")

    def _check_quantization(self, detail: dict[str, Any], spec: TensorSpec, which: str) -> None:
        scale, zero_point = detail["quantization"]
        if np.dtype(detail["dtype"]) != np.dtype(spec.dtype):
            raise ArtifactError(f"{self.artifact.model_path}: model {which} is {np.dtype(detail['dtype'])}, "
                                f"manifest {which}.dtype says {spec.dtype}")
        if spec.quantized and (not np.isclose(scale, spec.scale, rtol=1e-6, atol=0) or zero_point != spec.zero_point):
            raise ArtifactError(f"{self.artifact.model_path}: model {which} quantization is scale {scale!r}, zero "
                                f"point {zero_point}; manifest {which} says {spec.scale!r}, {spec.zero_point}")

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        it = self.interpreter
        it.set_tensor(self._in, x)
        it.invoke()
        return it.get_tensor(self._out)


@BACKENDS.register("tflite_micro", runtime="litert")
class TflmBackend(Backend):
    """A .tflite model on the host build of the TensorFlow Lite Micro interpreter (the `tflite-micro`
    package): the kernels a microcontroller runs (reference kernels, not CMSIS-NN), one window per
    invoke, in a fixed tensor arena of `arena` bytes. Single-threaded by design."""

    name = "tflite_micro"
    #: Arena when none is given: ample for students (they need tens of KiB; `ecg-edge package`
    #: measures the exact figure).
    ARENA = 4 << 20

    @classmethod
    def open(cls, artifact: Artifact, threads: int, name: str, arena: int | None) -> Backend:
        return cls(artifact, threads, arena)

    def __init__(self, artifact: Artifact, threads: int, arena: int | None = None) -> None:
        super().__init__(artifact, threads)
        runtime = _tflm_runtime()
        self.threads = 1
        self.arena = int(arena or self.ARENA)
        try:
            self.interpreter = runtime.Interpreter.from_bytes(artifact.model_path.read_bytes(), arena_size=self.arena)
        except Exception as exc:  # noqa: BLE001 - TFLM raises RuntimeError/ValueError/struct.error on a bad model
            raise _unloadable(artifact, "TFLite Micro", exc, f" in a {self.arena} byte arena") from None
        inp, out = self.interpreter.get_input_details(0), self.interpreter.get_output_details(0)
        self._check_model_io(inp["shape"], inp["dtype"], out["shape"])

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        it, outs = self.interpreter, []
        for i in range(len(x)):  # the interpreter holds one window: a microcontroller's loop
            it.set_input(x[i:i + 1], 0)
            it.invoke()
            outs.append(np.array(it.get_output(0)))
        return np.concatenate(outs)


def _tflm_runtime() -> Any:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        raise _missing("tflite_micro", "tflite_micro", exc) from None
    return runtime


class _QuietStderr:
    """TFLite Micro prints each failed allocation to fd 2; an arena search makes dozens on purpose."""

    def __enter__(self) -> None:
        self._saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc: Any) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)


ARENA_ALIGN = 16
ARENA_SEARCH_MAX = 8 << 20


def _tflm_fits(runtime: Any, data: bytes, arena: int, x: np.ndarray) -> bool:
    try:
        it = runtime.Interpreter.from_bytes(data, arena_size=arena)
        it.set_input(x, 0)
        it.invoke()
        return True
    except Exception:  # noqa: BLE001 - TFLM reports a too-small arena as a RuntimeError or ValueError
        return False


def tflm_arena_bytes(data: bytes) -> int:
    """Smallest tensor arena (bytes, to 16) in which the host TFLite Micro interpreter allocates
    and invokes the model `data` (.tflite bytes); binary search between 1 KiB and 8 MiB. The host is
    64-bit: TFLM's own structures are larger here than on a 32-bit Cortex-M, which the firmware
    check measures (`arena_used_bytes()` on the board)."""
    runtime = _tflm_runtime()
    with _QuietStderr():
        try:
            probe = runtime.Interpreter.from_bytes(data, arena_size=ARENA_SEARCH_MAX)
        except Exception as exc:  # noqa: BLE001 - see TflmBackend
            raise ArtifactError(f"TFLite Micro cannot load this model ({type(exc).__name__})") from None
        d = probe.get_input_details(0)
        x = np.zeros(tuple(d["shape"]), d["dtype"])
        if not _tflm_fits(runtime, data, ARENA_SEARCH_MAX, x):
            raise ArtifactError(f"TFLite Micro cannot run this model even with a {ARENA_SEARCH_MAX} byte arena")
        lo, hi = 1024, ARENA_SEARCH_MAX  # lo fails (checked below), hi fits
        if _tflm_fits(runtime, data, lo, x):
            return lo
        while hi - lo > ARENA_ALIGN:
            mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
            lo, hi = (lo, mid) if _tflm_fits(runtime, data, mid, x) else (mid, hi)
    return hi


def executorch_planned_bytes(pte: bytes) -> int:
    """Bytes of an ExecuTorch program's memory-planned buffers (activations and scratch outside
    delegates), from the .pte's execution plans."""
    try:
        from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError as exc:
        raise _missing("executorch", "executorch", exc) from None
    res = deserialize_pte_binary(pte)
    program = getattr(res, "program", res)
    return int(sum(sum(plan.non_const_buffer_sizes) for plan in program.execution_plan))


@BACKENDS.register("executorch", runtime="executorch")
class ExecuTorchBackend(Backend):
    """A .pte program's "forward" method on the ExecuTorch runtime (XNNPACK threadpool sized to `threads`)."""

    name = "executorch"

    def __init__(self, artifact: Artifact, threads: int) -> None:
        super().__init__(artifact, threads)
        try:
            import torch
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise _missing("executorch", "executorch", exc) from None
        self._torch = torch
        if portable_lib._threadpool_get_thread_count() != threads:  # process-wide pool
            portable_lib._unsafe_reset_threadpool(threads)
        self.threads = int(portable_lib._threadpool_get_thread_count())
        with open(artifact.model_path, "rb") as fh:
            head = fh.read(8)
        if head[4:6] != b"ET":  # without its file identifier ExecuTorch 1.x aborts the process, no exception
            raise _unloadable(artifact, "ExecuTorch", ValueError(f"no 'ET' file identifier at byte 4, got {head[4:8]!r}"))
        try:
            self.method = Runtime.get().load_program(artifact.model_path).load_method("forward")
        except (RuntimeError, ValueError) as exc:
            raise _unloadable(artifact, "ExecuTorch", exc) from None
        meta = self.method.metadata
        tin, tout = meta.input_tensor_meta(0), meta.output_tensor_meta(0)
        self._check_model_io(tin.sizes(), _torch_dtype_name(tin.dtype()), tout.sizes())

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        return self.method.execute([self._torch.from_numpy(x)])[0].numpy()


def _torch_dtype_name(code: Any) -> str:
    """ExecuTorch ScalarType (an int code or enum) -> numpy dtype name."""
    codes = {1: "int8", 6: "float32"}  # c10::ScalarType: Char = 1, Float = 6
    value = int(getattr(code, "value", code))
    return codes.get(value, f"scalar type {value}")


def qdq_session_options(ort: Any) -> Any:
    """Session options for a QuantizeLinear/DequantizeLinear (QCDQ) int8 model: basic graph
    optimizations only. ONNX Runtime 1.31 and 1.32's extended level fuses Brevitas's QCDQ graph
    (weights as int8 -> Clip -> DequantizeLinear) into quantized kernels whose logits are far from
    the graph's own semantics (seen on the tiny test student: 1.47 for 2.00); the unfused graph and
    the Brevitas module agree to 1e-6 (tests/test_brevitas.py)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return opts


@BACKENDS.register("onnxruntime", runtime="onnxruntime")
class OnnxRuntimeBackend(Backend):
    """An .onnx model on ONNX Runtime's CPU provider (intra-op threads = `threads`, inter-op 1)."""

    name = "onnxruntime"

    def __init__(self, artifact: Artifact, threads: int) -> None:
        super().__init__(artifact, threads)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise _missing("onnxruntime", "onnxruntime", exc) from None
        opts = qdq_session_options(ort) if artifact.manifest.precision == "int8" else ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(artifact.model_path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types (InvalidProtobuf, Fail)
            raise _unloadable(artifact, "ONNX Runtime", exc) from None
        self.threads = int(self.session.get_session_options().intra_op_num_threads)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self._in_name = inp.name
        dtype = {"tensor(float)": "float32", "tensor(int8)": "int8"}.get(inp.type, inp.type)
        shape = [d if isinstance(d, int) else -1 for d in inp.shape]
        self._check_model_io(shape, dtype if dtype in ("float32", "int8") else "object", out.shape)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._in_name: x})[0]


def open_backend(artifact: Artifact | str | Path, backend: str | None = None, threads: int = 1,
                 arena: int | None = None) -> Backend:
    """Open the runtime for an artifact (or a path `load_artifact` accepts).

    backend: None for the manifest's runtime, or a name from `BACKENDS` that runs that format
    ("tflite_runtime" forces the legacy interpreter for a .tflite). threads: CPU threads the runtime
    may use (ExecuTorch's XNNPACK threadpool is process-wide). A runtime that is not installed
    raises `MissingExtraError` naming the extra to install. arena: the tensor arena in bytes of the
    "tflite_micro" backend (default `TflmBackend.ARENA`).
    """
    if not isinstance(artifact, Artifact):
        artifact = load_artifact(artifact)
    runtime = artifact.manifest.runtime
    name = runtime if backend is None else backend
    if name not in BACKENDS:
        raise ConfigError(f"backend: expected one of {tuple(BACKENDS)}, got {name!r}")
    entry = BACKENDS.entry(name)
    if entry.runtime != runtime:
        raise ConfigError(f"backend: {name!r} cannot run {artifact.model_path.name} (a {runtime!r} model); "
                          f"expected one of {BACKENDS.names(runtime=runtime)}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads: expected an integer >= 1, got {threads!r}")
    return entry.obj.open(artifact, threads, name, arena)


class ArtifactModel:
    """An artifact on its runtime, shaped as the streaming engine's `Model`.

    `predict(windows)` takes the preprocessor's windows (n, n_leads, window) and returns
    probabilities (n, n_labels) after the manifest's activation; `leads`, `labels`, `thresholds`
    `abstain` (the inconclusive bands, None for none) and `record_rule` come from the manifest, and
    `preprocessor(fs_in)` gives the signal contract the model was trained with, for a device at
    `fs_in` Hz.
    """

    def __init__(self, artifact: Artifact, backend: Backend):
        self.artifact, self.backend = artifact, backend
        m = artifact.manifest
        self.leads, self.labels, self.thresholds = m.spec.leads, m.labels, m.thresholds
        self.multilabel = bool(m.multilabel)
        self.abstain = m.abstain
        self.record_rule = m.record_rule

    @classmethod
    def open(cls, path: Artifact | str | Path, backend: str | None = None, threads: int = 1) -> "ArtifactModel":
        artifact = path if isinstance(path, Artifact) else load_artifact(path)
        return cls(artifact, open_backend(artifact, backend, threads))

    def preprocessor(self, fs_in: float) -> Preprocessor:
        return self.artifact.preprocessor(fs_in)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return self.probabilities(self.logits(windows))

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """The model's raw outputs (dequantized for an int8 model) for windows (n, n_leads, window)."""
        x = np.asarray(windows, dtype=np.float32)
        return self.backend.run(x[:, :, None, :])

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return self.backend.probabilities(logits)
