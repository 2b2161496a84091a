"""Polar H10 Measurement Data (PMD) service: pure codecs for raw ECG, no I/O.

Byte layouts (verified, see docs/FACTS.md "Bluetooth LE wearables"; error and setting names from
Polar's public BLE SDK, `PmdControlPointResponse.kt` and `PmdSetting.kt`):

- control point write: `op type [setting_id count value*count]...`, op 1 get settings, 2 start,
  3 stop; `START_ECG` = start ECG at 130 Hz, 14 bit. Values are little-endian.
- control point indication: `F0 op type error more params...`.
- control point read: `0F` then a bitmask of supported measurement types.
- data notification: `type(0x00 ECG) timestamp(uint64 LE, ns since 2000-01-01 UTC, of the LAST
  sample) frame_type(0x00 raw) samples(int24 LE, µV)...`.

`PolarSampleIndexer` places frames in the device's sample count from device timestamps only.
The shared pieces (`IndexedFrame`, the int24 helpers) live here and `open_profile` reuses them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable, Mapping, Sequence

import numpy as np

from firmware_bridge.errors import ProfileError, profile_error

_SUFFIX = "-02e7-f387-1cad-8acd2d8df0c8"
PMD_SERVICE = "fb005c80" + _SUFFIX
PMD_CONTROL = "fb005c81" + _SUFFIX
PMD_DATA = "fb005c82" + _SUFFIX

#: The H10's nominal ECG rate; the true rate is slightly higher (see `PolarSampleIndexer`).
HR_ECG_FS = 130.0
#: Start ECG: op 2, type 0, sample rate (id 0, 1 value) 130, resolution (id 1, 1 value) 14.
START_ECG = bytes.fromhex("0200000182000101 0e00")
STOP_ECG = bytes.fromhex("0300")
#: 2000-01-01T00:00:00Z, the epoch of PMD timestamps, in Unix ns.
POLAR_EPOCH_UNIX_NS = 946_684_800 * 1_000_000_000

OP_GET_SETTINGS, OP_START, OP_STOP = 1, 2, 3
RESPONSE_CODE = 0xF0
FEATURES_CODE = 0x0F
ECG = 0
#: Measurement type ids (also the bit numbers of the features bitmask).
MEASUREMENT_TYPES: dict[str, int] = {"ECG": 0, "PPG": 1, "ACC": 2, "PPI": 3, "GYRO": 5, "MAG": 6}
_TYPE_NAMES = {v: k for k, v in MEASUREMENT_TYPES.items()}
#: Setting id -> (name, bytes per value). "factor" is a float32 sent as its raw uint32 bits.
SETTINGS: dict[int, tuple[str, int]] = {
    0: ("sample_rate", 2), 1: ("resolution", 2), 2: ("range", 2),
    3: ("range_milliunit", 4), 4: ("channels", 1), 5: ("factor", 4),
}
_SETTING_IDS = {name: (sid, size) for sid, (name, size) in SETTINGS.items()}


class PmdError(IntEnum):
    """Control point error codes (Polar BLE SDK `PmdControlPointResponseCode`, 0-14)."""

    SUCCESS = 0
    INVALID_OP_CODE = 1
    INVALID_MEASUREMENT_TYPE = 2
    NOT_SUPPORTED = 3
    INVALID_LENGTH = 4
    INVALID_PARAMETER = 5
    ALREADY_IN_STATE = 6
    INVALID_RESOLUTION = 7
    INVALID_SAMPLE_RATE = 8
    INVALID_RANGE = 9
    INVALID_MTU = 10
    INVALID_NUMBER_OF_CHANNELS = 11
    INVALID_STATE = 12
    DEVICE_IN_CHARGER = 13
    DISK_FULL = 14


def error_name(code: int) -> str:
    """Name of a control point error code; unknown codes read `ERROR_<n>`."""
    return PmdError(code).name if code in PmdError._value2member_map_ else f"ERROR_{code}"


class PmdRequestError(ProfileError):
    """A malformed control point request; `code` is the PMD error a device answers with."""

    def __init__(self, message: str, code: PmdError) -> None:
        super().__init__(message)
        self.code = code


# --- shared helpers (open_profile uses them too) -------------------------------------------------

def decode_int24_le(payload: np.ndarray) -> np.ndarray:
    """Signed 24-bit little-endian samples, (n*3,) uint8 -> (n,) int32, without a Python loop."""
    b = payload.reshape(-1, 3).astype(np.int32)
    x = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    return (x ^ 0x800000) - 0x800000


def encode_int24_le(samples: np.ndarray) -> bytes:
    """(n,) integers within int24 -> n*3 bytes, little-endian two's complement."""
    return samples.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


def as_int_samples(samples: object, bits: int, where: str) -> np.ndarray:
    """Validate a 1-D, non-empty integer array within a signed `bits`-bit range."""
    s = np.asarray(samples)
    if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.integer):
        raise profile_error(where, "samples", "a non-empty 1-D integer array", f"shape {s.shape} {s.dtype}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if int(s.min()) < lo or int(s.max()) > hi:
        raise profile_error(where, "samples", f"int{bits} values {lo}..{hi}", f"{int(s.min())}..{int(s.max())}")
    return s.astype(np.int64)


class ImplausibleFrameError(ProfileError):
    """A well-formed frame whose timing no real stream produces (a corrupt timestamp or index):
    refused and counted as malformed, instead of opening a gap of hours or stepping back in time."""


class ClockGuard:
    """How far a device's clock may run ahead of the host's: the bound that tells a real gap (a
    disconnect, dropped notifications) from a corrupt timestamp.

    Between two frames a device's clock advances by about the host time that passed, minus the
    difference in their transport latencies. So `offset = device_s / time_scale - host_s` never
    rises more than `margin_s` above the largest offset seen (the frame with the least latency),
    whatever the outage; a frame beyond that bound is implausible. time_scale: device seconds per
    host second (1 for a real wearable; the virtual wearable's `speed` when it replays faster).
    After a reconnect the first frame is checked against the old anchor, then re-anchors (a virtual
    device pauses its clock while the link is down; a real one does not). Without host times
    (offline use) nothing is checked.
    """

    def __init__(self, time_scale: float = 1.0, margin_s: float = 2.0) -> None:
        if not (time_scale > 0 and margin_s > 0):
            raise profile_error("clock guard", "time_scale/margin_s", "> 0", (time_scale, margin_s))
        self.time_scale, self.margin_s = float(time_scale), float(margin_s)
        self.reset()

    def reset(self) -> None:
        self._anchor: float | None = None
        self._reanchor = False

    def new_connection(self) -> None:
        self._reanchor = True

    def excess_s(self, device_s: float, host_s: float | None) -> float:
        """Seconds by which a frame at device time `device_s` arriving at `host_s` is ahead of the bound."""
        if host_s is None or self._anchor is None:
            return 0.0
        return device_s / self.time_scale - host_s - self._anchor - self.margin_s

    def accept(self, device_s: float, host_s: float | None) -> None:
        if host_s is None:
            return
        offset = device_s / self.time_scale - host_s
        self._anchor = offset if self._anchor is None or self._reanchor else max(self._anchor, offset)
        self._reanchor = False


@dataclass(frozen=True)
class IndexedFrame:
    """Where a received frame sits in the device's sample count.

    first_index: index of the frame's first sample (64-bit, monotonic, 0 at the stream start).
    lost_before: samples missing between the previous indexed frame and this one.
    duplicate: the frame is not newer than what was already indexed (a duplicate or a reordered
        frame): drop it; `first_index` is then only where it would have been.
    period_ns: the sample period used (estimated for Polar, nominal for the open profile).
    restart: the device restarted its count or clock; indices continue right after the last one.
    """

    first_index: int
    n: int
    lost_before: int
    duplicate: bool
    period_ns: float
    restart: bool = False

    @property
    def end_index(self) -> int:
        """Index one past the frame's last sample."""
        return self.first_index + self.n


# --- control point -------------------------------------------------------------------------------

def encode_features(types: Iterable[str]) -> bytes:
    """The control point's read value: `0F` then the bitmask of the named measurement types."""
    mask = 0
    for name in types:
        if name not in MEASUREMENT_TYPES:
            raise profile_error("polar pmd features", "type", f"one of {sorted(MEASUREMENT_TYPES)}", repr(name))
        mask |= 1 << MEASUREMENT_TYPES[name]
    return bytes([FEATURES_CODE, mask])


def decode_features(data: bytes) -> frozenset[str]:
    """Names of the measurement types a device supports (unknown bits are ignored)."""
    buf = bytes(data)
    if len(buf) < 2 or buf[0] != FEATURES_CODE:
        raise profile_error("polar pmd features", "header", "0x0f then a bitmask (>= 2 bytes)",
                            buf[:2].hex() or "empty")
    mask = int.from_bytes(buf[1:], "little")
    return frozenset(name for name, bit in MEASUREMENT_TYPES.items() if mask >> bit & 1)


def encode_settings(settings: Mapping[str, int | Sequence[int]]) -> bytes:
    """Settings TLV: `id count value*count` per setting, values little-endian unsigned."""
    out = bytearray()
    for name, value in settings.items():
        if name not in _SETTING_IDS:
            raise profile_error("polar pmd settings", "name", f"one of {sorted(_SETTING_IDS)}", repr(name))
        sid, size = _SETTING_IDS[name]
        values = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
        if not 1 <= len(values) <= 255 or any(not 0 <= int(v) < 1 << 8 * size for v in values):
            raise profile_error("polar pmd settings", name, f"1..255 values of uint{8 * size}", values)
        out += bytes([sid, len(values)]) + b"".join(int(v).to_bytes(size, "little") for v in values)
    return bytes(out)


def decode_settings(data: bytes) -> dict[str, tuple[int, ...]]:
    """Parse a settings TLV (a start request, or the parameters of a get-settings response)."""
    buf, pos, out = bytes(data), 0, {}
    while pos < len(buf):
        if pos + 2 > len(buf):
            raise PmdRequestError(f"polar pmd settings: setting at byte {pos}: expected id and count, "
                                  f"got {len(buf) - pos} byte", PmdError.INVALID_LENGTH)
        sid, count = buf[pos], buf[pos + 1]
        if sid not in SETTINGS:
            raise PmdRequestError(f"polar pmd settings: setting id: expected one of {sorted(SETTINGS)}, "
                                  f"got {sid}", PmdError.INVALID_PARAMETER)
        name, size = SETTINGS[sid]
        end = pos + 2 + count * size
        if count == 0 or name in out:
            raise PmdRequestError(f"polar pmd settings: {name}: expected one entry with >= 1 value, "
                                  f"got {'a repeat' if name in out else 'count 0'}", PmdError.INVALID_PARAMETER)
        if end > len(buf):
            raise PmdRequestError(f"polar pmd settings: {name}: expected {count} value(s) of {size} bytes, "
                                  f"got {len(buf) - pos - 2} bytes", PmdError.INVALID_LENGTH)
        out[name] = tuple(int.from_bytes(buf[p:p + size], "little") for p in range(pos + 2, end, size))
        pos = end
    return out


@dataclass(frozen=True)
class ControlRequest:
    """A control point write: op (1 get settings, 2 start, 3 stop), type, one value per setting."""

    op: int
    measurement_type: int
    settings: dict[str, int] = field(default_factory=dict)


def encode_control_request(op: int, measurement_type: int = ECG,
                           settings: Mapping[str, int] | None = None) -> bytes:
    """`op type [settings TLV]`; `encode_control_request(2, 0, {"sample_rate": 130, "resolution": 14})`
    equals `START_ECG`."""
    if op not in (OP_GET_SETTINGS, OP_START, OP_STOP) or not 0 <= measurement_type <= 255:
        raise profile_error("polar pmd request", "op/type", "op 1..3 and type 0..255", (op, measurement_type))
    return bytes([op, measurement_type]) + encode_settings(settings or {})


def decode_control_request(data: bytes) -> ControlRequest:
    """Parse a control point write; `PmdRequestError.code` says which PMD error to answer."""
    buf = bytes(data)
    if len(buf) < 2:
        raise PmdRequestError(f"polar pmd request: length: expected >= 2 bytes (op, type), got {len(buf)}",
                              PmdError.INVALID_LENGTH)
    op, mtype = buf[0], buf[1]
    if op not in (OP_GET_SETTINGS, OP_START, OP_STOP):
        raise PmdRequestError(f"polar pmd request: op: expected 1 (get settings), 2 (start) or 3 (stop), "
                              f"got {op}", PmdError.INVALID_OP_CODE)
    if op != OP_START and len(buf) != 2:
        raise PmdRequestError(f"polar pmd request: length: expected 2 bytes for op {op}, got {len(buf)}",
                              PmdError.INVALID_LENGTH)
    settings = decode_settings(buf[2:])
    if any(len(v) != 1 for v in settings.values()):
        raise PmdRequestError("polar pmd request: settings: expected one value per setting in a start "
                              f"request, got {settings}", PmdError.INVALID_PARAMETER)
    return ControlRequest(op, mtype, {k: v[0] for k, v in settings.items()})


@dataclass(frozen=True)
class ControlResponse:
    """A control point indication `F0 op type error more params`."""

    op: int
    measurement_type: int
    error: int
    error_name: str
    more: bool
    params: bytes = b""

    @property
    def ok(self) -> bool:
        return self.error == PmdError.SUCCESS


def encode_control_response(op: int, measurement_type: int, error: int, more: bool = False,
                            params: bytes = b"") -> bytes:
    """The device's answer to a control point write."""
    if not all(0 <= v <= 255 for v in (op, measurement_type, error)):
        raise profile_error("polar pmd response", "op/type/error", "bytes 0..255", (op, measurement_type, error))
    return bytes([RESPONSE_CODE, op, measurement_type, error, int(bool(more))]) + bytes(params)


def decode_control_response(data: bytes) -> ControlResponse:
    """Parse an indication; an error response may stop after the error byte (4 bytes)."""
    buf = bytes(data)
    if len(buf) < 4 or buf[0] != RESPONSE_CODE:
        raise profile_error("polar pmd response", "header", "f0 op type error [more params] (>= 4 bytes)",
                            buf[:5].hex() or "empty")
    more = len(buf) > 4 and buf[4] != 0
    return ControlResponse(buf[1], buf[2], buf[3], error_name(buf[3]), more, buf[5:])


# --- ECG data ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EcgFrame:
    """One ECG notification: device timestamp of the LAST sample (ns since 2000-01-01 UTC)."""

    timestamp_ns: int
    samples_uv: np.ndarray

    @property
    def n(self) -> int:
        return int(self.samples_uv.shape[0])

    @property
    def samples_mv(self) -> np.ndarray:
        return self.samples_uv / 1000.0

    def first_sample_time_ns(self, period_ns: float) -> int:
        """Device time of the first sample, given the sample period (see `PolarSampleIndexer`)."""
        return self.timestamp_ns - round((self.n - 1) * period_ns)


_ECG = "polar pmd ecg frame"


def encode_ecg_frame(timestamp_ns: int, samples_uv: object) -> bytes:
    """A raw (frame type 0) ECG notification; samples in µV within int24."""
    s = as_int_samples(samples_uv, 24, _ECG)
    if not 0 <= int(timestamp_ns) < 1 << 64:
        raise profile_error(_ECG, "timestamp_ns", "uint64", timestamp_ns)
    return struct.pack("<BQB", ECG, int(timestamp_ns), 0) + encode_int24_le(s)


def decode_ecg_frame(data: bytes) -> EcgFrame:
    """Parse an ECG notification (vectorized: the payload is viewed as (n, 3) bytes)."""
    buf = bytes(data)
    if len(buf) < 10:
        raise profile_error(_ECG, "length", "at least 10 bytes (type, timestamp, frame type)", f"{len(buf)} bytes")
    if buf[0] != ECG:
        name = _TYPE_NAMES.get(buf[0], "unknown")
        raise profile_error(_ECG, "measurement type", "0x00 (ECG)", f"0x{buf[0]:02x} ({name})")
    if buf[9] & 0x80:
        raise ProfileError(f"{_ECG}: frame type 0x{buf[9]:02x}: delta-compressed frames are not supported; "
                           "the H10 sends raw ECG when started with the settings in START_ECG")
    if buf[9] != 0:
        raise profile_error(_ECG, "frame type", "0x00 (raw int24 µV, what the H10 sends)", f"0x{buf[9]:02x}")
    payload = np.frombuffer(buf, dtype=np.uint8, offset=10)
    if payload.size == 0 or payload.size % 3:
        raise profile_error(_ECG, "payload", "a non-empty multiple of 3 bytes (int24 samples)",
                            f"{payload.size} bytes")
    return EcgFrame(int.from_bytes(buf[1:9], "little"), decode_int24_le(payload))


class PolarSampleIndexer:
    """Turn successive `EcgFrame`s into indices of the device's sample count, from device time only.

    Estimator: the sample period is the ratio estimate T = sum(dt) / sum(n) over consecutive frame
    pairs judged contiguous (the timestamp advanced by exactly the frame's own length, rounded);
    before the first such pair the nominal 1/130 s is used. This is the average period over the
    contiguous stretches seen; timestamp jitter sigma adds about sigma * sqrt(2 * stretches) /
    (samples seen * T). Measured on a simulated 130.3 Hz H10 (20 seeds): exact timestamps give a
    relative error ~1e-11; +-20 µs uniform jitter with every 9th frame lost, <= 3e-6 after one
    minute and <= 1.4e-6 after four. Gaps never feed the estimate, so a misjudged gap cannot bias
    it; the clamp to nominal +- `max_rate_error` guards against a broken clock.

    Per frame: steps = round((t - t_last) / T) is how far its last sample lies after the previous
    frame's last sample; `lost_before = max(0, steps - n)`. A timestamp not newer than the last
    one is a duplicate or reordered frame (flagged, not indexed); one more than `max_backstep_s`
    older is a device clock reset (`restart`: indexing continues contiguously).
    Gaps are exact while (gap samples) * (relative period error) < 0.5: about 20 minutes at 3e-6,
    but before the first contiguous pair (nominal period, 0.23 % off for a 130.3 Hz device) only
    gaps under ~215 samples (1.6 s) are.

    Corrupt timestamps (given `host_time`s): a frame further ahead than the host clock allows
    (`ClockGuard`), or, within one connection, more than `max_backstep_s` behind, raises
    `ImplausibleFrameError` and is not indexed (its samples become part of the next gap). After
    `resync_after` such frames in a row the device's clock really changed: the next one restarts
    the count (`restart`), right after the last sample plus the refused frames' samples (lost).
    """

    def __init__(self, nominal_fs: float = HR_ECG_FS, max_rate_error: float = 0.02,
                 max_backstep_s: float = 5.0, guard: ClockGuard | None = None, resync_after: int = 3) -> None:
        if not nominal_fs > 0 or not 0 < max_rate_error < 0.5:
            raise profile_error("polar indexer", "nominal_fs/max_rate_error", "> 0 and 0..0.5",
                                (nominal_fs, max_rate_error))
        self.nominal_period_ns = 1e9 / nominal_fs
        self.max_rate_error = max_rate_error
        self.max_backstep_ns = int(max_backstep_s * 1e9)
        self.guard = guard or ClockGuard()
        self.resync_after = resync_after
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next frame starts a new stream at index 0."""
        self._last: tuple[int, int] | None = None  # (timestamp ns, index) of the last indexed sample
        self._sum_dt, self._sum_n = 0, 0
        self._refused: list[int] = []  # sample counts of the implausible frames refused in a row
        self._new_connection = False
        self.guard.reset()
        self.frames = self.lost = self.duplicates = 0

    def new_connection(self) -> None:
        """The link was re-established: the next frame may follow an outage or a clock reset."""
        self._new_connection = True
        self.guard.new_connection()

    @property
    def period_ns(self) -> float:
        """Current sample-period estimate in ns."""
        if self._sum_n == 0:
            return self.nominal_period_ns
        lo = self.nominal_period_ns * (1 - self.max_rate_error)
        hi = self.nominal_period_ns * (1 + self.max_rate_error)
        return min(max(self._sum_dt / self._sum_n, lo), hi)

    @property
    def fs(self) -> float:
        """Estimated true sampling rate in Hz."""
        return 1e9 / self.period_ns

    def feed(self, frame: EcgFrame, host_time: float | None = None) -> IndexedFrame:
        """Index one frame (frames must be fed in arrival order; `host_time`: its arrival,
        `time.monotonic()`, which enables the plausibility checks)."""
        n, t, period = frame.n, int(frame.timestamp_ns), self.period_ns
        if self._last is None:
            return self._accept(t, host_time, 0, n, 0, restart=False)
        last_t, last_i = self._last
        dt = t - last_t
        steps = round(dt / period)
        if dt <= 0 and -dt <= self.max_backstep_ns:
            self.duplicates += 1
            return IndexedFrame(last_i + steps - n + 1, n, 0, True, period)
        why = self._implausible(t, dt, host_time)
        if why and len(self._refused) < self.resync_after:
            self._refused.append(n)
            raise ImplausibleFrameError(f"{_ECG}: timestamp: {why}; frame refused")
        if why or dt <= 0:  # the device clock really changed (or stepped back across a reconnect)
            lost = sum(self._refused)
            self.guard.new_connection()  # re-anchor on the new timeline
            return self._accept(t, host_time, last_i + 1 + lost, n, lost, restart=True)
        lost = max(0, steps - n)
        if steps == n:
            self._sum_dt += dt
            self._sum_n += n
        return self._accept(t, host_time, last_i + 1 + lost, n, lost, restart=False)

    def _implausible(self, t: int, dt: int, host_time: float | None) -> str:
        """Why a frame at device time `t`, `dt` ns after the last one, cannot be real ('' if it can)."""
        if host_time is None:
            return ""
        if dt <= 0 and not self._new_connection:
            return f"{-dt / 1e9:.6g} s behind the previous frame within one connection"
        excess = self.guard.excess_s(t * 1e-9, host_time)
        if excess > 0:
            return (f"{dt / 1e9:.6g} s after the previous frame, {excess:.6g} s more than the host clock "
                    f"allows (margin {self.guard.margin_s:g} s)")
        return ""

    def _accept(self, t: int, host_time: float | None, first: int, n: int, lost: int, restart: bool) -> IndexedFrame:
        self.frames += 1
        self.lost += lost
        self._last = (t, first + n - 1)
        self._refused, self._new_connection = [], False
        self.guard.accept(t * 1e-9, host_time)
        return IndexedFrame(first, n, lost, False, self.period_ns, restart=restart)
