"""Lead names, the model-input `SignalSpec` and the `Record` every reader returns.

Leads are addressed by name, never by position: datasets order them differently (MIT-BIH
record 114 has V5 before MLII). Amplitudes are in millivolts unless a name says otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError, SignalShapeError, UnknownLeadError

#: The 12 standard leads in their conventional order.
STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)
#: Ambulatory / wearable leads: MIT-BIH's modified limb leads, and the single chest-strap lead
#: of a Polar H10 (electrodes left and right on the lower chest) or a similar device.
WEARABLE_LEADS: tuple[str, ...] = ("MLI", "MLII", "MLIII", "CHEST")
KNOWN_LEADS: tuple[str, ...] = STANDARD_LEADS + WEARABLE_LEADS

_ALIASES = {name.upper(): name for name in KNOWN_LEADS}
_ALIASES.update({"ML2": "MLII", "ML1": "MLI", "ML3": "MLIII"})

#: Sampling rates the signal contract accepts, in Hz (wearables run at 50 Hz and up; PhysioNet
#: databases go up to 10 kHz).
FS_MIN_HZ = 50.0
FS_MAX_HZ = 10_000.0


def canonical_lead(name: str, *, where: str = "lead") -> str:
    """Return the canonical spelling of a lead name ("AVR" -> "aVR", "ml2" -> "MLII").

    Raises `UnknownLeadError` naming `where` (a file or field) for a name the project does not know.
    """
    key = str(name).strip().upper()
    if key not in _ALIASES:
        raise UnknownLeadError(
            f"{where}: unknown lead {name!r}; expected one of {', '.join(KNOWN_LEADS)}"
        )
    return _ALIASES[key]


def canonical_leads(names: Any, *, where: str = "leads") -> tuple[str, ...]:
    """Canonicalise a sequence of lead names and reject empty or repeated ones."""
    if isinstance(names, str):
        names = (names,)
    leads = tuple(canonical_lead(n, where=where) for n in names)
    if not leads:
        raise ConfigError(f"{where}: expected at least one lead name")
    if len(set(leads)) != len(leads):
        raise ConfigError(f"{where}: repeated lead in {list(leads)}")
    return leads


@dataclass(frozen=True)
class SignalSpec:
    """What a model expects as input: rate, leads by name, units, window and hop.

    `window_s` is the fixed window a model sees; `hop_s` the step between consecutive windows
    (equal to `window_s` for non-overlapping windows).
    """

    fs: float
    leads: tuple[str, ...]
    units: str = "mV"
    window_s: float = 10.0
    hop_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "leads", canonical_leads(self.leads, where="SignalSpec.leads"))
        if not (FS_MIN_HZ <= float(self.fs) <= FS_MAX_HZ):
            raise ConfigError(
                f"SignalSpec.fs: expected {FS_MIN_HZ:g}..{FS_MAX_HZ:g} Hz, got {self.fs!r}"
            )
        if self.units != "mV":
            raise ConfigError(f"SignalSpec.units: expected 'mV', got {self.units!r}")
        for name in ("window_s", "hop_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"SignalSpec.{name}: expected a positive number of seconds, got {value!r}")
        for name in ("window_s", "hop_s"):
            n = getattr(self, name) * self.fs
            if abs(n - round(n)) > 1e-6:
                raise ConfigError(
                    f"SignalSpec.{name}: {getattr(self, name)} s at {self.fs:g} Hz is not a whole number of samples"
                )

    @property
    def window(self) -> int:
        """Window length in samples."""
        return int(round(self.window_s * self.fs))

    @property
    def hop(self) -> int:
        """Hop length in samples."""
        return int(round(self.hop_s * self.fs))

    def to_dict(self) -> dict[str, Any]:
        return {"fs": float(self.fs), "leads": list(self.leads), "units": self.units,
                "window_s": float(self.window_s), "hop_s": float(self.hop_s)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SignalSpec":
        return cls(fs=d["fs"], leads=tuple(d["leads"]), units=d.get("units", "mV"),
                   window_s=d["window_s"], hop_s=d["hop_s"])


@dataclass
class Record:
    """One recording: `signal` is (n_leads, n_samples) float32 in mV, leads named in `leads`.

    `labels` holds the dataset's labels (names documented by each reader), `meta` the
    metadata (missing values are `None`, never a made-up default), `source` the file it came from.
    """

    record_id: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    labels: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self.leads = canonical_leads(self.leads, where=f"{self.source or self.record_id}: leads")
        sig = np.asarray(self.signal)
        if sig.ndim != 2 or sig.shape[0] != len(self.leads):
            raise SignalShapeError(
                f"{self.source or self.record_id}: signal: expected shape ({len(self.leads)}, n_samples), got {sig.shape}"
            )
        self.signal = sig

    @property
    def duration_s(self) -> float:
        return self.signal.shape[1] / self.fs

    def lead(self, name: str) -> np.ndarray:
        """One lead by name (1-D view)."""
        lead = canonical_lead(name, where=f"{self.record_id}: lead")
        if lead not in self.leads:
            raise UnknownLeadError(
                f"{self.source or self.record_id}: lead {lead!r} not in this record (has {', '.join(self.leads)})"
            )
        return self.signal[self.leads.index(lead)]

    def select(self, names: Any) -> "Record":
        """A record with only the named leads, in the order given."""
        leads = canonical_leads(names)
        rows = np.stack([self.lead(n) for n in leads])
        return Record(self.record_id, rows, self.fs, leads, dict(self.labels), dict(self.meta), self.source)
