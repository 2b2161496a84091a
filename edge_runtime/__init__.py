"""Runtime side of ecg-edge: the signal contract, artifacts, inference backends and the streaming engine.

Imports numpy and scipy only; an inference runtime is imported lazily when asked for.
"""
from edge_runtime.errors import (
    ArtifactError, ConfigError, DatasetError, EcgEdgeError, EmptySignalError, MissingExtraError, SamplingRateError,
    SignalError, SignalShapeError, SignalValueError, UnknownLeadError,
)
from edge_runtime.spec import KNOWN_LEADS, STANDARD_LEADS, Record, SignalSpec, canonical_lead

__all__ = [
    "ArtifactError", "ConfigError", "DatasetError", "EcgEdgeError", "EmptySignalError", "MissingExtraError",
    "SamplingRateError", "SignalError", "SignalShapeError", "SignalValueError", "UnknownLeadError",
    "KNOWN_LEADS", "STANDARD_LEADS", "Record", "SignalSpec", "canonical_lead",
]
