"""The project's open ECG GATT profile (v1): pure codecs, no I/O. The spec is docs/ble-profile.md.

There is no standard ECG GATT profile (docs/FACTS.md), so a vendor's firmware implements this
one from the spec alone. One service, three characteristics:

- data (notify): one packet per notification, a 25-byte header then little-endian samples;
- control point (write with response + indicate): START / STOP / CONFIGURE, answered by an
  indication `80 op result`;
- info (read): the stream's configuration and the firmware version.

Everything is little-endian. The header carries `first_sample_index` (uint32, wrapping) so the
receiver counts lost samples exactly whatever the packet sizes; `OpenSampleIndexer` unwraps it.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from firmware_bridge.errors import ProfileError, profile_error
# IndexedFrame is re-exported: the open profile's indexer returns the same type as Polar's.
from firmware_bridge.polar import (ClockGuard, ImplausibleFrameError, IndexedFrame, as_int_samples,
                                   decode_int24_le, encode_int24_le)

_UUID = "0df8{:04x}-679a-45f4-ba6a-60d3df3bec53"
#: Project-specific 128-bit UUIDs: one fixed random base, a distinct 16-bit field each.
OPEN_SERVICE = _UUID.format(0x0001)
OPEN_DATA = _UUID.format(0x0002)
OPEN_CONTROL = _UUID.format(0x0003)
OPEN_INFO = _UUID.format(0x0004)

PROFILE_VERSION = 1
#: Sample formats and their code on the wire (= bytes per sample).
FORMATS: dict[str, int] = {"int16": 2, "int24": 3}
_FORMAT_NAMES = {v: k for k, v in FORMATS.items()}
#: Lead codes (fixed forever; new leads get new codes). 0 and 17..255 are reserved.
LEAD_CODES: dict[int, str] = {
    1: "I", 2: "II", 3: "III", 4: "aVR", 5: "aVL", 6: "aVF", 7: "V1", 8: "V2", 9: "V3",
    10: "V4", 11: "V5", 12: "V6", 13: "MLI", 14: "MLII", 15: "MLIII", 16: "CHEST",
}
_LEAD_IDS = {v: k for k, v in LEAD_CODES.items()}

FLAG_LEAD_OFF = 0x01       # electrodes lost contact during this packet: samples unreliable
FLAG_SATURATED = 0x02      # the ADC clipped at least one sample of this packet
FLAG_STREAM_START = 0x04   # first packet after START: seq and index restarted at 0
FLAG_TIME_UNIX = 0x08      # timestamp_us counts from the Unix epoch (else from device boot)
FLAGS_RESERVED = 0xF0      # sent as 0, ignored by receivers

#: Packet header: version, format, flags, lead, first_sample_index, timestamp_us, gain, seq,
#: fs_hz, count. Every field sits at an offset that is a multiple of its size.
_HEADER = struct.Struct("<BBBBIQfHHB")
HEADER_SIZE = _HEADER.size  # 25
_INFO = struct.Struct("<BBHfBB")  # version, format, fs_hz, gain, lead, samples_per_packet
INFO_SIZE = _INFO.size  # 10, then the firmware version in UTF-8
MAX_FIRMWARE_BYTES = 32
#: ATT notifications carry MTU - 3 bytes; the profile needs room for the header and 16 samples.
ATT_OVERHEAD = 3
MIN_MTU = ATT_OVERHEAD + HEADER_SIZE + 16 * 3  # 76

#: Plausible gains, counts per mV: one count between 1 nV and 10 mV. Anything else (a subnormal
#: float, say) is a corrupt field that would scale samples to absurd millivolts: refused.
GAIN_RANGE = (0.1, 1e6)

OP_START, OP_STOP, OP_CONFIGURE = 0x01, 0x02, 0x03
RESPONSE_CODE = 0x80
START = bytes([OP_START])
STOP = bytes([OP_STOP])


class OpenResult(IntEnum):
    """Result codes of the control point indication."""

    SUCCESS = 0
    UNKNOWN_COMMAND = 1
    INVALID_LENGTH = 2
    INVALID_PARAMETER = 3
    NOT_SUPPORTED = 4
    ALREADY_IN_STATE = 5
    INVALID_STATE = 6
    MTU_TOO_SMALL = 7


def result_name(code: int) -> str:
    """Name of a result code; unknown codes read `RESULT_<n>`."""
    return OpenResult(code).name if code in OpenResult._value2member_map_ else f"RESULT_{code}"


def max_samples_per_packet(mtu: int, fmt: str) -> int:
    """How many samples of `fmt` fit one notification at ATT MTU `mtu` (at most 255)."""
    return max(0, min(255, (mtu - ATT_OVERHEAD - HEADER_SIZE) // _bytes_per_sample(fmt, "open profile")))


def _bytes_per_sample(fmt: str, where: str) -> int:
    if fmt not in FORMATS:
        raise profile_error(where, "format", f"one of {sorted(FORMATS)}", repr(fmt))
    return FORMATS[fmt]


def _lead_id(lead: str, where: str) -> int:
    if lead not in _LEAD_IDS:
        raise profile_error(where, "lead", f"one of {list(_LEAD_IDS)}", repr(lead))
    return _LEAD_IDS[lead]


def _check_gain_fs(gain: float, fs_hz: float, where: str) -> tuple[float, int]:
    """Validate gain and rate; return (gain rounded to float32, integer rate) as the wire carries them."""
    with np.errstate(over="ignore"):
        g32 = float(np.float32(gain)) if isinstance(gain, (int, float, np.number)) else math.nan
    if not (math.isfinite(g32) and GAIN_RANGE[0] <= g32 <= GAIN_RANGE[1]):
        raise profile_error(where, "gain", f"a float32 within {GAIN_RANGE[0]:g}..{GAIN_RANGE[1]:g} counts per mV",
                            gain)
    fs = float(fs_hz) if isinstance(fs_hz, (int, float, np.number)) else math.nan
    if not (fs.is_integer() and 1 <= fs <= 0xFFFF):
        raise profile_error(where, "fs_hz", "a whole number of Hz, 1..65535 (uint16)", fs_hz)
    return g32, int(fs)


# --- data packet ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenPacket:
    """A decoded data packet; `samples` are raw ADC counts (int32), `samples_mv` = counts / gain."""

    version: int
    fmt: str
    flags: int
    lead: str
    first_sample_index: int
    timestamp_us: int
    gain: float
    seq: int
    fs_hz: int
    samples: np.ndarray

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])

    @property
    def samples_mv(self) -> np.ndarray:
        return self.samples / self.gain

    @property
    def stream_start(self) -> bool:
        return bool(self.flags & FLAG_STREAM_START)

    @property
    def lead_off(self) -> bool:
        return bool(self.flags & FLAG_LEAD_OFF)

    @property
    def saturated(self) -> bool:
        return bool(self.flags & FLAG_SATURATED)


def quantize_mv(samples_mv: object, gain: float, fmt: str = "int16") -> np.ndarray:
    """mV -> counts as firmware would: round(mV * gain), clipped to the format's range (int32)."""
    bits = 8 * _bytes_per_sample(fmt, "open profile")
    lim = (1 << (bits - 1)) - 1
    counts = np.rint(np.asarray(samples_mv, dtype=np.float64) * _check_gain_fs(gain, 1, "open profile")[0])
    return np.clip(counts, -lim - 1, lim).astype(np.int32)


def encode_packet(samples: object, *, seq: int, first_sample_index: int, timestamp_us: int,
                  fs_hz: int, gain: float, fmt: str = "int16", lead: str = "CHEST",
                  flags: int = 0) -> bytes:
    """Encode one data packet. `seq` and `first_sample_index` wrap (mod 2**16, 2**32).

    samples: 1..255 integer counts within `fmt`; `gain` in counts per mV (stored as float32).
    """
    where = "open profile packet"
    bps = _bytes_per_sample(fmt, where)
    s = as_int_samples(samples, 8 * bps, where)
    if s.size > 255:
        raise profile_error(where, "samples", "1..255 samples per packet", s.size)
    gain, fs_hz = _check_gain_fs(gain, fs_hz, where)
    if min(seq, first_sample_index, timestamp_us) < 0 or timestamp_us >= 1 << 64 or not 0 <= flags <= 255:
        raise profile_error(where, "seq/first_sample_index/timestamp_us/flags",
                            "non-negative, timestamp < 2**64, flags 0..255",
                            (seq, first_sample_index, timestamp_us, flags))
    head = _HEADER.pack(PROFILE_VERSION, bps, flags, _lead_id(lead, where), first_sample_index & 0xFFFFFFFF,
                        timestamp_us, gain, seq & 0xFFFF, fs_hz, s.size)
    body = s.astype("<i2").tobytes() if bps == 2 else encode_int24_le(s)
    return head + body


def _check_fields(where: str, version: int, bps: int, lead: int, gain: float, fs_hz: int) -> None:
    """The fields a data packet and the info characteristic share, checked the same way."""
    if version != PROFILE_VERSION:
        raise profile_error(where, "version", f"{PROFILE_VERSION} (this receiver implements v1)", version)
    if bps not in _FORMAT_NAMES:
        raise profile_error(where, "format", "2 (int16) or 3 (int24)", bps)
    if lead not in LEAD_CODES:
        raise profile_error(where, "lead code", f"1..{len(LEAD_CODES)}", lead)
    _check_gain_fs(gain, fs_hz, where)


def decode_packet(data: bytes) -> OpenPacket:
    """Decode one data packet (vectorized sample decode); any malformation raises ProfileError."""
    where, buf = "open profile packet", bytes(data)
    if len(buf) < HEADER_SIZE:
        raise profile_error(where, "length", f">= {HEADER_SIZE} bytes (header)", f"{len(buf)} bytes")
    version, bps, flags, lead, index, ts, gain, seq, fs_hz, count = _HEADER.unpack_from(buf)
    _check_fields(where, version, bps, lead, gain, fs_hz)
    if count == 0 or len(buf) != HEADER_SIZE + count * bps:
        raise profile_error(where, "sample count", f"1..255 samples filling the packet ({count} x {bps} bytes "
                            f"after the header)", f"{len(buf) - HEADER_SIZE} bytes")
    raw = np.frombuffer(buf, dtype=np.uint8, offset=HEADER_SIZE)
    samples = raw.view("<i2").astype(np.int32) if bps == 2 else decode_int24_le(raw)
    return OpenPacket(version, _FORMAT_NAMES[bps], flags, LEAD_CODES[lead], index, ts, gain, seq, fs_hz, samples)


# --- info characteristic -------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenConfig:
    """The info characteristic: what the device streams (after any CONFIGURE) and its firmware.

    Validated on construction (gain is rounded to float32 and fs_hz to int, as the wire has them).
    """

    fs_hz: int
    fmt: str
    gain: float
    lead: str
    samples_per_packet: int
    firmware: str = ""
    version: int = PROFILE_VERSION

    def __post_init__(self) -> None:
        where = "open profile info"
        _bytes_per_sample(self.fmt, where)
        _lead_id(self.lead, where)
        gain, fs_hz = _check_gain_fs(self.gain, self.fs_hz, where)
        object.__setattr__(self, "gain", gain)
        object.__setattr__(self, "fs_hz", fs_hz)
        for name, ok, expected in [
            ("samples_per_packet", 1 <= self.samples_per_packet <= 255, "1..255"),
            ("version", 0 <= self.version <= 255, "0..255"),
            ("firmware", len(self.firmware.encode("utf-8")) <= MAX_FIRMWARE_BYTES,
             f"<= {MAX_FIRMWARE_BYTES} UTF-8 bytes"),
        ]:
            if not ok:
                raise profile_error(where, name, expected, repr(getattr(self, name)))


def encode_config(config: OpenConfig) -> bytes:
    """`version format fs_hz gain lead samples_per_packet` (10 bytes) + UTF-8 firmware version."""
    return _INFO.pack(config.version, FORMATS[config.fmt], config.fs_hz, config.gain, _LEAD_IDS[config.lead],
                      config.samples_per_packet) + config.firmware.encode("utf-8")


def decode_config(data: bytes) -> OpenConfig:
    """Decode the info characteristic; a version other than 1 raises ProfileError."""
    where, buf = "open profile info", bytes(data)
    if not INFO_SIZE <= len(buf) <= INFO_SIZE + MAX_FIRMWARE_BYTES:
        raise profile_error(where, "length", f"{INFO_SIZE}..{INFO_SIZE + MAX_FIRMWARE_BYTES} bytes", len(buf))
    version, bps, fs_hz, gain, lead, spp = _INFO.unpack_from(buf)
    _check_fields(where, version, bps, lead, gain, fs_hz)
    try:
        fw = buf[INFO_SIZE:].decode("utf-8")
    except UnicodeDecodeError:
        raise profile_error(where, "firmware", "UTF-8 text", buf[INFO_SIZE:].hex()) from None
    return OpenConfig(fs_hz, _FORMAT_NAMES[bps], gain, LEAD_CODES[lead], spp, fw, version)


# --- control point -------------------------------------------------------------------------------

class OpenCommandError(ProfileError):
    """A malformed control point write; `code` is the result a device answers with."""

    def __init__(self, message: str, code: OpenResult) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class OpenCommand:
    """A decoded control point write (fs_hz and fmt only for CONFIGURE)."""

    op: int
    fs_hz: int | None = None
    fmt: str | None = None


def encode_configure(fs_hz: int, fmt: str) -> bytes:
    """CONFIGURE (optional for devices): `03 fs_hz(uint16) format(2|3)`; send while stopped."""
    _, fs = _check_gain_fs(1.0, fs_hz, "open profile configure")
    return struct.pack("<BHB", OP_CONFIGURE, fs, _bytes_per_sample(fmt, "open profile configure"))


def decode_command(data: bytes) -> OpenCommand:
    """Decode a control point write (device side); `OpenCommandError.code` is the answer."""
    buf = bytes(data)
    if not buf or buf[0] not in (OP_START, OP_STOP, OP_CONFIGURE):
        raise OpenCommandError(f"open profile command: op: expected 1 (START), 2 (STOP) or 3 (CONFIGURE), "
                               f"got {buf[:1].hex() or 'nothing'}", OpenResult.UNKNOWN_COMMAND)
    expected = 4 if buf[0] == OP_CONFIGURE else 1
    if len(buf) != expected:
        raise OpenCommandError(f"open profile command: length: expected {expected} bytes for op {buf[0]}, "
                               f"got {len(buf)}", OpenResult.INVALID_LENGTH)
    if buf[0] != OP_CONFIGURE:
        return OpenCommand(buf[0])
    _, fs_hz, bps = struct.unpack("<BHB", buf)
    if fs_hz == 0 or bps not in _FORMAT_NAMES:
        raise OpenCommandError(f"open profile command: configure: expected fs_hz >= 1 and format 2|3, "
                               f"got {fs_hz}, {bps}", OpenResult.INVALID_PARAMETER)
    return OpenCommand(OP_CONFIGURE, fs_hz, _FORMAT_NAMES[bps])


@dataclass(frozen=True)
class OpenControlResponse:
    """The indication `80 op result` answering a control point write."""

    op: int
    result: int
    result_name: str

    @property
    def ok(self) -> bool:
        return self.result == OpenResult.SUCCESS


def encode_control_response(op: int, result: int) -> bytes:
    """`80 op result`."""
    if not (0 <= op <= 255 and 0 <= result <= 255):
        raise profile_error("open profile response", "op/result", "bytes 0..255", (op, result))
    return bytes([RESPONSE_CODE, op, result])


def decode_control_response(data: bytes) -> OpenControlResponse:
    """Decode an indication; bytes after the third are ignored (room for later versions)."""
    buf = bytes(data)
    if len(buf) < 3 or buf[0] != RESPONSE_CODE:
        raise profile_error("open profile response", "header", "80 op result (>= 3 bytes)", buf[:3].hex() or "empty")
    return OpenControlResponse(buf[1], buf[2], result_name(buf[2]))


# --- receiver-side indexing ----------------------------------------------------------------------

class StreamChangeError(ProfileError):
    """A packet whose rate, format, lead or gain differs from the stream's: refused, never relabelled."""


class OpenSampleIndexer:
    """Unwrap `first_sample_index` (uint32) into a monotonic 64-bit count and find lost samples.

    The first packet keeps its device index. Later ones: delta = (index - expected) mod 2**32,
    read as signed; delta >= 0 means `delta` samples were lost, delta < 0 a duplicate or reordered
    packet (flagged, not indexed). A packet flagged STREAM_START, other than a repeat of the one
    that started the current stream (same seq, index and timestamp), or the first packet after
    `new_connection()` (its STREAM_START packet may be the one lost), is a device restart: the
    device's clock kept running, so the samples it measured meanwhile are lost:
    `round((timestamp_us - expected_us) * fs)`, with `expected_us` the time of the sample after the
    last one indexed and `fs` the device's true rate (measured from timestamps over indices of
    contiguous packets). Only a clock that went back (a reboot) or changed base (TIME_UNIX) leaves
    the loss unknown: the count then continues right after the last sample. Lost packets (from
    `seq`) are counted in `lost_packets`.

    Checks, each raising (the indexer's state is left as it was):
    - `StreamChangeError`: rate, format, lead or gain differ from the stream's (`expect(config)`
      from the info characteristic, else the first packet's).
    - `ImplausibleFrameError`: within a stream, the timestamp contradicts the index (one of the two
      is corrupt); or a jump further ahead than the host clock allows (`ClockGuard`, with
      `host_time`). After `resync_after` implausible packets in a row the device's timeline really
      changed: the next one restarts the count (its predecessors' samples lost).
    """

    def __init__(self, guard: ClockGuard | None = None, resync_after: int = 3, max_rate_error: float = 0.02) -> None:
        self.guard = guard or ClockGuard()
        self.resync_after, self.max_rate_error = resync_after, max_rate_error
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next packet starts a new stream."""
        self._end: int | None = None  # receiver count one past the last indexed sample
        self._wire_end = 0  # the device index expected next (mod 2**32)
        self._next_seq = 0
        self._stream_id: tuple[int, int, int] | None = None  # (seq, index, time) of STREAM_START
        self._last: tuple[int, int, int, bool] | None = None  # (wire index, timestamp_us, n, TIME_UNIX)
        self._sum_dn, self._sum_dus = 0, 0  # contiguous packets: samples over µs, the true rate
        self._refused: list[int] = []
        self._new_connection = False
        self.stream: tuple[int, str, str, float] | None = None  # (fs_hz, fmt, lead, gain)
        self.guard.reset()
        self.packets = self.lost = self.lost_packets = self.duplicates = self.restarts = 0

    def expect(self, config: OpenConfig) -> None:
        """The stream's rate, format, lead and gain, from the info characteristic (read per connection)."""
        self.stream = (config.fs_hz, config.fmt, config.lead, config.gain)

    def new_connection(self) -> None:
        """The link was re-established: the device restarts its stream, so the next packet is placed
        by its timestamp like a STREAM_START one (also when that first packet was lost)."""
        self._new_connection = True
        self.guard.new_connection()

    def fs_true(self, fs_hz: int) -> float:
        """The device's rate measured from its timestamps (nominal until two contiguous packets)."""
        if self._sum_dus <= 0:
            return float(fs_hz)
        fs = self._sum_dn / self._sum_dus * 1e6
        return min(max(fs, fs_hz * (1 - self.max_rate_error)), fs_hz * (1 + self.max_rate_error))

    def _check_stream(self, packet: OpenPacket) -> None:
        got = (packet.fs_hz, packet.fmt, packet.lead, packet.gain)
        if self.stream is None:
            self.stream = got
        for name, want, have in zip(("fs_hz", "format", "lead", "gain"), self.stream, got):
            if want != have:
                raise StreamChangeError(f"open profile packet: {name}: expected {want:g} (the stream's), got {have:g}"
                                        if isinstance(want, (int, float)) else
                                        f"open profile packet: {name}: expected {want} (the stream's), got {have}")

    def feed(self, packet: OpenPacket, host_time: float | None = None) -> IndexedFrame:
        """Index one packet (packets must be fed in arrival order; `host_time`: its arrival,
        `time.monotonic()`, which enables the host-clock bound)."""
        self._check_stream(packet)
        n, period = packet.n, 1e9 / packet.fs_hz
        if self._end is None:
            return self._accept(packet, packet.first_sample_index, 0, host_time)
        stream_id = (packet.seq, packet.first_sample_index, packet.timestamp_us)
        if (packet.stream_start and self._stream_id != stream_id) or self._new_connection:
            return self._restart(packet, host_time)
        delta = (packet.first_sample_index - self._wire_end) % (1 << 32)
        delta -= (1 << 32) if delta >= 1 << 31 else 0
        why = self._implausible(packet, delta, host_time)
        if why:
            return self._refuse_or_resync(packet, why, host_time)
        if delta < 0:
            self.duplicates += 1
            return IndexedFrame(self._end + delta, n, 0, True, period)
        if delta == 0 and self._last is not None:
            self._sum_dn += self._last[2]
            self._sum_dus += packet.timestamp_us - self._last[1]
        self.lost_packets += (packet.seq - self._next_seq) % (1 << 16)
        return self._accept(packet, self._end + delta, delta, host_time)

    def _implausible(self, packet: OpenPacket, delta: int, host_time: float | None) -> str:
        """Why a packet `delta` samples after the expected one cannot be real ('' if it can)."""
        wire0, t0, n0, unix0 = self._last  # type: ignore[misc]
        fs = self.fs_true(packet.fs_hz)
        if unix0 == bool(packet.flags & FLAG_TIME_UNIX):
            want_us, got_us = (delta + n0) * 1e6 / fs, packet.timestamp_us - t0
            if abs(got_us - want_us) > 0.02 * abs(want_us) + 20_000 + 2e6 / fs:
                return (f"{got_us / 1e6:.6g} s after the previous packet, but its index says "
                        f"{want_us / 1e6:.6g} s (a corrupt index or timestamp)")
        return self._too_far_ahead(packet, delta, host_time) if delta > 0 else ""

    def _too_far_ahead(self, packet: OpenPacket, lost: int, host_time: float | None) -> str:
        excess = self.guard.excess_s(packet.timestamp_us * 1e-6, host_time)
        if excess <= 0:
            return ""
        return (f"{lost / packet.fs_hz:.6g} s ahead, {excess:.6g} s more than the host clock allows "
                f"(margin {self.guard.margin_s:g} s)")

    def _restart(self, packet: OpenPacket, host_time: float | None) -> IndexedFrame:
        """STREAM_START after a reconnect: the outage is the jump in device time."""
        wire0, t0, n0, unix0 = self._last  # type: ignore[misc]
        lost = 0
        if unix0 == bool(packet.flags & FLAG_TIME_UNIX):
            fs = self.fs_true(packet.fs_hz)
            lost = max(0, round((packet.timestamp_us - t0) * fs / 1e6 - n0))  # < 0: the clock went back
            why = self._too_far_ahead(packet, lost, host_time)
            if why:
                return self._refuse_or_resync(packet, why, host_time)
        self.restarts += 1
        self.guard.new_connection()
        return self._accept(packet, self._end + lost, lost, host_time, restart=True)

    def _refuse_or_resync(self, packet: OpenPacket, why: str, host_time: float | None) -> IndexedFrame:
        if len(self._refused) < self.resync_after:
            self._refused.append(packet.n)
            raise ImplausibleFrameError(f"open profile packet: timestamp: {why}; packet refused")
        lost = sum(self._refused)  # the timeline really changed: start over after the refused packets
        self.restarts += 1
        self.guard.new_connection()
        return self._accept(packet, self._end + lost, lost, host_time, restart=True)

    def _accept(self, packet: OpenPacket, first: int, lost: int, host_time: float | None,
                restart: bool = False) -> IndexedFrame:
        self.packets += 1
        self.lost += lost
        self._end = first + packet.n
        self._wire_end = (packet.first_sample_index + packet.n) % (1 << 32)
        self._next_seq = (packet.seq + 1) % (1 << 16)
        if packet.stream_start:
            self._stream_id = (packet.seq, packet.first_sample_index, packet.timestamp_us)
        elif restart:
            self._stream_id = None
        self._last = (packet.first_sample_index, packet.timestamp_us, packet.n, bool(packet.flags & FLAG_TIME_UNIX))
        self._refused, self._new_connection = [], False
        self.guard.accept(packet.timestamp_us * 1e-6, host_time)
        return IndexedFrame(first, packet.n, lost, False, 1e9 / packet.fs_hz, restart=restart)
