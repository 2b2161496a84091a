"""Model artifacts: a model file plus the `manifest.json` beside it, the only hand-over to the runtime.

The build side (`distill`) writes an artifact with `write_artifact`; the runtime reads it with
`load_artifact`, never a checkpoint or a training config. The manifest carries everything needed
to turn raw ECG into the model's input and its output into decisions:

* the signal contract: `spec` (rate, leads, window), `preprocess` (the `PreprocessConfig`) and
  `filter_design` (every filter coefficient at the training input rate, so a device at that rate
  reproduces training's preprocessing bit for bit even if scipy's designers change);
* the tensors: `input` / `output` name, shape, dtype and, for int8 tensors, the affine
  quantization `real = (q - zero_point) * scale`;
* the head: `labels`, `multilabel` (sigmoid per label, else softmax), per-label `thresholds` and,
  optionally, per-label `abstain` bands (`edge_runtime.abstain`: a decision whose margin to its
  threshold, in logit units, is below its label's band is inconclusive) and the `record_rule`
  (how a record's window probabilities become its probabilities before it is decided:
  `RECORD_RULES`, "mean" when absent);
* integrity and history: `sha256` of the model file, free-form `provenance`, package `versions`.

Layout of an artifact folder::

    out_dir/model.tflite      (or .pte, .onnx)
    out_dir/manifest.json
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from edge_runtime.abstain import check_bands
from edge_runtime.config import from_dict
from edge_runtime.errors import ArtifactError, ConfigError, EcgEdgeError
from edge_runtime.filters import FilterDesign
from edge_runtime.provenance import package_versions, sha256_of
from edge_runtime.signal import PreprocessConfig, Preprocessor, check_fs
from edge_runtime.spec import SignalSpec

#: Manifest format this runtime writes and reads; a newer one is refused. `abstain` and `record_rule`
#: (optional) did not raise it: a manifest without a band and with the "mean" record rule is written
#: exactly as before, and a reader older than a field refuses a manifest that uses it ("abstain:
#: unknown key", "record_rule: unknown key"), never reading it silently as a model without it.
FORMAT = 1
#: How a record's window probabilities become its probabilities (the record rule, `Manifest.record_rule`;
#: `edge_runtime.backends.record_probabilities`): "mean", their average per label; "max", their maximum
#: per label (AF that shows in one window of a long record is not averaged away).
RECORD_RULES = ("mean", "max")
MANIFEST_NAME = "manifest.json"
#: Runtime name -> model file suffix.
RUNTIMES: dict[str, str] = {"litert": ".tflite", "executorch": ".pte", "onnxruntime": ".onnx"}
PRECISIONS = ("fp32", "int8")
DTYPES = ("float32", "int8")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Largest manifest read (bytes): a real one is tens of KiB; a bigger file is not parsed.
MANIFEST_MAX_BYTES = 1 << 20


def inside(root: str | Path, name: Any, where: str) -> Path:
    """The resolved path of `name` (a manifest's file name) inside the folder `root`.

    A manifest is input: a name must not reach outside its folder, whether by "..", an absolute
    path or a symlink leading out, or a reader would hash, parse or run a file nobody packaged. The
    one check of artifacts and vendor bundles; ArtifactError naming `where` (the field) and the name.
    """
    expected = f"expected a relative path inside {root} (no '..', no absolute path, no symlink leading out)"
    if not isinstance(name, str) or not name or "\0" in name:
        raise ArtifactError(f"{where}: {expected}, got {name!r}")
    win = PureWindowsPath(name)  # "C:\\x" or "..\\x" reach out on Windows, where a vendor may run verify
    if PurePosixPath(name).is_absolute() or win.anchor or ".." in PurePosixPath(name).parts or ".." in win.parts:
        raise ArtifactError(f"{where}: {name!r} leaves the folder; {expected}")
    base = Path(root).resolve()
    full = (base / name).resolve()
    if not full.is_relative_to(base):
        raise ArtifactError(f"{where}: {name!r} resolves to {full}, outside the folder; {expected}")
    return full


def read_manifest(path: str | Path, cap: int = MANIFEST_MAX_BYTES) -> bytes:
    """The bytes of a manifest file, at most `cap` of them: a manifest is parsed before anything in
    it can be checked, so its size is bounded first (OSError propagates: the caller names the file)."""
    with open(path, "rb") as fh:
        blob = fh.read(cap + 1)
    if len(blob) > cap:
        size = Path(path).stat().st_size
        raise ArtifactError(f"{path}: {size} bytes, over the {cap} byte ({cap / 2**20:g} MiB) cap "
                            "for a manifest; expected a manifest.json written by ecg-edge")
    return blob


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output tensor.

    shape: e.g. (1, n_leads, 1, window) for the student's Conv2d-over-(N, C, 1, T) input; the batch
    dimension is -1 when the model accepts any batch. For dtype "int8", real = (q - zero_point) *
    scale; for "float32", scale and zero_point are None. Validated as part of a `Manifest`, which
    names the field ("input.shape").
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.dtype == "int8"


def _check_tensor(t: TensorSpec, where: str, expected: tuple[int, ...]) -> None:
    """Validate a TensorSpec against the shape the manifest implies (batch first, free)."""
    if not isinstance(t, TensorSpec):
        raise ConfigError(f"{where}: expected a TensorSpec, got {type(t).__name__}")
    if not isinstance(t.name, str) or not t.name:
        raise ConfigError(f"{where}.name: expected a non-empty string, got {t.name!r}")
    shape = tuple(t.shape) if isinstance(t.shape, (list, tuple)) else None
    if shape is None or any(isinstance(d, bool) or not isinstance(d, int) for d in shape) \
            or len(shape) != len(expected) + 1 or shape[1:] != expected or not (shape[0] >= 1 or shape[0] == -1):
        want = ", ".join(["batch", *map(str, expected)])
        raise ConfigError(f"{where}.shape: expected ({want}) with batch >= 1 or -1, got {t.shape!r}")
    if t.dtype not in DTYPES:
        raise ConfigError(f"{where}.dtype: expected one of {DTYPES}, got {t.dtype!r}")
    if t.dtype == "float32":
        if t.scale is not None or t.zero_point is not None:
            raise ConfigError(f"{where}.scale: expected none for a float32 tensor, got {t.scale!r}/{t.zero_point!r}")
        return
    if isinstance(t.scale, bool) or not isinstance(t.scale, (int, float)) or not math.isfinite(t.scale) \
            or t.scale <= 0:
        raise ConfigError(f"{where}.scale: expected a positive number for an int8 tensor, got {t.scale!r}")
    if isinstance(t.zero_point, bool) or not isinstance(t.zero_point, int) or not -128 <= t.zero_point <= 127:
        raise ConfigError(f"{where}.zero_point: expected an integer in -128..127, got {t.zero_point!r}")


@dataclass(frozen=True)
class Manifest:
    """What a model artifact declares about its model file (see the module docstring).

    model_file: file name relative to the manifest, its suffix matching `runtime`. thresholds: one
    decision threshold per label on the probability (None: 0.5 each). abstain: one inconclusive band
    per label in logit units, >= 0 (`edge_runtime.abstain.inconclusive`; None: no abstention, and
    the key is left out of manifest.json). record_rule: how a record's window probabilities become
    its probabilities (`RECORD_RULES`; "mean" is left out of manifest.json).
    filter_design:
    `FilterDesign.to_dict()` at the training input rate, or None. provenance: free-form (teacher,
    data, calibration...). versions: package versions that built the model.
    """

    model_file: str
    sha256: str
    runtime: str
    precision: str
    spec: SignalSpec
    preprocess: PreprocessConfig
    labels: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    multilabel: bool = False
    thresholds: tuple[float, ...] | None = None
    abstain: tuple[float, ...] | None = None
    record_rule: str = "mean"
    filter_design: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT

    def __post_init__(self) -> None:
        if isinstance(self.format, bool) or self.format != FORMAT:
            raise ConfigError(f"format: expected {FORMAT}, got {self.format!r}")
        if not isinstance(self.model_file, str) or not self.model_file or Path(self.model_file).name != self.model_file:
            raise ConfigError(f"model_file: expected a file name beside the manifest, got {self.model_file!r}")
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise ConfigError(f"sha256: expected 64 lowercase hex digits, got {self.sha256!r}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime: expected one of {tuple(RUNTIMES)}, got {self.runtime!r}")
        if not self.model_file.endswith(RUNTIMES[self.runtime]):
            raise ConfigError(f"model_file: expected a {RUNTIMES[self.runtime]} file for runtime "
                              f"{self.runtime!r}, got {self.model_file!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        self._check_signal()
        self._check_head()
        _check_tensor(self.input, "input", (len(self.spec.leads), 1, self.spec.window))
        _check_tensor(self.output, "output", (len(self.labels),))
        if self.precision == "fp32" and (self.input.quantized or self.output.quantized):
            raise ConfigError("precision: 'fp32' model with an int8 input or output; expected 'int8'")
        for name in ("provenance", "versions"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name}: expected a table, got {type(getattr(self, name)).__name__}")

    def _check_signal(self) -> None:
        if not isinstance(self.spec, SignalSpec):
            raise ConfigError(f"spec: expected a SignalSpec, got {type(self.spec).__name__}")
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ConfigError(f"preprocess: expected a PreprocessConfig, got {type(self.preprocess).__name__}")
        if self.spec.fs != self.preprocess.fs_out or self.spec.window != self.preprocess.window:
            raise ConfigError(
                f"spec: {self.spec.window} samples at {self.spec.fs:g} Hz, but preprocess gives "
                f"{self.preprocess.window} at {self.preprocess.fs_out:g} Hz; expected the same")
        if self.filter_design is not None:
            if not isinstance(self.filter_design, dict):
                raise ConfigError(f"filter_design: expected a table or none, got {type(self.filter_design).__name__}")
            design = FilterDesign.from_dict(self.filter_design, where="filter_design")
            if design.fs_out != self.preprocess.fs_out:
                raise ConfigError(f"filter_design.fs_out: expected preprocess.fs_out = "
                                  f"{self.preprocess.fs_out:g} Hz, got {design.fs_out:g}")

    def _check_head(self) -> None:
        labels = self.labels
        if not isinstance(labels, tuple) or not labels or not all(isinstance(s, str) and s for s in labels) \
                or len(set(labels)) != len(labels):
            raise ConfigError(f"labels: expected distinct non-empty names, got {labels!r}")
        if not isinstance(self.multilabel, bool):
            raise ConfigError(f"multilabel: expected true or false, got {self.multilabel!r}")
        if self.thresholds is None:
            object.__setattr__(self, "thresholds", (0.5,) * len(labels))
        th = self.thresholds
        if not isinstance(th, tuple) or len(th) != len(labels):
            raise ConfigError(f"thresholds: expected {len(labels)} values (one per label), got {th!r}")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0 for v in th):
            raise ConfigError(f"thresholds: expected probabilities in 0..1, got {th!r}")
        if self.abstain is not None:
            object.__setattr__(self, "abstain", check_bands(self.abstain, len(labels), "abstain"))
        if self.record_rule not in RECORD_RULES:
            raise ConfigError(f"record_rule: expected one of {list(RECORD_RULES)}, got {self.record_rule!r}")

    @property
    def design(self) -> FilterDesign | None:
        """The stored filter design (None when the manifest carries none)."""
        return None if self.filter_design is None else FilterDesign.from_dict(self.filter_design)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what manifest.json holds); `abstain` only when the manifest has bands,
        `record_rule` only when it is not "mean" (so such manifests are written as before either field)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (f.name, value) in (("abstain", None), ("record_rule", "mean")):
                continue
            if isinstance(value, SignalSpec):
                value = value.to_dict()
            elif isinstance(value, (PreprocessConfig, TensorSpec)):
                value = dataclasses.asdict(value)
            out[f.name] = _jsonable(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """Build from manifest.json's content; ConfigError naming the field on anything unexpected."""
        if not isinstance(data, dict):
            raise ConfigError(f"expected a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if isinstance(fmt, bool) or not isinstance(fmt, int):
            raise ConfigError(f"format: expected an integer, got {fmt!r}")
        if fmt > FORMAT:
            raise ConfigError(f"format: {fmt} is newer than this runtime reads ({FORMAT}); upgrade ecg-edge")
        _require(cls, data, "")
        for key, sub in (("spec", SignalSpec), ("preprocess", PreprocessConfig), ("input", TensorSpec),
                         ("output", TensorSpec)):
            if isinstance(data[key], dict):
                _require(sub, data[key], key)
        return from_dict(cls, data)


def _require(cls: type, data: dict[str, Any], where: str) -> None:
    for f in dataclasses.fields(cls):
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING \
                and f.name not in data:
            raise ConfigError(f"{where + '.' if where else ''}{f.name}: missing required field")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Artifact:
    """A loaded, verified artifact: its manifest and the absolute path of its model file."""

    manifest: Manifest
    model_path: Path
    manifest_path: Path

    def preprocessor(self, fs_in: float) -> Preprocessor:
        """The signal contract for a device at `fs_in` Hz feeding this model.

        At the training input rate the stored filter design is used, so preprocessing is
        reproduced exactly; at any other rate the filters are designed from `preprocess`.
        """
        fs_in = check_fs(fs_in, "fs_in")
        design = self.manifest.design
        if design is not None and design.fs_in != fs_in:
            design = None
        return Preprocessor(self.manifest.preprocess, fs_in, self.manifest.spec.leads, design=design)


def write_artifact(model: bytes | str | Path, *, out_dir: str | Path, runtime: str, precision: str,
                   spec: SignalSpec, preprocess: PreprocessConfig, labels: tuple[str, ...],
                   input: TensorSpec | dict[str, Any], output: TensorSpec | dict[str, Any],
                   multilabel: bool = False, thresholds: tuple[float, ...] | None = None,
                   abstain: tuple[float, ...] | None = None, record_rule: str = "mean",
                   filter_design: FilterDesign | dict[str, Any] | None = None,
                   provenance: dict[str, Any] | None = None, versions: dict[str, Any] | None = None,
                   model_file: str | None = None) -> Path:
    """Write the model file and its manifest.json into `out_dir`; return the manifest's path.

    `model` is the model's bytes or the path of a model file (copied unless already in place).
    The manifest is validated before anything is written; `sha256` is computed from the bytes;
    `versions` gains the ecg-edge version that wrote the artifact. `abstain`: the per-label
    inconclusive bands (`Manifest.abstain`), None for none. `record_rule`: `Manifest.record_rule`.
    """
    data = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime: expected one of {tuple(RUNTIMES)}, got {runtime!r}")
    manifest = Manifest(
        model_file=model_file or "model" + RUNTIMES[runtime], sha256=hashlib.sha256(data).hexdigest(),
        runtime=runtime, precision=precision, spec=spec, preprocess=preprocess, labels=tuple(labels),
        input=input if isinstance(input, TensorSpec) else TensorSpec(**input),
        output=output if isinstance(output, TensorSpec) else TensorSpec(**output),
        multilabel=multilabel, thresholds=None if thresholds is None else tuple(float(t) for t in thresholds),
        abstain=abstain, record_rule=record_rule,
        filter_design=filter_design.to_dict() if isinstance(filter_design, FilterDesign) else filter_design,
        provenance=dict(provenance or {}), versions={"ecg_edge": _own_version(), **(versions or {})})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / manifest.model_file, bytes(data))
    path = out / MANIFEST_NAME
    _write_atomic(path, (json.dumps(manifest.to_dict(), indent=2) + "\n").encode("utf-8"))
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _own_version() -> str:
    return str(package_versions(("ecg-edge",))["ecg-edge"])  # "unknown" from a source tree not installed


def load_artifact(path: str | Path) -> Artifact:
    """Load and verify an artifact from its manifest.json, the folder holding it, or its model file.

    Raises `ArtifactError` naming the file: a missing, oversized (`MANIFEST_MAX_BYTES`) or malformed
    manifest (naming the field), a newer format, a model file that is missing or outside the
    manifest's folder (`inside`: a symlink leading out included), or whose SHA-256 differs from the
    manifest's.
    """
    p = Path(path)
    model_name = None
    if p.is_dir():
        manifest_path = p / MANIFEST_NAME
    elif p.suffix == ".json":
        manifest_path = p
    else:
        manifest_path, model_name = p.parent / MANIFEST_NAME, p.name
    try:
        data = json.loads(read_manifest(manifest_path).decode("utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{manifest_path}: not found; expected a manifest.json, the folder holding "
                            "it, or the model file beside it") from None
    except OSError as exc:  # a folder named manifest.json, no permission
        raise ArtifactError(f"{manifest_path}: not readable ({exc.strerror or exc}); expected a manifest.json file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[...]]]]
        raise ArtifactError(f"{manifest_path}: not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        manifest = Manifest.from_dict(data)
    except EcgEdgeError as exc:
        raise ArtifactError(f"{manifest_path}: {exc}") from None
    if model_name is not None and model_name != manifest.model_file:
        raise ArtifactError(f"{p}: the manifest.json beside it describes {manifest.model_file!r}, not {model_name!r}")
    try:
        model_path = inside(manifest_path.parent, manifest.model_file, "model_file")
    except ArtifactError as exc:
        raise ArtifactError(f"{manifest_path}: {exc}") from None
    if not model_path.is_file():
        raise ArtifactError(f"{model_path}: model file named by {manifest_path} (model_file) not found")
    actual = sha256_of(model_path)
    if actual != manifest.sha256:
        raise ArtifactError(f"{model_path}: sha256 mismatch: manifest expects {manifest.sha256}, file has "
                            f"{actual} (the model file changed after export)")
    return Artifact(manifest, model_path, manifest_path.resolve())
