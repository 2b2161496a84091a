"""The one error root of ecg-edge and its specific subclasses.

Every error a user can cause (bad input, bad config, a missing file or extra) is an
`EcgEdgeError`; its message is one line that names the file or field and what was expected.
The CLI prints that line and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations


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
    """An optional dependency is not installed; the message names the extra to install."""


class ArtifactError(EcgEdgeError):
    """A model artifact (model file + manifest.json) is missing, malformed or altered; names the file."""
